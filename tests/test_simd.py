"""edgetorch._native.simd: each vector intrinsic against numpy, in small Numba functions.
The byte dot product (vpdpbusd) needs AVX512-VNNI: those tests skip without it."""
import numpy as np
import pytest
from numba import njit

from edgetorch._native import simd
from edgetorch._native.simd import (vadd, vand, vbcast4, vcvt, vdot, vfadd, vfhmax, vfhsum, vfload, vfma, vfmax,
                                    vfmul, vfsplat, vfstore, vfzero, vhsum, vload, vload4, vsplat, vsrl4, vstore,
                                    vsub, vzero, sload, wand, wbcast4, wcvt, wdot, wfhsum, wfload, wfmul, wload,
                                    wscales, wsplat, wsra4)

vnni = pytest.mark.skipif(not simd.HAVE_VNNI, reason="needs AVX512-VNNI and AVX512-VL")


@njit
def _dot(u, s):
    acc = vzero()
    for k in range(0, u.shape[0], 32):
        acc = vdot(acc, vload(u, k), vload(s, k))
    return vhsum(acc)


@njit
def _lanes(u, s, out):
    # out (8,) int32: lane j = sum over 4 bytes of u[4j:4j+4] * s[4j:4j+4]
    vstore(out, 0, vdot(vzero(), vload(u, 0), vload(s, 0)))


@njit
def _bcast(a, i, w, out):
    vstore(out, 0, vdot(vzero(), vbcast4(a, i), vload(w, 0)))


@vnni
@pytest.mark.parametrize("n", [32, 64, 352])
def test_byte_dot_product_is_exact_at_the_extremes(n):
    rng = np.random.default_rng(n)
    u = rng.integers(0, 256, n).astype(np.uint8)
    s = rng.integers(-128, 128, n).astype(np.int8)
    u[:32], s[:32] = 255, -128                       # the largest products: no saturation, no wrap
    assert _dot(u, s) == int(u.astype(np.int64) @ s.astype(np.int64))


@vnni
def test_byte_dot_lanes_and_broadcast():
    rng = np.random.default_rng(1)
    u = rng.integers(0, 256, 32).astype(np.uint8)
    s = rng.integers(-128, 128, 32).astype(np.int8)
    out = np.empty(8, np.int32)
    _lanes(u, s, out)
    np.testing.assert_array_equal(out, (u.astype(np.int64) * s).reshape(8, 4).sum(1))
    a = rng.integers(0, 256, 11).astype(np.uint8)
    _bcast(a, 5, s, out)                             # a[5:9] against each lane's 4 bytes
    np.testing.assert_array_equal(out, (s.astype(np.int64).reshape(8, 4) * a[5:9]).sum(1))


@njit
def _int_ops(x, out):
    v = vload(x, 0)
    vstore(out, 0, vand(vsrl4(v), vsplat(0x0F0F0F0F)))
    vstore(out, 8, vadd(v, vsplat(-1)))
    vstore(out, 16, vsub(vload4(out, 8), v))            # (v - 1) - v = -1 in every lane
    return vhsum(v)


def test_integer_lane_ops():
    x = np.arange(32, dtype=np.uint8) * 7
    out = np.empty(24, np.int32)
    total = _int_ops(x, out)
    lanes = x.view(np.int32)
    np.testing.assert_array_equal(out[:8], (lanes.view(np.uint32) >> 4) & 0x0F0F0F0F)
    np.testing.assert_array_equal(out[8:16], lanes - 1)
    np.testing.assert_array_equal(out[16:], -1)
    want = int(lanes.astype(np.int64).sum())
    assert total == (want + 2**31) % 2**32 - 2**31      # int32 lanes wrap


@njit
def _float_ops(a, b, ints, out):
    f = vfma(vfload(a, 0), vfload(b, 0), vfsplat(np.float32(0.5)))
    vfstore(out, 0, f)
    vfstore(out, 8, vfmul(vcvt(vload(ints, 0)), vfsplat(2.0)))
    vfstore(out, 16, vfadd(vfzero(), vfload(b, 0)))
    return vfhsum(f)


def test_float_lane_ops():
    rng = np.random.default_rng(2)
    a, b = rng.normal(size=(2, 8)).astype(np.float32)
    ints = rng.integers(-1000, 1000, 8).astype(np.int32)
    out = np.empty(24, np.float32)
    total = _float_ops(a, b, ints.view(np.uint8), out)
    np.testing.assert_allclose(out[:8], a * b + 0.5, rtol=1e-6)
    np.testing.assert_array_equal(out[8:16], ints.astype(np.float32) * 2)
    np.testing.assert_array_equal(out[16:], b)                  # 0 + b: vfzero is zeros
    assert total == pytest.approx(float((a * b + 0.5).sum()), rel=1e-5)


