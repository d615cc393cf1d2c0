"""Verification of a parsed program before anything runs.

The reader checked the container and the tables' structure; this checks
meaning: every op has a kernel, values are defined once before use, every
constant and state matches its declaration, the memory plan holds every
value at the dims' upper bounds inside its arena without two live values
overlapping, sizes stay within a memory budget (all arithmetic in Python
ints: no wraparound), and attributes are valid for the ranks they apply to.
Any failure raises ProgramError naming the method, instruction and value.
"""
from __future__ import annotations

import numpy as np

from edgetorch._errors import ProgramError
from edgetorch._views import slice_view
from edgetorch.schemas.format import DimE, np_dtype
from edgetorch.symbolic import bounds, symbols

from .kernels import KERNELS

DEFAULT_BUDGET = 16 << 30     # bytes of arena + constants + state a program may ask for


def dim_bounds(d, ranges):
    if isinstance(d, DimE):
        return bounds(d.expr, ranges)
    return d, d


def max_nbytes(v, ranges, what):
    n = 1
    for d in v.shape:
        lo, hi = dim_bounds(d, ranges)
        if lo < 0:
            raise ProgramError(f"{what}: a dim can be negative ({lo}) within the declared ranges")
        n *= hi
    return n * np_dtype(v.dtype).itemsize


_AXIS_ATTRS = {"softmax": "dim", "log_softmax": "dim", "cat": "dim", "gather": "dim", "scatter_add": "dim",
               "index_select": "dim", "index_add": "dim", "argmax": "dim", "argmin": "dim"}
_REDUCE = {"sum", "mean", "amax", "amin", "var", "logsumexp", "prod"}


# the int4 group sizes the op defines (edgetorch.quant.grids.INT4_GROUPS; not imported: that package
# pulls in the frontend); a test keeps the two equal
INT4_GROUPS = (32, 64, 128, 256)
_QOPS = {"quantize_per_tensor", "dequantize_per_tensor", "conv2d_qs8", "linear_qs8", "add_qs8"}
_QPARAMS = {"scale", "zero_point", "in_scale", "in_zp", "out_scale", "out_zp", "a_scale", "a_zp", "b_scale", "b_zp"}


def _check_attrs(ins, m, what):
    rank = len(m.values[ins.inputs[0]].shape) if ins.inputs and ins.inputs[0] >= 0 else 0
    a = ins.attrs
    if ins.op == "permute":
        dims = a.get("dims")
        if not isinstance(dims, tuple) or sorted(int(d) % max(rank, 1) for d in dims) != list(range(rank)) \
                or any(not -rank <= int(d) < rank for d in dims):
            raise ProgramError(f"{what}: permute dims {dims} is not a permutation of rank {rank}")
    if ins.op in _AXIS_ATTRS:
        d = a.get(_AXIS_ATTRS[ins.op])
        if d is not None and (not isinstance(d, int) or not -max(rank, 1) <= d < max(rank, 1)):
            raise ProgramError(f"{what}: {ins.op} dim {d!r} is out of range for rank {rank}")
    if ins.op in _REDUCE:
        d = a.get("dim")
        dims = () if d is None else ((d,) if isinstance(d, int) else d)
        if not isinstance(dims, tuple) or any(not isinstance(x, int) or not -max(rank, 1) <= x < max(rank, 1)
                                              for x in dims):
            raise ProgramError(f"{what}: {ins.op} dim {d!r} is out of range for rank {rank}")
    if ins.op in ("getitem", "index_put"):
        index = a.get("index", ())
        n_t = sum(1 for e in index if isinstance(e, str)) if isinstance(index, tuple) else -1
        if n_t != len(ins.inputs) - (1 if ins.op == "getitem" else 2):
            raise ProgramError(f"{what}: index {index!r} marks {n_t} tensor indices but the instruction passes "
                               f"{len(ins.inputs) - (1 if ins.op == 'getitem' else 2)}")
    if ins.op == "linear_q4":
        blk = a.get("act_block", 0)
        if type(blk) is not int or blk not in (0, 32) or (blk and a.get("dynamic")):
            raise ProgramError(f"{what}: linear_q4 act_block={blk!r} (dynamic={a.get('dynamic')!r}): "
                               "expected 0, or 32 without dynamic")
    if "activation" in a and a["activation"] is not None:
        from .kernels.linalg import ACTS
        if a["activation"] not in ACTS:
            raise ProgramError(f"{what}: unknown activation {a['activation']!r}")
    for k, v in a.items():
        if isinstance(v, float) and not np.isfinite(v) and k not in ("value", "min", "max"):
            raise ProgramError(f"{what}: attribute {k!r} is {v}")
        if k in _QPARAMS and ins.op in _QOPS:          # static int8 grids
            if k.endswith("scale") and not (isinstance(v, (int, float)) and v > 0):
                raise ProgramError(f"{what}: quantization scale {k}={v!r} must be a positive number")
            if (k.endswith("zp") or k == "zero_point") and not (isinstance(v, int) and -128 <= v <= 127):
                raise ProgramError(f"{what}: zero point {k}={v!r} must be an int8 value")


