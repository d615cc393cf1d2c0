"""Neural-network ops with fused kernels: softmax, norms, embedding,
batch_norm (inference form), rotary embedding, scaled-dot-product attention."""
import math

import numpy as np

from .._errors import ShapeError
from .elementwise import sum_to
from .index import check_range
from .registry import Sample, TensorMeta, float_dtype, norm_dim, numel, op, same


def _softmax_samples(rng):
    x = rng.normal(size=(3, 4, 5)) * 3
    return [Sample((x,), dict(dim=-1)), Sample((x,), dict(dim=1)), Sample((x[0, 0],), dict(dim=0))]


def _softmax_meta(x, *, dim):
    norm_dim(dim, len(x.shape))
    return TensorMeta(tuple(x.shape), float_dtype(x.dtype))


@op(meta=_softmax_meta, samples=_softmax_samples)
def softmax(x, *, dim):
    m = np.max(x, axis=dim, keepdims=True)
    e = np.exp(x - m)
    return e / np.sum(e, axis=dim, keepdims=True)


@softmax.grad
def _(ctx, g):
    y = ctx.output
    d = ctx.attrs["dim"]
    return (y * (g - (g * y).sum(dim=d, keepdim=True)),)


@op(meta=_softmax_meta, samples=_softmax_samples)
def log_softmax(x, *, dim):
    m = np.max(x, axis=dim, keepdims=True)
    s = x - m
    return s - np.log(np.sum(np.exp(s), axis=dim, keepdims=True))


@log_softmax.grad
def _(ctx, g):
    y = ctx.output
    d = ctx.attrs["dim"]
    return (g - y.exp() * g.sum(dim=d, keepdim=True),)


def _norm_dims(x, normalized_shape, name):
    ns = tuple(normalized_shape)
    if len(ns) > len(x.shape) or any(not (a == b) for a, b in zip(ns, tuple(x.shape)[len(x.shape) - len(ns):])):
        raise ShapeError(f"{name}: normalized_shape {ns} does not match the trailing dims of "
                         f"input shape {tuple(x.shape)}")
    return tuple(range(len(x.shape) - len(ns), len(x.shape)))


def _ln_meta(x, w=None, b=None, *, normalized_shape, eps=1e-5):
    _norm_dims(x, normalized_shape, "layer_norm")
    for name, t in (("weight", w), ("bias", b)):
        if t is not None and tuple(t.shape) != tuple(normalized_shape):
            raise ShapeError(f"layer_norm: {name} has shape {tuple(t.shape)}; expected "
                             f"{tuple(normalized_shape)}")
    return same(x)


def _ln_samples(rng):
    x = rng.normal(size=(2, 3, 6))
    return [Sample((x, rng.normal(size=(6,)), rng.normal(size=(6,))), dict(normalized_shape=(6,))),
            Sample((x, None, None), dict(normalized_shape=(3, 6)), note="no affine, 2 dims")]


@op(meta=_ln_meta, samples=_ln_samples)
def layer_norm(x, w=None, b=None, *, normalized_shape, eps=1e-5):
    ax = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    mu = x.mean(axis=ax, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=ax, keepdims=True)
    y = xc / np.sqrt(var + eps)
    if w is not None:
        y = y * w
    if b is not None:
        y = y + b
    return y.astype(x.dtype, copy=False)


@layer_norm.grad
def _(ctx, g):
    x, w, b = ctx.inputs
    ax = _norm_dims(x, ctx.attrs["normalized_shape"], "layer_norm")
    eps = ctx.attrs.get("eps", 1e-5)
    xc = x - x.mean(dim=ax, keepdim=True)
    rstd = ((xc * xc).mean(dim=ax, keepdim=True) + eps).rsqrt()
    xhat = xc * rstd
    gx_hat = g * w if w is not None else g
    n = ctx.needs_input_grad
    gx = rstd * (gx_hat - gx_hat.mean(dim=ax, keepdim=True)
                 - xhat * (gx_hat * xhat).mean(dim=ax, keepdim=True)) if n[0] else None
    lead = tuple(range(x.ndim - len(ax)))
    gw = (g * xhat).sum(dim=lead) if w is not None and n[1] else None
    gb = g.sum(dim=lead) if b is not None and n[2] else None
    return gx, gw, gb


