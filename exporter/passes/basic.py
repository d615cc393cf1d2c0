"""Generic passes: dead code, common subexpressions, constant folding, no-op views."""
from __future__ import annotations

import numpy as np

from edgetorch.ops.registry import REGISTRY
from edgetorch.symbolic import SymInt
from edgetorch._tensor import Tensor

from ..capture import _has_sym
from ..graph import Graph, Value


def replace_uses(g: Graph, old: Value, new: Value):
    for n in g.nodes:
        n.inputs = [new if v is old else v for v in n.inputs]
    g.outputs = [new if v is old else v for v in g.outputs]
    for k, v in list(g.state_updates.items()):
        if v is old:
            g.state_updates[k] = new


def dce(g: Graph) -> Graph:
    """Drop nodes whose outputs reach no method output or state update; drop unused constants."""
    live = set(g.outputs) | set(g.state_updates.values())
    keep = []
    for n in reversed(g.nodes):
        if n.output in live:
            keep.append(n)
            live.update(v for v in n.inputs if v is not None)
    g.nodes = keep[::-1]
    g.constants = {k: v for k, v in g.constants.items() if v in live}
    return g


def _attr_key(a):
    if isinstance(a, SymInt):
        return ("sym", a.expr)
    if isinstance(a, (tuple, list)):
        return tuple(_attr_key(x) for x in a)
    if isinstance(a, slice):
        return ("slice", _attr_key(a.start), _attr_key(a.stop), _attr_key(a.step))
    if isinstance(a, dict):
        return tuple(sorted((k, _attr_key(v)) for k, v in a.items()))
    return (type(a).__name__, repr(a))


def cse(g: Graph) -> Graph:
    """Merge nodes computing the same op on the same inputs with the same attributes."""
    seen = {}
    keep = []
    for n in g.nodes:
        key = (n.op, tuple(id(v) for v in n.inputs), _attr_key(n.attrs))
        if key in seen:
            replace_uses(g, n.output, seen[key])
            continue
        seen[key] = n.output
        keep.append(n)
    g.nodes = keep
    return g


def fold_constants(g: Graph, max_growth=4, small=1 << 16) -> Graph:
    """Evaluate nodes whose inputs are all constants (and attributes static).

    A fold that would store much more than it reads (an expand of a small
    constant into a large one) is skipped: the program stays small.
    """
    keep = []
    for n in g.nodes:
        ins = [v for v in n.inputs if v is not None]
        if all(v.kind == "const" for v in ins) and not _has_sym(tuple(n.attrs.values())) and n.output.is_static:
            out_bytes = int(np.prod(n.output.shape)) * np.dtype(n.output.dtype).itemsize
            in_bytes = sum(v.data.nbytes for v in ins)
            if out_bytes <= max(max_growth * in_bytes, small):
                args = [None if v is None else Tensor._wrap(v.data) for v in n.inputs]
                res = REGISTRY[n.op](*args, **n.attrs)._data
                cv = Value(n.output.name, res.dtype, tuple(res.shape), "const",
                           data=np.array(res, order="C"))
                g.constants[f"__fold_{n.output.name}"] = cv
                replace_uses(g, n.output, cv)
                continue
        keep.append(n)
    g.nodes = keep
    return dce(g)


def _same_shape(a, b):
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, SymInt) or isinstance(y, SymInt):
            if not (isinstance(x, SymInt) and isinstance(y, SymInt) and x.expr == y.expr):
                return False
        elif x != y:
            return False
    return True


def _full_slices(index, shape):
    """True when an index key selects every element in order (x[:], x[:n] on a dim of size n, x[...])."""
    index = tuple(index)
    if any(e is Ellipsis for e in index):
        k = next(i for i, e in enumerate(index) if e is Ellipsis)
        fill = (slice(None),) * (len(shape) - (len(index) - 1))
        index = index[:k] + fill + index[k + 1:]
    if len(index) > len(shape):
        return False
    for d, e in enumerate(index):
        if not isinstance(e, slice):
            return False
        n = shape[d]
        start_ok = e.start is None or (not isinstance(e.start, SymInt) and e.start == 0)
        step_ok = e.step is None or (not isinstance(e.step, SymInt) and e.step == 1)
        if e.stop is None:
            stop_ok = True
        elif isinstance(e.stop, SymInt) or isinstance(n, SymInt):
            stop_ok = isinstance(e.stop, SymInt) and isinstance(n, SymInt) and e.stop.expr == n.expr
        else:
            stop_ok = e.stop >= n
        if not (start_ok and stop_ok and step_ok):
            return False
    return True


def _moves_only_unit_axes(shape, dims):
    """True when permuting `shape` by `dims` keeps the order of every axis not statically of
    size 1: the elements' order in memory is unchanged, so the permute is a reshape."""
    rank = max(len(shape), 1)
    order = [d % rank for d in dims if isinstance(shape[d % rank], SymInt) or shape[d % rank] != 1]
    return order == sorted(order)


def remove_noop_views(g: Graph) -> Graph:
    """Drop reshapes/expands to the same shape, identity permutes, same-dtype casts,
    clones and full-slice getitems (programs are SSA: an alias is safe); permutes that only
    move size-1 axes (a decode step's (1, 1, H, D) -> (1, H, 1, D)) become reshapes, which
    the memory plan makes views of their input and the runtime does not run; a reshape of a
    reshape reads the first one's input (dce drops the first when nothing else reads it)."""
    keep = []
    made_by = {}
    for n in g.nodes:
        made_by[n.output] = n
        x = n.inputs[0] if n.inputs else None
        noop = False
        if x is not None and n.op == "permute" and len(x.shape) == len(n.attrs["dims"]) \
                and _moves_only_unit_axes(tuple(x.shape), n.attrs["dims"]) \
                and tuple(d % max(len(x.shape), 1) for d in n.attrs["dims"]) != tuple(range(len(x.shape))):
            n.op = "reshape"
            n.attrs = {"shape": tuple(n.output.shape)}
        src = made_by.get(x)
        if n.op == "reshape" and src is not None and src.op == "reshape" and len(n.inputs) == 1:
            n.inputs = [src.inputs[0]]          # a reshape of a reshape reads the first one's input
            x = n.inputs[0]
        if x is not None:
            if n.op in ("reshape", "expand") and _same_shape(x.shape, n.output.shape):
                noop = True
            elif n.op == "permute" and tuple(d % max(len(x.shape), 1) for d in n.attrs["dims"]) == tuple(range(len(x.shape))):
                noop = True
            elif n.op == "to" and np.dtype(n.attrs["dtype"]) == np.dtype(x.dtype):
                noop = True
            elif n.op == "clone":
                noop = True
            elif n.op == "getitem" and len(n.inputs) == 1 and _full_slices(n.attrs["index"], x.shape):
                noop = True
        if noop and np.dtype(x.dtype) == np.dtype(n.output.dtype):
            replace_uses(g, n.output, x)
            continue
        keep.append(n)
    g.nodes = keep
    return g
