"""Explicit SIMD for the integer kernels: AVX-512 VNNI byte dot products from Numba.

LLVM never turns a Numba loop into `vpdpbusd` (../shared/NUMBA.md: the best
a loop gets is `vpmaddwd` on int16 lanes), yet one `vpdpbusd` does 32
multiply-adds of unsigned by signed bytes into 8 int32 lanes: the
instruction ONNX Runtime's MLAS and llama.cpp build their int8 kernels on.
This module gives Numba code a few vector values and the operations on them,
as Numba intrinsics that emit the LLVM IR directly:

    v = vzero()                 8 int32 lanes of 0
    v = vload(a, i)             32 bytes of the 1-byte array a from flat element i
    v = vbcast4(a, i)           the 4 bytes a[i:i+4] in every lane
    v = vdot(acc, u, s)         acc + per lane sum of 4 products u8 x s8 (vpdpbusd)
    v = vload4(c, i)            8 int32 of the int32 array c from flat element i
    v = vadd(v, w); v = vsub(v, w); v = vand(v, w); v = vsrl4(v)
                                lane-wise add, subtract, bitwise and; each lane shifted right 4
    v = vsplat(n)               the int32 n in every lane
    vstore(c, i, v)             the 8 lanes into the int32 array c from flat element i
    n = vhsum(v)                the sum of the 8 lanes (int32)
    f = vcvt(v)                 the 8 lanes as float32
    f = vfma(f, g, h)           f * g + h, float32 lanes
    f = vfsplat(x), vfzero(), vfload(a, i), vfstore(a, i, f), x = vfhsum(f)
    f = vfadd(f, g), vfmul(f, g), vfmax(f, g); x = vfhmax(f)   (maxnum: a NaN lane loses)
    w = wfload(a, i), wfstore(a, i, w), wfsplat(x), wfzero(), wfma(w, u, z), wfadd, wfmax, wfhsum
                                the same on 16 float32 lanes (zmm: only where HAVE_AVX512)
    w = wnib_lo(a, i), wnib_hi(a, i)
                                the low / high 4 bits of 16 bytes of a as 16 float32 lanes
    w = wi8f(a, i)              16 signed bytes of the int8 array a as 16 float32 lanes
    w = wfload_mask(a, i, m)    the 16 float32 from flat element i in the lanes whose bit of the
                                integer m is set, 0.0 elsewhere (those lanes are not read)
    w = wfevens(u, v), wfodds(u, v)
                                the even (odd) lanes of u, then those of v
    vprefetch(a, i)             hint the cache line of flat element i into L1
    f = f32_of_bits(n)          the float32 whose bits are the int32 n (any CPU)
    v = wload(a, i), wdot(acc, u, s), wand(v, w), wsplat(n), wcvt(v)
                                the integer operations on 16 int32 lanes (zmm, 64 bytes; only where
                                HAVE_VNNI and HAVE_AVX512)
    v = wbcast4(a, i), wsra4(v)
                                the 4 bytes a[i:i+4] in all 16 lanes; each lane shifted right 4,
                                arithmetic (the int4 panel kernel's high nibbles, summed as 16 q)
    w = wfmul(w, u); v = wadd(v, w)
                                lane-wise float product; int32 sum
    w = wscales(a, i, m); x = sload(a, i)
                                16 (masked) or 1 float32 from a float32 array or from float16
                                bits in a uint16 array (int4 group scales as the file stores them)

The vectors are 256 bits wide (AVX512-VL, the width LLVM picks for this
machine's other loops), except the 16-lane float ones: Zen 4 runs a 512-bit
FMA at half the rate of 256-bit ones, the same FLOPs, but a GEMM tile of
16 zmm accumulators needs half the loads and broadcasts per FMA of its ymm
twin (the float GEMM: 165-190 -> 218-229 GFLOPS, measured).  Indices
are flat element indices into C-contiguous arrays and nothing is bounds
checked: callers size their arrays (the runtime's kernels pad them).

The instructions exist only where the CPU has AVX512-VNNI and AVX512-VL:
`HAVE_VNNI` says so, and kernels built on this module are compiled (lazily)
and called only when it is true; everything else keeps a portable loop.
EDGETORCH_VNNI=0 turns the paths off (for A/B measurements and for testing
the portable kernels on a VNNI machine).
"""
import os

