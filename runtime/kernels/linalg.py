"""Matrix kernels: BLAS through numpy's matmul writing into the planned output."""
import numpy as np

from .elementwise import gelu_into, sigmoid_into
from .registry import kernel


@kernel("matmul")
def k_matmul(out, a, b):
    if out.ndim == 0:
        out[...] = np.dot(a, b)
    else:
        np.matmul(a, b, out=out)


def _linear(out, x, w, b):
    if x.ndim == 2 or (x.ndim > 2 and x.flags.c_contiguous):
        x2 = x.reshape(-1, x.shape[-1])
        np.matmul(x2, w.T, out=out.reshape(-1, w.shape[0]))
    elif x.ndim == 1:
        np.matmul(x, w.T, out=out)
    else:
        out[...] = np.matmul(x, w.T)
    if b is not None:
        out += b


@kernel("linear")
def k_linear(out, x, w, b=None):
    _linear(out, x, w, b)


ACTS = {
    "relu": lambda o: np.maximum(o, 0, out=o),
    "silu": lambda o: np.multiply(o, _sig(o), out=o),
    "gelu": lambda o: gelu_into(o, o),          # elementwise: in place is safe
    "gelu_tanh": lambda o: gelu_into(o, o, "tanh"),
    "sigmoid": lambda o: sigmoid_into(o, o.copy()),
    "tanh": lambda o: np.tanh(o, out=o),
}


def _sig(o):
    s = np.empty_like(o)
    sigmoid_into(s, o)
    return s


def apply_activation(out, activation):
    if activation is not None:
        if activation not in ACTS:
            raise ValueError(f"unknown activation {activation!r}; known: {sorted(ACTS)}")
        ACTS[activation](out)


@kernel("fused_linear")
def k_fused_linear(out, x, w, b=None, activation=None):
    _linear(out, x, w, b)
    apply_activation(out, activation)


@kernel("einsum")
def k_einsum(out, a, b, equation=""):
    out[...] = np.einsum(equation, a, b, optimize=True)
