"""3x3 stride-1 convolutions by Winograd's minimal filtering F(2x2, 3x3) (AVX-512, float32, NCHW).

A 2x2 block of output pixels (a tile) comes from a 4x4 block of input; with
Lavin & Gray's matrices ("Fast Algorithms for Convolutional Neural Networks",
2015, section 4.1)

    B^T = [1  0 -1  0]     G = [ 1    0    0 ]     A^T = [1  1  1  0]
          [0  1  1  0]         [1/2  1/2  1/2]           [0  1 -1 -1]
          [0 -1  1  0]         [1/2 -1/2  1/2]
          [0  1  0 -1]         [ 0    0    1 ]

a tile's output is A^T [sum_c (G g_oc G^T) * (B^T d_c B)] A: the 9 C O
multiply-adds a pixel of a direct convolution become 16 C O for 4 pixels
(2.25x fewer), as 16 independent GEMMs (one per place p of the 4x4
transformed tile) between the transformed weight U[p] (O x C, packed at
prepare time by pack_weight) and the transformed input V[p] (C x tiles).
The input and output transforms only add and subtract.

Layout: tiles are numbered over an image's (H/2) x (W/2) grid, row-major,
and 16 of them fill a vector lane by lane.  With W a multiple of 16 the
tiles of each 8-lane half lie in one tile row, so a half's input row is one
16-value load per window (lane masks zero the padding and the rows above
and below the image; masked lanes are not read) and its column phases are
wfevens / wfodds of them; the two output column phases are put back with
wfzip_lo / wfzip_hi and stored straight into NCHW.  A task is a group of 32
tiles of one image: their V (16 x C x 32) is made once and every block of 8
output channels multiplies it in 16 accumulators (8 channels x 2 vectors of
tiles), then transforms its 16 x 8 x 32 products back while they are in L1.

Numerics: the transforms only add, subtract and halve, so the error stays
that of a float32 sum (tests hold it to the direct kernels within 1e-5
relative).  Only used where it measured faster than the row kernels (conv.py).
"""
import functools

import numpy as np

from edgetorch._native import simd
from edgetorch._native.jit import variant
from edgetorch._native.simd import (wfadd, wfevens, wfload, wfload2_mask, wfload_mask, wfma, wfmax, wfodds, wfsplat,
                                    wfstore, wfstore2_mask, wfstore_mask, wfsub, wfzero, wfzip_hi, wfzip_lo)
from numba import config, njit

from ._jit import chunked
from ._derived import derived, filled
from .conv_panels import PAR_MACS, _geo_array, _residual

GROUP = 32          # tiles a task (two 16-lane vectors)

_G = np.array([[1.0, 0.0, 0.0], [0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.0, 0.0, 1.0]])


