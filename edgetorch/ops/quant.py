"""Quantized ops produced by the exporter's quantization (never in eager code).

Their numpy forwards define the numerics (the grids of edgetorch.quant.grids)
and are the oracle for the runtime's integer kernels:

  linear_q8 / embedding_q8    int8 weights, one float32 scale per output row
  linear_q4 / embedding_q4    int4 weights in row pairs, per-group scales
                              (float16) and optional uint8 zero points
  dynamic=True                activations quantized per row to int8 at run
                              time (symmetric), integer products accumulated
                              exactly (int8-dynamic, 8da4w)
  act_block=32 (linear_q4)    activations quantized to int8 per block of 32
                              inputs at run time (llama.cpp's Q8_0, as its
                              Q4_0 matmul does): int4-weight's default
  quantize/dequantize_per_tensor, conv2d_qs8, linear_qs8, add_qs8
                              static int8: activations int8 per tensor
                              (scale, zero point from calibration), int32
                              accumulation, requantized to the output's grid
"""
import numpy as np

from .._errors import ShapeError
from ..quant import grids as Q
from . import conv as C
from .fused import _act
from .registry import Sample, TensorMeta, op


def _dyn(x, dynamic, act_block=0):
    """x as the kernel sees it: itself, or its per-row (or per-block) int8 grid (float64 for exact
    products)."""
    if act_block:
        xq, d = Q.quantize_blocks_int8(x, act_block)
        xb = xq.reshape(d.shape + (act_block,)).astype(np.float64) * d.astype(np.float64)[..., None]
        return xb.reshape(x.shape)
    if not dynamic:
        return x
    xq, sx = Q.quantize_rows_dynamic(x)
    return (xq.astype(np.float64) * sx.astype(np.float64)[:, None]).reshape(x.shape)


def _check_rows(what, x, n, k, b):
    if x.shape[-1] != k:
        raise ShapeError(f"{what}: input {tuple(x.shape)} does not match weight input dim {k}")
    if b is not None and tuple(b.shape) != (n,):
        raise ShapeError(f"{what}: bias has shape {tuple(b.shape)}; expected ({n},)")
    return TensorMeta(tuple(x.shape[:-1]) + (n,), x.dtype)


# ------------------------------------------------------------------ int8 weights

def _q8_meta(x, wq, scale, b=None, *, activation=None, dynamic=False):
    if np.dtype(wq.dtype) != np.int8 or len(wq.shape) != 2:
        raise ShapeError(f"linear_q8: weight must be 2-d int8, got {wq.dtype}{tuple(wq.shape)}")
    if tuple(scale.shape) != (wq.shape[0],):
        raise ShapeError(f"linear_q8: scale has shape {tuple(scale.shape)}; expected ({wq.shape[0]},)")
    return _check_rows("linear_q8", x, wq.shape[0], wq.shape[1], b)


def _q8_samples(rng):
    wq = rng.integers(-127, 128, size=(5, 7)).astype(np.int8)
    s = rng.uniform(0.001, 0.02, size=5)
    return [Sample((rng.normal(size=(3, 7)), wq, s, rng.normal(size=5)), nondiff=(1, 2)),
            Sample((rng.normal(size=(2, 1, 7)), wq, s, None), dict(activation="silu"), nondiff=(1, 2)),
            Sample((rng.normal(size=(4, 7)), wq, s, rng.normal(size=5)), dict(dynamic=True), nondiff=(1, 2),
                   gradcheck=False, note="rounding of the activation grid")]


@op(meta=_q8_meta, samples=_q8_samples, fused=True)
def linear_q8(x, wq, scale, b=None, *, activation=None, dynamic=False):
    """act(x @ (wq * scale[:, None]).T + b); with dynamic=True x is first put on its per-row int8 grid."""
    w = wq.astype(np.float64) * scale.astype(np.float64)[:, None]
    y = np.matmul(_dyn(x, dynamic), w.T).astype(x.dtype)
    if b is not None:
        y = y + b
    return _act(y, activation)


def _emb_q8_meta(ids, wq, scale):
    if np.dtype(wq.dtype) != np.int8 or len(wq.shape) != 2 or tuple(scale.shape) != (wq.shape[0],):
        raise ShapeError(f"embedding_q8: table {wq.dtype}{tuple(wq.shape)} with scale {tuple(scale.shape)}")
    return TensorMeta(tuple(ids.shape) + (wq.shape[1],), np.dtype(scale.dtype))