def test_intrinsics_refuse_wrong_types():
    from numba.core.errors import TypingError

    @njit
    def bad(x):
        return vload(x, 0)
    with pytest.raises(TypingError):
        bad(np.zeros(32, np.float32))                # vload reads bytes only


@njit
def _max_ops(a, b, out):
    m = vfmax(vfload(a, 0), vfload(b, 0))
    vfstore(out, 0, vfadd(m, vfsplat(1.0)))
    return vfhmax(m)


@pytest.mark.parametrize("where", range(8))
def test_float_max_and_horizontal_max(where):
    rng = np.random.default_rng(where)
    a, b = rng.normal(size=(2, 8)).astype(np.float32)
    a[:] = -np.inf
    b[where] = 100.0 + where                       # the max in each lane position in turn
    out = np.empty(8, np.float32)
    top = _max_ops(a, b, out)
    np.testing.assert_array_equal(out, np.maximum(a, b) + 1)
    assert top == 100.0 + where


@njit
def _wide(a, b, c, out, relu_out):
    acc = simd.wfma(simd.wfload(a, 0), simd.wfload(b, 0), simd.wfsplat(np.float32(0.5)))
    simd.wfstore(out, 0, simd.wfadd(acc, simd.wfload(c, 0)))
    simd.wfstore(relu_out, 0, simd.wfmax(simd.wfload(c, 0), simd.wfzero()))


@pytest.mark.skipif(not simd.HAVE_FMA, reason="16 float lanes are only used with FMA (and AVX-512F)")
def test_sixteen_float_lanes():
    rng = np.random.default_rng(3)
    a, b, c = (rng.normal(size=16).astype(np.float32) for _ in range(3))
    out, relu_out = np.zeros(16, np.float32), np.zeros(16, np.float32)
    _wide(a, b, c, out, relu_out)
    np.testing.assert_allclose(out, a * b + 0.5 + c, rtol=1e-6)
    np.testing.assert_array_equal(relu_out, np.maximum(c, 0))


@njit
def _shuffles(a, b, out):
    u, v = simd.wfload(a, 0), simd.wfload(b, 0)
    simd.wfstore(out, 0, simd.wfevens(u, v))
    simd.wfstore(out, 16, simd.wfodds(u, v))
    simd.wfstore(out, 32, simd.wfzip_lo(u, v))
    simd.wfstore(out, 48, simd.wfzip_hi(u, v))
    simd.wfstore(out, 64, simd.wfsub(u, v))


@njit
def _masked(a, i, j, m, out, k, l):
    v = simd.wfload2_mask(a, i, j, m)
    simd.wfstore(out, 0, v)
    simd.wfstore_mask(out, 16 + k, v, m)
    simd.wfstore2_mask(out, 48 + k, 48 + l, v, m)


@pytest.mark.skipif(not simd.HAVE_AVX512, reason="16-lane shuffles and masks need AVX-512F")
def test_sixteen_lane_shuffles_and_masked_pieces():
    """wfevens / wfodds and their inverse wfzip_lo / wfzip_hi (winograd.py's column phases), wfsub,
    and the masked two-piece load and stores: masked-off lanes read as 0.0 and are left unwritten."""
    a = np.arange(16, dtype=np.float32)
    b = np.arange(100, 116, dtype=np.float32)
    out = np.zeros(80, np.float32)
    _shuffles(a, b, out)
    both = np.concatenate([a, b])
    np.testing.assert_array_equal(out[:16], both[0::2])
    np.testing.assert_array_equal(out[16:32], both[1::2])
    np.testing.assert_array_equal(out[32:48], np.stack([a[:8], b[:8]], 1).ravel())
    np.testing.assert_array_equal(out[48:64], np.stack([a[8:], b[8:]], 1).ravel())
    np.testing.assert_array_equal(out[64:], a - b)
    np.testing.assert_array_equal(_zip_inverts(a, b), both)
    src = np.arange(64, dtype=np.float32) + 1
    m = 0b1011_0000_1111_0001
    out = np.full(96, -1, np.float32)
    _masked(src, 3, 40, m, out, 2, 30)
    lanes = np.array([(m >> k) & 1 for k in range(16)], bool)
    want = np.where(lanes, np.concatenate([src[3:11], src[40:48]]), 0)
    np.testing.assert_array_equal(out[:16], want)
    got = out[18:34]
    np.testing.assert_array_equal(got[lanes], want[lanes])
    assert (got[~lanes] == -1).all() and (out[16:18] == -1).all() and (out[34:48] == -1).all()
    np.testing.assert_array_equal(out[50:58][lanes[:8]], want[:8][lanes[:8]])
    np.testing.assert_array_equal(out[78:86][lanes[8:]], want[8:][lanes[8:]])
    assert (out[50:58][~lanes[:8]] == -1).all() and (out[78:86][~lanes[8:]] == -1).all()
    assert (out[58:78] == -1).all() and (out[86:] == -1).all()


