"""3x3 stride-1 convolutions by Winograd's minimal filtering (AVX-512, float32, NCHW).

F(2x2, 3x3): a 2x2 block of output pixels (a tile) comes from a 4x4 block of
input; with Lavin & Gray's matrices ("Fast Algorithms for Convolutional
Neural Networks", 2015, section 4.1)

    B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1  1  1  0]
          [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
          [0 -1  1  0]         [1/2 -1/2  1/2]
          [0  1  0 -1]         [ 0    0    1 ]

a tile's output is A^T [sum_c (G g_oc G^T) * (B^T d_c B)] A: the 9 C O
multiply-adds a pixel of a direct convolution become 16 C O for 4 pixels
(2.25x fewer), as 16 independent GEMMs (one per place p of the 4x4
transformed tile) between the transformed weight U[p] (O x C, packed at
prepare time by pack_weight) and the transformed input V[p] (C x tiles).
The input and output transforms only add and subtract.  F(4x4, 3x3) (the
same paper, section 4.2; 6x6 transforms, 36 GEMMs, 4x fewer multiply-adds)
runs where the height is a multiple of 4 and the width of 16: see its
section below.

Layout: tiles are numbered over the batch (image, tile row, tile), and 16 of
them fill a vector lane by lane, as 4 pieces of 4 tiles that each lie in one
tile row.  With W a multiple of 16 two pieces of a row are adjacent, so a
half vector's input row is one 16-value load per window (lane masks zero the
padding and the rows above and below the image; masked lanes are not read)
and its column phases are wfevens / wfodds of them; otherwise each piece is
an 8-value load (wfload2_mask).  The two output column phases are put back
with wfzip_lo / wfzip_hi and stored straight into NCHW (masked past the
batch's last tile).  A task is a group of tiles (and, for small batches, a
range of output-channel blocks): their V (16 x C x group) is made once and
every block of 8 output channels multiplies it in 8 or 16 accumulators
(8 channels x 1 or 2 vectors of tiles), then transforms its products back
while they are in L1.  Bias, ReLU and a residual block's add are applied in
the output transform's stores.

Numerics: F(2x2) only adds, subtracts and halves; F(4x4) scales by up to 8
and 1/24, a few float32 ulps more (tests hold both to a float64 direct
convolution).  In-process against the row kernels on ResNet-8's layers, see
conv._winograd.
"""
import functools

import numpy as np

from edgetorch._native import simd
from edgetorch._native.jit import variant
from edgetorch._native.simd import (wfadd, wfevens, wfload, wfload2_mask, wfload_mask, wfma, wfmax, wfodds,
                                    wfshuffle, wfsplat, wfstore, wfstore2_mask, wfstore_mask, wfsub, wfzero, wfzip_hi,
                                    wfzip_lo)
from numba import config, njit

from ._jit import chunked
from ._derived import derived, filled
from .conv_panels import PAR_MACS, _geo_array, _residual

GROUP = 32          # tiles a task (two 16-lane vectors)

_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def applies(xshape, wshape, oshape, stride, padding, dilation, groups):
    """Whether winograd.py runs this float32 convolution (F(2x2, 3x3)'s conditions; F(4x4, 3x3)
    covers a subset, _plan): AVX-512, 3x3, stride 1, padding 1, no dilation, groups 1, H even, W a
    multiple of 8, output channels a multiple of 8, and the output the same size as the input."""
    if len(xshape) != 4 or len(wshape) != 4:
        return False
    n, c, h, w = xshape
    o, cg, kh, kw = wshape
    return simd.HAVE_FMA and simd.HAVE_AVX512 and groups == 1 and cg == c and c > 0 and (kh, kw) == (3, 3) \
        and tuple(stride) == (1, 1) and tuple(padding) == (1, 1) and tuple(dilation) == (1, 1) and h > 0 \
        and h % 2 == 0 and w % 8 == 0 and o % 8 == 0 and o > 0 and tuple(oshape) == (n, o, h, w)


