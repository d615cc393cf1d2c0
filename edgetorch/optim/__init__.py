"""edgetorch.optim: SGD, Adam, AdamW and learning-rate schedulers (torch.optim)."""
from . import lr_scheduler
from .algorithms import SGD, Adam, AdamW
from .optimizer import Optimizer

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "lr_scheduler"]
