"""Quantization grids: the one definition of how floats map to integers.

The exporter's quantize(), the quantized ops' numpy references and
quantization-aware training all call these, so a weight fake-quantized in
training lands on exactly the integers the exporter writes.

Schemes (w ~= dequantized value):
  int8 per output row, symmetric      w ~= s[n] * q,            q in [-127, 127]
      (TorchAO int8 weight-only, ONNX Runtime per-channel weights)
  int4 per group of the input dim     w ~= s[n, g] * (q - z[n, g]),  q in [0, 15]
      symmetric: z = 8 and s = max|w| / 7.5 (TorchAO's int4 symmetric grid,
      -8..7 shifted to 0..15); asymmetric: s = (max - min) / 15,
      z = round(-min / s) in [0, 15] (TorchAO / GPTQ affine grid).
      Scales are stored as float16, and values are rounded on the float16
      scale, so the file and the grid agree exactly.
  int8 per tensor, asymmetric         x ~= s * (q - z),  q in [-128, 127]
      (activations of the static scheme; the range always contains 0 so
      zero padding and ReLU are exact)
  int8 per row, symmetric, dynamic    x ~= sx[m] * q,    q in [-127, 127]
      (activations of the dynamic schemes, computed at run time)
  int8 per block of 32, symmetric     x ~= d[m, b] * q,  q in [-127, 127]
      (int4-weight's activations inside its matmul, computed at run time:
      llama.cpp's Q8_0 block, which its Q4_0 dot product uses the same way)

int4 packing ("row pairs"): byte [p, k] holds row 2p's value at column k in
its low nibble and row 2p+1's in the high nibble; an odd last row pairs with
zeros.  The GEMV reads one contiguous byte stream per two output rows, which
vectorizes in Numba where the nibble-per-column layout of llama.cpp's Q4_0
does not (measured in docs/quantization.md).
"""
from __future__ import annotations

import numpy as np

INT4_GROUPS = (32, 64, 128, 256)


def quantize_rows_int8(w):
    """(wq int8, scale float32) with w ~= wq * scale[:, None]; all-zero rows get scale 1."""
    w = np.asarray(w, dtype=np.float32)
    amax = np.abs(w).max(axis=1)
    scale = np.where(amax > 0, amax / 127.0, 1.0).astype(np.float32)
    wq = np.clip(np.rint(w / scale[:, None]), -127, 127).astype(np.int8)
    return wq, scale


