"""Direct float32 3x3 convolutions (stride 1 and 2) and their weight gradient, without
im2col; the Numba loops are generated (_conv_kernels.py, tools/gen_conv_direct.py).

Shared by the runtime's conv2d kernels and the frontend's eager conv2d /
conv2d_weight / stride-1 conv_transpose2d (the input gradient), so training
and inference run the same loops.  `applies(...)` says when they are used;
everything else goes through im2col + BLAS.
"""
import threading
from collections import OrderedDict

import numpy as np

from ._conv_kernels import FORWARD, WGRAD

PAR_MACS = 1 << 19              # multiply-adds from which the parallel copy of a kernel pays
# Small outputs (8x8) waste a fifth of the flat grid and run short loops: from a few images on,
# im2col + one OpenBLAS GEMM is faster there (ResNet-8's 64-channel 8x8 layers at batch 32:
# 2.0 vs 3.1 ms; at batch 1 the direct kernel: 0.10 vs 0.15 ms).
MIN_PIXELS = 100
MAX_SMALL_MACS = 1 << 23
_scratch = threading.local()    # per calling thread: concurrent callers never share a buffer


def out_size(n, k, s, p, d=1):
    """Output length of a convolution or pooling window (the runtime's kernels use it too)."""
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def applies(x_shape, w_shape, dtype, stride, padding, dilation, groups):
    """True when the direct kernels handle this convolution (and are the faster choice)."""
    if len(x_shape) != 4 or len(w_shape) != 4 or dtype != np.float32 or groups != 1:
        return False
    k = w_shape[2]
    if w_shape[3] != k or stride[0] != stride[1] or (k, stride[0]) not in FORWARD or tuple(dilation) != (1, 1) \
            or min(padding) < 0 or w_shape[1] != x_shape[1]:
        return False
    oh, ow = (out_size(x_shape[2 + i], k, stride[0], padding[i]) for i in range(2))
    if oh < 1 or ow < 1:
        return False
    macs = x_shape[0] * w_shape[0] * w_shape[1] * k * k * oh * ow
    return oh * ow >= MIN_PIXELS or macs < MAX_SMALL_MACS


def _buffer(key, size):
    cache = getattr(_scratch, "bufs", None)
    if cache is None:
        cache = _scratch.bufs = OrderedDict()
    buf = cache.pop(key, None)
    if buf is None:
        buf = np.zeros(size, np.float32)
        if len(cache) >= 8:
            cache.popitem(last=False)
    cache[key] = buf
    return buf


