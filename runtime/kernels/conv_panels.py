"""float32 convolution (groups 1, no dilation) as an implicit GEMM over 16-pixel panels.

For each image, 16 consecutive output pixels (flat over OH x OW) form a
panel: their im2col columns, K = C x kh x kw values each, are gathered into
a (K, 16) buffer (two 8-lane copies per k when the 16 input pixels are
contiguous: stride 1 within one output row; a gather otherwise), then every
block of 8 output channels multiplies it in 16 vector accumulators: per k,
two panel loads, 8 weight broadcasts and 16 FMAs (the micro-kernel of
sgemm.py with the weight as the broadcast operand).  The bias and ReLU are
applied in registers and the 16 pixels stored straight into NCHW output.
The input is zero-padded once per call, so the gathers need no bounds tests.
A task is a chunk of 8 panels of one image (the buffers are allocated once a
task).  Output channels past the last block of 8 run one at a time.

Measured on ResNet-8's layers at batch 32 against the direct 3x3 kernels
(edgetorch/_native/conv.py) and im2col + BLAS: 16->16 at 32x32 1.7 ms
either way, 16->32 stride 2 1.41 -> 1.20 ms, 32->32 at 16x16 1.83 -> 1.31,
32->64 stride 2 1.44 -> 0.85, 64->64 at 8x8 2.74 -> 1.47; at batch 1
0.088 -> 0.063 and 0.132 -> 0.091 ms.
"""
import numpy as np
from numba import njit, prange

from edgetorch._native import simd
from edgetorch._native.jit import variant
from edgetorch._native.simd import vfload, vfstore

from ._jit import twins
from .sgemm import row16, row32, tile8x16, tile8x32

CHUNK = 8           # panels a task, at most: fewer when that leaves fewer than 4 tasks (see conv2d)


def _store_py(out, tmp, o, lo, hi, bias, relu, nvalid):
    # 2 L output pixels of one channel (lanes ZERO, SPLAT, ADD, MAX, STORE and L bound per width by
    # jit.variant, as sgemm.py's micro-kernels): plus the bias, ReLU, stored straight into NCHW
    bb = SPLAT(bias)
    lo = ADD(lo, bb)
    hi = ADD(hi, bb)
    if relu:
        lo = MAX(lo, ZERO())
        hi = MAX(hi, ZERO())
    if nvalid == 2 * L:
        STORE(out, o, lo)
        STORE(out, o + L, hi)
    else:                                   # the image's last, partial panel
        STORE(tmp, 0, lo)
        STORE(tmp, L, hi)
        of = out.reshape(-1)
        for q in range(nvalid):
            of[o + q] = tmp[q]


ZERO, SPLAT, ADD, MAX, STORE, L = (simd.F8[k] for k in ("ZERO", "SPLAT", "ADD", "MAX", "STORE", "L"))
_store = variant(_store_py, "_store", simd.F8, fastmath=True, inline="always")
_wstore = variant(_store_py, "_wstore", simd.F16, fastmath=True, inline="always")


