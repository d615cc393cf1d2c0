"""Training batch norm's fused loops (edgetorch/_native/norm.py) against float64 numpy."""
import numpy as np
import pytest

from edgetorch._native import norm


def _ref(x, w, b, eps):
    x = x.astype(np.float64)
    red = (0,) + tuple(range(2, x.ndim))
    shp = (1, -1) + (1,) * (x.ndim - 2)
    mean = x.mean(axis=red, keepdims=True)
    var = x.var(axis=red, keepdims=True)
    return (x - mean) / np.sqrt(var + eps) * w.reshape(shp) + b.reshape(shp), mean.ravel(), var.ravel()


@pytest.mark.parametrize("offset", [0.0, 300.0])        # a large mean: the one-read variance must hold
@pytest.mark.parametrize("shape", [(64, 16, 8, 8), (3, 5), (2, 7, 3), (1, 3, 1, 1, 2)])
def test_forward_and_stats(shape, offset):
    rng = np.random.default_rng(len(shape))
    x = (offset + rng.standard_normal(shape) * 0.5).astype(np.float32)
    c = shape[1]
    w, b = rng.standard_normal(c).astype(np.float32), rng.standard_normal(c).astype(np.float32)
    want, mean, var = _ref(x, w, b, 1e-5)
    np.testing.assert_allclose(norm.forward(x, w, b, 1e-5), want, rtol=1e-4, atol=1e-4)
    m, r, v = norm.stats(x, 1e-5)
    np.testing.assert_allclose(m, mean, rtol=1e-12)
    np.testing.assert_allclose(v, var, rtol=1e-7, atol=1e-12)     # float32 eps is 1.2e-7


def test_backward_matches_finite_differences():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 3, 5))
    w, b, g = rng.standard_normal(3), rng.standard_normal(3), rng.standard_normal((4, 3, 5))
    gx, gw, gb = norm.backward(g, x, w, 1e-5)
    f = lambda xx, ww, bb: float((norm.forward(xx, ww, bb, 1e-5) * g).sum())   # noqa: E731
    h = 1e-6
    num = np.zeros_like(x)
    for idx in np.ndindex(x.shape):
        xp, xm = x.copy(), x.copy()
        xp[idx] += h
        xm[idx] -= h
        num[idx] = (f(xp, w, b) - f(xm, w, b)) / (2 * h)
    np.testing.assert_allclose(gx, num, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(gb, g.sum(axis=(0, 2)), rtol=1e-12)
    xhat = (x - x.mean(axis=(0, 2), keepdims=True)) / np.sqrt(x.var(axis=(0, 2), keepdims=True) + 1e-5)
    np.testing.assert_allclose(gw, (g * xhat).sum(axis=(0, 2)), rtol=1e-9)


@pytest.mark.parametrize("dt,tol", [("float16", 5e-3), ("bfloat16", 4e-2)])
def test_half_precision_training_batch_norm(dt, tol):
    """The fused loops run half-precision inputs through float32 (Numba has no float16)."""
    import edgetorch as et
    import edgetorch.nn.functional as F
    rng = np.random.default_rng(3)
    base = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    up = rng.standard_normal((4, 3, 5, 5)).astype(np.float32)
    out = {}
    for d in ("float32", dt):
        x = et.tensor(base).to(d).requires_grad_(True)
        w = et.ones(3).to(d).requires_grad_(True)
        rm, rv = et.zeros(3), et.ones(3)
        y = F.batch_norm(x, rm, rv, w, None, training=True)
        (y.float() * et.tensor(up)).sum().backward()
        assert y.dtype == x.grad.dtype == getattr(et, d)
        out[d] = (y.detach().float().numpy(), x.grad.float().numpy(), rm.numpy())
    for a, b in zip(out["float32"], out[dt]):
        np.testing.assert_allclose(b, a, rtol=tol, atol=tol * 10)