def pack_weight(w):
    """U = G g G^T for every (o, c) (computed in float64), laid out (16 places, O / 8, C, 8): the
    broadcasts of a block of 8 output channels for one place and input channel are consecutive."""
    o, c = w.shape[:2]
    # U[k, l] = sum over i, j of G[k, i] G[l, j] g[i, j]: one (O C, 9) x (9, 16) product with G (x) G
    u = (w.reshape(o * c, 9).astype(np.float64) @ np.kron(_G, _G).T).reshape(o, c, 16)
    u = u.transpose(2, 1, 0).reshape(16, c, o // 8, 8).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(u, dtype=np.float32)


@njit(cache=True, inline="always")
def _cmask(s, n, lim):
    # mask bits of the lanes l < n of a window from column s with 0 <= s + l < lim (the row's width,
    # or less where later columns are not used)
    lo = max(0, -s)
    hi = min(n, lim - s)
    if hi <= lo:
        return 0
    return ((1 << hi) - 1) ^ ((1 << lo) - 1)


@njit(cache=True, inline="always")
def _geometry(geo, xf, tile):
    # a kernel's sizes from geo (C, H, W, O, G, S) and the flat input: tiles a row T, an image NT, the
    # batch NQ (tile x tile outputs each); blocks of 8 output channels OB; pixels a plane HW
    C, H, W, O, S = geo[0], geo[1], geo[2], geo[3], geo[5]
    T = W // tile
    NT = (H // tile) * T
    HW = H * W
    return C, H, W, O, S, T, NT, O // 8, HW, xf.shape[0] // (C * HW) * NT


def _load16_py(a, i, j, m):
    return wfload_mask(a, i, m)        # the pieces adjacent (j = i + 8): one 16-lane load


def _store16_py(a, i, j, v, m):
    wfstore_mask(a, i, v, m)


_load16 = njit(cache=True, inline="always")(_load16_py)
_store16 = njit(cache=True, inline="always")(_store16_py)


def _hrow_py(xf, p0, p1, p2, p3, ru, rv, c0u, c1u, c2u, c0v, c1v, c2v):
    # one input row of 16 tiles, 4 a quarter (quarter k's columns 2t - 2 .. from flat pk), transformed
    # along it: d_j = column 2t - 1 + j, e = B^T d.  ru, rv: the quarters' rows inside the image (8
    # mask bits a quarter, quarters 0-1 and 2-3); cwu, cwv: window w's columns inside.  LOAD16: one
    # 16-lane load where a vector's quarters pair up in a row (W % 16 == 0), else two 8-lane pieces
    u0 = LOAD16(xf, p0, p1, c0u & ru)
    v0 = LOAD16(xf, p2, p3, c0v & rv)
    d0 = wfodds(u0, v0)
    u1 = LOAD16(xf, p0 + 2, p1 + 2, c1u & ru)
    v1 = LOAD16(xf, p2 + 2, p3 + 2, c1v & rv)
    d1 = wfevens(u1, v1)
    d2 = wfodds(u1, v1)
    u2 = LOAD16(xf, p0 + 4, p1 + 4, c2u & ru)
    v2 = LOAD16(xf, p2 + 4, p3 + 4, c2v & rv)
    d3 = wfevens(u2, v2)
    return wfsub(d0, d2), wfadd(d1, d2), wfsub(d2, d1), wfsub(d1, d3)


LOAD16, STORE16 = _load16, _store16
_hrow = variant(_hrow_py, "_wino_hrow", fastmath=True, inline="always")
_hrow2 = variant(_hrow_py, "_wino_hrow2", {"LOAD16": wfload2_mask}, fastmath=True, inline="always")


@njit(cache=True, fastmath=True, inline="always")
def _col4(vb, i, step, e0, e1, e2, e3):
    # B^T down a column of the tile: V[k, l] for the 4 places k of column l, `step` apart from flat i
    wfstore(vb, i, wfsub(e0, e2))
    wfstore(vb, i + step, wfadd(e1, e2))
    wfstore(vb, i + 2 * step, wfsub(e2, e1))
    wfstore(vb, i + 3 * step, wfsub(e1, e3))


@njit(cache=True, fastmath=True, inline="always")
def _gemm8x32(u, ui, vb, vi, C, vs):
    # 8 output channels (broadcasts u[ui + 8 c + i]) x 32 tiles (vb[vi + vs c:], 32 values) summed
    # over C
    a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = wfzero()
    a40 = a41 = a50 = a51 = a60 = a61 = a70 = a71 = wfzero()
    for c in range(C):
        v0 = wfload(vb, vi + vs * c)
        v1 = wfload(vb, vi + vs * c + 16)
        k = ui + 8 * c
        s = wfsplat(u[k])
        a00 = wfma(s, v0, a00)
        a01 = wfma(s, v1, a01)
        s = wfsplat(u[k + 1])
        a10 = wfma(s, v0, a10)
        a11 = wfma(s, v1, a11)
        s = wfsplat(u[k + 2])
        a20 = wfma(s, v0, a20)
        a21 = wfma(s, v1, a21)
        s = wfsplat(u[k + 3])
        a30 = wfma(s, v0, a30)
        a31 = wfma(s, v1, a31)
        s = wfsplat(u[k + 4])
        a40 = wfma(s, v0, a40)
        a41 = wfma(s, v1, a41)
        s = wfsplat(u[k + 5])
        a50 = wfma(s, v0, a50)
        a51 = wfma(s, v1, a51)
        s = wfsplat(u[k + 6])
        a60 = wfma(s, v0, a60)
        a61 = wfma(s, v1, a61)
        s = wfsplat(u[k + 7])
        a70 = wfma(s, v0, a70)
        a71 = wfma(s, v1, a71)
    return a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51, a60, a61, a70, a71


@njit(cache=True, fastmath=True, inline="always")
def _gemm8x16(u, ui, vb, vi, C, vs):
    # _gemm8x32 for a group's lone vector of 16 tiles (8 FMAs a step still outrun its 9 loads);
    # vb's rows vs apart
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = wfzero()
    for c in range(C):
        v0 = wfload(vb, vi + vs * c)
        k = ui + 8 * c
        a0 = wfma(wfsplat(u[k]), v0, a0)
        a1 = wfma(wfsplat(u[k + 1]), v0, a1)
        a2 = wfma(wfsplat(u[k + 2]), v0, a2)
        a3 = wfma(wfsplat(u[k + 3]), v0, a3)
        a4 = wfma(wfsplat(u[k + 4]), v0, a4)
        a5 = wfma(wfsplat(u[k + 5]), v0, a5)
        a6 = wfma(wfsplat(u[k + 6]), v0, a6)
        a7 = wfma(wfsplat(u[k + 7]), v0, a7)
    return a0, a1, a2, a3, a4, a5, a6, a7


@njit(cache=True, fastmath=True, inline="always")
def _put2(mb, i, u0, u1):
    wfstore(mb, i, u0)
    wfstore(mb, i + 16, u1)


@njit(cache=True, fastmath=True, inline="always")
def _products(uf, vb, mb, ob, OB, C, NP, G, nv):
    # the NP places' GEMMs for output channels 8 ob .. 8 ob + 7 of a group of G tiles: mb[(p 8 + i) G +
    # 16 v:] = sum over c of U[p, 8 ob + i, c] V[p, c, 16 v:] (vb[(p C + c) G:]); 8 x 32 tiles a step for
    # a group's two vectors, 8 x 16 for a lone one
    for p in range(NP if nv == 2 else 0):
        a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51, a60, a61, a70, a71 = \
            _gemm8x32(uf, (p * OB + ob) * C * 8, vb, p * C * G, C, G)
        i0 = p * 8 * G
        _put2(mb, i0, a00, a01)
        _put2(mb, i0 + G, a10, a11)
        _put2(mb, i0 + 2 * G, a20, a21)
        _put2(mb, i0 + 3 * G, a30, a31)
        _put2(mb, i0 + 4 * G, a40, a41)
        _put2(mb, i0 + 5 * G, a50, a51)
        _put2(mb, i0 + 6 * G, a60, a61)
        _put2(mb, i0 + 7 * G, a70, a71)
    for p in range(NP if nv == 1 else 0):
        a0, a1, a2, a3, a4, a5, a6, a7 = _gemm8x16(uf, (p * OB + ob) * C * 8, vb, p * C * G, C, G)
        i0 = p * 8 * G
        wfstore(mb, i0, a0)
        wfstore(mb, i0 + G, a1)
        wfstore(mb, i0 + 2 * G, a2)
        wfstore(mb, i0 + 3 * G, a3)
        wfstore(mb, i0 + 4 * G, a4)
        wfstore(mb, i0 + 5 * G, a5)
        wfstore(mb, i0 + 6 * G, a6)
        wfstore(mb, i0 + 7 * G, a7)


@njit(cache=True, fastmath=True, inline="always")
def _out_col(mb, i, st):
    # A^T down a column of the product tile (places 4 k + l, k = 0..3, st apart from flat i)
    m0 = wfload(mb, i)
    m1 = wfload(mb, i + st)
    m2 = wfload(mb, i + 2 * st)
    m3 = wfload(mb, i + 3 * st)
    return wfadd(wfadd(m0, m1), m2), wfsub(wfsub(m1, m2), m3)


def _wino_py(t_lo, t_hi, xf, u, b, relu, geo, r, res, out):
    # xf: the input (N, C, H, W) flat; u: pack_weight's (16, O / 8, C, 8); b (O,); out (N, O, H, W);
    # geo = (C, H, W, O, G, S): G groups of 32 tiles (numbered over the batch, image-major: a group
    # may span images, the last may hold fewer), each split over S ranges of output-channel blocks
    # (small batches: more tasks than threads).  Task t: group t // S, range t % S.  res: out =
    # relu(conv + b + r) (r shaped as out; relu then set), else r is unread.  LOAD16, STORE16, HROW:
    # bound per variant (16-lane rows, W % 16 == 0, or 8-lane pieces, W % 8 == 0).
    C, H, W, O, S, T, NT, OB, HW, NQ = _geometry(geo, xf, 2)
    of = out.reshape(-1)
    rf = r.reshape(-1)
    uf = u.reshape(-1)
    vb = np.empty(16 * C * GROUP2, np.float32)
    mb = np.empty(16 * 8 * GROUP2, np.float32)
    # per vector of 16 tiles: its quarters' flat offsets of (image, channel 0, row 2r - 1, column
    # 2t - 2) and output offsets of (image, channel 0, 2r, 2t); the mask bits of its rows 2r - 1 + i
    # inside the image (i = 0..3) and its windows' columns (w = 0..2), pieces 0-1 (u) and 2-3 (v);
    # its quarters that hold tiles
    po = np.empty((2, 4), np.int64)
    oo = np.empty((2, 4), np.int64)
    rm = np.zeros((2, 4, 2), np.int64)
    cm = np.zeros((2, 3, 2), np.int64)
    qm = np.zeros((2, 2), np.int64)
    zero = wfzero()
    for t in range(t_lo, t_hi):
        q0 = t // S * GROUP2
        sr = t % S
        nv = 2 if q0 + 16 < NQ and GROUP2 == 32 else 1
        for v in range(nv):
            for h in range(2):
                qm[v, h] = 0
                for i in range(4):
                    rm[v, i, h] = 0
                for w in range(3):
                    cm[v, w, h] = 0
            for k in range(4):
                q = q0 + 16 * v + 4 * k
                nk, rk, tk = q // NT, q % NT // T, q % T
                po[v, k] = nk * C * HW + (2 * rk - 1) * W + 2 * tk - 2
                oo[v, k] = nk * O * HW + 2 * rk * W + 2 * tk
                h, sh = k // 2, 8 * (k % 2)
                if q < NQ:
                    qm[v, h] |= 0xFF << sh
                    for i in range(4):
                        if 0 <= 2 * rk - 1 + i < H:
                            rm[v, i, h] |= 0xFF << sh
                    for w in range(3):
                        cm[v, w, h] |= _cmask(2 * tk - 2 + 2 * w, 8, W) << sh
        # the input transform: V[p, c, 32 tiles] at vb[(p C + c) 32:]
        for v in range(nv):
            p0, p1, p2, p3 = po[v, 0], po[v, 1], po[v, 2], po[v, 3]
            r0u, r1u, r2u, r3u = rm[v, 0, 0], rm[v, 1, 0], rm[v, 2, 0], rm[v, 3, 0]
            r0v, r1v, r2v, r3v = rm[v, 0, 1], rm[v, 1, 1], rm[v, 2, 1], rm[v, 3, 1]
            c0u, c1u, c2u = cm[v, 0, 0], cm[v, 1, 0], cm[v, 2, 0]
            c0v, c1v, c2v = cm[v, 0, 1], cm[v, 1, 1], cm[v, 2, 1]
            for c in range(C):
                base = c * HW
                e00, e01, e02, e03 = HROW(xf, base + p0, base + p1, base + p2, base + p3, r0u, r0v,
                                          c0u, c1u, c2u, c0v, c1v, c2v)
                base += W
                e10, e11, e12, e13 = HROW(xf, base + p0, base + p1, base + p2, base + p3, r1u, r1v,
                                          c0u, c1u, c2u, c0v, c1v, c2v)
                base += W
                e20, e21, e22, e23 = HROW(xf, base + p0, base + p1, base + p2, base + p3, r2u, r2v,
                                          c0u, c1u, c2u, c0v, c1v, c2v)
                base += W
                e30, e31, e32, e33 = HROW(xf, base + p0, base + p1, base + p2, base + p3, r3u, r3v,
                                          c0u, c1u, c2u, c0v, c1v, c2v)
                i0 = c * GROUP2 + 16 * v
                step = 4 * C * GROUP2
                _col4(vb, i0, step, e00, e10, e20, e30)
                _col4(vb, i0 + C * GROUP2, step, e01, e11, e21, e31)
                _col4(vb, i0 + 2 * C * GROUP2, step, e02, e12, e22, e32)
                _col4(vb, i0 + 3 * C * GROUP2, step, e03, e13, e23, e33)
        # per block of 8 output channels: the 16 GEMMs, then the output transform
        for ob in range(sr * OB // S, (sr + 1) * OB // S):
            _products(uf, vb, mb, ob, OB, C, 16, GROUP2, nv)
            # A^T m A per channel, written as NCHW rows (inline here: the same code in an inlined
            # function that took the arrays kept Numba's reference counting calls in the loop,
            # and LLVM spilled every vector around them)
            for v in range(nv):
                o0, o1, o2, o3 = oo[v, 0], oo[v, 1], oo[v, 2], oo[v, 3]
                mu, mv = qm[v, 0], qm[v, 1]
                for i in range(8):
                    o = ob * 8 + i
                    bias = wfsplat(b[o])
                    j = i * GROUP2 + 16 * v
                    f00, f10 = _out_col(mb, j, 32 * GROUP2)          # place (k, l) at (4 k + l) 8 GROUP2
                    f01, f11 = _out_col(mb, j + 8 * GROUP2, 32 * GROUP2)
                    f02, f12 = _out_col(mb, j + 16 * GROUP2, 32 * GROUP2)
                    f03, f13 = _out_col(mb, j + 24 * GROUP2, 32 * GROUP2)
                    y00 = wfadd(wfadd(wfadd(f00, f01), f02), bias)
                    y01 = wfadd(wfsub(wfsub(f01, f02), f03), bias)
                    y10 = wfadd(wfadd(wfadd(f10, f11), f12), bias)
                    y11 = wfadd(wfsub(wfsub(f11, f12), f13), bias)
                    base = o * HW
                    l0 = wfzip_lo(y00, y01)
                    l1 = wfzip_lo(y10, y11)
                    h0 = wfzip_hi(y00, y01)
                    h1 = wfzip_hi(y10, y11)
                    if res:
                        l0 = wfadd(l0, LOAD16(rf, base + o0, base + o1, mu))
                        l1 = wfadd(l1, LOAD16(rf, base + o0 + W, base + o1 + W, mu))
                        h0 = wfadd(h0, LOAD16(rf, base + o2, base + o3, mv))
                        h1 = wfadd(h1, LOAD16(rf, base + o2 + W, base + o3 + W, mv))
                    if relu:
                        l0 = wfmax(l0, zero)
                        l1 = wfmax(l1, zero)
                        h0 = wfmax(h0, zero)
                        h1 = wfmax(h1, zero)
                    STORE16(of, base + o0, base + o1, l0, mu)
                    STORE16(of, base + o0 + W, base + o1 + W, l1, mu)
                    STORE16(of, base + o2, base + o3, h0, mv)
                    STORE16(of, base + o2 + W, base + o3 + W, h1, mv)


GROUP2 = GROUP        # 16 measured the same for F(2x2, 3x3)
HROW = _hrow
_WINO = {16: chunked(_wino_py, "_16", fastmath=True),
         8: chunked(_wino_py, "_8", {"LOAD16": wfload2_mask, "STORE16": wfstore2_mask, "HROW": _hrow2},
                    fastmath=True)}


# ---------------------------------------------------------------- F(4x4, 3x3)
# Lavin & Gray's 6 x 6 transforms (section 4.2): 36 GEMMs for 16 outputs a tile (2.25 multiply-adds
# an output and input channel against the direct 9, F(2x2, 3x3)'s 4), for images whose width is a
# multiple of 16 and height of 4.  A vector's 16 tiles are 4 pieces of 4 tiles (16 columns of one
# tile row); a piece's 6 column phases (columns 4t - 1 + j) come from two masked 16-value loads
# per input row and a 4 x 4 transpose of 4-lane blocks across the 4 pieces (wfshuffle).

_G4 = np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]])


