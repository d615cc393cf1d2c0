"""The .etp container: version, header layout, dtype codes, and the plain
Python description of a program (ProgramInfo) that the writer serializes and
the reader returns.  Imports numpy only, so the runtime can use it.

File layout:
    [0:4)   FlatBuffer root offset          [4:8)  file identifier "ETP1"
    [8:40)  header: magic "ETH1", header size (u32), FlatBuffer size (u64),
            constant segment offset (u64), constant segment size (u64)
    [40:F)  the rest of the FlatBuffer (F = FlatBuffer size)
    [C:C+S) constant segment, C a multiple of 64; each constant 64-aligned
"""
from __future__ import annotations

import struct
from dataclasses import dataclass, field

import numpy as np

VERSION = (1, 1)            # major.minor: a reader takes the same major and any older minor
# 1.1: an alias (view) value's offset may lie inside its owner's slot (a contiguous getitem's start);
#      a 1.0 reader would place it at the slot's start, so it refuses 1.1 files
FILE_IDENTIFIER = b"ETP1"
HEADER_MAGIC = b"ETH1"
HEADER = struct.Struct("<4sIQQQ")   # magic, header size, flatbuffer size, constant offset, constant size
HEADER_SIZE = HEADER.size           # 32
HEADER_AT = 8
ALIGN = 64

DTYPES = ["float32", "float64", "float16", "bfloat16", "int8", "uint8", "int16", "int32", "int64", "bool", "int4"]
DTYPE_CODE = {n: i for i, n in enumerate(DTYPES)}


def np_dtype(name):
    if name == "bfloat16":
        import ml_dtypes
        return np.dtype(ml_dtypes.bfloat16)
    if name == "int4":
        return np.dtype(np.uint8)   # packed two per byte
    return np.dtype(name)


def dtype_name(dt):
    dt = np.dtype(dt)
    return "bool" if dt == np.bool_ else dt.name


@dataclass(frozen=True)
class DimE:
    """A symbolic dimension: an expression tuple over the method's dims."""
    expr: tuple

    def __repr__(self):
        from edgetorch.symbolic import show
        return show(self.expr)


def eval_attr(a, dims):
    """An attribute with its symbolic dims (DimE) evaluated for these dim values."""
    if isinstance(a, DimE):
        from edgetorch.symbolic import evaluate
        return evaluate(a.expr, dims)
    if isinstance(a, tuple):
        return tuple(eval_attr(x, dims) for x in a)
    if isinstance(a, slice):
        return slice(*(eval_attr(x, dims) for x in (a.start, a.stop, a.step)))
    return a


def has_dims(a):
    if isinstance(a, DimE):
        return True
    if isinstance(a, tuple):
        return any(has_dims(x) for x in a)
    if isinstance(a, slice):
        return any(has_dims(x) for x in (a.start, a.stop, a.step))
    return False


@dataclass
class ValueInfo:
    name: str
    dtype: str
    shape: tuple                 # ints and DimE
    kind: str                    # activation | input | constant | state
    constant: int = -1
    state: int = -1
    offset: int = 0
    nbytes: int = 0
    alias: int = -1
    quant: dict | None = None


@dataclass
class InstrInfo:
    op: str
    inputs: list                 # value indices, -1 for omitted
    outputs: list
    attrs: dict
    source: str | None = None
    line: int = 0


@dataclass
class MethodInfo:
    name: str
    dims: list                   # [(name, min, max)]
    values: list                 # [ValueInfo]
    inputs: list
    input_names: list
    outputs: list
    output_names: list
    instructions: list           # [InstrInfo]
    arena_size: int = 0
    naive_size: int = 0
    state_updates: list = field(default_factory=list)   # [(state index, value index)]


@dataclass
class ConstantInfo:
    name: str
    dtype: str
    shape: tuple
    offset: int = 0
    nbytes: int = 0


@dataclass
class StateInfo:
    name: str
    dtype: str
    shape: tuple
    init: int = -1


@dataclass
class ProgramInfo:
    version: tuple = VERSION
    producer: str = ""
    methods: list = field(default_factory=list)
    constants: list = field(default_factory=list)        # [ConstantInfo]
    states: list = field(default_factory=list)           # [StateInfo]
    metadata: dict = field(default_factory=dict)
    delegates: list = field(default_factory=list)        # [(backend, method, bytes)]
    constant_checksum: int = 0
    # not serialized in the FlatBuffer: the arrays (writer input / reader views)
    arrays: list = field(default_factory=list, repr=False, compare=False)
    file_size: int = 0

    def method(self, name):
        for m in self.methods:
            if m.name == name:
                return m
        raise KeyError(f"no method {name!r}; methods: {[m.name for m in self.methods]}")

    def constant_bytes(self):
        return sum(c.nbytes for c in self.constants)

    def op_histogram(self):
        h = {}
        for m in self.methods:
            for ins in m.instructions:
                h[ins.op] = h.get(ins.op, 0) + 1
        return dict(sorted(h.items(), key=lambda kv: -kv[1]))
