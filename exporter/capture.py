"""Capture: run a model once with tracing on and record every registry op
applied to a traced tensor as a node of a `Graph`.

Parameters and buffers become named constants; buffers the method writes in
place (a KV cache) become named state.  Python control flow is specialized;
anything that would specialize on tensor *values* (bool(t), t.item(),
t.numpy(), len() of a traced tensor) raises ExportError naming the line.
"""
from __future__ import annotations

import inspect
import os

import numpy as np

from edgetorch.autograd import function as AF
from edgetorch.autograd import grad_mode
from edgetorch.ops.registry import TensorMeta
from edgetorch.symbolic import Dim, SymInt
from edgetorch._tensor import Tensor

from .errors import ExportError
from .graph import Graph, Value

AF.SKIP_DIRS.append(os.path.dirname(os.path.abspath(__file__)) + os.sep)


def _has_sym(a):
    if isinstance(a, SymInt):
        return True
    if isinstance(a, (tuple, list)):
        return any(_has_sym(x) for x in a)
    if isinstance(a, slice):
        return any(_has_sym(x) for x in (a.start, a.stop, a.step))
    return False


def _where():
    fn, line = AF.user_frame()
    return f"{fn}:{line}" if fn else "an unknown line"


class Tracer:
    """The capture hook: maps live tensors to graph Values and records ops."""

    def __init__(self, graph):
        self.g = graph
        self.values = {}      # id(Tensor) -> Value
        self.keep = []        # traced tensors stay alive, so ids are not reused
        self.writes = {}      # id(buffer) -> Value last written into it in place
        self.n_const = 0

    def bind(self, t, v):
        self.values[id(t)] = v
        self.keep.append(t)

    def value_of(self, t):
        v = self.values.get(id(t))
        if v is None:
            # a constant made during forward (a Python scalar, a fresh tensor)
            self.n_const += 1
            v = Value(f"c{self.n_const}", t._data.dtype, tuple(t._data.shape), "const",
                      data=np.array(t._data, copy=True))
            self.g.constants[f"__lit{self.n_const}"] = v
            self.bind(t, v)
        return v

    def __call__(self, opdef, tens, attrs, out):
        if not (any(t is not None and id(t) in self.values for t in tens) or _has_sym(attrs)
                or opdef.name in ("arange", "full")):
            return  # pure constant work; its result is captured as data if used
        if opdef.name == "getitem" and any(t is not None and t._data.dtype == np.bool_ for t in tens[1:]):
            raise ExportError(f"indexing with a boolean mask gives a data-dependent shape, which a program "
                              f"cannot plan (at {_where()}); use where() or masked_fill() instead")
        ins = [None if t is None else self.value_of(t) for t in tens]
        metas = [None if v is None else TensorMeta(v.shape, v.dtype) for v in ins]
        m = opdef.meta(*metas, **attrs)
        if tuple(int(d) for d in m.shape) != tuple(out._data.shape) or np.dtype(m.dtype) != out._data.dtype:
            raise ExportError(f"internal: the shape rule of {opdef.name} gives {m.shape}/{m.dtype} but the op "
                              f"returned {out._data.shape}/{out._data.dtype} (at {_where()})")
        node = self.g.add_node(opdef.name, ins, attrs, m.dtype, m.shape, source=AF.user_frame())
        self.bind(out, node.output)
        if any(isinstance(d, SymInt) for d in m.shape):
            out._sym = tuple(m.shape)

    def guard(self, t, what):
        if id(t) in self.values:
            raise ExportError(f"{what} on a traced tensor at {_where()} would specialize the program on "
                              "this example's values; express it with tensor ops (where, masked_fill, "
                              "clamp) so it stays in the graph")

    def rebind(self, tensor, out):
        """An in-place op wrote `out` into `tensor`: later reads see the new value."""
        v = self.values.get(id(out))
        if v is None:
            return
        self.values[id(tensor)] = v
        self.writes[id(tensor)] = v
        tensor._sym = out._sym


def _flatten_outputs(out):
    if isinstance(out, Tensor):
        return [("output", out)]
    if isinstance(out, dict):
        return [(str(k), v) for k, v in out.items()]
    if isinstance(out, (tuple, list)):
        return [(f"output_{i}", v) for i, v in enumerate(out)]
    raise ExportError(f"a method must return a Tensor, a tuple/list or a dict of Tensors; got {type(out).__name__}")


