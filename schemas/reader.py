"""Parse .etp bytes into a ProgramInfo, checking the container and every
table's structure as it goes (the Python flatbuffers package has no
verifier).  Constants come back as zero-copy numpy views of the buffer.
Any problem raises ProgramError naming what was wrong.
"""
from __future__ import annotations

import mmap
import os
import struct
import zlib

import numpy as np

from edgetorch._errors import ProgramError

from . import format as F
from .generated import program_generated as G
from edgetorch.symbolic import CODE_OPS, from_postfix

_ATTR_KINDS = ["none", "bool", "int", "float", "string", "ints", "floats", "dims", "index", "dim"]
_VKINDS = ["activation", "input", "constant", "state"]
_QSCHEMES = ["none", "per_tensor_affine", "per_channel_symmetric", "per_channel_affine", "per_group_symmetric",
             "per_group_affine"]
MAX_RANK = 16


class _Ctx:
    def __init__(self, fb_size):
        self.fb_size = fb_size

    def n(self, count, what, elem=4):
        if count < 0 or count * elem > self.fb_size:
            raise ProgramError(f"{what}: vector length {count} does not fit in a {self.fb_size}-byte program")
        return count


def _s(b, what):
    if b is None:
        return None
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        raise ProgramError(f"{what}: string is not valid UTF-8") from None


def _dtype(code, what):
    if not 0 <= code < len(F.DTYPES):
        raise ProgramError(f"{what}: unknown dtype code {code}")
    return F.DTYPES[code]


def _dim(c, d, what, n_dims):
    if d is None:
        raise ProgramError(f"{what}: missing dim expression")
    nc = c.n(d.CodesLength(), what, 1)
    if nc == 0 or nc > 64 or d.ArgsLength() != nc:
        raise ProgramError(f"{what}: malformed dim expression ({nc} codes, {d.ArgsLength()} args)")
    codes = [d.Codes(i) for i in range(nc)]
    args = [d.Args(i) for i in range(nc)]
    depth = 0
    for code, a in zip(codes, args):
        if code not in CODE_OPS:
            raise ProgramError(f"{what}: unknown dim op code {code}")
        if code == 1 and not 0 <= a < n_dims:
            raise ProgramError(f"{what}: dim expression refers to symbol {a}, the method has {n_dims}")
        if code == 0 and abs(a) > 1 << 48:
            raise ProgramError(f"{what}: dim constant {a} is absurdly large")
        depth += 1 if code in (0, 1) else -1
        if depth < 1:
            raise ProgramError(f"{what}: malformed dim expression")
    if depth != 1:
        raise ProgramError(f"{what}: malformed dim expression")
    if nc == 1 and codes[0] == 0:
        return int(args[0])
    return F.DimE(from_postfix(codes, args))


def _attr(c, a, what, n_dims):
    name = _s(a.Name(), what) or ""
    k = a.Kind()
    if not 0 <= k < len(_ATTR_KINDS):
        raise ProgramError(f"{what}: attribute {name!r} has unknown kind {k}")
    kind = _ATTR_KINDS[k]
    w = f"{what} attribute {name!r}"
    if kind == "none":
        v = None
    elif kind == "bool":
        v = bool(a.I())
    elif kind == "int":
        v = int(a.I())
    elif kind == "float":
        v = float(a.F())
    elif kind == "string":
        v = _s(a.S(), w) or ""
    elif kind == "ints":
        v = tuple(int(a.Ints(i)) for i in range(c.n(a.IntsLength(), w, 8)))
    elif kind == "floats":
        v = tuple(float(a.Floats(i)) for i in range(c.n(a.FloatsLength(), w, 8)))
    elif kind in ("dims", "dim"):
        v = tuple(_dim(c, a.Dims(i), w, n_dims) for i in range(c.n(a.DimsLength(), w)))
        if kind == "dim":
            if len(v) != 1:
                raise ProgramError(f"{w}: a dim attribute holds exactly one expression")
            v = v[0]
    else:
        items = []
        for i in range(c.n(a.IndexLength(), w)):
            it = a.Index(i)
            ik = it.Kind()
            if ik == 4:
                items.append("#")
            elif ik == 2:
                items.append(None)
            elif ik == 3:
                items.append(Ellipsis)
            elif ik == 1:
                items.append(_dim(c, it.Start(), w, n_dims))
            elif ik == 0:
                parts = [None if x is None else _dim(c, x, w, n_dims) for x in (it.Start(), it.Stop(), it.Step())]
                items.append(slice(*parts))
            else:
                raise ProgramError(f"{w}: unknown index item kind {ik}")
        v = tuple(items)
    return name, v


