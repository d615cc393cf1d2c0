"""Which getitem results are plain views of their input's bytes.

A basic slice whose selection is one contiguous run of the input's C-order
elements (every dim before the last partly-taken one holds a single index;
every dim after it is whole) needs no copy: the memory planner gives the
result the input's arena slot at an offset, and the runtime skips the
instruction, as both already do for reshapes.  In a decoder's single-token
step the q, k, v (and gate, up) slices of a packed projection are such
views.  The exporter's planner and the runtime's loader share this one rule.
"""


def slice_view(shape, index):
    """(element offset, element count) of x[index] inside x when the selection is a contiguous run of
    x's elements in the same order, else None.  shape: x's dims (ints only: a symbolic dim gives None); index: the
    getitem attribute (slices, ints, Ellipsis; a None or a tensor slot gives None)."""
    if not isinstance(index, (tuple, list)) or any(type(d) is not int or d < 0 for d in shape):
        return None                        # (a hostile file's attribute may be anything)
    items = list(index)
    if any(e is None or isinstance(e, (str, bool)) for e in items) or items.count(Ellipsis) > 1:
        return None
    if Ellipsis in items:
        k = items.index(Ellipsis)
        fill = len(shape) - (len(items) - 1)
        if fill < 0:
            return None
        items = items[:k] + [slice(None)] * fill + items[k + 1:]
    if len(items) > len(shape):
        return None
    items += [slice(None)] * (len(shape) - len(items))
    lo, ext = [], []
    for e, n in zip(items, shape):
        if isinstance(e, int):
            i = e + n if e < 0 else e
            if not 0 <= i < n:
                return None
            lo.append(i)
            ext.append(1)
        elif isinstance(e, slice):
            if any(v is not None and type(v) is not int for v in (e.start, e.stop, e.step)) or e.step not in (None, 1):
                return None
            a, b, _ = e.indices(n)
            if b <= a:
                return None
            lo.append(a)
            ext.append(b - a)
        else:
            return None
    part = [d for d in range(len(shape)) if ext[d] != shape[d]]
    last = part[-1] if part else -1
    if any(ext[d] != 1 for d in range(last)):
        return None
    off, stride, count = 0, 1, 1
    for d in range(len(shape) - 1, -1, -1):
        off += lo[d] * stride
        stride *= shape[d]
        count *= ext[d]
    return off, count
