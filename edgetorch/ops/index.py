"""Indexing ops: getitem / index_put (basic and advanced), gather, scatter_add,
index_select, index_add."""
import numpy as np

from .._errors import ShapeError
from .registry import Sample, TensorMeta, norm_dim, op, same

SLOT = "#"  # marks where a tensor index sits in an `index` spec


class IndexRangeError(ShapeError, IndexError):
    """An index tensor holds a value outside the indexed dim."""


def check_range(idx, n, what):
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = idx.min() if idx.min() < 0 else idx.max()
        raise IndexRangeError(f"{what}: index {int(bad)} is out of range for a dim of size {n}")


def _key(index, arrays):
    it = iter(arrays)
    return tuple(next(it) if (isinstance(e, str) and e == SLOT) else e for e in index)


def _split_key(index, arrays):
    """torch's rule: integer indices act as basic indexing, before tensor indices.

    numpy instead counts ints as advanced when tensors are present (which moves
    the result dims), so a key mixing both is applied in two steps: the basic
    part (a view), then the tensor part on what is left.
    """
    has_t = any(isinstance(e, str) and e == SLOT for e in index)
    if not has_t or not any(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in index):
        return _key(index, arrays), None
    it = iter(arrays)
    k1, k2 = [], []
    for e in index:
        if isinstance(e, str) and e == SLOT:
            k1.append(slice(None))
            k2.append(next(it))
        elif isinstance(e, (int, np.integer)):
            k1.append(e)
        elif e is None:
            k1.append(None)
            k2.append(slice(None))
        else:
            k1.append(e)
            k2.append(Ellipsis if e is Ellipsis else slice(None))
    return tuple(k1), tuple(k2)


