"""The frontend's public names, loaded on first use of any of them.

edgetorch/__init__.py resolves names from here lazily, so `import
edgetorch.runtime` on a device loads the runtime without the frontend.
"""
from ._errors import (AutogradError, DTypeError, EdgeTorchError, ExportError, InputError, ProgramError,
                      ShapeError, StateDictError)
from .dtypes import (bfloat16, bool_, double, dtype, float, float16, float32, float64, half, int,
                     int8, int16, int32, int64, long, uint8)
from .dtypes import bool_ as bool  # noqa: A001
from .autograd import enable_grad, inference_mode, is_grad_enabled, no_grad, set_grad_enabled
from .random import Generator, manual_seed, seed
from ._tensor import Size, Tensor
from .autograd.function import is_tracing
from .functional import *  # noqa: F401,F403
from .functional import (arange, as_tensor, cat, chunk, einsum, empty, empty_like, eye, from_numpy,
                         full, full_like, linspace, ones, ones_like, rand, rand_like, randint, randn,
                         randn_like, randperm, split, stack, tensor, where, zeros, zeros_like)
from .functional import METHOD_FUNCTIONS as _MF

globals().update(_MF)
