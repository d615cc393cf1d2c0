"""Indexing kernels. numpy bounds-checks every index; negative indices, which
numpy would wrap, are refused here so an id never reads the wrong row."""
import numpy as np

from edgetorch._errors import InputError

from ._jit import twins
from .registry import kernel, preparer

SLOT = "#"


def check_index(idx, n, what):
    if idx.size == 1:
        v = int(idx.reshape(-1)[0])
        if not 0 <= v < n:
            raise InputError(f"{what}: index {v} is out of range for a dim of size {n}")
        return
    if idx.size and (idx.min() < 0 or idx.max() >= n):
        bad = int(idx.min() if idx.min() < 0 else idx.max())
        raise InputError(f"{what}: index {bad} is out of range for a dim of size {n}")


_SLOTS, _BASIC = {}, {}    # id(index attribute) -> (the attribute, ndim, parse result)


def _parsed(cache, index, ndim, parse, *args):
    """parse(*args) for an instruction's index attribute, computed once per (attribute, rank):
    the attribute object is the key (held, so its id is not reused), the cache is bounded."""
    hit = cache.get(id(index))
    if hit is None or hit[0] is not index or hit[1] != ndim:
        if len(cache) > 4096:
            cache.clear()
        hit = cache[id(index)] = (index, ndim, parse(*args))
    return hit[2]


def _slot_dims(index, ndim):
    """For an index whose tensor slots each take one dim and that mixes in no ints: the dim each
    '#' indexes, else None."""
    dims, dim, ok = [], 0, True
    used = sum(1 for e in index if e is not None and e is not Ellipsis)
    for e in index:
        if isinstance(e, str):
            dims.append(dim)
            dim += 1
        elif e is Ellipsis:
            dim += ndim - used
        elif isinstance(e, slice):
            dim += 1
        elif e is not None:
            ok = False                                    # an int beside tensor indices: torch's rule
    return dims if ok and dims else None


def _split(index, arrays, x):
    """torch's indexing rule (ints are basic indices), checked against x's dims."""
    if len(arrays) == 1 and arrays[0].size == 1 and arrays[0].ndim == 1 and arrays[0].dtype.kind in "iu":
        # one one-element integer index (a KV-cache position) among slices: the same selection as
        # a one-wide slice, which numpy takes without its fancy-indexing machinery (with two or
        # more, advanced indexing merges and may move their dims: not the same); the parse of the
        # index is cached, the range check is not
        dims = _parsed(_SLOTS, index, x.ndim, _slot_dims, index, x.ndim)
        if dims is not None and len(dims) == 1 and dims[0] < x.ndim:
            it = iter(zip(arrays, dims))
            key = []
            for e in index:
                if isinstance(e, str):
                    a, d = next(it)
                    p = int(a[0])
                    if not 0 <= p < x.shape[d]:
                        raise InputError(f"index: index {p} is out of range for a dim of size {x.shape[d]}")
                    key.append(slice(p, p + 1))
                else:
                    key.append(e)
            return tuple(key), None
    n_t = sum(1 for e in index if isinstance(e, str))
    if n_t != len(arrays):
        raise ValueError(f"index {index!r} marks {n_t} tensor indices but the op has {len(arrays)}")
    it = iter(arrays)
    has_t = n_t > 0
    k1, k2 = [], []
    mixed = has_t and any(isinstance(e, (int, np.integer)) and not isinstance(e, bool) for e in index)
    dim = 0
    used = sum(1 for e in index if e is not None and e is not Ellipsis)
    for e in index:
        if isinstance(e, str):
            a = next(it)
            if a.dtype != np.bool_:
                check_index(a, x.shape[dim], "index")
                dim += 1
            else:
                dim += a.ndim
            k1.append(slice(None))
            k2.append(a)
        elif e is Ellipsis:
            dim += x.ndim - used
            k1.append(e)
            k2.append(e)
        elif e is None:
            k1.append(None)
            k2.append(slice(None))
        elif isinstance(e, slice):
            dim += 1
            k1.append(e)
            k2.append(slice(None))
        else:
            dim += 1
            k1.append(e)
    if not has_t:
        return tuple(k1), None
    if not mixed:
        it = iter(arrays)
        return tuple(next(it) if isinstance(e, str) else e for e in index), None
    return tuple(k1), tuple(k2)


@kernel("getitem")
def k_getitem(out, x, *idx, index=()):
    if not idx:                          # basic indices: parsed once per instruction
        out[...] = x[_parsed(_BASIC, index, x.ndim, _split, index, idx, x)[0]]
        return
    k1, k2 = _split(index, idx, x)
    out[...] = x[k1] if k2 is None else x[k1][k2]