def _slice_len(n, sl):
    """Length of n[sl] in plain arithmetic (symbolic n and bounds allowed)."""
    from ..symbolic import SymInt, sym_max, sym_min
    start, stop, step = sl.start, sl.stop, 1 if sl.step is None else sl.step
    if step == 0:
        raise ShapeError("slice step cannot be zero")
    if step < 0 or isinstance(step, SymInt):
        return len(range(int(n))[slice(None if start is None else int(start),
                                        None if stop is None else int(stop), int(step))])
    start = 0 if start is None else (start + n if start < 0 else start)
    stop = n if stop is None else (stop + n if stop < 0 else stop)
    start = sym_min(sym_max(start, 0), n)
    stop = sym_min(sym_max(stop, 0), n)
    return sym_max((stop - start + step - 1) // step, 0)


def _getitem_meta(x, *idx, index):
    """numpy's indexing rules: basic indices in order; advanced (tensor) indices
    broadcast together and go where the first one is when they are adjacent,
    else to the front.  A bool mask's length depends on data: the rule gives
    the upper bound (every element selected)."""
    from .registry import broadcast_shapes, numel
    shape = tuple(x.shape)
    items = list(index)
    metas = iter(idx)
    tens = {}
    used = 0
    for k, e in enumerate(items):
        if isinstance(e, str) and e == SLOT:
            m = next(metas)
            tens[k] = m
            used += len(m.shape) if np.dtype(m.dtype) == np.bool_ else 1
        elif e is not None and e is not Ellipsis:
            used += 1
    if used > len(shape):
        raise ShapeError(f"too many indices ({used}) for a tensor of rank {len(shape)}")
    ell = [k for k, e in enumerate(items) if e is Ellipsis]
    fill = [slice(None)] * (len(shape) - used)
    if ell:
        items = items[:ell[0]] + fill + items[ell[0] + 1:]
        tens = {(k if k < ell[0] else k + len(fill) - 1): m for k, m in tens.items()}
    else:
        items = items + fill
    out, adv, adv_at, last, apart, dim = [], [], None, None, False, 0
    for k, e in enumerate(items):
        is_adv = k in tens  # ints are basic indices (torch), not advanced (numpy)
        if is_adv:
            if adv_at is None:
                adv_at = len(out)
            elif last != k - 1:
                apart = True
            last = k
        if k in tens:
            m = tens[k]
            if np.dtype(m.dtype) == np.bool_:
                adv.append((numel(m.shape),))
                dim += len(m.shape)
            else:
                adv.append(tuple(m.shape))
                dim += 1
        elif e is None:
            out.append(1)
        elif isinstance(e, int):
            n = shape[dim]
            if isinstance(n, int) and not isinstance(e, bool) and not (-n <= e < n) and type(n) is int:
                raise ShapeError(f"index {e} is out of bounds for dim {dim} of size {n}")
            dim += 1
        elif isinstance(e, slice):
            out.append(_slice_len(shape[dim], e))
            dim += 1
        else:
            raise ShapeError(f"unsupported index item {e!r}")
    if adv:
        b = broadcast_shapes(*adv)
        pos = 0 if apart else adv_at
        out = out[:pos] + list(b) + out[pos:]
    return TensorMeta(tuple(out), x.dtype)


def _getitem_samples(rng):
    x = rng.normal(size=(4, 5, 6))
    return [
        Sample((x,), dict(index=(1,))),
        Sample((x,), dict(index=(slice(1, 3), Ellipsis, slice(None, None, 2)))),
        Sample((x,), dict(index=(None, -1, slice(4, 0, -2)))),
        Sample((x, np.array([3, 0, 3])), dict(index=(SLOT,)), nondiff=(1,), note="int array, repeated"),
        Sample((x, np.array([[0, 2], [1, 1]]), np.array([4, 0])), dict(index=(slice(None), SLOT, SLOT)),
               nondiff=(1, 2), note="two advanced, broadcast"),
        Sample((x, np.ones((4, 5), dtype=bool)), dict(index=(SLOT,)), nondiff=(1,), note="bool mask all"),
        Sample((x, np.array([1, 0]), np.array([[2], [5]])), dict(index=(SLOT, slice(1, 4), SLOT)), nondiff=(1, 2),
               note="advanced apart -> front"),
        Sample((x, np.array([3, 1])), dict(index=(0, slice(None), SLOT)), nondiff=(1,), note="int + advanced"),
        Sample((x, rng.random((4, 5)) > 0.5), dict(index=(SLOT, slice(1, 3))), nondiff=(1,),
               note="bool mask, data-dependent"),
    ]


@op(meta=_getitem_meta, samples=_getitem_samples)
def getitem(x, *idx, index):
    """x[index]; tensor indices are inputs, the rest of the key is an attribute."""
    k1, k2 = _split_key(index, idx)
    return x[k1] if k2 is None else x[k1][k2]


@getitem.grad
def _(ctx, g):
    x, *idx = ctx.inputs
    z = x.new_zeros(x.shape).to(g.dtype)
    return (index_put(z, g, *idx, index=ctx.attrs["index"], accumulate=True),) + (None,) * len(idx)


def _index_put_meta(base, values, *idx, index, accumulate=False):
    return same(base)


def _index_put_samples(rng):
    b = rng.normal(size=(4, 5))
    return [Sample((b, rng.normal(size=(5,))), dict(index=(2,))),
            Sample((b, rng.normal(size=(3, 5)), np.array([0, 2, 0])), dict(index=(SLOT,), accumulate=True),
                   nondiff=(2,)),
            Sample((b, rng.normal(size=()), ), dict(index=(slice(1, 3), slice(None, None, 2))))]


@op(meta=_index_put_meta, samples=_index_put_samples)
def index_put(base, values, *idx, index, accumulate=False):
    """A copy of `base` with `base[index] = values` (or += with repeats summed)."""
    out = np.array(base, copy=True)
    k1, k2 = _split_key(index, idx)
    target, key = (out, k1) if k2 is None else (out[k1], k2)   # out[k1] is a view
    if accumulate:
        np.add.at(target, key, values)
    else:
        target[key] = values
    return out


@index_put.grad
def _(ctx, g):
    from .elementwise import sum_to
    base, values, *idx = ctx.inputs
    index, acc = ctx.attrs["index"], ctx.attrs.get("accumulate", False)
    gb = g if acc else index_put(g, g.new_zeros(()), *idx, index=index)
    gv = sum_to(getitem(g, *idx, index=index), values.shape)
    return (gb, gv) + (None,) * len(idx)


def _gather_meta(x, index, *, dim):
    d = norm_dim(dim, len(x.shape))
    if len(index.shape) != len(x.shape):
        raise ShapeError(f"gather: index has rank {len(index.shape)}, input has rank {len(x.shape)}")
    return TensorMeta(tuple(index.shape), x.dtype) if d is not None else None


def _gather_samples(rng):
    x = rng.normal(size=(3, 5))
    return [Sample((x, rng.integers(0, 5, size=(3, 4))), dict(dim=1), nondiff=(1,)),
            Sample((x, rng.integers(0, 3, size=(2, 5))), dict(dim=0), nondiff=(1,))]


@op(meta=_gather_meta, samples=_gather_samples)
def gather(x, index, *, dim):
    d = norm_dim(dim, x.ndim)
    check_range(index, x.shape[d], "gather")
    xs = x[tuple(slice(None) if i == d else slice(0, s) for i, s in enumerate(index.shape))]
    return np.take_along_axis(xs, index.astype(np.intp, copy=False), axis=d)


@gather.grad
def _(ctx, g):
    x, index = ctx.inputs
    return scatter_add(x.new_zeros(x.shape).to(g.dtype), index, g, dim=ctx.attrs["dim"]), None


def _full_index(index, d):
    grids = list(np.indices(index.shape, sparse=True))
    grids[d] = index.astype(np.intp, copy=False)
    return tuple(grids)


def _scatter_meta(x, index, src, *, dim):
    norm_dim(dim, len(x.shape))
    return same(x)


def _scatter_samples(rng):
    return [Sample((rng.normal(size=(3, 5)), rng.integers(0, 5, size=(3, 4)), rng.normal(size=(3, 4))),
                   dict(dim=1), nondiff=(1,)),
            Sample((rng.normal(size=(4, 3)), rng.integers(0, 4, size=(6, 3)), rng.normal(size=(6, 3))),
                   dict(dim=0), nondiff=(1,))]


@op(meta=_scatter_meta, samples=_scatter_samples)
def scatter_add(x, index, src, *, dim):
    d = norm_dim(dim, x.ndim)
    check_range(index, x.shape[d], "scatter_add")
    out = np.array(x, copy=True)
    np.add.at(out, _full_index(index, d), src[tuple(slice(0, s) for s in index.shape)])
    return out


@scatter_add.grad
def _(ctx, g):
    x, index, src = ctx.inputs
    gs = gather(g, index, dim=ctx.attrs["dim"])
    if tuple(gs.shape) != tuple(src.shape):
        gs = pad_to(gs, src.shape)
    return g, None, gs


def pad_to(g, shape):
    from .shape import pad
    p = []
    for have, want in zip(reversed(tuple(g.shape)), reversed(tuple(shape))):
        p += [0, want - have]
    return pad(g, pad=tuple(p))


def _index_select_meta(x, index, *, dim):
    d = norm_dim(dim, len(x.shape))
    if len(index.shape) != 1:
        raise ShapeError(f"index_select: index must be 1-d, got shape {tuple(index.shape)}")
    s = list(x.shape)
    s[d] = index.shape[0]
    return TensorMeta(tuple(s), x.dtype)


@op(meta=_index_select_meta, samples=lambda rng: [
    Sample((rng.normal(size=(4, 3)), np.array([3, 0, 0, 2])), dict(dim=0), nondiff=(1,)),
    Sample((rng.normal(size=(2, 5, 3)), np.array([4, 1])), dict(dim=1), nondiff=(1,))])
def index_select(x, index, *, dim):
    d = norm_dim(dim, x.ndim)
    check_range(index, x.shape[d], "index_select")
    return np.take(x, index, axis=d)


@index_select.grad
def _(ctx, g):
    x, index = ctx.inputs
    return index_add(x.new_zeros(x.shape).to(g.dtype), index, g, dim=ctx.attrs["dim"]), None


def _index_add_meta(x, index, src, *, dim):
    return same(x)


@op(meta=_index_add_meta, samples=lambda rng: [
    Sample((rng.normal(size=(4, 3)), np.array([3, 0, 0]), rng.normal(size=(3, 3))), dict(dim=0), nondiff=(1,))])
def index_add(x, index, src, *, dim):
    d = norm_dim(dim, x.ndim)
    check_range(index, x.shape[d], "index_add")
    out = np.array(x, copy=True)
    key = (slice(None),) * d + (index.astype(np.intp, copy=False),)
    np.add.at(out, key, src)
    return out


@index_add.grad
def _(ctx, g):
    x, index, src = ctx.inputs
    return g, None, index_select(g, index, dim=ctx.attrs["dim"])
