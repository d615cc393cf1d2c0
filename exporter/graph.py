"""The exporter's IR: a typed SSA graph of registry ops over symbolic shapes.

    Graph  -- one method: dims, inputs, nodes in topological order, outputs,
              state read and written
    Node   -- op name, input Values (None for omitted optional inputs),
              attributes (SymInts allowed), one output Value, source line
    Value  -- dtype, shape (ints and SymInts), kind: input | const | state | act
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edgetorch.symbolic import SymInt, show_dim

_DT_SHORT = {"float32": "f32", "float64": "f64", "float16": "f16", "bfloat16": "bf16", "int8": "i8",
             "uint8": "u8", "int16": "i16", "int32": "i32", "int64": "i64", "bool": "b8"}


@dataclass(eq=False)
class Value:
    name: str
    dtype: np.dtype
    shape: tuple
    kind: str = "act"                  # input | const | state | act
    data: np.ndarray | None = None     # constants (and state initial values)
    producer: "Node | None" = None
    quant: dict | None = None

    def type_str(self, names=None):
        dt = _DT_SHORT.get(np.dtype(self.dtype).name, np.dtype(self.dtype).name)
        return f"{dt}[{', '.join(show_dim(d, names) for d in self.shape)}]"

    @property
    def is_static(self):
        return not any(isinstance(d, SymInt) for d in self.shape)

    def __repr__(self):
        return f"%{self.name}"


@dataclass(eq=False)
class Node:
    op: str
    inputs: list
    attrs: dict
    output: Value
    source: tuple = (None, None)

    def __repr__(self):
        return f"<{self.op} -> %{self.output.name}>"


@dataclass(eq=False)
class Graph:
    name: str = "forward"
    dims: list = field(default_factory=list)            # [Dim]
    inputs: list = field(default_factory=list)          # [Value]
    outputs: list = field(default_factory=list)         # [Value]
    output_names: list = field(default_factory=list)
    nodes: list = field(default_factory=list)           # [Node], topological
    constants: dict = field(default_factory=dict)       # name -> Value(kind=const)
    state: dict = field(default_factory=dict)           # name -> Value(kind=state), read at entry
    state_updates: dict = field(default_factory=dict)   # name -> Value written back at exit
    _counter: int = 0

    def fresh(self, hint="v"):
        self._counter += 1
        return f"{hint}{self._counter}"

    def add_node(self, op, inputs, attrs, dtype, shape, source=(None, None), name=None):
        out = Value(name or self.fresh(), np.dtype(dtype), tuple(shape))
        n = Node(op, list(inputs), dict(attrs), out, source)
        out.producer = n
        self.nodes.append(n)
        return n

    def users(self):
        """Value -> list of nodes that read it."""
        u = {}
        for n in self.nodes:
            for v in n.inputs:
                if v is not None:
                    u.setdefault(v, []).append(n)
        return u

    def live_values(self):
        seen = set(self.inputs) | set(self.outputs) | set(self.state_updates.values())
        for n in self.nodes:
            seen.add(n.output)
            seen.update(v for v in n.inputs if v is not None)
        return seen

    def dim_names(self):
        return [d.name for d in self.dims]

    def __str__(self):
        names = self.dim_names()
        lines = [f"graph {self.name}(" + ", ".join(f"%{v.name}: {v.type_str(names)}" for v in self.inputs) + "):"]
        if self.dims:
            lines.append("  # dims: " + ", ".join(f"{d.name} in [{d.min}, {d.max}]" for d in self.dims))
        used = {v for n in self.nodes for v in n.inputs if v is not None}
        for k, v in self.constants.items():
            if v in used or v in self.outputs:
                lines.append(f"  %{v.name}: {v.type_str(names)} = constant")
        for k, v in self.state.items():
            lines.append(f"  %{v.name}: {v.type_str(names)} = state {k!r}")
        for n in self.nodes:
            args = ", ".join("None" if v is None else f"%{v.name}" for v in n.inputs)
            at = ", ".join(f"{k}={_show_attr(a, names)}" for k, a in n.attrs.items())
            src = f"  # {n.source[0].rsplit('/', 1)[-1]}:{n.source[1]}" if n.source[0] else ""
            lines.append(f"  %{n.output.name}: {n.output.type_str(names)} = {n.op}({args}{'; ' + at if at else ''}){src}")
        for k, v in self.state_updates.items():
            lines.append(f"  state {k!r} <- %{v.name}")
        lines.append("  return " + ", ".join(f"%{v.name}" for v in self.outputs))
        return "\n".join(lines)


def _show_attr(a, names):
    if isinstance(a, SymInt):
        return show_dim(a, names)
    if isinstance(a, tuple):
        return "(" + ", ".join(_show_attr(x, names) for x in a) + ("," if len(a) == 1 else "") + ")"
    if isinstance(a, slice):
        return ":".join("" if x is None else _show_attr(x, names) for x in (a.start, a.stop, a.step))
    if a is Ellipsis:
        return "..."
    return repr(a)
