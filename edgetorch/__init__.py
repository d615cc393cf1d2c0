"""edgetorch: write and train models eagerly in the PyTorch idiom, export them
to a self-contained `.etp` program, run them with a lean Numba runtime.

    import edgetorch as et
    model = et.nn.Linear(4, 2)
    loss = model(et.randn(8, 4)).pow(2).mean()
    loss.backward()

Only the frontend core (Tensor, ops, autograd) is imported here; `nn`,
`optim`, `utils`, `models` and the exporter load on first use.
"""
import importlib

from ._errors import AutogradError, DTypeError, EdgeTorchError, ExportError, ShapeError, StateDictError
from .dtypes import (bfloat16, bool_, double, dtype, float, float16, float32, float64, half, int,
                     int8, int16, int32, int64, long, uint8)
from .dtypes import bool_ as bool  # noqa: A001
from .autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .random import Generator, manual_seed, seed
from .tensor import Size, Tensor
from .autograd.function import is_tracing
from .functional import *  # noqa: F401,F403
from .functional import (arange, as_tensor, cat, chunk, einsum, empty, empty_like, eye, from_numpy,
                         full, full_like, linspace, ones, ones_like, rand, rand_like, randint, randn,
                         randn_like, randperm, split, stack, tensor, where, zeros, zeros_like)

from .functional import METHOD_FUNCTIONS as _MF

globals().update(_MF)
del _MF

__version__ = "0.1.0"

_LAZY = {"nn", "optim", "utils", "models", "autograd", "serialization", "exporter", "runtime", "cli", "quant"}


def __getattr__(name):
    if name in _LAZY:
        return importlib.import_module(f"{__name__}.{name}")
    if name in ("save", "load"):
        return getattr(importlib.import_module(f"{__name__}.serialization"), name)
    if name in ("export", "export_methods"):
        return getattr(importlib.import_module(f"{__name__}.exporter"), name)
    raise AttributeError(f"module 'edgetorch' has no attribute {name!r}")
