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
                                    vload4, vprefetch, vstore, vsub, vzero, wand, wcvt, wdot, wfhsum,
                                    wfload, wfma, wfmul, wfzero, wload, wload4, wload4_half, wload_half,
                                    wsplat, wsplat2, wsrl4, wscales, sload, wperm, wadd)
from edgetorch._native.jit import variant

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


# multiply-adds from which the parallel copies pay: the VNNI loops run a 768 x 288 GEMV in ~8 us on
# one thread, which waking the second one does not beat (measured: 288 x 288 to 864 x 288 serial
# 3.6-8.4 us vs parallel 5.8-10.5); but weights that come from DRAM need both cores' bandwidth
# (110M Llama 8da4w decode, 768 x 768 to 768 x 2048 layers: serial 11.0 ms a token, 5.6 GB/s)
PAR_OPS = 1 << 19
# how far ahead the int4 GEMV hints its weight stream into cache (vprefetch): its arithmetic per byte
# keeps too few misses in flight for DRAM on its own.  110M Llama 8da4w decode, alternating processes:
# 6.8 -> 5.4-5.9 ms a token (the int8-weight GEMV, lighter per byte, measured no gain)
PF_BYTES = 4096


# ------------------------------------------------------------------ int4 weights x int8 rows or blocks, 512-bit

def _rows4_py(x, c, wa, wb, sv, idx, s0, s1, s2, s3, a0, a1, a2, a3, lo4):
    # one step of _gemv_q4w_py for its 4 rows: the two pairs' 64 bytes wa, wb against x (dots started
    # at c), to float, times x's lane scales sv (not with ROWX), times the permuted group scales
    y0 = wcvt(wdot(c, wand(wa, lo4), x))
    y1 = wcvt(wdot(c, wand(wsrl4(wa), lo4), x))
    y2 = wcvt(wdot(c, wand(wb, lo4), x))
    y3 = wcvt(wdot(c, wand(wsrl4(wb), lo4), x))
    if not ROWX:
        y0 = wfmul(y0, sv)
        y1 = wfmul(y1, sv)
        y2 = wfmul(y2, sv)
        y3 = wfmul(y3, sv)
    return (wfma(y0, wperm(idx, s0), a0), wfma(y1, wperm(idx, s1), a1), wfma(y2, wperm(idx, s2), a2),
            wfma(y3, wperm(idx, s3), a3))


