"""ExportedProgram: the captured methods of one model, their shared constants
and state; `module()` runs them with the frontend's eager ops (the numerics
oracle for everything downstream)."""
from __future__ import annotations

import numpy as np

from edgetorch._errors import ShapeError
from edgetorch.ops.registry import REGISTRY
from edgetorch.symbolic import SymInt, evaluate
from edgetorch._tensor import Tensor

from .graph import Graph


def eval_attr(a, dims):
    """Replace SymInts inside an attribute by their values for these dims."""
    if isinstance(a, SymInt):
        return evaluate(a.expr, dims)
    if isinstance(a, dict):
        return {k: eval_attr(v, dims) for k, v in a.items()}
    if isinstance(a, tuple):
        return tuple(eval_attr(x, dims) for x in a)
    if isinstance(a, list):
        return [eval_attr(x, dims) for x in a]
    if isinstance(a, slice):
        return slice(eval_attr(a.start, dims), eval_attr(a.stop, dims), eval_attr(a.step, dims))
    return a


def bind_dims(graph, arrays):
    """Dim values from the inputs' shapes; ShapeError on rank, range or consistency problems."""
    dims = {}
    for v, a in zip(graph.inputs, arrays):
        if a.ndim != len(v.shape):
            raise ShapeError(f"input {v.name!r}: expected rank {len(v.shape)} {v.type_str(graph.dim_names())}, "
                             f"got shape {a.shape}")
        for ax, (d, n) in enumerate(zip(v.shape, a.shape)):
            if isinstance(d, SymInt) and d.expr[0] == "sym":
                i = d.expr[1]
                dim = graph.dims[i]
                if not dim.min <= n <= dim.max:
                    raise ShapeError(f"input {v.name!r} dim {ax} ({dim.name}) is {n}, outside [{dim.min}, {dim.max}]")
                if i in dims and dims[i] != n:
                    raise ShapeError(f"input {v.name!r} dim {ax} ({dim.name}) is {n}, but another input set "
                                     f"{dim.name} = {dims[i]}")
                dims[i] = n
            elif not isinstance(d, SymInt) and d != n:
                raise ShapeError(f"input {v.name!r} dim {ax}: expected {d}, got {n} "
                                 f"(shape {a.shape}, expected {v.type_str(graph.dim_names())})")
    return dims


class ProgramModule:
    """Runs an ExportedProgram's graphs with eager ops; state is shared by its methods."""

    def __init__(self, ep):
        self._ep = ep
        self.state = {k: np.array(v, copy=True) for k, v in ep.state_init.items()}

    def run(self, method, *args):
        g = self._ep.graphs[method]
        if len(args) != len(g.inputs):
            raise ShapeError(f"method {method!r} takes {len(g.inputs)} inputs "
                             f"({', '.join(v.name for v in g.inputs)}), got {len(args)}")
        arrays = [a._data if isinstance(a, Tensor) else np.asarray(a) for a in args]
        dims = bind_dims(g, arrays)
        env = {}
        for v, a in zip(g.inputs, arrays):
            env[v] = Tensor._wrap(a)
        for k, v in g.constants.items():
            env[v] = Tensor._wrap(v.data)
        for k, v in g.state.items():
            env[v] = Tensor._wrap(self.state[k])
        for n in g.nodes:
            ins = [None if v is None else env[v] for v in n.inputs]
            env[n.output] = REGISTRY[n.op](*ins, **eval_attr(n.attrs, dims))
        for k, v in g.state_updates.items():
            self.state[k] = np.array(env[v]._data, copy=True)
        outs = tuple(env[v] for v in g.outputs)
        return outs[0] if len(outs) == 1 else outs

    def __call__(self, *args):
        names = list(self._ep.graphs)
        return self.run("forward" if "forward" in names else names[0], *args)

    def __getattr__(self, name):
        if name.startswith("_") or name not in self._ep.graphs:
            raise AttributeError(name)
        return lambda *args: self.run(name, *args)


