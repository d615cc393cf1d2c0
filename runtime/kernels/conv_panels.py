"""float32 convolution (groups 1, no dilation) as an implicit GEMM over panels of output pixels.

For each image, 2 L consecutive output pixels (flat over OH x OW; L = 8 lanes,
or 16 where the CPU has AVX-512F) form a panel, and every block of 8 output
channels multiplies it in 16 vector accumulators: per kernel tap k (K = C x
kh x kw of them), two L-pixel loads, 8 weight broadcasts and 16 FMAs (the
micro-kernel of sgemm.py with the weight as the broadcast operand).  The
bias and ReLU are applied in registers and the pixels stored straight into
NCHW output.

The input is zero-padded once per call and split into stride_w column
phases (padded column u at phase u % S, place u // S): then the L pixels of
a half panel that lie in one output row read L contiguous values for every
tap, at any stride.  When the output width is a multiple of L every half
panel does, and the tiles read the padded input in place through a table of
tap offsets (no im2col copy at all); otherwise each panel's columns are
first gathered into a (K, 2 L) buffer, one vector copy per k for each block
of 8 pixels inside a row.  A strided 1x1 convolution subsamples its input
first (conv.py).  A task is a chunk of panels of one image; from 4 images on,
a task is a whole image that pads (and phase-splits) itself into a buffer of
its own (it stays in L2 for the image's panels instead of a padding pass
writing and reading the batch back through L3).  The tiles broadcast
the weight from blocks of 8 output channels packed (K, 8) (pack_weight).

Measured on ResNet-8's layers at batch 32 (in-process A/B against the
gathering kernel that came before, 16-lane): 16->16 at 32x32 1594 -> 1312
us, 3->16 409 -> 319, 32->32 at 16x16 1144 -> 1030, the stride-2 3x3 layers
1436 -> 881 and 873 -> 680 (their gathers had been scalar).  Output
channels past the last block of 8 run one at a time.

With AVX-512, stride-1 convolutions that keep the width (the 8x8 layer
included, which gathered here) and stride-2 ones with 8- or 16-multiple
wide outputs run the row kernels at the end of this file instead (conv.py
chooses).
"""
import functools

import numpy as np
from numba import njit

from edgetorch._native import simd
from edgetorch._native.jit import variant
from edgetorch._native.simd import (vfload, vfstore, wfadd, wfevens, wfload, wfload_mask, wfma, wfmax, wfsplat,
                                    wfstore, wfzero)

from ._jit import chunked
from ._derived import derived, filled
from .pad import pad_plane_f32, split2_plane_f32
from .sgemm import irow16, irow32, itile8x16, itile8x32

CHUNK = 8           # panels a task, at most: fewer when that leaves fewer than 4 tasks (see conv2d)


def _store_py(dst, o, lo, hi, bias, relu):
    # 2 L output pixels of one channel (lanes ZERO, SPLAT, ADD, MAX, STORE and L bound per width by
    # jit.variant, as sgemm.py's micro-kernels): plus the bias, ReLU, stored at dst[o:o + 2 L]
    bb = SPLAT(bias)
    lo = ADD(lo, bb)
    hi = ADD(hi, bb)
    if relu:
        lo = MAX(lo, ZERO())
        hi = MAX(hi, ZERO())
    STORE(dst, o, lo)
    STORE(dst, o + L, hi)


ZERO, SPLAT, ADD, MAX, STORE, L = (simd.F8[k] for k in ("ZERO", "SPLAT", "ADD", "MAX", "STORE", "L"))
_store = variant(_store_py, "_store", simd.F8, fastmath=True, inline="always")
_wstore = variant(_store_py, "_wstore", simd.F16, fastmath=True, inline="always")


def _put8_py(dst, o, cs, b, o0, relu, c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70,
             c71):
    # an 8-channel tile's 2 L-pixel rows (ci0, ci1: channel o0 + i) at dst[o + i cs:], plus b[o0 + i]
    # (PUT: the 8- or 16-lane store, bound per variant)
    PUT(dst, o, c00, c01, b[o0], relu)
    PUT(dst, o + cs, c10, c11, b[o0 + 1], relu)
    PUT(dst, o + 2 * cs, c20, c21, b[o0 + 2], relu)
    PUT(dst, o + 3 * cs, c30, c31, b[o0 + 3], relu)
    PUT(dst, o + 4 * cs, c40, c41, b[o0 + 4], relu)
    PUT(dst, o + 5 * cs, c50, c51, b[o0 + 5], relu)
    PUT(dst, o + 6 * cs, c60, c61, b[o0 + 6], relu)
    PUT(dst, o + 7 * cs, c70, c71, b[o0 + 7], relu)


_put8 = variant(_put8_py, "_put8", {"PUT": _store}, fastmath=True, inline="always")
_wput8 = variant(_put8_py, "_wput8", {"PUT": _wstore}, fastmath=True, inline="always")


