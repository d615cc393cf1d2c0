"""Tensor: a numpy array plus autograd state, with torch's methods."""
from __future__ import annotations

import numbers

import numpy as np

from . import dtypes as D
from ._errors import AutogradError, EdgeTorchError
from .autograd import engine, grad_mode
from .autograd import function as _F
from .autograd.function import Version
from .ops import conv as _conv  # noqa: F401  (registers the family)
from .ops import creation as _creation  # noqa: F401
from .ops import fused as _fused  # noqa: F401
from .ops import quant as _quant  # noqa: F401
from .ops import elementwise as E
from .ops import index as I
from .ops import linalg as L
from .ops import nn as N
from .ops import reduce as R
from .ops import shape as S
from .ops.index import SLOT


class Size(tuple):
    """torch.Size: a tuple of ints with numel()."""

    def numel(self):
        n = 1
        for s in self:
            n *= s
        return n

    def __repr__(self):
        return f"edgetorch.Size([{', '.join(str(s) for s in self)}])"


def _as_array(data, dtype=None):
    if isinstance(data, Tensor):
        data = data._data
    npd = D.to_numpy_dtype(dtype) if dtype is not None else None
    if isinstance(data, np.ndarray):
        a = data if npd is None else data.astype(npd, copy=False)
    else:
        a = np.asarray(data, dtype=npd)
        if npd is None:
            if a.dtype == np.float64 and not isinstance(data, np.generic):
                a = a.astype(np.float32)  # python floats default to float32, as torch
            elif a.dtype.kind == "i" and a.dtype != np.int64 and not isinstance(data, np.generic):
                a = a.astype(np.int64)
    D.from_numpy_dtype(a.dtype)  # raises DTypeError on unsupported dtypes
    return a