@op(meta=_emb_q8_meta, fused=True, samples=lambda rng: [
    Sample((rng.integers(0, 6, size=(2, 3)), rng.integers(-127, 128, size=(6, 4)).astype(np.int8),
            rng.uniform(0.001, 0.02, size=6).astype(np.float32)), nondiff=(0, 1, 2))])
def embedding_q8(ids, wq, scale):
    """Rows of an int8 table times their scales."""
    from .index import check_range
    check_range(ids, wq.shape[0], "embedding_q8")
    return wq[ids].astype(scale.dtype) * scale[ids][..., None]


# ------------------------------------------------------------------ int4 weights

def _q4_check(what, wp, scale, zero, group_size):
    if np.dtype(wp.dtype) != np.uint8 or len(wp.shape) != 2:
        raise ShapeError(f"{what}: packed weight must be 2-d uint8, got {wp.dtype}{tuple(wp.shape)}")
    n, k = scale.shape[0] if len(scale.shape) == 2 else -1, wp.shape[1]
    if group_size not in Q.INT4_GROUPS or k % group_size or len(scale.shape) != 2 \
            or tuple(scale.shape) != (n, k // group_size) or wp.shape[0] != (n + 1) // 2:
        raise ShapeError(f"{what}: packed weight {tuple(wp.shape)}, scale {tuple(scale.shape)} and group size "
                         f"{group_size} do not fit (want scale (N, K/group) and weight (ceil(N/2), K))")
    if zero is not None and (tuple(zero.shape) != tuple(scale.shape) or np.dtype(zero.dtype) != np.uint8):
        raise ShapeError(f"{what}: zero point {zero.dtype}{tuple(zero.shape)}; expected uint8{tuple(scale.shape)}")
    return n, k


def _q4_meta(x, wp, scale, zero=None, b=None, *, group_size, activation=None, dynamic=False, act_block=0):
    n, k = _q4_check("linear_q4", wp, scale, zero, group_size)
    if act_block not in (0, Q.ACT_BLOCK) or (act_block and dynamic):
        raise ShapeError(f"linear_q4: act_block={act_block!r} (with dynamic={dynamic}); expected 0, or "
                         f"{Q.ACT_BLOCK} without dynamic")
    return _check_rows("linear_q4", x, n, k, b)


def _q4_samples(rng):
    out = []
    for n, asym, dyn, blk in ((5, False, False, 0), (6, True, False, 0), (7, False, True, 0), (4, True, True, 0),
                              (5, False, False, 32), (3, True, False, 32)):
        w = rng.normal(size=(n, 64))
        p, s, z = Q.quantize_groups_int4(w, 32, symmetric=not asym)
        rounded = dyn or blk
        out.append(Sample((rng.normal(size=(3, 64)), p, s, z, rng.normal(size=n)),
                          dict(group_size=32, dynamic=dyn, activation="relu" if asym else None, act_block=blk),
                          nondiff=(1, 2, 3), gradcheck=not rounded,
                          note="rounding of the activation grid" * bool(rounded)))
    return out


@op(meta=_q4_meta, samples=_q4_samples, fused=True)
def linear_q4(x, wp, scale, zero=None, b=None, *, group_size, activation=None, dynamic=False, act_block=0):
    """act(x @ W.T + b), W = scale * (q - zero) per group of `group_size` inputs (zero = 8 when absent);
    x on its per-row (dynamic) or per-block (act_block) int8 grid where asked."""
    w = Q.dequantize_int4(wp, scale, zero, group_size, np.float64)
    y = np.matmul(_dyn(x, dynamic, act_block), w.T).astype(x.dtype)
    if b is not None:
        y = y + b
    return _act(y, activation)


def _emb_q4_meta(ids, wp, scale, zero=None, *, group_size):
    n, k = _q4_check("embedding_q4", wp, scale, zero, group_size)
    return TensorMeta(tuple(ids.shape) + (k,), np.dtype(np.float32))


def _emb_q4_samples(rng):
    p, s, z = Q.quantize_groups_int4(rng.normal(size=(7, 64)), 32, symmetric=False)
    return [Sample((rng.integers(0, 7, size=(2, 3)), p, s, z), dict(group_size=32), nondiff=(0, 1, 2, 3))]


@op(meta=_emb_q4_meta, fused=True, samples=_emb_q4_samples)
def embedding_q4(ids, wp, scale, zero=None, *, group_size):
    """Rows of an int4 table, dequantized."""
    from .index import check_range
    n = scale.shape[0]
    check_range(ids, n, "embedding_q4")
    flat = np.asarray(ids).reshape(-1)
    codes = np.where(flat[:, None] % 2 == 0, wp[flat // 2] & 15, wp[flat // 2] >> 4).astype(np.float32)
    s = np.repeat(scale[flat].astype(np.float32), group_size, axis=1)
    z = 8.0 if zero is None else np.repeat(zero[flat].astype(np.float32), group_size, axis=1)
    return ((codes - z) * s).reshape(tuple(np.shape(ids)) + (wp.shape[1],))


# ------------------------------------------------------------------ static int8 activations

def _qpt_meta(x, *, scale, zero_point):
    return TensorMeta(tuple(x.shape), np.dtype(np.int8))


@op(meta=_qpt_meta, fused=True, samples=lambda rng: [
    Sample((rng.normal(size=(3, 5)).astype(np.float32),), dict(scale=0.02, zero_point=-3), nondiff=(0,))])
def quantize_per_tensor(x, *, scale, zero_point):
    """int8 q = clamp(round(x / scale) + zero_point, -128, 127)."""
    return Q.quantize_per_tensor(x, scale, zero_point)


@op(meta=lambda q, *, scale, zero_point: TensorMeta(tuple(q.shape), np.dtype(np.float32)), fused=True,
    samples=lambda rng: [Sample((rng.integers(-128, 128, size=(3, 5)).astype(np.int8),),
                                dict(scale=0.02, zero_point=-3), nondiff=(0,))])
def dequantize_per_tensor(q, *, scale, zero_point):
    """float32 scale * (q - zero_point)."""
    return Q.dequantize_per_tensor(q, scale, zero_point)


def _requant(acc, out_scale, out_zp, activation):
    """float accumulator (already in real units) -> int8 on the output grid; relu clamps at the zero point."""
    q = np.rint(acc / out_scale) + out_zp
    lo = out_zp if activation == "relu" else -128
    if activation not in (None, "relu"):
        raise ValueError(f"static int8 ops fuse relu only, got activation {activation!r}")
    return np.clip(q, max(lo, -128), 127).astype(np.int8)


def _qs8_check(what, xq, wq, wscale):
    if np.dtype(xq.dtype) != np.int8 or np.dtype(wq.dtype) != np.int8:
        raise ShapeError(f"{what}: input and weight must be int8, got {xq.dtype} and {wq.dtype}")
    if tuple(wscale.shape) != (wq.shape[0],):
        raise ShapeError(f"{what}: weight scale {tuple(wscale.shape)}; expected ({wq.shape[0]},)")


def _cqs8_meta(xq, wq, wscale, b=None, *, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
               in_scale, in_zp, out_scale, out_zp, activation=None):
    _qs8_check("conv2d_qs8", xq, wq, wscale)
    m = C._conv_meta(xq, wq, b, stride=stride, padding=padding, dilation=dilation, groups=groups)
    return TensorMeta(m.shape, np.dtype(np.int8))


def _cqs8_samples(rng):
    xq = rng.integers(-128, 128, size=(2, 3, 6, 5)).astype(np.int8)
    wq = rng.integers(-127, 128, size=(4, 3, 3, 3)).astype(np.int8)
    q = dict(in_scale=0.05, in_zp=-7, out_scale=0.4, out_zp=5)
    return [Sample((xq, wq, rng.uniform(0.001, 0.01, 4).astype(np.float32), rng.normal(size=4).astype(np.float32)),
                   dict(padding=(1, 1), activation="relu", **q), nondiff=(0, 1, 2, 3)),
            Sample((xq, wq, rng.uniform(0.001, 0.01, 4).astype(np.float32), None),
                   dict(stride=(2, 1), **q), nondiff=(0, 1, 2, 3))]


@op(meta=_cqs8_meta, fused=True, samples=_cqs8_samples)
def conv2d_qs8(xq, wq, wscale, b=None, *, stride=(1, 1), padding=(0, 0), dilation=(1, 1), groups=1,
               in_scale, in_zp, out_scale, out_zp, activation=None):
    """int8 conv: acc = conv(xq - in_zp, wq) exactly (padding is the zero point), y = acc * in_scale *
    wscale[c] + b, requantized to (out_scale, out_zp) with relu fused."""
    acc = C.conv2d.forward(xq.astype(np.float64) - in_zp, wq.astype(np.float64), None, stride=stride,
                           padding=padding, dilation=dilation, groups=groups)
    y = acc * (np.float64(in_scale) * wscale.astype(np.float64))[None, :, None, None]
    if b is not None:
        y = y + b.astype(np.float64)[None, :, None, None]
    return _requant(y, out_scale, out_zp, activation)


def _lqs8_meta(xq, wq, wscale, b=None, *, in_scale, in_zp, out_scale, out_zp, activation=None):
    _qs8_check("linear_qs8", xq, wq, wscale)
    m = _check_rows("linear_qs8", xq, wq.shape[0], wq.shape[1], b)
    return TensorMeta(m.shape, np.dtype(np.int8))


@op(meta=_lqs8_meta, fused=True, samples=lambda rng: [
    Sample((rng.integers(-128, 128, size=(3, 7)).astype(np.int8), rng.integers(-127, 128, size=(5, 7)).astype(np.int8),
            rng.uniform(0.001, 0.01, 5).astype(np.float32), rng.normal(size=5).astype(np.float32)),
           dict(in_scale=0.05, in_zp=3, out_scale=0.1, out_zp=-2), nondiff=(0, 1, 2, 3))])
def linear_qs8(xq, wq, wscale, b=None, *, in_scale, in_zp, out_scale, out_zp, activation=None):
    """int8 linear: acc = (xq - in_zp) @ wq.T exactly, requantized like conv2d_qs8."""
    acc = np.matmul(xq.astype(np.float64) - in_zp, wq.astype(np.float64).T)
    y = acc * (np.float64(in_scale) * wscale.astype(np.float64))
    if b is not None:
        y = y + b.astype(np.float64)
    return _requant(y, out_scale, out_zp, activation)


def _aqs8_meta(a, b, *, a_scale, a_zp, b_scale, b_zp, out_scale, out_zp, activation=None):
    if np.dtype(a.dtype) != np.int8 or np.dtype(b.dtype) != np.int8 or tuple(a.shape) != tuple(b.shape):
        raise ShapeError(f"add_qs8: inputs must be int8 of one shape, got {a.dtype}{tuple(a.shape)} and "
                         f"{b.dtype}{tuple(b.shape)}")
    return TensorMeta(tuple(a.shape), np.dtype(np.int8))


@op(meta=_aqs8_meta, fused=True, samples=lambda rng: [
    Sample((rng.integers(-128, 128, size=(2, 3, 4)).astype(np.int8), rng.integers(-128, 128, size=(2, 3, 4)).astype(np.int8)),
           dict(a_scale=0.05, a_zp=3, b_scale=0.02, b_zp=-9, out_scale=0.06, out_zp=-1, activation="relu"),
           nondiff=(0, 1))])
def add_qs8(a, b, *, a_scale, a_zp, b_scale, b_zp, out_scale, out_zp, activation=None):
    """int8 a + b on three grids, relu fused."""
    y = (a.astype(np.float64) - a_zp) * a_scale + (b.astype(np.float64) - b_zp) * b_scale
    return _requant(y, out_scale, out_zp, activation)


# ------------------------------------------------------------------ weight-only conv

def _dqc_meta(wq, scale):
    if np.dtype(wq.dtype) != np.int8 or len(wq.shape) < 2 or tuple(scale.shape) != (wq.shape[0],):
        raise ShapeError(f"dequantize_per_channel: weight {wq.dtype}{tuple(wq.shape)} with scale "
                         f"{tuple(scale.shape)}; expected int8 and ({wq.shape[0] if wq.shape else '?'},)")
    return TensorMeta(tuple(wq.shape), np.dtype(np.float32))


@op(meta=_dqc_meta, fused=True, samples=lambda rng: [
    Sample((rng.integers(-127, 128, size=(4, 3, 3, 3)).astype(np.int8), rng.uniform(0.001, 0.01, 4).astype(np.float32)),
           nondiff=(0, 1))])
def dequantize_per_channel(wq, scale):
    """float32 weight wq * scale along axis 0 (int8-weight convolutions read their weight through this)."""
    return (wq.astype(np.float32) * scale.astype(np.float32).reshape((-1,) + (1,) * (wq.ndim - 1)))