def _static_shape(c, get, length, what):
    """A constant's or state's shape: non-negative ints, rank at most MAX_RANK."""
    shape = tuple(int(get(j)) for j in range(c.n(length, what, 8)))
    if len(shape) > MAX_RANK or any(s < 0 for s in shape):
        raise ProgramError(f"{what}: invalid shape {shape}")
    return shape


def _shape(c, get, length, what, n_dims):
    r = c.n(length, what)
    if r > MAX_RANK:
        raise ProgramError(f"{what}: rank {r} exceeds the maximum {MAX_RANK}")
    return tuple(_dim(c, get(i), f"{what} dim {i}", n_dims) for i in range(r))


def _method(c, m, ops, srcs, n_consts, n_states):
    name = _s(m.Name(), "method name") or ""
    w = f"method {name!r}"
    dims = []
    for i in range(c.n(m.DimsLength(), w)):
        d = m.Dims(i)
        lo, hi = d.Min(), d.Max()
        dn = _s(d.Name(), w) or f"d{i}"
        if not 0 <= lo <= hi:
            raise ProgramError(f"{w}: dim {dn!r} has range [{lo}, {hi}]; need 0 <= min <= max")
        dims.append((dn, lo, hi))
    values = []
    for i in range(c.n(m.ValuesLength(), w)):
        v = m.Values(i)
        vw = f"{w} value {i}"
        k = v.Kind()
        if not 0 <= k < len(_VKINDS):
            raise ProgramError(f"{vw}: unknown kind {k}")
        q = v.Quant()
        quant = None
        if q is not None and q.Scheme() != 0:
            if not 0 <= q.Scheme() < len(_QSCHEMES):
                raise ProgramError(f"{vw}: unknown quantization scheme {q.Scheme()}")
            quant = dict(scheme=_QSCHEMES[q.Scheme()], bits=q.Bits(), axis=q.Axis(), group_size=q.GroupSize(),
                         scale=q.Scale(), zero_point=q.ZeroPoint(), scale_dtype=_dtype(q.ScaleDtype(), vw))
        vi = F.ValueInfo(_s(v.Name(), vw) or "", _dtype(v.Dtype(), vw),
                         _shape(c, v.Shape, v.ShapeLength(), vw, len(dims)), _VKINDS[k], v.Constant(), v.State(),
                         v.Offset(), v.Nbytes(), v.Alias(), quant)
        if vi.kind == "constant" and not 0 <= vi.constant < n_consts:
            raise ProgramError(f"{vw}: constant index {vi.constant} out of range ({n_consts} constants)")
        if vi.kind == "state" and not 0 <= vi.state < n_states:
            raise ProgramError(f"{vw}: state index {vi.state} out of range ({n_states} states)")
        values.append(vi)
    nv = len(values)

    def idx_list(get, length, what, allow_missing=False):
        out = []
        for i in range(c.n(length, what)):
            x = get(i)
            if not (0 <= x < nv or (allow_missing and x == -1)):
                raise ProgramError(f"{what}: value index {x} out of range ({nv} values)")
            out.append(x)
        return out

    instrs = []
    for i in range(c.n(m.InstructionsLength(), w)):
        ins = m.Instructions(i)
        iw = f"{w} instruction {i}"
        if not 0 <= ins.Op() < len(ops):
            raise ProgramError(f"{iw}: operator index {ins.Op()} out of range ({len(ops)} operators)")
        src = ins.Source()
        if not -1 <= src < len(srcs):
            raise ProgramError(f"{iw}: source index {src} out of range")
        attrs = dict(_attr(c, ins.Attrs(j), iw, len(dims)) for j in range(c.n(ins.AttrsLength(), iw)))
        instrs.append(F.InstrInfo(ops[ins.Op()], idx_list(ins.Inputs, ins.InputsLength(), iw, True),
                                  idx_list(ins.Outputs, ins.OutputsLength(), iw), attrs,
                                  srcs[src] if src >= 0 else None, ins.Line()))
    ups = []
    for i in range(c.n(m.StateUpdatesLength(), w)):
        u = m.StateUpdates(i)
        if not 0 <= u.State() < n_states or not 0 <= u.Value() < nv:
            raise ProgramError(f"{w}: state update {i} refers to state {u.State()} / value {u.Value()} out of range")
        ups.append((u.State(), u.Value()))
    inputs = idx_list(m.Inputs, m.InputsLength(), f"{w} inputs")
    outputs = idx_list(m.Outputs, m.OutputsLength(), f"{w} outputs")
    in_names = [_s(m.InputNames(i), w) for i in range(c.n(m.InputNamesLength(), w))]
    out_names = [_s(m.OutputNames(i), w) for i in range(c.n(m.OutputNamesLength(), w))]
    if len(in_names) != len(inputs) or len(out_names) != len(outputs):
        raise ProgramError(f"{w}: {len(inputs)} inputs with {len(in_names)} names, {len(outputs)} outputs "
                           f"with {len(out_names)} names")
    return F.MethodInfo(name, dims, values, inputs, in_names, outputs, out_names, instrs, m.ArenaSize(),
                        m.NaiveSize(), ups)


