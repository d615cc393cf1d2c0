"""Memory planning: one arena per method, sized for the dims' upper bounds.

Lifetimes are [defining instruction, last reading instruction]; method
outputs and values written back to state live to the end; a 1x1
convolution's input lives through a residual add + ReLU right after it that
the runtime may fuse with it.  A reshape's
output is a view of its input (no slot; the input lives as long as the
view is read), and so is a getitem whose selection is one contiguous run of
its input (edgetorch/_views.py: a decode step's q/k/v slices), at an offset.
Placement is greedy by size (TFLite's arena planner and ExecuTorch's greedy
algorithm do the same): take values largest first and
put each at the lowest 64-aligned offset that no value alive at the same
time occupies.  Largest-first keeps big tensors from fragmenting the space
small ones leave, which is where most of the saving on these models is.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edgetorch._views import slice_view
from edgetorch.symbolic import SymInt, bounds

from .graph import Graph, Value

ALIGN = 64
VIEW_OPS = ("reshape",)


def max_nbytes(v: Value, ranges):
    n = 1
    for d in v.shape:
        n *= bounds(d.expr, ranges)[1] if isinstance(d, SymInt) else int(d)
    return max(n, 0) * np.dtype(v.dtype).itemsize


@dataclass
class Plan:
    offsets: dict          # Value -> arena offset
    sizes: dict            # Value -> bytes at the upper bounds
    alias: dict            # Value -> Value it is a view of
    lifetimes: dict        # Value (slot owner) -> (first, last)
    arena_size: int
    naive_size: int

    def report(self):
        pct = 100.0 * self.arena_size / self.naive_size if self.naive_size else 0.0
        return f"arena {self.arena_size:,} B vs {self.naive_size:,} B unplanned ({pct:.0f}%)"


def inplace_state_writes(g: Graph):
    """State updates an index_put can write in place: new value -> state value.

    The new value of a state may live in the state's own buffer when it is
    index_put(old state, ...) and nothing reads the old state afterwards (a
    KV-cache write): no arena slot, no copy in or back.
    """
    out = {}
    pos = {n: i for i, n in enumerate(g.nodes)}
    for name, v in g.state_updates.items():
        n, s = v.producer, g.state.get(name)
        if n is None or n.op != "index_put" or not n.inputs or n.inputs[0] is not s:
            continue
        if any(x is s for x in n.inputs[1:]) or s in g.outputs:
            continue
        if any(x is s for m in g.nodes[pos[n] + 1:] for x in m.inputs):
            continue
        out[v] = s
    return out


def plan_memory(g: Graph) -> Plan:
    ranges = {i: (d.min, d.max) for i, d in enumerate(g.dims)}
    in_state = inplace_state_writes(g)
    alias = dict(in_state)
    delta = {}                 # view -> byte offset inside its owner's slot (a getitem view's start)
    for n in g.nodes:
        x = n.inputs[0] if n.inputs else None
        if x is None or x.kind != "act":
            continue
        if n.op in VIEW_OPS:
            alias[n.output] = alias.get(x, x)
            delta[n.output] = delta.get(x, 0)
        elif n.op == "getitem" and len(n.inputs) == 1 and n.output.dtype == x.dtype:
            view = slice_view(tuple(x.shape), n.attrs.get("index", ()))
            if view is not None:
                alias[n.output] = alias.get(x, x)
                delta[n.output] = delta.get(x, 0) + view[0] * np.dtype(x.dtype).itemsize

    def owner(v):
        return alias.get(v, v)

    first, last = {}, {}
    for i, n in enumerate(g.nodes):
        o = owner(n.output)
        first.setdefault(o, i)
        last[o] = max(last.get(o, i), i)
        for v in n.inputs:
            if v is not None and v.kind == "act":
                last[owner(v)] = max(last.get(owner(v), i), i)
    # the runtime may run a convolution and the residual add + ReLU right after it that reads its
    # output as one pass (runtime/kernels/conv.py, p_conv2d_add_relu), which reads the convolution's
    # input while writing the sum: keep that input alive through the add, so the sum never takes the
    # input's slot (ResNet blocks: the projection shortcut's 1x1, or the second 3x3 of an identity one)
    for i in range(len(g.nodes) - 1):
        n, m = g.nodes[i], g.nodes[i + 1]
        if n.op == "conv2d" and len(n.inputs) > 1 and m.op == "add_relu" and n.output in m.inputs \
                and n.inputs[0] is not None and n.inputs[0].kind == "act":
            x = owner(n.inputs[0])
            last[x] = max(last.get(x, i + 1), i + 1)
    end = len(g.nodes)
    for v in list(g.outputs) + list(g.state_updates.values()):
        if v.kind == "act":
            last[owner(v)] = end
    slots = [v for v in first if v not in alias and v.kind == "act"]
    sizes = {v: max_nbytes(v, ranges) for v in slots}
    for v, o in alias.items():
        sizes[v] = max_nbytes(v, ranges) if o.kind == "act" else 0
    naive = sum(sizes[v] for v in slots)
    placed = []      # (offset, end_offset, first, last)
    offsets = {}
    for v in sorted(slots, key=lambda v: (-sizes[v], first[v])):
        lo, hi = first[v], last[v]
        busy = sorted((a, b) for a, b, f, l in placed if not (l < lo or f > hi))
        off = 0
        for a, b in busy:
            if off + sizes[v] <= a:
                break
            off = max(off, (b + ALIGN - 1) // ALIGN * ALIGN)
        offsets[v] = off
        placed.append((off, off + sizes[v], lo, hi))
    for v, o in alias.items():
        offsets[v] = offsets.get(o, 0) + delta.get(v, 0)
    arena = max((b for _, b, _, _ in placed), default=0)
    arena = (arena + ALIGN - 1) // ALIGN * ALIGN
    return Plan(offsets, sizes, alias, {v: (first[v], last[v]) for v in slots}, arena, naive)


def check_no_overlap(plan: Plan):
    """Raise AssertionError if two values alive at the same time share bytes."""
    items = [(plan.offsets[v], plan.offsets[v] + plan.sizes[v], f, l) for v, (f, l) in plan.lifetimes.items()]
    for i, (a0, a1, f0, l0) in enumerate(items):
        for b0, b1, f1, l1 in items[i + 1:]:
            if not (l0 < f1 or l1 < f0) and a0 < b1 and b0 < a1 and a1 > a0 and b1 > b0:
                raise AssertionError(f"values alive together overlap: [{a0},{a1}) and [{b0},{b1})")
