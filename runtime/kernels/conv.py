"""Convolution and pooling kernels over NCHW: direct Numba kernels for float32
3x3 convolutions at stride 1 and 2 (edgetorch/_native/conv.py, shared with the
frontend's training path), 1x1 convolutions as one GEMM per image, im2col (one
strided copy per kernel tap) and one BLAS matmul per group for the rest;
pooling over strided windows."""
import functools

import numpy as np
from numba import prange
from numpy.lib.stride_tricks import as_strided

from edgetorch._native import conv as direct
from edgetorch._native import simd

from . import conv_panels, pointwise, winograd
from .pad import _pad2, _subsample  # noqa: F401  (_pad2: the tests take it here)

from ._jit import chunked, twins
from .linalg import apply_activation
from ._derived import derived, filled
from .registry import group_preparer, kernel, preparer


def _plane_means_py(x, out):
    # out (P,) = the mean of each row of x (P, HW), summed in float64 (global average pooling);
    # fastmath lets LLVM split the sum into vector lanes (one dependent add a value ran ResNet-8's
    # 32 x 64 x 8 x 8 pool at 57 us, ORT 17): float64 partial sums, any order, well inside float32
    for t in prange(x.shape[0]):
        acc = 0.0
        for q in range(x.shape[1]):
            acc += x[t, q]
        out[t] = acc / x.shape[1]


_PLANE_MEANS = twins(_plane_means_py, fastmath=True)


def _check_window(x, out, k, stride, padding, dilation, what, slack=0):
    """Attributes must produce exactly the planned output (they size temporaries)."""
    if len(stride) != 2 or len(padding) != 2 or len(dilation) != 2 or min(stride) < 1 or min(dilation) < 1 \
            or min(padding) < 0 or x.ndim != 4 or out.ndim != 4:
        raise ValueError(f"{what}: bad stride {stride}, padding {padding} or dilation {dilation}")
    for i in range(2):
        if direct.out_size(x.shape[2 + i], k[i], stride[i], padding[i], dilation[i]) + slack < out.shape[2 + i] or \
                padding[i] > x.shape[2 + i] + k[i]:
            raise ValueError(f"{what}: attributes do not give the planned output {out.shape}")