_ARITY = {}


def kernel_arity(op):
    """(required inputs, max inputs or None if variadic) from the kernel's signature."""
    if op not in _ARITY:
        import inspect
        params = list(inspect.signature(KERNELS[op]).parameters.values())[1:]    # skip `out`
        pos = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        req = sum(1 for p in pos if p.default is p.empty)
        var = any(p.kind == p.VAR_POSITIONAL for p in params)
        _ARITY[op] = (req, None if var else len(pos))
    return _ARITY[op]


_INDEX_OPS = {"embedding": (0, 1, 0), "gather": (1, 0, None), "index_select": (1, 0, None)}


def _check_constant_indices(info, ins, m, what):
    """Index tensors stored in the program must be in range of the dim they index."""
    spec = _INDEX_OPS.get(ins.op)
    if spec is None:
        return
    ii, di, fixed = spec
    if len(ins.inputs) <= max(ii, di) or ins.inputs[ii] < 0:
        return
    iv, dv = m.values[ins.inputs[ii]], m.values[ins.inputs[di]]
    if iv.kind != "constant":
        return
    dim = fixed if fixed is not None else ins.attrs.get("dim", 0)
    if not isinstance(dim, int) or not dv.shape or not -len(dv.shape) <= dim < len(dv.shape):
        raise ProgramError(f"{what}: dim {dim!r} is out of range")
    n = dv.shape[dim]
    if isinstance(n, DimE):
        n = bounds(n.expr, {i: (lo, hi) for i, (_, lo, hi) in enumerate(m.dims)})[0]
    idx = info.arrays[iv.constant]
    if idx.dtype.kind not in "iu":
        raise ProgramError(f"{what}: index constant {iv.name!r} has dtype {idx.dtype}")
    if idx.size and (int(idx.min()) < 0 or int(idx.max()) >= n):
        raise ProgramError(f"{what}: index constant {iv.name!r} holds {int(idx.min())}..{int(idx.max())}, "
                           f"outside [0, {n})")


def _numel_key(shape):
    """(product of the static sizes, sorted symbolic factors): equal keys mean equal element counts."""
    n, sym = 1, []
    for d in shape:
        if isinstance(d, DimE):
            sym.append(repr(d.expr))
        else:
            n *= d
    return n, tuple(sorted(sym))


def planned_view(vals, ins):
    """True when instruction ins only renames its input's bytes and runs no kernel: a reshape or a
    contiguous getitem (edgetorch/_views.py) whose output the memory plan placed as a view of the
    input's slot at the matching offset (the exporter plans these; see exporter/memory_plan.py)."""
    if ins.op not in ("reshape", "getitem") or len(ins.inputs) != 1 or len(ins.outputs) != 1 or ins.inputs[0] < 0:
        return False
    src, o = ins.inputs[0], ins.outputs[0]
    vs, vo = vals[src], vals[o]
    if vs.kind != "activation" or vo.kind != "activation" or vo.alias < 0 or vs.dtype != vo.dtype:
        return False
    root = vs.alias if vs.alias >= 0 else src
    if vo.alias != root or vals[root].kind != "activation":
        return False
    if ins.op == "reshape":
        return vo.offset == vs.offset and _numel_key(vo.shape) == _numel_key(vs.shape)
    view = slice_view(tuple(vs.shape), ins.attrs.get("index", ()))
    return view is not None and vo.offset == vs.offset + view[0] * np_dtype(vs.dtype).itemsize \
        and _numel_key(vo.shape) == (view[1], ())


