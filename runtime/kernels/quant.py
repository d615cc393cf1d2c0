"""Kernels for the quantized ops (see edgetorch/ops/quant.py for their numerics).

Where the CPU has AVX512-VNNI (edgetorch._native.simd.HAVE_VNNI), every int8 x int8 product runs
on vpdpbusd (runtime/kernels/vnni.py): the int8-dynamic linear at any row count, the static int8
GEMM (conv and linear) and symmetric 8da4w at any row count.  The portable loops below run
everywhere else (and are tested everywhere).

Decode-sized inputs (<= 4 rows) run Numba matrix-vector loops that read the
quantized weights once:
  int8 weights, float activations  float FMA over int8 rows, a row a task
  int8 weights, dynamic int8 rows  int32 products truncated each step so LLVM
                                   emits vpmaddwd (../shared/NUMBA.md)
  int4 row pairs (float or int8 activations): quant4.py
Larger inputs:
  int8 activations (dynamic rows, static tensors, static im2col columns)
                                   an int8 GEMM with int32 accumulation, 4x4
                                   output blocks (110-165 Gops/s here, on par
                                   with OpenBLAS sgemm), then the scales; for
                                   static ops the zero-point correction
                                   (in_zp * row sums of W) and requantization
                                   run in one pass, in float64 in the
                                   reference's order (bit-exact results)
  float activations                weights dequantized (int4: 256 rows at a
                                   time into a reused buffer) and BLAS
"""

import numpy as np
from numba import int32, njit, prange

from edgetorch._native import simd
from edgetorch._native.simd import (f32_of_bits, wfadd, wfload, wfma, wfmul, wfsplat, wfstore, wfstore_mask,
                                    wfzero, wi8f)

from . import vnni
from ._derived import derived
from ._jit import chunked, twins
from .conv import _check_window
from .conv_panels import _geo_array
from .index import check_index
from .linalg import ACTS, apply_activation
from .registry import kernel, preparer

PAR_WEIGHTS = 1 << 16     # weights from which a GEMV pays for a parallel region (measured, 15M Llama decode)


# ------------------------------------------------------------------ int8 weights

def _gemv_q8_py(x, wq, s, out):     # x (M, K) f32; wq (N, K) int8; s (N,) f32; out (M, N)
    # one weight row a task: measured against 4 and 8 rows a task (sharing loads of x), this
    # streams weights from DRAM 1.8x faster (22.7 vs 12.4 GB/s; 110M Llama int8 decode 10.8 ->
    # 5.8 ms) and is faster from cache too (15M: 1.53 -> 1.38 ms); against 2 rows a task too
    # (110M decode 4.8-5.2 vs 8.3-9.8 ms, 15M 0.89-0.92 vs 0.93-1.0 ms, alternating in one process)
    M, K = x.shape
    for j in prange(wq.shape[0]):
        for m in range(M):
            a = np.float32(0.0)
            for k in range(K):
                a += x[m, k] * np.float32(wq[j, k])
            out[m, j] = a * s[j]


_gemv_q8, _gemv_q8_par = twins(_gemv_q8_py, fastmath=True)


# The weight-only int8 GEMV on AVX-512 (decode rows, float x): the weight repacked once per constant
# (runtime/kernels/_derived.py) into panels of 16 rows, column-major within a panel: byte (P * K + k)
# * 16 + r is w[16P + r, k].  A column's 16 weights are one 16-byte load, sign-extended and converted
# (simd.wi8f), times x[k] broadcast, into the panel's accumulator (four, over k mod 4: the FMA's
# latency); the 16 rows' scales are one load, their outputs one store (masked past the last row).
# No horizontal sums and no per-row loop: against the row-a-task vector kernel it replaced (session
# 9-13: four accumulators a row, a horizontal sum and a scalar store a row), alone on the 15M Llama
# shapes 864 x 288 9.9 -> 8.5 us, 288 x 288 5.3 -> 3.0, 1536 x 288 11.2 -> 9.2, the 32000 x 288 LM
# head 270 -> 165 us (34 -> 56 GB/s from L3).  ~29 GB/s a core from cache: a 16-weight step is
# three 512-bit operations (sign-extend, convert, FMA), which this core runs as six 256-bit halves.
Q8_PAR = 1 << 16          # weights from which the panel GEMV runs parallel
Q8_TILE_BYTES = 4 << 20   # float32 bytes of weight rows dequantized at a time for prefill-sized inputs


