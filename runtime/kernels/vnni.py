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
                                    vload4, vprefetch_l2, vstore, vsub, vzero, wadd, wand, wcvt, wdot, wfhsum,
                                    wfload, wfma, wfmul, wfsplat, wfzero, wload, wload4, wload_mask, wperm,
                                    wscales, wsll4, wsplat, wsub, sload)
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
#
# The lane layout.  A vpdpbusd lane sums 4 adjacent bytes; laid out naturally, a 64-byte step's 16
# lanes cover 2 blocks of 32 columns, so each step's int32 sums had to go to float and meet their
# blocks' scales (a conversion, a permute, a multiply and an FMA a row and step: ~36 vector
# operations per 128 weight bytes).  Here the columns are reordered (weights once, when the
# constant is first used; x every call, as it is quantized) so that lane l of every step of a
# window of 16 blocks (512 columns) holds block l: step q (0-7), lane l, byte r is column
# 32 l + 4 q + r of the window.  A block's whole dot product then builds in one int32 lane over
# the window's 8 steps, and the scales are applied once a window: the step is 3 loads, 2 ANDs and
# 4 vpdpbusd for 4 rows.  The last window of a row holds its nbw < 16 remaining blocks the same
# way, 4 nbw bytes a step (read with a byte mask).  Row pairs share bytes as in the file (row 2p in
# the low nibble, 2p + 1 in the high one); a task's two pairs are interleaved window by window,
# one contiguous stream a task: pair 2t's window then pair 2t + 1's.  The high nibble is not
# shifted: the whole byte's dot (lo + 16 hi) minus the low nibble's gives 16 x the high one's, in
# exact int32, and 1/16 goes into its scale.  (llama.cpp's CPU back end repacks Q4_0 at load too,
# into row-interleaved blocks, for the same reason: its "repack" buffer types.)
# Measured against the natural-layout kernel it replaces (2 threads, 1536 x 1024 and 2048 x 768 int4
# matrices, alternating): L3-resident 38 -> 55-61 GB/s, 28-36 -> 41-53; L2 one thread 256 x 4096
# 22-24 -> 34-50; from DRAM equal (20.5 -> 20.8, 27.5 -> 27.7 GB/s) once its hints go to L2.

WIN = 512           # columns a window: 16 blocks of 32


def lane_groups(K, ng):
    """Whether the lane kernel takes K columns in ng groups: groups of 32, 64, 128 or 256 (the op's
    sizes: a window of 16 blocks holds whole groups)."""
    G = K // ng
    return ng * G == K and G in (32, 64, 128, 256)


@njit(cache=True, inline="always")
def lane_pos(c, nb):
    """The position of column c in the lane layout of a row of nb blocks."""
    w = c // WIN
    nbw = min(16, nb - 16 * w)
    i = c - w * WIN
    return w * WIN + ((i & 31) >> 2) * 4 * nbw + (i >> 5) * 4 + (i & 3)


@njit(cache=True)
def _pack_lanes(wp, out):
    # out (T, 2K): task t's pairs 2t, 2t + 1 window by window (full windows: 512 bytes each; the
    # last, partial one: 32 nbw bytes each); a missing last pair stays zero
    P, K = wp.shape
    nb = K // 32
    nfull = nb // 16
    tailb = K - nfull * WIN
    for p in range(P):
        t = p // 2
        h = p % 2
        for c in range(K):
            pos = lane_pos(c, nb)
            w = c // WIN
            if w < nfull:
                off = w * 2 * WIN + h * WIN + (pos - w * WIN)
            else:
                off = nfull * 2 * WIN + h * tailb + (pos - w * WIN)
            out[t, off] = wp[p, c]