def applies(xshape, wshape, oshape, stride, padding, dilation, groups):
    """Whether F(2x2, 3x3) runs this float32 convolution: AVX-512, 3x3, stride 1, padding 1, no
    dilation, groups 1, H even, W a multiple of 8, output channels a multiple of 8 and the same
    size as the input."""
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
    u = np.einsum("ki,ocij,lj->klco", _G, w.astype(np.float64), _G)      # (4, 4, C, O)
    u = u.reshape(16, c, o // 8, 8).transpose(0, 2, 1, 3)
    return np.ascontiguousarray(u, dtype=np.float32)


@njit(cache=True, inline="always")
def _cmask8(s, W):
    # lanes l of an 8-value piece from column s that lie inside a row of W: 0 <= s + l < W
    lo = max(0, -s)
    hi = min(8, W - s)
    if hi <= lo:
        return 0
    return ((1 << hi) - 1) ^ ((1 << lo) - 1)


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
def _gemm8x32(u, ui, vb, vi, C):
    # 8 output channels (broadcasts u[ui + 8 c + i]) x 32 tiles (vb[vi + 32 c:]) summed over C
    a00 = a01 = a10 = a11 = a20 = a21 = a30 = a31 = wfzero()
    a40 = a41 = a50 = a51 = a60 = a61 = a70 = a71 = wfzero()
    for c in range(C):
        v0 = wfload(vb, vi + 32 * c)
        v1 = wfload(vb, vi + 32 * c + 16)
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
def _gemm8x16(u, ui, vb, vi, C):
    # _gemm8x32 for a group's lone vector of 16 tiles (8 FMAs a step still outrun its 9 loads)
    a0 = a1 = a2 = a3 = a4 = a5 = a6 = a7 = wfzero()
    for c in range(C):
        v0 = wfload(vb, vi + 32 * c)
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
def _out_col(mb, i):
    # A^T down a column of the product tile (places 4 k + l, k = 0..3, 8 x 32 apart from flat i)
    m0 = wfload(mb, i)
    m1 = wfload(mb, i + 1024)
    m2 = wfload(mb, i + 2048)
    m3 = wfload(mb, i + 3072)
    return wfadd(wfadd(m0, m1), m2), wfsub(wfsub(m1, m2), m3)


def _wino_py(t_lo, t_hi, xf, u, b, relu, geo, r, res, out):
    # xf: the input (N, C, H, W) flat; u: pack_weight's (16, O / 8, C, 8); b (O,); out (N, O, H, W);
    # geo = (C, H, W, O, G, S): G groups of 32 tiles (numbered over the batch, image-major: a group
    # may span images, the last may hold fewer), each split over S ranges of output-channel blocks
    # (small batches: more tasks than threads).  Task t: group t // S, range t % S.  res: out = relu(conv + b + r) (r shaped as
    # out; relu then set), else r is unread.  LOAD16, STORE16, HROW: bound per variant (16-lane
    # rows, W % 16 == 0, or 8-lane pieces, W % 8 == 0).
    C, H, W, O, G, S = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5]
    T = W // 2
    NT = (H // 2) * T
    OB = O // 8
    HW = H * W
    NQ = xf.shape[0] // (C * HW) * NT
    of = out.reshape(-1)
    rf = r.reshape(-1)
    uf = u.reshape(-1)
    vb = np.empty(16 * C * GROUP, np.float32)
    mb = np.empty(16 * 8 * GROUP, np.float32)
    # per vector of 16 tiles: its quarters' flat offsets of (image, channel 0, row 2r - 1, column
    # 2t - 2) and output offsets of (image, channel 0, 2r, 2t); the mask bits of its rows 2r - 1 + i inside the image (i = 0..3) and
    # its windows' columns (w = 0..2), pieces 0-1 (u) and 2-3 (v); its quarters that hold tiles
    po = np.empty((2, 4), np.int64)
    oo = np.empty((2, 4), np.int64)
    rm = np.zeros((2, 4, 2), np.int64)
    cm = np.zeros((2, 3, 2), np.int64)
    qm = np.zeros((2, 2), np.int64)
    zero = wfzero()
    for t in range(t_lo, t_hi):
        q0 = t // S * GROUP
        sr = t % S
        nv = 2 if q0 + 16 < NQ else 1
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
                        cm[v, w, h] |= _cmask8(2 * tk - 2 + 2 * w, W) << sh
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
                i0 = c * GROUP + 16 * v
                step = 4 * C * GROUP
                _col4(vb, i0, step, e00, e10, e20, e30)
                _col4(vb, i0 + C * GROUP, step, e01, e11, e21, e31)
                _col4(vb, i0 + 2 * C * GROUP, step, e02, e12, e22, e32)
                _col4(vb, i0 + 3 * C * GROUP, step, e03, e13, e23, e33)
        # per block of 8 output channels: the 16 GEMMs, then the output transform
        for ob in range(sr * OB // S, (sr + 1) * OB // S):
            for p in range(16 if nv == 2 else 0):
                a00, a01, a10, a11, a20, a21, a30, a31, a40, a41, a50, a51, a60, a61, a70, a71 = \
                    _gemm8x32(uf, (p * OB + ob) * C * 8, vb, p * C * GROUP, C)
                i0 = p * 8 * GROUP
                _put2(mb, i0, a00, a01)
                _put2(mb, i0 + GROUP, a10, a11)
                _put2(mb, i0 + 2 * GROUP, a20, a21)
                _put2(mb, i0 + 3 * GROUP, a30, a31)
                _put2(mb, i0 + 4 * GROUP, a40, a41)
                _put2(mb, i0 + 5 * GROUP, a50, a51)
                _put2(mb, i0 + 6 * GROUP, a60, a61)
                _put2(mb, i0 + 7 * GROUP, a70, a71)
            for p in range(16 if nv == 1 else 0):
                a0, a1, a2, a3, a4, a5, a6, a7 = _gemm8x16(uf, (p * OB + ob) * C * 8, vb, p * C * GROUP, C)
                i0 = p * 8 * GROUP
                wfstore(mb, i0, a0)
                wfstore(mb, i0 + GROUP, a1)
                wfstore(mb, i0 + 2 * GROUP, a2)
                wfstore(mb, i0 + 3 * GROUP, a3)
                wfstore(mb, i0 + 4 * GROUP, a4)
                wfstore(mb, i0 + 5 * GROUP, a5)
                wfstore(mb, i0 + 6 * GROUP, a6)
                wfstore(mb, i0 + 7 * GROUP, a7)
            # A^T m A per channel, written as NCHW rows (inline here: the same code in an inlined
            # function that took the arrays kept Numba's reference counting calls in the loop,
            # and LLVM spilled every vector around them)
            for v in range(nv):
                o0, o1, o2, o3 = oo[v, 0], oo[v, 1], oo[v, 2], oo[v, 3]
                mu, mv = qm[v, 0], qm[v, 1]
                for i in range(8):
                    o = ob * 8 + i
                    bias = wfsplat(b[o])
                    j = i * GROUP + 16 * v
                    f00, f10 = _out_col(mb, j)
                    f01, f11 = _out_col(mb, j + 256)
                    f02, f12 = _out_col(mb, j + 512)
                    f03, f13 = _out_col(mb, j + 768)
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


HROW = _hrow
_WINO = {16: chunked(_wino_py, "_16", fastmath=True),
         8: chunked(_wino_py, "_8", {"LOAD16": wfload2_mask, "STORE16": wfstore2_mask, "HROW": _hrow2},
                    fastmath=True)}


@functools.lru_cache(maxsize=256)
def _plan(xshape, wshape):
    """(geo, task count, parallel or not, the variant) for these shapes."""
    n, c, h, w = xshape
    o = wshape[0]
    groups = -(-n * (h // 2) * (w // 2) // GROUP)
    # split each group's output channels when the groups alone leave a thread idle (a range redoes
    # the group's input transform: ResNet-8's 64-channel 8 x 8 layer at batch 1 is half a group)
    split = max(1, min(o // 8, -(-_THREADS // groups)))
    par = n * o * h * w * c * 9 >= PAR_MACS
    return _geo_array((c, h, w, o, groups, split)), groups * split, par, _WINO[16 if w % 16 == 0 else 8]


_THREADS = max(2, config.NUMBA_NUM_THREADS)


def prepare(out, x, w, b, relu, res):
    """`call(out, x, r)` for a convolution that `applies`: the packed weight, plan and task count
    once (w and b constant)."""
    geo, nt, par, kern = _plan(x.shape, w.shape)
    go = kern.parallel if par else kern.serial
    u = derived(w, "winograd_f2", pack_weight)
    bb = filled(w.shape[0], 0.0) if b is None else b

    def call(out, x, r):
        go(nt, x.reshape(-1), u, bb, relu, geo, r, res, out)
    return call


def run(out, x, w, b, relu, r=None, par=None):
    """out = conv2d(x, w, padding 1) + b (ReLU when asked; + r before it, as conv_panels.run_rows)."""
    geo, nt, par_, kern = _plan(x.shape, w.shape)
    go = kern.parallel if (par_ if par is None else par) else kern.serial
    go(nt, np.ascontiguousarray(x, dtype=np.float32).reshape(-1), derived(w, "winograd_f2", pack_weight),
       filled(w.shape[0], 0.0) if b is None else b.astype(np.float32, copy=False), relu, geo, *_residual(out, r, relu))
