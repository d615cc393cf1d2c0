"""int4-weight kernels (linear_q4, embedding_q4): row pairs of nibbles with group scales (the file's
layout), against int8 activations on AVX512-VNNI (vnni.gemv_q4 on the weights repacked once into
panels of 16 rows, any row count: int4-weight's blocks of 32 with their own scales, act_block=32, the
default; 8da4w's rows) or float activations (act_block=0, or no VNNI: the 16-lane nibble-to-float
GEMV where the CPU has AVX-512F, a portable loop elsewhere; 8da4w without VNNI: a portable int8
GEMV).  The layouts and measurements: docs/quantization.md.

Float activations, decode-sized inputs (<= 4 rows): one byte stream per two rows, blocks of 32
columns (a literal trip count: 2.2x faster than a loop bounded by the group size), group scales per
block, the zero point applied once per group through the group sums of x.  Larger inputs with float
activations: 256 rows at a time dequantized into a reused buffer, then BLAS."""
import numpy as np
from numba import int32, njit, prange

from edgetorch._native import simd
from edgetorch._native.simd import vprefetch, wfhsum, wfload, wfma, wfsplat, wfzero, wnib_hi, wnib_lo

from edgetorch._native.jit import variant

from . import vnni
from ._derived import filled
from ._jit import twins
from .linalg import apply_activation
from .index import check_index
from .quant import (PAR_WEIGHTS, QUANT_ROWS_PAR, _check, _quant_blocks, _quant_rows, _quant_rows_p,
                    _quant_rows_s, _row_blocks, _rows, f32)
from .registry import kernel, preparer

# how far ahead the float-activation int4 GEMVs hint their weight streams into cache (vprefetch): their
# arithmetic per byte keeps too few misses in flight for DRAM on their own
PF_BYTES = 4096
Q4_TILE = 256             # rows dequantized per BLAS call in the int4 prefill path

# ------------------------------------------------------------------ int4 weights

@njit(cache=True, fastmath=True)
def _group_sums(x, ng, G, xs):
    M = x.shape[0]
    for m in range(M):
        for g in range(ng):
            a = np.float32(0.0)
            for i in range(G):
                a += x[m, g * G + i]
            xs[m, g] = a


def _zero_f_py():
    return np.float32(0.0)


def _xat_f_py(x, m, k):
    return x[m, k]


def _mac_f_py(a, xv, nib):
    # int32(...) around the nibble: Numba computes uint8 & 15 in int64, and int64 lanes (vpmovzxbq,
    # vcvtqq2ps) run at half the rate of int32 ones (6.7 -> 11.4 Gweights/s a thread)
    return a + xv * np.float32(int32(nib))


def _fin_f_py(a):
    return a


def _zero_i_py():
    return int32(0)


def _xat_i_py(x, m, k):
    return int32(x[m, k])


def _mac_i_py(a, xv, nib):
    return int32(a + xv * int32(nib))


def _fin_i_py(a):
    return np.float32(a)


_FLOAT_X = {k: variant(f, k.lower() + "_f", inline="always")
            for k, f in (("ZERO", _zero_f_py), ("XAT", _xat_f_py), ("MAC", _mac_f_py), ("FIN", _fin_f_py))}
_INT8_X = {k: variant(f, k.lower() + "_i", inline="always")
           for k, f in (("ZERO", _zero_i_py), ("XAT", _xat_i_py), ("MAC", _mac_i_py), ("FIN", _fin_i_py))}
ZERO, XAT, MAC, FIN = (_FLOAT_X[k] for k in ("ZERO", "XAT", "MAC", "FIN"))