@njit(cache=True, fastmath=True, inline="always")
def _gather(xp, panel, off, run8, n, p0, PW, C, Hp, Wp, kh, kw, sh, sw, OW, P):
    """The im2col columns of output pixels p0..p0+PW-1 of image n into panel (K, PW).  Each block of 8
    pixels that is contiguous in the input (stride 1 within one output row: every block when the
    output width is a multiple of 8) is one vector copy per k; the others gather."""
    for q in range(PW):
        p = min(p0 + q, P - 1)             # past the last pixel: a repeat, never stored
        off[q] = (n * C * Hp + (p // OW) * sh) * Wp + (p % OW) * sw
    for q8 in range(PW // 8):
        run8[q8] = True                    # every neighbour pair one apart (a row change can also span 7)
        for q in range(q8 * 8, q8 * 8 + 7):
            if off[q + 1] != off[q] + 1:
                run8[q8] = False
    xf = xp.reshape(-1)
    for ci in range(C):
        for i in range(kh):
            for j in range(kw):
                k = (ci * kh + i) * kw + j
                ko = (ci * Hp + i) * Wp + j
                for q8 in range(PW // 8):
                    q0 = q8 * 8
                    if run8[q8]:
                        vfstore(panel, k * PW + q0, vfload(xp, off[q0] + ko))
                    else:
                        for q in range(q0, q0 + 8):
                            panel[k * PW + q] = xf[off[q] + ko]


def _conv_panels_py(xp, w2, b, relu, sh, sw, kh, kw, chunk, out):
    # xp (N, C, Hp, Wp) zero-padded input; w2 (O, K), K = C * kh * kw; b (O,); out (N, O, OH, OW);
    # all C-contiguous float32.  PW-pixel panels; TILE, ROW, PUT, PW: the 8-lane (16-pixel) or the
    # 16-lane (32-pixel, AVX-512) kernels, bound per variant below.
    N, C, Hp, Wp = xp.shape
    O, K = w2.shape
    OH, OW = out.shape[2], out.shape[3]
    P = OH * OW
    NP = (P + PW - 1) // PW
    NCH = (NP + chunk - 1) // chunk
    OB = O // 8
    for t in prange(N * NCH):
        n = t // NCH
        panel = np.empty(K * PW, np.float32)
        off = np.empty(PW, np.int64)
        run8 = np.empty(PW // 8, np.bool_)
        tmp = np.empty(PW, np.float32)
        for pi in range((t % NCH) * chunk, min(NP, (t % NCH) * chunk + chunk)):
            p0 = pi * PW
            _gather(xp, panel, off, run8, n, p0, PW, C, Hp, Wp, kh, kw, sh, sw, OW, P)
            nv = min(PW, P - p0)
            for ob in range(OB):
                o0 = ob * 8
                c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71 = \
                    TILE(w2, o0, panel, 0, K)
                o = (n * O + o0) * P + p0
                PUT(out, tmp, o, c00, c01, b[o0], relu, nv)
                PUT(out, tmp, o + P, c10, c11, b[o0 + 1], relu, nv)
                PUT(out, tmp, o + 2 * P, c20, c21, b[o0 + 2], relu, nv)
                PUT(out, tmp, o + 3 * P, c30, c31, b[o0 + 3], relu, nv)
                PUT(out, tmp, o + 4 * P, c40, c41, b[o0 + 4], relu, nv)
                PUT(out, tmp, o + 5 * P, c50, c51, b[o0 + 5], relu, nv)
                PUT(out, tmp, o + 6 * P, c60, c61, b[o0 + 6], relu, nv)
                PUT(out, tmp, o + 7 * P, c70, c71, b[o0 + 7], relu, nv)
            for oc in range(OB * 8, O):        # channels past the last block of 8
                lo, hi = ROW(w2, oc, panel, 0, K)
                PUT(out, tmp, (n * O + oc) * P + p0, lo, hi, b[oc], relu, nv)


TILE, ROW, PUT, PW = tile8x16, row16, _store, 16      # the 8-lane variant's bindings


_conv_panels, _conv_panels_par = twins(_conv_panels_py, fastmath=True)
_conv_panels_wide, _conv_panels_wide_par = twins(
    _conv_panels_py, "_wide", {"TILE": tile8x32, "ROW": row32, "PUT": _wstore, "PW": 32}, fastmath=True)
PAR_MACS = 1 << 20


def applies(x, w, out, groups, dilation):
    return (groups == 1 and tuple(dilation) == (1, 1) and x.ndim == 4 and w.ndim == 4
            and x.dtype == w.dtype == out.dtype == np.float32 and out.flags.c_contiguous
            and out.shape[2] * out.shape[3] > 0 and x.shape[1] > 0)


def conv2d(out, xp, w, b, stride, relu):
    """out = conv2d(xp, w) + b (ReLU fused when asked); xp already zero-padded."""
    o, c, kh, kw = w.shape
    bb = np.zeros(o, np.float32) if b is None else b.astype(np.float32, copy=False)
    macs = out.size * c * kh * kw
    if simd.HAVE_AVX512:
        kern = _conv_panels_wide_par if macs >= PAR_MACS else _conv_panels_wide
    else:
        kern = _conv_panels_par if macs >= PAR_MACS else _conv_panels
    # panels a task: CHUNK, or fewer so that a small batch still makes >= 4 tasks (one image's 16 x 16
    # output is 8 panels of 32 pixels: with 8 a task it ran on one core)
    n_panels = -(-(out.shape[2] * out.shape[3]) // (32 if simd.HAVE_AVX512 else 16))
    chunk = max(1, min(CHUNK, out.shape[0] * n_panels // 4))
    kern(np.ascontiguousarray(xp), np.ascontiguousarray(w.reshape(o, -1)), bb, relu, stride[0], stride[1], kh, kw,
         chunk, out)