class ExportedProgram:
    """Methods (Graphs) of one exported model plus shared constants, state and metadata."""

    def __init__(self, graphs: dict[str, Graph], metadata=None):
        self.graphs = dict(graphs)
        self.metadata = dict(metadata or {})

    @property
    def graph(self) -> Graph:
        return self.graphs["forward"] if "forward" in self.graphs else next(iter(self.graphs.values()))

    @property
    def methods(self):
        return list(self.graphs)

    @property
    def constants(self):
        """name -> array, over all methods (shared by name)."""
        out = {}
        for g in self.graphs.values():
            for k, v in g.constants.items():
                if any(v is x for n in g.nodes for x in n.inputs) or v in g.outputs:
                    out.setdefault(k, v.data)
        return out

    @property
    def state_init(self):
        out = {}
        for g in self.graphs.values():
            for k, v in g.state.items():
                out.setdefault(k, v.data)
        return out

    def module(self):
        """A callable running the program's graphs with eager ops (state persists between calls)."""
        return ProgramModule(self)

    def transform(self, passes):
        graphs = {}
        for name, g in self.graphs.items():
            for p in passes:
                g = p(g)
            graphs[name] = g
        return ExportedProgram(graphs, self.metadata)

    def to_bytes(self, **kw):
        from .serialize import to_bytes
        return to_bytes(self, **kw)

    def save(self, path):
        """Write the program as a .etp file; returns the number of bytes written."""
        from edgetorch.schemas.writer import write_to

        from .serialize import lower
        info = lower(self)
        with open(path, "wb") as f:
            return write_to(info, f)

    def __str__(self):
        return "\n\n".join(str(g) for g in self.graphs.values())

    def __repr__(self):
        n = sum(len(g.nodes) for g in self.graphs.values())
        return f"<ExportedProgram methods={self.methods} nodes={n} constants={len(self.constants)}>"


def from_info(info) -> ExportedProgram:
    """An ExportedProgram rebuilt from a parsed .etp (ProgramInfo): the graphs, constants
    (sharing the file's arrays), state and metadata, so a saved float program can be
    quantized or re-optimized without the model code.  Symbolic dims get the middle of
    their range as example value; memory is planned again when it is written."""
    from edgetorch.schemas.format import DimE
    from edgetorch.symbolic import Dim, SymInt, evaluate

    from .graph import Graph, Node, Value
    states = {}
    for s in info.states:
        init = info.arrays[s.init] if s.init >= 0 else np.zeros(s.shape, np.dtype(s.dtype))
        states[s.name] = init
    graphs = {}
    for m in info.methods:
        ex = {i: (lo + hi) // 2 for i, (_, lo, hi) in enumerate(m.dims)}

        def dim(d):
            if isinstance(d, DimE):
                return SymInt(evaluate(d.expr, ex), d.expr)
            if isinstance(d, tuple):
                return tuple(dim(x) for x in d)
            if isinstance(d, slice):
                return slice(*(dim(x) for x in (d.start, d.stop, d.step)))
            return d

        g = Graph(name=m.name, dims=[Dim(n, min=lo, max=hi) for n, lo, hi in m.dims])
        vals, by_const = [], {}
        for i, vi in enumerate(m.values):
            kind = {"activation": "act", "constant": "const"}.get(vi.kind, vi.kind)
            data = info.arrays[vi.constant] if vi.kind == "constant" else None
            v = Value(vi.name, np.dtype(vi.dtype), tuple(dim(d) for d in vi.shape), kind, data=data)
            vals.append(v)
            if vi.kind == "constant":
                key = info.constants[vi.constant].name
                g.constants[key if key not in g.constants else f"{key}#{i}"] = v
                by_const.setdefault(vi.constant, v)
        for vi, v in zip(m.values, vals):
            if vi.kind == "state":
                name = info.states[vi.state].name
                v.data = states[name]
                g.state[name] = v
            if vi.quant:
                q = {k: x for k, x in vi.quant.items() if k not in ("scale", "zero_point")}
                for k in ("scale", "zero_point"):
                    idx = vi.quant.get(k, -1)
                    if idx >= 0:
                        c = info.constants[idx]
                        q[k] = by_const.get(idx) or Value(c.name, info.arrays[idx].dtype, info.arrays[idx].shape,
                                                         "const", data=info.arrays[idx])
                v.quant = q
        g.inputs = [vals[k] for k in m.inputs]
        for ins in m.instructions:
            out = vals[ins.outputs[0]]
            n = Node(ins.op, [None if k < 0 else vals[k] for k in ins.inputs],
                     {k: dim(a) for k, a in ins.attrs.items()}, out, (ins.source, ins.line))
            out.producer = n
            g.nodes.append(n)
        g.outputs = [vals[k] for k in m.outputs]
        g.output_names = list(m.output_names)
        g.state_updates = {info.states[s].name: vals[k] for s, k in m.state_updates}
        g._counter = len(vals)
        graphs[m.name] = g
    return ExportedProgram(graphs, dict(info.metadata))
