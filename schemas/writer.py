"""Serialize a ProgramInfo (plus its constant arrays) into .etp bytes."""
from __future__ import annotations

import zlib

import flatbuffers
import numpy as np

from . import format as F
from .generated import program_generated as G
from edgetorch.symbolic import to_postfix

_ATTR = {"none": 0, "bool": 1, "int": 2, "float": 3, "string": 4, "ints": 5, "floats": 6, "dims": 7,
         "index": 8, "dim": 9}
_VKIND = {"activation": 0, "input": 1, "constant": 2, "state": 3}
_QSCHEME = {"none": 0, "per_tensor_affine": 1, "per_channel_symmetric": 2, "per_channel_affine": 3,
            "per_group_symmetric": 4, "per_group_affine": 5}


def align(n, a=F.ALIGN):
    return (n + a - 1) // a * a


class _W:
    def __init__(self):
        self.b = flatbuffers.Builder(1 << 16)
        self._strings = {}

    def s(self, text):
        if text not in self._strings:
            self._strings[text] = self.b.CreateString(text)
        return self._strings[text]

    def vec_offsets(self, start_fn, offs):
        start_fn(self.b, len(offs))
        for o in reversed(offs):
            self.b.PrependUOffsetTRelative(o)
        return self.b.EndVector()

    def vec_scalars(self, start_fn, vals, prepend):
        start_fn(self.b, len(vals))
        for v in reversed(vals):
            prepend(v)
        return self.b.EndVector()

    def dim(self, d):
        if isinstance(d, F.DimE):
            codes, args = to_postfix(d.expr)
        else:
            codes, args = [0], [int(d)]
        c = self.vec_scalars(G.DimExprStartCodesVector, codes, self.b.PrependUint8)
        a = self.vec_scalars(G.DimExprStartArgsVector, args, self.b.PrependInt64)
        G.DimExprStart(self.b)
        G.DimExprAddCodes(self.b, c)
        G.DimExprAddArgs(self.b, a)
        return G.DimExprEnd(self.b)

    def longs(self, start_fn, vals):
        return self.vec_scalars(start_fn, [int(v) for v in vals], self.b.PrependInt64)

    def ints(self, start_fn, vals):
        return self.vec_scalars(start_fn, [int(v) for v in vals], self.b.PrependInt32)


def _attr_kind(name, v):
    if v is None:
        return "none"
    if isinstance(v, (bool, np.bool_)):
        return "bool"
    if isinstance(v, F.DimE):
        return "dim"
    if isinstance(v, (int, np.integer)):
        return "int"
    if isinstance(v, (float, np.floating)):
        return "float"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (tuple, list)):
        if name == "index" or any(isinstance(x, slice) or x is None or x is Ellipsis or isinstance(x, str) for x in v):
            return "index"
        if any(isinstance(x, F.DimE) for x in v):
            return "dims"
        if all(isinstance(x, (int, np.integer)) and not isinstance(x, bool) for x in v):
            return "ints"
        if all(isinstance(x, (int, float, np.integer, np.floating)) for x in v):
            return "floats"
    raise TypeError(f"attribute {name!r}: cannot serialize {v!r} ({type(v).__name__})")


def _index_item(w, e):
    b = w.b
    start = stop = step = None
    if isinstance(e, str):
        kind = 4
    elif e is None:
        kind = 2
    elif e is Ellipsis:
        kind = 3
    elif isinstance(e, slice):
        kind = 0
        start = None if e.start is None else w.dim(e.start)
        stop = None if e.stop is None else w.dim(e.stop)
        step = None if e.step is None else w.dim(e.step)
    else:
        kind = 1
        start = w.dim(e)
    G.IndexItemStart(b)
    G.IndexItemAddKind(b, kind)
    if start is not None:
        G.IndexItemAddStart(b, start)
    if stop is not None:
        G.IndexItemAddStop(b, stop)
    if step is not None:
        G.IndexItemAddStep(b, step)
    return G.IndexItemEnd(b)