@njit(cache=True, fastmath=True, inline="always")
def _add_relu_rows(of, rf, o0, O, P, p_lo, p_hi):
    # of[c, p] = relu(of[c, p] + rf[c, p]) for O channels (planes of P from flat o0) and pixels p_lo ..
    # p_hi - 1: a task's outputs, just stored (in L2), plus a residual block's shortcut.  A pass of
    # its own after the task's panels: adding it in the tiles' stores cost the 16 -> 16 32 x 32 layer
    # 4-14% over a separate add_relu (its loads there stall each tile's stores)
    zero = wfzero()
    n16 = p_lo + (p_hi - p_lo) // 16 * 16
    for c in range(O):
        i0 = o0 + c * P
        for p in range(p_lo, n16, 16):
            wfstore(of, i0 + p, wfmax(wfadd(wfload(of, i0 + p), wfload(rf, i0 + p)), zero))
        for p in range(n16, p_hi):
            of[i0 + p] = max(of[i0 + p] + rf[i0 + p], np.float32(0.0))


@njit(cache=True, inline="always")
def _copy_rows(of, tmp, o, P, rows, nv, ts):
    # a partial panel's nv valid pixels of `rows` channels, tmp rows ts apart, into the output
    for r in range(rows):
        for q in range(nv):
            of[o + r * P + q] = tmp[r * ts + q]