class Tensor:
    """An n-dimensional array with autograd, in torch's idiom.

    >>> x = et.tensor([[1.0, 2.0]], requires_grad=True)
    >>> (x * x).sum().backward(); x.grad
    tensor([[2., 4.]])
    """
    __slots__ = ("_data", "requires_grad", "grad", "grad_fn", "_version", "_hooks",
                 "_retain", "_name", "_sym", "__weakref__")
    __array_priority__ = 1000  # numpy defers to our reflected operators

    def __init__(self, data, dtype=None, requires_grad=False):
        self._data = _as_array(data, dtype)
        self.grad = None
        self.grad_fn = None
        self._version = Version()
        self._hooks = None
        self._retain = False
        self._name = None
        self._sym = None
        self.requires_grad = False
        if requires_grad:
            self.requires_grad_(True)

    @classmethod
    def _wrap(cls, arr, grad_fn=None, version=None):
        t = object.__new__(cls)
        t._data = arr
        t.grad = None
        t.grad_fn = grad_fn
        t.requires_grad = grad_fn is not None
        t._version = version if version is not None else Version()
        t._hooks = None
        t._retain = False
        t._name = None
        t._sym = None
        return t

    @classmethod
    def _const(cls, value, like=None):
        if isinstance(value, numbers.Number) and not isinstance(value, (bool, np.bool_)):
            # python scalars take the tensor's dtype (torch's "weak" scalars)
            return cls._wrap(np.asarray(value, dtype=np.float32 if isinstance(value, float) else np.int64))
        if isinstance(value, (bool, np.bool_)):
            return cls._wrap(np.asarray(value))
        return cls._wrap(_as_array(value))

    # ------------------------------------------------------------ properties
    @property
    def shape(self):
        # during capture, dynamic dims are SymInts (ints with an expression)
        return Size(self._sym if self._sym is not None else self._data.shape)

    def size(self, dim=None):
        s = self.shape
        return s if dim is None else s[dim]

    @property
    def ndim(self):
        return self._data.ndim

    def dim(self):
        return self._data.ndim

    def numel(self):
        return int(self._data.size)

    nelement = numel

    @property
    def dtype(self):
        return D.from_numpy_dtype(self._data.dtype)

    @property
    def device(self):
        return "cpu"

    @property
    def is_leaf(self):
        return self.grad_fn is None

    @property
    def data(self):
        return Tensor._wrap(self._data)

    @data.setter
    def data(self, value):
        self._data = _as_array(value)

    @property
    def T(self):
        return self.permute(*range(self.ndim - 1, -1, -1))

    @property
    def mT(self):
        return self.transpose(-2, -1)

    def is_floating_point(self):
        return self.dtype.is_floating_point

    def is_contiguous(self):
        return bool(self._data.flags.c_contiguous)

    def element_size(self):
        return self._data.itemsize

    # ------------------------------------------------------------ conversion
    def numpy(self):
        if _F.capture_hooks:
            _F.data_guard(self, "numpy()")
        if self.requires_grad:
            raise AutogradError("Can't call numpy() on a tensor that requires grad. "
                                "Use tensor.detach().numpy() instead.")
        return self._data

    def __array__(self, dtype=None, copy=None):
        if _F.capture_hooks:
            _F.data_guard(self, "conversion to a numpy array")
        return self._data if dtype is None else self._data.astype(dtype)

    def item(self):
        if _F.capture_hooks:
            _F.data_guard(self, "item()")
        if self._data.size != 1:
            raise EdgeTorchError(f"a tensor with {self._data.size} elements cannot be converted to a "
                                 "Python scalar")
        return self._data.reshape(()).item()

    def tolist(self):
        if _F.capture_hooks:
            _F.data_guard(self, "tolist()")
        return self._data.tolist()

    def __float__(self):
        return float(self.item())

    def __int__(self):
        return int(self.item())

    def __index__(self):
        if self._data.dtype.kind not in "iu":
            raise TypeError("only integer tensors can be used as an index")
        return int(self.item())

    def __bool__(self):
        if _F.capture_hooks:
            _F.data_guard(self, "bool() (an `if` or `while` on a tensor value)")
        if self._data.size != 1:
            raise EdgeTorchError(f"Boolean value of a tensor with {self._data.size} elements is "
                                 "ambiguous; use .any() or .all()")
        return bool(self._data.reshape(()).item())

    def __len__(self):
        if self._data.ndim == 0:
            raise TypeError("len() of a 0-d tensor")
        if _F.capture_hooks and self._sym is not None and type(self._sym[0]) is not int:
            _F.data_guard(self, "len() of a dynamic dim (use x.shape[0], which stays symbolic)")
        return self._data.shape[0]

    def __iter__(self):
        return (self[i] for i in range(len(self)))

    def __hash__(self):
        return id(self)

    def __repr__(self):
        body = np.array2string(np.asarray(self._data, dtype=np.float64) if self._data.dtype.name == "bfloat16"
                               else self._data, separator=", ", prefix="tensor(", precision=4)
        extra = ""
        if self.dtype not in (D.float32, D.int64, D.bool_):
            extra += f", dtype={self.dtype}"
        if self.grad_fn is not None:
            extra += f", grad_fn=<{self.grad_fn.name()}>"
        elif self.requires_grad:
            extra += ", requires_grad=True"
        return f"tensor({body}{extra})"

    # ------------------------------------------------------------ autograd
    def requires_grad_(self, requires_grad=True):
        if requires_grad and not self.dtype.is_floating_point:
            raise AutogradError(f"only floating point tensors can require gradients, got {self.dtype}")
        if not requires_grad and self.grad_fn is not None:
            raise AutogradError("you can only change requires_grad flags of leaf tensors; "
                                "use detach() for a non-leaf")
        self.requires_grad = bool(requires_grad)
        return self

    def backward(self, gradient=None, retain_graph=None, create_graph=False):
        """Accumulate gradients of this tensor into the leaves' `.grad`."""
        engine.backward([self], [gradient], retain_graph=retain_graph, create_graph=create_graph)

    def retain_grad(self):
        if self.grad_fn is None:
            return
        import weakref
        self.grad_fn.retain = weakref.ref(self)

    def register_hook(self, hook):
        """hook(grad) -> grad or None, called when this leaf's gradient is ready."""
        if self.grad_fn is not None:
            raise AutogradError("register_hook is supported on leaf tensors only")
        self._hooks = (self._hooks or []) + [hook]
        return hook

    def detach(self):
        return Tensor._wrap(self._data, version=self._version)

    def detach_(self):
        self.grad_fn = None
        self.requires_grad = False
        return self

    def clone(self):
        return E.clone(self)

    def contiguous(self):
        return self if self._data.flags.c_contiguous else E.clone(self)

    def to(self, *args, dtype=None, **kw):
        for a in args:
            if isinstance(a, (D.dtype, np.dtype, type)) or (isinstance(a, str) and a not in ("cpu",) and not a.startswith("cuda")):
                dtype = a
            elif isinstance(a, str) and a.startswith("cuda"):
                raise EdgeTorchError("device 'cuda' is not available in the eager frontend: edgetorch "
                                     "trains on the CPU; GPU execution is a runtime delegate")
            elif isinstance(a, Tensor):
                dtype = a.dtype
        if dtype is None:
            return self
        npd = D.to_numpy_dtype(dtype)
        if npd == self._data.dtype:
            return self
        return E.to(self, dtype=npd.name)

    def cpu(self):
        return self

    def cuda(self, *a, **k):
        return self.to("cuda")

    def type_as(self, other):
        return self.to(other.dtype)

    def float(self):
        return self.to(D.float32)

    def double(self):
        return self.to(D.float64)

    def half(self):
        return self.to(D.float16)

    def bfloat16(self):
        return self.to(D.bfloat16)

    def long(self):
        return self.to(D.int64)

    def int(self):
        return self.to(D.int32)

    def bool(self):
        return self.to(D.bool_)

    def new_zeros(self, shape, dtype=None):
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        return Tensor._wrap(np.zeros(shape, dtype=D.to_numpy_dtype(dtype) if dtype else self._data.dtype))

    def new_ones(self, shape, dtype=None):
        shape = (shape,) if isinstance(shape, int) else tuple(shape)
        return Tensor._wrap(np.ones(shape, dtype=D.to_numpy_dtype(dtype) if dtype else self._data.dtype))

    def new_full(self, shape, value, dtype=None):
        return Tensor._wrap(np.full(tuple(shape), value, dtype=D.to_numpy_dtype(dtype) if dtype else self._data.dtype))

    def new_tensor(self, data, dtype=None):
        return Tensor(data, dtype=dtype or self.dtype)

    # ------------------------------------------------------------ arithmetic
    def _c(self, other):
        """Wrap a Python scalar as a constant of this tensor's dtype (weak typing)."""
        if isinstance(other, Tensor):
            return other
        if isinstance(other, (bool, np.bool_)):
            return Tensor._wrap(np.asarray(other, dtype=self._data.dtype))
        if isinstance(other, numbers.Number):
            dt = self._data.dtype
            if isinstance(other, float) and dt.kind in "iub":
                dt = np.dtype(np.float32)
            return Tensor._wrap(np.asarray(other, dtype=dt))
        return Tensor(other)

    def __add__(self, o): return E.add(self, self._c(o))
    def __radd__(self, o): return E.add(self._c(o), self)
    def __sub__(self, o): return E.sub(self, self._c(o))
    def __rsub__(self, o): return E.sub(self._c(o), self)
    def __mul__(self, o): return E.mul(self, self._c(o))
    def __rmul__(self, o): return E.mul(self._c(o), self)
    def __truediv__(self, o): return E.div(self, self._c(o))
    def __rtruediv__(self, o): return E.div(self._c(o), self)
    def __floordiv__(self, o): return E.floor_divide(self, self._c(o))
    def __mod__(self, o): return E.remainder(self, self._c(o))
    def __pow__(self, o): return E.pow(self, self._c(o))
    def __rpow__(self, o): return E.pow(self._c(o), self)
    def __matmul__(self, o): return L.matmul(self, o)
    def __rmatmul__(self, o): return L.matmul(Tensor(o), self)
    def __neg__(self): return E.neg(self)
    def __pos__(self): return self
    def __abs__(self): return E.abs(self)
    def __eq__(self, o): return E.eq(self, self._c(o))  # noqa: E704
    def __ne__(self, o): return E.ne(self, self._c(o))
    def __lt__(self, o): return E.lt(self, self._c(o))
    def __le__(self, o): return E.le(self, self._c(o))
    def __gt__(self, o): return E.gt(self, self._c(o))
    def __ge__(self, o): return E.ge(self, self._c(o))
    def __and__(self, o): return E.logical_and(self, self._c(o))
    def __or__(self, o): return E.logical_or(self, self._c(o))
    def __invert__(self): return E.logical_not(self)

    add = __add__
    sub = __sub__
    mul = __mul__
    div = __truediv__
    matmul = __matmul__
    neg = __neg__

    def pow(self, e): return E.pow(self, self._c(e))
    def abs(self): return E.abs(self)
    def sign(self): return E.sign(self)
    def exp(self): return E.exp(self)
    def log(self): return E.log(self)
    def sqrt(self): return E.sqrt(self)
    def rsqrt(self): return E.rsqrt(self)
    def sin(self): return E.sin(self)
    def cos(self): return E.cos(self)
    def tanh(self): return E.tanh(self)
    def sigmoid(self): return E.sigmoid(self)
    def relu(self): return E.relu(self)
    def square(self): return E.mul(self, self)
    def maximum(self, o): return E.maximum(self, self._c(o))
    def minimum(self, o): return E.minimum(self, self._c(o))

    def clamp(self, min=None, max=None):  # noqa: A002
        return E.clamp(self, min=min, max=max)

    clip = clamp

    def masked_fill(self, mask, value):
        return E.where(mask, self._c(value).to(self.dtype), self)

    def where(self, cond, other):
        return E.where(cond, self, self._c(other))

    # ------------------------------------------------------------ reductions
    def sum(self, dim=None, keepdim=False, dtype=None):
        r = R.sum(self, dim=dim, keepdim=keepdim)
        return r.to(dtype) if dtype is not None else r

    def mean(self, dim=None, keepdim=False):
        return R.mean(self, dim=dim, keepdim=keepdim)

    def _maxmin(self, red, arg, dim, keepdim, other):
        if isinstance(dim, Tensor):
            other, dim = dim, None
        if other is not None:
            return (E.maximum if red is R.amax else E.minimum)(self, self._c(other))
        if dim is None:
            return red(self)
        from .functional import _minmax_result
        return _minmax_result(red(self, dim=dim, keepdim=keepdim), arg(self, dim=dim, keepdim=keepdim))

    def max(self, dim=None, keepdim=False, other=None):
        return self._maxmin(R.amax, R.argmax, dim, keepdim, other)

    def min(self, dim=None, keepdim=False, other=None):
        return self._maxmin(R.amin, R.argmin, dim, keepdim, other)

    def amax(self, dim=None, keepdim=False): return R.amax(self, dim=dim, keepdim=keepdim)
    def amin(self, dim=None, keepdim=False): return R.amin(self, dim=dim, keepdim=keepdim)
    def argmax(self, dim=None, keepdim=False): return R.argmax(self, dim=dim, keepdim=keepdim)
    def argmin(self, dim=None, keepdim=False): return R.argmin(self, dim=dim, keepdim=keepdim)

    def var(self, dim=None, unbiased=None, keepdim=False, correction=None):
        c = correction if correction is not None else (0 if unbiased is False else 1)
        return R.var(self, dim=dim, correction=c, keepdim=keepdim)

    def std(self, dim=None, unbiased=None, keepdim=False, correction=None):
        return self.var(dim, unbiased, keepdim, correction).sqrt()

    def prod(self, dim=None, keepdim=False): return R.prod(self, dim=dim, keepdim=keepdim)

    def logsumexp(self, dim, keepdim=False): return R.logsumexp(self, dim=dim, keepdim=keepdim)

    def all(self, dim=None):
        return Tensor._wrap(np.asarray(np.all(self._data, axis=dim)))

    def any(self, dim=None):
        return Tensor._wrap(np.asarray(np.any(self._data, axis=dim)))

    def softmax(self, dim): return N.softmax(self, dim=dim)
    def log_softmax(self, dim): return N.log_softmax(self, dim=dim)

    # ------------------------------------------------------------ shape
    def reshape(self, *shape):
        shape = _shape_arg(shape)
        if shape == self._data.shape and not _F.capture_hooks:
            return self
        return S.reshape(self, shape=shape)

    def view(self, *shape):
        if len(shape) == 1 and isinstance(shape[0], (D.dtype, np.dtype, str)):
            raise EdgeTorchError("view(dtype) is not supported; use .to(dtype)")
        return self.reshape(*shape)

    def view_as(self, other): return self.reshape(other.shape)
    reshape_as = view_as

    def permute(self, *dims):
        return S.permute(self, dims=_shape_arg(dims))

    def transpose(self, d0, d1):
        n = self.ndim
        p = list(range(n))
        d0, d1 = d0 % max(n, 1), d1 % max(n, 1)
        p[d0], p[d1] = p[d1], p[d0]
        return S.permute(self, dims=tuple(p))

    def t(self):
        if self.ndim > 2:
            raise EdgeTorchError(f"t() expects a tensor with <= 2 dims, got {self.ndim}")
        return self.transpose(0, 1) if self.ndim == 2 else self

    def squeeze(self, dim=None):
        s = self.shape
        if dim is None:
            new = tuple(d for d in s if d != 1)
        else:
            dims = {d % max(self.ndim, 1) for d in ((dim,) if isinstance(dim, int) else dim)}
            new = tuple(d for i, d in enumerate(s) if not (i in dims and d == 1))
        return self.reshape(new)

    def unsqueeze(self, dim):
        n = self.ndim + 1
        if not -n <= dim < n:
            raise EdgeTorchError(f"unsqueeze: dim {dim} out of range for rank {self.ndim}")
        s = list(self.shape)
        s.insert(dim % n, 1)
        return self.reshape(tuple(s))

    def flatten(self, start_dim=0, end_dim=-1):
        if self.ndim == 0:
            return self.reshape(1)
        s = self.shape
        a, b = start_dim % self.ndim, end_dim % self.ndim
        n = 1
        for d in s[a:b + 1]:
            n *= d
        return self.reshape(s[:a] + (n,) + s[b + 1:])

    def unflatten(self, dim, sizes):
        s = self.shape
        d = dim % self.ndim
        return self.reshape(s[:d] + tuple(sizes) + s[d + 1:])

    def expand(self, *shape):
        shape = _shape_arg(shape)
        if shape == self._data.shape and not _F.capture_hooks:
            return self
        return S.expand(self, shape=shape)

    def expand_as(self, other): return self.expand(*other.shape)

    def broadcast_to(self, shape): return self.expand(*shape)

    def repeat(self, *repeats): return S.repeat(self, repeats=_shape_arg(repeats))

    def repeat_interleave(self, repeats, dim=None):
        if not isinstance(repeats, int):
            raise EdgeTorchError("repeat_interleave supports an int number of repeats")
        if dim is None:
            return self.reshape(-1).repeat_interleave(repeats, 0)
        d = dim % self.ndim
        s = tuple(self.shape)
        x = self.unsqueeze(d + 1).expand(*(s[:d + 1] + (repeats,) + s[d + 1:]))
        return x.reshape(s[:d] + (s[d] * repeats,) + s[d + 1:])

    def narrow(self, dim, start, length):
        key = [slice(None)] * self.ndim
        key[dim % self.ndim] = slice(start, start + length)
        return I.getitem(self, index=tuple(key))

    def split(self, split_size, dim=0):
        from .functional import split
        return split(self, split_size, dim)

    def chunk(self, chunks, dim=0):
        from .functional import chunk
        return chunk(self, chunks, dim)

    def unbind(self, dim=0):
        d = dim % self.ndim
        return tuple(self.narrow(d, i, 1).squeeze(d) for i in range(self._data.shape[d]))  # count is static

    def gather(self, dim, index): return I.gather(self, index, dim=dim)
    def scatter_add(self, dim, index, src): return I.scatter_add(self, index, src, dim=dim)
    def index_select(self, dim, index): return I.index_select(self, index, dim=dim)
    def triu(self, diagonal=0): return S.triu(self, diagonal=diagonal)
    def tril(self, diagonal=0): return S.tril(self, diagonal=diagonal)
    def roll(self, shifts, dims=None): return S.roll(self, shifts=shifts, dims=dims)
    def flip(self, dims): return S.flip(self, dims=tuple(dims) if not isinstance(dims, int) else (dims,))

    # ------------------------------------------------------------ indexing
    def __getitem__(self, key):
        spec, tens = _index_spec(key)
        return I.getitem(self, *tens, index=spec)

    def __setitem__(self, key, value):
        spec, tens = _index_spec(key)
        v = value if isinstance(value, Tensor) else self._c(value)
        if _F.capture_hooks or (grad_mode.is_grad_enabled() and (self.requires_grad or v.requires_grad)):
            self._check_inplace()
            out = I.index_put(self, v.to(self.dtype), *tens, index=spec)
            self._take(out)
        else:
            k1, k2 = I._split_key(spec, [t._data for t in tens])
            if k2 is None:
                self._data[k1] = v._data
            else:
                self._data[k1][k2] = v._data
            self._version.v += 1

    # ------------------------------------------------------------ in-place
    def _check_inplace(self):
        if self.grad_fn is None and self.requires_grad and grad_mode.is_grad_enabled():
            raise AutogradError("a leaf tensor that requires grad is being used in an in-place "
                                "operation; wrap it in `with et.no_grad():` (e.g. for an "
                                "optimizer update) or clone() it first")

    def _take(self, out):
        """Become `out` in place: write its values into our buffer, adopt its history."""
        if out._data.shape != self._data.shape:
            raise EdgeTorchError(f"in-place op: result shape {out._data.shape} does not match "
                                 f"the tensor's shape {self._data.shape}")
        if not self._data.flags.writeable:
            self._data = np.array(self._data)
        node = out.grad_fn
        if node is not None and any(t is self for t in node._inputs):
            # the op read this tensor's old value: keep a copy for backward,
            # since the write below overwrites it (edges were taken already)
            ins = list(node._inputs)
            for i, t in enumerate(ins):
                if t is self:
                    ins[i] = Tensor._wrap(self._data.copy())
                    ins[i].requires_grad = self.requires_grad
            node._inputs = tuple(ins)
            node._in_versions = tuple(0 if t is None else t._version.v for t in ins)
        np.copyto(self._data, out._data, casting="unsafe")
        self._version.v += 1
        for h in _F.capture_hooks:
            h.rebind(self, out)
        if out.grad_fn is not None:
            # the node's output is now this tensor's buffer and version
            out.grad_fn._out = self._data
            out.grad_fn._out_version = self._version
            out.grad_fn._out_ver_seen = self._version.v
            self.grad_fn = out.grad_fn
            self.requires_grad = True
        return self

    def _inplace(self, fn, *args):
        self._check_inplace()
        if grad_mode.is_grad_enabled() and (self.requires_grad or any(
                isinstance(a, Tensor) and a.requires_grad for a in args)):
            return self._take(fn(self, *args))
        with grad_mode.no_grad():
            out = fn(self, *args)
        return self._take(out)

    def add_(self, o, alpha=1):
        return self._inplace(lambda s, v: s + v * alpha if alpha != 1 else s + v, self._c(o))

    def sub_(self, o, alpha=1):
        return self._inplace(lambda s, v: s - v * alpha if alpha != 1 else s - v, self._c(o))

    def mul_(self, o): return self._inplace(lambda s, v: s * v, self._c(o))
    def div_(self, o): return self._inplace(lambda s, v: s / v, self._c(o))
    def pow_(self, o): return self._inplace(lambda s, v: s ** v, self._c(o))
    def clamp_(self, min=None, max=None): return self._inplace(lambda s: s.clamp(min, max))  # noqa: A002
    def relu_(self): return self._inplace(lambda s: s.relu())
    def sqrt_(self): return self._inplace(lambda s: s.sqrt())
    def exp_(self): return self._inplace(lambda s: s.exp())
    def neg_(self): return self._inplace(lambda s: -s)
    def masked_fill_(self, mask, value): return self._inplace(lambda s: s.masked_fill(mask, value))

    def addcmul_(self, a, b, value=1):
        return self._inplace(lambda s: s + a * b * value)

    def addcdiv_(self, a, b, value=1):
        return self._inplace(lambda s: s + a / b * value)

    def lerp_(self, end, weight):
        return self._inplace(lambda s: s + (self._c(end) - s) * weight)

    def copy_(self, src):
        src = src if isinstance(src, Tensor) else Tensor(src)

        def f(s, v):
            out = v.to(s.dtype).expand(*s.shape)
            return E.clone(out) if out is v else out
        return self._inplace(f, src)

    def zero_(self): return self.fill_(0)

    def fill_(self, value):
        if _F.capture_hooks:
            _F.data_guard(self, "fill_()/zero_() (write a new tensor instead)")
        self._check_inplace()
        self._data[...] = value
        self._version.v += 1
        return self

    def uniform_(self, a=0.0, b=1.0, generator=None):
        from .random import _rng
        self._check_inplace()
        self._data[...] = _rng(generator).uniform(a, b, size=self._data.shape)
        self._version.v += 1
        return self

    def normal_(self, mean=0.0, std=1.0, generator=None):
        from .random import _rng
        self._check_inplace()
        self._data[...] = _rng(generator).normal(mean, std, size=self._data.shape)
        self._version.v += 1
        return self

    __iadd__ = add_
    __isub__ = sub_
    __imul__ = mul_
    __itruediv__ = div_


