"""Creation ops. Eager code calls numpy directly; during capture, creation goes
through these entries so sizes that depend on dynamic dims stay symbolic."""
import numpy as np

from .._errors import ShapeError
from .registry import Sample, TensorMeta, op


def _arange_meta(*, end, start=0, step=1, dtype="int64"):
    if step == 0:
        raise ShapeError("arange: step must be nonzero")
    n = (end - start + step - 1) // step if step > 0 else (start - end - step - 1) // (-step)
    return TensorMeta((n,), np.dtype(dtype))


@op(meta=_arange_meta, samples=lambda rng: [Sample((), dict(end=5)), Sample((), dict(start=2, end=11, step=3)),
                                              Sample((), dict(start=0, end=7, dtype="float32"))])
def arange(*, end, start=0, step=1, dtype="int64"):
    return np.arange(start, end, step).astype(dtype)


def _full_meta(*, shape, value=0.0, dtype="float32"):
    if any(isinstance(s, int) and s < 0 for s in shape):
        raise ShapeError(f"full: negative dimension in shape {tuple(shape)}")
    return TensorMeta(tuple(shape), np.dtype(dtype))


@op(meta=_full_meta, samples=lambda rng: [Sample((), dict(shape=(2, 3), value=1.5)),
                                            Sample((), dict(shape=(4,), value=0, dtype="int64"))])
def full(*, shape, value=0.0, dtype="float32"):
    return np.full(tuple(shape), value, dtype=dtype)
