"""1x1 float32 convolutions (stride 1 or 2) as one direct pass, optionally with a residual block's
sum and ReLU in its epilogue (AVX-512): 8 output channels x 16 pixels a step, the stride-2 pixels the
even places of 16-value loads, no copy of the input.  conv.py runs every 1x1 convolution this
admits (pointwise_res_applies) on it, and the runtime's conv2d + add_relu group preparer the
projection shortcuts of residual networks.  (Split out of conv_panels.py in session 11.)"""
import numpy as np

from edgetorch._native.jit import variant
from edgetorch._native.simd import wfadd, wfevens, wfload, wfma, wfmax, wfsplat, wfstore, wfzero
from edgetorch._native import simd

from ._derived import derived, filled
from ._jit import chunked
from .conv_panels import PAR_MACS


def _pointwise_res_py(t_lo, t_hi, x, wpk, b, r, out):
    # out = relu(conv1x1(x, w, stride) + b + r): a residual block's projection shortcut, its sum and
    # activation in one pass (the runtime fuses conv2d + add_relu when it prepares a method; ONNX
    # Runtime fuses the same).  Tasks t_lo .. t_hi - 1 are (image, block of 8 output channels); 16
    # output pixels a vector, MODE bound per variant: 0 stride 1, contiguous (OH OW % 16 == 0); 1
    # stride 2, the even places of two 16-value loads of one input row (OW % 16 == 0, W == 2 OW);
    # 2 stride 2 with 8-wide outputs, two input rows two apart (W == 16, H == 2 OH, OH even).  Eight
    # accumulators, one FMA a channel each against the broadcast weight; the epilogue adds bias and
    # residual and clamps.  x (N, C, H, W), wpk (O / 8, C, 8) the weight packed so a block's 8 weights
    # of a channel are adjacent, r and out (N, O, OH, OW); C-contiguous float32.
    N, C, H, W = x.shape
    ncb = wpk.shape[0]
    O = ncb * 8
    OH, OW = out.shape[2], out.shape[3]
    P = OH * OW
    xf = x.reshape(-1)
    rf = r.reshape(-1)
    of = out.reshape(-1)
    zero = wfzero()
    for t in range(t_lo, t_hi):
        n = t // ncb
        cb = t - n * ncb
        co = cb * 8
        wb = wpk[cb]
        for p in range(0, P, 16):
            if MODE == 0:
                src = p
            else:
                y = p // OW
                src = 2 * y * W + 2 * (p - y * OW)
            a0 = wfsplat(b[co])
            a1 = wfsplat(b[co + 1])
            a2 = wfsplat(b[co + 2])
            a3 = wfsplat(b[co + 3])
            a4 = wfsplat(b[co + 4])
            a5 = wfsplat(b[co + 5])
            a6 = wfsplat(b[co + 6])
            a7 = wfsplat(b[co + 7])
            i0 = n * C * H * W + src
            for ci in range(C):
                if MODE == 0:
                    xv = wfload(xf, i0)
                elif MODE == 1:
                    xv = wfevens(wfload(xf, i0), wfload(xf, i0 + 16))
                else:
                    xv = wfevens(wfload(xf, i0), wfload(xf, i0 + 2 * W))
                i0 += H * W
                a0 = wfma(wfsplat(wb[ci, 0]), xv, a0)
                a1 = wfma(wfsplat(wb[ci, 1]), xv, a1)
                a2 = wfma(wfsplat(wb[ci, 2]), xv, a2)
                a3 = wfma(wfsplat(wb[ci, 3]), xv, a3)
                a4 = wfma(wfsplat(wb[ci, 4]), xv, a4)
                a5 = wfma(wfsplat(wb[ci, 5]), xv, a5)
                a6 = wfma(wfsplat(wb[ci, 6]), xv, a6)
                a7 = wfma(wfsplat(wb[ci, 7]), xv, a7)
            o0 = (n * O + co) * P + p
            _put_res(of, rf, o0, a0, zero)
            _put_res(of, rf, o0 + P, a1, zero)
            _put_res(of, rf, o0 + 2 * P, a2, zero)
            _put_res(of, rf, o0 + 3 * P, a3, zero)
            _put_res(of, rf, o0 + 4 * P, a4, zero)
            _put_res(of, rf, o0 + 5 * P, a5, zero)
            _put_res(of, rf, o0 + 6 * P, a6, zero)
            _put_res(of, rf, o0 + 7 * P, a7, zero)


