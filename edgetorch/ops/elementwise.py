"""Elementwise ops: arithmetic, comparisons, where, clamp, activations."""
import math

import numpy as np

from . import _samples as S
from .registry import Sample, TensorMeta, broadcast, float_dtype, op, same


def sum_to(g, shape):
    """Reduce a broadcast gradient `g` back to `shape` (edgetorch ops)."""
    shape = tuple(shape)
    if tuple(g.shape) == shape:
        return g
    lead = g.ndim - len(shape)
    dims = tuple(range(lead)) + tuple(i + lead for i, s in enumerate(shape)
                                      if s == 1 and g.shape[i + lead] != 1)
    if dims:
        g = g.sum(dim=dims, keepdim=True)
    return g.reshape(shape) if tuple(g.shape) != shape else g


def _bool_meta(a, b):
    return TensorMeta(broadcast(a, b).shape, np.dtype(np.bool_))


def _unary_float(x, **a):
    return TensorMeta(tuple(x.shape), float_dtype(x.dtype))


# ------------------------------------------------------------------ arithmetic

@op(meta=broadcast, samples=S.binary)
def add(a, b):
    return np.add(a, b)


@add.grad
def _(ctx, g):
    a, b = ctx.inputs
    return sum_to(g, a.shape), sum_to(g, b.shape)


@op(meta=broadcast, samples=S.binary)
def sub(a, b):
    return np.subtract(a, b)


@sub.grad
def _(ctx, g):
    a, b = ctx.inputs
    return sum_to(g, a.shape), sum_to(-g, b.shape)


@op(meta=broadcast, samples=S.binary)
def mul(a, b):
    return np.multiply(a, b)


@mul.grad
def _(ctx, g):
    a, b = ctx.inputs
    n = ctx.needs_input_grad
    return (sum_to(g * b, a.shape) if n[0] else None,
            sum_to(g * a, b.shape) if n[1] else None)


def _div_meta(a, b):
    m = broadcast(a, b)
    return TensorMeta(m.shape, float_dtype(m.dtype))


@op(meta=_div_meta, samples=lambda rng: S.binary(rng, positive_b=True))
def div(a, b):
    return np.true_divide(a, b)


@div.grad
def _(ctx, g):
    a, b = ctx.inputs
    n = ctx.needs_input_grad
    return (sum_to(g / b, a.shape) if n[0] else None,
            sum_to(-g * a / (b * b), b.shape) if n[1] else None)


def _pow_samples(rng):
    x = np.abs(rng.normal(size=(3, 4))) + 0.5
    return [Sample((x, rng.uniform(-1.5, 2.5, size=(3, 4)))),
            Sample((x, np.array(2.0)), note="square"),
            Sample((x[:, :1], rng.uniform(0.5, 2, size=(1, 5))), note="broadcast")]


@op(meta=broadcast, samples=_pow_samples)
def pow(a, b):  # noqa: A001
    return np.power(a, b)


@pow.grad
def _(ctx, g):
    a, b = ctx.inputs
    n = ctx.needs_input_grad
    ga = sum_to(g * b * a ** (b - 1), a.shape) if n[0] else None
    gb = None
    if n[1]:
        # d/db a^b = a^b log a; defined as 0 where a == 0 (torch does the same)
        gb = sum_to(g * ctx.output * where(a > 0, a, 1.0).log(), b.shape)
    return ga, gb


@op(meta=broadcast, samples=S.binary)
def maximum(a, b):
    return np.maximum(a, b)


@maximum.grad
def _(ctx, g):
    a, b = ctx.inputs
    wa = (a > b).to(g.dtype) + (a == b).to(g.dtype) * 0.5
    return sum_to(g * wa, a.shape), sum_to(g * (1.0 - wa), b.shape)


@op(meta=broadcast, samples=S.binary)
def minimum(a, b):
    return np.minimum(a, b)


@minimum.grad
def _(ctx, g):
    a, b = ctx.inputs
    wa = (a < b).to(g.dtype) + (a == b).to(g.dtype) * 0.5
    return sum_to(g * wa, a.shape), sum_to(g * (1.0 - wa), b.shape)


@op(meta=broadcast, samples=lambda rng: S.binary(rng, positive_b=True))
def floor_divide(a, b):
    return np.floor_divide(a, b)


@op(meta=broadcast, samples=lambda rng: S.binary(rng, positive_b=True))
def remainder(a, b):
    return np.remainder(a, b)


# ------------------------------------------------------------------ comparisons

def _cmp_samples(rng):
    a = rng.integers(-2, 3, size=(3, 4)).astype(np.float64)
    return [Sample((a, rng.integers(-2, 3, size=(3, 4)).astype(np.float64))),
            Sample((a, np.array(0.0)), note="scalar")]


@op(meta=_bool_meta, samples=_cmp_samples)
def eq(a, b):
    return np.equal(a, b)


@op(meta=_bool_meta, samples=_cmp_samples)
def ne(a, b):
    return np.not_equal(a, b)


