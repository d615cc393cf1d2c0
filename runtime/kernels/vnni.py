"""int8 x int8 kernels on AVX512-VNNI: `vpdpbusd` through edgetorch._native.simd.  The int8
GEMM below, and the int4 kernel at the end of the file (int8 activation blocks of int4-weight,
per-row int8 activations of 8da4w).

c (M, N) int32 = a (M, K) int8 @ w (N, K) int8 .T, exact, as MLAS and oneDNN
lay it out:

* vpdpbusd multiplies unsigned by signed bytes, so the activations go in as
  a + 128 (uint8) and 128 * (row sums of w) comes off the result;
* the weight is packed once (kept while the constant lives) in panels of 16
  output columns: panel p, k-quad q holds w[16p + j, 4q + r] at
  ((p * K4 + q) * 16 + j) * 4 + r, so one 32-byte load gives 8 columns x 4
  k and both loads of a quad give the panel's 16 columns;
* the micro-kernel keeps 8 rows x 16 columns in 16 vector accumulators: a
  quad step is 2 weight loads, 8 four-byte broadcasts of a and 16 vpdpbusd.
  Rows past the last block of 8 run a one-row loop with two accumulator sets
  (vpdpbusd's latency would stall a single chain).
K pads to a multiple of 4 with zero weights, N to a multiple of 16 (the
padded columns of c are computed and ignored).

Measured here (2-core Zen 4, encoder shapes 128 x 384 x 1536): 810-910
Gops/s, against 140-155 for the portable int8 GEMM (vpmaddwd) and 170-190
for OpenBLAS sgemm on the same shapes.
"""
import numpy as np
from numba import njit, prange

from edgetorch._native.simd import (vadd, vbcast4, vcvt, vdot, vfadd, vfload, vfmul, vfsplat, vfstore, vload,
                                    vload4, vprefetch, vstore, vsub, vzero, wadd, wand, wbcast4, wcvt, wdot, wfadd,
                                    wfma, wfmul, wfsplat, wfstore, wfstore_mask, wfzero, wi8f, wload, wscales,
                                    wsplat, wsra4)

from ._jit import twins

NR = 16     # output columns per panel (two 8-lane vectors)
MR = 8      # rows per micro-tile