def _put_res_py(of, rf, i, a, zero):
    # RES: relu(a + r), the fused shortcut; else a, clamped where RELU (a plain 1x1 convolution)
    if RES:
        wfstore(of, i, wfmax(wfadd(a, wfload(rf, i)), zero))
    elif RELU:
        wfstore(of, i, wfmax(a, zero))
    else:
        wfstore(of, i, a)


MODE = 0
RES = True
RELU = True
_put_res = _put_res_py      # bound per compiled variant below


def _pointwise_variant(mode, res, relu):
    tag = f"_m{mode}" + ("_res" if res else ("_relu" if relu else ""))
    put = variant(_put_res_py, "_put" + tag, {"RES": res, "RELU": relu}, inline="always")
    return chunked(_pointwise_res_py, tag, {"MODE": mode, "_put_res": put}, fastmath=True)


_POINTWISE = {}


def _pointwise_kernel(mode, res, relu):
    """The compiled chunks of _pointwise_res_py for this stride mode and epilogue (made on first use)."""
    key = (mode, res, relu and not res)
    if key not in _POINTWISE:
        _POINTWISE[key] = _pointwise_variant(*key)
    return _POINTWISE[key]


def _pack_pointwise(w):
    """(O, C, 1, 1) -> (O / 8, C, 8): a block of 8 output channels' weights of one input channel adjacent."""
    O, C = w.shape[:2]
    return np.ascontiguousarray(w.reshape(O // 8, 8, C).transpose(0, 2, 1))


def pointwise_res_applies(xshape, wshape, oshape, stride, padding, dilation, groups):
    """Whether _pointwise_res computes conv2d(x, w) of these shapes and attributes (then + r, ReLU)."""
    if not simd.HAVE_AVX512 or len(xshape) != 4 or len(wshape) != 4 or len(oshape) != 4:
        return False
    N, C, H, W = xshape
    O, cg, kh, kw = wshape
    OH, OW = oshape[2:]
    if (kh, kw) != (1, 1) or tuple(padding) != (0, 0) or tuple(dilation) != (1, 1) or groups != 1 or cg != C \
            or O % 8 or O == 0 or C == 0 or oshape[:2] != (N, O) or N == 0:
        return False
    if tuple(stride) == (1, 1):
        return (OH, OW) == (H, W) and (OH * OW) % 16 == 0
    if tuple(stride) == (2, 2):
        return (OW % 16 == 0 and W == 2 * OW and H >= 2 * OH - 1) or \
            (OW == 8 and W == 16 and H == 2 * OH and OH % 2 == 0)
    return False


def pointwise_pass(xshape, w, b, oshape, res, relu=True, like=None):
    """`go(x, r, out)` running _pointwise_res for shapes pointwise_res_applies accepted, the weight (O, C,
    1, 1) packed and the bias (or zeros) bound: out = relu(conv + b + r) where res, else conv + b,
    clamped where relu (r is then unread: pass out).  A constant weight's packed copy is kept.  like:
    (x, out) arrays typed as every later call's (a prepared run): a parallel run's entry bound once."""
    mode = 0 if xshape[3] == oshape[3] else (1 if oshape[3] % 16 == 0 else 2)
    kern = _pointwise_kernel(mode, res, relu)
    par = xshape[0] * w.shape[0] * w.shape[1] * oshape[2] * oshape[3] >= PAR_MACS
    n = xshape[0] * (w.shape[0] // 8)
    wpk = derived(w, "pointwise_pack", _pack_pointwise)
    bb = filled(w.shape[0], 0.0) if b is None else b
    go = kern.serial if not par else (kern.parallel if like is None else
                                      kern.bound(like[0], wpk, bb, like[1], like[1]))
    return lambda x, r, out: go(n, x, wpk, bb, r, out)
