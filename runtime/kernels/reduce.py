"""Reduction kernels (numpy with out=)."""
import numpy as np

from .registry import kernel


def _axis(dim, ndim):
    if dim is None:
        return None
    dims = (dim,) if isinstance(dim, int) else tuple(dim)
    return tuple(sorted(d % max(ndim, 1) for d in dims))


def _red(name, fn):
    @kernel(name)
    def k(out, x, dim=None, keepdim=False):
        out[...] = fn(x, axis=_axis(dim, x.ndim), keepdims=keepdim)
    k.__name__ = f"k_{name}"


for _n, _f in (("sum", np.sum), ("amax", np.max), ("amin", np.min), ("prod", np.prod)):
    _red(_n, _f)


@kernel("mean")
def k_mean(out, x, dim=None, keepdim=False):
    out[...] = np.mean(x, axis=_axis(dim, x.ndim), keepdims=keepdim, dtype=out.dtype)


@kernel("var")
def k_var(out, x, dim=None, correction=1, keepdim=False):
    out[...] = np.var(x, axis=_axis(dim, x.ndim), ddof=correction, keepdims=keepdim)


def _arg(fn):
    def k(out, x, dim=None, keepdim=False):
        if dim is None:
            out[...] = fn(x.reshape(-1))
        else:
            out[...] = fn(x, axis=dim, keepdims=keepdim)
    return k


kernel("argmax")(_arg(np.argmax))
kernel("argmin")(_arg(np.argmin))


@kernel("logsumexp")
def k_logsumexp(out, x, dim=None, keepdim=False):
    ax = _axis(dim, x.ndim)
    m = np.max(x, axis=ax, keepdims=True)
    m = np.where(np.isfinite(m), m, 0)
    r = np.log(np.sum(np.exp(x - m), axis=ax, keepdims=True)) + m
    out[...] = r.reshape(out.shape)