def _same_view(a, b):
    return a is b or (a.ctypes.data == b.ctypes.data and a.shape == b.shape and a.strides == b.strides
                      and a.dtype == b.dtype)


@kernel("index_put")
def k_index_put(out, base, values, *idx, index=(), accumulate=False):
    if not _same_view(out, base):         # a KV-cache write planned in place: no copy of the cache
        out[...] = base
    k1, k2 = _split(index, idx, base)
    target, key = (out, k1) if k2 is None else (out[k1], k2)
    if accumulate:
        np.add.at(target, key, values)
    else:
        target[key] = values


@preparer("index_put")
def p_index_put(out, base, values, *idx, index=(), accumulate=False):
    """A KV-cache write planned in place (out is the state buffer): one one-element position among
    slices, as _split takes it, with the parse and the shape checks made once; the position is
    range-checked every call."""
    if accumulate or not _same_view(out, base) or len(idx) != 1 or idx[0].size != 1 or idx[0].ndim != 1 \
            or idx[0].dtype.kind not in "iu":
        return None
    dims = _slot_dims(index, out.ndim)
    if dims is None or len(dims) != 1 or dims[0] >= out.ndim:
        return None
    d = dims[0]
    key = _split(index, (np.zeros(1, idx[0].dtype),), out)[0]
    at = next(i for i, e in enumerate(index) if isinstance(e, str))
    if np.broadcast_shapes(out[key].shape, values.shape) != out[key].shape:
        return None
    pre, post = key[:at], key[at + 1:]
    n = out.shape[d]
    if out.dtype == values.dtype == np.float32 and out.flags.c_contiguous and values.flags.c_contiguous \
            and out[key].shape == values.shape and len(pre) == d \
            and all(isinstance(k, slice) and k.indices(out.shape[j]) == (0, out.shape[j], 1)
                    for j, k in enumerate(pre + (slice(None),) + post) if j != d):
        # the whole rows at one position (a decoder's K or V of one token): a Numba copy over
        # (before, position, after) views, ~1 us fewer than numpy's indexing of the tuple key
        a, b = int(np.prod(out.shape[:d], dtype=np.int64)), int(np.prod(out.shape[d + 1:], dtype=np.int64))

        def run(out, base, values, i):
            p = int(i[0])
            if not 0 <= p < n:
                raise InputError(f"index: index {p} is out of range for a dim of size {n}")
            _put_row(out.reshape(a, n, b), values.reshape(a, 1, b), p)
        return run

    def run(out, base, values, i):
        p = int(i[0])
        if not 0 <= p < n:
            raise InputError(f"index: index {p} is out of range for a dim of size {n}")
        out[pre + (slice(p, p + 1),) + post] = values
    return run


def _put_row_py(out, values, p):
    # out (A, S, B), values (A, 1, B): out[:, p, :] = values[:, 0, :]; p in range (checked by the caller)
    for i in range(out.shape[0]):
        for j in range(out.shape[2]):
            out[i, p, j] = values[i, 0, j]


_put_row = twins(_put_row_py)[0]


@kernel("gather")
def k_gather(out, x, index, dim=0):
    d = dim % x.ndim
    check_index(index, x.shape[d], "gather")
    xs = x[tuple(slice(None) if i == d else slice(0, s) for i, s in enumerate(index.shape))]
    out[...] = np.take_along_axis(xs, index, axis=d)


@kernel("scatter_add")
def k_scatter_add(out, x, index, src, dim=0):
    d = dim % x.ndim
    check_index(index, x.shape[d], "scatter_add")
    out[...] = x
    grids = list(np.indices(index.shape, sparse=True))
    grids[d] = index
    np.add.at(out, tuple(grids), src[tuple(slice(0, s) for s in index.shape)])


@kernel("index_select")
def k_index_select(out, x, index, dim=0):
    d = dim % x.ndim
    check_index(index, x.shape[d], "index_select")
    np.take(x, index, axis=d, out=out)


@kernel("index_add")
def k_index_add(out, x, index, src, dim=0):
    d = dim % x.ndim
    check_index(index, x.shape[d], "index_add")
    out[...] = x
    np.add.at(out, (slice(None),) * d + (index,), src)


@kernel("embedding")
def k_embedding(out, ids, weight, padding_idx=None):
    check_index(ids, weight.shape[0], "embedding")
    np.take(weight, ids, axis=0, out=out)