def _slot_owner(m, k):
    """The value whose arena slot value k uses (itself, or the activation it views)."""
    a = m.values[k].alias
    return a if a >= 0 and m.values[a].kind == "activation" else k


def _uses_unbound(a, bound):
    if isinstance(a, DimE):
        return not symbols(a.expr) <= bound
    if isinstance(a, tuple):
        return any(_uses_unbound(x, bound) for x in a)
    if isinstance(a, slice):
        return any(_uses_unbound(x, bound) for x in (a.start, a.stop, a.step))
    return False


def _check_state_alias(m, i, v, vw):
    """A value may share a state's buffer only as that state's in-place index_put update."""
    s = m.values[v.alias]
    if s.dtype != v.dtype or tuple(s.shape) != tuple(v.shape):
        raise ProgramError(f"{vw}: aliases state value {s.name!r} of another type")
    if not any(val == i and m.values[val].alias == v.alias for _, val in m.state_updates):
        raise ProgramError(f"{vw}: aliases a state but is not that state's update")
    j = next((j for j, ins in enumerate(m.instructions) if ins.outputs and ins.outputs[0] == i), None)
    if j is None or m.instructions[j].op != "index_put" or not m.instructions[j].inputs \
            or m.instructions[j].inputs[0] != v.alias or v.alias in m.instructions[j].inputs[1:]:
        raise ProgramError(f"{vw}: a state is updated in place only by index_put(state, ...)")
    if any(v.alias in ins.inputs for ins in m.instructions[j + 1:]) or v.alias in m.outputs:
        raise ProgramError(f"{vw}: the old value of state {s.name!r} is read after its in-place update")


