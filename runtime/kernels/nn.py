"""Neural-network kernels. The row-wise ones (norms, softmax, rotary
embedding, attention) are Numba loops over rows (prange when there are
enough rows to pay for a parallel region), compiled on first use and cached
on disk."""
import math

import numpy as np
from numba import njit, prange

from edgetorch._native import norm as _norm
from edgetorch._native.vmath import exp_shifted

from ._jit import twins
from .registry import kernel

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
_FLOATS = (np.dtype(np.float32), np.dtype(np.float64))


def _floats(out, *arrays):
    """Numba kernels take float32/float64 of one dtype; anything else is a malformed program
    (and would otherwise trigger a compilation for a new signature)."""
    for a in (out,) + arrays:
        if a is not None and (a.dtype not in _FLOATS or a.dtype != out.dtype):
            raise ValueError(f"expected {out.dtype} float arrays, got {a.dtype}")


def _rows(x, n):
    return x.reshape(-1, n) if x.flags.c_contiguous else np.ascontiguousarray(x).reshape(-1, n)


@kernel("rms_norm")
def k_rms_norm(out, x, w=None, normalized_shape=(), eps=None):
    _floats(out, x, w)
    n = math.prod(normalized_shape)
    if n <= 0 or x.size % n or out.shape != x.shape or (w is not None and w.size != n):
        raise ValueError(f"rms_norm: normalized_shape {normalized_shape} does not fit input {x.shape}")
    e = float(np.finfo(x.dtype).eps) if eps is None else float(eps)
    x2, o2 = _rows(x, n), out.reshape(-1, n)
    ww = _EMPTY.astype(x.dtype) if w is None else w.reshape(-1)
    (_rms_rows_par if x2.shape[0] >= PAR_ROWS else _rms_rows)(x2, ww, e, o2)


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
    for j in range(n):
        y = (x[r, j] - m) * inv
        if w.shape[0]:
            y = y * w[j]
        if b.shape[0]:
            y = y + b[j]
        out[r, j] = y


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
    n = int(np.prod(normalized_shape))
    if n <= 0 or x.size % n or out.shape != x.shape or any(t is not None and t.size != n for t in (w, b)):
        raise ValueError(f"layer_norm: normalized_shape {normalized_shape} does not fit input {x.shape}")
    x2, o2 = _rows(x, n), out.reshape(-1, n)
    e = _EMPTY.astype(x.dtype)
    (_ln_rows_par if x2.shape[0] >= PAR_ROWS else _ln_rows)(
        x2, e if w is None else w.reshape(-1), e if b is None else b.reshape(-1), float(eps), o2)


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
    if x.ndim == 4 and cos.ndim == 2 and cos.shape[0] == x.shape[2] and sin.shape == cos.shape:
        _rope(x, np.ascontiguousarray(cos), np.ascontiguousarray(sin), out)
        return
    h = x.shape[-1] // 2
    rot = np.concatenate([-x[..., h:], x[..., :h]], axis=-1)
    out[...] = x * cos + rot * sin


# ------------------------------------------------------------------ attention
def _attention_py(q, k, v, bias, scale, out):
    # float32 throughout: a float64 accumulator (acc = 0.0) does not vectorize with the float32 loads
    # q (B, Hq, L, E); k (B, Hk, S, E); v (B, Hk, S, Ev); bias (L, S) additive; out (B, Hq, L, Ev)
    B, Hq, L, E = q.shape
    Hk, S = k.shape[1], k.shape[2]
    rep = Hq // Hk
    Ev = v.shape[3]
    for job in prange(B * Hq):
        b = job // Hq
        h = job % Hq
        kh = h // rep
        s = np.empty(S, dtype=np.float32)
        p = np.empty(S, dtype=np.float32)
        bits = np.empty(S, dtype=np.int32)
        acc = np.empty(Ev, dtype=np.float32)
        for i in range(L):
            m = np.float32(-np.inf)
            for j in range(S):
                if bias[i, j] == -np.inf:          # masked key (the unused tail of a KV cache): skip its dot
                    s[j] = -np.inf
                    continue
                a = np.float32(0.0)
                for e in range(E):
                    a += q[b, h, i, e] * k[b, kh, j, e]
                val = a * scale + bias[i, j]
                s[j] = val
                if val > m:
                    m = val
            if m == -np.inf:
                for e in range(Ev):
                    out[b, h, i, e] = 0.0
                continue
            # the vectorized exp (a libm call per key was most of a decode step's attention)
            exp_shifted(s, m, p, bits)
            tot = np.float32(0.0)
            for j in range(S):
                tot += p[j]
            for e in range(Ev):
                acc[e] = 0.0
            for j in range(S):
                pj = p[j]
                if pj != 0.0:
                    for e in range(Ev):
                        acc[e] += pj * v[b, kh, j, e]
            inv = np.float32(1.0) / tot
            for e in range(Ev):
                out[b, h, i, e] = acc[e] * inv