@op(meta=_bool_meta, samples=_cmp_samples)
def lt(a, b):
    return np.less(a, b)


@op(meta=_bool_meta, samples=_cmp_samples)
def le(a, b):
    return np.less_equal(a, b)


@op(meta=_bool_meta, samples=_cmp_samples)
def gt(a, b):
    return np.greater(a, b)


@op(meta=_bool_meta, samples=_cmp_samples)
def ge(a, b):
    return np.greater_equal(a, b)


def _logical_meta(a, b=None):
    return TensorMeta(broadcast(a, b).shape if b is not None else tuple(a.shape), np.dtype(np.bool_))


def _logic_samples(rng):
    return [Sample((rng.random((3, 4)) > 0.5, rng.random((3, 4)) > 0.5))]


@op(meta=_logical_meta, samples=_logic_samples)
def logical_and(a, b):
    return np.logical_and(a, b)


@op(meta=_logical_meta, samples=_logic_samples)
def logical_or(a, b):
    return np.logical_or(a, b)


@op(meta=_logical_meta, samples=lambda rng: [Sample((rng.random((3, 4)) > 0.5,))])
def logical_not(a):
    return np.logical_not(a)


# ------------------------------------------------------------------ selection

def _where_meta(c, a, b):
    m = broadcast(c, a, b)
    return TensorMeta(m.shape, np.result_type(a.dtype, b.dtype))


def _where_samples(rng):
    return [Sample((rng.random((3, 4)) > 0.5, rng.normal(size=(3, 4)), rng.normal(size=(3, 4))), nondiff=(0,)),
            Sample((rng.random((3, 1)) > 0.5, rng.normal(size=(1, 4)), rng.normal(size=(3, 4))),
                   nondiff=(0,), note="broadcast")]


@op(meta=_where_meta, samples=_where_samples)
def where(cond, a, b):
    return np.where(cond, a, b)


@where.grad
def _(ctx, g):
    c, a, b = ctx.inputs
    z = g.new_zeros(())
    return None, sum_to(where(c, g, z), a.shape), sum_to(where(c, z, g), b.shape)


def _clamp_samples(rng):
    x = rng.uniform(-3, 3, size=(4, 5))
    return [Sample((x,), dict(min=-1.0, max=1.5)), Sample((x,), dict(min=0.0)),
            Sample((x,), dict(max=0.5))]


@op(meta=same, samples=_clamp_samples)
def clamp(x, *, min=None, max=None):  # noqa: A002
    if min is None and max is None:
        raise ValueError("clamp: at least one of min and max must be given")
    return np.clip(x, min, max).astype(x.dtype, copy=False)


@clamp.grad
def _(ctx, g):
    x, = ctx.inputs
    mn, mx = ctx.attrs.get("min"), ctx.attrs.get("max")
    keep = g.new_ones(()).to(bool)
    if mn is not None:
        keep = keep & (x >= mn)
    if mx is not None:
        keep = keep & (x <= mx)
    return (g * keep,)


# ------------------------------------------------------------------ unary math

@op(meta=same, samples=S.unary)
def neg(x):
    return np.negative(x)


@neg.grad
def _(ctx, g):
    return (-g,)


@op(meta=same, samples=S.unary)
def abs(x):  # noqa: A001
    return np.abs(x)


@abs.grad
def _(ctx, g):
    x, = ctx.inputs
    return (g * x.sign(),)


@op(meta=same, samples=S.unary)
def sign(x):
    return np.sign(x)


@op(meta=_unary_float, samples=S.unary)
def exp(x):
    return np.exp(x)


@exp.grad
def _(ctx, g):
    return (g * ctx.output,)


@op(meta=_unary_float, samples=lambda rng: S.unary(rng, positive=True))
def log(x):
    return np.log(x)


@log.grad
def _(ctx, g):
    x, = ctx.inputs
    return (g / x,)


@op(meta=_unary_float, samples=lambda rng: S.unary(rng, positive=True))
def sqrt(x):
    return np.sqrt(x)


@sqrt.grad
def _(ctx, g):
    return (g * 0.5 / ctx.output,)


@op(meta=_unary_float, samples=lambda rng: S.unary(rng, positive=True))
def rsqrt(x):
    return np.reciprocal(np.sqrt(x))


@rsqrt.grad
def _(ctx, g):
    y = ctx.output
    return (g * -0.5 * y * y * y,)


@op(meta=_unary_float, samples=S.unary)
def sin(x):
    return np.sin(x)


@sin.grad
def _(ctx, g):
    x, = ctx.inputs
    return (g * x.cos(),)


@op(meta=_unary_float, samples=S.unary)
def cos(x):
    return np.cos(x)


@cos.grad
def _(ctx, g):
    x, = ctx.inputs
    return (-g * x.sin(),)


@op(meta=_unary_float, samples=S.unary)
def tanh(x):
    return np.tanh(x)


@tanh.grad
def _(ctx, g):
    y = ctx.output
    return (g * (1 - y * y),)