def trace_method(model, fn, name, args, kwargs, dynamic_shapes, dim_objs):
    """Capture one method; returns (graph, constant values by name, state initial values)."""
    kwargs = kwargs or {}
    sig = inspect.signature(fn)
    try:
        bound = sig.bind(*args, **kwargs)
    except TypeError as e:
        raise ExportError(f"method {name!r}: example inputs do not match {fn.__qualname__}{sig}: {e}") from None
    bound.apply_defaults()
    g = Graph(name)
    tracer = Tracer(g)
    dyn = dict(dynamic_shapes or {})
    for k in dyn:
        if k not in bound.arguments:
            raise ExportError(f"method {name!r}: dynamic_shapes names {k!r}, which is not an argument of "
                              f"{fn.__qualname__}{sig}")
    call_args = {}
    for arg, val in bound.arguments.items():
        if not isinstance(val, Tensor):
            if arg in dyn:
                raise ExportError(f"method {name!r}: argument {arg!r} has dynamic dims but is not a Tensor")
            call_args[arg] = val          # Python values specialize the program
            continue
        spec = dyn.get(arg) or {}
        shape = []
        for ax, size in enumerate(val._data.shape):
            d = spec.get(ax)
            if d is None:
                shape.append(size)
                continue
            if not isinstance(d, Dim):
                raise ExportError(f"dynamic_shapes[{arg!r}][{ax}] must be a Dim, got {d!r}")
            if not d.min <= size <= d.max:
                raise ExportError(f"argument {arg!r} dim {ax} is {size}, outside {d}")
            if size < 2:
                raise ExportError(f"argument {arg!r} dim {ax} is dynamic ({d.name}) but the example has size "
                                  f"{size}; use an example size >= 2 so it is not taken for broadcasting")
            if d not in dim_objs:
                dim_objs.append(d)
            idx = [i for i, x in enumerate(g.dims) if x is d]
            if not idx:
                g.dims.append(d)
                idx = [len(g.dims) - 1]
            shape.append(SymInt(size, ("sym", idx[0])))
        for ax in spec:
            if not 0 <= ax < val.ndim:
                raise ExportError(f"dynamic_shapes[{arg!r}] names dim {ax}, but the example has rank {val.ndim}")
        t = Tensor._wrap(val._data)
        if any(isinstance(s, SymInt) for s in shape):
            t._sym = tuple(shape)
        v = Value(arg, val._data.dtype, tuple(shape), "input")
        g.inputs.append(v)
        tracer.bind(t, v)
        call_args[arg] = t
    params = list(model.named_parameters()) if model is not None else []
    buffers = list(model.named_buffers()) if model is not None else []
    saved = {}
    for pname, p in params + buffers:
        if id(p) in tracer.values:
            continue
        v = Value(pname, p._data.dtype, tuple(p._data.shape), "const", data=np.array(p._data, copy=True))
        g.constants[pname] = v
        tracer.bind(p, v)
    for bname, b in buffers:
        saved[bname] = (b, b._data, b._data.copy())
    AF.capture_hooks.append(tracer)
    try:
        with grad_mode.no_grad():
            out = fn(**call_args)
    finally:
        AF.capture_hooks.remove(tracer)
        for bname, (b, arr, copy) in saved.items():   # undo the example run's in-place writes
            b._data = arr
            np.copyto(arr, copy)
        for t in tracer.keep:
            t._sym = None
    for oname, t in _flatten_outputs(out):
        if not isinstance(t, Tensor):
            raise ExportError(f"method {name!r}: output {oname!r} is a {type(t).__name__}, not a Tensor")
        g.outputs.append(tracer.value_of(t))
        g.output_names.append(oname)
    pid = {id(p): n for n, p in params}
    for bname, b in buffers:
        if id(b) in tracer.writes:
            init = g.constants.pop(bname)
            init.kind = "state"
            g.state[bname] = init
            g.state_updates[bname] = tracer.writes[id(b)]
    for tid in tracer.writes:
        if tid in pid:
            raise ExportError(f"method {name!r} writes parameter {pid[tid]!r} in place; parameters are "
                              "constants in a program (use a buffer for mutable state)")
    return g


def _resize(a, shape):
    """An input of a new shape built from the example's values (so token ids stay valid)."""
    return np.resize(a, shape).astype(a.dtype)


