"""Parameter initialisation (torch.nn.init), in place and without autograd.

Fan computations follow torch (He et al. 2015; Glorot & Bengio 2010).
"""
import math

import numpy as np

from .._errors import EdgeTorchError
from ..autograd import grad_mode
from ..random import _rng


def _fill(t, values):
    with grad_mode.no_grad():
        t._data[...] = values
        t._version.v += 1
    return t


def _fans(t):
    if t.ndim < 2:
        raise EdgeTorchError(f"fan in/out need a tensor with at least 2 dims, got shape {tuple(t.shape)}")
    rf = 1
    for s in t.shape[2:]:
        rf *= s
    return t.shape[1] * rf, t.shape[0] * rf


def calculate_gain(nonlinearity, param=None):
    if nonlinearity in ("linear", "conv1d", "conv2d", "sigmoid", "identity"):
        return 1.0
    if nonlinearity == "tanh":
        return 5.0 / 3
    if nonlinearity == "relu":
        return math.sqrt(2.0)
    if nonlinearity == "leaky_relu":
        slope = 0.01 if param is None else param
        return math.sqrt(2.0 / (1 + slope ** 2))
    if nonlinearity == "selu":
        return 3.0 / 4
    raise EdgeTorchError(f"unsupported nonlinearity {nonlinearity!r}")


def uniform_(t, a=0.0, b=1.0, generator=None):
    return _fill(t, _rng(generator).uniform(a, b, size=t.shape))


def normal_(t, mean=0.0, std=1.0, generator=None):
    return _fill(t, _rng(generator).normal(mean, std, size=t.shape))


def trunc_normal_(t, mean=0.0, std=1.0, a=-2.0, b=2.0, generator=None):
    """Normal(mean, std) redrawn until inside [a, b] (absolute bounds, as torch)."""
    rng = _rng(generator)
    out = rng.normal(mean, std, size=t.shape)
    bad = (out < a) | (out > b)
    while bad.any():
        out[bad] = rng.normal(mean, std, size=int(bad.sum()))
        bad = (out < a) | (out > b)
    return _fill(t, out)


def constant_(t, val):
    return _fill(t, val)


def zeros_(t):
    return _fill(t, 0)


def ones_(t):
    return _fill(t, 1)


def eye_(t):
    return _fill(t, np.eye(*t.shape))


def xavier_uniform_(t, gain=1.0, generator=None):
    fi, fo = _fans(t)
    a = gain * math.sqrt(6.0 / (fi + fo))
    return uniform_(t, -a, a, generator)


def xavier_normal_(t, gain=1.0, generator=None):
    fi, fo = _fans(t)
    return normal_(t, 0.0, gain * math.sqrt(2.0 / (fi + fo)), generator)


def kaiming_uniform_(t, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    fi, fo = _fans(t)
    fan = fi if mode == "fan_in" else fo
    bound = calculate_gain(nonlinearity, a) * math.sqrt(3.0 / fan)
    return uniform_(t, -bound, bound, generator)


def kaiming_normal_(t, a=0, mode="fan_in", nonlinearity="leaky_relu", generator=None):
    fi, fo = _fans(t)
    fan = fi if mode == "fan_in" else fo
    return normal_(t, 0.0, calculate_gain(nonlinearity, a) / math.sqrt(fan), generator)


_calculate_fan_in_and_fan_out = _fans