def _rms_meta(x, w=None, *, normalized_shape, eps=None):
    _norm_dims(x, normalized_shape, "rms_norm")
    return same(x)


def _rms_samples(rng):
    x = rng.normal(size=(2, 3, 6))
    return [Sample((x, rng.normal(size=(6,))), dict(normalized_shape=(6,), eps=1e-6)),
            Sample((x, None), dict(normalized_shape=(6,)), note="no weight, eps=None")]


def _rms_eps(eps, dtype):
    return float(np.finfo(dtype).eps) if eps is None else eps


@op(meta=_rms_meta, samples=_rms_samples)
def rms_norm(x, w=None, *, normalized_shape, eps=None):
    """x / sqrt(mean(x^2) + eps) * w (Zhang & Sennrich 2019); eps=None uses finfo.eps."""
    ax = tuple(range(x.ndim - len(normalized_shape), x.ndim))
    ms = (x * x).mean(axis=ax, keepdims=True)
    y = x / np.sqrt(ms + _rms_eps(eps, x.dtype))
    if w is not None:
        y = y * w
    return y.astype(x.dtype, copy=False)


@rms_norm.grad
def _(ctx, g):
    x, w = ctx.inputs
    ax = _norm_dims(x, ctx.attrs["normalized_shape"], "rms_norm")
    eps = _rms_eps(ctx.attrs.get("eps"), x.dtype.np)
    r = ((x * x).mean(dim=ax, keepdim=True) + eps).rsqrt()
    xhat = x * r
    gx_hat = g * w if w is not None else g
    gx = r * (gx_hat - xhat * (gx_hat * xhat).mean(dim=ax, keepdim=True))
    gw = (g * xhat).sum(dim=tuple(range(x.ndim - len(ax)))) if w is not None else None
    return gx, gw


def _emb_meta(ids, weight, *, padding_idx=None):
    if len(weight.shape) != 2:
        raise ShapeError(f"embedding: weight must be 2-d, got shape {tuple(weight.shape)}")
    if ids.dtype.kind not in "iu":
        raise ShapeError(f"embedding: indices must be an integer tensor, got {ids.dtype}")
    return TensorMeta(tuple(ids.shape) + (weight.shape[1],), weight.dtype)


@op(meta=_emb_meta, samples=lambda rng: [
    Sample((rng.integers(0, 7, size=(2, 5)), rng.normal(size=(7, 3))), nondiff=(0,)),
    Sample((np.array([0, 3, 3, 6]), rng.normal(size=(7, 4))), dict(padding_idx=3), nondiff=(0,),
           gradcheck=False, note="padding_idx row gets no grad")])
def embedding(ids, weight, *, padding_idx=None):
    check_range(ids, weight.shape[0], "embedding")
    return weight[ids]


@embedding.grad
def _(ctx, g):
    from .index import index_add
    ids, w = ctx.inputs
    flat = ids.reshape(-1)
    gw = index_add(w.new_zeros(w.shape).to(g.dtype), flat, g.reshape(-1, w.shape[1]), dim=0)
    p = ctx.attrs.get("padding_idx")
    if p is not None:
        keep = w.new_ones((w.shape[0], 1)).to(g.dtype)
        keep[p % w.shape[0]] = 0.0
        gw = gw * keep
    return None, gw


def _bn_meta(x, mean, var, w=None, b=None, *, eps=1e-5):
    if len(x.shape) < 2:
        raise ShapeError(f"batch_norm: input must have a channel dim, got shape {tuple(x.shape)}")
    c = x.shape[1]
    for name, t in (("running_mean", mean), ("running_var", var), ("weight", w), ("bias", b)):
        if t is not None and not (tuple(t.shape) == (c,)):
            raise ShapeError(f"batch_norm: {name} has shape {tuple(t.shape)}; expected ({c},)")
    return same(x)