from llvmlite import ir
from numba import types
from numba.core import cgutils
from numba.extending import intrinsic, models, register_model


def _host_features():
    """The host CPU's features as LLVM names them, or {} when the kernels must not assume any: a
    user-chosen LLVM target (NUMBA_CPU_NAME / NUMBA_CPU_FEATURES) may lack the instructions."""
    from numba.core import config
    if config.CPU_NAME not in (None, "host") or config.CPU_FEATURES:
        return {}
    try:
        import llvmlite.binding as ll
        return ll.get_host_cpu_features()
    except Exception:       # pragma: no cover - llvmlite without host introspection
        return {}


_FEATS = _host_features()
HAVE_VNNI = bool(_FEATS.get("avx512vnni") and _FEATS.get("avx512vl")) and os.environ.get("EDGETORCH_VNNI", "1") != "0"
# the float lanes (f32x8) compile anywhere, but llvm.fma becomes a libm call per lane without FMA
# hardware: kernels that are only worth it with vector FMAs check this
HAVE_FMA = bool(_FEATS.get("avx2") and _FEATS.get("fma"))
# 16-lane float32 values (f32x16) are zmm registers only with AVX-512F; elsewhere LLVM splits each
# into two halves and a kernel holding 16 of them spills: kernels choose their 8-lane twin then
HAVE_AVX512 = HAVE_FMA and bool(_FEATS.get("avx512f"))

_I32 = ir.IntType(32)
_VI = ir.VectorType(_I32, 8)
_VF = ir.VectorType(ir.FloatType(), 8)
_VF16 = ir.VectorType(ir.FloatType(), 16)
_VI16 = ir.VectorType(_I32, 16)


class _Vec(types.Type):
    def __init__(self, name):
        super().__init__(name)


i32x8 = _Vec("i32x8")
f32x8 = _Vec("f32x8")
f32x16 = _Vec("f32x16")
i32x16 = _Vec("i32x16")
_LLVM = {"i32x8": _VI, "f32x8": _VF, "f32x16": _VF16, "i32x16": _VI16}


class _VecModel(models.PrimitiveModel):
    def __init__(self, dmm, fe_type):
        super().__init__(dmm, fe_type, _LLVM[fe_type.name])


register_model(_Vec)(_VecModel)


def _byte_array(t):
    return isinstance(t, types.Array) and t.dtype in (types.int8, types.uint8) and t.layout == "C"


def _array_of(t, dtype):
    return isinstance(t, types.Array) and t.dtype == dtype and t.layout == "C"


def _ptr(ctx, b, aty, arr, idx, elem):
    data = ctx.make_array(aty)(ctx, b, arr).data
    return b.bitcast(b.gep(data, [idx]), elem.as_pointer())


def _splat(b, x, vty):
    v = b.insert_element(ir.Constant(vty, None), x, ir.Constant(_I32, 0))
    return b.shuffle_vector(v, ir.Constant(vty, None), ir.Constant(ir.VectorType(_I32, vty.count), None))


def _binary(vt, emit):
    """A lane-wise intrinsic f(x, y) on two vectors of type vt; emit(builder, x, y) builds the IR."""
    @intrinsic
    def op(typingctx, x, y):
        if not (x is vt and y is vt):
            return None
        return vt(x, y), lambda ctx, b, sig, args: emit(b, args[0], args[1])
    return op


vadd = _binary(i32x8, lambda b, x, y: b.add(x, y))
vsub = _binary(i32x8, lambda b, x, y: b.sub(x, y))
vand = _binary(i32x8, lambda b, x, y: b.and_(x, y))
vfadd = _binary(f32x8, lambda b, x, y: b.fadd(x, y))
vfmul = _binary(f32x8, lambda b, x, y: b.fmul(x, y))


def _llvm_call(name, lty, n):
    """emit(builder, *args) calling the LLVM intrinsic name.v<lanes>f32 on n vectors of type lty."""
    def emit(b, *args):
        fn = cgutils.get_or_insert_function(b.module, ir.FunctionType(lty, [lty] * n), f"{name}.v{lty.count}f32")
        return b.call(fn, list(args))
    return emit