def _gemv_q4w_py(xq, cx, sxe, sx, xg, wp, s, z, sym, n, out):
    # out (M, n) = sum over k of s[j, g] (q[j, k] - zero[j, g]) * xscale(m, k) xq[m, k]: int4 row pairs
    # (byte wp[p, k] holds row 2p's weight in its low nibble, row 2p + 1's in its high one) against
    # int8 x, 64 columns a step in 512-bit vpdpbusd (the nibbles unsigned, x signed): one 64-byte
    # load gives both rows 64 weights.  A step's 16 int32 lanes are 4 columns each (lanes 0-7 its
    # first 32 columns, 8-15 its last 32) and go to float once.  x's scale: per lane (sxe, blocks of
    # 32) times each step, or per row (sx, ROWX) once at the end.  Group scales: a row's next 16
    # (float32, or float16 bits as the file stores them: 10% fewer bytes than widened ones) are
    # loaded as one vector, and each step permutes the lanes it needs into place (vpermps: groups
    # of 32 give a step two scales, larger groups one), so one FMA a step and row applies them.
    # Symmetric weights start each dot at cx (-8 x the lane's sum of x); asymmetric ones subtract
    # s z xg per group after.  A task is two pairs (4 rows); an odd last pair is computed twice and
    # stored once.  The weight stream is hinted PF_BYTES ahead.
    # Extents (the intrinsic loads are not bounds checked): a full step reads wp[p, k:k + 64], xq[m,
    # k:k + 64] and lanes k/4 .. k/4 + 16 of cx / sxe with k + 64 <= K64 <= K; the last half step
    # reads 32 bytes from K64 = K - 32 and the lanes K64/4 .. K64/4 + 16 <= L (quant._lanes rounds
    # L up to whole steps); scales: min(16, ng - gw) of row j's ng (masked load), j < n; the callers
    # check wp (ceil(n/2), K), s and z (n, K // G) with K % G == 0 and G % 32 == 0.
    M, K = xq.shape
    P = wp.shape[0]
    ng = s.shape[1]
    G = K // ng
    two = G == 32
    spg = 1 if two else G // 64          # 64-column steps a group (groups of 64 or more)
    L = cx.shape[1]
    K64 = K - K % 64
    lo4 = wsplat(0x0F0F0F0F)
    halves = wsplat2(0, 1)
    for t in prange((P + 1) // 2):
        p0 = 2 * t
        p1 = min(p0 + 1, P - 1)
        j0 = 2 * p0
        j1 = min(j0 + 1, n - 1)           # an odd n: the last pair's high nibbles are padding
        j2 = 2 * p1
        j3 = min(j2 + 1, n - 1)
        w0 = p0 * K
        w1 = p1 * K
        for m in range(M):
            xb = m * K
            cb = m * L
            a0 = wfzero()
            a1 = wfzero()
            a2 = wfzero()
            a3 = wfzero()
            for gw in range(0, ng, 16):                  # windows of 16 groups
                mask = (1 << min(16, ng - gw)) - 1
                s0 = wscales(s, j0 * ng + gw, mask)
                s1 = wscales(s, j1 * ng + gw, mask)
                s2 = wscales(s, j2 * ng + gw, mask)
                s3 = wscales(s, j3 * ng + gw, mask)
                gi = 0                                   # the step's group within the window
                left = spg
                for k in range(gw * G, min((gw + 16) * G, K64), 64):
                    vprefetch(wp, w0 + 2 * k + PF_BYTES)           # the task's 2 K bytes: two lines a step
                    vprefetch(wp, w0 + 2 * k + 64 + PF_BYTES)
                    x = wload(xq, xb + k)
                    c = wload4(cx, cb + (k >> 2))
                    idx = wadd(wsplat(gi), halves) if two else wsplat(gi)
                    sv = wfzero() if ROWX else wfload(sxe, cb + (k >> 2))
                    a0, a1, a2, a3 = _rows4(x, c, wload(wp, w0 + k), wload(wp, w1 + k), sv, idx, s0, s1, s2, s3,
                                            a0, a1, a2, a3, lo4)
                    if two:
                        gi += 2
                    else:
                        left -= 1
                        if left == 0:
                            gi += 1
                            left = spg
                if K64 < K and (gw + 16) * G >= K:
                    # the last 32 columns (one group of 32: two == True) in the low lanes
                    sv = wfzero() if ROWX else wfload(sxe, cb + K64 // 4)
                    a0, a1, a2, a3 = _rows4(wload_half(xq, xb + K64), wload4_half(cx, cb + K64 // 4),
                                            wload_half(wp, w0 + K64), wload_half(wp, w1 + K64), sv, wsplat(gi),
                                            s0, s1, s2, s3, a0, a1, a2, a3, lo4)
            v0 = wfhsum(a0)
            v1 = wfhsum(a1)
            v2 = wfhsum(a2)
            v3 = wfhsum(a3)
            if ROWX:
                v0 *= sx[m]
                v1 *= sx[m]
                v2 *= sx[m]
                v3 *= sx[m]
            if not sym:
                for g in range(ng):
                    xs = xg[m, g]
                    v0 -= sload(s, j0 * ng + g) * np.float32(z[j0, g]) * xs
                    v1 -= sload(s, j1 * ng + g) * np.float32(z[j1, g]) * xs
                    v2 -= sload(s, j2 * ng + g) * np.float32(z[j2, g]) * xs
                    v3 -= sload(s, j3 * ng + g) * np.float32(z[j3, g]) * xs
            out[m, j0] = v0
            if j0 + 1 < n:
                out[m, j0 + 1] = v1
            if p1 != p0:
                out[m, j2] = v2
                if j2 + 1 < n:
                    out[m, j2 + 1] = v3


ROWX = False
_ROWS4 = {rowx: variant(_rows4_py, "_rows4" + ("_rowx" if rowx else ""), {"ROWX": rowx}, inline="always",
                        fastmath=True) for rowx in (False, True)}
_rows4 = _ROWS4[False]
_gemv_q4w_blocks = twins(_gemv_q4w_py, "_blocks", {"ROWX": False, "_rows4": _ROWS4[False]}, fastmath=True)
_gemv_q4w_rows = twins(_gemv_q4w_py, "_rows", {"ROWX": True, "_rows4": _ROWS4[True]}, fastmath=True)


def gemv_q4_kernel(M, wp, rows):
    """The compiled int4 kernel for M rows against wp: x's scale per row (rows: 8da4w) or per lane,
    serial below PAR_OPS multiply-adds.  Its arguments: (xq, cx, sxe, sx, xg, wp, s, z, sym, n, out)."""
    serial, par = _gemv_q4w_rows if rows else _gemv_q4w_blocks
    return par if M * wp.size * 2 >= PAR_OPS else serial


def gemv_q4(xq, cx, sxe, sx, xg, wp, s, z, sym, n, out):
    """int4 row pairs wp (ceil(n/2), K) with group scales s (n, K // G; float32, or float16 bits as
    uint16) and zero points z where not sym, against int8 rows xq (M, K): with per-lane block scales
    sxe (sx None; laid out by quant._quant_blocks) or per-row scales sx (8da4w; cx from
    quant._row_lanes, sxe unread); out (M, n) float32.  Needs HAVE_VNNI and HAVE_AVX512, C-contiguous
    arrays, K % 32 == 0 and G % 32 == 0."""
    gemv_q4_kernel(xq.shape[0], wp, sx is not None)(xq, cx, sxe, _NO_F32 if sx is None else sx, xg, wp, s, z, sym,
                                                    n, out)
