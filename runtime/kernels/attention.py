"""Attention kernels: scaled-dot-product attention (decode over a KV cache, prefill and encoder
blocks) and the packed-QKV attention of the exporter's fused pass.  Numba loops compiled on first
use and cached on disk; runtime/kernels/nn.py holds the norms, softmax and rotary embedding."""
import math

import numpy as np
from numba import njit, prange, types
from numba.extending import overload

from edgetorch._native import simd
from edgetorch._native.simd import (sload, vfhmax, vfload, vfma, vfmax, vfmul, vfsplat, vfstore, vfzero, wfhsum,
                                    wfma, wfmul, wfsplat, wfstore_mask, wfzero, wscales)
from edgetorch._native.vmath import exp_shifted

from ._jit import chunked, twins
from .nn import _floats
from .registry import kernel, preparer


def _bias_at_py(bias, i, j):
    """bias[i, j] as an additive float32: a bool mask (True = attend) gives 0 or -inf.  The kernels
    compile the overload below; this is the same rule in Python."""
    if bias.dtype == np.bool_:
        return np.float32(0.0) if bias[i, j] else np.float32(-np.inf)
    return bias[i, j]


@overload(_bias_at_py)
def _bias_at(bias, i, j):
    # an additive float mask as it is, a bool one (True = attend) as 0 / -inf: the decoders' masks go
    # to the kernel as they are (np.where per layer cost ~2.4 us of a decode step's attention).  Not
    # IR-inlined (LLVM inlines it): Numba's IR inlining of the branch raised NumbaIRAssumptionWarning
    if bias.dtype == types.boolean:
        def impl(bias, i, j):
            if bias[i, j]:
                return np.float32(0.0)
            return np.float32(-np.inf)
        return impl
    return lambda bias, i, j: bias[i, j]


def _kv_at_py(a, b, h, j, e):
    """a[b, h, j, e] as float32; a uint16 array holds float16 bits (a float16 KV cache, read as it is:
    half the bytes a decode step streams from it).  The kernels compile the overload below."""
    return a[b, h, j, e]


@overload(_kv_at_py)
def _kv_at(a, b, h, j, e):
    if isinstance(a, types.Array) and a.dtype == types.uint16:
        def impl(a, b, h, j, e):
            return sload(a, ((b * a.shape[1] + h) * a.shape[2] + j) * a.shape[3] + e)
        return impl
    return lambda a, b, h, j, e: a[b, h, j, e]


@njit(cache=True, inline="always")
def _live_keys(bias, L, S):
    # one past the last key any of the L queries may see (a KV cache's unused tail is never read)
    n = 0
    for i in range(L):
        for j in range(S):
            if _bias_at_py(bias, i, j) != -np.inf and j + 1 > n:
                n = j + 1
    return n


def _attention_py(j_lo, j_hi, q, k, v, bias, scale, out):
    # float32 throughout: a float64 accumulator (acc = 0.0) does not vectorize with the float32 loads
    # q (B, Hq, L, E); k (B, Hk, S, E); v (B, Hk, S, Ev) (float32, or float16 bits in uint16: a
    # float16 KV cache); bias (L, S) additive float or bool (True = attend); out (B, Hq, L, Ev).
    # Jobs (batch, head) j_lo .. j_hi - 1 of B Hq (jit.chunked).  Keys past the last one any query
    # sees (a KV cache's unused tail) are never touched; scratch rows are allocated once a range of
    # jobs, not once a head.
    B, Hq, L, E = q.shape
    Hk, S = k.shape[1], k.shape[2]
    rep = Hq // Hk
    Ev = v.shape[3]
    n = _live_keys(bias, L, S)
    s = np.empty(n, dtype=np.float32)
    p = np.empty(n, dtype=np.float32)
    bits = np.empty(n, dtype=np.int32)
    acc = np.empty(Ev, dtype=np.float32)
    for job in range(j_lo, j_hi):
        b = job // Hq
        h = job % Hq
        kh = h // rep
        for i in range(L):
            m = np.float32(-np.inf)
            for j in range(n):
                bij = _bias_at_py(bias, i, j)
                if bij == -np.inf:               # masked key: skip its dot
                    s[j] = -np.inf
                    continue
                a = np.float32(0.0)
                for e in range(E):
                    a += q[b, h, i, e] * _kv_at_py(k, b, kh, j, e)
                val = a * scale + bij
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
            for j in range(n):
                tot += p[j]
            for e in range(Ev):
                acc[e] = 0.0
            for j in range(n):
                pj = p[j]
                if pj != 0.0:
                    for e in range(Ev):
                        acc[e] += pj * _kv_at_py(v, b, kh, j, e)
            inv = np.float32(1.0) / tot
            for e in range(Ev):
                out[b, h, i, e] = acc[e] * inv