def pack_weight4(w):
    """U = G g G^T (6 x 6 places) for every (o, c), laid out (36, O / 8, C, 8) as pack_weight's."""
    o, c = w.shape[:2]
    u = (w.reshape(o * c, 9).astype(np.float64) @ np.kron(_G4, _G4).T).reshape(o, c, 36)
    u = u.transpose(2, 1, 0).reshape(36, c, o // 8, 8).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(u, dtype=np.float32)


def _blocks(picks):
    # a wfshuffle pattern of 4-lane blocks: (source 0 = u or 1 = v, its block) for each output block
    return wfshuffle([16 * src + 4 * blk + l for src, blk in picks for l in range(4)])


_S_EVEN = _blocks([(0, 0), (1, 0), (0, 2), (1, 2)])
_S_ODD = _blocks([(0, 1), (1, 1), (0, 3), (1, 3)])
_S_LO = _blocks([(0, 0), (0, 1), (1, 0), (1, 1)])
_S_HI = _blocks([(0, 2), (0, 3), (1, 2), (1, 3)])
# a piece's 32 columns from 4t0 - 1 (u then v): block j = its 4 tiles' column 4t - 1 + j (j = 0..3);
# then j = 4, 5, 4, 5; and the inverse for outputs, phase-major -> tile-major (lane 4t + j <- 4j + t)
_PH03 = wfshuffle([j + 4 * t for j in range(4) for t in range(4)])
_PH45 = wfshuffle([j + 4 * t for j in (4, 5, 4, 5) for t in range(4)])
_TILES = wfshuffle([4 * (k % 4) + k // 4 for k in range(16)])


@njit(cache=True, fastmath=True, inline="always")
def _btrans(p0, p1, p2, p3):
    # 4 x 4 transpose of 4-lane blocks: out j = (p0 block j, p1 block j, p2 block j, p3 block j)
    t0 = _S_EVEN(p0, p1)
    t1 = _S_ODD(p0, p1)
    t2 = _S_EVEN(p2, p3)
    t3 = _S_ODD(p2, p3)
    return _S_LO(t0, t2), _S_LO(t1, t3), _S_HI(t0, t2), _S_HI(t1, t3)


@njit(cache=True, fastmath=True, inline="always")
def _bt6(d0, d1, d2, d3, d4, d5):
    # B^T d for F(4, 3): 14 adds and FMAs
    t0 = wfsub(d4, d2)
    c = wfsub(d3, d1)
    v0 = wfma(wfsplat(np.float32(4.0)), d0, wfma(wfsplat(np.float32(-5.0)), d2, d4))
    v1 = wfma(wfsplat(np.float32(-4.0)), wfadd(d1, d2), wfadd(d3, d4))
    v2 = wfma(wfsplat(np.float32(4.0)), wfsub(d1, d2), wfsub(d4, d3))
    v3 = wfma(wfsplat(np.float32(2.0)), c, t0)
    v4 = wfma(wfsplat(np.float32(-2.0)), c, t0)
    v5 = wfma(wfsplat(np.float32(4.0)), d1, wfma(wfsplat(np.float32(-5.0)), d3, d5))
    return v0, v1, v2, v3, v4, v5


@njit(cache=True, fastmath=True, inline="always")
def _at6(m0, m1, m2, m3, m4, m5):
    # A^T m for F(4, 3)
    a = wfadd(m1, m2)
    b = wfsub(m1, m2)
    c = wfadd(m3, m4)
    d = wfsub(m3, m4)
    return (wfadd(wfadd(m0, a), c), wfma(wfsplat(np.float32(2.0)), d, b), wfma(wfsplat(np.float32(4.0)), c, a),
            wfadd(wfma(wfsplat(np.float32(8.0)), d, b), m5))


def _hrow4_py(xf, i0, i1, i2, i3, dv, a0, b0, a1, b1, a2, b2, a3, b3):
    # one input row of 16 tiles (piece k: 16 values from flat ik under mask ak and 16 from ik + dv
    # under bk) transformed along it: B^T of the 6 column phases.  PH03, PH45: where a piece's phases
    # lie in its two loads (bound per variant: 32 columns of a row; or, 8 wide, two rows 4 apart)
    u = wfload_mask(xf, i0, a0)
    v = wfload_mask(xf, i0 + dv, b0)
    q0, r0 = PH03(u, v), PH45(u, v)
    u = wfload_mask(xf, i1, a1)
    v = wfload_mask(xf, i1 + dv, b1)
    q1, r1 = PH03(u, v), PH45(u, v)
    u = wfload_mask(xf, i2, a2)
    v = wfload_mask(xf, i2 + dv, b2)
    q2, r2 = PH03(u, v), PH45(u, v)
    u = wfload_mask(xf, i3, a3)
    v = wfload_mask(xf, i3 + dv, b3)
    q3, r3 = PH03(u, v), PH45(u, v)
    d0, d1, d2, d3 = _btrans(q0, q1, q2, q3)
    d4 = _S_LO(_S_EVEN(r0, r1), _S_EVEN(r2, r3))
    d5 = _S_LO(_S_ODD(r0, r1), _S_ODD(r2, r3))
    return _bt6(d0, d1, d2, d3, d4, d5)


# 8-wide images: a piece is 2 x 2 tiles (two tile rows); its loads are one input row from column
# -1 and the row 4 below, and a phase block takes lanes j, j + 4 of each
_PH03N = wfshuffle([i for j in range(4) for i in (j, j + 4, 16 + j, 20 + j)])
_PH45N = wfshuffle([i for j in (4, 5, 4, 5) for i in (j, j + 4, 16 + j, 20 + j)])
PH03, PH45 = _PH03, _PH45
_hrow4 = variant(_hrow4_py, "_wino_hrow4", fastmath=True, inline="always")
_hrow4n = variant(_hrow4_py, "_wino_hrow4n", {"PH03": _PH03N, "PH45": _PH45N}, fastmath=True, inline="always")


def _wino4_py(t_lo, t_hi, xf, u, b, relu, geo, r, res, out):
    # F(4x4, 3x3) as _wino_py (same arguments and tasks; u: pack_weight4's (36, O / 8, C, 8)); tiles
    # 4 x 4 (H % 4 == 0, W % 16 == 0; or, NARROW, W == 8 and H % 8 == 0: pieces of 2 x 2 tiles).
    # The input transform runs along each input row (HROW4, into es), then down the columns into vb;
    # the output transform down the columns (into ys), then along the rows, back to tile-major
    # pieces (16 columns of a row, or 8 of two rows 4 apart) stored (masked) into NCHW
    C, H, W, O, S, T, NT, OB, HW, NQ = _geometry(geo, xf, 4)
    of = out.reshape(-1)
    rf = r.reshape(-1)
    uf = u.reshape(-1)
    vb = np.empty(36 * C * GROUP4, np.float32)
    mb = np.empty(36 * 8 * GROUP4, np.float32)
    es = np.empty(36 * 16, np.float32)
    ys = np.empty(24 * 16, np.float32)
    # per vector and piece: flat offsets of (image, channel 0, row 4r - 1, column 4t - 1) and of
    # the output's (image, channel 0, 4r, 4t); column masks of its two loads; their masks for input
    # row i (rows outside the image off); validity
    po = np.empty((2, 4), np.int64)
    oo = np.empty((2, 4), np.int64)
    ca = np.zeros((2, 4), np.int64)
    cb = np.zeros((2, 4), np.int64)
    lm = np.zeros((2, 6, 8), np.int64)
    qm = np.zeros((2, 4), np.int64)
    zero = wfzero()
    dv = 4 * W if NARROW else 16            # the second load of a piece: the row 4 below, or 16 on
    for t in range(t_lo, t_hi):
        q0 = t // S * GROUP4
        sr = t % S
        nv = 2 if q0 + 16 < NQ and GROUP4 == 32 else 1
        for v in range(nv):
            for k in range(4):
                q = q0 + 16 * v + 4 * k
                nk, rk, tk = q // NT, q % NT // T, q % T
                po[v, k] = nk * C * HW + (4 * rk - 1) * W + 4 * tk - 1
                oo[v, k] = nk * O * HW + 4 * rk * W + 4 * tk
                ok = q < NQ
                qm[v, k] = 0xFFFF if ok else 0
                ca[v, k] = _cmask(4 * tk - 1, 16, W)
                # only columns up to 4 t + 16 used; 8 wide, the second load is the row 4 below
                cb[v, k] = ca[v, k] if NARROW else _cmask(4 * tk + 15, 16, min(W, 4 * tk + 17))
                for i in range(6):
                    rm = 0xFFFF if ok and 0 <= 4 * rk - 1 + i < H else 0
                    lm[v, i, 2 * k] = ca[v, k] & rm
                    lm[v, i, 2 * k + 1] = cb[v, k] & (rm if not NARROW else
                                                      (0xFFFF if ok and 4 * rk + 3 + i < H else 0))
        for v in range(nv):
            p0, p1, p2, p3 = po[v, 0], po[v, 1], po[v, 2], po[v, 3]
            for c in range(C):
                for i in range(6):
                    base = c * HW + i * W
                    e0, e1, e2, e3, e4, e5 = HROW4(
                        xf, base + p0, base + p1, base + p2, base + p3, dv, lm[v, i, 0], lm[v, i, 1], lm[v, i, 2],
                        lm[v, i, 3], lm[v, i, 4], lm[v, i, 5], lm[v, i, 6], lm[v, i, 7])
                    j = 96 * i
                    wfstore(es, j, e0)
                    wfstore(es, j + 16, e1)
                    wfstore(es, j + 32, e2)
                    wfstore(es, j + 48, e3)
                    wfstore(es, j + 64, e4)
                    wfstore(es, j + 80, e5)
                for col in range(6):
                    v0, v1, v2, v3, v4, v5 = _bt6(wfload(es, 16 * col), wfload(es, 96 + 16 * col),
                                                  wfload(es, 192 + 16 * col), wfload(es, 288 + 16 * col),
                                                  wfload(es, 384 + 16 * col), wfload(es, 480 + 16 * col))
                    j = (col * C + c) * GROUP4 + 16 * v          # place (k, col): (6 k + col) C GROUP4
                    step = 6 * C * GROUP4
                    wfstore(vb, j, v0)
                    wfstore(vb, j + step, v1)
                    wfstore(vb, j + 2 * step, v2)
                    wfstore(vb, j + 3 * step, v3)
                    wfstore(vb, j + 4 * step, v4)
                    wfstore(vb, j + 5 * step, v5)
        for ob in range(sr * OB // S, (sr + 1) * OB // S):
            _products(uf, vb, mb, ob, OB, C, 36, GROUP4, nv)
            for v in range(nv):
                for i in range(8):
                    o = ob * 8 + i
                    # the bias at place (1, 1): A^T's column 1 is all ones, so it reaches every output
                    bias = wfsplat(b[o])
                    for col in range(6):
                        j = (col * 8 + i) * GROUP4 + 16 * v          # place (k, col) at (6 k + col) 8 GROUP4
                        step = 48 * GROUP4
                        m1 = wfload(mb, j + step)
                        if col == 1:
                            m1 = wfadd(m1, bias)
                        y0, y1, y2, y3 = _at6(wfload(mb, j), m1, wfload(mb, j + 2 * step), wfload(mb, j + 3 * step),
                                              wfload(mb, j + 4 * step), wfload(mb, j + 5 * step))
                        wfstore(ys, 16 * col, y0)
                        wfstore(ys, 96 + 16 * col, y1)
                        wfstore(ys, 192 + 16 * col, y2)
                        wfstore(ys, 288 + 16 * col, y3)
                    for a in range(4):
                        j = 96 * a
                        z0, z1, z2, z3 = _at6(wfload(ys, j), wfload(ys, j + 16), wfload(ys, j + 32),
                                              wfload(ys, j + 48), wfload(ys, j + 64), wfload(ys, j + 80))
                        w0, w1, w2, w3 = _btrans(z0, z1, z2, z3)
                        base = o * HW + a * W
                        g0 = _TILES(w0, w0)
                        g1 = _TILES(w1, w1)
                        g2 = _TILES(w2, w2)
                        g3 = _TILES(w3, w3)
                        if res:
                            g0 = wfadd(g0, LOAD16(rf, base + oo[v, 0], base + oo[v, 0] + dv, qm[v, 0]))
                            g1 = wfadd(g1, LOAD16(rf, base + oo[v, 1], base + oo[v, 1] + dv, qm[v, 1]))
                            g2 = wfadd(g2, LOAD16(rf, base + oo[v, 2], base + oo[v, 2] + dv, qm[v, 2]))
                            g3 = wfadd(g3, LOAD16(rf, base + oo[v, 3], base + oo[v, 3] + dv, qm[v, 3]))
                        if relu:
                            g0 = wfmax(g0, zero)
                            g1 = wfmax(g1, zero)
                            g2 = wfmax(g2, zero)
                            g3 = wfmax(g3, zero)
                        STORE16(of, base + oo[v, 0], base + oo[v, 0] + dv, g0, qm[v, 0])
                        STORE16(of, base + oo[v, 1], base + oo[v, 1] + dv, g1, qm[v, 1])
                        STORE16(of, base + oo[v, 2], base + oo[v, 2] + dv, g2, qm[v, 2])
                        STORE16(of, base + oo[v, 3], base + oo[v, 3] + dv, g3, qm[v, 3])


# tiles a task for F(4x4, 3x3): 16 (one vector) measured faster than 32 (b32 16->16 at 32x32 427 ->
# 369 us, 32->32 at 16x16 307 -> 276): a 32-tile group's V and products (36 places each) leave L1
GROUP4 = 16
NARROW = False
HROW4 = _hrow4
_WINO4 = chunked(_wino4_py, fastmath=True)
_WINO4N = chunked(_wino4_py, "_narrow", {"NARROW": True, "HROW4": _hrow4n, "LOAD16": wfload2_mask,
                                         "STORE16": wfstore2_mask}, fastmath=True)


@functools.lru_cache(maxsize=256)
def _plan(xshape, wshape, f4=None):
    """(geo, task count, parallel or not, the kernel, its weight packing) for these shapes: F(4x4,
    3x3) where it fits the image (_f4_fits) and the batch has at least 16 of its tiles (unless f4
    says), else F(2x2, 3x3)."""
    n, c, h, w = xshape
    o = wshape[0]
    # fewer than a vector of 4 x 4 tiles leaves F(4x4)'s lanes idle: 8 x 8 64-channel images at batch
    # 2 ran 59 us against F(2x2)'s 49 (batch 1: 39 vs 19), at batch 4 70 vs 95
    f4 = _f4_fits(h, w) and n * (h // 4) * (w // 4) >= 16 if f4 is None else f4
    tile = 4 if f4 else 2
    groups = -(-n * (h // tile) * (w // tile) // (GROUP4 if f4 else GROUP2))
    # split each group's output channels when the groups alone leave a thread idle (a range redoes
    # the group's input transform: ResNet-8's 64-channel 8 x 8 layer at batch 1 is half a group)
    split = max(1, min(o // 8, -(-_THREADS // groups)))
    par = n * o * h * w * c * 9 >= PAR_MACS
    kern, pack = ((_WINO4 if w % 16 == 0 else _WINO4N), pack_weight4) if f4 else \
        (_WINO[16 if w % 16 == 0 else 8], pack_weight)
    return _geo_array((c, h, w, o, groups, split)), groups * split, par, kern, pack


_THREADS = max(2, config.NUMBA_NUM_THREADS)


def _f4_fits(h, w):
    """Whether F(4x4, 3x3) covers an h x w image: rows of 16-multiple width in tile rows of 4, or 8
    wide in pairs of tile rows."""
    return (h % 4 == 0 and w % 16 == 0) or (w == 8 and h % 8 == 0)


def prepare(out, x, w, b, relu, res):
    """`call(out, x, r)` for a convolution that `applies`: the packed weight, plan and task count
    once (w and b constant)."""
    geo, nt, par, kern, pack = _plan(x.shape, w.shape)
    u = derived(w, "winograd_" + pack.__name__, pack)
    bb = filled(w.shape[0], 0.0) if b is None else b
    # the compiled entry bound once (r is shaped and typed as out)
    go = kern.bound(x.reshape(-1), u, bb, relu, geo, out, res, out) if par else kern.serial

    def call(out, x, r):
        go(nt, x.reshape(-1), u, bb, relu, geo, r, res, out)
    return call


def run(out, x, w, b, relu, r=None, par=None, f4=None):
    """out = conv2d(x, w, padding 1) + b (ReLU when asked; + r before it, as conv_panels.run_rows);
    f4: F(4x4, 3x3) or F(2x2, 3x3) forced (it must fit the shapes), else _plan's choice."""
    if f4 and not _f4_fits(x.shape[2], x.shape[3]):
        raise ValueError(f"winograd: F(4x4, 3x3) needs a height a multiple of 4 and a width of 16 (or 8 wide, "
                         f"a height a multiple of 8), got {x.shape}")
    geo, nt, par_, kern, pack = _plan(x.shape, w.shape, f4)
    go = kern.parallel if (par_ if par is None else par) else kern.serial
    go(nt, np.ascontiguousarray(x, dtype=np.float32).reshape(-1), derived(w, "winograd_" + pack.__name__, pack),
       filled(w.shape[0], 0.0) if b is None else b.astype(np.float32, copy=False), relu, geo, *_residual(out, r, relu))