def phases(x, ph, pw, s):
    """x (N, C, H, W) zero-padded and split in s*s phase planes per channel (phase (r, q) holds the
    padded rows r, r+s, ... and columns q, q+s, ...), flat, plus 2 floats of slack; see
    _conv_kernels.  One buffer per shape and padding and calling thread, reused: the zero borders
    are never written."""
    n, c, h, w = x.shape
    hq, wq = -(-(h + 2 * ph) // s), -(-(w + 2 * pw) // s)
    buf = _buffer(("x", n, c, h, w, ph, pw, s), n * c * s * s * hq * wq + 2)
    view = buf[:-2].reshape(n, c, s, s, hq, wq)
    for r in range(s):
        a0 = max(0, -(-(ph - r) // s))          # first phase row inside the image
        y0 = a0 * s + r - ph
        rows = len(range(y0, h, s))
        for q in range(s):
            b0 = max(0, -(-(pw - q) // s))
            x0 = b0 * s + q - pw
            cols = len(range(x0, w, s))
            if rows and cols:
                view[:, :, r, q, a0:a0 + rows, b0:b0 + cols] = x[:, :, y0::s, x0::s]
    return buf, hq, wq


def conv2d(out, x, w, b, stride, padding, relu=False):
    """out (N, O, OH, OW) float32, C-contiguous = conv2d(x, w) + b, ReLU'd when asked; the caller
    has checked `applies`."""
    n, c = x.shape[:2]
    o, _, k, _ = w.shape
    s = stride[0]
    if out.shape != (n, o, out_size(x.shape[2], k, s, padding[0]), out_size(x.shape[3], k, s, padding[1])) \
            or not out.flags.c_contiguous or out.dtype != np.float32 or (b is not None and b.shape != (o,)):
        raise ValueError(f"direct conv2d: input {x.shape}, weight {w.shape}, bias "
                         f"{None if b is None else b.shape} do not give {out.shape}")
    xp, hq, wq = phases(x, padding[0], padding[1], s)
    bb = np.zeros(o, np.float32) if b is None else np.ascontiguousarray(b, dtype=np.float32)
    serial, par = FORWARD[(k, s)]
    macs = n * o * c * k * k * out.shape[2] * wq
    (par if macs >= PAR_MACS else serial)(xp, c, hq, wq, np.ascontiguousarray(w, dtype=np.float32), bb, relu, out)
    return out


def transpose_applies(x_shape, w_shape, dtype, stride, padding, output_padding, dilation, groups):
    """True when `conv_transpose3x3s2` handles this transposed convolution: float32, 3x3 kernel,
    stride 2, padding 1 (the input gradient of ResNet's downsampling convolutions)."""
    return (dtype == np.float32 and len(x_shape) == 4 and len(w_shape) == 4 and tuple(w_shape[2:]) == (3, 3)
            and tuple(stride) == (2, 2) and tuple(padding) == (1, 1) and tuple(dilation) == (1, 1)
            and groups == 1 and all(op in (0, 1) for op in output_padding) and w_shape[0] == x_shape[1]
            and x_shape[2] * x_shape[3] * 4 >= MIN_PIXELS)


# the taps of a 3x3, stride-2, padding-1 transposed convolution that land on output row parity r:
# (kernel row i, row offset d into the input) -- gx[2a + r] gathers w[i] * x[a + d]
_TAPS_S2P1 = {0: ((1, 0),), 1: ((0, 1), (2, 0))}


def conv_transpose3x3s2(x, w, output_padding):
    """conv_transpose2d(x, w, stride 2, padding 1) for x (N, Cin, H, W), w (Cin, Cout, 3, 3), as
    four stride-1 2x2 convolutions, one per parity of the output pixel (sub-pixel decomposition):
    no scatter, no zero-stuffed input (which would do 4x the multiply-adds; this does 16/9x)."""
    n, cin, h, wd = x.shape
    cout = w.shape[1]
    oh, ow = 2 * h - 1 + output_padding[0], 2 * wd - 1 + output_padding[1]
    xp = np.zeros((n, cin, h + 1, wd + 1), np.float32)       # reads x[a + 1] at the last row/column
    xp[:, :, :h, :wd] = x
    out = np.empty((n, cout, oh, ow), np.float32)
    sub = np.empty((n, cout, h, wd), np.float32)
    for r in (0, 1):
        for q in (0, 1):
            ws = np.zeros((cout, cin, 2, 2), np.float32)
            for i, di in _TAPS_S2P1[r]:
                for j, dj in _TAPS_S2P1[q]:
                    ws[:, :, di, dj] = w[:, :, i, j].T
            conv2d(sub, xp, ws, None, (1, 1), (0, 0))
            out[:, :, r::2, q::2] = sub[:, :, :len(range(r, oh, 2)), :len(range(q, ow, 2))]
    return out


def pointwise(x, w, stride, out=None):
    """1x1 convolution without padding: one GEMM per image, W (O, C) @ x (C, OH*OW), into an NCHW
    (N, O, OH, OW) output (numpy's stacked matmul; no column matrix, no transposes)."""
    n, c = x.shape[:2]
    o = w.shape[0]
    xs = x[:, :, ::stride[0], ::stride[1]]
    oh, ow = xs.shape[2:]
    if out is None:
        out = np.empty((n, o, oh, ow), np.result_type(x.dtype, w.dtype))
    np.matmul(w.reshape(o, c), (xs if xs.flags.c_contiguous else np.ascontiguousarray(xs)).reshape(n, c, -1),
              out=out.reshape(n, o, oh * ow))
    return out


def pointwise_weight(x, g, stride):
    """Gradient of `pointwise` w.r.t. its (O, C, 1, 1) weight: sum over images of g (O, P) @ x (P, C)."""
    n, c = x.shape[:2]
    o = g.shape[1]
    xs = x[:, :, ::stride[0], ::stride[1]]
    return np.tensordot(g.reshape(n, o, -1), xs.reshape(n, c, -1), axes=([0, 2], [0, 2])).reshape(o, c, 1, 1)


def conv2d_weight(x, g, k, stride, padding):
    """Gradient of conv2d w.r.t. its (O, C, k, k) weight: x (N, C, H, W), g (N, O, OH, OW)."""
    n, c = x.shape[:2]
    o, oh, ow = g.shape[1:]
    s = stride[0]
    if (k, s) not in WGRAD or g.shape[0] != n \
            or (oh, ow) != (out_size(x.shape[2], k, s, padding[0]), out_size(x.shape[3], k, s, padding[1])):
        raise ValueError(f"direct conv2d_weight: {k}x{k} stride {s}, input {x.shape} and output gradient "
                         f"{g.shape}: no kernel or shapes that do not fit")
    xp, hq, wq = phases(x, padding[0], padding[1], s)
    gq = _buffer(("g", n, o, oh, ow, wq), n * o * oh * wq).reshape(n, o, oh, wq)
    gq[..., :ow] = g                   # columns ow.. are never written: they stay zero
    gw = np.empty((o, c, k, k), np.float32)
    serial, par = WGRAD[(k, s)]
    macs = n * o * c * k * k * oh * wq
    (par if macs >= PAR_MACS else serial)(xp, c, hq, wq, gq.reshape(n, o, oh * wq), gw)
    return gw
