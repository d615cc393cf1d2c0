"""Neural-network kernels. The row-wise ones (norms, softmax, rotary
embedding) are Numba loops over rows (prange when there are enough rows to
pay for a parallel region), compiled on first use and cached on disk;
attention is in runtime/kernels/attention.py."""
import math

import numpy as np
from numba import njit, prange

from edgetorch._native import norm as _norm

from .registry import kernel, preparer

PAR_ROWS = 512    # below this many rows a serial loop beats a (passive-wait) parallel region


# ------------------------------------------------------------------ norms
# One row function per norm; the serial and parallel drivers differ only in
# range vs prange (a parallel region costs ~15-45 us, so few rows run serial).
@njit(cache=True, fastmath=True, inline="always")
def _rms_row(x, w, eps, out, r):       # x, out (R, D); w (D,) or (0,)
    s = 0.0
    for j in range(x.shape[1]):
        s += x[r, j] * x[r, j]
    inv = 1.0 / math.sqrt(s / x.shape[1] + eps)
    for j in range(x.shape[1]):
        out[r, j] = x[r, j] * inv * (w[j] if w.shape[0] else 1.0)


@njit(cache=True, fastmath=True)
def _rms_rows(x, w, eps, out):
    for r in range(x.shape[0]):
        _rms_row(x, w, eps, out, r)


@njit(cache=True, fastmath=True, parallel=True)
def _rms_rows_par(x, w, eps, out):
    for r in prange(x.shape[0]):
        _rms_row(x, w, eps, out, r)


_EMPTY = np.zeros(0, np.float32)
_EMPTIES = {np.dtype(t): np.zeros(0, t) for t in (np.float32, np.float64)}
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _floats(out, *arrays):
    """Numba kernels take float32/float64 of one dtype; anything else is a malformed program
    (and would otherwise trigger a compilation for a new signature)."""
    for a in (out,) + arrays:
        if a is not None and (a.dtype not in _FLOATS or a.dtype != out.dtype):
            raise ValueError(f"expected {out.dtype} float arrays, got {a.dtype}")


def _rows(x, n):
    return x.reshape(-1, n) if x.flags.c_contiguous else np.ascontiguousarray(x).reshape(-1, n)


def _rms_checks(out, x, w, normalized_shape):
    _floats(out, x, w)
    n = math.prod(normalized_shape)
    if n <= 0 or x.size % n or out.shape != x.shape or (w is not None and w.size != n):
        raise ValueError(f"rms_norm: normalized_shape {normalized_shape} does not fit input {x.shape}")


@kernel("rms_norm")
def k_rms_norm(out, x, w=None, normalized_shape=(), eps=None):
    _rms_checks(out, x, w, normalized_shape)
    n = math.prod(normalized_shape)
    e = float(np.finfo(x.dtype).eps) if eps is None else float(eps)
    x2, o2 = _rows(x, n), out.reshape(-1, n)
    ww = _EMPTIES.get(x.dtype, _EMPTY) if w is None else w.reshape(-1)
    (_rms_rows_par if x2.shape[0] >= PAR_ROWS else _rms_rows)(x2, ww, e, o2)


@preparer("rms_norm")
def p_rms_norm(out, x, w=None, normalized_shape=(), eps=None):
    _rms_checks(out, x, w, normalized_shape)
    if not (x.flags.c_contiguous and out.flags.c_contiguous):
        return None
    n = math.prod(normalized_shape)
    e = float(np.finfo(x.dtype).eps) if eps is None else float(eps)
    kern = _rms_rows_par if x.size // n >= PAR_ROWS else _rms_rows
    if w is None:
        ww = _EMPTIES.get(x.dtype, _EMPTY)
        return lambda out, x, w=None: kern(x.reshape(-1, n), ww, e, out.reshape(-1, n))
    return lambda out, x, w: kern(x.reshape(-1, n), w.reshape(-1), e, out.reshape(-1, n))


