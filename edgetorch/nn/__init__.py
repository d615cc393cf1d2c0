"""edgetorch.nn: modules, layers, functional API and initialisation (torch.nn)."""
from . import functional, init, utils
from .attention import MultiheadAttention
from .container import ModuleDict, ModuleList, Sequential
from .layers import (GELU, AdaptiveAvgPool2d, AvgPool2d, BatchNorm1d, BatchNorm2d, BCEWithLogitsLoss, Conv1d,
                     Conv2d, ConvTranspose2d, CrossEntropyLoss, Dropout, Embedding, Flatten, Hardtanh, Identity,
                     L1Loss, LayerNorm, LeakyReLU, Linear, LogSoftmax, MaxPool2d, MSELoss, NLLLoss, ReLU, ReLU6,
                     RMSNorm, Sigmoid, SiLU, Softmax, Softplus, Tanh, Unflatten)
from .module import Module
from .parameter import Buffer, Parameter

__all__ = [n for n in dir() if not n.startswith("_")]