def pack_lanes(wp):
    """The int4 row pairs wp (P, K) in the lane layout: (ceil(P / 2), 2 K) uint8."""
    P, K = wp.shape
    out = np.zeros(((P + 1) // 2, 2 * K), np.uint8)
    _pack_lanes(np.ascontiguousarray(wp), out)
    return out


def lane_cols(K):
    """Bytes a row of x takes in the lane layout: K, and 64 more read (not used) by the last
    window's steps, which load a whole vector whatever its width."""
    return K + 64


def lane_blocks(K):
    """int32 / float32 lanes a row of the per-block arrays holds: a whole window's 16 a window."""
    return -(-K // WIN) * 16


# lanes' group index within a window's 16 scales, by log2(G / 32): 32, 64, 128, 256
_LANE_GROUP = np.array([[(32 * l) // (32 << e) for l in range(16)] for e in range(4)], np.int32).reshape(-1)


def _window_py(a0, a1, a2, a3, l0, r0, l1, r1, cl, sv, s, j0, j1, j2, j3, ng, g0, idx):
    # a window's int32 sums into the rows' float accumulators: l the low nibbles' dots, r the whole
    # bytes' (so r - l = 16 x the high nibbles'); cl the zero point's -zp x block sums of x; sv x's
    # block scales (not with ROWX); the group scales of rows j0..j3 from group g0, permuted to
    # their lanes by idx
    sm = (1 << min(16, ng - g0)) - 1
    ch = wsll4(cl)
    d = wfsplat(np.float32(0.0625))
    if ROWX:
        sl = wfsplat(np.float32(1.0))
        sh = d
    else:
        sl = sv
        sh = wfmul(sv, d)
    a0 = wfma(wcvt(wadd(l0, cl)), wfmul(sl, wperm(idx, wscales(s, j0 * ng + g0, sm))), a0)
    a1 = wfma(wcvt(wadd(wsub(r0, l0), ch)), wfmul(sh, wperm(idx, wscales(s, j1 * ng + g0, sm))), a1)
    a2 = wfma(wcvt(wadd(l1, cl)), wfmul(sl, wperm(idx, wscales(s, j2 * ng + g0, sm))), a2)
    a3 = wfma(wcvt(wadd(wsub(r1, l1), ch)), wfmul(sh, wperm(idx, wscales(s, j3 * ng + g0, sm))), a3)
    return a0, a1, a2, a3


def _gemv_q4l_py(xq, cxb, sxb, sx, xg, wl, s, z, sym, n, out):
    # out (M, n) = x @ dequantized(w).T for int4 weights in the lane layout wl (T, 2K; pack_lanes)
    # with group scales s (n, ng: float32, or float16 bits as the file stores them) and zero points
    # z (not sym), against int8 x in the lane layout xq (M, K + 64; quant._quant_lanes) with -zp x
    # its block sums cxb and block scales sxb (M, 16 windows) or one scale a row sx (ROWX: 8da4w),
    # xg (M, ng) x's group sums (asymmetric weights: s z xg per group comes off after).  A task is
    # two pairs (4 rows); full windows run as one loop over the row's 64-column steps (unrolled
    # window by window, its loads came from DRAM slower: 20.3 -> 17.6 GB/s), the last partial
    # window with masked weight loads.  Extents (the loads are not bounds checked): a task reads
    # wl[t, :2K] (masked in the last window); x up to K + 64 bytes of its row; 16 lanes of cxb/sxb
    # a window, lane_blocks(K) a row; scales min(16, ng - g0) from row j's group g0 (masked).
    M = xq.shape[0]
    K = wl.shape[1] // 2
    T = wl.shape[0]
    ng = s.shape[1]
    G = K // ng
    e = 0
    while (32 << e) < G:
        e += 1
    nb = K // 32
    nfull = nb // 16
    tail = nb - 16 * nfull
    st = 4 * tail                                   # bytes a step of the last window
    bm = (np.int64(1) << st) - 1
    Lb = cxb.shape[1]
    Kx = xq.shape[1]
    lo4 = wsplat(0x0F0F0F0F)
    idx = wload4(_LANE_GROUP, 16 * e)
    for t in prange(T):
        r0 = 4 * t                                  # the task's rows r0 .. r0 + 3 (those < n)
        j0 = min(r0, n - 1)
        j1 = min(r0 + 1, n - 1)
        j2 = min(r0 + 2, n - 1)
        j3 = min(r0 + 3, n - 1)
        tb = t * 2 * K
        for m in range(M):
            xb = m * Kx
            bb = m * Lb
            a0 = wfzero()
            a1 = wfzero()
            a2 = wfzero()
            a3 = wfzero()
            l0 = wsplat(0)
            q0 = wsplat(0)
            l1 = wsplat(0)
            q1 = wsplat(0)
            for k in range(0, nfull * WIN, 64):
                vprefetch_l2(wl, tb + 2 * k + PF_BYTES)          # the task's stream: 128 bytes a step
                vprefetch_l2(wl, tb + 2 * k + 64 + PF_BYTES)
                x = wload(xq, xb + k)
                o = tb + 2 * k - (k & (WIN - 1))                  # pair 2t's bytes of this step
                wa = wload(wl, o)
                wb = wload(wl, o + WIN)
                l0 = wdot(l0, wand(wa, lo4), x)
                q0 = wdot(q0, wa, x)
                l1 = wdot(l1, wand(wb, lo4), x)
                q1 = wdot(q1, wb, x)
                if (k & (WIN - 1)) == WIN - 64:
                    w = k // WIN
                    a0, a1, a2, a3 = _window(a0, a1, a2, a3, l0, q0, l1, q1, wload4(cxb, bb + 16 * w),
                                             wfload(sxb, bb + 16 * w), s, j0, j1, j2, j3, ng, (w * WIN) // G, idx)
                    l0 = wsplat(0)
                    q0 = wsplat(0)
                    l1 = wsplat(0)
                    q1 = wsplat(0)
            if tail:
                o = tb + nfull * 2 * WIN
                xt = xb + nfull * WIN
                for q in range(8):
                    vprefetch_l2(wl, o + 2 * q * st + PF_BYTES)
                    vprefetch_l2(wl, o + 2 * q * st + 64 + PF_BYTES)
                    x = wload(xq, xt + q * st)
                    wa = wload_mask(wl, o + q * st, bm)
                    wb = wload_mask(wl, o + 8 * st + q * st, bm)
                    l0 = wdot(l0, wand(wa, lo4), x)
                    q0 = wdot(q0, wa, x)
                    l1 = wdot(l1, wand(wb, lo4), x)
                    q1 = wdot(q1, wb, x)
                a0, a1, a2, a3 = _window(a0, a1, a2, a3, l0, q0, l1, q1, wload4(cxb, bb + 16 * nfull),
                                         wfload(sxb, bb + 16 * nfull), s, j0, j1, j2, j3, ng, (nfull * WIN) // G, idx)
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
            if r0 < n:
                out[m, r0] = v0
            if r0 + 1 < n:
                out[m, r0 + 1] = v1
            if r0 + 2 < n:
                out[m, r0 + 2] = v2
            if r0 + 3 < n:
                out[m, r0 + 3] = v3


ROWX = False
_WINDOW = {rowx: variant(_window_py, "_window" + ("_rowx" if rowx else ""), {"ROWX": rowx}, inline="always",
                         fastmath=True) for rowx in (False, True)}
_window = _WINDOW[False]
_gemv_q4l_blocks = twins(_gemv_q4l_py, "_blocks", {"ROWX": False, "_window": _WINDOW[False]}, fastmath=True)
_gemv_q4l_rows = twins(_gemv_q4l_py, "_rows", {"ROWX": True, "_window": _WINDOW[True]}, fastmath=True)


def gemv_q4_kernel(M, wl, rows):
    """The compiled int4 kernel for M rows against wl (lane layout): x's scale per row (rows: 8da4w)
    or per block, serial below PAR_OPS multiply-adds.  Its arguments: (xq, cxb, sxb, sx, xg, wl, s, z,
    sym, n, out)."""
    serial, par = _gemv_q4l_rows if rows else _gemv_q4l_blocks
    return par if M * wl.size * 2 >= PAR_OPS else serial


def gemv_q4(xq, cxb, sxb, sx, xg, wl, s, z, sym, n, out):
    """int4 weights wl in the lane layout (pack_lanes of the row pairs (ceil(n/2), K)) with group
    scales s (n, K // G; float32, or float16 bits as uint16) and zero points z where not sym, against
    int8 rows xq (M, K + 64) in the lane layout with -zp x block sums cxb and block scales sxb
    (quant._quant_lanes; sx None) or per-row scales sx (8da4w; quant._lanes_of_rows, sxb unread);
    out (M, n) float32.  Needs HAVE_VNNI and HAVE_AVX512, C-contiguous arrays and lane_groups(K, ng)."""
    gemv_q4_kernel(xq.shape[0], wl, sx is not None)(xq, cxb, sxb, _NO_F32 if sx is None else sx, xg, wl, s, z, sym,
                                                    n, out)