def _gemv_q4_py(x, sx, xs, wp, s, z, sym, n, out):
    # x (M, K): float32 activations, or int8 ones (8da4w) with a scale sx per row (1 for float x); xs
    # (M, ng) group sums of x; wp (P, K) row pairs; s, z (N, ng); out (M, N).  ZERO, XAT, MAC, FIN are
    # bound per variant below: float32 sums for float x, int32 sums of int8 products for int8 x.
    M, K = x.shape
    P = wp.shape[0]
    ng = s.shape[1]
    bpg = (K // ng) // 32
    nb = K // 32
    nq = n // 8          # blocks of 4 pairs whose 8 rows all exist; the rest pair by pair
    for t in prange(nq + (P - nq * 4)):
        p0 = t * 4 if t < nq else nq * 4 + (t - nq)
        width = 4 if t < nq else 1
        j = 2 * p0
        for m in range(M):
            r0 = np.float32(0.0)
            r1 = np.float32(0.0)
            r2 = np.float32(0.0)
            r3 = np.float32(0.0)
            r4 = np.float32(0.0)
            r5 = np.float32(0.0)
            r6 = np.float32(0.0)
            r7 = np.float32(0.0)
            if width == 4:
                for blk in range(nb):
                    g = blk // bpg
                    k0 = blk * 32
                    a0 = ZERO()
                    a1 = ZERO()
                    a2 = ZERO()
                    a3 = ZERO()
                    a4 = ZERO()
                    a5 = ZERO()
                    a6 = ZERO()
                    a7 = ZERO()
                    for i in range(32):
                        xv = XAT(x, m, k0 + i)
                        b0 = wp[p0, k0 + i]
                        b1 = wp[p0 + 1, k0 + i]
                        b2 = wp[p0 + 2, k0 + i]
                        b3 = wp[p0 + 3, k0 + i]
                        a0 = MAC(a0, xv, b0 & 15)
                        a1 = MAC(a1, xv, b0 >> 4)
                        a2 = MAC(a2, xv, b1 & 15)
                        a3 = MAC(a3, xv, b1 >> 4)
                        a4 = MAC(a4, xv, b2 & 15)
                        a5 = MAC(a5, xv, b2 >> 4)
                        a6 = MAC(a6, xv, b3 & 15)
                        a7 = MAC(a7, xv, b3 >> 4)
                    r0 += s[j, g] * FIN(a0)
                    r1 += s[j + 1, g] * FIN(a1)
                    r2 += s[j + 2, g] * FIN(a2)
                    r3 += s[j + 3, g] * FIN(a3)
                    r4 += s[j + 4, g] * FIN(a4)
                    r5 += s[j + 5, g] * FIN(a5)
                    r6 += s[j + 6, g] * FIN(a6)
                    r7 += s[j + 7, g] * FIN(a7)
                out[m, j] = r0
                out[m, j + 1] = r1
                out[m, j + 2] = r2
                out[m, j + 3] = r3
                out[m, j + 4] = r4
                out[m, j + 5] = r5
                out[m, j + 6] = r6
                out[m, j + 7] = r7
            else:
                jn = min(j + 1, n - 1)
                for blk in range(nb):
                    g = blk // bpg
                    k0 = blk * 32
                    a0 = ZERO()
                    a1 = ZERO()
                    for i in range(32):
                        xv = XAT(x, m, k0 + i)
                        b0 = wp[p0, k0 + i]
                        a0 = MAC(a0, xv, b0 & 15)
                        a1 = MAC(a1, xv, b0 >> 4)
                    r0 += s[j, g] * FIN(a0)
                    r1 += s[jn, g] * FIN(a1)
                out[m, j] = r0
                if j + 1 < n:
                    out[m, j + 1] = r1
            # zero points: subtract s * z * (sum of x over the group), once per group
            for jj in range(j, min(j + 2 * width, n)):
                c = np.float32(0.0)
                for g in range(ng):
                    zz = np.float32(8.0) if sym else np.float32(z[jj, g])
                    c += s[jj, g] * zz * xs[m, g]
                out[m, jj] = (out[m, jj] - c) * sx[m]


def _gemv_q4_wide_py(x, xs, wp, s, z, sym, n, out):
    # _gemv_q4_py in explicit 16-lane vectors (AVX-512): 16 bytes of a row pair become the two rows'
    # 16 weights as float lanes (zero-extend, mask / shift, convert: wnib_lo / wnib_hi), one FMA each
    # against x; a group's sums times its scale into per-row accumulators.  A task is two pairs (4
    # rows sharing each load of x); an odd last pair runs alone.  The weight stream is hinted
    # PF_BYTES ahead.  MiniLM-free measure, 2 threads: 19 -> 36 Gweights/s on 768 x 2048 and
    # 4096 x 768 (the LLVM-vectorized loop above widens through int64 lanes).  Needs K // ng % 16 == 0.
    M, K = x.shape
    P = wp.shape[0]
    ng = s.shape[1]
    G = GS if GS > 0 else K // ng         # GS: the group size as a compile-time constant (variant below)
    nq = P // 2
    for t in prange(nq + (P - 2 * nq)):
        p0 = 2 * t if t < nq else P - 1
        p1 = p0 + 1 if t < nq else P - 1
        j0 = 2 * p0
        j1 = min(j0 + 1, n - 1)
        j2 = 2 * p1
        j3 = min(j2 + 1, n - 1)
        for m in range(M):
            r0 = wfzero()
            r1 = wfzero()
            r2 = wfzero()
            r3 = wfzero()
            for g in range(ng):
                a0 = wfzero()
                a1 = wfzero()
                a2 = wfzero()
                a3 = wfzero()
                for k in range(g * G, (g + 1) * G, 16):
                    vprefetch(wp, p0 * K + 2 * k + PF_BYTES)
                    xv = wfload(x, m * K + k)
                    a0 = wfma(xv, wnib_lo(wp, p0 * K + k), a0)
                    a1 = wfma(xv, wnib_hi(wp, p0 * K + k), a1)
                    a2 = wfma(xv, wnib_lo(wp, p1 * K + k), a2)
                    a3 = wfma(xv, wnib_hi(wp, p1 * K + k), a3)
                r0 = wfma(a0, wfsplat(s[j0, g]), r0)
                r1 = wfma(a1, wfsplat(s[j1, g]), r1)
                r2 = wfma(a2, wfsplat(s[j2, g]), r2)
                r3 = wfma(a3, wfsplat(s[j3, g]), r3)
            v0 = wfhsum(r0)
            v1 = wfhsum(r1)
            v2 = wfhsum(r2)
            v3 = wfhsum(r3)
            # zero points: s * z * (sum of x over the group), once per group and row
            for g in range(ng):
                xg = xs[m, g]
                v0 -= s[j0, g] * (np.float32(8.0) if sym else np.float32(z[j0, g])) * xg
                v1 -= s[j1, g] * (np.float32(8.0) if sym else np.float32(z[j1, g])) * xg
                v2 -= s[j2, g] * (np.float32(8.0) if sym else np.float32(z[j2, g])) * xg
                v3 -= s[j3, g] * (np.float32(8.0) if sym else np.float32(z[j3, g])) * xg
            out[m, j0] = v0
            if j0 + 1 < n:
                out[m, j0 + 1] = v1
            if p1 != p0:
                out[m, j2] = v2
                if j2 + 1 < n:
                    out[m, j2 + 1] = v3


_gemv_q4, _gemv_q4_par = twins(_gemv_q4_py, fastmath=True)         # float32 x (int8 x: below)
_gemv_dq4, _gemv_dq4_par = twins(_gemv_q4_py, "_dq", _INT8_X)
GS = 0
# the default group size compiled as a constant: the group's inner loop then unrolls (2 steps at
# G = 32), 12-26% faster from DRAM on the 110M shapes (2304x768 29.0 -> 35.2 Gweights/s, LM head
# 33.4 -> 37.6); other group sizes run the generic copy
_gemv_q4_wide, _gemv_q4_wide_par = twins(_gemv_q4_wide_py, fastmath=True)
_gemv_q4_g32, _gemv_q4_g32_par = twins(_gemv_q4_wide_py, "_g32", {"GS": 32}, fastmath=True)


@njit(cache=True, inline="always")
def _dq4_row(wp, s, z, sym, r, G, dst, i):
    # dst[i, :] = (q - zero) * scale for row r of the packed int4 weight (two rows a byte, row r in
    # the high nibble when odd), G weights a group
    p = r // 2
    hi = r % 2
    for k in range(wp.shape[1]):
        b = wp[p, k]
        q = (b >> 4) if hi else (b & 15)
        zz = np.float32(8.0) if sym else np.float32(z[r, k // G])
        dst[i, k] = (np.float32(q) - zz) * s[r, k // G]


@njit(cache=True, parallel=True)
def _dequant_q4(wp, s, z, sym, r0, r1, w):
    # rows [r0, r1) of the int4 weight into w[: r1 - r0] (float32)
    G = wp.shape[1] // s.shape[1]
    for r in prange(r0, r1):
        _dq4_row(wp, s, z, sym, r, G, w, r - r0)


def _q4_args(what, wp, scale, zero, group_size, dynamic=False, act_block=0):
    n = scale.shape[0] if scale.ndim == 2 else -1
    if wp.dtype != np.uint8 or wp.ndim != 2 or scale.ndim != 2 or wp.shape[0] != (n + 1) // 2 \
            or group_size % 32 or wp.shape[1] % group_size or scale.shape[1] != wp.shape[1] // group_size \
            or (zero is not None and (zero.shape != scale.shape or zero.dtype != np.uint8)):
        raise ValueError(f"{what}: packed weight {wp.dtype}{wp.shape}, scale {scale.shape}, group {group_size} "
                         f"do not fit")
    if act_block not in (0, 32) or (act_block and dynamic):
        raise ValueError(f"{what}: act_block={act_block!r} with dynamic={dynamic}: expected 0, or 32 without dynamic")
    sym = zero is None
    z = np.zeros((1, 1), np.uint8) if sym else zero
    return n, z, sym


_NO_XG = np.zeros((1, 1), np.float32)


def _gemv_q4_rows(xq, sx, wp, scale, n, out):
    """8da4w on VNNI: int8 rows xq (M, K) with scales sx against symmetric int4 row pairs (the int4
    kernel with x's scale applied once a row)."""
    M, K = xq.shape
    bs = np.empty((M, K // 32), np.int32)
    _row_blocks(xq, bs)
    vnni.gemv_q4(xq, bs, _NO_XG, sx, _NO_XG, wp, scale, None, n, out)


def _q4_blocks_fused_py(x, xq, bs, bd, xg, zp, wq, s16, z16, sym, n, out):
    # a prepared int4-weight GEMV in one Numba call: x's blocks (_quant_blocks), then the panel
    # kernel KERN (bound per variant), the same compiled functions the unprepared path calls one
    # after the other (so the same results, bit for bit; this wrapper does no float math of its own).
    # One dispatch instead of two, with the reshaped views kept: 15M int4 decode 0.344 -> 0.321 and
    # 0.330 -> 0.313 ms (in-process A/B, session 14)
    _quant_blocks(x, xq, bs, bd, xg, zp)
    KERN(xq, bs, bd, vnni._NO_F32, xg, wq, s16, z16, sym, n, out)


def _q4_rows_fused_py(x, xq, bs, sx, wq, s16, z16, n, out):
    # the 8da4w twin: x's int8 rows (QUANT), their block sums, the panel kernel with a scale a row
    QUANT(x, xq, sx, 0)
    _row_blocks(xq, bs)
    KERN(xq, bs, _NO_XG, sx, _NO_XG, wq, s16, z16, True, n, out)


KERN = QUANT = None
_q4_blocks_fused = [variant(_q4_blocks_fused_py, f"_q4_blocks_fused_{i}", {"KERN": vnni._gemv_q4p_blocks[i]})
                    for i in (0, 1)]
_q4_rows_fused = {(par, pq): variant(_q4_rows_fused_py, f"_q4_rows_fused_{int(par)}{int(pq)}",
                                     {"KERN": vnni._gemv_q4p_rows[par],
                                      "QUANT": _quant_rows_p if pq else _quant_rows_s})
                  for par in (False, True) for pq in (False, True)}


def _blocks_vnni():
    """Whether int8 activation blocks (act_block) run on the 512-bit VNNI kernel here."""
    return simd.HAVE_VNNI and simd.HAVE_AVX512


def _block_scratch(M, K, ng):
    """(xq, bs, bd, xg): the arrays quant._quant_blocks fills for M rows of K inputs, ng groups."""
    return (np.empty((M, K), np.int8), np.empty((M, K // 32), np.int32), np.empty((M, K // 32), np.float32),
            np.empty((M, ng), np.float32))


def _blocks_dequantized(x2):
    """x on its int8 block grid, as float32 (the act_block path where the VNNI kernel is absent)."""
    M, K = x2.shape
    xq, bs, bd, xg = _block_scratch(M, K, 1)
    _quant_blocks(np.ascontiguousarray(x2), xq, bs, bd, xg, 0)
    return (xq.reshape(M, K // 32, 32).astype(np.float32) * bd[:, :, None]).reshape(M, K)


@kernel("linear_q4")
def k_linear_q4(out, x, wp, scale, zero=None, b=None, group_size=32, activation=None, dynamic=False, act_block=0):
    n, z, sym = _q4_args("linear_q4", wp, scale, zero, group_size, dynamic, act_block)
    K = wp.shape[1]
    _check("linear_q4", out, x, n, K, b)
    x2, o2 = _rows(x, n, out)
    M, ng = x2.shape[0], scale.shape[1]
    if act_block and _blocks_vnni():
        # int8 blocks against the weights in panels, any row count (a panel's 8 K weight bytes stay in
        # L1 across the rows)
        xq, bs, bd, xg = _block_scratch(M, K, ng)
        _quant_blocks(np.ascontiguousarray(x2), xq, bs, bd, xg, 8 if sym else 0)
        vnni.gemv_q4(xq, bs, bd, None, xg, wp, scale, zero, n, o2)
        if b is not None:
            out += b
        apply_activation(out, activation)
        return
    if act_block:
        x2 = _blocks_dequantized(x2)
    if dynamic and sym and simd.HAVE_VNNI and simd.HAVE_AVX512:
        # int8 rows against the weights in panels for any row count: with a panel's weight bytes in
        # L1 across rows, 64-row prefills ran 2.4-3.6x faster than dequantize + BLAS
        xq = np.empty(x2.shape, np.int8)
        sx = np.empty(M, np.float32)
        _quant_rows(x2, xq, sx)
        _gemv_q4_rows(xq, sx, wp, scale, n, o2)
    elif M <= 4:
        s = f32(scale)
        if dynamic:
            xq = np.empty(x2.shape, np.int8)
            sx = np.empty(M, np.float32)
            _quant_rows(x2, xq, sx)
            xs = xq.reshape(M, ng, -1).sum(axis=2, dtype=np.int32).astype(np.float32)
            (_gemv_dq4_par if wp.size * 2 >= PAR_WEIGHTS else _gemv_dq4)(xq, sx, xs, wp, s, z, sym, n, o2)
        else:
            xs = np.empty((M, ng), np.float32)
            _group_sums(x2, ng, K // ng, xs)
            par = wp.size * 2 >= PAR_WEIGHTS
            if simd.HAVE_AVX512 and (K // ng) % 16 == 0:
                g32 = K == 32 * ng
                kern = (_gemv_q4_g32_par if par else _gemv_q4_g32) if g32 else \
                    (_gemv_q4_wide_par if par else _gemv_q4_wide)
                kern(np.ascontiguousarray(x2), xs, np.ascontiguousarray(wp), s, z, sym, n, o2)
            else:
                (_gemv_q4_par if par else _gemv_q4)(x2, filled(M, 1.0), xs, wp, s, z, sym, n, o2)
    else:
        s = f32(scale)
        if dynamic:
            xq = np.empty(x2.shape, np.int8)
            sx = np.empty(M, np.float32)
            _quant_rows(x2, xq, sx)
            x2 = xq.astype(np.float32)
            x2 *= sx[:, None]
        w = np.empty((min(Q4_TILE, n), K), np.float32)
        for r0 in range(0, n, Q4_TILE):
            r1 = min(n, r0 + Q4_TILE)
            _dequant_q4(wp, s, z, sym, r0, r1, w)
            np.matmul(x2, w[:r1 - r0].T, out=o2[:, r0:r1])
    if b is not None:
        out += b
    apply_activation(out, activation)


@preparer("linear_q4")
def p_linear_q4(out, x, wp, scale, zero=None, b=None, group_size=32, activation=None, dynamic=False, act_block=0):
    """The decode GEMVs (<= 4 rows, no activation) with the argument checks and the kernel choice
    made once; the per-call work (x's group sums, its int8 rows or blocks) stays in the run."""
    n, z, sym = _q4_args("linear_q4", wp, scale, zero, group_size, dynamic, act_block)
    K = wp.shape[1]
    _check("linear_q4", out, x, n, K, b)
    M, ng = x.size // K, scale.shape[1]
    if activation is not None or M > 4 or not (x.flags.c_contiguous and out.flags.c_contiguous
                                               and wp.flags.c_contiguous and scale.flags.c_contiguous):
        return None
    if act_block or dynamic and sym:
        if not (simd.HAVE_VNNI and simd.HAVE_AVX512 and (_blocks_vnni() or not act_block)):
            return None
        # scratch (prepared runs hold the method's lock), the compiled kernel and the constant's
        # panels, once: a decode step makes ~50 of these calls.  The run checks that it gets the
        # constants it was prepared for (a prepared step is only ever called with them)
        xq, bs, bd, xg = _block_scratch(M, K, ng)
        sx = np.empty(M, np.float32)
        zp = 8 if sym else 0
        par = vnni.q4_parallel(M, n, K)
        w0, s0, z0 = wp, scale, zero
        wq, s16, z16 = vnni.q4_panels(wp, scale, zero, n)
        x0, o0 = x, out
        x2, o2 = x.reshape(M, K), out.reshape(M, n)

        if act_block:
            fused = _q4_blocks_fused[par]

            def run(out, x, wp, scale, zero=None, b=None):
                if wp is not w0 or scale is not s0 or zero is not z0:
                    raise ValueError("linear_q4: a prepared run called with other weights")
                fused(x2 if x is x0 else x.reshape(M, K), xq, bs, bd, xg, zp, wq, s16, z16, sym, n,
                      o2 if out is o0 else out.reshape(M, n))
                if b is not None:
                    out += b
        else:
            fused = _q4_rows_fused[par, M * K >= QUANT_ROWS_PAR]

            def run(out, x, wp, scale, zero=None, b=None):
                if wp is not w0 or scale is not s0:
                    raise ValueError("linear_q4: a prepared run called with other weights")
                fused(x2 if x is x0 else x.reshape(M, K), xq, bs, sx, wq, s16, z16, n,
                      o2 if out is o0 else out.reshape(M, n))
                if b is not None:
                    out += b
        return run
    if dynamic or scale.dtype != np.float32 or not (simd.HAVE_AVX512 and (K // ng) % 16 == 0):
        return None
    par = wp.size * 2 >= PAR_WEIGHTS
    kern = (_gemv_q4_g32_par if par else _gemv_q4_g32) if K == 32 * ng else \
        (_gemv_q4_wide_par if par else _gemv_q4_wide)
    G = K // ng

    def run(out, x, wp, scale, zero=None, b=None):
        x2 = x.reshape(M, K)
        xs = np.empty((M, ng), np.float32)
        _group_sums(x2, ng, G, xs)
        kern(x2, xs, wp, scale, z if zero is None else zero, sym, n, out.reshape(M, n))
        if b is not None:
            out += b
    return run


@njit(cache=True)
def _embed_q4(ids, wp, s, z, sym, G, out):
    # out[i, k] = (q - zero) * scale for row ids[i] of the packed table: one Numba pass (the numpy
    # version made ~10 temporaries: 35-88 us of a decode step for one token, now ~1 us)
    for i in range(ids.shape[0]):
        _dq4_row(wp, s, z, sym, ids[i], G, out, i)


@kernel("embedding_q4")
def k_embedding_q4(out, ids, wp, scale, zero=None, group_size=32):
    n, z, sym = _q4_args("embedding_q4", wp, scale, zero, group_size)
    s = f32(scale)
    check_index(ids, n, "embedding_q4")
    if out.shape != ids.shape + (wp.shape[1],) or out.dtype != np.float32:
        raise ValueError(f"embedding_q4: table ({n}, {wp.shape[1]}) -> {out.dtype}{out.shape} does not fit")
    o2 = out.reshape(-1, wp.shape[1]) if out.flags.c_contiguous else np.empty((ids.size, wp.shape[1]), np.float32)
    _embed_q4(np.ascontiguousarray(ids.reshape(-1), dtype=np.int64), wp, s, z, sym, int(group_size), o2)
    if not out.flags.c_contiguous:
        out[...] = o2.reshape(out.shape)