def pack(w):
    """(packed flat int8, Np, Kp) for the int8 weight w (N, K)."""
    N, K = w.shape
    Kp = -(-K // 4) * 4
    Np = -(-N // NR) * NR
    wp = np.zeros((Np, Kp), np.int8)
    wp[:N, :K] = w
    return np.ascontiguousarray(wp.reshape(Np // NR, NR, Kp // 4, 4).transpose(0, 2, 1, 3)).reshape(-1), Np, Kp


def _put_i32_py(c, m, n0, v0, v1, w128, sx, s, b, out):
    Np = c.shape[1]
    vstore(c, m * Np + n0, v0)
    vstore(c, m * Np + n0 + 8, v1)


def _put_dyn_py(c, m, n0, v0, v1, w128, sx, s, b, out):
    # the int8-dynamic linear's epilogue in registers: out[m, n] = (c - 128 wsum[n]) sx[m] s[n] + b[n]
    # for the 16 columns n0.. (w128 = 128 x the weight's row sums; every panel column a real one: N %
    # 16 == 0); the int32 sums never reach memory
    # (a multiply, then an add: the same roundings as quant._dyn_out_py, so results are bit-identical)
    N = out.shape[1]
    xs = vfsplat(sx[m])
    vfstore(out, m * N + n0, vfadd(vfmul(vcvt(vsub(v0, vload4(w128, n0))), vfmul(xs, vfload(s, n0))), vfload(b, n0)))
    vfstore(out, m * N + n0 + 8, vfadd(vfmul(vcvt(vsub(v1, vload4(w128, n0 + 8))), vfmul(xs, vfload(s, n0 + 8))),
                                       vfload(b, n0 + 8)))


_put_i32 = njit(cache=True, inline="always")(_put_i32_py)
_put_dyn = njit(cache=True, inline="always")(_put_dyn_py)
STORE = _put_i32


def _gemm_py(a, wp, c, w128, sx, s, b, out):
    # a (M, Kp) uint8; wp packed for Kp; c (M, Np) int32.  STORE (bound per variant) puts a row's 16
    # sums: into c, or (the dynamic linear's epilogue) as floats into out (M, N) (see _put_dyn_py)
    M, Kp = a.shape
    Np = c.shape[1]
    K4 = Kp // 4
    NB = Np // NR
    MB = M // MR
    for t in prange(NB * MB):
        # panel-major: consecutive tasks reuse one weight panel from L1/L2
        nb = t // MB
        m0 = (t % MB) * MR
        wb = nb * K4 * 64
        c00 = vzero()
        c01 = vzero()
        c10 = vzero()
        c11 = vzero()
        c20 = vzero()
        c21 = vzero()
        c30 = vzero()
        c31 = vzero()
        c40 = vzero()
        c41 = vzero()
        c50 = vzero()
        c51 = vzero()
        c60 = vzero()
        c61 = vzero()
        c70 = vzero()
        c71 = vzero()
        for q in range(K4):
            w0 = vload(wp, wb + q * 64)
            w1 = vload(wp, wb + q * 64 + 32)
            k = m0 * Kp + q * 4
            x = vbcast4(a, k)
            c00 = vdot(c00, x, w0)
            c01 = vdot(c01, x, w1)
            x = vbcast4(a, k + Kp)
            c10 = vdot(c10, x, w0)
            c11 = vdot(c11, x, w1)
            x = vbcast4(a, k + 2 * Kp)
            c20 = vdot(c20, x, w0)
            c21 = vdot(c21, x, w1)
            x = vbcast4(a, k + 3 * Kp)
            c30 = vdot(c30, x, w0)
            c31 = vdot(c31, x, w1)
            x = vbcast4(a, k + 4 * Kp)
            c40 = vdot(c40, x, w0)
            c41 = vdot(c41, x, w1)
            x = vbcast4(a, k + 5 * Kp)
            c50 = vdot(c50, x, w0)
            c51 = vdot(c51, x, w1)
            x = vbcast4(a, k + 6 * Kp)
            c60 = vdot(c60, x, w0)
            c61 = vdot(c61, x, w1)
            x = vbcast4(a, k + 7 * Kp)
            c70 = vdot(c70, x, w0)
            c71 = vdot(c71, x, w1)
        n0 = nb * NR
        STORE(c, m0, n0, c00, c01, w128, sx, s, b, out)
        STORE(c, m0 + 1, n0, c10, c11, w128, sx, s, b, out)
        STORE(c, m0 + 2, n0, c20, c21, w128, sx, s, b, out)
        STORE(c, m0 + 3, n0, c30, c31, w128, sx, s, b, out)
        STORE(c, m0 + 4, n0, c40, c41, w128, sx, s, b, out)
        STORE(c, m0 + 5, n0, c50, c51, w128, sx, s, b, out)
        STORE(c, m0 + 6, n0, c60, c61, w128, sx, s, b, out)
        STORE(c, m0 + 7, n0, c70, c71, w128, sx, s, b, out)
    # the rows past the last micro-tile (all rows of a decode GEMV): a panel a task
    R = M - MB * MR
    for t in prange(NB * (R > 0)):
        wb = t * K4 * 64
        for m in range(MB * MR, M):
            e0 = vzero()
            e1 = vzero()
            d0 = vzero()
            d1 = vzero()
            for q in range(0, K4 - 1, 2):
                k = m * Kp + q * 4
                x = vbcast4(a, k)
                e0 = vdot(e0, x, vload(wp, wb + q * 64))
                e1 = vdot(e1, x, vload(wp, wb + q * 64 + 32))
                x = vbcast4(a, k + 4)
                d0 = vdot(d0, x, vload(wp, wb + q * 64 + 64))
                d1 = vdot(d1, x, vload(wp, wb + q * 64 + 96))
            if K4 % 2:
                q = K4 - 1
                x = vbcast4(a, m * Kp + q * 4)
                e0 = vdot(e0, x, vload(wp, wb + q * 64))
                e1 = vdot(e1, x, vload(wp, wb + q * 64 + 32))
            STORE(c, m, t * NR, vadd(e0, d0), vadd(e1, d1), w128, sx, s, b, out)


_gemm, _gemm_par = twins(_gemm_py)
# the int8-dynamic linear with its scaling and bias fused (N a multiple of 16): _put_dyn_py
_gemm_dyn, _gemm_dyn_par = twins(_gemm_py, "_dyn", {"STORE": _put_dyn})
_NO_I32 = np.zeros(8, np.int32)
_NO_F32 = np.zeros(8, np.float32)
_NO_OUT = np.zeros((1, 1), np.float32)


def _to_u8_py(a, au):
    # au[:, :K] = a + 128 (int8 -> uint8: flips the sign bit); the padding columns are left alone
    M, K = a.shape
    for m in prange(M):
        for k in range(K):
            au[m, k] = np.uint8(np.int32(a[m, k]) + np.int32(128))


_to_u8, _to_u8_par = twins(_to_u8_py)


def gemm_biased(au, wp, Np):
    """c (M, Np) int32 = au @ w.T for the uint8 rows au (M, Kp) and w packed by `pack`."""
    M, Kp = au.shape
    c = np.empty((M, Np), np.int32)
    (_gemm_par if M * Np * Kp >= PAR_OPS else _gemm)(au, wp, c, _NO_I32, _NO_F32, _NO_F32, _NO_F32, _NO_OUT)
    return c


def as_u8(a, Kp):
    """a (M, K) int8 + 128 as uint8 rows padded to Kp (the padding meets zero weights: left unset)."""
    au = np.empty((a.shape[0], Kp), np.uint8)
    (_to_u8_par if a.size >= 1 << 16 else _to_u8)(a, au)
    return au


# multiply-adds from which the parallel int8 GEMM pays
PAR_OPS = 1 << 19


# ------------------------------------------------------------------ int4 weights x int8 rows or blocks, 512-bit
# The int4 GEMV's weights in panels of 16 rows, repacked once per constant from the file's row pairs
# (runtime/kernels/_derived.py), as llama.cpp's CPU backend repacks Q4_0 into row-interleaved blocks
# at load (ggml-cpu repack.cpp, block_q4_0x8) and MLAS packs its B matrices:
#
#   panel P (rows 16P .. 16P + 15), block b (columns 32b .. 32b + 31), vector v = 0..3: 64 bytes, 4 a
#   row: byte 4r + j of the vector at ((P * nb + b) * 4 + v) * 64 holds row 16P + r's weights at
#   columns 32b + 8v + j (low nibble) and 32b + 8v + 4 + j (high nibble).
#
# One 64-byte load then gives 16 rows x 8 columns; each 32-bit lane is one row, so a block's dot
# product builds in the row's own lane (the low nibbles against x's 4 columns broadcast to every lane,
# the high nibbles masked in place, 16 q, against the next 4), goes to float once a block, and the
# 16 rows' group scales are one contiguous load (panel layout too).  ~30 vector operations per 256
# weight bytes, no horizontal sums: the row-pair kernel this replaces took ~36 per 128 bytes and
# 4 horizontal sums every 4 rows (15M Llama shapes, one thread, L2-resident: 864 x 288 9.1 -> 2.6
# us, 288 x 768 5.6 -> 2.5, the 32000 x 288 LM head on two threads 173 -> 50 us).
QP = 16
# multiply-adds from which the int4 kernel's parallel copy pays (288 x 288 to 864 x 288 run faster
# on one thread, 1536 x 288 faster on two)
PAR_Q4 = 1 << 18
# how far ahead the int4 kernel hints its weight stream into cache: the 110M Llama's int4 decode step
# (weights from DRAM), in-process A/Bs: 8 KB 2.49 -> 2.36, 2.68 -> 2.58, 2.61 -> 2.53 ms; 2 KB and
# 32 KB no change, 16 KB 2.80 -> 2.48 once and ~1% twice; the 15M step (weights in L3) unchanged
PF_Q4 = 8192


def _pack_q4_py(wp, n, out):
    # out: the panel layout above of the n rows held as row pairs in wp (ceil(n / 2), K); rows past n
    # (the last panel's padding) are zero
    K = wp.shape[1]
    nb = K // 32
    NP = (n + QP - 1) // QP
    for P in prange(NP):
        for r in range(QP):
            j = P * QP + r
            sh = 4 * (j % 2)
            for b in range(nb):
                for v in range(4):
                    o = ((P * nb + b) * 4 + v) * 64 + 4 * r
                    k = 32 * b + 8 * v
                    for i in range(4):
                        if j < n:
                            lo = (np.int32(wp[j // 2, k + i]) >> sh) & 15
                            hi = (np.int32(wp[j // 2, k + 4 + i]) >> sh) & 15
                            out[o + i] = np.uint8(lo | (hi << 4))
                        else:
                            out[o + i] = 0


_pack_q4 = njit(cache=True, parallel=True)(_pack_q4_py)


def _panel_rows(a, n, dtype):
    """a (n, ng) in panel order, flat: element (P * ng + g) * 16 + r is a[16P + r, g] (0 past n)."""
    NP = -(-n // QP)
    pad = np.zeros((NP * QP, a.shape[1]), dtype)
    pad[:n] = a
    return np.ascontiguousarray(pad.reshape(NP, QP, a.shape[1]).transpose(0, 2, 1)).reshape(-1)


def q4_panels(wp, scale, zero, n):
    """(wq, s16, z16): the int4 weight wp (row pairs), its group scales and zero points (or None) in
    the panel layout, made once per constant.  The scales keep the file's float16 as bits (uint16:
    the kernel widens them) or become float32; zero points as int8 (0..15)."""
    from ._derived import derived
    wq = derived(wp, ("q4p", n), lambda a: _packed_weights(a, n))
    s = np.ascontiguousarray(scale)
    s16 = derived(scale, "q4p", lambda a: _panel_rows(s.view(np.uint16), n, np.uint16) if s.dtype == np.float16
                  else _panel_rows(s, n, np.float32))
    z16 = _NO_Z16 if zero is None else derived(zero, "q4p", lambda a: _panel_rows(a, n, np.int8))
    return wq, s16, z16


def _packed_weights(wp, n):
    out = np.empty(-(-n // QP) * QP * wp.shape[1] // 2, np.uint8)
    _pack_q4(np.ascontiguousarray(wp), n, out)
    return out


_NO_Z16 = np.zeros(16, np.int8)


def _q4_block_py(xq, k, wq, w, c, lo4, hi4):
    # block b's int32 dot products, 16 rows a lane, as float32: the panel's 4 vectors at w against the
    # int8 x at k (32 columns), started at c (x's zero-point term); the high nibbles are masked in
    # place (16 q) into their own sum, shifted back (exact) at the end
    h = wsplat(0)
    v = wload(wq, w)
    c = wdot(c, wand(v, lo4), wbcast4(xq, k))
    h = wdot(h, wand(v, hi4), wbcast4(xq, k + 4))
    v = wload(wq, w + 64)
    c = wdot(c, wand(v, lo4), wbcast4(xq, k + 8))
    h = wdot(h, wand(v, hi4), wbcast4(xq, k + 12))
    v = wload(wq, w + 128)
    c = wdot(c, wand(v, lo4), wbcast4(xq, k + 16))
    h = wdot(h, wand(v, hi4), wbcast4(xq, k + 20))
    v = wload(wq, w + 192)
    c = wdot(c, wand(v, lo4), wbcast4(xq, k + 24))
    h = wdot(h, wand(v, hi4), wbcast4(xq, k + 28))
    return wcvt(wadd(c, wsra4(h)))


_q4_block = njit(cache=True, inline="always")(_q4_block_py)


def _gemv_q4p_py(xq, bs, bd, sx, xg, wq, s16, z16, sym, n, out):
    # out (M, n) = sum over k of s[j, g] (q[j, k] - zero[j, g]) * xscale(m, k) xq[m, k] for the int4
    # weights in panels (wq, s16, z16: q4_panels) against int8 rows xq (M, K): x's scale per block of
    # 32 (bd (M, K // 32)) or per row (sx, ROWX: 8da4w; bd unread).  Symmetric weights hold q + 8:
    # bs (M, K // 32) = -8 x each block's sum of xq starts its dot products; asymmetric ones subtract
    # s z xg per group at the end (xg (M, ng): the group sums of x dequantized).  A task is a panel,
    # its 16 outputs one vector store (masked in the last panel past n).  Blocks alternate between two
    # float accumulators (the FMA's latency).  Extents: wq holds NP = ceil(n / 16) panels of K / 2 *
    # 16 bytes; s16 / z16 NP * ng * 16 elements; x's broadcasts read xq[m, 32b .. 32b + 32).
    M, K = xq.shape
    nb = K // 32
    NP = (n + QP - 1) // QP
    ng = s16.shape[0] // (NP * QP)
    bpg = nb // ng
    lo4 = wsplat(0x0F0F0F0F)
    hi4 = wsplat(-0x0F0F0F10)            # 0xF0F0F0F0
    for P in prange(NP):
        w0 = P * nb * 256
        g0 = P * ng * QP
        for m in range(M):
            k0 = m * K
            e0 = wfzero()
            e1 = wfzero()
            for b in range(0, nb - 1, 2):
                for i in range(8):                        # the two blocks' 512 bytes, PF_Q4 ahead
                    vprefetch(wq, w0 + 256 * b + PF_Q4 + 64 * i)
                y0 = _q4_block(xq, k0 + 32 * b, wq, w0 + 256 * b, wsplat(bs[m, b]), lo4, hi4)
                y1 = _q4_block(xq, k0 + 32 * b + 32, wq, w0 + 256 * b + 256, wsplat(bs[m, b + 1]), lo4, hi4)
                s0 = wscales(s16, g0 + (b // bpg) * QP, 0xFFFF)
                s1 = wscales(s16, g0 + ((b + 1) // bpg) * QP, 0xFFFF)
                if ROWX:
                    e0 = wfma(y0, s0, e0)
                    e1 = wfma(y1, s1, e1)
                else:
                    e0 = wfma(y0, wfmul(s0, wfsplat(bd[m, b])), e0)
                    e1 = wfma(y1, wfmul(s1, wfsplat(bd[m, b + 1])), e1)
            if nb % 2:
                b = nb - 1
                y0 = _q4_block(xq, k0 + 32 * b, wq, w0 + 256 * b, wsplat(bs[m, b]), lo4, hi4)
                s0 = wscales(s16, g0 + (b // bpg) * QP, 0xFFFF)
                if ROWX:
                    e0 = wfma(y0, s0, e0)
                else:
                    e0 = wfma(y0, wfmul(s0, wfsplat(bd[m, b])), e0)
            e0 = wfadd(e0, e1)
            if ROWX:
                e0 = wfmul(e0, wfsplat(sx[m]))
            if not sym:
                for g in range(ng):
                    e0 = wfma(wfmul(wscales(s16, g0 + g * QP, 0xFFFF), wi8f(z16, g0 + g * QP)), wfsplat(-xg[m, g]),
                              e0)
            r0 = P * QP
            if r0 + QP <= n:
                wfstore(out, m * n + r0, e0)
            else:
                wfstore_mask(out, m * n + r0, e0, (1 << (n - r0)) - 1)


ROWX = False
_gemv_q4p_blocks = twins(_gemv_q4p_py, "_blocks", {"ROWX": False}, fastmath=True)
_gemv_q4p_rows = twins(_gemv_q4p_py, "_rows", {"ROWX": True}, fastmath=True)


def gemv_q4_kernel(M, n, K, rows):
    """The compiled int4 panel kernel for M rows of K against n outputs: x's scale per row (rows:
    8da4w) or per block, serial below PAR_Q4 multiply-adds.  Its arguments: (xq, bs, bd, sx, xg, wq,
    s16, z16, sym, n, out), the weights from q4_panels."""
    return (_gemv_q4p_rows if rows else _gemv_q4p_blocks)[q4_parallel(M, n, K)]


def q4_parallel(M, n, K):
    """Whether an int4 GEMV of M rows of K against n outputs runs the kernel's parallel copy."""
    return M * n * K >= PAR_Q4


def gemv_q4(xq, bs, bd, sx, xg, wp, scale, zero, n, out):
    """int4 row pairs wp (ceil(n/2), K) with group scales scale (n, K // G; float16 or float32) and
    zero points zero (or None: symmetric, q - 8) against int8 rows xq (M, K): with block scales bd
    (sx None; bs, bd and xg from quant._quant_blocks) or per-row scales sx (8da4w, symmetric; bs
    from quant._row_blocks, bd unread); out (M, n) float32.  Needs HAVE_VNNI and HAVE_AVX512,
    C-contiguous arrays, K % 32 == 0 and G % 32 == 0."""
    wq, s16, z16 = q4_panels(wp, scale, zero, n)
    gemv_q4_kernel(xq.shape[0], n, xq.shape[1], sx is not None)(
        xq, bs, bd, _NO_F32 if sx is None else sx, xg, wq, s16, z16, zero is None, n, out)
