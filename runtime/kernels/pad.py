"""Zero padding (any fill value) and subsampling of NCHW planes, in one pass over the output.

The padded copy can also split its columns into S phases, (N, C, S, Hp, ceil(Wp / S)) with padded
column u at [..., u % S, :, u // S]: a stride-S convolution then reads each kernel tap's pixels of
an output row contiguously (conv_panels.py).  Rows are copied with flat offsets and, for float32,
explicit 8-lane vectors (simd.py): LLVM's own vectorization of the row loop spent ~30 ns a row in
run-time alias checks and remainders (a 32 x 16 x 34 x 34 padding took 575 us serial, this ~130).
"""
import numpy as np

from edgetorch._native.jit import variant
from edgetorch._native import simd
from edgetorch._native.simd import vfload, vfload_s2, vfstore, wfevens, wfload, wfodds, wfstore

from ._jit import chunked


def _copy_row_py(of, o, xf, i, n):
    for q in range(n):
        of[o + q] = xf[i + q]


def _vcopy_row_py(of, o, xf, i, n):
    # float32: 8-lane copies (LLVM's own vectorization of the loop above cost ~30 ns a row in runtime
    # alias checks and remainders: a 32 x 16 x 34 x 34 padding took 575 us serial, this 130)
    n8 = n // 8 * 8
    for q in range(0, n8, 8):
        vfstore(of, o + q, vfload(xf, i + q))
    for q in range(n8, n):
        of[o + q] = xf[i + q]


def _copy_strided_py(of, o, xf, i, n, S):
    # places o.. of a phase from every S-th value of xf from i
    for u in range(n):
        of[o + u] = xf[i + u * S]


def _vcopy_strided_py(of, o, xf, i, n, S):
    # float32 at S = 2: 8 places a step from one 16-value load (its last value may lie in the next
    # row, unused; never past the array's end)
    u = 0
    if S == 2:
        while u + 8 <= n and i + 2 * u + 16 <= xf.shape[0]:
            vfstore(of, o + u, vfload_s2(xf, i + 2 * u))
            u += 8
    for v in range(u, n):
        of[o + v] = xf[i + v * S]


_copy_row = variant(_copy_row_py, "_copy_row", inline="always")
_vcopy_row = variant(_vcopy_row_py, "_vcopy_row", inline="always")
_copy_strided = variant(_copy_strided_py, "_copy_strided", inline="always")
_vcopy_strided = variant(_vcopy_strided_py, "_vcopy_strided", inline="always")