def _bn_samples(rng):
    x = rng.normal(size=(4, 3, 2, 5))
    c = 3
    return [Sample((x, rng.normal(size=c), rng.uniform(0.5, 2, size=c), rng.normal(size=c), rng.normal(size=c)),
                   nondiff=(1, 2)),
            Sample((x[:, :, 0, 0], rng.normal(size=c), rng.uniform(0.5, 2, size=c), None, None), nondiff=(1, 2))]


def _chan(t, ndim):
    return t.reshape((1, -1) + (1,) * (ndim - 2))


@op(meta=_bn_meta, samples=_bn_samples)
def batch_norm(x, running_mean, running_var, w=None, b=None, *, eps=1e-5):
    """Batch norm with given statistics (eval form); training stats are composed in F."""
    scale = 1.0 / np.sqrt(running_var + eps)
    if w is not None:
        scale = scale * w
    shift = -running_mean * scale
    if b is not None:
        shift = shift + b
    return (x * _chan(scale, x.ndim) + _chan(shift, x.ndim)).astype(x.dtype, copy=False)


@batch_norm.grad
def _(ctx, g):
    x, m, v, w, b = ctx.inputs
    rstd = (v + ctx.attrs.get("eps", 1e-5)).rsqrt()
    sc = rstd * w if w is not None else rstd
    red = (0,) + tuple(range(2, x.ndim))
    gw = (g * (x - _chan(m, x.ndim)) * _chan(rstd, x.ndim)).sum(dim=red) if w is not None else None
    gb = g.sum(dim=red) if b is not None else None
    return g * _chan(sc, x.ndim), None, None, gw, gb


def _bnt_meta(x, w=None, b=None, *, eps=1e-5):
    if len(x.shape) < 2:
        raise ShapeError(f"batch_norm: input must have a channel dim, got shape {tuple(x.shape)}")
    c = x.shape[1]
    for name, t in (("weight", w), ("bias", b)):
        if t is not None and not (tuple(t.shape) == (c,)):
            raise ShapeError(f"batch_norm: {name} has shape {tuple(t.shape)}; expected ({c},)")
    return same(x)


def _bnt_samples(rng):
    return [Sample((rng.normal(size=(4, 3, 2, 5)), rng.normal(size=3), rng.normal(size=3))),
            Sample((rng.normal(size=(6, 4)) * 3 + 1, None, None), note="(N, C), no affine"),
            Sample((rng.normal(size=(2, 5, 3)), rng.normal(size=5), None), note="(N, C, L), weight only")]


@op(meta=_bnt_meta, samples=_bnt_samples)
def batch_norm_train(x, w=None, b=None, *, eps=1e-5):
    """Batch norm with the batch's own statistics (training mode: biased variance), one fused
    loop per channel (edgetorch/_native/norm.py) instead of ~20 elementwise passes."""
    from .._native import norm
    return norm.forward(x, w, b, eps).astype(x.dtype, copy=False)


@batch_norm_train.grad
def _(ctx, g):
    x, w, b = ctx.inputs
    n, c = x.numel(), x.shape[1]
    packed = batch_norm_train_backward(g, x, w, eps=ctx.attrs.get("eps", 1e-5))
    gx = packed[:n].reshape(x.shape) if ctx.needs_input_grad[0] else None
    gw = packed[n:n + c] if w is not None and ctx.needs_input_grad[1] else None
    gb = packed[n + c:] if b is not None and ctx.needs_input_grad[2] else None
    return gx, gw, gb


def _bntb_meta(g, x, w=None, *, eps=1e-5):
    return TensorMeta((numel(x.shape) + 2 * x.shape[1],), g.dtype)


