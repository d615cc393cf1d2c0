"""Functions of the top-level namespace (torch.*): creation and composite ops."""
from __future__ import annotations

from collections import namedtuple

import numpy as np

from . import dtypes as D
from ._errors import EdgeTorchError, ShapeError
from .ops import elementwise as E
from .ops import index as I
from .ops import linalg as L
from .ops import shape as S
from .autograd import function as _AF
from .random import _rng
from ._tensor import Tensor, _shape_arg

_MinMax = namedtuple("_MinMax", ["values", "indices"])


def _minmax_result(values, indices):
    return _MinMax(values, indices)


# ------------------------------------------------------------------ creation

def _np_dtype(dtype, default=np.float32):
    return D.to_numpy_dtype(dtype) if dtype is not None else np.dtype(default)


def _finish(arr, requires_grad):
    t = Tensor._wrap(arr)
    if requires_grad:
        t.requires_grad_(True)
    return t


def tensor(data, dtype=None, requires_grad=False, device=None):
    """A new tensor copied from data (lists, numbers, numpy arrays, tensors)."""
    _check_device(device)
    if isinstance(data, Tensor):
        data = data._data
    arr = np.array(Tensor(data, dtype=dtype)._data, copy=True)
    return _finish(arr, requires_grad)


def as_tensor(data, dtype=None):
    return data if isinstance(data, Tensor) and dtype is None else Tensor(data, dtype=dtype)


def from_numpy(a):
    """A tensor sharing memory with the numpy array `a`."""
    if not isinstance(a, np.ndarray):
        raise EdgeTorchError(f"from_numpy expects a numpy.ndarray, got {type(a).__name__}")
    D.from_numpy_dtype(a.dtype)
    return Tensor._wrap(a)


def _check_device(device):
    if device is not None and str(device) != "cpu":
        raise EdgeTorchError(f"device {device!r} is not available in the eager frontend (cpu only)")


def _traced_full(shape, value, dtype):
    from .ops import creation
    return creation.full(shape=tuple(shape), value=value, dtype=np.dtype(dtype).name)


def zeros(*size, dtype=None, requires_grad=False, device=None):
    _check_device(device)
    if _AF.capture_hooks:
        return _traced_full(_shape_arg(size), 0, _np_dtype(dtype))
    return _finish(np.zeros(_shape_arg(size), dtype=_np_dtype(dtype)), requires_grad)


def ones(*size, dtype=None, requires_grad=False, device=None):
    _check_device(device)
    if _AF.capture_hooks:
        return _traced_full(_shape_arg(size), 1, _np_dtype(dtype))
    return _finish(np.ones(_shape_arg(size), dtype=_np_dtype(dtype)), requires_grad)


def empty(*size, dtype=None, requires_grad=False, device=None):
    return zeros(*size, dtype=dtype, requires_grad=requires_grad, device=device)


def full(size, fill_value, dtype=None, requires_grad=False, device=None):
    _check_device(device)
    if dtype is None:
        dtype = D.float32 if isinstance(fill_value, float) else (D.bool_ if isinstance(fill_value, bool) else D.int64)
    shape = _shape_arg((size,)) if not isinstance(size, int) else (size,)
    if _AF.capture_hooks:
        return _traced_full(shape, fill_value, _np_dtype(dtype))
    return _finish(np.full(shape, fill_value, dtype=_np_dtype(dtype)), requires_grad)


def _like(fn, t, dtype, requires_grad, *extra):
    return fn(*((t.shape,) + extra), dtype=dtype or t.dtype, requires_grad=requires_grad)


def zeros_like(t, dtype=None, requires_grad=False):
    return _like(zeros, t, dtype, requires_grad)


def ones_like(t, dtype=None, requires_grad=False):
    return _like(ones, t, dtype, requires_grad)


def empty_like(t, dtype=None, requires_grad=False):
    return _like(zeros, t, dtype, requires_grad)


def full_like(t, fill_value, dtype=None, requires_grad=False):
    return full(tuple(t.shape), fill_value, dtype=dtype or t.dtype, requires_grad=requires_grad)


