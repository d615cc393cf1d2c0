"""Reductions over dims: sum, mean, amax/amin, argmax/argmin, var, logsumexp, prod."""
import numpy as np

from .registry import Sample, TensorMeta, float_dtype, norm_dim, norm_dims, op, reduced_shape


def _red_meta(x, *, dim=None, keepdim=False, **a):
    dims = norm_dims(dim, len(x.shape))
    return TensorMeta(reduced_shape(tuple(x.shape), dims, keepdim), x.dtype)


def _sum_meta(x, *, dim=None, keepdim=False):
    m = _red_meta(x, dim=dim, keepdim=keepdim)
    dt = x.dtype if x.dtype.kind == "f" or x.dtype.name == "bfloat16" else np.dtype(np.int64)
    return TensorMeta(m.shape, dt)


def _float_red_meta(x, **a):
    m = _red_meta(x, **{k: v for k, v in a.items() if k in ("dim", "keepdim")})
    return TensorMeta(m.shape, float_dtype(x.dtype))


def _axis(dim, ndim):
    return None if dim is None else norm_dims(dim, ndim)


def _red_samples(rng, unique=False):
    x = rng.normal(size=(3, 4, 5))
    if unique:
        x = rng.permutation(60).reshape(3, 4, 5) / 7.0
    return [Sample((x,), dict(dim=None)), Sample((x,), dict(dim=1)),
            Sample((x,), dict(dim=(0, 2), keepdim=True)), Sample((x,), dict(dim=-1)),
            Sample((x[:, 0, :],), dict(dim=0), note="2-d")]


def _expand_back(g, x, dim, keepdim):
    """Broadcast a reduced gradient back to x's shape."""
    dims = norm_dims(dim, x.ndim)
    if not keepdim and dims:
        g = g.reshape(reduced_shape(tuple(x.shape), dims, True))
    return g.expand(*x.shape)


@op(meta=_sum_meta, samples=_red_samples)
def sum(x, *, dim=None, keepdim=False):  # noqa: A001
    r = np.sum(x, axis=_axis(dim, x.ndim), keepdims=keepdim)
    return np.asarray(r) if r.dtype == x.dtype or x.dtype.kind in "fV" else np.asarray(r, dtype=np.int64)


@sum.grad
def _(ctx, g):
    x, = ctx.inputs
    return (_expand_back(g, x, ctx.attrs.get("dim"), ctx.attrs.get("keepdim", False)),)


@op(meta=_float_red_meta, samples=_red_samples)
def mean(x, *, dim=None, keepdim=False):
    return np.asarray(np.mean(x, axis=_axis(dim, x.ndim), keepdims=keepdim, dtype=float_dtype(x.dtype)))


@mean.grad
def _(ctx, g):
    x, = ctx.inputs
    dims = norm_dims(ctx.attrs.get("dim"), x.ndim)
    n = 1
    for d in dims:
        n *= x.shape[d]
    return (_expand_back(g, x, ctx.attrs.get("dim"), ctx.attrs.get("keepdim", False)) / max(n, 1),)


def _amax_grad(ctx, g):
    x, = ctx.inputs
    dim, keep = ctx.attrs.get("dim"), ctx.attrs.get("keepdim", False)
    y = _expand_back(ctx.output, x, dim, keep)
    hit = (x == y).to(g.dtype)
    # ties share the gradient evenly (torch's amax/amin rule)
    cnt = _expand_back(hit.sum(dim=dim, keepdim=True), x, dim, True) if dim is not None else hit.sum()
    return (_expand_back(g, x, dim, keep) * hit / cnt,)


@op(meta=_red_meta, samples=lambda rng: _red_samples(rng, unique=True))
def amax(x, *, dim=None, keepdim=False):
    return np.asarray(np.max(x, axis=_axis(dim, x.ndim), keepdims=keepdim))


amax.grad(_amax_grad)


@op(meta=_red_meta, samples=lambda rng: _red_samples(rng, unique=True))
def amin(x, *, dim=None, keepdim=False):
    return np.asarray(np.min(x, axis=_axis(dim, x.ndim), keepdims=keepdim))