def int4_params(w, group_size, symmetric=True):
    """float16 scales and uint8 zero points (None when symmetric) per (row, group)."""
    w = np.asarray(w, dtype=np.float32)
    n, k = w.shape
    if group_size not in INT4_GROUPS or k % group_size:
        raise ValueError(f"int4 groups: input dim {k} is not a multiple of group size {group_size} "
                         f"(sizes {INT4_GROUPS})")
    g = w.reshape(n, k // group_size, group_size)
    if symmetric:
        amax = np.abs(g).max(axis=2)
        s = _f16_scale(amax / 7.5)
        return s, None
    lo, hi = np.minimum(g.min(axis=2), 0), np.maximum(g.max(axis=2), 0)
    s = _f16_scale((hi - lo) / 15.0)
    z = np.clip(np.rint(-lo / s.astype(np.float32)), 0, 15).astype(np.uint8)
    return s, z


def _f16_scale(s):
    s = np.asarray(s, np.float32).astype(np.float16)
    return np.where((s > 0) & np.isfinite(s), s, np.float16(1.0)).astype(np.float16)


def int4_codes(w, scale, zero, group_size):
    """Unsigned 4-bit codes q in [0, 15] of w on the grid (scale, zero)."""
    w = np.asarray(w, dtype=np.float32)
    n, k = w.shape
    s = np.repeat(scale.astype(np.float32), group_size, axis=1)
    z = 8.0 if zero is None else np.repeat(zero.astype(np.float32), group_size, axis=1)
    return np.clip(np.rint(w / s) + z, 0, 15).astype(np.uint8)


def pack_int4(q):
    """(N, K) codes in [0, 15] -> (ceil(N/2), K) uint8 row pairs."""
    q = np.asarray(q, np.uint8)
    if q.shape[0] % 2:
        q = np.concatenate([q, np.zeros((1, q.shape[1]), np.uint8)])
    return np.ascontiguousarray(q[0::2] | (q[1::2] << 4))


def unpack_int4(packed, n):
    """(ceil(N/2), K) row pairs -> (N, K) codes."""
    packed = np.asarray(packed, np.uint8)
    q = np.empty((packed.shape[0] * 2, packed.shape[1]), np.uint8)
    q[0::2] = packed & 15
    q[1::2] = packed >> 4
    return q[:n]


def quantize_groups_int4(w, group_size=32, symmetric=True):
    """(packed uint8 (ceil(N/2), K), scale float16 (N, K/G), zero uint8 (N, K/G) or None)."""
    scale, zero = int4_params(w, group_size, symmetric)
    return pack_int4(int4_codes(w, scale, zero, group_size)), scale, zero


def dequantize_int4(packed, scale, zero, group_size, dtype=np.float32):
    """float (N, K) weights from row-pair codes and per-group scale / zero point."""
    n = scale.shape[0]
    q = unpack_int4(packed, n).astype(dtype)
    s = np.repeat(scale.astype(dtype), group_size, axis=1)
    z = 8.0 if zero is None else np.repeat(zero.astype(dtype), group_size, axis=1)
    return (q - z) * s


def fake_quant_int4(w, group_size=32, symmetric=True):
    """w rounded onto its int4 group grid (float in, float out)."""
    scale, zero = int4_params(w, group_size, symmetric)
    return dequantize_int4(pack_int4(int4_codes(w, scale, zero, group_size)), scale, zero, group_size)


def fake_quant_rows_int8(w):
    wq, s = quantize_rows_int8(w)
    return wq.astype(np.float32) * s[:, None]


def qparams_int8(lo, hi):
    """(scale, zero_point) of the asymmetric int8 grid covering [min(lo, 0), max(hi, 0)]."""
    lo, hi = min(float(lo), 0.0), max(float(hi), 0.0)
    scale = (hi - lo) / 255.0
    if not np.isfinite(scale) or scale <= 0:
        return 1.0, 0
    scale = float(np.float32(scale))
    zp = int(np.clip(np.rint(-128 - lo / scale), -128, 127))
    return scale, zp


def quantize_per_tensor(x, scale, zero_point):
    return np.clip(np.rint(np.asarray(x, np.float32) / np.float32(scale)) + zero_point, -128, 127).astype(np.int8)


def dequantize_per_tensor(q, scale, zero_point, dtype=np.float32):
    return ((q.astype(np.int32) - zero_point).astype(dtype) * dtype(scale)).astype(dtype)


def quantize_rows_dynamic(x):
    """Per-row symmetric int8 of float activations: (xq int8, sx float32 (rows,)), x ~= xq * sx[:, None]."""
    x2 = np.asarray(x, np.float32).reshape(-1, np.shape(x)[-1])
    amax = np.abs(x2).max(axis=1) if x2.shape[1] else np.zeros(x2.shape[0], np.float32)
    sx = np.where(amax > 0, amax / np.float32(127.0), np.float32(1.0)).astype(np.float32)
    xq = np.clip(np.rint(x2 / sx[:, None]), -127, 127).astype(np.int8)
    return xq, sx


def fake_quant_rows_dynamic(x):
    xq, sx = quantize_rows_dynamic(x)
    return (xq.astype(np.float32) * sx[:, None]).reshape(np.shape(x))


ACT_BLOCK = 32      # the activation block of int4-weight's matmul (Q8_0)


def quantize_blocks_int8(x, block=ACT_BLOCK):
    """Per-block symmetric int8 of float activations along the last dim: (xq int8 (rows, K), d float32
    (rows, K // block)), x ~= xq * d per block; d = max|x| / 127 (1 for an all-zero block) and
    xq = rint(x * (1 / d)), all in float32 (the runtime's kernel rounds the same way)."""
    x2 = np.asarray(x, np.float32).reshape(-1, np.shape(x)[-1])
    if x2.shape[1] % block:
        raise ValueError(f"activation blocks of {block} do not divide the input width {x2.shape[1]}")
    xb = x2.reshape(x2.shape[0], -1, block)
    amax = np.abs(xb).max(axis=2) if xb.size else np.zeros(xb.shape[:2], np.float32)
    with np.errstate(invalid="ignore"):
        d = np.where(amax == 0, np.float32(1.0), amax / np.float32(127.0)).astype(np.float32)  # NaN stays NaN
        inv = (np.float32(1.0) / d).astype(np.float32)
        q = np.rint(xb * inv[..., None])
    q = np.clip(np.nan_to_num(q, nan=0.0), -127, 127).astype(np.int8)
    return q.reshape(x2.shape), d


def fake_quant_blocks_int8(x, block=ACT_BLOCK):
    xq, d = quantize_blocks_int8(x, block)
    return (xq.reshape(d.shape + (block,)).astype(np.float32) * d[..., None]).reshape(np.shape(x))