vfmax = _binary(f32x8, _llvm_call("llvm.maxnum", _VF, 2))
wfadd = _binary(f32x16, lambda b, x, y: b.fadd(x, y))
wfsub = _binary(f32x16, lambda b, x, y: b.fsub(x, y))
wfmul = _binary(f32x16, lambda b, x, y: b.fmul(x, y))
wand = _binary(i32x16, lambda b, x, y: b.and_(x, y))
wadd = _binary(i32x16, lambda b, x, y: b.add(x, y))
wfmax = _binary(f32x16, _llvm_call("llvm.maxnum", _VF16, 2))


def _loader(ok, vt, lty, align):
    """An intrinsic f(a, i): the vector of type vt at flat element i of an array that `ok` accepts."""
    @intrinsic
    def load(typingctx, a, i):
        if not (ok(a) and isinstance(i, types.Integer)):
            return None
        return vt(a, i), lambda ctx, b, sig, args: b.load(_ptr(ctx, b, sig.args[0], args[0], args[1], lty),
                                                          align=align)
    return load


def _storer(dtype, vt, lty):
    """An intrinsic f(c, i, v): the vector v into the dtype array c from flat element i."""
    @intrinsic
    def store(typingctx, c, i, v):
        if not (_array_of(c, dtype) and isinstance(i, types.Integer) and v is vt):
            return None

        def codegen(ctx, b, sig, args):
            b.store(args[2], _ptr(ctx, b, sig.args[0], args[0], args[1], lty), align=4)
            return ctx.get_dummy_value()
        return types.none(c, i, v), codegen
    return store


@intrinsic
def vfload_s2(typingctx, a, i):
    """The 8 float32 at flat elements i, i + 2, ..., i + 14 of a (one 16-value load and a shuffle;
    reads element i + 15 too, so the caller keeps i + 15 inside the array): a row's even or odd
    columns, for splitting stride-2 convolution inputs into column phases."""
    if not (_array_of(a, types.float32) and isinstance(i, types.Integer)):
        return None

    def codegen(ctx, b, sig, args):
        v = b.load(_ptr(ctx, b, sig.args[0], args[0], args[1], _VF16), align=4)
        return b.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, 8), list(range(0, 16, 2))))
    return f32x8(a, i), codegen


vload = _loader(_byte_array, i32x8, _VI, 1)
vload4 = _loader(lambda a: _array_of(a, types.int32), i32x8, _VI, 4)
vfload = _loader(lambda a: _array_of(a, types.float32), f32x8, _VF, 4)
vstore = _storer(types.int32, i32x8, _VI)
vfstore = _storer(types.float32, f32x8, _VF)
wfload = _loader(lambda a: _array_of(a, types.float32), f32x16, _VF16, 4)
wload = _loader(_byte_array, i32x16, _VI16, 1)


wfstore = _storer(types.float32, f32x16, _VF16)


@intrinsic
def wfload_mask(typingctx, a, i, m):
    """The 16 float32 at flat element i of a where bit l of the integer m is set, 0.0 in the other
    lanes; masked-off lanes are not read (AVX-512 vmovups with a zeroing mask), so they may lie
    outside the array: a convolution's taps past a row's ends (conv_panels.py)."""
    if not (_array_of(a, types.float32) and isinstance(i, types.Integer) and isinstance(m, types.Integer)):
        return None
    m16 = ir.VectorType(ir.IntType(1), 16)

    def codegen(ctx, b, sig, args):
        fn = cgutils.get_or_insert_function(
            b.module, ir.FunctionType(_VF16, [_VF16.as_pointer(), _I32, m16, _VF16]), "llvm.masked.load.v16f32.p0")
        mask = b.bitcast(b.trunc(args[2], ir.IntType(16)), m16)
        ptr = _ptr(ctx, b, sig.args[0], args[0], args[1], _VF16)
        return b.call(fn, [ptr, ir.Constant(_I32, 4), mask, ir.Constant(_VF16, None)])
    return f32x16(a, i, m), codegen


def _masked_intrinsic(name, n):
    # the type of llvm.masked.load / llvm.masked.store over n float32 lanes
    vf, m = ir.VectorType(ir.FloatType(), n), ir.VectorType(ir.IntType(1), n)
    if name == "load":
        return ir.FunctionType(vf, [vf.as_pointer(), _I32, m, vf])
    return ir.FunctionType(ir.VoidType(), [vf, vf.as_pointer(), _I32, m])


