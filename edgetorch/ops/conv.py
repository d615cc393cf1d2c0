"""Convolution and pooling over NCHW tensors.

Forwards use im2col over strided windows (a view, then one copy into a
matrix) and one batched matmul per group; float32 3x3 convolutions at
stride 1 and 2 (and their weight gradients) run the direct Numba loops the
runtime uses (edgetorch/_native/conv.py: 3-4x faster at ResNet shapes, no
9x column matrix).  Gradients of conv2d are conv_transpose2d (input) and
conv2d_weight (weight), and vice versa, so each op's backward is made of
registry ops.
"""
import numpy as np
from numpy.lib.stride_tricks import as_strided

from .._errors import ShapeError
from .registry import Sample, TensorMeta, op


def out_size(n, k, s, p, d):
    return (n + 2 * p - d * (k - 1) - 1) // s + 1


def _windows(xp, kh, kw, stride, dilation, oh, ow):
    """(N, C, OH, OW, KH, KW) view of the padded input."""
    n, c = xp.shape[:2]
    s0, s1, s2, s3 = xp.strides
    sh, sw = stride
    dh, dw = dilation
    return as_strided(xp, (n, c, oh, ow, kh, kw), (s0, s1, s2 * sh, s3 * sw, s2 * dh, s3 * dw), writeable=False)


def _pad2(x, p, value=0.0):
    """x (N, C, H, W) padded by p on both sides of H and W (np.pad costs ~40 us of Python per call)."""
    if p[0] == 0 and p[1] == 0:
        return x
    n, c, h, w = x.shape
    out = np.full((n, c, h + 2 * p[0], w + 2 * p[1]), value, dtype=x.dtype)
    out[:, :, p[0]:p[0] + h, p[1]:p[1] + w] = x
    return out