def _attr(w, name, v):
    b = w.b
    kind = _attr_kind(name, v)
    n = w.s(name)
    s = ints = floats = dims = index = None
    if kind == "string":
        s = w.s(v)
    elif kind == "ints":
        ints = w.longs(G.AttrStartIntsVector, v)
    elif kind == "floats":
        floats = w.vec_scalars(G.AttrStartFloatsVector, [float(x) for x in v], b.PrependFloat64)
    elif kind in ("dims", "dim"):
        dims = w.vec_offsets(G.AttrStartDimsVector, [w.dim(x) for x in (v if kind == "dims" else [v])])
    elif kind == "index":
        index = w.vec_offsets(G.AttrStartIndexVector, [_index_item(w, e) for e in v])
    G.AttrStart(b)
    G.AttrAddName(b, n)
    G.AttrAddKind(b, _ATTR[kind])
    if kind in ("bool", "int"):
        G.AttrAddI(b, int(v))
    if kind == "float":
        G.AttrAddF(b, float(v))
    for add, off in ((G.AttrAddS, s), (G.AttrAddInts, ints), (G.AttrAddFloats, floats), (G.AttrAddDims, dims),
                     (G.AttrAddIndex, index)):
        if off is not None:
            add(b, off)
    return G.AttrEnd(b)


def _value(w, v: F.ValueInfo):
    b = w.b
    name = w.s(v.name)
    shape = w.vec_offsets(G.ValueStartShapeVector, [w.dim(d) for d in v.shape])
    q = None
    if v.quant:
        qd = v.quant
        G.QuantizationStart(b)
        G.QuantizationAddScheme(b, _QSCHEME[qd.get("scheme", "none")])
        G.QuantizationAddBits(b, int(qd.get("bits", 8)))
        G.QuantizationAddAxis(b, int(qd.get("axis", -1)))
        G.QuantizationAddGroupSize(b, int(qd.get("group_size", 0)))
        G.QuantizationAddScale(b, int(qd.get("scale", -1)))
        G.QuantizationAddZeroPoint(b, int(qd.get("zero_point", -1)))
        G.QuantizationAddScaleDtype(b, F.DTYPE_CODE[qd.get("scale_dtype", "float32")])
        q = G.QuantizationEnd(b)
    G.ValueStart(b)
    G.ValueAddName(b, name)
    G.ValueAddDtype(b, F.DTYPE_CODE[v.dtype])
    G.ValueAddShape(b, shape)
    G.ValueAddKind(b, _VKIND[v.kind])
    G.ValueAddConstant(b, v.constant)
    G.ValueAddState(b, v.state)
    G.ValueAddOffset(b, v.offset)
    G.ValueAddNbytes(b, v.nbytes)
    G.ValueAddAlias(b, v.alias)
    if q is not None:
        G.ValueAddQuant(b, q)
    return G.ValueEnd(b)