@op(meta=_unary_float, samples=lambda rng: S.unary(rng, lo=-6, hi=6))
def sigmoid(x):
    # split by sign so exp never overflows
    e = np.exp(-np.abs(x))
    return np.where(x >= 0, 1 / (1 + e), e / (1 + e)).astype(x.dtype, copy=False)


@sigmoid.grad
def _(ctx, g):
    y = ctx.output
    return (g * y * (1 - y),)


# ------------------------------------------------------------------ activations

def _act_samples(rng):
    x = rng.uniform(-3, 3, size=(4, 7))
    x[np.abs(x) < 0.05] = 0.3  # keep finite differences away from kinks
    return [Sample((x,)), Sample((x[:, :1].copy(),))]


@op(meta=same, samples=_act_samples)
def relu(x):
    return np.maximum(x, 0).astype(x.dtype, copy=False)


@relu.grad
def _(ctx, g):
    x, = ctx.inputs
    return (g * (x > 0),)


@op(meta=same, samples=lambda rng: [Sample(s.args, dict(negative_slope=0.2)) for s in _act_samples(rng)])
def leaky_relu(x, *, negative_slope=0.01):
    return np.where(x > 0, x, x * negative_slope).astype(x.dtype, copy=False)


@leaky_relu.grad
def _(ctx, g):
    x, = ctx.inputs
    s = ctx.attrs.get("negative_slope", 0.01)
    return (g * where(x > 0, 1.0, s).to(g.dtype),)


_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)


@op(meta=same, samples=lambda rng: [Sample(s.args, dict(approximate=a))
                                    for s in _act_samples(rng) for a in ("none", "tanh")])
def gelu(x, *, approximate="none"):
    """GELU (Hendrycks & Gimpel 2016): exact with erf, or the tanh form."""
    if approximate == "tanh":
        return (0.5 * x * (1 + np.tanh(_SQRT_2_OVER_PI * (x + 0.044715 * x ** 3)))).astype(x.dtype, copy=False)
    if approximate != "none":
        raise ValueError(f"gelu: approximate must be 'none' or 'tanh', got {approximate!r}")
    from scipy.special import erf
    return (0.5 * x * (1 + erf(x / math.sqrt(2.0)))).astype(x.dtype, copy=False)


@gelu.grad
def _(ctx, g):
    x, = ctx.inputs
    if ctx.attrs.get("approximate", "none") == "tanh":
        inner = _SQRT_2_OVER_PI * (x + 0.044715 * x * x * x)
        t = inner.tanh()
        d = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * _SQRT_2_OVER_PI * (1 + 3 * 0.044715 * x * x)
        return (g * d,)
    cdf = gelu(x) / where(x == 0, 1.0, x).to(x.dtype)
    cdf = where(x == 0, 0.5, cdf).to(x.dtype)
    pdf = (x * x * -0.5).exp() * (1.0 / math.sqrt(2 * math.pi))
    return (g * (cdf + x * pdf),)


@op(meta=same, samples=_act_samples)
def silu(x):
    return (x * sigmoid.forward(x)).astype(x.dtype, copy=False)


@silu.grad
def _(ctx, g):
    x, = ctx.inputs
    s = x.sigmoid()
    return (g * s * (1 + x * (1 - s)),)


@op(meta=same, samples=lambda rng: [Sample(s.args, dict(beta=b)) for s in _act_samples(rng) for b in (1.0, 2.0)])
def softplus(x, *, beta=1.0, threshold=20.0):
    bx = x * beta
    # log1p(exp(bx)) computed stably; linear above the threshold as torch does
    y = (np.maximum(bx, 0) + np.log1p(np.exp(-np.abs(bx)))) / beta
    return np.where(bx > threshold, x, y).astype(x.dtype, copy=False)


@softplus.grad
def _(ctx, g):
    x, = ctx.inputs
    beta = ctx.attrs.get("beta", 1.0)
    thr = ctx.attrs.get("threshold", 20.0)
    s = (x * beta).sigmoid()
    return (g * where(x * beta > thr, 1.0, s).to(g.dtype),)


# ------------------------------------------------------------------ dtype

def _to_meta(x, *, dtype):
    return TensorMeta(tuple(x.shape), np.dtype(dtype))


@op(meta=_to_meta, samples=lambda rng: [
    Sample((rng.normal(size=(3, 4)),), dict(dtype="float32"), gradcheck=False, note="float32 rounding"),
    Sample((rng.normal(size=(3, 4)).astype(np.float32),), dict(dtype="float64"))])
def to(x, *, dtype):
    """Cast to another dtype (a copy unless the dtype already matches)."""
    return x.astype(dtype, copy=False)


@to.grad
def _(ctx, g):
    x, = ctx.inputs
    if not x.dtype.is_floating_point:
        return (None,)
    return (g.to(x.dtype),)


@op(meta=same, samples=S.unary)
def clone(x):
    """A contiguous copy."""
    return np.array(x, copy=True, order="C")


@clone.grad
def _(ctx, g):
    return (g,)