@njit
def _zip_inverts(a, b):
    # wfzip_lo / wfzip_hi put back what wfevens / wfodds took apart
    u, v = simd.wfload(a, 0), simd.wfload(b, 0)
    e, o = simd.wfevens(u, v), simd.wfodds(u, v)
    out = np.empty(32, np.float32)
    simd.wfstore(out, 0, simd.wfzip_lo(e, o))
    simd.wfstore(out, 16, simd.wfzip_hi(e, o))
    return out


@njit
def _prefetch_sum(a, ahead):
    s = 0
    for i in range(a.shape[0]):
        simd.vprefetch(a, i + ahead)            # past the end: only a hint, never a fault
        s += a[i]
    return s


def test_prefetch_is_a_hint_that_never_faults():
    a = np.arange(1000, dtype=np.int8)
    for ahead in (0, 64, 1 << 20):
        assert _prefetch_sum(a, ahead) == int(a.astype(np.int64).sum())


@njit
def _wide_int(u, s, c, fo, sc):
    # the 16-lane integer operations of the int4 panel GEMV: dot, x broadcast, masked nibbles, the
    # high nibbles' sum shifted back, convert, scale; group scales (float32 or float16 bits)
    full = wdot(wsplat(c), wload(u, 0), wload(s, 0))
    bc = wdot(wsplat(0), wload(u, 0), wbcast4(s, 4))
    lo = wand(wload(u, 0), wsplat(0x0F0F0F0F))
    hi = wsra4(wdot(wsplat(0), wand(wload(u, 0), wsplat(-0x0F0F0F10)), wload(s, 0)))
    a = wfmul(wcvt(wdot(wsplat(0), lo, wload(s, 0))), wfload(fo, 0))
    return (wfhsum(wcvt(full)), wfhsum(wcvt(bc)), wfhsum(a), wfhsum(wcvt(hi)), wfhsum(wscales(sc, 2, 0x3)),
            sload(sc, 4))


@vnni
@pytest.mark.skipif(not simd.HAVE_AVX512, reason="needs AVX-512F")
@pytest.mark.parametrize("half", [False, True])
def test_sixteen_int_lanes_dot_nibbles_scales(half):
    rng = np.random.default_rng(4)
    u = rng.integers(0, 256, 64).astype(np.uint8)
    s = rng.integers(-128, 128, 64).astype(np.int8)
    u[:4], s[:4] = 255, -128                        # the largest products: exact in int32 lanes
    c = int(rng.integers(-1000, 1000))
    fo = rng.uniform(0.5, 2, 16).astype(np.float32)
    sc = (np.arange(14) * 0.25 + 0.5).astype(np.float16 if half else np.float32)
    full, bc, lo, hi, two, one = _wide_int(u, s, c, fo, sc.view(np.uint16) if half else sc)
    u64, s64 = u.astype(np.int64), s.astype(np.int64)
    lanes = (u64 * s64).reshape(16, 4).sum(1)
    assert full == lanes.sum() + 16 * c
    assert bc == (u64.reshape(16, 4) * s64[4:8]).sum()          # every lane against bytes 4-7
    lo_l = ((u64 & 15) * s64).reshape(16, 4).sum(1)
    np.testing.assert_allclose(lo, (lo_l * fo.astype(np.float64)).sum(), rtol=1e-6)
    hi_l = ((u64 >> 4) * s64).reshape(16, 4).sum(1)              # the masked high nibbles, shifted back
    assert hi == hi_l.sum() and (hi_l < 0).any()                 # arithmetic: negative sums stay exact
    sf = sc.astype(np.float64)
    assert two == sf[2] + sf[3] and one == sf[4]


def test_f32_of_bits():
    """f32_of_bits bitcasts exactly (int32 or int64 holding 32 bits): normals, subnormals, zero,
    infinity, NaN, negative values; what _quant_blocks / _quant_rows turn a block's max bits into."""
    from edgetorch._native.simd import f32_of_bits

    @njit
    def cast(b32, b64, o32, o64):
        for i in range(b32.size):
            o32[i] = f32_of_bits(b32[i])
            o64[i] = f32_of_bits(b64[i])
    v = np.array([1.5, -2.25, 0.0, 1e-42, np.inf, -np.inf, 3.4e38, np.nan], np.float32)
    bits = v.view(np.int32)
    o32, o64 = np.empty_like(v), np.empty_like(v)
    cast(bits, bits.astype(np.int64) & 0xFFFFFFFF, o32, o64)
    np.testing.assert_array_equal(o32.view(np.int32), bits)
    np.testing.assert_array_equal(o64.view(np.int32), bits)
