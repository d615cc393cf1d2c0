"""Quantized ops produced by the exporter's quantization (never in eager code).

Weights are int8 with one float32 scale per output row (symmetric, axis 0):
w ~= wq * scale[:, None].  The forwards dequantize and are the oracle for
the runtime's integer kernels.
"""
import numpy as np

from .._errors import ShapeError
from .fused import _act
from .registry import Sample, TensorMeta, op


def _q8_meta(x, wq, scale, b=None, *, activation=None):
    if np.dtype(wq.dtype) != np.int8 or len(wq.shape) != 2:
        raise ShapeError(f"linear_q8: weight must be 2-d int8, got {wq.dtype}{tuple(wq.shape)}")
    if tuple(scale.shape) != (wq.shape[0],):
        raise ShapeError(f"linear_q8: scale has shape {tuple(scale.shape)}; expected ({wq.shape[0]},)")
    if not (x.shape[-1] == wq.shape[1]):
        raise ShapeError(f"linear_q8: input {tuple(x.shape)} does not match weight {tuple(wq.shape)}")
    return TensorMeta(tuple(x.shape[:-1]) + (wq.shape[0],), x.dtype)


def _q8_samples(rng):
    wq = rng.integers(-127, 128, size=(5, 7)).astype(np.int8)
    s = rng.uniform(0.001, 0.02, size=5)
    return [Sample((rng.normal(size=(3, 7)), wq, s, rng.normal(size=5)), nondiff=(1, 2)),
            Sample((rng.normal(size=(2, 1, 7)), wq, s, None), dict(activation="silu"), nondiff=(1, 2))]


@op(meta=_q8_meta, samples=_q8_samples, fused=True)
def linear_q8(x, wq, scale, b=None, *, activation=None):
    """act(x @ (wq * scale[:, None]).T + b) with int8 weights and per-row float scales."""
    w = wq.astype(x.dtype) * scale.astype(x.dtype)[:, None]
    y = np.matmul(x, w.T)
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
