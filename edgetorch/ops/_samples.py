"""Shared sample-input builders for registry entries (float64, for grad checks)."""
import numpy as np

from .registry import Sample


def unary(rng, positive=False, lo=-2.0, hi=2.0):
    def r(*shape):
        a = rng.uniform(lo, hi, size=shape)
        return np.abs(a) + 0.1 if positive else a
    return [Sample((r(7),)), Sample((r(3, 5),)), Sample((r(2, 3, 4),)), Sample((r(),), note="0-d")]


def binary(rng, positive_b=False):
    def r(*shape, pos=False):
        a = rng.uniform(-2, 2, size=shape)
        return np.abs(a) + 0.5 if pos else a
    return [
        Sample((r(3, 4), r(3, 4, pos=positive_b))),
        Sample((r(2, 3, 4), r(4, pos=positive_b)), note="broadcast"),
        Sample((r(3, 1), r(1, 5, pos=positive_b)), note="broadcast both"),
        Sample((r(5), r(pos=positive_b)), note="0-d operand"),
    ]


def noncontiguous(a):
    """A copy of `a` whose memory is not C-contiguous (strided view)."""
    if not isinstance(a, np.ndarray) or a.ndim == 0:
        return a
    big = np.empty(a.shape + (2,), dtype=a.dtype)
    v = big[..., 1]
    v[...] = a
    return v