def arange(start, end=None, step=1, dtype=None, requires_grad=False):
    if end is None:
        start, end = 0, start
    if dtype is None:
        dtype = D.float32 if any(isinstance(v, float) for v in (start, end, step)) else D.int64
    if _AF.capture_hooks:
        from .ops import creation
        return creation.arange(start=start, end=end, step=step, dtype=_np_dtype(dtype).name)
    return _finish(np.arange(start, end, step).astype(_np_dtype(dtype)), requires_grad)


def linspace(start, end, steps, dtype=None, requires_grad=False):
    return _finish(np.linspace(start, end, steps).astype(_np_dtype(dtype)), requires_grad)


def eye(n, m=None, dtype=None, requires_grad=False):
    return _finish(np.eye(n, m, dtype=_np_dtype(dtype)), requires_grad)


def rand(*size, generator=None, dtype=None, requires_grad=False):
    return _finish(_rng(generator).random(_shape_arg(size)).astype(_np_dtype(dtype)), requires_grad)


def randn(*size, generator=None, dtype=None, requires_grad=False):
    return _finish(_rng(generator).standard_normal(_shape_arg(size)).astype(_np_dtype(dtype)), requires_grad)


def randint(low, high=None, size=(), generator=None, dtype=None):
    if high is None:
        low, high = 0, low
    return Tensor._wrap(_rng(generator).integers(low, high, size=tuple(size)).astype(_np_dtype(dtype, np.int64)))


def randperm(n, generator=None, dtype=None):
    return Tensor._wrap(_rng(generator).permutation(n).astype(_np_dtype(dtype, np.int64)))


def rand_like(t, generator=None):
    return rand(*t.shape, generator=generator, dtype=t.dtype)


def randn_like(t, generator=None):
    return randn(*t.shape, generator=generator, dtype=t.dtype)


# ------------------------------------------------------------------ composites

def cat(tensors, dim=0):
    tensors = list(tensors)
    if len(tensors) == 1:
        return tensors[0]
    return S.cat(*tensors, dim=dim)


concat = concatenate = cat


def stack(tensors, dim=0):
    tensors = list(tensors)
    if not tensors:
        raise ShapeError("stack expects a non-empty list of tensors")
    shapes = {tuple(t.shape) for t in tensors}
    if len(shapes) != 1:
        raise ShapeError(f"stack expects each tensor to be equal size, got {sorted(shapes)}")
    d = dim % (tensors[0].ndim + 1)
    return cat([t.unsqueeze(d) for t in tensors], dim=d)


