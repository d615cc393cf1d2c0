"""Run a parsed program (ProgramInfo) with the frontend's eager ops.

The slow, obviously-correct executor of the file format: the oracle that
runtime kernels and delegates are compared against, and how a golden file
from an older version is checked to still mean the same thing.
"""
from __future__ import annotations

import numpy as np

from edgetorch._errors import ProgramError, ShapeError
from edgetorch.ops.registry import REGISTRY
from edgetorch.schemas.format import DimE, eval_attr
from edgetorch._tensor import Tensor


class ReferenceProgram:
    """ReferenceProgram(read(path)).run("forward", x) -> list of arrays; state persists."""

    def __init__(self, info):
        self.info = info
        self.state = {}
        self.reset_state()

    def reset_state(self):
        for s in self.info.states:
            init = self.info.arrays[s.init] if s.init >= 0 else None
            from edgetorch.schemas.format import np_dtype
            self.state[s.name] = np.array(init, copy=True) if init is not None else np.zeros(s.shape, np_dtype(s.dtype))

    def run(self, method, *arrays):
        m = self.info.method(method)
        if len(arrays) != len(m.inputs):
            raise ShapeError(f"method {method!r} takes {len(m.inputs)} inputs, got {len(arrays)}")
        dims = {}
        env = {}
        for k, (vi, a) in enumerate(zip(m.inputs, arrays)):
            v = m.values[vi]
            a = np.asarray(a)
            if a.ndim != len(v.shape):
                raise ShapeError(f"input {m.input_names[k]!r}: expected rank {len(v.shape)}, got {a.shape}")
            for d, n in zip(v.shape, a.shape):
                if isinstance(d, DimE) and d.expr[0] == "sym":
                    i = d.expr[1]
                    name, lo, hi = m.dims[i]
                    if not lo <= n <= hi or dims.get(i, n) != n:
                        raise ShapeError(f"input {m.input_names[k]!r}: dim {name} = {n} is out of [{lo}, {hi}] "
                                         "or inconsistent with another input")
                    dims[i] = n
            env[vi] = Tensor._wrap(a)
        for i, v in enumerate(m.values):
            if v.kind == "constant":
                env[i] = Tensor._wrap(self.info.arrays[v.constant])
            elif v.kind == "state":
                env[i] = Tensor._wrap(self.state[self.info.states[v.state].name])
        for ins in m.instructions:
            if ins.op not in REGISTRY:
                raise ProgramError(f"unknown op {ins.op!r}")
            args = [None if k < 0 else env[k] for k in ins.inputs]
            env[ins.outputs[0]] = REGISTRY[ins.op](*args, **{k: eval_attr(v, dims) for k, v in ins.attrs.items()})
        for s, vi in m.state_updates:
            self.state[self.info.states[s].name] = np.array(env[vi]._data, copy=True)
        return [env[k]._data for k in m.outputs]