def _method(w, m: F.MethodInfo, op_index, src_index):
    b = w.b
    dims = []
    for name, lo, hi in m.dims:
        n = w.s(name)
        G.SymDimStart(b)
        G.SymDimAddName(b, n)
        G.SymDimAddMin(b, lo)
        G.SymDimAddMax(b, hi)
        dims.append(G.SymDimEnd(b))
    values = [_value(w, v) for v in m.values]
    instrs = []
    for ins in m.instructions:
        attrs = [_attr(w, k, v) for k, v in ins.attrs.items()]
        av = w.vec_offsets(G.InstructionStartAttrsVector, attrs)
        iv = w.ints(G.InstructionStartInputsVector, ins.inputs)
        ov = w.ints(G.InstructionStartOutputsVector, ins.outputs)
        G.InstructionStart(b)
        G.InstructionAddOp(b, op_index[ins.op])
        G.InstructionAddInputs(b, iv)
        G.InstructionAddOutputs(b, ov)
        G.InstructionAddAttrs(b, av)
        G.InstructionAddSource(b, src_index.get(ins.source, -1))
        G.InstructionAddLine(b, int(ins.line or 0))
        instrs.append(G.InstructionEnd(b))
    ups = []
    for st, val in m.state_updates:
        G.StateUpdateStart(b)
        G.StateUpdateAddState(b, st)
        G.StateUpdateAddValue(b, val)
        ups.append(G.StateUpdateEnd(b))
    name = w.s(m.name)
    dv = w.vec_offsets(G.MethodStartDimsVector, dims)
    vv = w.vec_offsets(G.MethodStartValuesVector, values)
    inp = w.ints(G.MethodStartInputsVector, m.inputs)
    inn = w.vec_offsets(G.MethodStartInputNamesVector, [w.s(x) for x in m.input_names])
    out = w.ints(G.MethodStartOutputsVector, m.outputs)
    outn = w.vec_offsets(G.MethodStartOutputNamesVector, [w.s(x) for x in m.output_names])
    iv = w.vec_offsets(G.MethodStartInstructionsVector, instrs)
    uv = w.vec_offsets(G.MethodStartStateUpdatesVector, ups)
    G.MethodStart(b)
    G.MethodAddName(b, name)
    G.MethodAddDims(b, dv)
    G.MethodAddValues(b, vv)
    G.MethodAddInputs(b, inp)
    G.MethodAddInputNames(b, inn)
    G.MethodAddOutputs(b, out)
    G.MethodAddOutputNames(b, outn)
    G.MethodAddInstructions(b, iv)
    G.MethodAddArenaSize(b, m.arena_size)
    G.MethodAddNaiveSize(b, m.naive_size)
    G.MethodAddStateUpdates(b, uv)
    return G.MethodEnd(b)


def layout_constants(info: F.ProgramInfo):
    """Assign each constant a 64-aligned offset in the segment; returns the segment size."""
    off = 0
    for c, a in zip(info.constants, info.arrays):
        c.offset = off
        c.nbytes = int(a.nbytes)
        off = align(off + c.nbytes)
    return off


def byte_view(a):
    """A flat uint8 view of an array's bytes (any dtype, including bfloat16 and 0-d)."""
    return np.ascontiguousarray(a).reshape(-1).view(np.uint8)


def _segment_checksum(info, seg_size):
    crc, pos = 0, 0
    for c, a in zip(info.constants, info.arrays):
        if c.offset > pos:
            crc = zlib.crc32(bytes(c.offset - pos), crc)
        crc = zlib.crc32(byte_view(a), crc)
        pos = c.offset + c.nbytes
    if seg_size > pos:
        crc = zlib.crc32(bytes(seg_size - pos), crc)
    return crc


def write(info: F.ProgramInfo) -> bytes:
    """The .etp bytes of `info` (info.arrays holds one array per constant)."""
    import io
    buf = io.BytesIO()
    write_to(info, buf)
    return buf.getvalue()