def _shape_arg(shape):
    if len(shape) == 1 and isinstance(shape[0], (tuple, list, Size)):
        shape = tuple(shape[0])
    return tuple(s if isinstance(s, int) else int(s) for s in shape)  # keeps SymInts


def _index_spec(key):
    """Split an index key into a hashable spec (tensors replaced by SLOT) and the tensors."""
    if not isinstance(key, tuple):
        key = (key,)
    spec, tens = [], []
    for k in key:
        if isinstance(k, Tensor):
            if k._data.ndim == 0 and k._data.dtype.kind in "iu":
                spec.append(int(k._data))
                continue
            spec.append(SLOT)
            tens.append(k)  # the tensor itself, so capture sees the traced index
        elif isinstance(k, (list, np.ndarray)):
            arr = np.asarray(k)
            if arr.dtype.kind not in "iub":
                raise EdgeTorchError(f"index arrays must be integer or bool, got {arr.dtype}")
            spec.append(SLOT)
            tens.append(Tensor._wrap(arr if arr.dtype.kind == "b" else arr.astype(np.int64)))
        elif isinstance(k, (int, np.integer)) and not isinstance(k, bool):
            spec.append(int(k))
        elif k is None or k is Ellipsis or isinstance(k, slice):
            if isinstance(k, slice):
                k = slice(*(None if v is None else int(v) for v in (k.start, k.stop, k.step)))
            spec.append(k)
        else:
            raise EdgeTorchError(f"unsupported index {k!r} of type {type(k).__name__}")
    return tuple(spec), tens