@njit(cache=True, fastmath=True, inline="always")
def _ln_row(x, w, b, eps, out, r):
    n = x.shape[1]
    m = 0.0
    for j in range(n):
        m += x[r, j]
    m /= n
    v = 0.0
    for j in range(n):
        d = x[r, j] - m
        v += d * d
    inv = 1.0 / math.sqrt(v / n + eps)
    # the statistics in float64, the normalization in the input's precision: float32 rows then run
    # in float32 lanes (a 128 x 384 layer norm 27 -> ~10 us)
    mx = x.dtype.type(m)
    ix = x.dtype.type(inv)
    if w.shape[0] and b.shape[0]:
        for j in range(n):
            out[r, j] = (x[r, j] - mx) * ix * w[j] + b[j]
    elif w.shape[0]:
        for j in range(n):
            out[r, j] = (x[r, j] - mx) * ix * w[j]
    elif b.shape[0]:
        for j in range(n):
            out[r, j] = (x[r, j] - mx) * ix + b[j]
    else:
        for j in range(n):
            out[r, j] = (x[r, j] - mx) * ix


@njit(cache=True, fastmath=True)
def _ln_rows(x, w, b, eps, out):
    for r in range(x.shape[0]):
        _ln_row(x, w, b, eps, out, r)


@njit(cache=True, fastmath=True, parallel=True)
def _ln_rows_par(x, w, b, eps, out):
    for r in prange(x.shape[0]):
        _ln_row(x, w, b, eps, out, r)


@kernel("layer_norm")
def k_layer_norm(out, x, w=None, b=None, normalized_shape=(), eps=1e-5):
    _floats(out, x, w, b)
    n = math.prod(int(d) for d in normalized_shape)
    if n <= 0 or x.size % n or out.shape != x.shape or any(t is not None and t.size != n for t in (w, b)):
        raise ValueError(f"layer_norm: normalized_shape {normalized_shape} does not fit input {x.shape}")
    x2, o2 = _rows(x, n), out.reshape(-1, n)
    e = _EMPTIES.get(x.dtype, _EMPTY)
    (_ln_rows_par if x2.shape[0] >= PAR_ROWS else _ln_rows)(
        x2, e if w is None else w.reshape(-1), e if b is None else b.reshape(-1), float(eps), o2)


@njit(cache=True, fastmath=True, inline="always")
def _add_ln_row(x, y, w, b, eps, out, r):
    for j in range(x.shape[1]):
        out[r, j] = x[r, j] + y[r, j]
    _ln_row(out, w, b, eps, out, r)        # in place: each element is read before it is written


@njit(cache=True, fastmath=True)
def _add_ln_rows(x, y, w, b, eps, out):
    for r in range(x.shape[0]):
        _add_ln_row(x, y, w, b, eps, out, r)


@njit(cache=True, fastmath=True, parallel=True)
def _add_ln_rows_par(x, y, w, b, eps, out):
    for r in prange(x.shape[0]):
        _add_ln_row(x, y, w, b, eps, out, r)


@kernel("add_layer_norm")
def k_add_layer_norm(out, x, r, w=None, b=None, normalized_shape=(), eps=1e-5):
    _floats(out, x, r, w, b)
    n = math.prod(int(d) for d in normalized_shape)
    if n <= 0 or x.size % n or out.shape != x.shape or r.shape != x.shape \
            or any(t is not None and t.size != n for t in (w, b)):
        raise ValueError(f"add_layer_norm: normalized_shape {normalized_shape} does not fit inputs {x.shape}, "
                         f"{r.shape} -> {out.shape}")
    e = _EMPTIES.get(x.dtype, _EMPTY)
    x2, r2 = _rows(x, n), _rows(r, n)
    o2 = out.reshape(-1, n)
    (_add_ln_rows_par if x2.shape[0] >= PAR_ROWS else _add_ln_rows)(
        x2, r2, e if w is None else w.reshape(-1), e if b is None else b.reshape(-1), float(eps), o2)


@kernel("batch_norm")
def k_batch_norm(out, x, mean, var, w=None, b=None, eps=1e-5):
    scale = 1.0 / np.sqrt(var + eps)
    if w is not None:
        scale = scale * w
    shift = -mean * scale
    if b is not None:
        shift = shift + b
    shp = (1, -1) + (1,) * (x.ndim - 2)
    np.multiply(x, scale.reshape(shp), out=out, casting="unsafe")
    out += shift.reshape(shp)


