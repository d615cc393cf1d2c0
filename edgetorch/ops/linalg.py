"""Matrix products: matmul (batched, broadcasting), linear, two-operand einsum."""
import numpy as np

from .._errors import ShapeError
from .elementwise import sum_to
from .registry import Sample, TensorMeta, broadcast_shapes, op, result_dtype


def _matmul_meta(a, b):
    sa, sb = tuple(a.shape), tuple(b.shape)
    if len(sa) == 0 or len(sb) == 0:
        raise ShapeError(f"both arguments to matmul need at least 1 dimension, got {sa} and {sb}")
    ka = sa[-1]
    kb = sb[-2] if len(sb) >= 2 else sb[0]
    if not (ka == kb):
        raise ShapeError(f"input 1 has shape {sb}; expected ({ka}, *) to match input 0's "
                         f"last dim {ka} (input 0 has shape {sa})")
    batch = broadcast_shapes(sa[:-2], sb[:-2])
    out = batch + (sa[-2:-1] if len(sa) >= 2 else ()) + (sb[-1:] if len(sb) >= 2 else ())
    return TensorMeta(out, result_dtype(a.dtype, b.dtype))


def _matmul_samples(rng):
    r = rng.normal
    return [Sample((r(size=(3, 4)), r(size=(4, 5)))),
            Sample((r(size=(2, 3, 4)), r(size=(4, 5))), note="batched x matrix"),
            Sample((r(size=(2, 1, 3, 4)), r(size=(3, 4, 2))), note="broadcast batch"),
            Sample((r(size=(4,)), r(size=(4, 5))), note="vector x matrix"),
            Sample((r(size=(3, 4)), r(size=(4,))), note="matrix x vector"),
            Sample((r(size=(4,)), r(size=(4,))), note="dot")]


@op(meta=_matmul_meta, samples=_matmul_samples)
def matmul(a, b):
    return np.matmul(a, b)


@matmul.grad
def _(ctx, g):
    a, b = ctx.inputs
    n = ctx.needs_input_grad
    if a.ndim == 1 and b.ndim == 1:
        return (g * b if n[0] else None, g * a if n[1] else None)
    a2 = a.unsqueeze(0) if a.ndim == 1 else a
    b2 = b.unsqueeze(-1) if b.ndim == 1 else b
    g2 = g.unsqueeze(-2) if a.ndim == 1 else g
    g2 = g2.unsqueeze(-1) if b.ndim == 1 else g2
    ga = gb = None
    if n[0]:
        ga = sum_to(matmul(g2, b2.mT), a2.shape).reshape(a.shape)
    if n[1]:
        gb = sum_to(matmul(a2.mT, g2), b2.shape).reshape(b.shape)
    return ga, gb


def _linear_meta(x, w, b=None):
    sx, sw = tuple(x.shape), tuple(w.shape)
    if len(sw) != 2 or not (sx[-1] == sw[1]):
        raise ShapeError(f"input has shape {sx}; expected its last dim to equal the weight's "
                         f"in_features {sw[1] if len(sw) == 2 else '?'} (weight shape {sw})")
    if b is not None and not (tuple(b.shape) == (sw[0],)):
        raise ShapeError(f"bias has shape {tuple(b.shape)}; expected ({sw[0]},)")
    return TensorMeta(sx[:-1] + (sw[0],), result_dtype(x.dtype, w.dtype))


def _linear_samples(rng):
    r = rng.normal
    return [Sample((r(size=(3, 4)), r(size=(5, 4)), r(size=(5,)))),
            Sample((r(size=(2, 3, 4)), r(size=(5, 4)), None), note="no bias, 3-d"),
            Sample((r(size=(4,)), r(size=(2, 4)), r(size=(2,))), note="1-d input")]


@op(meta=_linear_meta, samples=_linear_samples)
def linear(x, w, b=None):
    """y = x @ w.T + b (weight stored (out_features, in_features), as torch)."""
    y = np.matmul(x, w.T)
    if b is not None:
        y += b
    return y


@linear.grad
def _(ctx, g):
    x, w, b = ctx.inputs
    n = ctx.needs_input_grad
    gx = matmul(g, w) if n[0] else None
    gw = gb = None
    if n[1]:
        g2 = g.reshape(-1, w.shape[0])
        gw = matmul(g2.mT, x.reshape(-1, w.shape[1]))
    if b is not None and n[2]:
        gb = g.reshape(-1, w.shape[0]).sum(dim=0)
    return gx, gw, gb


def _parse_einsum(eq, na, nb):
    if "->" not in eq:
        raise ShapeError(f"einsum equation {eq!r} needs an explicit '->' output")
    ins, out = eq.replace(" ", "").split("->")
    ops = ins.split(",")
    if len(ops) != 2 or "." in eq:
        raise ShapeError(f"einsum supports two operands without '...'; got {eq!r}")
    sa, sb = ops
    if len(sa) != na or len(sb) != nb:
        raise ShapeError(f"einsum {eq!r}: operand ranks {na} and {nb} do not match "
                         f"subscripts {sa!r} and {sb!r}")
    return sa, sb, out


def _einsum_meta(a, b, *, equation):
    sa, sb, out = _parse_einsum(equation, len(a.shape), len(b.shape))
    size = {}
    for subs, shp in ((sa, a.shape), (sb, b.shape)):
        for c, d in zip(subs, shp):
            if c in size and not (size[c] == d) and not (d == 1 or size[c] == 1):
                raise ShapeError(f"einsum {equation!r}: index {c!r} is {size[c]} in one operand "
                                 f"and {d} in another")
            if c not in size or size[c] == 1:
                size[c] = d
    return TensorMeta(tuple(size[c] for c in out), result_dtype(a.dtype, b.dtype))


def _einsum_samples(rng):
    r = rng.normal
    return [Sample((r(size=(3, 4)), r(size=(4, 5))), dict(equation="ij,jk->ik")),
            Sample((r(size=(2, 3, 4)), r(size=(2, 4, 5))), dict(equation="bij,bjk->bik")),
            Sample((r(size=(2, 3, 6, 4)), r(size=(2, 3, 7, 4))), dict(equation="bhqd,bhkd->bhqk")),
            Sample((r(size=(3,)), r(size=(5,))), dict(equation="i,j->ij"), note="outer"),
            Sample((r(size=(3, 4)), r(size=(3, 4))), dict(equation="ij,ij->i"), note="rowwise dot")]


@op(meta=_einsum_meta, samples=_einsum_samples)
def einsum(a, b, *, equation):
    """Two-operand einsum with an explicit output ('ij,jk->ik')."""
    _parse_einsum(equation, a.ndim, b.ndim)
    return np.asarray(np.einsum(equation, a, b, optimize=True))


@einsum.grad
def _(ctx, g):
    a, b = ctx.inputs
    sa, sb, out = _parse_einsum(ctx.attrs["equation"], a.ndim, b.ndim)
    res = []
    for this, other, t, o in ((sa, sb, a, b), (sb, sa, b, a)):
        if len(set(this)) != len(this) or any(c not in out and c not in other for c in this):
            raise ShapeError(f"einsum backward: equation {ctx.attrs['equation']!r} is not "
                             "supported for gradients (repeated or summed-out-alone index)")
        res.append(einsum(g, o, equation=f"{out},{other}->{this}"))
    return tuple(res)