# fast-math without `ninf`: these loops compare with -inf (masked keys, fully masked rows), which
# LLVM may fold away under the full set
_NO_INF_MATH = {"nnan", "nsz", "arcp", "contract", "reassoc", "afn"}
_attention, _attention_par = twins(_attention_py, fastmath=_NO_INF_MATH)
ATTN_PAR_WORK = 1 << 21          # multiply-adds from which the parallel copy pays for waking threads


def _softmax_scores_py(s, bias, scale):
    # s (B, H, L, S) scores in place -> softmax(s * scale + bias) over S; bias broadcast to s's shape
    # (zero strides where it is broadcast); a fully masked row gives zeros, as the numpy path did
    B, H, L, S = s.shape
    R = B * H * L
    chunk = 16
    for c in prange((R + chunk - 1) // chunk):
        e = np.empty(S, np.float32)          # exp_shifted must not write over its input
        bits = np.empty(S, np.int32)
        for r in range(c * chunk, min(R, (c + 1) * chunk)):
            b = r // (H * L)
            h = (r // L) % H
            i = r % L
            row = s[b, h, i]
            brow = bias[b, h, i]
            m = np.float32(-np.inf)
            for j in range(S):
                v = row[j] * scale + brow[j]
                row[j] = v
                m = max(m, v)
            if m == -np.inf:
                for j in range(S):
                    row[j] = 0.0
                continue
            exp_shifted(row, m, e, bits)
            tot = np.float32(0.0)
            for j in range(S):
                tot += e[j]
            inv = np.float32(1.0) / tot
            for j in range(S):
                row[j] = e[j] * inv


# one pass over the scores (and a vectorized exp) instead of numpy's ~8 passes (scale, bias, max,
# subtract, exp, sum, divide).  Measured on a MiniLM-shaped layer's scores (12 x 128 x 128) between
# its two BLAS matmuls: numpy 0.41 ms, this loop serial 0.17 ms; the parallel copy alone takes
# 0.13 ms, but its OpenMP threads then spin on the cores the next BLAS call needs (the three steps
# took 1.1 ms against 0.6 serial), so it is kept for much larger score matrices.
_softmax_scores, _softmax_scores_par = twins(_softmax_scores_py, fastmath=_NO_INF_MATH)
SOFTMAX_PAR = 1 << 21


def _attention_rows_py(q, kT, vT, bias, scale, out):
    # prefill / encoder attention, fused: q (B, H, L, E), keys and values transposed, kT (B, Hk, E, S)
    # and vT (B, Hk, Ev, S), C-contiguous; bias broadcast to (B, H, L, S) (zero strides allowed).
    # A task is one head's block of 16 query rows, 4 rows at a time: scores s[r, :] += q[r, e] * kT[e, :]
    # along contiguous key rows (the kT loads shared by 4 rows), one-pass softmax per row, then
    # out[r, e] = p[r, :] . vT[e, :] as dot products (an axpy over Ev per key ran 2x slower).
    # Measured on a MiniLM-shaped layer (12 x 128 x 128 x 32): 0.54 ms against 1.0 for the batched
    # BLAS matmuls around the one-pass softmax.
    B, H, L, E = q.shape
    Hk, S = kT.shape[1], kT.shape[3]
    Ev = vT.shape[2]
    rep = H // Hk
    RB = 16
    nrb = (L + RB - 1) // RB
    for t in prange(B * H * nrb):
        b = t // (H * nrb)
        h = (t // nrb) % H
        i0 = (t % nrb) * RB
        kh = h // rep
        s = np.empty((4, S), np.float32)
        p = np.zeros((4, S), np.float32)
        bits = np.empty(S, np.int32)
        inv = np.zeros(4, np.float32)
        i1 = min(L, i0 + RB)
        for ib in range(i0, i1, 4):
            nr = min(4, i1 - ib)        # rows of this step; missing ones repeat row ib and are not stored
            s[:] = 0.0
            for e in range(E):
                q0 = q[b, h, ib, e] * scale
                q1 = q[b, h, ib + 1 if nr > 1 else ib, e] * scale
                q2 = q[b, h, ib + 2 if nr > 2 else ib, e] * scale
                q3 = q[b, h, ib + 3 if nr > 3 else ib, e] * scale
                for j in range(S):
                    kv = kT[b, kh, e, j]
                    s[0, j] += q0 * kv
                    s[1, j] += q1 * kv
                    s[2, j] += q2 * kv
                    s[3, j] += q3 * kv
            for r in range(nr):
                i = ib + r
                m = np.float32(-np.inf)
                for j in range(S):
                    s[r, j] += bias[b, h, i, j]
                    m = max(m, s[r, j])
                if m == -np.inf:             # a fully masked row gives zeros, as the other paths do
                    p[r, :] = 0.0
                    inv[r] = 0.0
                    continue
                exp_shifted(s[r], m, p[r], bits)
                tot = np.float32(0.0)
                for j in range(S):
                    tot += p[r, j]
                inv[r] = np.float32(1.0) / tot
            for e in range(Ev):
                a0 = np.float32(0.0)
                a1 = np.float32(0.0)
                a2 = np.float32(0.0)
                a3 = np.float32(0.0)
                for j in range(S):
                    vv = vT[b, kh, e, j]
                    a0 += p[0, j] * vv
                    a1 += p[1, j] * vv
                    a2 += p[2, j] * vv
                    a3 += p[3, j] * vv
                out[b, h, ib, e] = a0 * inv[0]
                if nr > 1:
                    out[b, h, ib + 1, e] = a1 * inv[1]
                if nr > 2:
                    out[b, h, ib + 2, e] = a2 * inv[2]
                if nr > 3:
                    out[b, h, ib + 3, e] = a3 * inv[3]


_attention_rows, _attention_rows_par = twins(_attention_rows_py, fastmath=_NO_INF_MATH)


_ZERO32, _NEG_INF32 = np.float32(0.0), np.float32(-np.inf)


def _bias(mask, is_causal, L, S, dtype):
    if mask is not None and not is_causal:
        # the decoders' case: a mask alone, already (..., L, S); float32 straight from np.where
        # (6 -> ~2 us a decode step's attention: no zeros, no add, no second cast)
        m = np.where(mask, _ZERO32, _NEG_INF32) if mask.dtype == np.bool_ else mask.astype(np.float32, copy=False)
        if m.ndim >= 2 and m.shape[-2:] == (L, S):
            return m
        return m + np.zeros((L, S), dtype=np.float32)
    bias = np.zeros((L, S), dtype=np.float32)
    if is_causal:
        bias[~np.tril(np.ones((L, S), dtype=bool))] = -np.inf
    if mask is not None:
        m = mask
        if m.dtype == np.bool_:
            m = np.where(m, 0.0, -np.inf).astype(np.float32)
        return m.astype(np.float32) + bias
    return bias


@kernel("scaled_dot_product_attention")
def k_sdpa(out, q, k, v, mask=None, is_causal=False, scale=None, enable_gqa=False):
    L, S = q.shape[-2], k.shape[-2]
    sc = 1.0 / math.sqrt(q.shape[-1]) if scale is None else float(scale)
    bias = _bias(mask, is_causal, L, S, q.dtype)
    if bias.ndim > 2 and bias.size == L * S:
        bias = bias.reshape(L, S)       # a (1, 1, L, S) mask, as decoders make: the Numba loop takes it
    _floats(out, q, k, v)
    if q.ndim < 2 or k.ndim != q.ndim or v.ndim != q.ndim or q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2] \
            or out.shape != q.shape[:-1] + (v.shape[-1],) or bias.shape[-2:] != (L, S) \
            or (q.ndim >= 3 and (k.shape[-3] == 0 or q.shape[-3] % k.shape[-3])):
        raise ValueError(f"attention: q {q.shape}, k {k.shape}, v {v.shape}, mask {bias.shape} -> {out.shape}")
    # the Numba loop for decode-sized queries; batched BLAS matmuls for prefill and encoders
    if q.ndim == 4 and q.dtype == np.float32 and bias.ndim == 2 and k.shape[0] == q.shape[0] \
            and k.shape[1] == v.shape[1] and L <= 8:
        work = q.shape[0] * q.shape[1] * L * S * (q.shape[-1] + v.shape[-1])
        (_attention_par if work >= ATTN_PAR_WORK else _attention)(
            np.ascontiguousarray(q), np.ascontiguousarray(k), np.ascontiguousarray(v), bias, np.float32(sc), out)
        return
    # keys masked for every query (a KV cache's unused tail: a 64-token prefill into a 256-slot
    # cache attends over 64) add exp(-inf) = 0: drop them before the matmuls
    live = np.isfinite(bias).reshape(-1, S).any(axis=0) if bias.ndim >= 2 and bias.shape[-1] == S else None
    if live is not None and not live[-1]:
        s_eff = int(np.flatnonzero(live)[-1]) + 1 if live.any() else 1
        k, v, bias = k[..., :s_eff, :], v[..., :s_eff, :], bias[..., :s_eff]
    if q.ndim == 4 and q.dtype == np.float32 and k.shape[0] == q.shape[0] and k.shape[1] == v.shape[1] \
            and bias.ndim <= 4:
        # the fused Numba loop: no scores tensor, no BLAS calls per head
        bb = np.broadcast_to(bias.astype(np.float32, copy=False), q.shape[:3] + (k.shape[2],))
        work = q.shape[0] * q.shape[1] * L * k.shape[2] * (q.shape[-1] + v.shape[-1])
        (_attention_rows_par if work >= ATTN_PAR_WORK else _attention_rows)(
            np.ascontiguousarray(q), np.ascontiguousarray(np.swapaxes(k, -1, -2)),
            np.ascontiguousarray(np.swapaxes(v, -1, -2)), bb, np.float32(sc), out)
        return
    rep = q.shape[-3] // k.shape[-3] if q.ndim >= 3 and q.shape[-3] != k.shape[-3] else 1
    if rep > 1:
        k = np.repeat(k, rep, axis=-3)
        v = np.repeat(v, rep, axis=-3)
    s = np.matmul(q, np.swapaxes(k, -1, -2))
    if s.ndim == 4 and s.dtype == np.float32 and s.flags.c_contiguous:
        bb = np.broadcast_to(bias.astype(np.float32, copy=False), s.shape)
        (_softmax_scores_par if s.size >= SOFTMAX_PAR else _softmax_scores)(s, bb, np.float32(sc))
    else:
        # in place on one scores buffer (each temporary is B*H*L*S floats)
        s *= np.asarray(sc, s.dtype)
        s += bias.astype(s.dtype, copy=False)
        m = np.max(s, axis=-1, keepdims=True)
        m[~np.isfinite(m)] = 0                        # fully masked rows give zeros, not NaN
        s -= m
        np.exp(s, out=s)
        den = np.sum(s, axis=-1, keepdims=True)
        den[den == 0] = 1
        s /= den
    np.matmul(s, v, out=out)