# fast-math without `ninf`: these loops compare with -inf (masked keys, fully masked rows), which
# LLVM may fold away under the full set
_NO_INF_MATH = {"nnan", "nsz", "arcp", "contract", "reassoc", "afn"}
_attention = chunked(_attention_py, fastmath=_NO_INF_MATH)     # its parallel twin compiled in 3.7 s


def _attention_vec_py(j_lo, j_hi, q, k, v, bias, scale, out):
    # _attention_py in explicit 16-lane vectors (AVX-512) for head sizes E = Ev <= 16 NV (NV bound
    # per variant, 1..8): a query row scaled once into NV vectors in registers; a key's score is NV
    # FMAs and one horizontal sum; the value rows accumulate into NV vector accumulators (p_j
    # broadcast), stored once.  The last vector of a row is masked (E % 16); a float16 cache (uint16
    # bits) is widened as it loads (wscales).  The scalar loops kept the row in memory and indexed
    # 4-d arrays element by element: 6 heads x 129 keys x 48 took ~7 us (~9 ns a key).
    B, Hq, L, E = q.shape
    Hk, S = k.shape[1], k.shape[2]
    rep = Hq // Hk
    n = _live_keys(bias, L, S)
    s = np.empty(n, dtype=np.float32)
    p = np.empty(n, dtype=np.float32)
    bits = np.empty(n, dtype=np.int32)
    full = 0xFFFF
    ml = (1 << (E - 16 * (NV - 1))) - 1           # the last vector's lanes
    m0 = ml if NV == 1 else full
    m1 = ml if NV == 2 else full
    m2 = ml if NV == 3 else full
    m3 = ml if NV == 4 else full
    m4 = ml if NV == 5 else full
    m5 = ml if NV == 6 else full
    m6 = ml if NV == 7 else full
    m7 = ml
    z = wfzero()
    for job in range(j_lo, j_hi):
        b = job // Hq
        h = job % Hq
        kb = (b * Hk + h // rep) * S * E
        for i in range(L):
            qb = ((b * Hq + h) * L + i) * E
            sc = wfsplat(scale)
            q0 = wfmul(wscales(q, qb, m0), sc)
            q1 = wfmul(wscales(q, qb + 16, m1), sc) if NV > 1 else z
            q2 = wfmul(wscales(q, qb + 32, m2), sc) if NV > 2 else z
            q3 = wfmul(wscales(q, qb + 48, m3), sc) if NV > 3 else z
            q4 = wfmul(wscales(q, qb + 64, m4), sc) if NV > 4 else z
            q5 = wfmul(wscales(q, qb + 80, m5), sc) if NV > 5 else z
            q6 = wfmul(wscales(q, qb + 96, m6), sc) if NV > 6 else z
            q7 = wfmul(wscales(q, qb + 112, m7), sc) if NV > 7 else z
            mx = np.float32(-np.inf)
            for j in range(n):
                bij = _bias_at_py(bias, i, j)
                if bij == -np.inf:               # masked key: skip its dot
                    s[j] = -np.inf
                    continue
                r = kb + j * E
                a = wfmul(q0, wscales(k, r, m0))
                if NV > 1:
                    a = wfma(q1, wscales(k, r + 16, m1), a)
                if NV > 2:
                    a = wfma(q2, wscales(k, r + 32, m2), a)
                if NV > 3:
                    a = wfma(q3, wscales(k, r + 48, m3), a)
                if NV > 4:
                    a = wfma(q4, wscales(k, r + 64, m4), a)
                if NV > 5:
                    a = wfma(q5, wscales(k, r + 80, m5), a)
                if NV > 6:
                    a = wfma(q6, wscales(k, r + 96, m6), a)
                if NV > 7:
                    a = wfma(q7, wscales(k, r + 112, m7), a)
                val = wfhsum(a) + bij
                s[j] = val
                if val > mx:
                    mx = val
            if mx == -np.inf:                    # a fully masked row gives zeros, as the other paths do
                for e in range(E):
                    out[b, h, i, e] = 0.0
                continue
            exp_shifted(s, mx, p, bits)
            tot = np.float32(0.0)
            for j in range(n):
                tot += p[j]
            a0 = z
            a1 = z
            a2 = z
            a3 = z
            a4 = z
            a5 = z
            a6 = z
            a7 = z
            for j in range(n):
                pj = p[j]
                if pj != 0.0:
                    w = wfsplat(pj)
                    r = kb + j * E
                    a0 = wfma(w, wscales(v, r, m0), a0)
                    if NV > 1:
                        a1 = wfma(w, wscales(v, r + 16, m1), a1)
                    if NV > 2:
                        a2 = wfma(w, wscales(v, r + 32, m2), a2)
                    if NV > 3:
                        a3 = wfma(w, wscales(v, r + 48, m3), a3)
                    if NV > 4:
                        a4 = wfma(w, wscales(v, r + 64, m4), a4)
                    if NV > 5:
                        a5 = wfma(w, wscales(v, r + 80, m5), a5)
                    if NV > 6:
                        a6 = wfma(w, wscales(v, r + 96, m6), a6)
                    if NV > 7:
                        a7 = wfma(w, wscales(v, r + 112, m7), a7)
            inv = wfsplat(np.float32(1.0) / tot)
            ob = ((b * Hq + h) * L + i) * E
            wfstore_mask(out, ob, wfmul(a0, inv), m0)
            if NV > 1:
                wfstore_mask(out, ob + 16, wfmul(a1, inv), m1)
            if NV > 2:
                wfstore_mask(out, ob + 32, wfmul(a2, inv), m2)
            if NV > 3:
                wfstore_mask(out, ob + 48, wfmul(a3, inv), m3)
            if NV > 4:
                wfstore_mask(out, ob + 64, wfmul(a4, inv), m4)
            if NV > 5:
                wfstore_mask(out, ob + 80, wfmul(a5, inv), m5)
            if NV > 6:
                wfstore_mask(out, ob + 96, wfmul(a6, inv), m6)
            if NV > 7:
                wfstore_mask(out, ob + 112, wfmul(a7, inv), m7)


NV = 1
_ATTN_VEC = {}


def _decode_attention(q, k, v, out):
    """The decode kernel (jit.chunked) for these arrays: the 16-lane one where the CPU has AVX-512,
    the head size (keys and values alike) is at most 128 and every array is C-contiguous, else the
    scalar loops."""
    E = q.shape[3]
    if not (simd.HAVE_AVX512 and v.shape[3] == E and 0 < E <= 128 and q.flags.c_contiguous
            and k.flags.c_contiguous and v.flags.c_contiguous and out.flags.c_contiguous):
        return _attention
    nv = -(-E // 16)
    kern = _ATTN_VEC.get(nv)
    if kern is None:
        kern = _ATTN_VEC[nv] = chunked(_attention_vec_py, f"_{nv}", {"NV": nv}, fastmath=_NO_INF_MATH)
    return kern
ATTN_PAR_WORK = 1 << 21          # multiply-adds from which the parallel copy pays for waking threads
# decode (<= 8 queries over a KV cache): a head a task from far less work, since a step's caches come
# from L3, not L2: the two cores' caches and load ports halve that (15M Llama, 6 heads x 256 slots:
# int8 decode step 1.36 -> 1.24 ms, float32 2.98 -> 2.87, alternating in one process)
DECODE_PAR_WORK = 1 << 16


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


ATTN_ROWS = 16        # query rows a task of _attention_rows


def _attention_rows_py(c_lo, c_hi, nch, q, k, v, bias, scale, out, lay):
    # chunks c_lo .. c_hi - 1 of nch (Chunks: compiled once, run serial or in parallel); lay holds
    # the layouts ql, kl, vl, ol (4 each, below) and dims (7), int64
    # prefill / encoder attention, fused.  Queries q, keys k, values v and the output out are flat
    # float32 arrays addressed through layouts (offset, batch stride, head stride, row stride) with
    # unit stride along the head dim: query (b, h, i, e) at q[ql[0] + b ql[1] + h ql[2] + i ql[3] + e].
    # That serves both contiguous (B, H, L, E) tensors and heads read in place from a packed
    # (B, T, q | k | v) projection (packed_attention: no slice or permute copies).
    # dims = (B, H, L, E, Ev, Hk, S); bias (Bb, Hb, Lb, S), each of Bb, Hb, Lb 1 (broadcast) or full,
    # C-contiguous.  The callers build every layout from their arrays' shapes (all indices inside).
    # A task is one head's block of 16 query rows, 4 rows at a time, in 8-lane vectors
    # (edgetorch._native.simd): scores for 8 keys x 4 rows in 4 accumulators (each key-row load
    # serves 4 rows), the bias added and the row max taken in the same registers; one-pass softmax
    # through the vectorized exp; P.V as 4 rows x 8 value lanes, each value load serving 4 rows.
    # Key and value tails (S, Ev not multiples of 8) run scalar.  The tasks run in chunks of
    # consecutive tasks, a head's to a chunk when there are two heads or more: a chunk allocates
    # its scratch once and transposes a head's keys once (values are read in place: copying them
    # into rows of their own measured slower).  Packed q/k/v read in place against slices and
    # permutes copied by numpy around the contiguous kernel: 0.51 -> 0.39 ms.  Measured on a
    # MiniLM-shaped layer (12 x 128 x 128 x 32): 0.54 ms for the plain loops, 1.0 for batched BLAS
    # matmuls around a softmax.
    ql = (lay[0], lay[1], lay[2], lay[3])
    kl = (lay[4], lay[5], lay[6], lay[7])
    vl = (lay[8], lay[9], lay[10], lay[11])
    ol = (lay[12], lay[13], lay[14], lay[15])
    B, H, L, E, Ev, Hk, S = lay[16], lay[17], lay[18], lay[19], lay[20], lay[21], lay[22]
    Bb, Hb, Lb = bias.shape[0], bias.shape[1], bias.shape[2]
    # the bias's strides, 0 along its broadcast dims (arithmetic, not loop-invariant branches that
    # LLVM would unswitch into copies of the whole loop)
    sbl = S * (Lb > 1)
    sbh = Lb * S * (Hb > 1)
    sbb = Hb * Lb * S * (Bb > 1)
    bflat = bias.reshape(-1)
    rep = H // Hk
    RB = ATTN_ROWS
    nrb = (L + RB - 1) // RB
    S8 = S // 8 * 8
    E8 = Ev // 8 * 8
    ntask = B * H * nrb
    for c in range(c_lo, c_hi):
        s = np.empty((4, S), np.float32)
        p = np.zeros((4, S), np.float32)
        bits = np.empty(S, np.int32)
        inv = np.zeros(4, np.float32)
        mx = np.empty(4, np.float32)
        qs = np.empty((4, E), np.float32)
        brow = np.empty(4, np.int64)
        kT = np.empty(E * S, np.float32)
        have = -1
        for t in range(c * ntask // nch, (c + 1) * ntask // nch):
            b = t // (H * nrb)
            h = (t // nrb) % H
            i0 = (t % nrb) * RB
            kh = h // rep
            i1 = min(L, i0 + RB)
            if b * Hk + kh != have:          # this head's keys, transposed (E, S): 8 keys a vector load
                have = b * Hk + kh
                kb = kl[0] + b * kl[1] + kh * kl[2]
                for j in range(S):
                    for e in range(E):
                        kT[e * S + j] = k[kb + j * kl[3] + e]
            kbase = 0
            vbase = vl[0] + b * vl[1] + kh * vl[2]
            vs = vl[3]
            qbase = ql[0] + b * ql[1] + h * ql[2]
            obase = ol[0] + b * ol[1] + h * ol[2]
            for ib in range(i0, i1, 4):
                nr = min(4, i1 - ib)        # rows of this step; missing ones repeat row ib and are not stored
                for r in range(4):
                    ii = ib + r if r < nr else ib
                    for e in range(E):
                        qs[r, e] = q[qbase + ii * ql[3] + e] * scale
                    brow[r] = b * sbb + h * sbh + ii * sbl
                m0 = vfsplat(-np.inf)
                m1 = vfsplat(-np.inf)
                m2 = vfsplat(-np.inf)
                m3 = vfsplat(-np.inf)
                # 8 accumulators (two 8-key vectors x 4 rows): FMA latency is hidden only with that many
                for j0 in range(0, S8, 16):
                    w = 1 if j0 + 8 < S8 else 0      # a last lone vector of 8 keys: its twin is a repeat
                    a0 = vfload(bias, brow[0] + j0)
                    a1 = vfload(bias, brow[1] + j0)
                    a2 = vfload(bias, brow[2] + j0)
                    a3 = vfload(bias, brow[3] + j0)
                    c0 = vfload(bias, brow[0] + j0 + 8 * w)
                    c1 = vfload(bias, brow[1] + j0 + 8 * w)
                    c2 = vfload(bias, brow[2] + j0 + 8 * w)
                    c3 = vfload(bias, brow[3] + j0 + 8 * w)
                    for e in range(E):
                        kv = vfload(kT, kbase + e * S + j0)
                        kw = vfload(kT, kbase + e * S + j0 + 8 * w)
                        x0 = vfsplat(qs[0, e])
                        x1 = vfsplat(qs[1, e])
                        x2 = vfsplat(qs[2, e])
                        x3 = vfsplat(qs[3, e])
                        a0 = vfma(x0, kv, a0)
                        a1 = vfma(x1, kv, a1)
                        a2 = vfma(x2, kv, a2)
                        a3 = vfma(x3, kv, a3)
                        c0 = vfma(x0, kw, c0)
                        c1 = vfma(x1, kw, c1)
                        c2 = vfma(x2, kw, c2)
                        c3 = vfma(x3, kw, c3)
                    vfstore(s, j0, a0)
                    vfstore(s, S + j0, a1)
                    vfstore(s, 2 * S + j0, a2)
                    vfstore(s, 3 * S + j0, a3)
                    vfstore(s, j0 + 8 * w, c0)
                    vfstore(s, S + j0 + 8 * w, c1)
                    vfstore(s, 2 * S + j0 + 8 * w, c2)
                    vfstore(s, 3 * S + j0 + 8 * w, c3)
                    m0 = vfmax(m0, vfmax(a0, c0))
                    m1 = vfmax(m1, vfmax(a1, c1))
                    m2 = vfmax(m2, vfmax(a2, c2))
                    m3 = vfmax(m3, vfmax(a3, c3))
                mx[0] = vfhmax(m0)
                mx[1] = vfhmax(m1)
                mx[2] = vfhmax(m2)
                mx[3] = vfhmax(m3)
                for r in range(4):
                    for j in range(S8, S):
                        acc = np.float32(0.0)
                        for e in range(E):
                            acc += qs[r, e] * kT[e * S + j]
                        val = acc + bflat[brow[r] + j]
                        s[r, j] = val
                        if val > mx[r]:
                            mx[r] = val
                for r in range(nr):
                    m = mx[r]
                    if m == -np.inf:             # a fully masked row gives zeros, as the other paths do
                        p[r, :] = 0.0
                        inv[r] = 0.0
                        continue
                    exp_shifted(s[r], m, p[r], bits)
                    tot = np.float32(0.0)
                    for j in range(S):
                        tot += p[r, j]
                    inv[r] = np.float32(1.0) / tot
                for e0 in range(0, E8, 16):
                    w = 1 if e0 + 8 < E8 else 0      # as above: 8 accumulators, a lone last vector repeated
                    a0 = vfzero()
                    a1 = vfzero()
                    a2 = vfzero()
                    a3 = vfzero()
                    c0 = vfzero()
                    c1 = vfzero()
                    c2 = vfzero()
                    c3 = vfzero()
                    for j in range(S):
                        vv = vfload(v, vbase + j * vs + e0)
                        vw = vfload(v, vbase + j * vs + e0 + 8 * w)
                        x0 = vfsplat(p[0, j])
                        x1 = vfsplat(p[1, j])
                        x2 = vfsplat(p[2, j])
                        x3 = vfsplat(p[3, j])
                        a0 = vfma(x0, vv, a0)
                        a1 = vfma(x1, vv, a1)
                        a2 = vfma(x2, vv, a2)
                        a3 = vfma(x3, vv, a3)
                        c0 = vfma(x0, vw, c0)
                        c1 = vfma(x1, vw, c1)
                        c2 = vfma(x2, vw, c2)
                        c3 = vfma(x3, vw, c3)
                    ob = obase + ib * ol[3] + e0
                    for r in range(nr):
                        ar = a0 if r == 0 else (a1 if r == 1 else (a2 if r == 2 else a3))
                        cr = c0 if r == 0 else (c1 if r == 1 else (c2 if r == 2 else c3))
                        sc = vfsplat(inv[r])
                        vfstore(out, ob + r * ol[3], vfmul(ar, sc))
                        vfstore(out, ob + r * ol[3] + 8 * w, vfmul(cr, sc))
                for e in range(E8, Ev):
                    for r in range(nr):
                        acc = np.float32(0.0)
                        for j in range(S):
                            acc += p[r, j] * v[vbase + j * vs + e]
                        out[obase + (ib + r) * ol[3] + e] = acc * inv[r]


# one compile serves the serial and the parallel runs (jit.chunked: the twins' parallel copy compiled
# in 9-10.5 s against 3.5 s serial, most of the encoder's cold start)
_attention_rows = chunked(_attention_rows_py, fastmath=_NO_INF_MATH)


_ZERO32, _NEG_INF32 = np.float32(0.0), np.float32(-np.inf)


def _fused_rows(q, ql, k, kl, v, vl, bias, sc, out, ol, dims):
    """Run _attention_rows (layouts as it takes them); the bias keeps its broadcast (size-1) batch,
    head and query dims."""
    B, H, L, E, Ev, Hk, S = dims
    bz = bias.astype(np.float32, copy=False).reshape((1,) * (4 - bias.ndim) + bias.shape)
    if any(d not in (1, n) for d, n in zip(bz.shape[:3], (B, H, L))) or bz.shape[3] != S:
        raise ValueError(f"attention: mask {bias.shape} does not broadcast to {(B, H, L, S)}")
    work = B * H * L * S * (E + Ev)
    # a chunk is a head's blocks of queries (its keys transposed once), or one block when there is one head
    nch = B * H if B * H >= 2 else B * H * -(-L // ATTN_ROWS)
    (_attention_rows.parallel if work >= ATTN_PAR_WORK else _attention_rows.serial)(
        nch, nch, q, k, v, np.ascontiguousarray(bz), np.float32(sc), out, np.array(ql + kl + vl + ol + dims, np.int64))


def _bias(mask, is_causal, L, S, dtype):
    if mask is not None and (mask.ndim == 0 or mask.shape[-1] not in (1, S)
                             or (mask.ndim >= 2 and mask.shape[-2] not in (1, L))):
        raise ValueError(f"attention: mask {mask.shape} does not broadcast to {L} queries x {S} keys")
    if mask is not None and not is_causal:
        # the decoders' case: a mask alone, already (..., L, S); float32 straight from np.where
        # (6 -> ~2 us a decode step's attention: no zeros, no add, no second cast)
        m = np.where(mask, _ZERO32, _NEG_INF32) if mask.dtype == np.bool_ else mask.astype(np.float32, copy=False)
        if m.ndim >= 2 and m.shape[-1] == S and m.shape[-2] in (1, L):
            return m                    # broadcast over the queries (an encoder's padding mask) kept so
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
    decode = q.ndim == k.ndim == v.ndim == 4 and q.dtype == np.float32 and L <= 8 and k.shape[0] == q.shape[0] \
        and k.shape[1] == v.shape[1]
    if decode and mask is not None and mask.dtype == np.bool_ and not is_causal and mask.size == L * S \
            and mask.ndim >= 2 and mask.shape[-1] == S:
        bias = mask.reshape(L, S)       # a decoder's (1, 1, L, S) bool mask: the decode kernel reads it as is
    else:
        bias = _bias(mask, is_causal, L, S, q.dtype)
        if bias.ndim > 2 and bias.size == L * S:
            bias = bias.reshape(L, S)   # a (1, 1, L, S) mask, as decoders make: the Numba loop takes it
    # a float16 KV cache (both k and v) with float32 queries: the decode loop reads it as it is,
    # the other paths widen the part they attend over
    half = k.dtype == v.dtype == np.float16 and q.dtype == out.dtype == np.float32
    _floats(out, q) if half else _floats(out, q, k, v)
    if q.ndim < 2 or k.ndim != q.ndim or v.ndim != q.ndim or q.shape[-1] != k.shape[-1] or k.shape[-2] != v.shape[-2] \
            or out.shape != q.shape[:-1] + (v.shape[-1],) or bias.ndim < 2 or bias.shape[-1] != S \
            or bias.shape[-2] not in (1, L) \
            or (q.ndim >= 3 and (k.shape[-3] == 0 or q.shape[-3] % k.shape[-3] or k.shape[:-2] != v.shape[:-2])):
        raise ValueError(f"attention: q {q.shape}, k {k.shape}, v {v.shape}, mask {bias.shape} -> {out.shape}")
    # decode-sized queries: one Numba loop over the KV cache; longer ones (prefill, encoders): the fused
    # vector loop below; other ranks and dtypes: numpy matmuls around a softmax
    if decode and bias.shape == (L, S):
        work = q.shape[0] * q.shape[1] * L * S * (q.shape[-1] + v.shape[-1])
        kc, vc = np.ascontiguousarray(k), np.ascontiguousarray(v)
        if half:
            kc, vc = kc.view(np.uint16), vc.view(np.uint16)
        qc = np.ascontiguousarray(q)
        att = _decode_attention(qc, kc, vc, out)
        (att.parallel if work >= DECODE_PAR_WORK else att.serial)(q.shape[0] * q.shape[1], qc, kc, vc, bias,
                                                                  np.float32(sc), out)
        return
    # keys masked for every query (a KV cache's unused tail: a 64-token prefill into a 256-slot
    # cache attends over 64) add exp(-inf) = 0: drop them before the matmuls
    live = np.isfinite(bias).reshape(-1, S).any(axis=0) if bias.ndim >= 2 and bias.shape[-1] == S else None
    if live is not None and not live[-1]:
        s_eff = int(np.flatnonzero(live)[-1]) + 1 if live.any() else 1
        k, v, bias = k[..., :s_eff, :], v[..., :s_eff, :], bias[..., :s_eff]
    if half:
        k, v = k.astype(np.float32), v.astype(np.float32)
    if q.ndim == 4 and q.dtype == np.float32 and k.shape[0] == q.shape[0] and k.shape[1] == v.shape[1] \
            and bias.ndim <= 4:
        # the fused Numba loop: no scores tensor, no BLAS calls per head
        qc, kc, vc = np.ascontiguousarray(q), np.ascontiguousarray(k), np.ascontiguousarray(v)
        o = out if out.flags.c_contiguous else np.empty(out.shape, np.float32)
        B, H, _, E = qc.shape
        Hk, S, Ev = vc.shape[1:]
        _fused_rows(qc.reshape(-1), (0, H * L * E, L * E, E), kc.reshape(-1), (0, Hk * S * E, S * E, E),
                    vc.reshape(-1), (0, Hk * S * Ev, S * Ev, Ev), bias, sc, o.reshape(-1),
                    (0, H * L * Ev, L * Ev, Ev), (B, H, L, E, Ev, Hk, S))
        if o is not out:
            out[...] = o
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


@preparer("scaled_dot_product_attention")
def p_sdpa(out, q, k, v, mask=None, is_causal=False, scale=None, enable_gqa=False):
    """The decode case (a few queries over a KV cache, a bool mask): the checks and the choice of
    serial or parallel made once."""
    if not (q.ndim == k.ndim == v.ndim == 4 and q.dtype == out.dtype == np.float32
            and k.dtype == v.dtype and k.dtype in (np.float32, np.float16)):
        return None
    B, H, L, E = q.shape
    S = k.shape[2]
    if not (L <= 8 and k.shape[0] == B and v.shape[:3] == k.shape[:3] and k.shape[3] == E and k.shape[1] > 0
            and H % k.shape[1] == 0 and out.shape == (B, H, L, v.shape[3]) and mask is not None
            and mask.dtype == np.bool_ and not is_causal and mask.size == L * S and mask.ndim >= 2
            and mask.shape[-1] == S and mask.flags.c_contiguous and q.flags.c_contiguous and k.flags.c_contiguous
            and v.flags.c_contiguous and out.flags.c_contiguous):
        return None
    sc = np.float32(1.0 / math.sqrt(E) if scale is None else float(scale))
    n = B * H
    half = k.dtype == np.float16          # a float16 KV cache, read as its bits
    att = _decode_attention(q, k, v, out)
    run = att.serial
    if B * H * L * S * (E + v.shape[3]) >= DECODE_PAR_WORK:
        run = att.bound(q, k.view(np.uint16) if half else k, v.view(np.uint16) if half else v,
                        mask.reshape(L, S), sc, out)
    if half:
        return lambda out, q, k, v, mask: run(n, q, k.view(np.uint16), v.view(np.uint16), mask.reshape(L, S), sc, out)
    return lambda out, q, k, v, mask: run(n, q, k, v, mask.reshape(L, S), sc, out)


@kernel("packed_attention")
def k_packed_attention(out, qkv, mask=None, heads=1, kv_heads=1, is_causal=False, scale=None):
    """Attention whose heads are read in place from one packed (B, T, [q | k | v]) projection and
    written in place into (B, T, heads x d): no slice or permute copies."""
    _floats(out, qkv)
    if not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in (heads, kv_heads)):
        raise ValueError(f"packed_attention: heads {heads!r} and kv_heads {kv_heads!r} must be ints")
    parts = heads + 2 * kv_heads
    if qkv.ndim != 3 or heads < 1 or kv_heads < 1 or heads % kv_heads or qkv.shape[2] % parts:
        raise ValueError(f"packed_attention: qkv {qkv.shape} does not hold {heads} + 2 x {kv_heads} heads")
    B, T, N = qkv.shape
    d = N // parts
    if out.shape != (B, T, heads * d):
        raise ValueError(f"packed_attention: qkv {qkv.shape} -> {out.shape}, expected {(B, T, heads * d)}")
    sc = 1.0 / math.sqrt(d) if scale is None else float(scale)
    bias = _bias(mask, is_causal, T, T, qkv.dtype)
    if out.size == 0:
        return
    if qkv.dtype != np.float32:
        def heads_of(lo, n):
            return qkv[:, :, lo * d:(lo + n) * d].reshape(B, T, n, d).transpose(0, 2, 1, 3)
        o = np.empty((B, heads, T, d), out.dtype)
        k_sdpa(o, heads_of(0, heads), heads_of(heads, kv_heads), heads_of(heads + kv_heads, kv_heads), mask,
               is_causal=is_causal, scale=scale, enable_gqa=True)
        out[...] = o.transpose(0, 2, 1, 3).reshape(out.shape)
        return
    x = np.ascontiguousarray(qkv).reshape(-1)
    o = out if out.flags.c_contiguous else np.empty(out.shape, np.float32)
    _fused_rows(x, (0, T * N, d, N), x, (heads * d, T * N, d, N), x, ((heads + kv_heads) * d, T * N, d, N),
                bias, sc, o.reshape(-1), (0, T * heads * d, d, heads * d), (B, heads, T, d, d, kv_heads, T))
    if o is not out:
        out[...] = o