@op(meta=_bntb_meta)
def batch_norm_train_backward(g, x, w=None, *, eps=1e-5):
    """Gradients of batch_norm_train, packed in one vector: x's (flattened), then the
    weight's and the bias's (C each)."""
    from .._native import norm
    n, c = x.size, x.shape[1]
    out = np.empty(n + 2 * c, dtype=g.dtype if g.dtype in (np.float32, np.float64) else np.float32)
    _, gw, gb = norm.backward(g, x, w, eps, gx=out[:n])
    out[n:n + c] = gw
    out[n + c:] = gb
    return out.astype(g.dtype, copy=False)


def _rope_meta(x, cos, sin):
    if x.shape[-1] % 2:
        raise ShapeError(f"rotary_embedding: last dim {x.shape[-1]} must be even")
    return same(x)


def _rope_samples(rng):
    t, d = 5, 6
    ang = rng.uniform(0, 3, size=(t, d // 2))
    cos = np.concatenate([np.cos(ang)] * 2, -1)
    sin = np.concatenate([np.sin(ang)] * 2, -1)
    return [Sample((rng.normal(size=(2, 3, t, d)), cos, sin), nondiff=(1, 2))]


def _rotate_half(x):
    h = x.shape[-1] // 2
    return np.concatenate([-x[..., h:], x[..., :h]], axis=-1)


@op(meta=_rope_meta, samples=_rope_samples)
def rotary_embedding(x, cos, sin):
    """Rotary position embedding (Su et al. 2021), rotate-half layout as in HF Llama:
    x * cos + rotate_half(x) * sin, with cos/sin of shape (..., T, head_dim)."""
    return (x * cos + _rotate_half(x) * sin).astype(x.dtype, copy=False)


@rotary_embedding.grad
def _(ctx, g):
    x, cos, sin = ctx.inputs
    h = x.shape[-1] // 2
    u = g * sin
    from .shape import cat
    gx = g * cos + cat(u[..., h:], -u[..., :h], dim=-1)
    n = ctx.needs_input_grad
    rh = cat(-x[..., h:], x[..., :h], dim=-1)
    return gx, sum_to(g * x, cos.shape) if n[1] else None, sum_to(g * rh, sin.shape) if n[2] else None


# --------------------------------------------------------------- attention

def _sdpa_meta(q, k, v, mask=None, *, is_causal=False, scale=None, enable_gqa=False):
    sq, sk, sv = tuple(q.shape), tuple(k.shape), tuple(v.shape)
    if len(sq) < 2 or len(sk) != len(sq) or len(sv) != len(sq):
        raise ShapeError(f"scaled_dot_product_attention: q, k, v must share a rank >= 2; got "
                         f"{sq}, {sk}, {sv}")
    if not (sq[-1] == sk[-1]) or not (sk[-2] == sv[-2]):
        raise ShapeError(f"scaled_dot_product_attention: q {sq}, k {sk}, v {sv}: need "
                         "q[-1] == k[-1] and k[-2] == v[-2]")
    if len(sq) >= 3 and not (sq[-3] == sk[-3]):
        if not enable_gqa or not (sq[-3] % sk[-3] == 0):
            raise ShapeError(f"scaled_dot_product_attention: {sq[-3]} query heads vs {sk[-3]} "
                             "key heads; pass enable_gqa=True with a divisible head count")
    return TensorMeta(sq[:-1] + (sv[-1],), q.dtype)


def _sdpa_samples(rng):
    r = rng.normal
    q, k, v = r(size=(2, 4, 3, 8)), r(size=(2, 4, 5, 8)), r(size=(2, 4, 5, 6))
    return [Sample((q, k, v)),
            Sample((r(size=(1, 2, 5, 4)), r(size=(1, 2, 5, 4)), r(size=(1, 2, 5, 4))), dict(is_causal=True)),
            Sample((q, k, v, rng.random((3, 5)) > 0.3), nondiff=(3,), note="bool mask"),
            Sample((q, k, v, r(size=(2, 1, 3, 5))), dict(scale=0.5), note="float mask"),
            Sample((r(size=(1, 4, 3, 8)), r(size=(1, 2, 5, 8)), r(size=(1, 2, 5, 8))),
                   dict(enable_gqa=True), note="grouped-query"),
            Sample((r(size=(3, 8)), r(size=(5, 8)), r(size=(5, 8))), dict(is_causal=True), note="2-d")]


def _gqa_rep(q, k):
    if q.ndim >= 3 and q.shape[-3] != k.shape[-3]:
        return q.shape[-3] // k.shape[-3]
    return 1


def _sdpa_bias(mask, is_causal, L, S, dtype):
    """Additive bias (0 / -inf) from a bool or float mask plus the causal rule."""
    bias = None
    if is_causal:
        bias = np.where(np.tril(np.ones((L, S), dtype=bool)), 0.0, -np.inf).astype(dtype)
    if mask is not None:
        mb = np.where(mask, 0.0, -np.inf).astype(dtype) if mask.dtype == np.bool_ else mask.astype(dtype)
        bias = mb if bias is None else bias + mb
    return bias


@op(meta=_sdpa_meta, samples=_sdpa_samples)
def scaled_dot_product_attention(q, k, v, mask=None, *, is_causal=False, scale=None, enable_gqa=False):
    """softmax(q k^T * scale + mask) v (Vaswani et al. 2017); bool masks mark
    positions that may attend; causal masks are aligned top-left as in torch."""
    rep = _gqa_rep(q, k)
    if rep > 1:
        k = np.repeat(k, rep, axis=-3)
        v = np.repeat(v, rep, axis=-3)
    sc = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    s = np.matmul(q, np.swapaxes(k, -1, -2)) * sc
    bias = _sdpa_bias(mask, is_causal, q.shape[-2], k.shape[-2], s.dtype)
    if bias is not None:
        s = s + bias
    m = np.max(s, axis=-1, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    p = np.exp(s - m)
    den = np.sum(p, axis=-1, keepdims=True)
    p = p / np.where(den == 0, 1, den)  # fully masked rows give zeros, not NaN
    return np.matmul(p, v).astype(q.dtype, copy=False)


@scaled_dot_product_attention.grad
def _(ctx, g):
    from .linalg import matmul
    from .._tensor import Tensor
    q, k, v, mask = ctx.inputs
    a = ctx.attrs
    rep = _gqa_rep(q, k)
    ke = k.repeat_interleave(rep, dim=-3) if rep > 1 else k
    ve = v.repeat_interleave(rep, dim=-3) if rep > 1 else v
    sc = 1.0 / math.sqrt(q.shape[-1]) if a.get("scale") is None else a["scale"]
    s = matmul(q, ke.mT) * sc
    const_mask = None if mask is None or mask.requires_grad else mask.numpy()
    bias = _sdpa_bias(const_mask, a.get("is_causal", False), q.shape[-2], k.shape[-2], s.dtype.np)
    if bias is not None:
        s = s + Tensor(bias)
    if mask is not None and mask.requires_grad:
        s = s + mask
    p = s.softmax(-1)
    p = where_finite(p)
    gv = matmul(p.mT, g)
    dp = matmul(g, ve.mT)
    ds = p * (dp - (dp * p).sum(dim=-1, keepdim=True))
    gq = matmul(ds, ke) * sc
    gk = matmul(ds.mT, q) * sc
    if rep > 1:
        shp = tuple(k.shape[:-3]) + (k.shape[-3], rep) + tuple(k.shape[-2:])
        gk = gk.reshape(shp).sum(dim=-3)
        gv = gv.reshape(tuple(v.shape[:-3]) + (v.shape[-3], rep) + tuple(v.shape[-2:])).sum(dim=-3)
    gm = None
    if mask is not None and mask.requires_grad:
        gm = sum_to(ds, mask.shape)
    return gq, gk, gv, gm


def where_finite(p):
    from .elementwise import where
    return where(p == p, p, 0.0)