def _buffer(path_or_bytes):
    if isinstance(path_or_bytes, (bytes, bytearray, memoryview)):
        return memoryview(path_or_bytes).cast("B") if not isinstance(path_or_bytes, bytes) else path_or_bytes
    p = os.fspath(path_or_bytes)
    try:
        with open(p, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise ProgramError(f"{p!r} is empty, not an .etp program")
            return mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
    except FileNotFoundError:
        raise ProgramError(f"no such program file: {p!r}") from None
    except IsADirectoryError:
        raise ProgramError(f"{p!r} is a directory, not an .etp program") from None


def read(path_or_bytes, verify_checksum=True) -> F.ProgramInfo:
    """Parse and structurally check a program; constants are views into the buffer."""
    buf = _buffer(path_or_bytes)
    total = len(buf)
    if total < F.HEADER_AT + F.HEADER_SIZE + 8:
        raise ProgramError(f"file of {total} bytes is too small to be an .etp program")
    if bytes(buf[4:8]) != F.FILE_IDENTIFIER:
        raise ProgramError(f"not an .etp program: file identifier {bytes(buf[4:8])!r}, expected {F.FILE_IDENTIFIER!r}")
    magic, hsize, fb_size, seg_off, seg_size = F.HEADER.unpack_from(buf, F.HEADER_AT)
    if magic != F.HEADER_MAGIC or hsize != F.HEADER_SIZE:
        raise ProgramError(f"bad .etp header (magic {magic!r}, size {hsize})")
    if not (F.HEADER_AT + F.HEADER_SIZE <= fb_size <= seg_off) or seg_off % F.ALIGN or seg_off + seg_size != total:
        raise ProgramError(f"header sizes do not match the file: program {fb_size} bytes, constants at {seg_off} "
                           f"+ {seg_size}, file {total} bytes")
    root = int.from_bytes(buf[:4], "little")
    if not F.HEADER_AT + F.HEADER_SIZE <= root < fb_size - 4:
        raise ProgramError(f"root table offset {root} is outside the program ({fb_size} bytes)")
    fb = bytes(buf[:fb_size])
    c = _Ctx(fb_size)
    try:
        p = G.Program.GetRootAs(fb, 0)
        major, minor = p.VersionMajor(), p.VersionMinor()
        if major != F.VERSION[0] or minor > F.VERSION[1]:
            raise ProgramError(f"program format version {major}.{minor} is not supported by this reader "
                               f"(reads {F.VERSION[0]}.0 to {F.VERSION[0]}.{F.VERSION[1]}); "
                               "upgrade edgetorch to load it")
        ops = [_s(p.Operators(i), "operator") for i in range(c.n(p.OperatorsLength(), "operators"))]
        srcs = [_s(p.SourceFiles(i), "source file") for i in range(c.n(p.SourceFilesLength(), "source files"))]
        consts, arrays = [], []
        for i in range(c.n(p.ConstantsLength(), "constants")):
            k = p.Constants(i)
            w = f"constant {i}"
            shape = _static_shape(c, k.Shape, k.ShapeLength(), w)
            ci = F.ConstantInfo(_s(k.Name(), w) or "", _dtype(k.Dtype(), w), shape, k.Offset(), k.Nbytes())
            n = 1
            for s in shape:
                n *= s                                  # Python ints: no wraparound
            itemsize = F.np_dtype(ci.dtype).itemsize
            want = (n + 1) // 2 if ci.dtype == "int4" else n * itemsize
            if ci.nbytes != want:
                raise ProgramError(f"{w} {ci.name!r}: {ci.nbytes} bytes, but shape {shape} of {ci.dtype} needs {want}")
            if ci.offset % F.ALIGN or ci.offset + ci.nbytes > seg_size:
                raise ProgramError(f"{w} {ci.name!r}: bytes [{ci.offset}, {ci.offset + ci.nbytes}) are not an "
                                   f"aligned range of the {seg_size}-byte constant segment")
            dt = F.np_dtype(ci.dtype)
            start = seg_off + ci.offset
            if ci.dtype == "int4":
                arr = np.frombuffer(buf, dtype=np.uint8, count=ci.nbytes, offset=start)
            else:
                arr = np.frombuffer(buf, dtype=dt, count=n, offset=start).reshape(shape)
            consts.append(ci)
            arrays.append(arr)
        states = []
        for i in range(c.n(p.StatesLength(), "states")):
            s = p.States(i)
            w = f"state {i}"
            shape = _static_shape(c, s.Shape, s.ShapeLength(), w)
            si = F.StateInfo(_s(s.Name(), w) or "", _dtype(s.Dtype(), w), shape, s.InitialValue())
            if not -1 <= si.init < len(consts):
                raise ProgramError(f"{w}: initial-value constant {si.init} out of range")
            states.append(si)
        methods = [_method(c, p.Methods(i), ops, srcs, len(consts), len(states))
                   for i in range(c.n(p.MethodsLength(), "methods"))]
        meta = {}
        for i in range(c.n(p.MetadataLength(), "metadata")):
            kv = p.Metadata(i)
            meta[_s(kv.Key(), "metadata key")] = _s(kv.Value(), "metadata value")
        dels = []
        for i in range(c.n(p.DelegatesLength(), "delegates")):
            d = p.Delegates(i)
            dels.append((_s(d.Backend(), "delegate"), _s(d.Method(), "delegate"),
                         d.BlobAsNumpy().tobytes() if d.BlobLength() else b""))
        checksum = p.ConstantChecksum()
        producer = _s(p.Producer(), "producer") or ""
    except ProgramError:
        raise
    except (IndexError, struct.error, ValueError, TypeError, OverflowError, RecursionError) as e:
        raise ProgramError(f"malformed program tables: {type(e).__name__}: {e}") from None
    if verify_checksum and zlib.crc32(memoryview(buf)[seg_off:seg_off + seg_size]) != checksum:
        raise ProgramError("constant segment checksum mismatch: the file is corrupt or was modified")
    info = F.ProgramInfo((major, minor), producer, methods, consts, states, meta, dels, checksum, arrays, total)
    return info
