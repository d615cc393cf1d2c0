"""Shape and layout ops: reshape, permute, expand, repeat, cat, pad, roll, triu/tril."""
import numpy as np

from .._errors import ShapeError
from .registry import Sample, TensorMeta, norm_dim, numel, op, result_dtype, same


def resolve_shape(shape, n):
    """Replace a single -1 in `shape` so that its product is `n`."""
    shape = tuple(shape)
    if sum(1 for s in shape if isinstance(s, int) and s == -1) > 1:
        raise ShapeError(f"only one dimension can be inferred (-1), got {shape}")
    known = 1
    for s in shape:
        if not (isinstance(s, int) and s == -1):
            if isinstance(s, int) and s < 0:
                raise ShapeError(f"invalid shape dimension {s} in {shape}")
            known = known * s
    if any(isinstance(s, int) and s == -1 for s in shape):
        if known == 0 or not (n % known == 0):
            raise ShapeError(f"shape {shape} is invalid for input of size {n}")
        return tuple(n // known if (isinstance(s, int) and s == -1) else s for s in shape)
    if not (known == n):
        raise ShapeError(f"shape {shape} is invalid for input of size {n}")
    return shape


def _reshape_meta(x, *, shape):
    return TensorMeta(resolve_shape(shape, numel(x.shape)), x.dtype)


def _reshape_samples(rng):
    x = rng.normal(size=(2, 3, 4))
    return [Sample((x,), dict(shape=(6, 4))), Sample((x,), dict(shape=(-1,))),
            Sample((x,), dict(shape=(4, -1, 2))), Sample((x[:, :, :1],), dict(shape=(6,)))]


@op(meta=_reshape_meta, samples=_reshape_samples)
def reshape(x, *, shape):
    """A view when the layout allows (numpy rules), else a copy."""
    return x.reshape(resolve_shape(shape, x.size))


@reshape.grad
def _(ctx, g):
    x, = ctx.inputs
    return (g.reshape(x.shape),)


def _check_perm(dims, ndim):
    if len(dims) != ndim or sorted(d % max(ndim, 1) for d in dims) != list(range(ndim)):
        raise ShapeError(f"permute: dims {tuple(dims)} is not a permutation of {ndim} dims")
    return tuple(d % max(ndim, 1) for d in dims)


def _permute_meta(x, *, dims):
    p = _check_perm(dims, len(x.shape))
    return TensorMeta(tuple(x.shape[d] for d in p), x.dtype)


@op(meta=_permute_meta, samples=lambda rng: [Sample((rng.normal(size=(2, 3, 4)),), dict(dims=(2, 0, 1))),
                                               Sample((rng.normal(size=(3, 4)),), dict(dims=(1, 0)))])
def permute(x, *, dims):
    return np.transpose(x, _check_perm(dims, x.ndim))


@permute.grad
def _(ctx, g):
    p = _check_perm(ctx.attrs["dims"], g.ndim)
    return (g.permute(*np.argsort(p).tolist()),)


def _expand_shape(src, shape):
    shape = tuple(shape)
    if len(shape) < len(src):
        raise ShapeError(f"expand: target {shape} has fewer dims than the tensor {tuple(src)}")
    lead = len(shape) - len(src)
    out = []
    for i, s in enumerate(shape):
        if i < lead:
            if isinstance(s, int) and s < 0:
                raise ShapeError(f"expand: -1 not allowed for new leading dim in {shape}")
            out.append(s)
            continue
        d = src[i - lead]
        if isinstance(s, int) and s == -1:
            out.append(d)
        elif d == s or d == 1:
            out.append(s)
        else:
            raise ShapeError(f"expand: the size {d} at dim {i - lead} must match {s} "
                             f"(tensor {tuple(src)} -> {shape}); only size-1 dims expand")
    return tuple(out)


def _expand_meta(x, *, shape):
    return TensorMeta(_expand_shape(tuple(x.shape), shape), x.dtype)


@op(meta=_expand_meta, samples=lambda rng: [Sample((rng.normal(size=(3, 1)),), dict(shape=(2, 3, 4))),
                                              Sample((rng.normal(size=(1, 4)),), dict(shape=(2, 3, -1)))])
def expand(x, *, shape):
    """A broadcast view (read-only, no copy)."""
    return np.broadcast_to(x, _expand_shape(x.shape, shape))


@expand.grad
def _(ctx, g):
    from .elementwise import sum_to
    x, = ctx.inputs
    return (sum_to(g, x.shape),)


def _repeat_meta(x, *, repeats):
    r = tuple(repeats)
    if len(r) < len(x.shape):
        raise ShapeError(f"repeat: {len(r)} repeats for a tensor of rank {len(x.shape)}")
    s = (1,) * (len(r) - len(x.shape)) + tuple(x.shape)
    return TensorMeta(tuple(a * b for a, b in zip(s, r)), x.dtype)


@op(meta=_repeat_meta, samples=lambda rng: [Sample((rng.normal(size=(2, 3)),), dict(repeats=(2, 1))),
                                              Sample((rng.normal(size=(3,)),), dict(repeats=(2, 2)))])
def repeat(x, *, repeats):
    r = tuple(repeats)
    return np.tile(x.reshape((1,) * (len(r) - x.ndim) + x.shape), r)


@repeat.grad
def _(ctx, g):
    x, = ctx.inputs
    r = tuple(ctx.attrs["repeats"])
    s = (1,) * (len(r) - x.ndim) + tuple(x.shape)
    inter = []
    for k, d in zip(r, s):
        inter += [k, d]
    g = g.reshape(inter).sum(dim=tuple(range(0, 2 * len(r), 2)))
    return (g.reshape(x.shape),)


def _cat_meta(*xs, dim=0):
    if not xs:
        raise ShapeError("cat: expected a non-empty list of tensors")
    r = len(xs[0].shape)
    d = norm_dim(dim, r)
    total = 0
    for i, x in enumerate(xs):
        if len(x.shape) != r or any(not (a == b) for j, (a, b) in enumerate(zip(x.shape, xs[0].shape)) if j != d):
            raise ShapeError(f"cat: tensor {i} has shape {tuple(x.shape)}; expected "
                             f"{tuple(xs[0].shape)} except at dim {d}")
        total = total + x.shape[d]
    shape = list(xs[0].shape)
    shape[d] = total
    return TensorMeta(tuple(shape), result_dtype(*[x.dtype for x in xs]))


@op(meta=_cat_meta, samples=lambda rng: [Sample((rng.normal(size=(2, 3)), rng.normal(size=(4, 3))), dict(dim=0)),
                                           Sample((rng.normal(size=(2, 3)), rng.normal(size=(2, 1)),
                                                   rng.normal(size=(2, 2))), dict(dim=-1))])
def cat(*xs, dim=0):
    return np.concatenate(xs, axis=dim)


@cat.grad
def _(ctx, g):
    xs = ctx.inputs
    d = norm_dim(ctx.attrs.get("dim", 0), g.ndim)
    out, start = [], 0
    for x in xs:
        n = x.shape[d]
        out.append(g.narrow(d, start, n))
        start += n
    return tuple(out)


def _pad_meta(x, *, pad, value=0.0):
    p = tuple(pad)
    if len(p) % 2 or len(p) // 2 > len(x.shape):
        raise ShapeError(f"pad: {p} must have an even length of at most 2 x rank {len(x.shape)}")
    shape = list(x.shape)
    for i in range(len(p) // 2):
        shape[-1 - i] = shape[-1 - i] + p[2 * i] + p[2 * i + 1]
    return TensorMeta(tuple(shape), x.dtype)


@op(meta=_pad_meta, samples=lambda rng: [Sample((rng.normal(size=(2, 3, 4)),), dict(pad=(1, 2))),
                                           Sample((rng.normal(size=(2, 3, 4)),), dict(pad=(0, 1, 2, 0), value=1.5)),
                                           Sample((rng.normal(size=(2, 5)),), dict(pad=(-1, 1)), note="crop")])
def pad(x, *, pad, value=0.0):  # noqa: A002
    """Constant padding; `pad` lists (left, right) pairs from the last dim backwards."""
    p = tuple(pad)
    widths = [(0, 0)] * x.ndim
    crop = [slice(None)] * x.ndim
    for i in range(len(p) // 2):
        lo, hi = p[2 * i], p[2 * i + 1]
        widths[x.ndim - 1 - i] = (max(lo, 0), max(hi, 0))
        n = x.shape[x.ndim - 1 - i]
        crop[x.ndim - 1 - i] = slice(max(-lo, 0), n - max(-hi, 0))
    return np.pad(x[tuple(crop)], widths, constant_values=value)


@pad.grad
def _(ctx, g):
    p = tuple(ctx.attrs["pad"])
    return (pad(g, pad=tuple(-v for v in p)),)


def _roll_meta(x, *, shifts, dims=None):
    return same(x)


@op(meta=_roll_meta, samples=lambda rng: [Sample((rng.normal(size=(3, 4)),), dict(shifts=1, dims=1)),
                                            Sample((rng.normal(size=(3, 4)),), dict(shifts=(1, -2), dims=(0, 1))),
                                            Sample((rng.normal(size=(3, 4)),), dict(shifts=5))])
def roll(x, *, shifts, dims=None):
    return np.roll(x, shifts, axis=dims)


@roll.grad
def _(ctx, g):
    s = ctx.attrs["shifts"]
    s = -s if isinstance(s, int) else tuple(-v for v in s)
    return (roll(g, shifts=s, dims=ctx.attrs.get("dims")),)


def _tri_samples(rng):
    return [Sample((rng.normal(size=(4, 5)),), dict(diagonal=0)),
            Sample((rng.normal(size=(2, 4, 4)),), dict(diagonal=1)),
            Sample((rng.normal(size=(3, 3)),), dict(diagonal=-1))]


def _tri_meta(x, *, diagonal=0):
    if len(x.shape) < 2:
        raise ShapeError(f"triu/tril need at least 2 dims, got shape {tuple(x.shape)}")
    return same(x)


@op(meta=_tri_meta, samples=_tri_samples)
def triu(x, *, diagonal=0):
    return np.triu(x, diagonal)


@triu.grad
def _(ctx, g):
    return (triu(g, diagonal=ctx.attrs.get("diagonal", 0)),)


@op(meta=_tri_meta, samples=_tri_samples)
def tril(x, *, diagonal=0):
    return np.tril(x, diagonal)


@tril.grad
def _(ctx, g):
    return (tril(g, diagonal=ctx.attrs.get("diagonal", 0)),)


def _flip_meta(x, *, dims):
    for d in dims:
        norm_dim(d, len(x.shape))
    return same(x)


@op(meta=_flip_meta, samples=lambda rng: [Sample((rng.normal(size=(3, 4)),), dict(dims=(1,)))])
def flip(x, *, dims):
    return np.flip(x, axis=tuple(dims))


@flip.grad
def _(ctx, g):
    return (flip(g, dims=ctx.attrs["dims"]),)