def _mask_bits(b, m, lo, n):
    # bits lo .. lo + n - 1 of the integer m as an <n x i1> lane mask
    return b.bitcast(b.trunc(b.lshr(m, ir.Constant(m.type, lo)) if lo else m, ir.IntType(n)),
                     ir.VectorType(ir.IntType(1), n))


@intrinsic
def wfload2_mask(typingctx, a, i, j, m):
    """Lanes 0-7 from the 8 float32 at flat element i of a, lanes 8-15 from those at j, where bit l
    of m is set (0.0 elsewhere; masked-off lanes are not read): two rows' pieces as one vector."""
    if not (_array_of(a, types.float32) and isinstance(i, types.Integer) and isinstance(j, types.Integer)
            and isinstance(m, types.Integer)):
        return None

    def codegen(ctx, b, sig, args):
        fn = cgutils.get_or_insert_function(b.module, _masked_intrinsic("load", 8), "llvm.masked.load.v8f32.p0")
        halves = [b.call(fn, [_ptr(ctx, b, sig.args[0], args[0], args[k], _VF), ir.Constant(_I32, 4),
                              _mask_bits(b, args[3], 8 * (k - 1), 8), ir.Constant(_VF, None)]) for k in (1, 2)]
        return b.shuffle_vector(halves[0], halves[1], ir.Constant(_VI16, list(range(16))))
    return f32x16(a, i, j, m), codegen


@intrinsic
def wfstore_mask(typingctx, a, i, v, m):
    """Store the lanes of v whose bit in m is set at flat element i of a (others not written)."""
    if not (_array_of(a, types.float32) and isinstance(i, types.Integer) and v is f32x16
            and isinstance(m, types.Integer)):
        return None

    def codegen(ctx, b, sig, args):
        fn = cgutils.get_or_insert_function(b.module, _masked_intrinsic("store", 16), "llvm.masked.store.v16f32.p0")
        b.call(fn, [args[2], _ptr(ctx, b, sig.args[0], args[0], args[1], _VF16), ir.Constant(_I32, 4),
                    _mask_bits(b, args[3], 0, 16)])
        return ctx.get_dummy_value()
    return types.none(a, i, v, m), codegen


@intrinsic
def wfstore2_mask(typingctx, a, i, j, v, m):
    """wfstore_mask in two pieces: lanes 0-7 at flat element i, lanes 8-15 at j."""
    if not (_array_of(a, types.float32) and isinstance(i, types.Integer) and isinstance(j, types.Integer)
            and v is f32x16 and isinstance(m, types.Integer)):
        return None

    def codegen(ctx, b, sig, args):
        fn = cgutils.get_or_insert_function(b.module, _masked_intrinsic("store", 8), "llvm.masked.store.v8f32.p0")
        for k in (0, 1):
            half = b.shuffle_vector(args[3], args[3], ir.Constant(_VI, list(range(8 * k, 8 * k + 8))))
            b.call(fn, [half, _ptr(ctx, b, sig.args[0], args[0], args[1 + k], _VF), ir.Constant(_I32, 4),
                        _mask_bits(b, args[4], 8 * k, 8)])
        return ctx.get_dummy_value()
    return types.none(a, i, j, v, m), codegen


def _halves(odd):
    @intrinsic
    def pick(typingctx, u, v):
        if not (u is f32x16 and v is f32x16):
            return None

        def codegen(ctx, b, sig, args):
            return b.shuffle_vector(args[0], args[1],
                                    ir.Constant(ir.VectorType(_I32, 16), list(range(int(odd), 32, 2))))
        return f32x16(u, v), codegen
    return pick


# the even (odd) lanes of u then those of v, 16 lanes (one vpermt2ps): 16 pixels of a stride-2 row
# from two 16-value loads, or a row split into its column phases
wfevens, wfodds = _halves(False), _halves(True)


def _zipper(high):
    @intrinsic
    def zip_(typingctx, u, v):
        if not (u is f32x16 and v is f32x16):
            return None
        lo = 8 if high else 0

        def codegen(ctx, b, sig, args):
            return b.shuffle_vector(args[0], args[1], ir.Constant(
                ir.VectorType(_I32, 16), [k for i in range(lo, lo + 8) for k in (i, 16 + i)]))
        return f32x16(u, v), codegen
    return zip_