amin.grad(_amax_grad)


def _arg_meta(x, *, dim=None, keepdim=False):
    if dim is None:
        return TensorMeta((1,) * len(x.shape) if keepdim else (), np.dtype(np.int64))
    d = norm_dim(dim, len(x.shape))
    return TensorMeta(reduced_shape(tuple(x.shape), (d,), keepdim), np.dtype(np.int64))


def _arg_samples(rng):
    x = rng.permutation(60).reshape(3, 4, 5).astype(np.float64)
    return [Sample((x,), dict(dim=1)), Sample((x,), dict(dim=-1, keepdim=True)), Sample((x,))]


def _argred(fn, x, dim, keepdim):
    if dim is None:
        r = fn(x.reshape(-1))
        return np.asarray(r, dtype=np.int64).reshape((1,) * x.ndim if keepdim else ())
    return np.asarray(fn(x, axis=dim, keepdims=keepdim), dtype=np.int64)


@op(meta=_arg_meta, samples=_arg_samples)
def argmax(x, *, dim=None, keepdim=False):
    return _argred(np.argmax, x, dim, keepdim)


@op(meta=_arg_meta, samples=_arg_samples)
def argmin(x, *, dim=None, keepdim=False):
    return _argred(np.argmin, x, dim, keepdim)


def _var_samples(rng):
    x = rng.normal(size=(3, 4, 5))
    return [Sample((x,), dict(dim=1)), Sample((x,), dict(dim=None, correction=0)),
            Sample((x,), dict(dim=(0, 2), keepdim=True))]


@op(meta=_float_red_meta, samples=_var_samples)
def var(x, *, dim=None, correction=1, keepdim=False):
    return np.asarray(np.var(x, axis=_axis(dim, x.ndim), ddof=correction, keepdims=keepdim))


@var.grad
def _(ctx, g):
    x, = ctx.inputs
    dim, keep = ctx.attrs.get("dim"), ctx.attrs.get("keepdim", False)
    corr = ctx.attrs.get("correction", 1)
    dims = norm_dims(dim, x.ndim)
    n = 1
    for d in dims:
        n *= x.shape[d]
    mu = x.mean(dim=dim, keepdim=True) if dim is not None else x.mean()
    return (_expand_back(g, x, dim, keep) * (x - mu) * (2.0 / max(n - corr, 1)),)


@op(meta=_float_red_meta, samples=_red_samples)
def logsumexp(x, *, dim=None, keepdim=False):
    ax = _axis(dim, x.ndim)
    m = np.max(x, axis=ax, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    r = np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True)) + m
    if not keepdim:
        r = np.squeeze(r, axis=ax) if ax is not None else r.reshape(())
    return np.asarray(r, dtype=x.dtype)


@logsumexp.grad
def _(ctx, g):
    x, = ctx.inputs
    dim, keep = ctx.attrs.get("dim"), ctx.attrs.get("keepdim", False)
    y = _expand_back(ctx.output, x, dim, keep)
    return (_expand_back(g, x, dim, keep) * (x - y).exp(),)


def _prod_samples(rng):
    x = rng.uniform(0.5, 1.5, size=(3, 4)) * rng.choice([-1, 1], size=(3, 4))
    return [Sample((x,), dict(dim=1)), Sample((x,)), Sample((x,), dict(dim=0, keepdim=True))]


@op(meta=_red_meta, samples=_prod_samples)
def prod(x, *, dim=None, keepdim=False):
    return np.asarray(np.prod(x, axis=_axis(dim, x.ndim), keepdims=keepdim))


@prod.grad
def _(ctx, g):
    x, = ctx.inputs
    dim, keep = ctx.attrs.get("dim"), ctx.attrs.get("keepdim", False)
    # y / x, valid for nonzero x (zeros would need the exclusive product)
    y = _expand_back(ctx.output, x, dim, keep)
    return (_expand_back(g, x, dim, keep) * y / x,)