@kernel("batch_norm_train")
def k_batch_norm_train(out, x, w=None, b=None, eps=1e-5):
    _floats(out, x, w, b)
    if x.ndim < 2 or out.shape != x.shape or any(t is not None and t.shape != (x.shape[1],) for t in (w, b)):
        raise ValueError(f"batch_norm_train: input {x.shape}, weight/bias do not give {out.shape}")
    out[...] = _norm.forward(x, w, b, eps)


# ------------------------------------------------------------------ softmax
@njit(cache=True, fastmath=True)
def _softmax_rows(x, out, log):
    for r in range(x.shape[0]):
        m = -np.inf
        for j in range(x.shape[1]):
            if x[r, j] > m:
                m = x[r, j]
        s = 0.0
        for j in range(x.shape[1]):
            e = math.exp(x[r, j] - m)
            out[r, j] = e
            s += e
        if log:
            ls = math.log(s) + m
            for j in range(x.shape[1]):
                out[r, j] = x[r, j] - ls
        else:
            inv = 1.0 / s
            for j in range(x.shape[1]):
                out[r, j] *= inv


def _softmax(out, x, dim, log):
    _floats(out, x)
    if out.shape != x.shape or x.ndim == 0:
        raise ValueError(f"softmax: output {out.shape} does not match input {x.shape}")
    if dim % x.ndim == x.ndim - 1:
        _softmax_rows(_rows(x, x.shape[-1]), out.reshape(-1, x.shape[-1]), log)
        return
    m = np.max(x, axis=dim, keepdims=True)
    s = x - m
    if log:
        out[...] = s - np.log(np.sum(np.exp(s), axis=dim, keepdims=True))
    else:
        e = np.exp(s)
        out[...] = e / np.sum(e, axis=dim, keepdims=True)


@kernel("softmax")
def k_softmax(out, x, dim=-1):
    _softmax(out, x, dim, False)


@kernel("log_softmax")
def k_log_softmax(out, x, dim=-1):
    _softmax(out, x, dim, True)


# ------------------------------------------------------------------ rotary
@njit(cache=True, fastmath=True)
def _rope(x, cos, sin, out):      # x/out (B, H, T, D); cos/sin (T, D)
    h = x.shape[3] // 2
    for b in range(x.shape[0]):
        for hh in range(x.shape[1]):
            for t in range(x.shape[2]):
                for j in range(h):
                    x1 = x[b, hh, t, j]
                    x2 = x[b, hh, t, j + h]
                    out[b, hh, t, j] = x1 * cos[t, j] - x2 * sin[t, j]
                    out[b, hh, t, j + h] = x2 * cos[t, j + h] + x1 * sin[t, j + h]


@kernel("rotary_embedding")
def k_rotary_embedding(out, x, cos, sin):
    _floats(out, x, cos, sin)
    if out.shape != x.shape or x.ndim == 0 or x.shape[-1] % 2:
        raise ValueError(f"rotary_embedding: bad shapes {x.shape} -> {out.shape}")
    if x.ndim == 4 and cos.ndim == 2 and cos.shape == x.shape[2:] and sin.shape == cos.shape:
        _rope(x, np.ascontiguousarray(cos), np.ascontiguousarray(sin), out)
        return
    h = x.shape[-1] // 2
    rot = np.concatenate([-x[..., h:], x[..., :h]], axis=-1)
    out[...] = x * cos + rot * sin


@preparer("rotary_embedding")
def p_rotary_embedding(out, x, cos, sin):
    _floats(out, x, cos, sin)
    if out.shape == x.shape and x.ndim == 4 and x.shape[-1] % 2 == 0 and cos.ndim == 2 \
            and cos.shape == x.shape[2:] and sin.shape == cos.shape and cos.flags.c_contiguous \
            and sin.flags.c_contiguous:
        return lambda out, x, cos, sin: _rope(x, cos, sin, out)
    return None
