"""Observers: the range of a float tensor seen over calibration batches.

    obs = make_observer("mse")
    for batch in data: obs.update(activation)
    scale, zero_point = obs.qparams()        # int8 asymmetric per tensor

minmax          min and max over all batches (PyTorch MinMaxObserver)
moving_average  min/max smoothed over batches, m += c * (batch - m), c = 0.01
                (PyTorch MovingAverageMinMaxObserver; the first batch sets it)
percentile      the p-th and (100-p)-th percentiles of all values seen
mse             the clipping range minimizing the int8 rounding + clipping
                squared error of the values seen (a search over 100 shrinks
                of the min/max range, 1 down to 1e-3, as TensorRT / ORT's entropy and
                percentile calibrators search thresholds)
percentile and mse keep a uniform random sample of at most 2^20 values
(reservoir sampling, seeded) rather than every value.
"""
from __future__ import annotations

import numpy as np

from .grids import qparams_int8

OBSERVERS = ("minmax", "moving_average", "percentile", "mse")
_KEEP = 1 << 20


class MinMaxObserver:
    def __init__(self):
        self.lo, self.hi = np.inf, -np.inf

    def update(self, x):
        x = np.asarray(x)
        if x.size:
            self.lo, self.hi = min(self.lo, float(x.min())), max(self.hi, float(x.max()))

    def range(self):
        if self.lo > self.hi:
            raise ValueError("observer saw no data")
        return self.lo, self.hi

    def qparams(self):
        return qparams_int8(*self.range())


class MovingAverageObserver(MinMaxObserver):
    def __init__(self, averaging_constant=0.01):
        super().__init__()
        self.c = averaging_constant

    def update(self, x):
        x = np.asarray(x)
        if not x.size:
            return
        lo, hi = float(x.min()), float(x.max())
        if self.lo > self.hi:
            self.lo, self.hi = lo, hi
        else:
            self.lo += self.c * (lo - self.lo)
            self.hi += self.c * (hi - self.hi)


class _SampleObserver(MinMaxObserver):
    def __init__(self):
        super().__init__()
        self.sample = np.empty(0, np.float32)
        self.seen = 0
        self.rng = np.random.default_rng(0)

    def update(self, x):
        x = np.asarray(x, np.float32).reshape(-1)
        super().update(x)
        if not x.size:
            return
        if self.seen + x.size <= _KEEP:
            self.sample = np.concatenate([self.sample, x])
        else:                       # reservoir: every value seen so far kept with equal probability
            total = self.seen + x.size
            keep_new = self.rng.binomial(_KEEP, x.size / total)
            old = self.rng.choice(self.sample.size, size=min(self.sample.size, _KEEP - keep_new), replace=False)
            new = self.rng.choice(x.size, size=min(x.size, keep_new), replace=False)
            self.sample = np.concatenate([self.sample[old], x[new]])
        self.seen += x.size


class PercentileObserver(_SampleObserver):
    def __init__(self, percentile=99.99):
        super().__init__()
        self.p = percentile

    def range(self):
        super().range()
        return float(np.percentile(self.sample, 100 - self.p)), float(np.percentile(self.sample, self.p))


class MSEObserver(_SampleObserver):
    def range(self):
        lo, hi = super().range()
        x = self.sample.astype(np.float64)
        best, best_err = (lo, hi), np.inf
        for r in np.geomspace(1.0, 1e-3, 100):
            s, z = qparams_int8(lo * r, hi * r)
            q = np.clip(np.rint(x / s) + z, -128, 127)
            err = np.mean(((q - z) * s - x) ** 2)
            if err < best_err:
                best, best_err = (lo * r, hi * r), err
        return best


def make_observer(kind="minmax", **kw):
    table = {"minmax": MinMaxObserver, "moving_average": MovingAverageObserver,
             "percentile": PercentileObserver, "mse": MSEObserver}
    if kind not in table:
        raise ValueError(f"unknown observer {kind!r}; known: {list(OBSERVERS)}")
    return table[kind](**kw)
