"""Batch norm with batch statistics (training), forward and backward, one channel a task.

Composed of elementwise ops, a training batch norm makes ~8 full passes over
its input forward and ~12 backward, each a numpy temporary; these loops make
2 reads and 1 write forward, and 3 reads of x and 2 of g (the statistics
are recomputed) and 1 write backward.  Statistics are accumulated in float64
(sum and sum of squares in one read), so float32 inputs with large
per-channel counts keep their precision.

Shared by the frontend's batch_norm_train / batch_norm_train_backward /
batch_norm_stats ops and the runtime's kernels for them.  Shapes: x viewed
as (N, C, L) (L = the product of the spatial dims; 1 for (N, C) inputs).
"""
import numpy as np
from numba import prange

from .jit import twins

PAR_ELEMS = 1 << 15          # elements from which the parallel copies pay


def _stats_py(x, mean, rstd, var, eps):
    # x (N, C, L); per channel: mean, 1/sqrt(biased var + eps), and the biased var, in one read:
    # sum and sum of squares in float64 (var = E[x^2] - mean^2 loses ~log10(mean^2/var) of float64's
    # 16 digits: still far below float32's 7 for any activation statistics)
    N, C, L = x.shape
    m = N * L
    for c in prange(C):
        s = 0.0
        q = 0.0
        for n in range(N):
            for i in range(L):
                v = np.float64(x[n, c, i])
                s += v
                q += v * v
        mu = s / m
        v = max(q / m - mu * mu, 0.0)
        mean[c] = mu
        var[c] = v
        rstd[c] = 1.0 / np.sqrt(v + eps)


def _forward_py(x, w, b, mean, rstd, y):
    # y = (x - mean) * rstd * w + b per channel; w, b of length C (ones / zeros when absent)
    N, C, L = x.shape
    for c in prange(C):
        sc = rstd[c] * w[c]
        sh = b[c] - mean[c] * sc
        for n in range(N):
            for i in range(L):
                y[n, c, i] = x[n, c, i] * sc + sh


def _backward_py(g, x, w, mean, rstd, gx, gw, gb):
    # gx = w*rstd * (g - sum(g)/M - (x - mean) * rstd^2 * sum(g*(x - mean))/M); gw, gb per channel
    N, C, L = x.shape
    m = N * L
    for c in prange(C):
        mu = mean[c]
        sg = 0.0
        sgx = 0.0
        for n in range(N):
            for i in range(L):
                gv = g[n, c, i]
                sg += gv
                sgx += gv * (x[n, c, i] - mu)
        r = rstd[c]
        gb[c] = sg
        gw[c] = sgx * r
        k = w[c] * r
        a = sg / m
        bcoef = r * r * sgx / m
        for n in range(N):
            for i in range(L):
                gx[n, c, i] = k * (g[n, c, i] - a - (x[n, c, i] - mu) * bcoef)


_stats, _stats_par = twins(_stats_py, fastmath=True)
_forward, _forward_par = twins(_forward_py, fastmath=True)
_backward, _backward_par = twins(_backward_py, fastmath=True)


def _view(a):
    """(N, C, L) C-contiguous view (a copy when needed) of an (N, C, ...) array; float16 and
    bfloat16 go through float32 (Numba has no half-precision arithmetic)."""
    a = np.ascontiguousarray(a)
    if a.dtype not in (np.float32, np.float64):
        a = a.astype(np.float32)
    return a.reshape(a.shape[0], a.shape[1], -1)


def _param(p, c, fill, dtype):
    return np.full(c, fill, dtype) if p is None else np.ascontiguousarray(p, dtype=dtype)


def stats(x, eps=1e-5):
    """(mean, rstd, biased var) per channel, float64."""
    x3 = _view(x)
    c = x3.shape[1]
    mean, rstd, var = np.empty(c), np.empty(c), np.empty(c)
    (_stats_par if x3.size >= PAR_ELEMS else _stats)(x3, mean, rstd, var, float(eps))
    return mean, rstd, var


def forward(x, w, b, eps=1e-5):
    """Batch-normalized x with its own statistics, scaled by w and shifted by b (either may be None)."""
    x3 = _view(x)
    c = x3.shape[1]
    mean, rstd, _ = stats(x3, eps)
    y = np.empty_like(x3)
    (_forward_par if x3.size >= PAR_ELEMS else _forward)(
        x3, _param(w, c, 1.0, np.float64), _param(b, c, 0.0, np.float64), mean, rstd, y)
    return y.reshape(x.shape)


def backward(g, x, w, eps=1e-5, gx=None):
    """(gx, gw, gb) of forward(x, w, b, eps) for the output gradient g; gw and gb per channel.
    gx: an optional C-contiguous buffer of x's size to write the input gradient into."""
    x3, g3 = _view(x), _view(g)
    c = x3.shape[1]
    mean, rstd, _ = stats(x3, eps)
    gx = np.empty_like(x3) if gx is None else gx.reshape(x3.shape)
    gw, gb = np.empty(c), np.empty(c)
    (_backward_par if x3.size >= PAR_ELEMS else _backward)(
        g3, x3, _param(w, c, 1.0, np.float64), mean, rstd, gx, gw, gb)
    return gx.reshape(x.shape), gw, gb