# lanes 0-7 (wfzip_lo) or 8-15 (wfzip_hi) of u and v interleaved, u0 v0 u1 v1 ...: the inverse of
# wfevens / wfodds, two column phases of a row put back together (winograd.py's output tiles)
wfzip_lo, wfzip_hi = _zipper(False), _zipper(True)


_SHUFFLES = {}


def wfshuffle(idx):
    """An intrinsic f(u, v) -> the 16 lanes idx[l] of u's lanes then v's (0-15 from u, 16-31 from v):
    one fixed two-source permutation (LLVM picks vpermt2ps, vshuff32x4, ...), made once per pattern.
    winograd.py's 4 x 4 block transposes of column phases."""
    idx = tuple(int(i) for i in idx)
    if len(idx) != 16 or not all(0 <= i < 32 for i in idx):
        raise ValueError(f"wfshuffle: 16 lane indices in 0..31, got {idx}")
    fn = _SHUFFLES.get(idx)
    if fn is None:
        @intrinsic
        def shuffle(typingctx, u, v):
            if not (u is f32x16 and v is f32x16):
                return None

            def codegen(ctx, b, sig, args):
                return b.shuffle_vector(args[0], args[1], ir.Constant(ir.VectorType(_I32, 16), list(idx)))
            return f32x16(u, v), codegen
        fn = _SHUFFLES[idx] = shuffle
    return fn


@intrinsic
def vprefetch(typingctx, a, i):
    """Hint the cache line holding flat element i of the C-contiguous array a into L1 (no fault
    past the end: a prefetch is only a hint).  For streaming kernels whose compute per byte is
    high enough that the core's own window keeps too few misses in flight for DRAM's bandwidth."""
    if not (isinstance(a, types.Array) and a.layout == "C" and isinstance(i, types.Integer)):
        return None

    def codegen(ctx, b, sig, args):
        fn = cgutils.get_or_insert_function(
            b.module, ir.FunctionType(ir.VoidType(), [ir.IntType(8).as_pointer(), _I32, _I32, _I32]),
            "llvm.prefetch.p0")
        ptr = _ptr(ctx, b, sig.args[0], args[0], args[1], ir.IntType(8))
        b.call(fn, [ptr, ir.Constant(_I32, 0), ir.Constant(_I32, 3), ir.Constant(_I32, 1)])
        return ctx.get_dummy_value()
    return types.none(a, i), codegen


@intrinsic
def vzero(typingctx):
    return i32x8(), lambda ctx, b, sig, args: ir.Constant(_VI, None)


def _bcast4(vt, lty):
    """An intrinsic f(a, i): the 4 bytes a[i:i+4] of a 1-byte array in every int32 lane of a vt."""
    @intrinsic
    def bcast(typingctx, a, i):
        if not (_byte_array(a) and isinstance(i, types.Integer)):
            return None

        def codegen(ctx, b, sig, args):
            return _splat(b, b.load(_ptr(ctx, b, sig.args[0], args[0], args[1], _I32), align=1), lty)
        return vt(a, i), codegen
    return bcast


vbcast4 = _bcast4(i32x8, _VI)
wbcast4 = _bcast4(i32x16, _VI16)


def _byte_dot(vt, lty):
    """vpdpbusd on vt (acc + per lane sum of 4 products u8 x s8), 256 or 512 bits wide."""
    name = f"llvm.x86.avx512.vpdpbusd.{lty.count * 32}"

    @intrinsic
    def dot(typingctx, acc, u, s):
        if not (acc is vt and u is vt and s is vt):
            return None

        def codegen(ctx, b, sig, args):
            fn = cgutils.get_or_insert_function(b.module, ir.FunctionType(lty, [lty, lty, lty]), name)
            return b.call(fn, list(args))
        return vt(acc, u, s), codegen
    return dot


vdot = _byte_dot(i32x8, _VI)


def _scale_array(a):
    return isinstance(a, types.Array) and a.layout == "C" and a.dtype in (types.float32, types.uint16)


def _to_f32(b, v, aty):
    """The loaded value v (float32, or float16 bits in uint16) as float32."""
    if aty.dtype == types.uint16:
        half = ir.HalfType() if not isinstance(v.type, ir.VectorType) else ir.VectorType(ir.HalfType(), v.type.count)
        fl = ir.FloatType() if not isinstance(v.type, ir.VectorType) else _VF16
        return b.fpext(b.bitcast(v, half), fl)
    return v


