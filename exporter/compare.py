"""Per-layer numeric comparison of two programs (or an eager model and a program).

    report = edgetorch.exporter.compare(model_or_ep, qep, [(x,)])
    print(report)        # SQNR dB, max |err|, cosine per layer and for the outputs

Layers are matched by the SSA value they produce: a program and its
quantized or re-optimized copy keep value names, and an eager model is first
captured with the same export settings as the candidate.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from edgetorch._tensor import Tensor
from edgetorch.ops.registry import REGISTRY

from .program import ExportedProgram, bind_dims, eval_attr


def _trace(ep: ExportedProgram, method, args):
    """Every node output of one run of `method` (numpy arrays by value name)."""
    g = ep.graphs[method]
    arrays = [a._data if isinstance(a, Tensor) else np.asarray(a) for a in args]
    dims = bind_dims(g, arrays)
    env = {v: Tensor._wrap(a) for v, a in zip(g.inputs, arrays)}
    for v in list(g.constants.values()) + list(g.state.values()):
        env[v] = Tensor._wrap(v.data)
    out = {}
    for n in g.nodes:
        env[n.output] = REGISTRY[n.op](*[None if v is None else env[v] for v in n.inputs],
                                       **eval_attr(n.attrs, dims))
        a = env[n.output]._data
        if a.dtype == np.int8 and "out_scale" in n.attrs:       # static int8: compared in real units
            a = (a.astype(np.float32) - n.attrs["out_zp"]) * np.float32(n.attrs["out_scale"])
        out[n.output.name] = (n.op, n.source, a)
    return out, [env[v]._data for v in g.outputs]


def metrics(ref, got):
    ref = np.asarray(ref, np.float64).reshape(-1)
    got = np.asarray(got, np.float64).reshape(-1)
    err = got - ref
    p_sig, p_err = float(np.sum(ref * ref)), float(np.sum(err * err))
    sqnr = math.inf if p_err == 0 else (10 * math.log10(p_sig / p_err) if p_sig > 0 else -math.inf)
    den = float(np.linalg.norm(ref) * np.linalg.norm(got))
    cos = float(np.dot(ref, got) / den) if den > 0 else (1.0 if p_err == 0 else 0.0)
    return {"sqnr_db": sqnr, "max_abs": float(np.abs(err).max()) if err.size else 0.0, "cosine": cos}


@dataclass
class Report:
    layers: list        # (value name, op, source, metrics)
    outputs: list       # metrics per output (with top1 for 2-d logits)

    def __str__(self):
        lines = [f"{'layer':<10} {'op':<28} {'SQNR dB':>9} {'max |err|':>11} {'cosine':>9}  source"]
        for name, op, src, m in self.layers:
            where = f"{src[0].rsplit('/', 1)[-1]}:{src[1]}" if src and src[0] else ""
            lines.append(f"{name:<10} {op:<28} {m['sqnr_db']:>9.1f} {m['max_abs']:>11.3e} {m['cosine']:>9.5f}  {where}")
        for i, m in enumerate(self.outputs):
            extra = f"  top-1 agreement {m['top1'] * 100:.1f}%" if "top1" in m else ""
            lines.append(f"output {i}: SQNR {m['sqnr_db']:.1f} dB, max |err| {m['max_abs']:.3e}, "
                         f"cosine {m['cosine']:.5f}{extra}")
        return "\n".join(lines)


def compare(ref, ep: ExportedProgram, inputs, method=None) -> Report:
    """Compare `ep` against `ref` (an eager Module or an ExportedProgram) on a list of argument tuples."""
    method = method or ("forward" if "forward" in ep.graphs else next(iter(ep.graphs)))
    if not isinstance(ref, ExportedProgram):
        from .capture import export
        first = tuple(inputs[0])
        dyn = None
        g = ep.graphs[method]
        if g.dims:      # keep the candidate's dynamic dims so every input batch fits
            dyn = {}
            for v in g.inputs:
                spec = {ax: g.dims[d.expr[1]] for ax, d in enumerate(v.shape) if hasattr(d, "expr")}
                if spec:
                    dyn[v.name] = spec
        ref = export(ref, first, dynamic_shapes=dyn, verify=False)
    acc, outs = {}, []
    for args in inputs:
        r_layers, r_out = _trace(ref, method, args)
        c_layers, c_out = _trace(ep, method, args)
        for name, (op, src, got) in c_layers.items():
            if name in r_layers and r_layers[name][2].shape == got.shape and got.dtype.kind == "f":
                acc.setdefault(name, (op, src, [], []))
                acc[name][2].append(r_layers[name][2])
                acc[name][3].append(got)
        for i, (a, b) in enumerate(zip(r_out, c_out)):
            while len(outs) <= i:
                outs.append(([], []))
            outs[i][0].append(a)
            outs[i][1].append(b)
    layers = [(name, op, src, metrics(np.concatenate([x.reshape(-1) for x in rs]),
                                      np.concatenate([x.reshape(-1) for x in gs])))
              for name, (op, src, rs, gs) in acc.items()]
    out_metrics = []
    for rs, gs in outs:
        m = metrics(np.concatenate([x.reshape(-1) for x in rs]), np.concatenate([x.reshape(-1) for x in gs]))
        if all(x.ndim == 2 for x in rs):
            m["top1"] = float(np.mean(np.concatenate([a.argmax(-1) == b.argmax(-1) for a, b in zip(rs, gs)])))
        out_metrics.append(m)
    return Report(layers, out_metrics)
