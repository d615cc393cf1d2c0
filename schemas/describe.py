"""Human-readable summaries of a ProgramInfo (used by `edgetorch inspect`)."""
from __future__ import annotations

from edgetorch.symbolic import show

from . import format as F


def _dim(d, names):
    return show(d.expr, names) if isinstance(d, F.DimE) else str(d)


def _type(v, names):
    return f"{v.dtype}[{', '.join(_dim(d, names) for d in v.shape)}]"


def _attr(a, names):
    if isinstance(a, F.DimE):
        return show(a.expr, names)
    if isinstance(a, tuple):
        return "(" + ", ".join(_attr(x, names) for x in a) + ("," if len(a) == 1 else "") + ")"
    if isinstance(a, slice):
        return ":".join("" if x is None else _attr(x, names) for x in (a.start, a.stop, a.step))
    if a is Ellipsis:
        return "..."
    return repr(a)


def _mb(n):
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n:,} B"


def summary(info: F.ProgramInfo, path="", graph=False) -> str:
    out = []
    out.append(f"program      {path}".rstrip())
    out.append(f"format       {info.version[0]}.{info.version[1]}   producer: {info.producer}")
    out.append(f"file size    {_mb(info.file_size)}   constants {_mb(info.constant_bytes())} "
               f"in {len(info.constants)} tensors   checksum crc32 {info.constant_checksum:08x}")
    by_dtype = {}
    for c in info.constants:
        n, b = by_dtype.get(c.dtype, (0, 0))
        by_dtype[c.dtype] = (n + 1, b + c.nbytes)
    out.append("constants    " + ", ".join(f"{k}: {n} tensors, {_mb(b)}" for k, (n, b) in sorted(by_dtype.items())))
    for m in info.methods:
        names = [d[0] for d in m.dims]
        out.append("")
        out.append(f"method {m.name!r}")
        if m.dims:
            out.append("  dims       " + ", ".join(f"{n} in [{lo}, {hi}]" for n, lo, hi in m.dims))
        for label, idxs, nm in (("inputs", m.inputs, m.input_names), ("outputs", m.outputs, m.output_names)):
            out.append(f"  {label:<10} " + ", ".join(f"{n}: {_type(m.values[i], names)}" for i, n in zip(idxs, nm)))
        pct = 100 * m.arena_size / m.naive_size if m.naive_size else 0
        out.append(f"  arena      {_mb(m.arena_size)} planned at the upper bounds "
                   f"({pct:.0f}% of {_mb(m.naive_size)} unplanned)")
        out.append(f"  ops        {len(m.instructions)} instructions")
        if m.state_updates:
            out.append("  writes     " + ", ".join(info.states[s].name for s, _ in m.state_updates))
        if graph:
            for i, ins in enumerate(m.instructions):
                ins_s = ", ".join("None" if k < 0 else f"%{m.values[k].name}" for k in ins.inputs)
                at = ", ".join(f"{k}={_attr(v, names)}" for k, v in ins.attrs.items())
                o = m.values[ins.outputs[0]]
                src = f"  # {ins.source}:{ins.line}" if ins.source else ""
                out.append(f"    {i:>4}  %{o.name}: {_type(o, names)} = {ins.op}({ins_s}{'; ' + at if at else ''}){src}")
    hist = info.op_histogram()
    out.append("")
    out.append("op histogram " + ", ".join(f"{k} x{v}" for k, v in hist.items()))
    if info.states:
        out.append("state        " + ", ".join(f"{s.name}: {s.dtype}{list(s.shape)}" for s in info.states))
    q = {}
    for m in info.methods:
        for v in m.values:
            if v.quant:
                key = f"{v.quant['scheme']} int{v.quant['bits']}"
                q[key] = q.get(key, 0) + 1
    out.append("quantization " + (", ".join(f"{k}: {n} tensors" for k, n in q.items()) if q else "none (float)"))
    if info.metadata:
        out.append("metadata     " + ", ".join(f"{k}={v}" for k, v in info.metadata.items()))
    return "\n".join(out)