@intrinsic
def wscales(typingctx, a, i, m):
    """The 16 scales at flat element i of a (float32, or float16 bits held in a uint16 array: widened
    by vcvtph2ps, which every AVX-512 CPU has) in the lanes whose bit of the integer m is set, 0.0
    elsewhere (not read: the last row's last groups may end the array)."""
    if not (_scale_array(a) and isinstance(i, types.Integer) and isinstance(m, types.Integer)):
        return None
    lty = ir.VectorType(ir.IntType(16), 16) if a.dtype == types.uint16 else _VF16
    m16 = ir.VectorType(ir.IntType(1), 16)
    name = "llvm.masked.load.v16i16.p0" if a.dtype == types.uint16 else "llvm.masked.load.v16f32.p0"

    def codegen(ctx, b, sig, args):
        fn = cgutils.get_or_insert_function(b.module, ir.FunctionType(lty, [lty.as_pointer(), _I32, m16, lty]), name)
        mask = b.bitcast(b.trunc(args[2], ir.IntType(16)), m16)
        v = b.call(fn, [_ptr(ctx, b, sig.args[0], args[0], args[1], lty), ir.Constant(_I32, 2), mask,
                        ir.Constant(lty, None)])
        return _to_f32(b, v, sig.args[0])
    return f32x16(a, i, m), codegen


@intrinsic
def sload(typingctx, a, i):
    """Flat element i of a float32 array, or of float16 bits held in a uint16 array, as float32."""
    if not (_scale_array(a) and isinstance(i, types.Integer)):
        return None
    lty = ir.IntType(16) if a.dtype == types.uint16 else ir.FloatType()

    def codegen(ctx, b, sig, args):
        return _to_f32(b, b.load(_ptr(ctx, b, sig.args[0], args[0], args[1], lty)), sig.args[0])
    return types.float32(a, i), codegen


wdot = _byte_dot(i32x16, _VI16)


@intrinsic
def wsra4(typingctx, x):
    if x is not i32x16:
        return None
    return i32x16(x), lambda ctx, b, sig, args: b.ashr(args[0], ir.Constant(_VI16, [4] * 16))


@intrinsic
def wcvt(typingctx, v):
    if v is not i32x16:
        return None
    return f32x16(v), lambda ctx, b, sig, args: b.sitofp(args[0], _VF16)


@intrinsic
def vsrl4(typingctx, x):
    if x is not i32x8:
        return None

    def codegen(ctx, b, sig, args):
        return b.lshr(args[0], ir.Constant(_VI, [4] * 8))
    return i32x8(x), codegen


def _hsum(b, v, add):
    # halve the vector until one lane is left: log2(lanes) adds, no lane-by-lane extraction
    n = v.type.count
    while n > 1:
        n //= 2
        lo = b.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, n), list(range(n))))
        hi = b.shuffle_vector(v, v, ir.Constant(ir.VectorType(_I32, n), list(range(n, 2 * n))))
        v = add(lo, hi)
    return b.extract_element(v, ir.Constant(_I32, 0))


def _hsummer(vt, rt, add):
    """An intrinsic f(v): the sum of the lanes of a vt, as rt; add(builder) gives the lane add."""
    @intrinsic
    def hsum(typingctx, v):
        if v is not vt:
            return None
        return rt(v), lambda ctx, b, sig, args: _hsum(b, args[0], add(b))
    return hsum


vhsum = _hsummer(i32x8, types.int32, lambda b: b.add)


@intrinsic
def f32_of_bits(typingctx, b):
    """The float32 whose bit pattern is the low 32 bits of the integer b (a bitcast: NaNs,
    infinities and subnormals exactly; Numba has no scalar view)."""
    if not isinstance(b, types.Integer):
        return None

    def codegen(ctx, bld, sig, args):
        return bld.bitcast(bld.trunc(args[0], _I32) if b.bitwidth > 32 else args[0], ir.FloatType())
    return types.float32(b), codegen


@intrinsic
def vcvt(typingctx, v):
    if v is not i32x8:
        return None
    return f32x8(v), lambda ctx, b, sig, args: b.sitofp(args[0], _VF)


