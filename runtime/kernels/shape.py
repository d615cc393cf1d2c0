"""Layout kernels: reshape (a view, planned as an alias), permute, expand, cat, pad..."""
import numpy as np

from .registry import kernel

SLOT = "#"


@kernel("reshape")
def k_reshape(out, x, shape=None):
    out[...] = x.reshape(out.shape)


@kernel("permute")
def k_permute(out, x, dims=()):
    out[...] = np.transpose(x, dims)


@kernel("expand")
def k_expand(out, x, shape=None):
    out[...] = np.broadcast_to(x, out.shape)


@kernel("repeat")
def k_repeat(out, x, repeats=()):
    r = tuple(repeats)
    if len(r) != out.ndim or any(a * b != c for a, b, c in zip((1,) * (len(r) - x.ndim) + x.shape, r, out.shape)):
        raise ValueError(f"repeat {r} of shape {x.shape} does not give the planned {out.shape}")
    # out viewed as (r0, s0, r1, s1, ...) takes x broadcast along the repeat axes: np.tile's
    # result without its intermediate copies (6 -> ~1.5 us for a decoder's rotary table)
    s = (1,) * (len(r) - x.ndim) + x.shape
    inter = tuple(v for pair in zip(r, s) for v in pair)
    if out.flags.c_contiguous:
        out.reshape(inter)[...] = x.reshape(tuple(v for n in s for v in (1, n)))
    else:
        out[...] = np.tile(x.reshape(s), r)


@kernel("cat")
def k_cat(out, *xs, dim=0):
    np.concatenate(xs, axis=dim, out=out)


@kernel("pad")
def k_pad(out, x, pad=(), value=0.0):
    p = tuple(pad)
    src = [slice(None)] * x.ndim
    dst = [slice(None)] * x.ndim
    out.fill(value)
    for i in range(len(p) // 2):
        d = x.ndim - 1 - i
        lo, hi = p[2 * i], p[2 * i + 1]
        n = x.shape[d]
        src[d] = slice(max(-lo, 0), n - max(-hi, 0))
        m = n - max(-lo, 0) - max(-hi, 0)
        dst[d] = slice(max(lo, 0), max(lo, 0) + m)
    out[tuple(dst)] = x[tuple(src)]


@kernel("roll")
def k_roll(out, x, shifts=0, dims=None):
    out[...] = np.roll(x, shifts, axis=dims)


@kernel("triu")
def k_triu(out, x, diagonal=0):
    out[...] = np.triu(x, diagonal)


@kernel("tril")
def k_tril(out, x, diagonal=0):
    out[...] = np.tril(x, diagonal)


@kernel("flip")
def k_flip(out, x, dims=()):
    out[...] = np.flip(x, axis=tuple(dims))