def _conv_meta(x, w, b=None, *, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    sx, sw = tuple(x.shape), tuple(w.shape)
    if len(sx) != 4 or len(sw) != 4:
        raise ShapeError(f"conv2d: expected 4-d input and weight, got {sx} and {sw}")
    if not (sx[1] == sw[1] * groups) or sw[0] % groups:
        raise ShapeError(f"conv2d: input has {sx[1]} channels; weight {sw} with groups={groups} "
                         f"expects {sw[1] * groups} (and out channels divisible by groups)")
    oh = out_size(sx[2], sw[2], stride[0], padding[0], dilation[0])
    ow = out_size(sx[3], sw[3], stride[1], padding[1], dilation[1])
    if isinstance(oh, int) and (oh <= 0 or ow <= 0):
        raise ShapeError(f"conv2d: input {sx} is too small for kernel {sw[2:]} "
                         f"(padding {tuple(padding)}, dilation {tuple(dilation)})")
    if b is not None and tuple(b.shape) != (sw[0],):
        raise ShapeError(f"conv2d: bias has shape {tuple(b.shape)}; expected ({sw[0]},)")
    return TensorMeta((sx[0], sw[0], oh, ow), x.dtype)


def _conv_samples(rng):
    r = rng.normal
    return [Sample((r(size=(2, 3, 7, 6)), r(size=(4, 3, 3, 3)), r(size=(4,))), dict(padding=(1, 1))),
            Sample((r(size=(1, 4, 9, 8)), r(size=(6, 2, 3, 2)), None),
                   dict(stride=(2, 1), padding=(1, 0), dilation=(1, 2), groups=2), note="grouped, strided"),
            Sample((r(size=(2, 3, 5, 5)), r(size=(3, 1, 3, 3)), r(size=(3,))),
                   dict(padding=(1, 1), groups=3), note="depthwise"),
            Sample((r(size=(1, 2, 5, 4)), r(size=(3, 2, 1, 1)), None), note="1x1")]


def _cols(x, kh, kw, stride, padding, dilation):
    """Patches of the padded input laid out (C, KH, KW, N, OH, OW).

    Built with one strided slice copy per kernel tap, whose inner runs are
    contiguous rows of the input: much faster in numpy than reshaping a
    6-d window view.
    """
    n, c = x.shape[:2]
    sh, sw = stride
    dh, dw = dilation
    oh = out_size(x.shape[2], kh, sh, padding[0], dh)
    ow = out_size(x.shape[3], kw, sw, padding[1], dw)
    xt = _pad2(x, padding).transpose(1, 0, 2, 3)                  # (C, N, Hp, Wp) view
    cols = np.empty((c, kh, kw, n, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            cols[:, i, j] = xt[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]
    return cols, oh, ow


def _direct(x_shape, w_shape, *arrays, stride, padding, dilation, groups):
    """The shared direct-convolution module when it covers this float32 case (numba loads here)."""
    if any(a is not None and a.dtype != np.float32 for a in arrays) or not (w_shape[2] == w_shape[3] == 3):
        return None
    from .._native import conv as direct
    return direct if direct.applies(x_shape, w_shape, np.dtype(np.float32), stride, padding, dilation, groups) \
        else None


@op(meta=_conv_meta, samples=_conv_samples)
def conv2d(x, w, b=None, *, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    n = x.shape[0]
    o, cg, kh, kw = w.shape
    d = _direct(x.shape, w.shape, x, w, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    if d is not None:
        oh, ow = (d.out_size(x.shape[2 + i], kh, stride[0], padding[i]) for i in range(2))
        return d.conv2d(np.empty((n, o, oh, ow), np.float32), x, w, b, stride, padding)
    if kh == kw == 1 and tuple(padding) == (0, 0) and groups == 1:
        from .._native import conv as direct        # numpy only, no column matrix
        y = direct.pointwise(x, w, stride)
        return y + b.reshape(1, o, 1, 1) if b is not None else y
    cols, oh, ow = _cols(x, kh, kw, stride, padding, dilation)
    cols = cols.reshape(groups, cg * kh * kw, n * oh * ow)        # (G, Cg*K, P)
    y = np.matmul(w.reshape(groups, o // groups, cg * kh * kw), cols)  # (G, O/G, P)
    y = y.reshape(o, n, oh, ow)
    if b is not None:
        y += b.reshape(o, 1, 1, 1)
    return np.ascontiguousarray(y.transpose(1, 0, 2, 3))


def _tconv_output_padding(in_hw, out_hw, w, stride, padding, dilation):
    """output_padding that makes conv_transpose2d(conv2d(x)) have x's size."""
    return tuple(int(in_hw[i] - ((out_hw[i] - 1) * stride[i] - 2 * padding[i]
                                 + dilation[i] * (w.shape[2 + i] - 1) + 1)) for i in range(2))


@conv2d.grad
def _(ctx, g):
    x, w, b = ctx.inputs
    a = ctx.attrs
    st, pd, dl, gr = a.get("stride", (1, 1)), a.get("padding", (0, 0)), a.get("dilation", (1, 1)), a.get("groups", 1)
    n = ctx.needs_input_grad
    gx = gw = gb = None
    if n[0]:
        op_ = _tconv_output_padding(x.shape[2:], g.shape[2:], w, st, pd, dl)
        gx = conv_transpose2d(g, w, stride=st, padding=pd, output_padding=op_, dilation=dl, groups=gr)
    if n[1]:
        gw = conv2d_weight(x, g, weight_shape=tuple(w.shape), stride=st, padding=pd, dilation=dl, groups=gr)
    if b is not None and n[2]:
        gb = g.sum(dim=(0, 2, 3))
    return gx, gw, gb


def _cw_meta(x, g, *, weight_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    return TensorMeta(tuple(weight_shape), x.dtype)


@op(meta=_cw_meta)
def conv2d_weight(x, g, *, weight_shape, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1):
    """Gradient of conv2d w.r.t. its weight, given the input and the output grad."""
    o, cg, kh, kw = weight_shape
    d = _direct(x.shape, weight_shape, x, g, stride=stride, padding=padding, dilation=dilation, groups=groups)
    if d is not None:
        return d.conv2d_weight(x, g, kh, stride, padding)
    if kh == kw == 1 and tuple(padding) == (0, 0) and groups == 1:
        from .._native import conv as direct
        return direct.pointwise_weight(x, g, stride).astype(np.result_type(x.dtype, g.dtype), copy=False)
    cols, oh, ow = _cols(x, kh, kw, stride, padding, dilation)
    p = x.shape[0] * oh * ow
    cols = cols.reshape(groups, cg * kh * kw, p)                   # (G, Cg*K, P)
    gg = np.ascontiguousarray(g.transpose(1, 0, 2, 3)).reshape(groups, o // groups, p)  # (G, O/G, P)
    return np.matmul(gg, cols.transpose(0, 2, 1)).reshape(weight_shape)


def _tconv_meta(x, w, b=None, *, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1), groups=1):
    sx, sw = tuple(x.shape), tuple(w.shape)
    if len(sx) != 4 or len(sw) != 4 or not (sx[1] == sw[0]) or sw[0] % groups:
        raise ShapeError(f"conv_transpose2d: input {sx} and weight {sw} (groups={groups}) do not fit; "
                         f"weight must be (in_channels={sx[1] if len(sx) == 4 else '?'}, out/groups, kh, kw)")
    hw = tuple((sx[2 + i] - 1) * stride[i] - 2 * padding[i] + dilation[i] * (sw[2 + i] - 1)
               + output_padding[i] + 1 for i in range(2))
    return TensorMeta((sx[0], sw[1] * groups) + hw, x.dtype)


def _tconv_samples(rng):
    r = rng.normal
    return [Sample((r(size=(2, 4, 3, 4)), r(size=(4, 3, 3, 3)), r(size=(3,))), dict(stride=(2, 2), padding=(1, 1))),
            Sample((r(size=(1, 4, 3, 3)), r(size=(4, 1, 2, 3)), None),
                   dict(stride=(2, 1), output_padding=(1, 0), groups=2, dilation=(1, 2)), note="grouped"),
            Sample((r(size=(2, 4, 5, 4)), r(size=(4, 3, 3, 2)), r(size=(6,))), dict(padding=(1, 0), groups=2),
                   note="stride 1 (flipped-kernel path)")]


@op(meta=_tconv_meta, samples=_tconv_samples)
def conv_transpose2d(x, w, b=None, *, stride=(1, 1), padding=(0, 0), output_padding=(0, 0), dilation=(1, 1), groups=1):
    n, cin, h, wd = x.shape
    _, og, kh, kw = w.shape
    sh, sw = stride
    dh, dw = dilation
    cing = cin // groups
    if kh == kw == 3 and tuple(stride) == (2, 2) and x.dtype == w.dtype == np.float32 \
            and (b is None or b.dtype == np.float32):
        from .._native import conv as direct
        if direct.transpose_applies(x.shape, w.shape, x.dtype, stride, padding, output_padding, dilation, groups):
            y = direct.conv_transpose3x3s2(x, w, output_padding)
            return y + b.reshape(1, -1, 1, 1) if b is not None else y
    ph2, pw2 = dh * (kh - 1) - padding[0], dw * (kw - 1) - padding[1]
    if (sh, sw) == (1, 1) and tuple(output_padding) == (0, 0) and ph2 >= 0 and pw2 >= 0:
        # stride 1: a transposed conv is a conv with the spatially flipped,
        # in/out-swapped kernel, which skips the scatter-add below
        wc = w.reshape(groups, cing, og, kh, kw).transpose(0, 2, 1, 3, 4).reshape(groups * og, cing, kh, kw)
        return conv2d.forward(x, np.ascontiguousarray(wc[:, :, ::-1, ::-1]), b, padding=(ph2, pw2),
                              dilation=dilation, groups=groups)
    # one GEMM per image and group: W^T (Og*K, Cin/G) @ x (Cin/G, H*W), scattered onto the canvas
    # tap by tap; images stay the leading axis throughout, so nothing is transposed
    xg = x.reshape(n, groups, cing, h * wd)
    wg = w.reshape(groups, cing, og * kh * kw).transpose(0, 2, 1)                           # (G, Og*K, Cin/G)
    contrib = np.matmul(wg, xg).reshape(n, groups * og, kh, kw, h, wd)                      # (N, Cout, KH, KW, H, W)
    hc = (h - 1) * sh + dh * (kh - 1) + 1 + output_padding[0]
    wc = (wd - 1) * sw + dw * (kw - 1) + 1 + output_padding[1]
    canvas = np.zeros((n, groups * og, hc, wc), dtype=contrib.dtype)
    for i in range(kh):
        for j in range(kw):
            canvas[:, :, i * dh:i * dh + (h - 1) * sh + 1:sh, j * dw:j * dw + (wd - 1) * sw + 1:sw] += contrib[:, :, i, j]
    ph, pw = padding
    out = canvas[:, :, ph:hc - ph, pw:wc - pw]
    if b is not None:
        return out + b.reshape(1, -1, 1, 1)
    return np.ascontiguousarray(out)


@conv_transpose2d.grad
def _(ctx, g):
    x, w, b = ctx.inputs
    a = ctx.attrs
    st, pd, dl, gr = a.get("stride", (1, 1)), a.get("padding", (0, 0)), a.get("dilation", (1, 1)), a.get("groups", 1)
    n = ctx.needs_input_grad
    gx = conv2d(g, w, stride=st, padding=pd, dilation=dl, groups=gr) if n[0] else None
    gw = conv2d_weight(g, x, weight_shape=tuple(w.shape), stride=st, padding=pd, dilation=dl, groups=gr) if n[1] else None
    gb = g.sum(dim=(0, 2, 3)) if b is not None and n[2] else None
    return gx, gw, gb


# ------------------------------------------------------------------- pooling

def _pool_meta(x, *, kernel_size, stride, padding=(0, 0), dilation=(1, 1), ceil_mode=False, **_):
    if len(x.shape) != 4:
        raise ShapeError(f"pool2d: expected a 4-d NCHW input, got shape {tuple(x.shape)}")
    if padding[0] * 2 > kernel_size[0] or padding[1] * 2 > kernel_size[1]:
        raise ShapeError(f"pool2d: padding {tuple(padding)} must be at most half the kernel {tuple(kernel_size)}")
    hw = tuple(_pool_out(x.shape[2 + i], kernel_size[i], stride[i], padding[i], dilation[i], ceil_mode) for i in range(2))
    return TensorMeta(tuple(x.shape[:2]) + hw, x.dtype)


def _pool_out(n, k, s, p, d, ceil_mode):
    span = n + 2 * p - d * (k - 1) - 1
    o = (span + (s - 1 if ceil_mode else 0)) // s + 1
    if ceil_mode and (o - 1) * s >= n + p:
        o -= 1  # the last window must start inside the input (torch's rule)
    return o


def _pool_samples(rng):
    x = rng.permutation(2 * 3 * 7 * 6).reshape(2, 3, 7, 6) / 10.0  # distinct: no argmax ties
    return [Sample((x,), dict(kernel_size=(2, 2), stride=(2, 2))),
            Sample((x,), dict(kernel_size=(3, 3), stride=(2, 1), padding=(1, 1))),
            Sample((x,), dict(kernel_size=(3, 2), stride=(2, 2), ceil_mode=True), note="ceil")]


def _pool_windows(x, kernel_size, stride, padding, dilation, ceil_mode, fill):
    oh, ow = (_pool_out(x.shape[2 + i], kernel_size[i], stride[i], padding[i], dilation[i], ceil_mode) for i in range(2))
    # extra fill on the bottom/right so ceil_mode windows stay in the buffer
    eh = max(0, (oh - 1) * stride[0] + dilation[0] * (kernel_size[0] - 1) + 1 - x.shape[2] - 2 * padding[0])
    ew = max(0, (ow - 1) * stride[1] + dilation[1] * (kernel_size[1] - 1) + 1 - x.shape[3] - 2 * padding[1])
    xp = np.pad(x, ((0, 0), (0, 0), (padding[0], padding[0] + eh), (padding[1], padding[1] + ew)),
                constant_values=fill)
    return _windows(xp, kernel_size[0], kernel_size[1], stride, dilation, oh, ow), oh, ow


@op(meta=_pool_meta, samples=_pool_samples)
def max_pool2d(x, *, kernel_size, stride, padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    low = -np.inf if x.dtype.kind == "f" else np.iinfo(x.dtype).min      # int8 for static quantization
    win, oh, ow = _pool_windows(x, kernel_size, stride, padding, dilation, ceil_mode, low)
    return win.max(axis=(4, 5)).astype(x.dtype, copy=False)


@max_pool2d.grad
def _(ctx, g):
    x, = ctx.inputs
    return (max_pool2d_backward(g, x, **ctx.attrs),)


def _mpb_meta(g, x, **a):
    return TensorMeta(tuple(x.shape), g.dtype)


@op(meta=_mpb_meta)
def max_pool2d_backward(g, x, *, kernel_size, stride, padding=(0, 0), dilation=(1, 1), ceil_mode=False):
    """Route each output grad to the (first) max of its window."""
    win, oh, ow = _pool_windows(x, kernel_size, stride, padding, dilation, ceil_mode, -np.inf)
    n, c = x.shape[:2]
    kh, kw = kernel_size
    am = win.reshape(n, c, oh, ow, kh * kw).argmax(-1)
    i = np.arange(oh)[:, None] * stride[0] + (am // kw) * dilation[0] - padding[0]
    j = np.arange(ow)[None, :] * stride[1] + (am % kw) * dilation[1] - padding[1]
    out = np.zeros((n, c, x.shape[2] * x.shape[3]), dtype=g.dtype)
    flat = (i * x.shape[3] + j).reshape(n, c, -1)
    np.add.at(out, (np.arange(n)[:, None, None], np.arange(c)[None, :, None], flat), g.reshape(n, c, -1))
    return out.reshape(x.shape)


def _avg_divisor(x_hw, kernel_size, stride, padding, ceil_mode, count_include_pad, oh, ow):
    if count_include_pad and not ceil_mode:
        return float(kernel_size[0] * kernel_size[1])
    ones = np.ones((1, 1) + tuple(x_hw))
    if count_include_pad:
        ones = np.pad(ones, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2), constant_values=1.0)
        padding = (0, 0)
    win, _, _ = _pool_windows(ones, kernel_size, stride, padding, (1, 1), ceil_mode, 0.0)
    return win.sum(axis=(4, 5))[0, 0]


def _avg_samples(rng):
    x = rng.normal(size=(2, 3, 7, 6))
    return [Sample((x,), dict(kernel_size=(2, 2), stride=(2, 2))),
            Sample((x,), dict(kernel_size=(3, 3), stride=(2, 1), padding=(1, 1))),
            Sample((x,), dict(kernel_size=(3, 3), stride=(2, 2), padding=(1, 1), count_include_pad=False)),
            Sample((x,), dict(kernel_size=(2, 3), stride=(2, 2), ceil_mode=True), note="ceil")]


@op(meta=_pool_meta, samples=_avg_samples)
def avg_pool2d(x, *, kernel_size, stride, padding=(0, 0), ceil_mode=False, count_include_pad=True):
    win, oh, ow = _pool_windows(x, kernel_size, stride, padding, (1, 1), ceil_mode, 0.0)
    div = _avg_divisor(x.shape[2:], kernel_size, stride, padding, ceil_mode, count_include_pad, oh, ow)
    return (win.sum(axis=(4, 5)) / div).astype(x.dtype, copy=False)


@avg_pool2d.grad
def _(ctx, g):
    x, = ctx.inputs
    return (avg_pool2d_backward(g, input_shape=tuple(x.shape), **ctx.attrs),)


def _apb_meta(g, *, input_shape, **a):
    return TensorMeta(tuple(input_shape), g.dtype)


@op(meta=_apb_meta)
def avg_pool2d_backward(g, *, input_shape, kernel_size, stride, padding=(0, 0), ceil_mode=False,
                        count_include_pad=True):
    """The adjoint of avg_pool2d: spread each output grad over its window."""
    n, c, h, w = input_shape
    oh, ow = g.shape[2:]
    div = _avg_divisor((h, w), kernel_size, stride, padding, ceil_mode, count_include_pad, oh, ow)
    gd = g / div
    ph, pw = padding
    hc = max(h + 2 * ph, (oh - 1) * stride[0] + kernel_size[0])
    wc = max(w + 2 * pw, (ow - 1) * stride[1] + kernel_size[1])
    canvas = np.zeros((n, c, hc, wc), dtype=g.dtype)
    for i in range(kernel_size[0]):
        for j in range(kernel_size[1]):
            canvas[:, :, i:i + (oh - 1) * stride[0] + 1:stride[0], j:j + (ow - 1) * stride[1] + 1:stride[1]] += gd
    return np.ascontiguousarray(canvas[:, :, ph:ph + h, pw:pw + w])


@avg_pool2d_backward.grad
def _(ctx, g):
    a = {k: v for k, v in ctx.attrs.items() if k != "input_shape"}
    return (avg_pool2d(g, **a),)


def _bins(n, o):
    return [(i * n // o, -(-(i + 1) * n // o)) for i in range(o)]


def _aap_meta(x, *, output_size):
    if len(x.shape) < 3:
        raise ShapeError(f"adaptive_avg_pool2d: expected (N,)C,H,W input, got {tuple(x.shape)}")
    return TensorMeta(tuple(x.shape[:-2]) + tuple(output_size), x.dtype)


@op(meta=_aap_meta, samples=lambda rng: [Sample((rng.normal(size=(2, 3, 7, 6)),), dict(output_size=(1, 1))),
                                           Sample((rng.normal(size=(2, 3, 7, 6)),), dict(output_size=(3, 4)))])
def adaptive_avg_pool2d(x, *, output_size):
    """Average over adaptive bins [floor(i*H/o), ceil((i+1)*H/o)) as torch does."""
    oh, ow = output_size
    h, w = x.shape[-2:]
    if (oh, ow) == (1, 1):
        return x.mean(axis=(-2, -1), keepdims=True).astype(x.dtype, copy=False)
    out = np.empty(x.shape[:-2] + (oh, ow), dtype=x.dtype)
    for i, (h0, h1) in enumerate(_bins(h, oh)):
        for j, (w0, w1) in enumerate(_bins(w, ow)):
            out[..., i, j] = x[..., h0:h1, w0:w1].mean(axis=(-2, -1))
    return out


@adaptive_avg_pool2d.grad
def _(ctx, g):
    x, = ctx.inputs
    return (adaptive_avg_pool2d_backward(g, input_shape=tuple(x.shape)),)


@op(meta=lambda g, *, input_shape: TensorMeta(tuple(input_shape), g.dtype))
def adaptive_avg_pool2d_backward(g, *, input_shape):
    """The adjoint of adaptive_avg_pool2d."""
    h, w = input_shape[-2:]
    oh, ow = g.shape[-2:]
    out = np.zeros(tuple(input_shape), dtype=g.dtype)
    for i, (h0, h1) in enumerate(_bins(h, oh)):
        for j, (w0, w1) in enumerate(_bins(w, ow)):
            out[..., h0:h1, w0:w1] += (g[..., i, j] / ((h1 - h0) * (w1 - w0)))[..., None, None]
    return out


@adaptive_avg_pool2d_backward.grad
def _(ctx, g):
    return (adaptive_avg_pool2d(g, output_size=tuple(ctx.inputs[0].shape[-2:])),)