def write_to(info: F.ProgramInfo, f) -> int:
    """Stream the program into a binary file object; returns the bytes written.

    Constants go from their arrays straight to the file (no intermediate copy
    of the segment), so saving runs near the speed of the disk.
    """
    if len(info.arrays) != len(info.constants):
        raise ValueError("ProgramInfo.arrays must hold one array per constant")
    seg_size = layout_constants(info)
    info.constant_checksum = _segment_checksum(info, seg_size)
    w = _W()
    b = w.b
    ops = sorted({i.op for m in info.methods for i in m.instructions})
    op_index = {o: k for k, o in enumerate(ops)}
    srcs = sorted({i.source for m in info.methods for i in m.instructions if i.source})
    src_index = {s: k for k, s in enumerate(srcs)}
    methods = [_method(w, m, op_index, src_index) for m in info.methods]
    consts = []
    for c in info.constants:
        n = w.s(c.name)
        sh = w.longs(G.ConstantStartShapeVector, c.shape)
        G.ConstantStart(b)
        G.ConstantAddName(b, n)
        G.ConstantAddDtype(b, F.DTYPE_CODE[c.dtype])
        G.ConstantAddShape(b, sh)
        G.ConstantAddOffset(b, c.offset)
        G.ConstantAddNbytes(b, c.nbytes)
        consts.append(G.ConstantEnd(b))
    states = []
    for s in info.states:
        n = w.s(s.name)
        sh = w.longs(G.StateStartShapeVector, s.shape)
        G.StateStart(b)
        G.StateAddName(b, n)
        G.StateAddDtype(b, F.DTYPE_CODE[s.dtype])
        G.StateAddShape(b, sh)
        G.StateAddInitialValue(b, s.init)
        states.append(G.StateEnd(b))
    kvs = []
    for k, v in info.metadata.items():
        kk, vv = w.s(str(k)), w.s(str(v))
        G.KeyValueStart(b)
        G.KeyValueAddKey(b, kk)
        G.KeyValueAddValue(b, vv)
        kvs.append(G.KeyValueEnd(b))
    dels = []
    for backend, method, blob in info.delegates:
        bk, mt = w.s(backend), w.s(method)
        bl = b.CreateByteVector(bytes(blob))
        G.DelegateStart(b)
        G.DelegateAddBackend(b, bk)
        G.DelegateAddBlob(b, bl)
        G.DelegateAddMethod(b, mt)
        dels.append(G.DelegateEnd(b))
    producer = w.s(info.producer)
    algo = w.s("crc32")
    opv = w.vec_offsets(G.ProgramStartOperatorsVector, [w.s(o) for o in ops])
    mv = w.vec_offsets(G.ProgramStartMethodsVector, methods)
    cv = w.vec_offsets(G.ProgramStartConstantsVector, consts)
    sv = w.vec_offsets(G.ProgramStartStatesVector, states)
    kv = w.vec_offsets(G.ProgramStartMetadataVector, kvs)
    dv = w.vec_offsets(G.ProgramStartDelegatesVector, dels)
    sf = w.vec_offsets(G.ProgramStartSourceFilesVector, [w.s(x) for x in srcs])
    G.ProgramStart(b)
    G.ProgramAddVersionMajor(b, info.version[0])
    G.ProgramAddVersionMinor(b, info.version[1])
    G.ProgramAddProducer(b, producer)
    G.ProgramAddOperators(b, opv)
    G.ProgramAddMethods(b, mv)
    G.ProgramAddConstants(b, cv)
    G.ProgramAddStates(b, sv)
    G.ProgramAddMetadata(b, kv)
    G.ProgramAddDelegates(b, dv)
    G.ProgramAddSourceFiles(b, sf)
    G.ProgramAddConstantChecksum(b, info.constant_checksum)
    G.ProgramAddChecksumAlgorithm(b, algo)
    root = G.ProgramEnd(b)
    b.Finish(root, file_identifier=F.FILE_IDENTIFIER)
    fb = bytes(b.Output())
    # Insert the fixed header after the root offset and identifier; every
    # FlatBuffer offset is relative except the root's, which moves by its size.
    root_off = int.from_bytes(fb[:4], "little") + F.HEADER_SIZE
    fb_size = len(fb) + F.HEADER_SIZE
    seg_off = align(fb_size)
    header = F.HEADER.pack(F.HEADER_MAGIC, F.HEADER_SIZE, fb_size, seg_off, seg_size)
    f.write(root_off.to_bytes(4, "little") + fb[4:8] + header)
    f.write(memoryview(fb)[8:])
    f.write(bytes(seg_off - fb_size))
    pos = 0
    for c, a in zip(info.constants, info.arrays):
        if c.offset > pos:
            f.write(bytes(c.offset - pos))
        f.write(byte_view(a))
        pos = c.offset + c.nbytes
    if seg_size > pos:
        f.write(bytes(seg_size - pos))
    return seg_off + seg_size