def _splatter(vt, lty, kind=types.Float, lane=types.float32):
    """An intrinsic f(x): the scalar x (a `kind`, cast to `lane`) in every lane of a vt."""
    @intrinsic
    def splat(typingctx, x):
        if not isinstance(x, kind):
            return None

        def codegen(ctx, b, sig, args):
            return _splat(b, ctx.cast(b, args[0], sig.args[0], lane), lty)
        return vt(x), codegen
    return splat


vsplat = _splatter(i32x8, _VI, types.Integer, types.int32)
wsplat = _splatter(i32x16, _VI16, types.Integer, types.int32)


def _fzero(vt, lty):
    @intrinsic
    def zero(typingctx):
        return vt(), lambda ctx, b, sig, args: ir.Constant(lty, None)
    return zero


def _fma(vt, lty):
    emit = _llvm_call("llvm.fma", lty, 3)

    @intrinsic
    def fma(typingctx, x, y, z):
        if not (x is vt and y is vt and z is vt):
            return None
        return vt(x, y, z), lambda ctx, b, sig, args: emit(b, *args)
    return fma


def _nibbles(high):
    """An intrinsic f(a, i): the 16 bytes of the uint8 array a from flat element i, their low (or
    high) 4 bits as 16 float32 lanes (zero-extended to int32 lanes first: int64 lanes would run at
    half the rate)."""
    b16, i16 = ir.VectorType(ir.IntType(8), 16), ir.VectorType(_I32, 16)

    @intrinsic
    def nibbles(typingctx, a, i):
        if not (_array_of(a, types.uint8) and isinstance(i, types.Integer)):
            return None

        def codegen(ctx, b, sig, args):
            v = b.zext(b.load(_ptr(ctx, b, sig.args[0], args[0], args[1], b16), align=1), i16)
            v = b.lshr(v, ir.Constant(i16, [4] * 16)) if high else b.and_(v, ir.Constant(i16, [15] * 16))
            return b.sitofp(v, _VF16)
        return f32x16(a, i), codegen
    return nibbles


wnib_lo, wnib_hi = _nibbles(False), _nibbles(True)


@intrinsic
def wi8f(typingctx, a, i):
    """The 16 signed bytes of the int8 array a from flat element i as 16 float32 lanes (sign-extended
    to int32 lanes, then converted: vpmovsxbd + vcvtdq2ps)."""
    if not (_array_of(a, types.int8) and isinstance(i, types.Integer)):
        return None
    b16, i16 = ir.VectorType(ir.IntType(8), 16), ir.VectorType(_I32, 16)

    def codegen(ctx, b, sig, args):
        return b.sitofp(b.sext(b.load(_ptr(ctx, b, sig.args[0], args[0], args[1], b16), align=1), i16), _VF16)
    return f32x16(a, i), codegen


vfsplat, vfzero, vfma = _splatter(f32x8, _VF), _fzero(f32x8, _VF), _fma(f32x8, _VF)
wfsplat, wfzero, wfma = _splatter(f32x16, _VF16), _fzero(f32x16, _VF16), _fma(f32x16, _VF16)


@intrinsic
def vfhmax(typingctx, v):
    if v is not f32x8:
        return None

    def codegen(ctx, b, sig, args):
        fn = cgutils.get_or_insert_function(b.module, ir.FunctionType(_VF, [_VF, _VF]), "llvm.maxnum.v8f32")
        # halve the vector through shuffles (upper lanes undefined afterwards), lane 0 holds the max
        v = args[0]
        for n in (4, 2, 1):
            hi = b.shuffle_vector(v, v, ir.Constant(_VI, list(range(n, 2 * n)) + list(range(8 - n))))
            v = b.call(fn, [v, hi])
        return b.extract_element(v, ir.Constant(_I32, 0))
    return types.float32(v), codegen


vfhsum = _hsummer(f32x8, types.float32, lambda b: b.fadd)
wfhsum = _hsummer(f32x16, types.float32, lambda b: b.fadd)


# the float lane operations by width, for kernels written once over both (jit.variant binds one set):
# ZERO, LOAD, SPLAT, FMA, ADD, MAX, STORE and L, the lane count
F8 = dict(ZERO=vfzero, LOAD=vfload, SPLAT=vfsplat, FMA=vfma, ADD=vfadd, MAX=vfmax, STORE=vfstore, L=8)
F16 = dict(ZERO=wfzero, LOAD=wfload, SPLAT=wfsplat, FMA=wfma, ADD=wfadd, MAX=wfmax, STORE=wfstore, L=16)