def split(t, split_size_or_sections, dim=0):
    n = t.shape[dim]
    if isinstance(split_size_or_sections, int):
        if split_size_or_sections <= 0:
            raise ShapeError(f"split: split_size must be positive, got {split_size_or_sections}")
        sizes = [split_size_or_sections] * (n // split_size_or_sections)
        if n % split_size_or_sections:
            sizes.append(n % split_size_or_sections)
    else:
        sizes = list(split_size_or_sections)
        if sum(sizes) != n:
            raise ShapeError(f"split: sections {sizes} sum to {sum(sizes)}, but dim {dim} has size {n}")
    out, start = [], 0
    for s in sizes:
        out.append(t.narrow(dim, start, s))
        start += s
    return tuple(out)


def chunk(t, chunks, dim=0):
    n = t.shape[dim]
    size = -(-n // chunks)
    return split(t, size, dim)


def where(cond, a=None, b=None):
    if a is None and b is None:
        return tuple(Tensor._wrap(i) for i in np.nonzero(np.asarray(cond._data)))
    if not isinstance(a, Tensor):
        a = b._c(a) if isinstance(b, Tensor) else Tensor(a)
    if not isinstance(b, Tensor):
        b = a._c(b)
    return E.where(cond, a, b)


def einsum(equation, *operands):
    if len(operands) == 1 and isinstance(operands[0], (list, tuple)):
        operands = tuple(operands[0])
    if len(operands) != 2:
        raise ShapeError(f"einsum supports exactly two operands, got {len(operands)}")
    return L.einsum(*operands, equation=equation)


def _max(x, dim=None, keepdim=False):
    return x.max(dim, keepdim) if not isinstance(dim, Tensor) else E.maximum(x, dim)


def _min(x, dim=None, keepdim=False):
    return x.min(dim, keepdim) if not isinstance(dim, Tensor) else E.minimum(x, dim)


def flatten(x, start_dim=0, end_dim=-1):
    return x.flatten(start_dim, end_dim)


def numel(x):
    return x.numel()


def allclose(a, b, rtol=1e-5, atol=1e-8):
    return bool(np.allclose(np.asarray(a._data if isinstance(a, Tensor) else a, dtype=np.float64),
                            np.asarray(b._data if isinstance(b, Tensor) else b, dtype=np.float64), rtol, atol))


def masked_fill(x, mask, value):
    return x.masked_fill(mask, value)


def clamp(x, min=None, max=None):  # noqa: A002
    return x.clamp(min, max)


# torch.<name>(x, ...) forms of Tensor methods.  They live in this dict, not
# in the module namespace, so builtins (sum, max, any, abs, ...) stay usable
# here; edgetorch/__init__ publishes them.
METHOD_FUNCTIONS = {"max": _max, "min": _min}


def _method(name):
    def f(x, *a, **k):
        return getattr(x, name)(*a, **k)
    f.__name__ = name
    f.__doc__ = f"Function form of Tensor.{name}."
    return f


for _n in ("abs", "exp", "log", "sqrt", "rsqrt", "sin", "cos", "tanh", "sigmoid", "relu", "neg",
           "sum", "mean", "var", "std", "prod", "logsumexp", "argmax", "argmin", "amax", "amin",
           "reshape", "permute", "transpose", "squeeze", "unsqueeze", "gather", "scatter_add",
           "index_select", "triu", "tril", "roll", "flip", "softmax", "log_softmax", "matmul",
           "pow", "maximum", "minimum", "square", "sign", "repeat_interleave", "narrow", "unbind",
           "t", "all", "any"):
    METHOD_FUNCTIONS[_n] = _method(_n)


def add(a, b, alpha=1):
    return a + b * alpha if alpha != 1 else a + b


def sub(a, b, alpha=1):
    return a - b * alpha if alpha != 1 else a - b


def mul(a, b):
    return a * b


def div(a, b):
    return a / b


def eq(a, b):
    return a == b


def pad_tensor(x, pad, value=0.0):
    return S.pad(x, pad=tuple(pad), value=value)


def is_tensor(x):
    return isinstance(x, Tensor)


def index_put(x, indices, values, accumulate=False):
    from ._tensor import _index_spec
    spec, tens = _index_spec(tuple(indices))
    return I.index_put(x, values, *tens, index=spec, accumulate=accumulate)


def sum_to(g, shape):
    return E.sum_to(g, shape)


def _unregistered(x, name):
    if _AF.capture_hooks:
        _AF.data_guard(x, f"{name} (an op with no registry entry, so it cannot be exported)")


def cumsum(x, dim):
    # no registry op yet: computed without autograd
    _unregistered(x, "cumsum")
    if x.requires_grad:
        raise EdgeTorchError("cumsum has no backward yet")
    return Tensor._wrap(np.cumsum(x._data, axis=dim))


def multinomial(probs, num_samples, generator=None):
    _unregistered(probs, "multinomial")
    p = np.asarray(probs._data, dtype=np.float64)
    p = p / p.sum(-1, keepdims=True)
    rng = _rng(generator)
    flat = p.reshape(-1, p.shape[-1])
    out = np.stack([rng.choice(p.shape[-1], size=num_samples, p=row) for row in flat])
    return Tensor._wrap(out.reshape(p.shape[:-1] + (num_samples,)).astype(np.int64))


def topk(x, k, dim=-1, largest=True):
    _unregistered(x, "topk")
    a = x._data
    idx = np.argsort(-a if largest else a, axis=dim, kind="stable")
    idx = np.take(idx, np.arange(k), axis=dim)
    return _MinMax(x.gather(dim % x.ndim, Tensor._wrap(idx)), Tensor._wrap(idx))
