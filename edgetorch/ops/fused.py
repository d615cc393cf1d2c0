"""Fused ops the exporter's passes produce (linear/conv + bias + activation).

They appear only in exported graphs, never in eager code, so they have no
backward; their forwards are the eager oracle for the runtime's fused kernels.
"""
import numpy as np

from . import conv as C
from . import elementwise as E
from .linalg import _linear_meta
from .registry import Sample, op

_ACTS = {
    "relu": lambda y: np.maximum(y, 0).astype(y.dtype, copy=False),
    "silu": lambda y: E.silu.forward(y),
    "gelu": lambda y: E.gelu.forward(y),
    "gelu_tanh": lambda y: E.gelu.forward(y, approximate="tanh"),
    "sigmoid": lambda y: E.sigmoid.forward(y),
    "tanh": np.tanh,
}


def _act(y, activation):
    if activation is None:
        return y
    if activation not in _ACTS:
        raise ValueError(f"unknown activation {activation!r}; known: {sorted(_ACTS)}")
    return _ACTS[activation](y)


@op(meta=lambda x, w, b=None, *, activation=None: _linear_meta(x, w, b), fused=True,
    samples=lambda rng: [Sample((rng.normal(size=(3, 4)), rng.normal(size=(5, 4)), rng.normal(size=(5,))),
                                dict(activation=a)) for a in ("relu", "silu", "gelu", "gelu_tanh")])
def fused_linear(x, w, b=None, *, activation=None):
    """act(x @ w.T + b)."""
    y = np.matmul(x, w.T)
    if b is not None:
        y += b
    return _act(y, activation)


def _fconv_meta(x, w, b=None, *, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, activation=None):
    return C._conv_meta(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)


@op(meta=_fconv_meta, fused=True,
    samples=lambda rng: [Sample((rng.normal(size=(2, 3, 6, 5)), rng.normal(size=(4, 3, 3, 3)), rng.normal(size=(4,))),
                                dict(padding=(1, 1), activation="relu"))])
def fused_conv2d(x, w, b=None, *, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, activation=None):
    """act(conv2d(x, w) + b) (batch norm already folded into w, b by the exporter)."""
    return _act(C.conv2d.forward(x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups),
                activation)


@op(meta=lambda g, u: _same_shape_meta(g, u), fused=True,
    samples=lambda rng: [Sample((rng.normal(size=(2, 3, 5)), rng.normal(size=(2, 3, 5))))])
def swiglu(g, u):
    """silu(g) * u: the gated feed-forward of Llama-style MLPs, one pass instead of two."""
    return E.silu.forward(g) * u


def _same_shape_meta(g, u):
    from .._errors import ShapeError
    from .registry import TensorMeta
    if tuple(g.shape) != tuple(u.shape) or g.dtype != u.dtype:
        raise ShapeError(f"swiglu: gate {g.dtype}{tuple(g.shape)} and up {u.dtype}{tuple(u.shape)} must match")
    return TensorMeta(tuple(g.shape), g.dtype)