def _pack_q8(wq):
    """wq (N, K) int8 in panels of 16 rows (flat; rows past N zero)."""
    N, K = wq.shape
    NP = -(-N // 16)
    p = np.zeros((NP * 16, K), np.int8)
    p[:N] = wq
    return np.ascontiguousarray(p.reshape(NP, 16, K).transpose(0, 2, 1)).reshape(-1)


def _pad16(s):
    """The row scales as float32, padded with zeros to whole panels."""
    out = np.zeros(-(-s.shape[0] // 16) * 16, np.float32)
    out[:s.shape[0]] = s
    return out


def q8_panels(wq, scale):
    """(panels, scales) of an int8 weight and its per-row scales, made once per constant."""
    return derived(wq, "q8p", _pack_q8), derived(scale, "q8p", _pad16)


def _gemv_q8p_py(x, wp, s16, n, out):
    # out (M, n) = x (M, K) @ (w * s).T for w in panels (q8_panels); x, out C-contiguous.  Extents:
    # wp holds ceil(n / 16) * 16 * K bytes, s16 ceil(n / 16) * 16 floats.
    M, K = x.shape
    NP = (n + 15) // 16
    K4 = K - K % 4
    for P in prange(NP):
        w0 = P * K * 16
        for m in range(M):
            a0 = wfzero()
            a1 = wfzero()
            a2 = wfzero()
            a3 = wfzero()
            for k in range(0, K4, 4):
                a0 = wfma(wi8f(wp, w0 + k * 16), wfsplat(x[m, k]), a0)
                a1 = wfma(wi8f(wp, w0 + k * 16 + 16), wfsplat(x[m, k + 1]), a1)
                a2 = wfma(wi8f(wp, w0 + k * 16 + 32), wfsplat(x[m, k + 2]), a2)
                a3 = wfma(wi8f(wp, w0 + k * 16 + 48), wfsplat(x[m, k + 3]), a3)
            for k in range(K4, K):
                a0 = wfma(wi8f(wp, w0 + k * 16), wfsplat(x[m, k]), a0)
            v = wfmul(wfadd(wfadd(a0, a1), wfadd(a2, a3)), wfload(s16, P * 16))
            r0 = P * 16
            if r0 + 16 <= n:
                wfstore(out, m * n + r0, v)
            else:
                wfstore_mask(out, m * n + r0, v, (1 << (n - r0)) - 1)


_gemv_q8p, _gemv_q8p_par = twins(_gemv_q8p_py, fastmath=True)


def _q8_vector(x, out):
    """Whether the panel GEMV takes these decode rows (AVX-512, contiguous x and out)."""
    return simd.HAVE_AVX512 and x.flags.c_contiguous and out.flags.c_contiguous


def _gemv_q8_plan(x, wq, scale, out):
    """`go(x2, o2)`: the weight-only int8 GEMV of decode rows x2 (M, K) into o2 (M, N) for arrays laid
    out as x and out: the panel kernel with the packed weight where _q8_vector, else the portable
    loop (strided rows, no AVX-512); serial or parallel by the weight's size."""
    N = wq.shape[0]
    if _q8_vector(x, out):
        wp, s16 = q8_panels(wq, scale)
        kern = _gemv_q8p_par if wq.size >= Q8_PAR else _gemv_q8p
        return lambda x2, o2: kern(x2, wp, s16, N, o2)
    kern, s = (_gemv_q8_par if wq.size >= PAR_WEIGHTS else _gemv_q8), f32(scale)
    return lambda x2, o2: kern(x2, wq, s, o2)


def _quant_rows_py(x, xq, sx, off):
    # per-row symmetric int8, rounded exactly as the reference (IEEE division, no fastmath);
    # stored plus `off` (128 into a uint8 xq: the unsigned operand of vpdpbusd).  The row's
    # max |x| is an integer max over the float bits with the sign bit cleared (monotonic for
    # non-NaN floats): it vectorizes, where a float max reduction runs one compare per cycle
    # (a 128 x 1536 row block 169 -> ~15 us).  x must be C-contiguous.
    M, K = x.shape
    o = int32(off)
    bits = x.view(np.int32)
    for m in prange(M):
        a = int32(0)
        for k in range(K):
            a = max(a, bits[m, k] & int32(0x7FFFFFFF))
        amax = f32_of_bits(a)
        d = amax / np.float32(127.0) if amax > 0 else np.float32(1.0)
        sx[m] = d
        for k in range(K):
            v = np.rint(x[m, k] / d)
            xq[m, k] = int32(int32(min(max(v, np.float32(-127.0)), np.float32(127.0))) + o)


_quant_rows_s, _quant_rows_p = twins(_quant_rows_py)


QUANT_ROWS_PAR = 1 << 15      # values from which the row quantization runs parallel


def _quant_rows(x, xq, sx, off=0):
    (_quant_rows_p if x.size >= QUANT_ROWS_PAR else _quant_rows_s)(x, xq, sx, off)


@njit(cache=True, inline="always")
def _byte_sum(v):
    # the sum of the 4 signed bytes of the int32 v (each sign-extended by shifts: a loop of these
    # over an int8 row viewed as int32 vectorizes)
    s24, s16, s8 = int32(24), int32(16), int32(8)
    return (int32(int32(v << s24) >> s24) + int32(int32(v << s16) >> s24) + int32(int32(v << s8) >> s24)
            + int32(v >> s24))


@njit(cache=True, inline="always")
def _block_sum(xi, m, blk):
    # the sum of the 32 int8 values of block blk of row m, from the row viewed as int32 (xi)
    t = int32(0)
    for i in range(blk * 8, blk * 8 + 8):
        t += _byte_sum(xi[m, i])
    return t


def _quant_blocks_py(x, xq, bs, bd, xg, zp):
    # x (M, K) float32 in blocks of 32 columns, each symmetric int8 with its own scale d = max|x| / 127
    # (llama.cpp's Q8_0 block: q = rint(x * (1 / d)), ties to even); per block: bd = d and bs = -zp x
    # the block's sum of xq (the symmetric weights' zero point, the int4 kernel's starting value);
    # xg (M, ng) the sums of the dequantized x over each weight group (asymmetric weights' zero
    # points, after the dot).  A block holding inf or NaN gets an inf or NaN scale: the results are
    # not finite either.  The block sums come from the written bytes read back 4 at a time as int32
    # (_byte_sum; summed byte by byte they took most of the time: K = 2048 3.1 -> 1.1 us a row, with
    # the block maximum bitcast to float; 1.7 with math.ldexp).
    M, K = x.shape
    nb = K // 32
    G = K // xg.shape[1]
    bits = x.view(np.int32)
    xi = xq.view(np.int32)
    for m in range(M):
        for g in range(xg.shape[1]):
            xg[m, g] = 0.0
        for blk in range(nb):
            k0 = blk * 32
            a = int32(0)
            for k in range(k0, k0 + 32):
                a = max(a, bits[m, k] & int32(0x7FFFFFFF))
            amax = f32_of_bits(a)
            d = np.float32(1.0) if amax == 0 else amax / np.float32(127.0)     # NaN stays NaN
            inv = np.float32(1.0) / d
            for k in range(k0, k0 + 32):
                v = np.rint(x[m, k] * inv)
                xq[m, k] = int32(min(max(v, np.float32(-127.0)), np.float32(127.0)))
            bd[m, blk] = d
        for blk in range(nb):
            tot = _block_sum(xi, m, blk)
            xg[m, (blk * 32) // G] += np.float32(tot) * bd[m, blk]
            bs[m, blk] = -zp * tot


_quant_blocks = njit(cache=True)(_quant_blocks_py)


def _row_blocks_py(xq, bs):
    # bs as _quant_blocks lays it out, for rows xq already quantized with one scale a row (8da4w):
    # -8 x each block's sum
    M, K = xq.shape
    xi = xq.view(np.int32)
    for m in range(M):
        for blk in range(K // 32):
            bs[m, blk] = -8 * _block_sum(xi, m, blk)


_row_blocks = njit(cache=True)(_row_blocks_py)


def _gemv_dq8_py(xq, sx, wq, s, out):
    # int8 rows xq (scale sx) times int8 weights, int32 accumulation truncated each step so LLVM
    # emits vpmaddwd; a weight row a task (streams best, as for _gemv_q8)
    M, K = xq.shape
    for j in prange(wq.shape[0]):
        for m in range(M):
            a = int32(0)
            for k in range(K):
                a = int32(a + int32(xq[m, k]) * int32(wq[j, k]))
            out[m, j] = np.float32(a) * (sx[m] * s[j])


_gemv_dq8, _gemv_dq8_par = twins(_gemv_dq8_py)

def f32(a):
    """a as float32; a float16 array is widened once and the copy kept while `a` lives."""
    return a if a.dtype == np.float32 else derived(a, "f32", lambda x: x.astype(np.float32))


# ------------------------------------------------------------------ int8 GEMM, int32 accumulation

@njit(cache=True, inline="always")
def _dot(a, w, m, n):
    acc = int32(0)
    for k in range(a.shape[1]):
        acc = int32(acc + int32(a[m, k]) * int32(w[n, k]))
    return acc


def _gemm_i8_py(a, w, c):
    # c (M, N) int32 = a (M, K) int8 @ w (N, K) int8 .T; blocks of 4x4 outputs share their row loads
    # (16 accumulators, int32 each step: 110-165 Gops/s here, on par with OpenBLAS sgemm's flops)
    M, K = a.shape
    N = w.shape[0]
    MB = M // 4
    NB = N // 4
    for t in prange(MB * NB):
        # weight-block major: consecutive tasks reuse 4 weight rows from L1 while the (smaller)
        # activations come from L2, so each weight byte is fetched from memory once
        n0 = (t // MB) * 4
        m0 = (t % MB) * 4
        c00 = int32(0)
        c01 = int32(0)
        c02 = int32(0)
        c03 = int32(0)
        c10 = int32(0)
        c11 = int32(0)
        c12 = int32(0)
        c13 = int32(0)
        c20 = int32(0)
        c21 = int32(0)
        c22 = int32(0)
        c23 = int32(0)
        c30 = int32(0)
        c31 = int32(0)
        c32 = int32(0)
        c33 = int32(0)
        for k in range(K):
            a0 = int32(a[m0, k])
            a1 = int32(a[m0 + 1, k])
            a2 = int32(a[m0 + 2, k])
            a3 = int32(a[m0 + 3, k])
            w0 = int32(w[n0, k])
            w1 = int32(w[n0 + 1, k])
            w2 = int32(w[n0 + 2, k])
            w3 = int32(w[n0 + 3, k])
            c00 = int32(c00 + a0 * w0)
            c01 = int32(c01 + a0 * w1)
            c02 = int32(c02 + a0 * w2)
            c03 = int32(c03 + a0 * w3)
            c10 = int32(c10 + a1 * w0)
            c11 = int32(c11 + a1 * w1)
            c12 = int32(c12 + a1 * w2)
            c13 = int32(c13 + a1 * w3)
            c20 = int32(c20 + a2 * w0)
            c21 = int32(c21 + a2 * w1)
            c22 = int32(c22 + a2 * w2)
            c23 = int32(c23 + a2 * w3)
            c30 = int32(c30 + a3 * w0)
            c31 = int32(c31 + a3 * w1)
            c32 = int32(c32 + a3 * w2)
            c33 = int32(c33 + a3 * w3)
        c[m0, n0] = c00
        c[m0, n0 + 1] = c01
        c[m0, n0 + 2] = c02
        c[m0, n0 + 3] = c03
        c[m0 + 1, n0] = c10
        c[m0 + 1, n0 + 1] = c11
        c[m0 + 1, n0 + 2] = c12
        c[m0 + 1, n0 + 3] = c13
        c[m0 + 2, n0] = c20
        c[m0 + 2, n0 + 1] = c21
        c[m0 + 2, n0 + 2] = c22
        c[m0 + 2, n0 + 3] = c23
        c[m0 + 3, n0] = c30
        c[m0 + 3, n0 + 1] = c31
        c[m0 + 3, n0 + 2] = c32
        c[m0 + 3, n0 + 3] = c33
    # edges: the rows past the last full block of 4, then the columns past it
    for m in prange(MB * 4, M):
        for n in range(N):
            c[m, n] = _dot(a, w, m, n)
    for m in prange(MB * 4):
        for n in range(NB * 4, N):
            c[m, n] = _dot(a, w, m, n)


_gemm_i8, _gemm_i8_par = twins(_gemm_i8_py)
GEMM_PAR_OPS = 1 << 20        # multiply-adds from which the parallel copy pays


def _packed(w):
    return derived(w, "vnni", vnni.pack)


def gemm_i8_biased(a, w):
    """(c, off): c (M, N) int32 = (a + off) @ w.T for int8 a (M, K), w (N, K), exact; off is 128
    on the VNNI path (vpdpbusd takes unsigned activations: runtime/kernels/vnni.py), else 0.
    Subtract off * (row sums of w), or fold it into a zero-point correction."""
    if simd.HAVE_VNNI:
        wp, Np, Kp = _packed(w)
        return vnni.gemm_biased(vnni.as_u8(a, Kp), wp, Np)[:, :w.shape[0]], 128
    c = np.empty((a.shape[0], w.shape[0]), np.int32)
    (_gemm_i8_par if a.shape[0] * w.shape[0] * a.shape[1] >= GEMM_PAR_OPS else _gemm_i8)(a, w, c)
    return c, 0


def gemm_i8(a, w):
    """int32 (M, N) = a @ w.T for int8 a (M, K), w (N, K), exact."""
    c, off = gemm_i8_biased(a, w)
    return c - off * derived(w, "rowsum", _wsum) if off else c


def _dyn_out_py(c, off, wsum, sx, s, b, out):
    # out = (c - off * wsum) * sx[m] * s[n] (+ b[n]): a dynamic linear's int32 sums scaled, as the
    # GEMV does; b has length 0 for no bias
    M, N = out.shape
    for m in prange(M):
        if b.shape[0]:
            for n in range(N):
                out[m, n] = np.float32(c[m, n] - off * wsum[n]) * (sx[m] * s[n]) + b[n]
        else:
            for n in range(N):
                out[m, n] = np.float32(c[m, n] - off * wsum[n]) * (sx[m] * s[n])


_dyn_out_s, _dyn_out_p = twins(_dyn_out_py)
_NO_BIAS = np.zeros(0, np.float32)


@njit(cache=True)
def _requant_rows(acc, zsum, in_zp, ms, b, out_scale, out_zp, lo, out):
    # out[m, n] = clamp(rint(((acc - in_zp * zsum[n]) * ms[n] + b[n]) / out_scale) + out_zp, lo, 127);
    # float64 in the reference's order, so the rounding is the reference's
    M, N = acc.shape
    for m in range(M):
        for n in range(N):
            y = np.float64(acc[m, n] - in_zp * zsum[n]) * ms[n] + b[n]
            q = np.rint(y / out_scale) + out_zp
            out[m, n] = np.int8(min(max(q, lo), 127.0))


def _rows(x, n, out):
    k = x.shape[-1]
    x2 = x.reshape(-1, k) if x.flags.c_contiguous else np.ascontiguousarray(x).reshape(-1, k)
    return x2, out.reshape(-1, n)


def _check(what, out, x, n, k, b):
    if x.shape[-1] != k or out.shape != x.shape[:-1] + (n,) or x.dtype != np.float32 or out.dtype != np.float32 \
            or (b is not None and b.shape != (n,)):
        raise ValueError(f"{what}: input {x.dtype}{x.shape}, weight ({n}, {k}) -> {out.dtype}{out.shape} do not fit")


def _q8_checks(out, x, wq, scale, b):
    if wq.dtype != np.int8 or wq.ndim != 2 or scale.shape != (wq.shape[0],):
        raise ValueError(f"linear_q8: weight {wq.dtype}{wq.shape} with scale {scale.shape}")
    _check("linear_q8", out, x, wq.shape[0], wq.shape[1], b)


@kernel("linear_q8")
def k_linear_q8(out, x, wq, scale, b=None, activation=None, dynamic=False):
    _q8_checks(out, x, wq, scale, b)
    N, K = wq.shape
    x2, o2 = _rows(x, N, out)
    s = f32(scale)
    if dynamic and simd.HAVE_VNNI:
        wp, Np, Kp = _packed(wq)
        xu = np.empty((x2.shape[0], Kp), np.uint8)      # columns past K meet zero weights
        sx = np.empty(x2.shape[0], np.float32)
        _quant_rows(x2, xu[:, :K], sx, 128)
        bias = _NO_BIAS if b is None else f32(b)
        (_dyn_out_p if o2.size >= 1 << 15 else _dyn_out_s)(
            vnni.gemm_biased(xu, wp, Np), int32(128), derived(wq, "rowsum", _wsum), sx, s, bias, o2)
        b = None                                        # added above
    elif dynamic:
        xq = np.empty(x2.shape, np.int8)
        sx = np.empty(x2.shape[0], np.float32)
        _quant_rows(x2, xq, sx)
        if x2.shape[0] <= 4:
            (_gemv_dq8_par if wq.size >= PAR_WEIGHTS else _gemv_dq8)(xq, sx, wq, s, o2)
        else:
            # BLAS on the integer values (exact while K * 127^2 < 2^24, i.e. K <= 1040; float32
            # rounding of the int32 sums beyond): gemm_i8 was 1.3-1.5x slower while OpenBLAS's
            # idle threads spun on its cores, and with that fixed it only ties sgemm (130-150
            # Gops/s on the encoder's shapes: docs/quantization.md), so BLAS stays
            np.matmul(xq.astype(np.float32), wq.T.astype(np.float32), out=o2)   # no cached float copy: 4x memory
            o2 *= sx[:, None]
            o2 *= s
    elif x2.shape[0] <= 4:
        _gemv_q8_plan(x2, wq, s, o2)(x2, o2)
    else:
        # rows of a prefill: the weight dequantized Q8_TILE_BYTES of float32 rows at a time into one
        # buffer, each tile multiplied by BLAS.  The whole float32 copy was a temporary 4x the int8
        # weight (98 MB for a 110M Llama's 32000 x 768 head) and slower: 32000 x 768 at 128 rows
        # 61.9 -> 47.1 ms, at 8 rows 35.8 -> 21.1 ms (session 14, alone)
        N = wq.shape[0]
        T = max(16, Q8_TILE_BYTES // (4 * K))
        w = np.empty((min(T, N), K), np.float32)
        for r0 in range(0, N, T):
            r1 = min(N, r0 + T)
            np.multiply(wq[r0:r1], s[r0:r1, None], out=w[:r1 - r0])
            np.matmul(x2, w[:r1 - r0].T, out=o2[:, r0:r1])
    if b is not None:
        out += b
    apply_activation(out, activation)


def _prep_dynamic_q8(out, x, wq, scale, b, activation):
    """int8-dynamic on VNNI (encoders, prefills): the packed weight, its row sums and the kernels once,
    and the call's uint8 rows, row scales (and int32 sums, where they are stored) in scratch the run
    keeps (prepared runs are called one at a time, under the method's lock): fresh arrays of these
    sizes cost each call their page faults (128 x 1536 -> 384: 211 -> 205 us, 128 x 384 -> 1152: 193
    -> 161 us).  Results bit-identical to the kernel's."""
    N, K = wq.shape
    M = x.size // K
    if scale.dtype != np.float32 or (b is not None and (b.dtype != np.float32 or not b.flags.c_contiguous)) \
            or wq.flags.writeable \
            or (activation is not None and activation not in ACTS):
        return None
    wp, Np, Kp = _packed(wq)
    xu = np.zeros((M, Kp), np.uint8)          # columns past K meet zero weights
    sx = np.empty(M, np.float32)
    act = None if activation is None else ACTS[activation]
    xk = xu[:, :K]
    par = M * Np * Kp >= vnni.PAR_OPS
    if N % 16 == 0:
        # the scaling and bias in the GEMM's tiles (vnni._put_dyn_py): no int32 sums in memory, no
        # second pass.  MiniLM-shaped encoder, int8-dynamic, in-process A/Bs against the kernel path:
        # 7.23 -> 6.48, 7.21 -> 6.47, 8.74 -> 8.17 ms (10.0 -> 9.7 with the scratch alone)
        gemm = vnni._gemm_dyn_par if par else vnni._gemm_dyn
        c0 = np.empty((0, Np), np.int32)      # the panel count; no int32 sums stored
        w128 = derived(wq, "rowsum128", lambda w: (_wsum(w).astype(np.int64) * 128).astype(np.int32))
        zeros = np.zeros(N, np.float32)

        def run(out, x, wq, scale, b=None):
            _quant_rows(x.reshape(M, K), xk, sx, 128)
            gemm(xu, wp, c0, w128, sx, scale, zeros if b is None else b, out.reshape(M, N))
            if act is not None:
                act(out)
        return run
    c = np.empty((M, Np), np.int32)
    ws = derived(wq, "rowsum", _wsum)
    gemm = vnni._gemm_par if par else vnni._gemm
    epi = _dyn_out_p if M * N >= 1 << 15 else _dyn_out_s
    no = (vnni._NO_I32, vnni._NO_F32, vnni._NO_F32, vnni._NO_F32, vnni._NO_OUT)

    def run(out, x, wq, scale, b=None):
        o2 = out.reshape(M, N)
        _quant_rows(x.reshape(M, K), xk, sx, 128)
        gemm(xu, wp, c, *no)
        epi(c, int32(128), ws, sx, scale, _NO_BIAS if b is None else b, o2)
        if act is not None:
            act(out)
    return run


@preparer("linear_q8")
def p_linear_q8(out, x, wq, scale, b=None, activation=None, dynamic=False):
    """Weight-only int8 GEMV (decode): the Numba call with its checks made once; int8-dynamic on
    VNNI: _prep_dynamic_q8."""
    _q8_checks(out, x, wq, scale, b)
    N, K = wq.shape
    if dynamic and simd.HAVE_VNNI and x.flags.c_contiguous and out.flags.c_contiguous:
        return _prep_dynamic_q8(out, x, wq, scale, b, activation)
    if dynamic or activation is not None or scale.dtype != np.float32 or x.size // K > 4 \
            or not (x.flags.c_contiguous and out.flags.c_contiguous):
        return None
    M = x.size // K
    go = _gemv_q8_plan(x, wq, scale, out)
    w0, sc0 = wq, scale

    def run(out, x, wq, scale, b=None):
        if wq is not w0 or scale is not sc0:
            raise ValueError("linear_q8: a prepared run called with other weights")
        go(x.reshape(M, K), out.reshape(M, N))
        if b is not None:
            out += b
    return run


@kernel("embedding_q8")
def k_embedding_q8(out, ids, wq, scale):
    check_index(ids, wq.shape[0], "embedding_q8")
    if wq.ndim != 2 or scale.shape != (wq.shape[0],) or out.shape != ids.shape + (wq.shape[1],):
        raise ValueError(f"embedding_q8: table {wq.shape}, scale {scale.shape} -> {out.shape} do not fit")
    np.multiply(wq[ids], f32(scale)[ids][..., None], out=out, casting="unsafe")


# ------------------------------------------------------------------ static int8

def _requant_into(out, y, out_scale, out_zp, activation):
    if activation not in (None, "relu"):
        raise ValueError(f"static int8 ops fuse relu only, got activation {activation!r}")
    q = np.rint(y / out_scale)
    q += out_zp
    np.clip(q, out_zp if activation == "relu" else -128, 127, out=q)
    out[...] = q


@njit(cache=True)
def _quantize(x, s, zp, out):
    # numpy's rint(x / s) + zp, clipped to int8, in one pass (the division in x's precision: s is
    # float32, as the numpy path divides by np.float32(scale)); four numpy passes and their
    # temporaries cost 7-10 us for the digits CNN's batch-1 tensors
    for i in range(x.shape[0]):
        q = np.rint(x[i] / s) + zp
        out[i] = np.int8(min(max(q, -128.0), 127.0))


@njit(cache=True)
def _dequantize(q, zp, s, out):
    for i in range(q.shape[0]):
        out[i] = np.float32(np.int32(q[i]) - zp) * s


@kernel("quantize_per_tensor")
def k_quantize_per_tensor(out, x, scale=1.0, zero_point=0):
    if out.dtype != np.int8 or out.shape != x.shape:
        raise ValueError(f"quantize_per_tensor: {x.shape} -> {out.dtype}{out.shape}")
    if x.dtype in (np.float32, np.float64) and x.flags.c_contiguous and out.flags.c_contiguous:
        _quantize(x.reshape(-1), np.float32(scale), x.dtype.type(zero_point), out.reshape(-1))
        return
    q = np.rint(x / np.float32(scale))
    q += zero_point
    np.clip(q, -128, 127, out=q)
    out[...] = q


@kernel("dequantize_per_tensor")
def k_dequantize_per_tensor(out, q, scale=1.0, zero_point=0):
    if out.shape != q.shape:
        raise ValueError(f"dequantize_per_tensor: {q.shape} -> {out.shape}")
    if q.dtype == np.int8 and out.dtype == np.float32 and q.flags.c_contiguous and out.flags.c_contiguous:
        _dequantize(q.reshape(-1), np.int32(zero_point), np.float32(scale), out.reshape(-1))
        return
    np.subtract(q, np.int32(zero_point), out=out, casting="unsafe")
    out *= np.float32(scale)


def _qs8_inputs(what, xq, wq, wscale):
    if xq.dtype != np.int8 or wq.dtype != np.int8 or wscale.shape != (wq.shape[0],):
        raise ValueError(f"{what}: input {xq.dtype}, weight {wq.dtype}{wq.shape}, scale {wscale.shape}")


def _wsum(wq):
    return wq.reshape(wq.shape[0], -1).sum(axis=1, dtype=np.int64).astype(np.int32)


def _requant(acc, wq2, in_zp, in_scale, wscale, b, out_scale, out_zp, activation, out2):
    # acc: gemm_i8_biased's (c, off); (a + off) . w - (in_zp + off) * rowsum(w) = (a - in_zp) . w
    acc, off = acc
    ms, bb, lo = _requant_consts(acc.shape[1], in_scale, wscale, b, out_zp, activation)
    _requant_rows(acc, derived(wq2, "rowsum", _wsum), int(in_zp) + off, ms, bb, float(out_scale), float(out_zp), lo,
                  out2)


def _im2col_i8_py(t_lo, t_hi, x, geo, fill, cols):
    # tasks t_lo .. t_hi - 1: (image, output row) pairs; their pixels' rows of cols (N OH OW, C kh kw)
    # hold each window's taps in (c, ky, kx) order, taps outside x (padding) = fill, the input zero
    # point; geo = (kh, kw, sh, sw, ph, pw, dh, dw, OH, OW).  The padding and the window copy in one
    # pass, a tap at a time over a row's pixels (the range of pixels whose tap lies inside x worked
    # out once, no test per value): np.pad and numpy's copy of a 6-d strided view took 36 us for the
    # digits CNN's 16-channel 8x8 layer at batch 1, this 30 (7.5 -> 3.9 us for its 1-channel one;
    # 32 x 16 x 32 x 32: 7.7 -> 4.4 ms against a value-at-a-time loop, strided writes either way)
    C, H, W = x.shape[1], x.shape[2], x.shape[3]
    kh, kw, sh, sw, ph, pw, dh, dw, OH, OW = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7], \
        geo[8], geo[9]
    for t in range(t_lo, t_hi):
        img = t // OH
        oy = t % OH
        r0 = t * OW
        col = 0
        for ci in range(C):
            for ky in range(kh):
                iy = oy * sh - ph + ky * dh
                for kx in range(kw):
                    off = kx * dw - pw                   # pixel ox reads column ox * sw + off
                    lo, hi = OW, OW
                    if 0 <= iy < H:
                        lo = min(OW, 0 if off >= 0 else (sw - 1 - off) // sw)
                        hi = max(lo, min(OW, (W - off + sw - 1) // sw)) if W > off else lo
                    for ox in range(lo):
                        cols[r0 + ox, col] = fill
                    for ox in range(lo, hi):
                        cols[r0 + ox, col] = x[img, ci, iy, ox * sw + off]
                    for ox in range(hi, OW):
                        cols[r0 + ox, col] = fill
                    col += 1


_IM2COL_I8 = chunked(_im2col_i8_py)


def _qs8_conv_checks(out, xq, wq, wscale, stride, padding, dilation, groups, in_zp):
    _qs8_inputs("conv2d_qs8", xq, wq, wscale)
    if wq.ndim != 4 or xq.ndim != 4:
        raise ValueError(f"conv2d_qs8: input {xq.shape}, weight {wq.shape}")
    c, (o, cg, kh, kw) = xq.shape[1], wq.shape
    _check_window(xq, out, (kh, kw), stride, padding, dilation, "conv2d_qs8")
    if groups < 1 or c != cg * groups or o % groups or out.shape[1] != o or not -128 <= in_zp <= 127:
        raise ValueError(f"conv2d_qs8: {c} input channels, weight {wq.shape}, groups {groups} do not fit")


@kernel("conv2d_qs8")
def k_conv2d_qs8(out, xq, wq, wscale, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
                 in_scale=1.0, in_zp=0, out_scale=1.0, out_zp=0, activation=None):
    """im2col in int8 (padding = the input zero point), int8 GEMM with int32 accumulation per group,
    zero-point correction and requantization fused in one pass."""
    _qs8_conv_checks(out, xq, wq, wscale, stride, padding, dilation, groups, in_zp)
    n, c = xq.shape[:2]
    o, cg, kh, kw = wq.shape
    oh, ow = out.shape[2:]
    cols = np.empty((n * oh * ow, c * kh * kw), np.int8)
    geo = _geo_array(tuple(int(v) for v in (kh, kw, *stride, *padding, *dilation, oh, ow)))
    (_IM2COL_I8.parallel if cols.size >= 1 << 18 else _IM2COL_I8.serial)(
        n * oh, np.ascontiguousarray(xq), geo, np.int8(in_zp), cols)
    og = o // groups
    res = np.empty((n * oh * ow, o), np.int8)
    for gi in range(groups):
        w2 = derived(wq, ("g", gi, groups), lambda w: np.ascontiguousarray(
            w[gi * og:(gi + 1) * og].reshape(og, cg * kh * kw)))
        a = cols if groups == 1 else np.ascontiguousarray(
            cols.reshape(n * oh * ow, c, kh * kw)[:, gi * cg:(gi + 1) * cg].reshape(n * oh * ow, -1))
        _requant(gemm_i8_biased(a, w2), w2, in_zp, in_scale, wscale[gi * og:(gi + 1) * og],
                 None if b is None else b[gi * og:(gi + 1) * og], out_scale, out_zp, activation,
                 res[:, gi * og:(gi + 1) * og])
    out[...] = res.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)


@kernel("linear_qs8")
def k_linear_qs8(out, xq, wq, wscale, b=None, in_scale=1.0, in_zp=0, out_scale=1.0, out_zp=0, activation=None):
    _qs8_inputs("linear_qs8", xq, wq, wscale)
    if wq.ndim != 2 or xq.shape[-1] != wq.shape[1] or out.shape != xq.shape[:-1] + (wq.shape[0],) \
            or (b is not None and b.shape != (wq.shape[0],)):
        raise ValueError(f"linear_qs8: input {xq.shape}, weight {wq.shape} -> {out.shape} do not fit")
    x2 = np.ascontiguousarray(xq).reshape(-1, wq.shape[1])
    o2 = out.reshape(-1, wq.shape[0])
    _requant(gemm_i8_biased(x2, wq), wq, in_zp, in_scale, wscale, b, out_scale, out_zp, activation, o2)


def _requant_consts(o, in_scale, wscale, b, out_zp, activation):
    """_requant's float64 multipliers, bias and lower clamp for these (constant) attributes."""
    if activation not in (None, "relu"):
        raise ValueError(f"static int8 ops fuse relu only, got activation {activation!r}")
    bb = np.zeros(o) if b is None else b.astype(np.float64)
    return np.float64(in_scale) * wscale.astype(np.float64), bb, float(max(out_zp, -128)) if activation == "relu" \
        else -128.0


def _constant(*arrays):
    return all(a is None or not a.flags.writeable for a in arrays)


@preparer("conv2d_qs8")
def p_conv2d_qs8(out, xq, wq, wscale, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
                 in_scale=1.0, in_zp=0, out_scale=1.0, out_zp=0, activation=None):
    """One group, constant weight, scales and bias: the checks, the weight's row sums and the
    requantization's float64 constants once; a run is im2col, the int8 GEMM and the requantization."""
    _qs8_conv_checks(out, xq, wq, wscale, stride, padding, dilation, groups, in_zp)
    n, c = xq.shape[:2]
    o, cg, kh, kw = wq.shape
    if groups != 1 or not _constant(wq, wscale, b) or not (xq.flags.c_contiguous and out.flags.c_contiguous) \
            or out.dtype != np.int8 or (b is not None and b.shape != (o,)):
        return None
    oh, ow = out.shape[2:]
    P, K = n * oh * ow, c * kh * kw
    w2 = derived(wq, ("g", 0, 1), lambda w: np.ascontiguousarray(w.reshape(o, K)))     # the kernel's key
    zsum = derived(w2, "rowsum", _wsum)
    ms, bb, lo = _requant_consts(o, in_scale, wscale, b, out_zp, activation)
    geo = _geo_array(tuple(int(v) for v in (kh, kw, *stride, *padding, *dilation, oh, ow)))
    im2col = _IM2COL_I8.parallel if P * K >= 1 << 18 else _IM2COL_I8.serial
    fill, zp, osc, ozp = np.int8(in_zp), int(in_zp), float(out_scale), float(out_zp)

    def run(out, xq, wq, wscale, b=None):
        cols = np.empty((P, K), np.int8)
        im2col(n * oh, xq, geo, fill, cols)
        acc, off = gemm_i8_biased(cols, w2)
        res = np.empty((P, o), np.int8)
        _requant_rows(acc, zsum, zp + off, ms, bb, osc, ozp, lo, res)
        out[...] = res.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)
    return run


@preparer("linear_qs8")
def p_linear_qs8(out, xq, wq, wscale, b=None, in_scale=1.0, in_zp=0, out_scale=1.0, out_zp=0, activation=None):
    if not _constant(wq, wscale, b) or not (xq.flags.c_contiguous and out.flags.c_contiguous) \
            or out.dtype != np.int8:
        return None
    _qs8_inputs("linear_qs8", xq, wq, wscale)
    if wq.ndim != 2 or xq.shape[-1] != wq.shape[1] or out.shape != xq.shape[:-1] + (wq.shape[0],) \
            or (b is not None and b.shape != (wq.shape[0],)):
        return None
    N, K = wq.shape
    zsum = derived(wq, "rowsum", _wsum)
    ms, bb, lo = _requant_consts(N, in_scale, wscale, b, out_zp, activation)
    zp, osc, ozp = int(in_zp), float(out_scale), float(out_zp)

    def run(out, xq, wq, wscale, b=None):
        acc, off = gemm_i8_biased(xq.reshape(-1, K), wq)
        _requant_rows(acc, zsum, zp + off, ms, bb, osc, ozp, lo, out.reshape(-1, N))
    return run


@kernel("add_qs8")
def k_add_qs8(out, a, b, a_scale=1.0, a_zp=0, b_scale=1.0, b_zp=0, out_scale=1.0, out_zp=0, activation=None):
    if a.shape != b.shape or a.shape != out.shape or a.dtype != np.int8 or b.dtype != np.int8:
        raise ValueError(f"add_qs8: {a.dtype}{a.shape} + {b.dtype}{b.shape} -> {out.shape}")
    y = (a.astype(np.float64) - a_zp) * a_scale
    y += (b.astype(np.float64) - b_zp) * b_scale
    _requant_into(out, y, out_scale, out_zp, activation)


@kernel("dequantize_per_channel")
def k_dequantize_per_channel(out, wq, scale):
    if wq.dtype != np.int8 or out.shape != wq.shape or scale.shape != (wq.shape[0],):
        raise ValueError(f"dequantize_per_channel: weight {wq.dtype}{wq.shape}, scale {scale.shape} -> {out.shape}")
    np.multiply(wq, f32(scale).reshape((-1,) + (1,) * (wq.ndim - 1)), out=out, casting="unsafe")