def verify_dynamic(ep, model, methods):
    """Run each method with dynamic dims at their min, middle and max against eager.

    Catches specializations the capture could not see (a size used as a
    Python constant, broadcasting at size 1). Raises ExportError on a mismatch.
    """
    from .program import bind_dims
    for mname, (fn, args, dyn, kw) in methods.items():
        g = ep.graphs[mname]
        if not g.dims:
            continue
        for pick in ("min", "mid", "max"):
            sizes = {i: d.min if pick == "min" else d.max if pick == "max" else (d.min + d.max) // 2
                     for i, d in enumerate(g.dims)}
            new_args = list(args)
            arrays = []
            ti = 0
            for k, a in enumerate(args):
                if isinstance(a, Tensor):
                    v = g.inputs[ti]
                    ti += 1
                    shape = tuple(sizes[d.expr[1]] if isinstance(d, SymInt) else d for d in v.shape)
                    new_args[k] = Tensor._wrap(_resize(a._data, shape))
                    arrays.append(new_args[k]._data)
            bind_dims(g, arrays)
            saved = [(b, b._data.copy()) for _, b in model.named_buffers()] if model is not None else []
            mod = ep.module()
            try:
                with grad_mode.no_grad():
                    want = fn(*new_args, **(kw or {}))
                got = mod.run(mname, *[Tensor._wrap(a) for a in arrays])
            except Exception as e:
                raise ExportError(f"method {mname!r} failed at the {pick} dynamic sizes "
                                  f"{ {g.dims[i].name: n for i, n in sizes.items()} }: {type(e).__name__}: {e}") from e
            finally:
                for b, data in saved:
                    np.copyto(b._data, data)
            want = [t for _, t in _flatten_outputs(want)]
            got = got if isinstance(got, tuple) else (got,)
            for i, (w_, g_) in enumerate(zip(want, got)):
                if w_._data.shape != g_._data.shape or not np.allclose(w_._data, g_._data, rtol=1e-4, atol=1e-4):
                    raise ExportError(
                        f"method {mname!r} output {i} differs from eager at the {pick} dynamic sizes "
                        f"{ {g.dims[i2].name: n for i2, n in sizes.items()} } (shapes {g_._data.shape} vs "
                        f"{w_._data.shape}): the model probably uses a size as a Python constant")


def export_methods(model, methods, optimize=True, metadata=None, verify=True):
    """Capture several methods of one model into one program sharing constants.

    methods: {name: (fn, args) | (fn, args, dynamic_shapes) | (fn, args, dynamic_shapes, kwargs)};
    fn is a bound method or function of the model (the model itself for "forward").

    >>> ep = export_methods(model, {"prefill": (model, (ids,), {"input_ids": {1: seq}}),
    ...                             "decode": (model.decode, (tok, pos))})
    """
    from .passes import default_pipeline
    from .program import ExportedProgram
    graphs = {}
    dims = []
    norm = {}
    for mname, spec in methods.items():
        spec = tuple(spec)
        if len(spec) < 2:
            raise ExportError(f"method {mname!r}: expected (fn, args[, dynamic_shapes[, kwargs]])")
        fn, args = spec[0], spec[1]
        dyn = spec[2] if len(spec) > 2 else None
        kw = spec[3] if len(spec) > 3 else None
        if not isinstance(args, tuple):
            args = (args,)
        fn = fn.forward if hasattr(fn, "forward") and not inspect.ismethod(fn) and not inspect.isfunction(fn) else fn
        graphs[mname] = trace_method(model, fn, mname, args, kw, dyn, dims)
        norm[mname] = (fn, args, dyn, kw)
    ep = ExportedProgram(graphs, metadata=dict(metadata or {}))
    ep = ep.transform(default_pipeline(optimize))
    if verify:
        verify_dynamic(ep, model, norm)
    return ep


def export(model, args, kwargs=None, dynamic_shapes=None, method="forward", optimize=True, metadata=None,
           verify=True):
    """Capture `model` on example `args` into an ExportedProgram (torch.export style).

    dynamic_shapes: {arg_name: {axis: Dim("seq", min=1, max=2048)}}.
    optimize: True runs every pass; a list of pass names runs those; False only dead-code removal.
    verify: with dynamic dims, run the program at their min, middle and max sizes against eager.

    >>> ep = edgetorch.export(model, (x,), dynamic_shapes={"x": {0: Dim("batch", max=64)}})
    >>> print(ep.graph); ep.save("model.etp")
    """
    if not isinstance(args, tuple):
        args = (args,)
    fn = model if method == "forward" else getattr(model, method)
    return export_methods(model, {method: (fn, args, dynamic_shapes, kwargs)}, optimize=optimize,
                          metadata=metadata, verify=verify)
