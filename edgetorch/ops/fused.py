"""Fused ops the exporter's passes produce (linear/conv + bias + activation,
residual add + layer norm, residual add + ReLU, attention over a packed q/k/v projection, SwiGLU).

They appear only in exported graphs, never in eager code, so they have no
backward; their forwards are the eager oracle for the runtime's fused kernels.
"""
import numpy as np

from . import conv as C
from . import elementwise as E
from . import nn as N
from .linalg import _linear_meta
from .registry import Sample, TensorMeta, op

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


@op(meta=lambda g, u: _same_shape_meta(g, u, "swiglu"), fused=True,
    samples=lambda rng: [Sample((rng.normal(size=(2, 3, 5)), rng.normal(size=(2, 3, 5))))])
def swiglu(g, u):
    """silu(g) * u: the gated feed-forward of Llama-style MLPs, one pass instead of two."""
    return E.silu.forward(g) * u


def _same_shape_meta(g, u, what):
    from .._errors import ShapeError
    if tuple(g.shape) != tuple(u.shape) or g.dtype != u.dtype:
        raise ShapeError(f"{what}: inputs {g.dtype}{tuple(g.shape)} and {u.dtype}{tuple(u.shape)} must match")
    return TensorMeta(tuple(g.shape), g.dtype)


def _add_ln_meta(x, r, w=None, b=None, *, normalized_shape, eps=1e-5):
    from .._errors import ShapeError
    if tuple(x.shape) != tuple(r.shape) or x.dtype != r.dtype:
        raise ShapeError(f"add_layer_norm: input {x.dtype}{tuple(x.shape)} and residual "
                         f"{r.dtype}{tuple(r.shape)} must match")
    return N.layer_norm.meta(x, w, b, normalized_shape=normalized_shape, eps=eps)


@op(meta=_add_ln_meta, fused=True,
    samples=lambda rng: [Sample((rng.normal(size=(2, 3, 6)), rng.normal(size=(2, 3, 6)), rng.normal(size=(6,)),
                                 rng.normal(size=(6,))), dict(normalized_shape=(6,), eps=1e-12)),
                         Sample((rng.normal(size=(5, 7)), rng.normal(size=(5, 7)), None, None),
                                dict(normalized_shape=(7,)), note="no affine")])
def add_layer_norm(x, r, w=None, b=None, *, normalized_shape, eps=1e-5):
    """layer_norm(x + r): a post-norm transformer's residual add and its norm in one pass over the
    rows (ONNX Runtime's SkipLayerNormalization)."""
    return N.layer_norm.forward(x + r, w, b, normalized_shape=normalized_shape, eps=eps)


def _packed_heads(qkv, heads, kv_heads):
    from .._errors import ShapeError
    shp = tuple(qkv.shape)
    ints = all(isinstance(h, (int, np.integer)) and not isinstance(h, bool) for h in (heads, kv_heads))
    parts = heads + 2 * kv_heads if ints else 0
    if not ints or len(shp) != 3 or not isinstance(shp[2], (int, np.integer)) or heads < 1 or kv_heads < 1 \
            or heads % kv_heads or shp[2] % parts:
        raise ShapeError(f"packed_attention: qkv {shp} does not hold {heads} query heads and 2 x {kv_heads} "
                         "key/value heads of one size along its last dim (batch, seq, (h + 2 kv) * d)")
    return int(shp[2]) // parts


def _packed_attn_meta(qkv, mask=None, *, heads, kv_heads, is_causal=False, scale=None):
    d = _packed_heads(qkv, heads, kv_heads)
    return TensorMeta((qkv.shape[0], qkv.shape[1], heads * d), qkv.dtype)


def _packed_attn_samples(rng):
    x = rng.normal(size=(2, 5, 3 * 4 * 8))
    return [Sample((x, rng.random((2, 1, 1, 5)) > 0.3), dict(heads=4, kv_heads=4), note="padding mask"),
            Sample((rng.normal(size=(1, 9, (4 + 2 * 2) * 6)),), dict(heads=4, kv_heads=2, is_causal=True, scale=0.3),
                   note="grouped-query, causal")]


@op(meta=_packed_attn_meta, fused=True, samples=_packed_attn_samples)
def packed_attention(qkv, mask=None, *, heads, kv_heads, is_causal=False, scale=None):
    """Multi-head attention over one packed projection qkv (B, T, [q heads | k heads | v heads] x d),
    output (B, T, heads x d): the q/k/v slices, their (B, T, h, d) -> (B, h, T, d) permutes,
    scaled_dot_product_attention and the permute back, as one op (ONNX Runtime's packed-QKV
    attention).  mask as scaled_dot_product_attention takes it."""
    d = _packed_heads(qkv, heads, kv_heads)
    B, T = qkv.shape[:2]

    def heads_of(lo, n):
        return qkv[:, :, lo * d:(lo + n) * d].reshape(B, T, n, d).transpose(0, 2, 1, 3)

    o = N.scaled_dot_product_attention.forward(heads_of(0, heads), heads_of(heads, kv_heads),
                                               heads_of(heads + kv_heads, kv_heads), mask, is_causal=is_causal,
                                               scale=scale, enable_gqa=heads != kv_heads)
    return np.ascontiguousarray(o.transpose(0, 2, 1, 3)).reshape(B, T, heads * d)


@op(meta=lambda a, b: _same_shape_meta(a, b, "add_relu"), fused=True,
    samples=lambda rng: [Sample((rng.normal(size=(2, 3, 4, 5)), rng.normal(size=(2, 3, 4, 5))))])
def add_relu(a, b):
    """relu(a + b): a residual block's sum and activation in one pass (ResNets)."""
    return np.maximum(a + b, 0).astype(a.dtype, copy=False)