def _check_quant(info, v, vw):
    """A quantized constant's scheme, bits, dtype, axis, group size, and the sizes of its scales and zero points."""
    q = v.quant
    shape = tuple(v.shape)
    if v.kind != "constant" or not all(isinstance(d, int) for d in shape):
        raise ProgramError(f"{vw}: quantization parameters on a {v.kind} value (only constants carry them)")
    scheme, bits, axis, group = q["scheme"], q["bits"], q["axis"], q["group_size"]

    def const(key, what):
        k = q.get(key, -1)
        if not 0 <= k < len(info.constants):
            raise ProgramError(f"{vw}: {what} index {k} out of range ({len(info.constants)} constants)")
        return info.constants[k]

    scale = const("scale", "scale")
    if scale.dtype != q["scale_dtype"] or scale.dtype not in ("float16", "float32"):
        raise ProgramError(f"{vw}: scale {scale.name!r} is {scale.dtype}; quantization says {q['scale_dtype']}")
    if scheme == "per_channel_symmetric" and bits == 8:
        if v.dtype != "int8" or axis != 0 or tuple(scale.shape) != (shape[0],):
            raise ProgramError(f"{vw}: per-channel int8 needs an int8 value with one scale per row (axis 0); got "
                               f"{v.dtype}{list(shape)}, axis {axis}, scale {list(scale.shape)}")
    elif scheme in ("per_group_symmetric", "per_group_affine") and bits == 4:
        n = scale.shape[0] if len(scale.shape) == 2 else -1
        if v.dtype != "uint8" or len(shape) != 2 or axis != 1 or group not in INT4_GROUPS or shape[1] % group \
                or tuple(scale.shape) != (n, shape[1] // group) or shape[0] != (n + 1) // 2:
            raise ProgramError(f"{vw}: int4 groups need uint8 row pairs (ceil(N/2), K), a group size of "
                               f"{'/'.join(map(str, INT4_GROUPS))} dividing K and scales (N, K/group); got "
                               f"{v.dtype}{list(shape)}, group {group}, "
                               f"scale {list(scale.shape)}")
        if scheme == "per_group_affine":
            z = const("zero_point", "zero point")
            if z.dtype != "uint8" or tuple(z.shape) != tuple(scale.shape):
                raise ProgramError(f"{vw}: zero points {z.dtype}{list(z.shape)} do not match scales "
                                   f"{list(scale.shape)} (uint8 expected)")
    else:
        raise ProgramError(f"{vw}: quantization scheme {scheme!r} with {bits} bits is not supported by this runtime")


def verify(info, memory_budget=DEFAULT_BUDGET):
    total = info.constant_bytes()
    for s in info.states:
        n = 1
        for d in s.shape:
            n *= d
        total += n * np_dtype(s.dtype).itemsize
        if s.init >= 0:
            c = info.constants[s.init]
            if c.dtype != s.dtype or tuple(c.shape) != tuple(s.shape):
                raise ProgramError(f"state {s.name!r}: initial value {c.name!r} is {c.dtype}{list(c.shape)}, "
                                   f"the state is {s.dtype}{list(s.shape)}")
    for m in info.methods:
        w = f"method {m.name!r}"
        ranges = {i: (lo, hi) for i, (_, lo, hi) in enumerate(m.dims)}
        total += m.arena_size
        if total > memory_budget:
            raise ProgramError(f"{w}: program needs {total:,} bytes (arena, constants, state), over the memory "
                               f"budget of {memory_budget:,}; pass a larger memory_budget= to load() if intended")
        defined = set()
        bound = {m.values[k].shape[ax].expr[1] for k in m.inputs for ax in range(len(m.values[k].shape))
                 if isinstance(m.values[k].shape[ax], DimE) and m.values[k].shape[ax].expr[0] == "sym"}
        for i, v in enumerate(m.values):
            vw = f"{w} value {i} ({v.name!r})"
            for d in v.shape:
                if isinstance(d, DimE) and not symbols(d.expr) <= bound:
                    raise ProgramError(f"{vw}: its shape uses a dim no input sets")
            if v.kind in ("input", "constant", "state"):
                defined.add(i)
            if v.kind == "constant":
                c = info.constants[v.constant]
                if c.dtype != v.dtype or tuple(c.shape) != tuple(v.shape):
                    raise ProgramError(f"{vw}: declared {v.dtype}{list(v.shape)} but constant {c.name!r} is "
                                       f"{c.dtype}{list(c.shape)}")
            if v.quant:
                _check_quant(info, v, vw)
            if v.kind == "state":
                s = info.states[v.state]
                if s.dtype != v.dtype or tuple(s.shape) != tuple(v.shape):
                    raise ProgramError(f"{vw}: declared {v.dtype}{list(v.shape)} but state {s.name!r} is "
                                       f"{s.dtype}{list(s.shape)}")
            try:
                need = max_nbytes(v, ranges, vw)
            except (ZeroDivisionError, OverflowError):
                raise ProgramError(f"{vw}: its shape expression divides by zero within the dims' ranges") from None
            if v.kind == "input":
                total_in = need
                if total_in > memory_budget:
                    raise ProgramError(f"{vw}: an input of {total_in:,} bytes at the upper bounds exceeds the "
                                       f"memory budget of {memory_budget:,}")
            if v.kind == "activation":
                if v.alias >= 0 and v.alias < len(m.values) and m.values[v.alias].kind == "state":
                    _check_state_alias(m, i, v, vw)
                elif v.alias >= 0:
                    if not v.alias < len(m.values) or m.values[v.alias].kind != "activation" \
                            or m.values[v.alias].alias >= 0:
                        raise ProgramError(f"{vw}: alias {v.alias} is not a planned activation")
                    slot = m.values[v.alias]
                    if v.offset < slot.offset or v.offset - slot.offset + need > slot.nbytes:
                        raise ProgramError(f"{vw}: needs {need} bytes at {v.offset} but aliases the slot "
                                           f"[{slot.offset}, {slot.offset + slot.nbytes})")
                elif need > v.nbytes or v.offset % 64 or v.offset + v.nbytes > m.arena_size:
                    raise ProgramError(f"{vw}: needs {need:,} bytes at the upper bounds; planned slot "
                                       f"[{v.offset:,}, {v.offset + v.nbytes:,}) in a {m.arena_size:,}-byte arena")
        for k in m.inputs:
            if m.values[k].kind != "input":
                raise ProgramError(f"{w}: method input {k} is a {m.values[k].kind}, not an input value")
        first, last = {}, {}
        for j, ins in enumerate(m.instructions):
            iw = f"{w} instruction {j} ({ins.op})"
            if ins.op not in KERNELS:
                raise ProgramError(f"{iw}: op {ins.op!r} has no kernel in this runtime (edgetorch "
                                   f"{__import__('edgetorch').__version__}); known ops: {len(KERNELS)}")
            req, most = kernel_arity(ins.op)
            if len(ins.inputs) < req or (most is not None and len(ins.inputs) > most) \
                    or any(k < 0 for k in ins.inputs[:req]):
                raise ProgramError(f"{iw}: takes {req} required input(s) (at most {most}), got "
                                   f"{ins.inputs}")
            for k in ins.inputs:
                if k >= 0 and k not in defined:
                    raise ProgramError(f"{iw}: reads value {k} ({m.values[k].name!r}) before it is defined")
            if len(ins.outputs) != 1:
                raise ProgramError(f"{iw}: has {len(ins.outputs)} outputs; every op has exactly one")
            o = ins.outputs[0]
            if m.values[o].kind != "activation" or o in defined:
                raise ProgramError(f"{iw}: output {o} must be an activation defined once")
            va = m.values[o].alias
            if 0 <= va < len(m.values) and m.values[va].kind == "activation" and not planned_view(m.values, ins):
                raise ProgramError(f"{iw}: output {o} is planned inside value {va}'s slot, but only a reshape or "
                                   f"a contiguous slice of that value may be")
            defined.add(o)
            _check_attrs(ins, m, iw)
            _check_constant_indices(info, ins, m, iw)
            for k2, a2 in ins.attrs.items():
                if _uses_unbound(a2, bound):
                    raise ProgramError(f"{iw}: attribute {k2!r} uses a dim no input sets")
            first.setdefault(_slot_owner(m, o), j)
            last[_slot_owner(m, o)] = max(last.get(_slot_owner(m, o), j), j)
            for k in ins.inputs:
                if k >= 0 and m.values[k].kind == "activation":
                    last[_slot_owner(m, k)] = max(last.get(_slot_owner(m, k), j), j)
        for k in m.outputs:
            if k not in defined:
                raise ProgramError(f"{w}: output value {k} is never defined")
        end = len(m.instructions)
        for k in list(m.outputs) + [v for _, v in m.state_updates]:
            if m.values[k].kind == "activation":
                last[_slot_owner(m, k)] = end
        for s, v in m.state_updates:
            st, val = info.states[s], m.values[v]
            if val.alias >= 0 and m.values[val.alias].kind == "state" and m.values[val.alias].state != s:
                raise ProgramError(f"{w}: value {val.name!r} is written in place into one state and "
                                   f"assigned to {st.name!r}")
            if val.dtype != st.dtype or tuple(val.shape) != tuple(st.shape):
                raise ProgramError(f"{w}: writes {val.dtype}{list(val.shape)} into state {st.name!r} "
                                   f"({st.dtype}{list(st.shape)})")
        slots = sorted((m.values[k].offset, m.values[k].offset + m.values[k].nbytes, first[k], last[k], k)
                       for k in first if m.values[k].nbytes)
        for a in range(len(slots)):
            a0, a1, f0, l0, ka = slots[a]
            for b in range(a + 1, len(slots)):
                b0, b1, f1, l1, kb = slots[b]
                if b0 >= a1:
                    break
                if not (l0 < f1 or l1 < f0):
                    raise ProgramError(f"{w}: values {m.values[ka].name!r} and {m.values[kb].name!r} are alive "
                                       f"together but share arena bytes [{b0}, {min(a1, b1)})")
    return True