def _pad_plane_py(xf, xi, h, w, ph, pw, value, of, oi, S, Hp, Wh):
    # the (h, w) plane at xf[xi:] padded into the (S, Hp, Wh) phase planes at of[oi:]: each padded
    # element written once; COPY_ROW and COPY_STRIDED (bound per variant: vector copies for float32)
    # copy a row's interior at S = 1 and S > 1
    for s in range(S):
        u0 = min(Wh, (pw - s + S - 1) // S) if pw > s else 0   # places [u0, u1) hold columns of x
        u1 = max(u0, min(Wh, (w + pw - s + S - 1) // S))
        q0 = u0 * S + s - pw
        for r in range(Hp):
            o = oi + (s * Hp + r) * Wh
            y = r - ph
            if y < 0 or y >= h:
                for u in range(Wh):
                    of[o + u] = value
            else:
                for u in range(u0):
                    of[o + u] = value
                for u in range(u1, Wh):
                    of[o + u] = value
                i = xi + y * w + q0
                if S == 1:
                    COPY_ROW(of, o + u0, xf, i, u1 - u0)
                else:
                    COPY_STRIDED(of, o + u0, xf, i, u1 - u0, S)


COPY_ROW, COPY_STRIDED = _copy_row, _copy_strided
_F32_ROWS = {"COPY_ROW": _vcopy_row, "COPY_STRIDED": _vcopy_strided}
_pad_plane = variant(_pad_plane_py, "_pad_plane", None, inline="always")
pad_plane_f32 = variant(_pad_plane_py, "pad_plane_f32", _F32_ROWS, inline="always")   # conv_panels.py


def _split2_plane_py(xf, xi, h, w, ph, pw, value, of, oi, S, Hp, Wh):
    # pad_plane_f32 at S = 2 in one pass over each row with 16-lane vectors (AVX-512): 32 values of a
    # row, their even and odd lanes (wfevens / wfodds) stored to the two column phases.  x's column
    # 2 m lands in phase pw % 2 at place m + pw // 2, column 2 m + 1 in phase (pw + 1) % 2 at place
    # m + (pw + 1) // 2.  Other S: pad_plane_f32.
    if S != 2:
        pad_plane_f32(xf, xi, h, w, ph, pw, value, of, oi, S, Hp, Wh)
        return
    pe = pw % 2
    ae = pw // 2
    ne = min((w + 1) // 2, Wh - ae)
    po = 1 - pe
    ao = (pw + 1) // 2
    no = min(w // 2, Wh - ao)
    m32 = min(ne, no) // 16 * 16 if 2 * (min(ne, no) // 16 * 16) <= w else 0
    for r in range(Hp):
        y = r - ph
        oe = oi + (pe * Hp + r) * Wh
        oo = oi + (po * Hp + r) * Wh
        if y < 0 or y >= h:
            for u in range(Wh):
                of[oe + u] = value
                of[oo + u] = value
            continue
        for u in range(ae):
            of[oe + u] = value
        for u in range(ae + ne, Wh):
            of[oe + u] = value
        for u in range(ao):
            of[oo + u] = value
        for u in range(ao + no, Wh):
            of[oo + u] = value
        i = xi + y * w
        for m in range(0, m32, 16):
            lo = wfload(xf, i + 2 * m)
            hi = wfload(xf, i + 2 * m + 16)
            wfstore(of, oe + ae + m, wfevens(lo, hi))
            wfstore(of, oo + ao + m, wfodds(lo, hi))
        m8 = m32
        if m8 + 8 <= ne and m8 + 8 <= no and i + 2 * m8 + 17 <= xf.shape[0]:     # 8 more a phase
            vfstore(of, oe + ae + m8, vfload_s2(xf, i + 2 * m8))
            vfstore(of, oo + ao + m8, vfload_s2(xf, i + 2 * m8 + 1))
            m8 += 8
        for m in range(m8, ne):
            of[oe + ae + m] = xf[i + 2 * m]
        for m in range(m8, no):
            of[oo + ao + m] = xf[i + 2 * m + 1]


# conv_panels.py's 16-lane kernel pads its images with this (AVX-512 only)
split2_plane_f32 = variant(_split2_plane_py, "split2_plane_f32", inline="always")


def _pad_planes_py(t_lo, t_hi, x, ph, pw, value, out):
    # planes t_lo .. t_hi - 1 of the n c (jit.chunked); out (n, c, S, Hp, Wh) (S = 1: plain padding);
    # PAD_PLANE bound per variant
    n, c, h, w = x.shape
    S, Hp, Wh = out.shape[2], out.shape[3], out.shape[4]
    xf = x.reshape(-1)
    of = out.reshape(-1)
    for t in range(t_lo, t_hi):
        PAD_PLANE(xf, t * h * w, h, w, ph, pw, value, of, t * S * Hp * Wh, S, Hp, Wh)


PAD_PLANE = _pad_plane
_PAD = {False: chunked(_pad_planes_py),
        True: chunked(_pad_planes_py, "_f32", {"PAD_PLANE": split2_plane_f32 if simd.HAVE_AVX512 else pad_plane_f32})}


def _subsample_py(t_lo, t_hi, x, sh, sw, out):
    # out (n, c, oh, ow) = x[:, :, ::sh, ::sw] (cropped to out): a strided 1x1 convolution's input;
    # planes t_lo .. t_hi - 1 of the n c (jit.chunked)
    n, c, h, w = x.shape
    oh, ow = out.shape[2], out.shape[3]
    xf = x.reshape(-1)
    of = out.reshape(-1)
    for t in range(t_lo, t_hi):
        for y in range(oh):
            COPY_STRIDED(of, (t * oh + y) * ow, xf, (t * h + y * sh) * w, ow, sw)


_SUBSAMPLE = chunked(_subsample_py, "_f32", _F32_ROWS)


def _subsample(x, stride, oh, ow, out=None):
    """x[:, :, ::sh, ::sw][:, :, :oh, :ow] as a C-contiguous array (numpy's strided copy of
    ResNet-8's 32 x 16 x 32 x 32 shortcut input took ~100 us), written into `out` (a caller's
    scratch of that shape) when given, else a new array."""
    if x.dtype != np.float32 or not x.flags.c_contiguous:
        return np.ascontiguousarray(x[:, :, ::stride[0], ::stride[1]][:, :, :oh, :ow])
    if out is None or out.shape != x.shape[:2] + (oh, ow) or out.dtype != np.float32:
        out = np.empty(x.shape[:2] + (oh, ow), np.float32)
    (_SUBSAMPLE.parallel if out.size >= 1 << 16 else _SUBSAMPLE.serial)(
        x.shape[0] * x.shape[1], x, int(stride[0]), int(stride[1]), out)
    return out


def _pad2(x, p, value=0.0, phases=1, out=None):
    """x (N, C, H, W) padded by p on both sides of H and W (np.pad costs ~40 us of Python per call).
    phases=S > 1 splits the padded columns into S phases, (N, C, S, Hp, ceil(Wp / S)), column u at
    [..., u % S, :, u // S] (conv_panels.py reads a stride-S convolution's taps contiguously there);
    the places past a phase's last column hold `value`.  Written into `out` (a caller's scratch of
    that 5-d shape and x's dtype) when given, else a new array."""
    n, c, h, w = x.shape
    if p[0] == 0 and p[1] == 0 and phases == 1:
        return x
    hp, wp = h + 2 * p[0], w + 2 * p[1]
    shape = (n, c, phases, hp, -(-wp // phases))
    if out is None or out.shape != shape or out.dtype != x.dtype:
        out = np.empty(shape, dtype=x.dtype)
    if x.dtype in (np.float32, np.int8, np.uint8) and min(p) >= 0:
        k = _PAD[x.dtype == np.float32]
        (k.parallel if out.size >= 1 << 16 else k.serial)(
            n * c, np.ascontiguousarray(x), int(p[0]), int(p[1]), x.dtype.type(value), out)
    else:
        out[...] = value
        for s in range(phases):
            u0 = -(-(p[1] - s) // phases) if p[1] > s else 0         # first place whose column is in x
            cols = x[:, :, :, u0 * phases + s - p[1]::phases]
            out[:, :, s, p[0]:p[0] + h, u0:u0 + cols.shape[3]] = cols
    return out if phases > 1 else out.reshape(n, c, hp, wp)
