"""Lower an ExportedProgram to the file description (ProgramInfo) and bytes."""
from __future__ import annotations

import os
import zlib

import numpy as np

from edgetorch import __version__
from edgetorch.schemas import format as F
from edgetorch.schemas.writer import byte_view, write
from edgetorch.symbolic import SymInt

from .errors import ExportError
from .memory_plan import plan_memory

_KIND = {"input": "input", "const": "constant", "state": "state", "act": "activation"}


def _dim(d):
    return F.DimE(d.expr) if isinstance(d, SymInt) else int(d)


def _attr(a):
    if isinstance(a, SymInt):
        return F.DimE(a.expr)
    if isinstance(a, np.dtype):
        return F.dtype_name(a)
    if isinstance(a, np.generic):
        return a.item()
    if isinstance(a, slice):
        return slice(*(None if x is None else _attr(x) for x in (a.start, a.stop, a.step)))
    if isinstance(a, (tuple, list)):
        return tuple(_attr(x) for x in a)
    return a


class _Constants:
    """Constants stored once: identical bytes (same dtype and shape) share one entry."""

    def __init__(self):
        self.infos, self.arrays, self.by_key, self.by_id = [], [], {}, {}

    def add(self, name, arr):
        if id(arr) in self.by_id:
            return self.by_id[id(arr)]
        a = arr if arr.flags.c_contiguous else np.array(arr, order="C")
        # content key: CRC-32 is several times faster than a cryptographic hash;
        # a CRC match is confirmed by comparing the bytes
        key = (F.dtype_name(a.dtype), a.shape, zlib.crc32(byte_view(a)) if a.size else 0)
        if key in self.by_key and not np.array_equal(byte_view(self.arrays[self.by_key[key]]), byte_view(a)):
            key = key + (len(self.infos),)
        if key not in self.by_key:
            self.by_key[key] = len(self.infos)
            self.infos.append(F.ConstantInfo(name, key[0], tuple(a.shape)))
            self.arrays.append(a)
        self.by_id[id(arr)] = self.by_key[key]
        return self.by_key[key]


def lower(ep) -> F.ProgramInfo:
    consts = _Constants()
    states, state_index = [], {}
    for name, init in ep.state_init.items():
        init_idx = -1 if not np.any(init) else consts.add(f"{name}.init", init)
        state_index[name] = len(states)
        states.append(F.StateInfo(name, F.dtype_name(init.dtype), tuple(init.shape), init_idx))
    methods = []
    for mname, g in ep.graphs.items():
        plan = plan_memory(g)
        order = list(g.inputs)
        used = {v for n in g.nodes for v in n.inputs if v is not None} | set(g.outputs)
        order += [v for v in g.constants.values() if v in used]
        order += list(g.state.values())
        order += [n.output for n in g.nodes]
        for v in g.outputs:
            if v not in order:
                order.append(v)
        index = {v: i for i, v in enumerate(order)}
        state_by_value = {v: k for k, v in g.state.items()}
        values = []
        for v in order:
            if any(isinstance(d, SymInt) for d in v.shape) and v.kind in ("const", "state"):
                raise ExportError(f"{v.kind} {v.name!r} has a dynamic shape")
            quant = None
            if v.quant:
                quant = {k: x for k, x in v.quant.items() if k not in ("scale", "zero_point")}
                for k in ("scale", "zero_point"):
                    if v.quant.get(k) is not None:
                        quant[k] = consts.add(v.quant[k].name, v.quant[k].data)
            vi = F.ValueInfo(v.name, F.dtype_name(v.dtype), tuple(_dim(d) for d in v.shape), _KIND[v.kind],
                             quant=quant)
            if v.kind == "const":
                vi.constant = consts.add(v.name, v.data)
            elif v.kind == "state":
                vi.state = state_index[state_by_value[v]]
            elif v.kind == "act":
                vi.offset = plan.offsets[v]
                vi.nbytes = plan.sizes[v]
                if v in plan.alias:
                    vi.alias = index[plan.alias[v]]     # a reshape view, or a state written in place
            values.append(vi)
        instrs = []
        for n in g.nodes:
            src, line = n.source
            instrs.append(F.InstrInfo(n.op, [-1 if v is None else index[v] for v in n.inputs], [index[n.output]],
                                      {k: _attr(a) for k, a in n.attrs.items()},
                                      os.path.basename(src) if src else None, line or 0))
        methods.append(F.MethodInfo(
            mname, [(d.name, d.min, d.max) for d in g.dims], values, [index[v] for v in g.inputs],
            [v.name for v in g.inputs], [index[v] for v in g.outputs], list(g.output_names), instrs,
            plan.arena_size, plan.naive_size,
            [(state_index[k], index[v]) for k, v in g.state_updates.items()]))
    meta = {str(k): str(v) for k, v in ep.metadata.items()}
    return F.ProgramInfo(F.VERSION, f"edgetorch {__version__}", methods, consts.infos, states, meta, [],
                         arrays=consts.arrays)


def to_bytes(ep) -> bytes:
    return write(lower(ep))