@njit(cache=True, fastmath=True, inline="always")
def _gather(xf, panel, off, run8, base, p0, PW, OW, sh, Wh, P, koff):
    """The im2col columns of output pixels p0..p0+PW-1 into panel (K, PW) for the tiles' packed-panel
    steps.  A block of 8 pixels inside one output row is contiguous in the phase-split input (see
    conv2d), so it is one vector copy per k; a block that spans a row change gathers."""
    for q in range(PW):
        p = min(p0 + q, P - 1)             # past the last pixel: a repeat, never stored
        off[q] = base + (p // OW) * sh * Wh + p % OW
    for q8 in range(PW // 8):
        run8[q8] = True                    # every neighbour pair one apart (a row change can also span 7)
        for q in range(q8 * 8, q8 * 8 + 7):
            if off[q + 1] != off[q] + 1:
                run8[q8] = False
    for k in range(koff.shape[0]):
        ko = koff[k]
        for q8 in range(PW // 8):
            q0 = q8 * 8
            if run8[q8]:
                vfstore(panel, k * PW + q0, vfload(xf, off[q0] + ko))
            else:
                for q in range(q0, q0 + 8):
                    panel[k * PW + q] = xf[off[q] + ko]


def _conv_panels_py(t_lo, t_hi, x, w2, wp, b, relu, koff, sh, geo, fused, direct, chunk, r, res, out):
    # x: the zero-padded input split into S = stride_w column phases (N, C, S, Hp, Wh) (see run); or,
    # fused, the raw input (N, C, 1, H, W), which each task (an image) pads into its own buffer of
    # that layout first (kept in L2 for the image's panels; the separate padding pass wrote and read
    # it back through L3).  geo = (S, Hp, Wh, H, W, ph, pw).  w2 (O, K), K = C * kh * kw, and wp, its
    # blocks of 8 rows packed (K, 8) (pack_weight: the tiles' broadcasts); koff (K,):
    # tap k's offset in a padded image; b (O,); out (N, O, OH, OW); all C-contiguous.  PW = 2 L pixel
    # panels; TILE, ROW (the offset-table micro-kernels), PUT and PW: the 8-lane (16-pixel) or 16-lane
    # (32-pixel, AVX-512) kernels, bound per variant below.  direct: every L-pixel half panel lies in
    # one output row (OW % L == 0), so the tiles read the padded input in place (step k: L values at
    # half-base + koff[k]); else panels are gathered first.  Tasks t_lo .. t_hi - 1 of `tasks(...)`
    # (jit.chunked: one compile for serial and parallel runs): an image's chunks of `chunk` panels.
    # res: out = relu(conv + b + r) (r shaped as out; relu must then be set), a residual block's sum
    # fused (_add_relu_rows, once a task's panels are stored); else r is unread (pass out).
    S, Hp, Wh, H, W, ph, pw = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6]
    C = x.shape[1]
    IS = C * S * Hp * Wh
    O, K = w2.shape
    OH, OW = out.shape[2], out.shape[3]
    P = OH * OW
    NP = (P + PW - 1) // PW
    if fused:
        chunk = NP
    NCH = (NP + chunk - 1) // chunk
    OB = O // 8
    H2 = PW // 2
    xf = x.reshape(-1)
    of = out.reshape(-1)
    rf = r.reshape(-1)
    relu_now = relu and not res
    kp = np.arange(K) * PW                 # a gathered panel's steps
    panel = np.empty(0 if direct else K * PW, np.float32)      # scratch, once a range of tasks
    off = np.empty(PW, np.int64)
    run8 = np.empty(PW // 8, np.bool_)
    tmp = np.empty(8 * PW, np.float32)
    img = np.empty(IS if fused else 0, np.float32)
    for t in range(t_lo, t_hi):
        n = t // NCH
        if fused:
            for c in range(C):
                PAD_PLANE(xf, (n * C + c) * H * W, H, W, ph, pw, np.float32(0.0), img, c * S * Hp * Wh, S, Hp, Wh)
            xsrc, base = img, 0
        else:
            xsrc, base = xf, n * IS
        for pi in range((t % NCH) * chunk, min(NP, (t % NCH) * chunk + chunk)):
            p0 = pi * PW
            nv = min(PW, P - p0)
            if direct:
                q1 = p0 + H2 if nv > H2 else p0  # a half-empty last panel repeats its first half
                src, ko = xsrc, koff
                b0 = base + (p0 // OW) * sh * Wh + p0 % OW
                b1 = base + (q1 // OW) * sh * Wh + q1 % OW
            else:
                _gather(xsrc, panel, off, run8, base, p0, PW, OW, sh, Wh, P, koff)
                src, ko, b0, b1 = panel, kp, 0, H2
            # a full panel is stored straight into NCHW output; the image's last, partial one into
            # tmp (8 channels x PW), then its valid pixels copied
            full = nv == PW
            dst, cs = (of, P) if full else (tmp, PW)
            for ob in range(OB):
                o0 = ob * 8
                c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71 = \
                    TILE(wp, o0, src, b0, b1, ko, K)
                o = (n * O + o0) * P + p0 if full else 0
                PUT8(dst, o, cs, b, o0, relu_now, c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60,
                     c61, c70, c71)
                if not full:
                    _copy_rows(of, tmp, (n * O + o0) * P + p0, P, 8, nv, PW)
            for oc in range(OB * 8, O):        # channels past the last block of 8
                lo, hi = ROW(w2, oc, src, b0, b1, ko, K)
                o = (n * O + oc) * P + p0 if full else 0
                PUT(dst, o, lo, hi, b[oc], relu_now)
                if not full:
                    _copy_rows(of, tmp, (n * O + oc) * P + p0, P, 1, nv, PW)
        if res:
            pc = (t % NCH) * chunk * PW
            _add_relu_rows(of, rf, n * O * P, O, P, pc, min(P, pc + chunk * PW))


TILE, ROW, PUT, PUT8, PW, PAD_PLANE = itile8x16, irow16, _store, _put8, 16, pad_plane_f32  # the 8-lane bindings


# one compile each for serial and parallel runs (jit.chunked): the 16-lane parallel twin alone took
# 16.5 s of ResNet-8's cold start
_conv_panels = chunked(_conv_panels_py, fastmath=True)
# (its images padded by pad.py's split2_plane_f32: stride-2 phases in one 16-lane pass, ~2x the 8-lane
# copy's speed)
_conv_panels_wide = chunked(
    _conv_panels_py, "_wide", {"TILE": itile8x32, "ROW": irow32, "PUT": _wstore, "PUT8": _wput8, "PW": 32,
                               "PAD_PLANE": split2_plane_f32}, fastmath=True)
PAR_MACS = 1 << 20


def tasks(N, P, pw, chunk, fused):
    """_conv_panels_py's task count: N images of P output pixels in pw-pixel panels, `chunk` panels
    a task (an image's all when fused)."""
    np_ = -(-P // pw)
    return N * -(-np_ // (np_ if fused else chunk)) if np_ else 0


@functools.lru_cache(maxsize=256)
def _geo_array(geo):
    a = np.array(geo, np.int64)           # a parallel run takes arrays, not tuples
    a.flags.writeable = False
    return a


def run(out, x, w, b, relu, koff, sh, geo, fused, direct, chunk, par):
    """out = conv2d(x, w) + b (ReLU fused when asked).  x is the input zero-padded and split into
    stride_w column phases, (N, C, S, Hp, Wh) (pad.py's _pad2 with phases=stride_w), or, fused, the
    raw input as (N, C, 1, H, W), padded a task (an image) at a time inside the kernel; geo = (S, Hp,
    Wh, H, W, ph, pw); koff from tap_offsets; direct when OW is a multiple of the half panel (L
    pixels).  conv.py's _panel_plan picks these."""
    o = w.shape[0]
    S, Hp, Wh, H, W = geo[:5]
    if x.ndim != 5 or x.shape[2:] != ((1, H, W) if fused else (S, Hp, Wh)) or x.shape[:2] != (out.shape[0], w.shape[1]) \
            or koff.shape != (w.shape[1] * w.shape[2] * w.shape[3],):
        raise ValueError(f"conv_panels: input {x.shape} does not fit the geometry {geo} (fused {fused}), weight "
                         f"{w.shape} or output {out.shape}")
    if b is None:
        b = filled(o, 0.0)
    kern, pw_ = (_conv_panels_wide, 32) if simd.HAVE_AVX512 else (_conv_panels, 16)
    w2 = np.ascontiguousarray(w).reshape(o, -1)
    (kern.parallel if par else kern.serial)(
        tasks(out.shape[0], out.shape[2] * out.shape[3], pw_, chunk, fused), np.ascontiguousarray(x), w2,
        derived(w, "conv_pack", pack_weight), b.astype(np.float32, copy=False), relu, koff, sh, _geo_array(geo),
        fused, direct, chunk, out, False, out)


def pack_weight(w):
    """The (O, C, kh, kw) float32 weight's blocks of 8 output channels, each as (K, 8) (flat): the
    tile's 8 broadcasts a step then come from one pointer (row-major, 8 row addresses were
    recomputed every step for want of registers)."""
    o = w.shape[0]
    w2 = w.reshape(o, -1)
    ob = o // 8
    return np.ascontiguousarray(w2[:ob * 8].reshape(ob, 8, w2.shape[1]).transpose(0, 2, 1)).reshape(-1)


@functools.lru_cache(maxsize=256)
def tap_offsets(C, kh, kw, S, Hp, Wh):
    """koff (C kh kw,): where kernel tap (c, i, j) reads, relative to an output pixel's base, in an
    image of the phase-split input (C, S, Hp, Wh): padded column u sits in phase u % S at u // S, so
    output pixel (y, x) at stride (sh, S) reads row y sh + i, phase j % S, place x + j // S."""
    c, i, j = np.meshgrid(np.arange(C), np.arange(kh), np.arange(kw), indexing="ij")
    koff = (((c * S + j % S) * Hp + i) * Wh + j // S).reshape(-1).astype(np.int64)
    koff.flags.writeable = False           # shared by every call with this geometry
    return koff


# ------------------------------------------------------------------ row convolutions (masked taps)
#
# A stride-1 convolution whose output keeps the input's width (kw = 2 pw + 1: "same" along W) on
# AVX-512 reads its input in place: an output pixel's flat index p = y W + x is also its place in
# the input plane, so any 32 consecutive output pixels read 32 consecutive input values at every tap
# (offset (ky - ph) W + kx - pw): no padding, no phase split and no gathered panels (an 8-wide
# output's panels were gathered: 64->64 channels at 8x8, the slowest layer of ResNet-8 at batch 32).
# A tap's lanes whose input row or column falls outside the image, or whose pixel lies past the
# output's end, are masked off (zero, not read: simd.wfload_mask); a half panel's masks depend on
# its place in a row and on whether it touches the top or bottom rows, so few distinct rows of K
# masks serve all (direct_taps: the interior's one per 16-column place, W % 16 == 0, or one, 16 % W
# == 0, plus the edge rows').  Session 11: this replaced zero rows padded above and below each plane
# (a copy per call, or per image in its task from 4 images): ResNet-8's 3x3 layers at batch 1 -9%
# to -17%, at batch 32 -1% to -3% (in-process).
#
# Stride 2 (conv.py's _rows2, kernels larger than 1x1), also in place: the 16 pixels of a half panel
# at a tap are the even places of 32 consecutive input values (outputs a multiple of 16 wide), or of
# 16 values in each of two input rows (outputs 8 wide: a half panel is two output rows).  Two masked
# 16-value loads and one shuffle (simd.wfevens) a half and step; masks: the even places whose row and
# column lie inside the image (odd places are never read).  Session 11: in place it beats the
# phase-split panels at every batch (it used to read a row-padded copy, and lost to them from 4
# images).

def _opnd1_py(b, i, hoff, m):
    return wfload_mask(b, i, m)           # stride 1: 16 consecutive values under the mask m


def _opnd2_py(b, i, hoff, m):
    # stride 2: the even places of 16 values at i and 16 at i + hoff, under m's low and high 16 bits
    return wfevens(wfload_mask(b, i, m & 0xFFFF), wfload_mask(b, i + hoff, m >> 16))


def _mtile_py(a, r0, b, b0, b1, hoff, koff, mk, m0, m1, K):
    # sgemm's 8 x 32 tile over packed weight blocks a (a[r0 K + 8 k + i]) and two 16-lane operands
    # OPND(b, b0 + koff[k], hoff, mk[m0 + k]) and OPND(b, b1 + koff[k], hoff, mk[m1 + k]) (bound per
    # stride)
    c00 = wfzero()
    c01 = wfzero()
    c10 = wfzero()
    c11 = wfzero()
    c20 = wfzero()
    c21 = wfzero()
    c30 = wfzero()
    c31 = wfzero()
    c40 = wfzero()
    c41 = wfzero()
    c50 = wfzero()
    c51 = wfzero()
    c60 = wfzero()
    c61 = wfzero()
    c70 = wfzero()
    c71 = wfzero()
    ab = r0 * K
    for k in range(K):
        kk = koff[k]
        w0 = OPND(b, b0 + kk, hoff, mk[m0 + k])
        w1 = OPND(b, b1 + kk, hoff, mk[m1 + k])
        q = ab + 8 * k
        x = wfsplat(a[q])
        c00 = wfma(x, w0, c00)
        c01 = wfma(x, w1, c01)
        x = wfsplat(a[q + 1])
        c10 = wfma(x, w0, c10)
        c11 = wfma(x, w1, c11)
        x = wfsplat(a[q + 2])
        c20 = wfma(x, w0, c20)
        c21 = wfma(x, w1, c21)
        x = wfsplat(a[q + 3])
        c30 = wfma(x, w0, c30)
        c31 = wfma(x, w1, c31)
        x = wfsplat(a[q + 4])
        c40 = wfma(x, w0, c40)
        c41 = wfma(x, w1, c41)
        x = wfsplat(a[q + 5])
        c50 = wfma(x, w0, c50)
        c51 = wfma(x, w1, c51)
        x = wfsplat(a[q + 6])
        c60 = wfma(x, w0, c60)
        c61 = wfma(x, w1, c61)
        x = wfsplat(a[q + 7])
        c70 = wfma(x, w0, c70)
        c71 = wfma(x, w1, c71)
    return c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71


def _mtile16_py(a, ab0, ab1, b, bh, hoff, koff, mk, mh, K):
    # 16 output channels (packed weight blocks at a[ab0:] and a[ab1:], (K, 8) each) x one 16-lane
    # operand OPND(b, bh + koff[k], hoff, mk[mh + k]): 16 accumulators, each broadcast used once
    c0 = wfzero()
    c1 = wfzero()
    c2 = wfzero()
    c3 = wfzero()
    c4 = wfzero()
    c5 = wfzero()
    c6 = wfzero()
    c7 = wfzero()
    c8 = wfzero()
    c9 = wfzero()
    c10 = wfzero()
    c11 = wfzero()
    c12 = wfzero()
    c13 = wfzero()
    c14 = wfzero()
    c15 = wfzero()
    for k in range(K):
        v = OPND(b, bh + koff[k], hoff, mk[mh + k])
        c0, c1, c2, c3, c4, c5, c6, c7 = _fma8(a, ab0 + 8 * k, v, c0, c1, c2, c3, c4, c5, c6, c7)
        c8, c9, c10, c11, c12, c13, c14, c15 = _fma8(a, ab1 + 8 * k, v, c8, c9, c10, c11, c12, c13, c14, c15)
    return c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15


@njit(cache=True, fastmath=True, inline="always")
def _fma8(a, q, v, c0, c1, c2, c3, c4, c5, c6, c7):
    # c_i + a[q + i] v for a block's 8 packed weights of one tap (each broadcast used once: LLVM folds
    # it into the FMA's memory operand)
    return (wfma(wfsplat(a[q]), v, c0), wfma(wfsplat(a[q + 1]), v, c1), wfma(wfsplat(a[q + 2]), v, c2),
            wfma(wfsplat(a[q + 3]), v, c3), wfma(wfsplat(a[q + 4]), v, c4), wfma(wfsplat(a[q + 5]), v, c5),
            wfma(wfsplat(a[q + 6]), v, c6), wfma(wfsplat(a[q + 7]), v, c7))


@njit(cache=True, fastmath=True, inline="always")
def _wput(dst, o, v, bias, relu):
    # one 16-pixel vector of a channel plus its bias, clamped where relu, at dst[o:o + 16]
    v = wfadd(v, wfsplat(bias))
    if relu:
        v = wfmax(v, wfzero())
    wfstore(dst, o, v)


def _mrow_py(w2, r, b, b0, b1, hoff, koff, mk, m0, m1, K):
    # one output channel (row r of the (O, K) weight) against the same operands: two chains a half
    e0 = wfzero()
    e1 = wfzero()
    d0 = wfzero()
    d1 = wfzero()
    for k in range(0, K - 1, 2):
        x = wfsplat(w2[r, k])
        kk = koff[k]
        e0 = wfma(x, OPND(b, b0 + kk, hoff, mk[m0 + k]), e0)
        e1 = wfma(x, OPND(b, b1 + kk, hoff, mk[m1 + k]), e1)
        x = wfsplat(w2[r, k + 1])
        kk = koff[k + 1]
        d0 = wfma(x, OPND(b, b0 + kk, hoff, mk[m0 + k + 1]), d0)
        d1 = wfma(x, OPND(b, b1 + kk, hoff, mk[m1 + k + 1]), d1)
    if K % 2:
        x = wfsplat(w2[r, K - 1])
        kk = koff[K - 1]
        e0 = wfma(x, OPND(b, b0 + kk, hoff, mk[m0 + K - 1]), e0)
        e1 = wfma(x, OPND(b, b1 + kk, hoff, mk[m1 + K - 1]), e1)
    return wfadd(e0, d0), wfadd(e1, d1)


_IL = dict(fastmath=True, inline="always")
_opnd1 = variant(_opnd1_py, "_opnd1", None, **_IL)
_opnd2 = variant(_opnd2_py, "_opnd2", None, **_IL)
OPND, STRIDE2, USE16 = _opnd1, False, False     # the stride-1 bindings (each variant below binds its own)
_mtile1 = variant(_mtile_py, "_mtile1", {"OPND": _opnd1}, **_IL)
_mrow1 = variant(_mrow_py, "_mrow1", {"OPND": _opnd1}, **_IL)
_mtile2 = variant(_mtile_py, "_mtile2", {"OPND": _opnd2}, **_IL)
_mtile16_1 = variant(_mtile16_py, "_mtile16_1", {"OPND": _opnd1}, **_IL)
_mtile16_2 = variant(_mtile16_py, "_mtile16_2", {"OPND": _opnd2}, **_IL)
TILE16 = _mtile16_1                   # (bound per variant below, as TILE and ROW)
_mrow2 = variant(_mrow_py, "_mrow2", {"OPND": _opnd2}, **_IL)
def _conv_rows_py(t_lo, t_hi, x, w2, wp, b, relu, koff, mk, cls, geo, chunk, r, res, out):
    # x (flat): the input (N, C, H, W), read in place.  Half panel hp of an image (output pixels 16 hp
    # .. 16 hp + 15) reads, at tap k (c, ky, kx), from its base + koff[k], koff[k] = c H W + (ky - ph)
    # W + kx - pw, under the lane mask mk[cls[hp], k]: lanes whose input row or column falls outside
    # the image, or whose output pixel lies past the end, are masked off (not read: no padded copy and
    # no slack needed).  STRIDE2 (bound per variant) False: output pixel p's base is p, 16 consecutive
    # values.  True: output pixel (y, x)'s base is 2 y W + 2 x; the operand is the even places of two
    # 16-value loads, the second hoff after the first (a mask's high 16 bits are the second's): 16
    # further along the row (outputs a multiple of 16 wide), or two input rows down (8 wide: a half
    # panel is two output rows; geo's flag).  geo = (H, W, C, flag).  w2 (O, K), wp its blocks of 8
    # rows packed (K, 8); mk (classes, K), cls (2 NP,) from direct_taps; b (O,); out (N, O, OH, OW); r
    # and res as _conv_panels_py's.  Tasks t_lo .. t_hi - 1: an image's chunks of `chunk` 32-pixel
    # panels.
    H, W, C, flag = geo[0], geo[1], geo[2], geo[3]
    IS = C * H * W
    O, K = w2.shape
    OH, OW = out.shape[2], out.shape[3]
    P = OH * OW
    NP = (P + 31) // 32
    NCH = (NP + chunk - 1) // chunk
    OB = O // 8
    OB16 = O // 16 if USE16 else 0        # (see the tile below)
    hoff = (2 * W if flag else 16) if STRIDE2 else 0
    of = out.reshape(-1)
    rf = r.reshape(-1)
    relu_now = relu and not res
    mf = mk.reshape(-1)
    tmp = np.empty(16 * 32, np.float32)
    for t in range(t_lo, t_hi):
        n = t // NCH
        base = n * IS
        for pi in range((t % NCH) * chunk, min(NP, (t % NCH) * chunk + chunk)):
            p0 = pi * 32
            nv = min(32, P - p0)
            if STRIDE2:
                y0, x0 = p0 // OW, p0 % OW
                y1, x1 = (p0 + 16) // OW, (p0 + 16) % OW   # past the end: its masks are all off
                b0 = base + 2 * y0 * W + 2 * x0
                b1 = base + 2 * y1 * W + 2 * x1
            else:
                b0 = base + p0
                b1 = b0 + 16
            m0 = cls[2 * pi] * K
            m1 = cls[2 * pi + 1] * K
            full = nv == 32
            dst, cs = (of, P) if full else (tmp, 32)
            for ob in range(OB16):
                # 16 channels x 16 pixels a tile, each half panel in turn: one operand (two masked
                # loads and a shuffle at stride 2) and 16 FMAs a step, each weight's broadcast folded
                # into its FMA (the 8 x 32 tile below broadcasts each separately, on the FP pipes the
                # FMAs and shuffles need).  In-process against the 8 x 32 tile: stride 2 (ResNet-8's
                # 16 -> 32 and 32 -> 64) batch 1 -2% to -8%, batch 32 -9% to -19%; stride 1, the input
                # read in place (three runs), batch 32 16 -> 16 -2.5% to -8.8%, 32 -> 32 -4% to
                # -7.5%, 64 -> 64 -2.5% to -3%, batch 1 -9% to +2%; but the 3 -> 16 stem (K = 27)
                # +16% to +35%: its epilogue, twice as many stores a step, weighs on a short K
                o0 = ob * 16
                o = (n * O + o0) * P + p0 if full else 0
                for hf in range(2 if nv > 16 else 1):
                    c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15 = TILE16(
                        wp, o0 * K, (o0 + 8) * K, x, b1 if hf else b0, hoff, koff, mf, m1 if hf else m0, K)
                    oh = o + 16 * hf
                    _wput(dst, oh, c0, b[o0], relu_now)
                    _wput(dst, oh + cs, c1, b[o0 + 1], relu_now)
                    _wput(dst, oh + 2 * cs, c2, b[o0 + 2], relu_now)
                    _wput(dst, oh + 3 * cs, c3, b[o0 + 3], relu_now)
                    _wput(dst, oh + 4 * cs, c4, b[o0 + 4], relu_now)
                    _wput(dst, oh + 5 * cs, c5, b[o0 + 5], relu_now)
                    _wput(dst, oh + 6 * cs, c6, b[o0 + 6], relu_now)
                    _wput(dst, oh + 7 * cs, c7, b[o0 + 7], relu_now)
                    _wput(dst, oh + 8 * cs, c8, b[o0 + 8], relu_now)
                    _wput(dst, oh + 9 * cs, c9, b[o0 + 9], relu_now)
                    _wput(dst, oh + 10 * cs, c10, b[o0 + 10], relu_now)
                    _wput(dst, oh + 11 * cs, c11, b[o0 + 11], relu_now)
                    _wput(dst, oh + 12 * cs, c12, b[o0 + 12], relu_now)
                    _wput(dst, oh + 13 * cs, c13, b[o0 + 13], relu_now)
                    _wput(dst, oh + 14 * cs, c14, b[o0 + 14], relu_now)
                    _wput(dst, oh + 15 * cs, c15, b[o0 + 15], relu_now)
                if not full:
                    _copy_rows(of, tmp, (n * O + o0) * P + p0, P, 16, nv, 32)
            for ob in range(2 * OB16, OB):
                o0 = ob * 8
                c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71 = \
                    TILE(wp, o0, x, b0, b1, hoff, koff, mf, m0, m1, K)
                o = (n * O + o0) * P + p0 if full else 0
                _wput8(dst, o, cs, b, o0, relu_now, c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60,
                       c61, c70, c71)
                if not full:
                    _copy_rows(of, tmp, (n * O + o0) * P + p0, P, 8, nv, 32)
            for oc in range(OB * 8, O):
                lo, hi = ROW(w2, oc, x, b0, b1, hoff, koff, mf, m0, m1, K)
                o = (n * O + oc) * P + p0 if full else 0
                _wstore(dst, o, lo, hi, b[oc], relu_now)
                if not full:
                    _copy_rows(of, tmp, (n * O + oc) * P + p0, P, 1, nv, 32)
        if res:
            pc = (t % NCH) * chunk * 32
            _add_relu_rows(of, rf, n * O * P, O, P, pc, min(P, pc + chunk * 32))


# taps (C kh kw) from which stride-1 blocks of 16 output channels take the 16-channel tile (a variant
# of its own: compiled in beside the 8 x 32 path, the unused tile slowed the stem's 8 x 32 path 37%)
TILE16_K = 64
_conv_rows = chunked(_conv_rows_py, "", {"STRIDE2": False, "USE16": False, "TILE": _mtile1, "TILE16": _mtile16_1,
                                         "ROW": _mrow1}, fastmath=True)
_conv_rows16 = chunked(_conv_rows_py, "_t16", {"STRIDE2": False, "USE16": True, "TILE": _mtile1,
                                               "TILE16": _mtile16_1, "ROW": _mrow1}, fastmath=True)
_conv_rows2 = chunked(_conv_rows_py, "_s2", {"STRIDE2": True, "USE16": True, "TILE": _mtile2, "TILE16": _mtile16_2,
                                             "ROW": _mrow2}, fastmath=True)
# the batch from which a panel convolution's task pads its own image (and conv.py leaves stride 2 to the
# panels rather than the row kernel)
FUSED_IMAGES = 4


def rows_applies(xshape, wshape, oshape, stride, padding, dilation, groups):
    """Whether the row kernel runs this float32 convolution (AVX-512 only): stride 1, no dilation,
    groups 1, W kept (kw = 2 pw + 1), and W % 16 == 0 or 16 % W == 0 (a half panel's columns then
    repeat with its place in a row: few mask classes)."""
    n, c, h, w = xshape
    o, cg, kh, kw = wshape
    ph, pw = padding
    return simd.HAVE_FMA and simd.HAVE_AVX512 and groups == 1 and cg == c and tuple(stride) == (1, 1) \
        and tuple(dilation) == (1, 1) and (kh, kw) != (1, 1) and kw == 2 * pw + 1 and 0 <= pw <= 31 \
        and ph >= 0 and w > 0 and (w % 16 == 0 or 16 % w == 0) and c > 0 \
        and tuple(oshape) == (n, o, h + 2 * ph - kh + 1, w) and oshape[2] > 0


def rows2_applies(xshape, wshape, oshape, stride, padding, dilation, groups):
    """Whether the stride-2 row-padded kernel runs this float32 convolution (AVX-512 only): stride 2,
    no dilation, groups 1, an output 8 wide or a multiple of 16 wide."""
    n, c, h, w = xshape
    o, cg, kh, kw = wshape
    ph, pw = padding
    if not (simd.HAVE_FMA and simd.HAVE_AVX512 and groups == 1 and cg == c and tuple(stride) == (2, 2)
            and tuple(dilation) == (1, 1) and ph >= 0 and pw >= 0 and c > 0 and w > 0 and len(oshape) == 4):
        return False
    oh, ow = (h + 2 * ph - kh) // 2 + 1, (w + 2 * pw - kw) // 2 + 1
    return h + 2 * ph >= kh and w + 2 * pw >= kw and tuple(oshape) == (n, o, oh, ow) and (ow == 8 or ow % 16 == 0)


@functools.lru_cache(maxsize=256)
def direct_taps(C, kh, kw, H, W, ph, pw, OH, OW, stride2=False):
    """(koff (K,), masks (classes, K), cls (2 NP,)) for _conv_rows_py on the input (C, H, W) read in
    place, output OH x OW: each half panel's class (cls) picks its row of lane masks, a lane set
    where the tap's input row and column lie inside the image and the output pixel exists (stride 2:
    even lanes only, the second load's in the high 16 bits); half panels with the same masks share a
    class (the interior's, one per 16-column place in a row, and a few at the edges).  A tap's mask
    depends on its (ky, kx) only, so the masks are worked out for the kh kw places and repeated for
    each channel (temporaries of half panels x lanes x kh kw, not x C kh kw).  Read-only."""
    c, i, j = np.meshgrid(np.arange(C), np.arange(kh), np.arange(kw), indexing="ij")
    koff = (c * H * W + (i - ph) * W + j - pw).reshape(-1).astype(np.int64)
    ky, kx = (a.reshape(-1)[None, None, :] for a in np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij"))
    P = OH * OW
    nhp = 2 * -(-P // 32)
    hp = np.arange(nhp)[:, None, None]
    lane = np.arange(32 if stride2 else 16)[None, :, None]
    if not stride2:                        # output pixel p = 16 hp + lane, at its own place
        p = hp * 16 + lane
        y, col = p // W, p % W + kx - pw
        row = y + ky - ph
    elif OW == 8:                          # lanes 0-15: output row 2 hp, 16-31: the next; x = lane % 16 / 2
        y = 2 * hp + lane // 16
        p = y * 8 + (lane % 16) // 2
        row, col = 2 * y + ky - ph, lane % 16 + kx - pw
    else:                                  # 16 outputs of one row: lane l is input column 2 x0 + l
        y, x0 = (hp * 16) // OW, (hp * 16) % OW
        p = y * OW + x0 + lane // 2
        row, col = 2 * y + ky - ph, 2 * x0 + lane + kx - pw
    ok = (p < P) & (row >= 0) & (row < H) & (col >= 0) & (col < W) & ((lane % 2 == 0) | (not stride2))
    rows = (ok * (1 << lane)).sum(axis=1)                                      # (half panel, kh kw)
    mk, cls = np.unique(rows, axis=0, return_inverse=True)
    mk = np.ascontiguousarray(np.tile(mk, (1, C)), np.int64)                  # tap k = (c kh + ky) kw + kx
    cls = np.ascontiguousarray(cls.reshape(-1), np.int64)
    for a in (koff, mk, cls):
        a.flags.writeable = False
    return koff, mk, cls


def rows_plan(xshape, wshape, oshape, padding, stride2=False, par=None):
    """How _conv_rows_py runs a convolution that rows_applies (or, stride2, rows2_applies) accepts:
    (the serial or parallel call, task count, koff, masks, cls, geo, chunk)."""
    n, c, h, wd = xshape
    o, _, kh, kw = wshape
    ph, pw = padding
    OW = oshape[3]
    koff, mk, cls = direct_taps(c, kh, kw, h, wd, ph, pw, oshape[2], OW, stride2)
    geo = _geo_array((h, wd, c, int(stride2 and OW == 8)))
    kern = _conv_rows2 if stride2 else (_conv_rows16 if c * kh * kw >= TILE16_K and o >= 16 else _conv_rows)
    P = oshape[2] * OW
    np_ = -(-P // 32)
    chunk = max(1, min(CHUNK, n * np_ // 4))
    nt = n * -(-np_ // chunk)
    par = n * o * P * c * kh * kw >= PAR_MACS if par is None else par
    return (kern.parallel if par else kern.serial), nt, koff, mk, cls, geo, chunk


def run_rows(out, x, w, b, relu, padding, par=None, stride2=False, r=None):
    """out = conv2d(x, w) + b (ReLU fused when asked; r as run's) through the row kernels (rows_plan)."""
    go, nt, koff, mk, cls, geo, chunk = rows_plan(x.shape, w.shape, out.shape, padding, stride2, par)
    o = w.shape[0]
    go(nt, np.ascontiguousarray(x).reshape(-1), np.ascontiguousarray(w).reshape(o, -1),
       derived(w, "conv_pack", pack_weight), filled(o, 0.0) if b is None else b.astype(np.float32, copy=False),
       relu, koff, mk, cls, geo, chunk, *_residual(out, r, relu))


def _residual(out, r, relu):
    """The kernels' last three arguments (r, res, out): a residual r to add before the ReLU, or none
    (out stands in for the unread r: one compiled signature either way)."""
    if r is None:
        return out, False, out
    if not relu or r.shape != out.shape or r.dtype != np.float32 or not r.flags.c_contiguous:
        raise ValueError(f"conv2d + residual: r {r.shape} {r.dtype} must be a C-contiguous float32 array shaped as "
                         f"the output {out.shape}, with the ReLU")
    return r, True, out


def run_rows2(out, x, w, b, relu, padding, par=None, r=None):
    """run_rows at stride 2 (rows2_applies)."""
    run_rows(out, x, w, b, relu, padding, par, stride2=True, r=r)