@functools.lru_cache(maxsize=1024)
def _panel_plan(xshape, wshape, oshape, stride, padding, dilation, groups, bias_ok, wide):
    """How conv_panels.py runs this convolution, or None where it does not apply: (the stride to
    subsample the input by first or None, the stride then, padding, koff, geometry, fused padding,
    direct, chunk, parallel).  Shapes and attributes only, so it is worked out once per
    instruction's geometry (the checks and choices cost ~8 us a call at batch 1)."""
    n, c, h, wd = xshape
    o, cg, kh, kw = wshape
    if groups != 1 or tuple(dilation) != (1, 1) or cg != c or oshape[1] != o or oshape[0] != n or not bias_ok \
            or oshape[2] * oshape[3] == 0 or c == 0 or ((kh, kw) == (1, 1) and stride == (1, 1)):
        return None
    sub = stride if (kh, kw) == (1, 1) and padding == (0, 0) else None
    if sub:
        # a strided 1x1 convolution reads only every stride-th pixel: those, copied contiguous, at
        # stride 1 (ResNet-8's shortcuts at batch 32: 316 -> 133 us; the phase split copied all)
        h, wd, stride = oshape[2], oshape[3], (1, 1)
    S = stride[1]
    hp, wp = h + 2 * padding[0], wd + 2 * padding[1]
    wh = -(-wp // S)
    pw = 32 if wide else 16
    koff = conv_panels.tap_offsets(c, kh, kw, S, hp, wh)
    # panels a task: CHUNK, or fewer so that a small batch still makes >= 4 tasks (one image's 16 x 16
    # output is 8 panels of 32 pixels: with 8 a task it ran on one core).  From 4 images on, a task
    # is an image that pads (and phase-splits) itself into a buffer kept in L2 (fused: ResNet-8's
    # 16-channel 32x32 layers 6-17% faster at batch 8 and 32 than a padding pass first, 32x32 at
    # 16x16 even).  Stride-2 and gathered layers measured 2-13% slower so in session 6; after the
    # chunked kernels they are faster fused (in-process A/Bs at batch 32: 16->32 stride 2 605 -> 565
    # us, 32->64 stride 2 895 -> 820, 64->64 at 8x8 1373 -> 1329; the b32 forward 5565 -> 5436 us
    # with the first, 6254 -> 6112 with all, b8 1852 -> 1756): a padding pass writes and reads the
    # whole batch through L3 (230-240 us for these layers' inputs here)
    n_panels = -(-(oshape[2] * oshape[3]) // pw)
    chunk = max(1, min(conv_panels.CHUNK, n * n_panels // 4))
    direct = oshape[3] % (pw // 2) == 0
    fused = n >= conv_panels.FUSED_IMAGES and padding != (0, 0) and c * S * hp * wh * 4 <= FUSED_PAD_BYTES
    par = n * o * oshape[2] * oshape[3] * c * kh * kw >= conv_panels.PAR_MACS
    return sub, stride, padding, koff, (S, hp, wh, h, wd, padding[0], padding[1]), fused, direct, chunk, par


FUSED_PAD_BYTES = 1 << 19     # from conv_panels.FUSED_IMAGES images, when an image's padded copy fits in half of L2


def _conv_checks(out, x, w, stride, padding, dilation, groups):
    n, c = x.shape[:2]
    o, cg, kh, kw = w.shape
    _check_window(x, out, (kh, kw), stride, padding, dilation, "conv2d")
    if groups < 1 or c != cg * groups or o % groups or out.shape[1] != o or out.shape[0] != n:
        raise ValueError(f"conv2d: input {x.shape}, weight {w.shape}, groups {groups} do not fit the planned "
                         f"output {out.shape}")


def _rows2(xshape, wshape, oshape, stride, padding, dilation, groups):
    """Stride-2 convolutions larger than 1x1 run conv_panels.py's deinterleaving row kernel, the input
    read in place, at any batch: in-process against the phase-split panels (which copy each image
    first), ResNet-8's stride-2 3x3 layers at batch 1 40-50 -> 21-25 us, batch 8 125-136 -> 118-120,
    batch 32 528-564 -> 495-549 and 490-536 -> 461-482 (two runs).  Strided 1x1 shortcuts keep the 1x1
    pass or the panels."""
    return wshape[2] * wshape[3] > 1 and \
        conv_panels.rows2_applies(xshape, wshape, oshape, stride, padding, dilation, groups)


def _pointwise_direct(x, w, out, stride, padding, dilation, groups):
    """Whether this float32 1x1 convolution runs pointwise._pointwise_res's direct pass (stride 1, or 2
    with 16-multiple or 8-wide outputs): 8 output channels x 16 pixels a step, no copy of the input.
    ResNet-8's b32 shortcuts 106 -> 96 and 82 -> 60 us; a 64 -> 64 stride-1 1x1 at 16x16, batch 8,
    446 -> 86 us (it had no panel path)."""
    return x.flags.c_contiguous and w.flags.c_contiguous and pointwise.pointwise_res_applies(
        x.shape, w.shape, out.shape, tuple(stride), tuple(padding), tuple(dilation), groups)


def _winograd(x, out, wshape, stride, padding, dilation, groups):
    """Whether this float32 convolution runs winograd.py (3x3, stride 1, padding 1; F(4x4, 3x3) or
    F(2x2, 3x3) as winograd._plan chooses; the output must not overlap the input, which other tasks
    still read).  In-process against the row kernels on ResNet-8's layers at batch 32: 16->16 at
    32x32 870 -> 369 us (F(2x2): 643), 32->32 at 16x16 813 -> 276 (488), 64->64 at 8x8 731 -> 226
    (372), the 3->16 stem 236 -> 184; batch 1 20-39 -> 15-26 us."""
    return winograd.applies(x.shape, wshape, out.shape, tuple(stride), tuple(padding), tuple(dilation), groups) \
        and not np.may_share_memory(out, x)


def conv2d_into(out, x, w, b, stride, padding, dilation, groups, relu=False):
    """out = conv2d(x, w) + b; returns True when ReLU was applied too (the direct kernel fuses it)."""
    _conv_checks(out, x, w, stride, padding, dilation, groups)
    n, c = x.shape[:2]
    o, cg, kh, kw = w.shape
    plan = None
    if x.dtype == w.dtype == out.dtype == np.float32 and out.flags.c_contiguous and (b is None or b.shape == (o,)):
        if _pointwise_direct(x, w, out, stride, padding, dilation, groups):
            pointwise.pointwise_pass(x.shape, w, b, out.shape, res=False, relu=relu)(x, out, out)
            return relu
        if not w.flags.writeable and _winograd(x, out, w.shape, stride, padding, dilation, groups):
            # (a constant weight: its transform is kept; a computed one, an int8-weight program's
            # dequantized kernel, would be transformed again every call: the digits CNN's two
            # convolutions 38 -> 142 us at batch 1)
            winograd.run(out, x, w, b, relu)
            return relu
        if conv_panels.rows_applies(x.shape, w.shape, out.shape, stride, padding, dilation, groups):
            conv_panels.run_rows(out, x, w, b, relu, tuple(padding))
            return relu
        if _rows2(x.shape, w.shape, out.shape, stride, padding, dilation, groups):
            conv_panels.run_rows2(out, x, w, b, relu, tuple(padding))
            return relu
    if x.dtype == w.dtype == out.dtype == np.float32 and x.ndim == w.ndim == 4 and out.flags.c_contiguous \
            and simd.HAVE_FMA:
        plan = _panel_plan(x.shape, w.shape, out.shape, tuple(stride), tuple(padding), tuple(dilation), groups,
                           b is None or b.shape == (o,), simd.HAVE_AVX512)
    if plan is not None:
        sub, stride, padding, koff, geo, fused, direct_, chunk, par = plan
        if sub:
            x = _subsample(x, sub, out.shape[2], out.shape[3])
        xs = x if fused else _pad2(x, padding, phases=stride[1])
        conv_panels.run(out, xs if xs.ndim == 5 else xs.reshape(n, c, 1, *xs.shape[2:]), w, b, relu, koff,
                        stride[0], geo, fused, direct_, chunk, par)
        return relu
    if direct.applies(x.shape, w.shape, x.dtype, stride, padding, dilation, groups) and w.dtype == out.dtype \
            == np.float32 and out.flags.c_contiguous and (b is None or b.shape == (o,)) \
            and out.shape[2:] == tuple(direct.out_size(x.shape[2 + i], kh, stride[i], padding[i]) for i in range(2)):
        direct.conv2d(out, x, w, b, stride, padding, relu)
        return relu
    sh, sw = stride
    dh, dw = dilation
    oh, ow = out.shape[2:]
    if kh == 1 and kw == 1 and tuple(padding) == (0, 0) and groups == 1 and x.dtype == w.dtype == out.dtype \
            and out.flags.c_contiguous and out.shape[2:] == (len(range(0, x.shape[2], sh)), len(range(0, x.shape[3], sw))):
        direct.pointwise(x, w, stride, out)
        o3 = out.reshape(n, o, oh * ow)
        if b is not None:
            o3 += b.reshape(o, 1)
        return False
    xt = _pad2(x, padding).transpose(1, 0, 2, 3)
    cols = np.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xt[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
    y = np.matmul(w.reshape(groups, o // groups, cg * kh * kw), cols.reshape(groups, cg * kh * kw, n * oh * ow))
    y = y.reshape(o, n, oh, ow)
    if b is not None:
        y += b.reshape(o, 1, 1, 1)
    out[...] = y.transpose(1, 0, 2, 3)
    return False


@kernel("conv2d")
def k_conv2d(out, x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    conv2d_into(out, x, w, b, stride, padding, dilation, groups)


@kernel("fused_conv2d")
def k_fused_conv2d(out, x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, activation=None):
    if not conv2d_into(out, x, w, b, stride, padding, dilation, groups, relu=activation == "relu"):
        apply_activation(out, activation)


def _prep_conv(out, x, w, b, stride, padding, dilation, groups, activation, res=False):
    """The panel path of conv2d_into (float32, groups 1) for these shapes: the checks, the plan, the
    packed weight and the task count once; a run pads (or subsamples) and calls the kernel.  Only
    for constant (read-only) weights and biases, whose packed copies the run keeps.  res: the run
    takes a residual r last, out = relu(conv + b + r) (a residual block's add + ReLU fused: in the 1x1
    pass's stores, else a pass over each task's outputs; activation must be "relu")."""
    if activation not in (None, "relu") or not (x.dtype == w.dtype == out.dtype == np.float32 and x.ndim == w.ndim
                                                 == 4 and out.flags.c_contiguous and x.flags.c_contiguous
                                                 and w.flags.c_contiguous and simd.HAVE_FMA):
        return None
    if w.flags.writeable or (b is not None and (b.flags.writeable or b.dtype != np.float32)):
        return None
    _conv_checks(out, x, w, stride, padding, dilation, groups)
    n, c = x.shape[:2]
    o, cg, kh, kw = w.shape
    if groups != 1 or (b is not None and b.shape != (o,)):
        return None
    relu = activation == "relu"
    if res and not relu:
        return None
    if _pointwise_direct(x, w, out, stride, padding, dilation, groups):
        go = pointwise.pointwise_pass(x.shape, w, b, out.shape, res=res, relu=relu, like=(x, out))
        call = lambda out, x, r: go(x, r, out)      # noqa: E731
    elif _winograd(x, out, w.shape, stride, padding, dilation, groups):
        call = winograd.prepare(out, x, w, b, relu, res)
    elif conv_panels.rows_applies(x.shape, w.shape, out.shape, stride, padding, dilation, groups):
        call = _prep_rows(out, x, w, b, tuple(padding), relu, res)
    elif _rows2(x.shape, w.shape, out.shape, stride, padding, dilation, groups):
        call = _prep_rows(out, x, w, b, tuple(padding), relu, res, stride2=True)
    else:
        call = _prep_panels(out, x, w, b, stride, padding, dilation, groups, relu, res)
    if call is None:
        return None
    if res:
        return lambda out, x, *rest: call(out, x, rest[-1])    # rest: the weight (and bias), then r
    return lambda out, x, w, b=None: call(out, x, out)


def _prep_panels(out, x, w, b, stride, padding, dilation, groups, relu, res):
    """_prep_conv's panel kernel: `call(out, x, r)` (r read where res)."""
    n, c = x.shape[:2]
    o = w.shape[0]
    plan = _panel_plan(x.shape, w.shape, out.shape, tuple(stride), tuple(padding), tuple(dilation), groups, True,
                       simd.HAVE_AVX512)
    if plan is None:
        return None
    sub, st, pad, koff, geo, fused, direct_, chunk, par = plan
    oh, ow = out.shape[2:]
    kern, pw = (conv_panels._conv_panels_wide, 32) if simd.HAVE_AVX512 else (conv_panels._conv_panels, 16)
    args = (w.reshape(o, -1), derived(w, "conv_pack", conv_panels.pack_weight), filled(o, 0.0) if b is None else b,
            relu, koff, st[0], conv_panels._geo_array(geo), fused, direct_, chunk)
    nt = conv_panels.tasks(n, oh * ow, pw, chunk, fused)
    # the subsampled / padded copies go to scratch kept by the run (prepared runs are only used
    # under their method's lock, one call at a time): a fresh 512 KB array a call cost ResNet-8's
    # first shortcut at batch 32 ~150 us of page faults (its copy alone: ~20 us)
    sub_buf = np.empty((n, c, oh, ow), np.float32) if sub else None
    h1, w1 = (oh, ow) if sub else x.shape[2:]
    pad_buf = None if fused or (pad == (0, 0) and st[1] == 1) else \
        np.empty((n, c, st[1], h1 + 2 * pad[0], -(-(w1 + 2 * pad[1]) // st[1])), np.float32)
    # the input the kernel gets: the raw one (fused), or a 5-d scratch copy; r typed as out
    xk = x.reshape(n, c, 1, *x.shape[2:]) if fused else (pad_buf if pad_buf is not None else
                                                         (sub_buf if sub else x).reshape(n, c, 1, h1, w1))
    go = kern.bound(xk, *args, out, res, out) if par else kern.serial

    def call(out, x, r):
        xs = _subsample(x, sub, oh, ow, sub_buf) if sub else x
        xs = xs if fused else _pad2(xs, pad, phases=st[1], out=pad_buf)
        go(nt, xs if xs.ndim == 5 else xs.reshape(n, c, 1, xs.shape[2], xs.shape[3]), *args, r, res, out)
    return call


def _prep_rows(out, x, w, b, padding, relu, res, stride2=False):
    """conv_panels.py's row kernels (stride 1, or stride 2 deinterleaving; the input read in place)
    with their taps, masks, packed weight and task count once (rows_plan).  `call(out, x, r)`."""
    go, nt, koff, mk, cls, geo, chunk = conv_panels.rows_plan(x.shape, w.shape, out.shape, padding, stride2)
    o = w.shape[0]
    args = (w.reshape(o, -1), derived(w, "conv_pack", conv_panels.pack_weight), filled(o, 0.0) if b is None else b,
            relu, koff, mk, cls, geo, chunk)
    kern = go.__self__
    if go == kern.parallel:
        go = kern.bound(x.reshape(-1), *args, out, res, out)        # (r is shaped and typed as out)

    def call(out, x, r):
        go(nt, x.reshape(-1), *args, r, res, out)
    return call


@preparer("conv2d")
def p_conv2d(out, x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    return _prep_conv(out, x, w, b, stride, padding, dilation, groups, None)


@preparer("fused_conv2d")
def p_fused_conv2d(out, x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1, activation=None):
    return _prep_conv(out, x, w, b, stride, padding, dilation, groups, activation)


@kernel("conv_transpose2d")
def k_conv_transpose2d(out, x, w, b=None, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1),
                       groups=1):
    n, cin, h, wd = x.shape
    _, og, kh, kw = w.shape
    sh, sw = stride
    dh, dw = dilation
    if groups < 1 or cin % groups or min(sh, sw, dh, dw) < 1 or min(padding) < 0 or min(output_padding) < 0:
        raise ValueError(f"conv_transpose2d: bad attributes stride {stride}, padding {padding}, groups {groups}")
    want = tuple((x.shape[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (w.shape[2 + i] - 1)
                 + output_padding[i] + 1 for i in range(2))
    if want != tuple(out.shape[2:]) or out.shape[1] != og * groups:
        raise ValueError(f"conv_transpose2d: attributes give {want}, the plan {out.shape}")
    if direct.transpose_applies(x.shape, w.shape, x.dtype, stride, padding, output_padding, dilation, groups) \
            and w.dtype == out.dtype == np.float32:
        out[...] = direct.conv_transpose3x3s2(x, w, output_padding)     # four 2x2 convolutions, no scatter
        if b is not None:
            out += b.reshape(1, -1, 1, 1)
        return
    cing = cin // groups
    xg = np.ascontiguousarray(x.transpose(1, 0, 2, 3)).reshape(groups, cing, n * h * wd)
    wg = w.reshape(groups, cing, og * kh * kw).transpose(0, 2, 1)
    contrib = np.matmul(wg, xg).reshape(groups * og, kh, kw, n, h, wd)
    hc = (h - 1) * sh + dh * (kh - 1) + 1 + output_padding[0]
    wc = (wd - 1) * sw + dw * (kw - 1) + 1 + output_padding[1]
    canvas = np.zeros((groups * og, n, hc, wc), dtype=contrib.dtype)
    for i in range(kh):
        for j in range(kw):
            canvas[:, :, i * dh:i * dh + (h - 1) * sh + 1:sh, j * dw:j * dw + (wd - 1) * sw + 1:sw] += contrib[:, i, j]
    ph, pw = padding
    res = canvas[:, :, ph:hc - ph, pw:wc - pw]
    if b is not None:
        res = res + b.reshape(-1, 1, 1, 1)
    out[...] = res.transpose(1, 0, 2, 3)


def _windows(x, kernel_size, stride, padding, dilation, oh, ow, fill):
    eh = max(0, (oh - 1) * stride[0] + dilation[0] * (kernel_size[0] - 1) + 1 - x.shape[2] - 2 * padding[0])
    ew = max(0, (ow - 1) * stride[1] + dilation[1] * (kernel_size[1] - 1) + 1 - x.shape[3] - 2 * padding[1])
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0], padding[0] + eh), (padding[1], padding[1] + ew)),
                constant_values=fill) if (padding[0] or padding[1] or eh or ew) else x
    n, c = xp.shape[:2]
    s0, s1, s2, s3 = xp.strides
    return as_strided(xp, (n, c, oh, ow, kernel_size[0], kernel_size[1]),
                      (s0, s1, s2 * stride[0], s3 * stride[1], s2 * dilation[0], s3 * dilation[1]), writeable=False)


def _max_pool_py(p_lo, p_hi, x, geo, low, out):
    # planes p_lo .. p_hi - 1 of x (P, H, W) -> out (P, OH, OW): the max over each window (geo = kh, kw,
    # sh, sw, ph, pw, dh, dw); taps outside the input are skipped (the padding's `low`: -inf, or the
    # integer minimum), a NaN in a window wins (as torch and np.max)
    H, W = x.shape[1], x.shape[2]
    OH, OW = out.shape[1], out.shape[2]
    kh, kw, sh, sw, ph, pw, dh, dw = geo[0], geo[1], geo[2], geo[3], geo[4], geo[5], geo[6], geo[7]
    for p in range(p_lo, p_hi):
        for oy in range(OH):
            for ox in range(OW):
                m = low
                for ky in range(kh):
                    iy = oy * sh - ph + ky * dh
                    if iy < 0 or iy >= H:
                        continue
                    for kx in range(kw):
                        ix = ox * sw - pw + kx * dw
                        if 0 <= ix < W:
                            v = x[p, iy, ix]
                            if v > m or v != v:
                                m = v
                out[p, oy, ox] = m


def _adaptive_avg_py(p_lo, p_hi, x, out):
    # planes p_lo .. p_hi - 1: out[p, i, j] = the mean of x[p] over rows [i H // OH, ceil((i + 1) H / OH))
    # and the same columns (torch's adaptive bins), summed in float64
    H, W = x.shape[1], x.shape[2]
    OH, OW = out.shape[1], out.shape[2]
    for p in range(p_lo, p_hi):
        for i in range(OH):
            h0 = i * H // OH
            h1 = -(-(i + 1) * H // OH)
            for j in range(OW):
                w0 = j * W // OW
                w1 = -(-(j + 1) * W // OW)
                acc = 0.0
                for y in range(h0, h1):
                    for q in range(w0, w1):
                        acc += x[p, y, q]
                out[p, i, j] = acc / ((h1 - h0) * (w1 - w0))


# Numba pooling for the common dtypes: numpy's reductions over strided windows cost 37-66 us for a
# 32 x 8 x 8 plane stack (the digits CNN's pools: 171 us an image, most of it these two)
_MAX_POOL = chunked(_max_pool_py)
_ADAPTIVE_AVG = chunked(_adaptive_avg_py)
_POOL_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int8), np.dtype(np.uint8))
POOL_PAR = 1 << 16        # window taps from which a pooling runs in parallel


def _planes(a):
    return a.reshape(-1, a.shape[-2], a.shape[-1])


@kernel("max_pool2d")
def k_max_pool2d(out, x, kernel_size=(1, 1), stride=(1, 1), padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    _check_window(x, out, kernel_size, stride, padding, dilation, "max_pool2d", int(bool(ceil_mode)))
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min      # int8 in static programs
    if x.dtype in _POOL_DTYPES and out.dtype == x.dtype and x.flags.c_contiguous and out.flags.c_contiguous \
            and x.ndim == 4 and x.shape[:2] == out.shape[:2]:
        geo = conv_panels._geo_array(tuple(kernel_size) + tuple(stride) + tuple(padding) + tuple(dilation))
        k = _MAX_POOL.parallel if out.size * kernel_size[0] * kernel_size[1] >= POOL_PAR else _MAX_POOL.serial
        k(x.shape[0] * x.shape[1], _planes(x), geo, x.dtype.type(low), _planes(out))
        return
    win = _windows(x, kernel_size, stride, padding, dilation, out.shape[2], out.shape[3], low)
    np.max(win, axis=(4, 5), out=out)


@kernel("avg_pool2d")
def k_avg_pool2d(out, x, kernel_size=(1, 1), stride=(1, 1), padding=(0, 0), ceil_mode=False, count_include_pad=True):
    _check_window(x, out, kernel_size, stride, padding, (1, 1), "avg_pool2d", int(bool(ceil_mode)))
    oh, ow = out.shape[2:]
    win = _windows(x, kernel_size, stride, padding, (1, 1), oh, ow, 0.0)
    s = win.sum(axis=(4, 5))
    if count_include_pad and not ceil_mode:
        out[...] = s / float(kernel_size[0] * kernel_size[1])
        return
    ones = np.ones((1, 1) + x.shape[2:], dtype=x.dtype)
    if count_include_pad:
        ones = np.pad(ones, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2), constant_values=1.0)
        padding = (0, 0)
    div = _windows(ones, kernel_size, stride, padding, (1, 1), oh, ow, 0.0).sum(axis=(4, 5))[0, 0]
    out[...] = s / div


@kernel("adaptive_avg_pool2d")
def k_adaptive_avg_pool2d(out, x, output_size=(1, 1)):
    oh, ow = out.shape[-2:]                      # loops are sized by the plan, not the attribute
    if tuple(output_size) != (oh, ow) or x.ndim != out.ndim or x.shape[:-2] != out.shape[:-2]:
        raise ValueError(f"adaptive_avg_pool2d: output_size {output_size} does not give the planned {out.shape}")
    h, w = x.shape[-2:]
    if (oh, ow) == (1, 1):
        if x.dtype == out.dtype == np.float32 and x.flags.c_contiguous and out.flags.c_contiguous and x.size:
            _PLANE_MEANS[x.size >= 1 << 16](x.reshape(-1, h * w), out.reshape(-1))   # np.mean: ~130 us
        else:                                                                        # at 32 x 64 x 8 x 8
            np.mean(x, axis=(-2, -1), keepdims=True, out=out)
        return
    if x.dtype == out.dtype and x.dtype in (np.float32, np.float64) and x.flags.c_contiguous \
            and out.flags.c_contiguous and x.ndim >= 2 and x.size:
        k = _ADAPTIVE_AVG.parallel if x.size >= POOL_PAR else _ADAPTIVE_AVG.serial
        k(x.size // (h * w), _planes(x), _planes(out))
        return
    for i in range(oh):
        h0, h1 = i * h // oh, -(-(i + 1) * h // oh)
        for j in range(ow):
            w0, w1 = j * w // ow, -(-(j + 1) * w // ow)
            out[..., i, j] = x[..., h0:h1, w0:w1].mean(axis=(-2, -1))


@group_preparer("conv2d", "add_relu")
def p_conv2d_add_relu(outs, ins, attrs):
    (c, out), (ins1, ins2) = outs, ins
    if attrs[1] or len(ins2) != 2 or not 2 <= len(ins1) <= 3:
        return None
    return _prep_conv_add_relu(out, ins2[1] if ins2[0] is c else ins2[0], c, *ins1, **attrs[0])


def _prep_conv_add_relu(out, r, c, x, w, b=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """A float32 convolution whose output only a residual add + ReLU reads: one pass for constant
    weights (_prep_conv with res: a 1x1 projection shortcut on pointwise._pointwise_res, the sum in
    its stores; a 3x3 through the row or panel kernels, the sum added to each task's outputs).  Declined
    where the sum's output shares memory with the convolution's input (the pass reads x while it
    writes out) or with r (the 3x3 kernels store a task's convolution first, then add r to it)."""
    if not (x.dtype == w.dtype == out.dtype == r.dtype == c.dtype == np.float32 and x.flags.c_contiguous
            and w.flags.c_contiguous and out.flags.c_contiguous and r.flags.c_contiguous) \
            or w.flags.writeable or (b is not None and (b.flags.writeable or b.dtype != np.float32)):
        return None
    _conv_checks(c, x, w, stride, padding, dilation, groups)
    o = w.shape[0]
    if r.shape != c.shape or out.shape != c.shape or (b is not None and b.shape != (o,)) \
            or np.may_share_memory(out, x) or np.may_share_memory(out, r):
        return None
    return _prep_conv(c, x, w, b, stride, padding, dilation, groups, "relu", res=True)
