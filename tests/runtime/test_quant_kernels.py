"""The quantized kernels (int8 / int4 weights, dynamic and static int8, x's quantization, the VNNI
panel layouts) against the ops' numpy references over odd shapes, and against unreadable pages."""
import numpy as np
import pytest

from edgetorch.ops import REGISTRY
from edgetorch.runtime.kernels import KERNELS
from tests.runtime.test_kernels import _int8_paths, at_end


@pytest.mark.parametrize("m,n,k", [(1, 4099, 257), (3, 4099, 257), (1, 7, 5), (6, 33, 9)])
def test_int8_linear_paths(m, n, k):
    """Serial, parallel (>= 1M weights, N not a multiple of 4) and dequantize+BLAS paths."""
    rng = np.random.default_rng(n + m)
    x = rng.normal(size=(m, k)).astype(np.float32)
    wq = rng.integers(-127, 128, size=(n, k)).astype(np.int8)
    s = rng.uniform(0.001, 0.01, size=n).astype(np.float32)
    b = rng.normal(size=n).astype(np.float32)
    out = np.empty((m, n), np.float32)
    for dyn in (False, True):
        KERNELS["linear_q8"](out, x, wq, s, b, dynamic=dyn)
        want = REGISTRY["linear_q8"].forward(x, wq, s, b, dynamic=dyn)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("tile_rows", [16, 37, 1000])
def test_int8_weight_prefill_tiles(tile_rows, monkeypatch):
    """Prefill-sized rows dequantize the weight a tile of rows at a time (a partial last tile, one
    tile for the whole weight) into one buffer; the result is the reference's."""
    from edgetorch.runtime.kernels import quant as Q
    monkeypatch.setattr(Q, "Q8_TILE_BYTES", 4 * 70 * tile_rows)
    rng = np.random.default_rng(tile_rows)
    x = rng.normal(size=(6, 70)).astype(np.float32)
    wq = rng.integers(-127, 128, size=(1000, 70)).astype(np.int8)
    s = rng.uniform(0.001, 0.01, size=1000).astype(np.float32)
    b = rng.normal(size=1000).astype(np.float32)
    out = np.full((6, 1000), np.nan, np.float32)
    KERNELS["linear_q8"](out, x, wq, s, b, activation="relu")
    want = REGISTRY["linear_q8"].forward(x, wq, s, b, activation="relu")
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("m", [1, 2, 4])
@pytest.mark.parametrize("k", [1, 3, 4, 15, 16, 63, 64, 80, 100, 257, 768])
@pytest.mark.parametrize("n", [1, 16, 37])
def test_int8_weight_gemv_panel_kernel(m, k, n, monkeypatch):
    """The weight-only int8 panel GEMV: steps of 4 columns into four accumulators and a column tail,
    a masked last panel (n % 16) and whole ones; serial and parallel copies, their inputs placed
    right before an unreadable page (a fault otherwise); against float64 numpy.  linear_q8 takes it
    for contiguous decode rows and keeps the portable loop for a strided output."""
    from edgetorch._native import simd
    from edgetorch.runtime.kernels import quant as Q
    if not simd.HAVE_AVX512:
        pytest.skip("needs AVX-512F")
    rng = np.random.default_rng(m * 1000 + k + n)
    x = rng.normal(size=(m, k)).astype(np.float32)
    wq = rng.integers(-127, 128, size=(n, k)).astype(np.int8)
    s = rng.uniform(0.001, 0.01, size=n).astype(np.float32)
    want = (x.astype(np.float64) @ wq.T.astype(np.float64)) * s
    wp, s16 = Q.q8_panels(wq, s)
    assert wp.size == -(-n // 16) * 16 * k and s16.size == -(-n // 16) * 16
    assert np.array_equal(wp.reshape(-1, k, 16)[0, :, :min(n, 16)], wq[:16].T)
    for fn in (Q._gemv_q8p, Q._gemv_q8p_par):
        out = np.full((m, n), np.nan, np.float32)
        fn(at_end(x), at_end(wp), at_end(s16), n, out)
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    calls = []
    for name in ("_gemv_q8p", "_gemv_q8p_par", "_gemv_q8", "_gemv_q8_par"):
        real = getattr(Q, name)
        monkeypatch.setattr(Q, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    out = np.full((m, n), np.nan, np.float32)
    KERNELS["linear_q8"](out, x, wq, s)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    strided = np.full((m, n + 1), np.nan, np.float32)[:, :n]
    KERNELS["linear_q8"](strided, x, wq, s)            # a strided output: the portable loop
    np.testing.assert_allclose(strided, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    assert calls[0].startswith("_gemv_q8p") and calls[1].startswith("_gemv_q8p") == strided.flags.c_contiguous


@pytest.mark.parametrize("m,n,k,g", [(1, 1, 32, 32), (1, 7, 64, 32), (2, 8, 96, 32), (1, 9, 128, 64),
                                     (3, 17, 256, 128), (1, 4099, 256, 256), (4, 33, 64, 64), (6, 19, 96, 32),
                                     (70, 301, 64, 32), (2, 3, 32, 32), (1, 5, 64, 32), (4, 12, 256, 64),
                                     (1, 11, 1152, 128), (2, 6, 1024, 256)])
@pytest.mark.parametrize("asym", [False, True])
@pytest.mark.parametrize("dyn", [False, True])
@pytest.mark.parametrize("vnni", _int8_paths())
def test_int4_linear_paths(m, n, k, g, asym, dyn, vnni, monkeypatch):
    """int4 GEMV (blocks of 8 rows, pair tails, odd N), int8-activation GEMV (portable, and VNNI for
    symmetric groups: 4 rows a task, an odd last pair, odd N), tiled dequantize+BLAS."""
    from edgetorch._native import simd
    from edgetorch.quant.grids import quantize_groups_int4
    monkeypatch.setattr(simd, "HAVE_VNNI", vnni)
    rng = np.random.default_rng(n * k + m)
    x = rng.normal(size=(m, k)).astype(np.float32)
    wp, s, z = quantize_groups_int4(rng.normal(size=(n, k)), g, symmetric=not asym)
    b = rng.normal(size=n).astype(np.float32)
    out = np.full((m, n), np.nan, np.float32)
    KERNELS["linear_q4"](out, x, wp, s, z, b, group_size=g, dynamic=dyn)
    want = REGISTRY["linear_q4"].forward(x, wp, s, z, b, group_size=g, dynamic=dyn)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("m,n,k,g", [(1, 1, 32, 32), (1, 7, 64, 32), (2, 8, 96, 32), (1, 9, 128, 64),
                                     (3, 17, 256, 128), (1, 4099, 256, 256), (4, 33, 64, 64), (2, 3, 32, 32)])
@pytest.mark.parametrize("asym", [False, True])
@pytest.mark.parametrize("wide", [pytest.param(True, id="zmm"), pytest.param(False, id="portable")])
def test_int4_float_gemv_paths(m, n, k, g, asym, wide, monkeypatch):
    """int4-weight GEMV with float activations: the 16-lane kernel (two pairs a task, an odd last
    pair, odd N, zero points; its group-32 variant) and the portable loop, against the reference."""
    from edgetorch._native import simd
    from edgetorch.quant.grids import quantize_groups_int4
    from edgetorch.runtime.kernels import quant4 as quant
    if wide and not simd.HAVE_AVX512:
        pytest.skip("no AVX-512F")
    monkeypatch.setattr(simd, "HAVE_AVX512", wide)
    calls = []
    for name in ("_gemv_q4_wide", "_gemv_q4_wide_par", "_gemv_q4_g32", "_gemv_q4_g32_par", "_gemv_q4", "_gemv_q4_par"):
        real = getattr(quant, name)
        monkeypatch.setattr(quant, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    rng = np.random.default_rng(n * k + m)
    x = rng.normal(size=(m, k)).astype(np.float32)
    wp, s, z = quantize_groups_int4(rng.normal(size=(n, k)), g, symmetric=not asym)
    out = np.full((m, n), np.nan, np.float32)
    KERNELS["linear_q4"](out, x, wp, s, z, None, group_size=g)
    want = REGISTRY["linear_q4"].forward(x, wp, s, z, None, group_size=g)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())
    assert calls and all(("wide" in c or "g32" in c) == wide for c in calls)
    assert all(("g32" in c) == (g == 32) for c in calls if wide)      # group 32 compiled as a constant


@pytest.mark.parametrize("m,n,k,g", [(1, 1, 32, 32), (1, 7, 64, 32), (2, 8, 96, 32), (1, 9, 128, 64),
                                     (3, 17, 256, 128), (1, 4099, 256, 256), (4, 33, 64, 64), (6, 19, 96, 32),
                                     (70, 301, 64, 32), (2, 3, 32, 32), (1, 2049, 288, 32), (4, 12, 512, 256),
                                     (2, 13, 800, 32), (1, 11, 1152, 128), (3, 5, 2048, 256), (5, 7, 1088, 64)])
@pytest.mark.parametrize("asym", [False, True])
@pytest.mark.parametrize("vnni512", [pytest.param(True, id="vnni512"), pytest.param(False, id="dequantized")])
@pytest.mark.parametrize("f16", [pytest.param(True, id="f16scales"), pytest.param(False, id="f32scales")])
def test_int4_act_block_paths(m, n, k, g, asym, vnni512, f16, monkeypatch):
    """int4-weight with int8 activation blocks (act_block=32): the 512-bit VNNI kernel (64 columns a
    step, a 32-column last step, groups of 32 with two accumulators a row, larger groups with one,
    zero points, an odd last pair, odd N, serial and parallel, any row count) and, without it, x
    put on its block grid then the float paths; both against the reference, which rounds x alike."""
    from edgetorch.quant.grids import quantize_groups_int4
    from edgetorch.runtime.kernels import quant4, vnni
    if vnni512 and not quant4._blocks_vnni():
        pytest.skip("no AVX512-VNNI")
    monkeypatch.setattr(quant4, "_blocks_vnni", lambda: vnni512)
    calls = []
    real = vnni.gemv_q4
    monkeypatch.setattr(vnni, "gemv_q4", lambda *a: calls.append(1) or real(*a))
    rng = np.random.default_rng(n * k + m + 1)
    x = rng.normal(size=(m, k)).astype(np.float32)
    x[0, :32] *= 40.0                                 # blocks of very different scales
    wp, s, z = quantize_groups_int4(rng.normal(size=(n, k)), g, symmetric=not asym)
    s = s if f16 else s.astype(np.float32)            # the file's float16, or widened
    b = rng.normal(size=n).astype(np.float32)
    out = np.full((m, n), np.nan, np.float32)
    KERNELS["linear_q4"](out, x, wp, s, z, b, group_size=g, act_block=32)
    want = REGISTRY["linear_q4"].forward(x, wp, s, z, b, group_size=g, act_block=32)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())
    assert bool(calls) == vnni512
    floatx = REGISTRY["linear_q4"].forward(x, wp, s, z, b, group_size=g)
    assert k == 32 or np.abs(floatx - want).max() > 0           # the blocks do round x


_GUARDED_Q4 = [(1, 13, 800, 32, False), (2, 9, 288, 32, False), (1, 7, 1088, 64, True), (3, 5, 512, 128, True),
               (2, 3, 32, 32, False), (1, 6, 96, 32, True), (1, 32, 64, 32, False), (2, 17, 160, 32, False)]


@pytest.mark.parametrize("m,n,k,g,rows,asym", [c + (a,) for c in _GUARDED_Q4 for a in (False, True)
                                               if not (c[4] and a)])     # 8da4w weights are symmetric
def test_int4_vnni_kernel_reads_nothing_past_its_arrays(m, n, k, g, rows, asym):
    """The 512-bit int4 panel kernel's weights, scales, zero points, x rows and block arrays each
    placed right before an unreadable page: the last panel (masked store, padding rows), the last
    block's broadcasts of x and the last scale vectors stay inside (a fault otherwise), serial and
    parallel, and match the reference."""
    from edgetorch.quant.grids import dequantize_int4, fake_quant_blocks_int8, fake_quant_rows_dynamic
    from edgetorch.quant.grids import quantize_groups_int4
    from edgetorch.runtime.kernels import quant as Q, quant4, vnni
    if not quant4._blocks_vnni():
        pytest.skip("no AVX512-VNNI")
    rng = np.random.default_rng(k + n)
    x = rng.normal(size=(m, k)).astype(np.float32)
    wp, s, z = quantize_groups_int4(rng.normal(size=(n, k)), g, symmetric=not asym)
    xq, bs, bd, xg = quant4._block_scratch(m, k, k // g)
    if rows:
        sx = np.empty(m, np.float32)
        Q._quant_rows(x, xq, sx)
        Q._row_blocks(xq, bs)
        want = fake_quant_rows_dynamic(x)
    else:
        sx = None
        Q._quant_blocks(x, xq, bs, bd, xg, 0 if asym else 8)
        want = fake_quant_blocks_int8(x)
    want = want.astype(np.float64) @ dequantize_int4(wp, s, z, g, np.float64).T
    wq, s16, z16 = vnni.q4_panels(wp, s, z, n)
    assert wq.size == -(-n // 16) * 8 * k and s16.dtype == np.uint16 and s16.size == -(-n // 16) * 16 * (k // g)
    out = np.full((m, n), np.nan, np.float32)
    args = (at_end(xq), at_end(bs), at_end(bd), vnni._NO_F32 if sx is None else at_end(sx), at_end(xg), at_end(wq),
            at_end(s16), at_end(z16), not asym, n, out)
    for par in (False, True):
        out[...] = np.nan
        (vnni._gemv_q4p_rows if rows else vnni._gemv_q4p_blocks)[par](*args)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5 * np.abs(want).max())


def test_int4_panels_layout():
    """vnni.q4_panels puts row r's weights at columns 32b + 8v + j (low nibble) and + 4 (high) in
    byte 4 (r % 16) + j of vector v of block b of panel r // 16; scales and zero points a panel's 16
    rows a group; padding rows zero; float32 scales stay float32; made once per read-only constant."""
    from edgetorch.quant.grids import quantize_groups_int4
    from edgetorch.runtime.kernels import vnni
    rng = np.random.default_rng(5)
    n, k, g = 21, 96, 32
    wp, s, z = quantize_groups_int4(rng.normal(size=(n, k)), g, symmetric=False)
    q = np.zeros((n + 1, k), np.int64)
    q[0::2], q[1::2] = wp & 15, wp >> 4
    q = q[:n]
    wq, s16, z16 = vnni.q4_panels(wp, s, z, n)
    P = wq.reshape(2, k // 32, 4, 16, 4)
    for r in range(32):
        for b in range(k // 32):
            for v in range(4):
                for j in range(4):
                    byte = int(P[r // 16, b, v, r % 16, j])
                    lo, hi = (q[r, 32 * b + 8 * v + j], q[r, 32 * b + 8 * v + 4 + j]) if r < n else (0, 0)
                    assert (byte & 15, byte >> 4) == (lo, hi)
    sp = s16.view(np.float16).reshape(2, k // g, 16)
    assert np.array_equal(sp[0].T, s[:16]) and np.array_equal(sp[1, :, :5].T, s[16:]) and not sp[1, :, 5:].any()
    assert np.array_equal(z16.reshape(2, k // g, 16)[1, :, :5].T, z[16:].astype(np.int8))
    _, s32, _ = vnni.q4_panels(wp, s.astype(np.float32), None, n)
    assert s32.dtype == np.float32 and np.array_equal(s32.reshape(2, k // g, 16)[0].T, s[:16].astype(np.float32))
    wp.flags.writeable = False
    assert vnni.q4_panels(wp, s, z, n)[0] is vnni.q4_panels(wp, s, z, n)[0]


@pytest.mark.parametrize("dyn,blk", [(False, 32), (True, 0)])
def test_int4_groups_of_96(dyn, blk):
    """Groups of 96 (a multiple of 32, but not of the 64-column steps the earlier kernel needed;
    the verifier refuses them in files) called directly: the int4-weight blocks and 8da4w rows, right."""
    from edgetorch.quant.grids import dequantize_int4, fake_quant_blocks_int8, fake_quant_rows_dynamic
    rng = np.random.default_rng(96)
    n, k, g = 9, 288, 96
    wp = rng.integers(0, 256, size=((n + 1) // 2, k), dtype=np.uint8)
    s = (rng.uniform(0.01, 0.1, size=(n, k // g))).astype(np.float16)
    x = rng.normal(size=(2, k)).astype(np.float32)
    out = np.full((2, n), np.nan, np.float32)
    KERNELS["linear_q4"](out, x, wp, s, None, None, group_size=g, dynamic=dyn, act_block=blk)
    xg = fake_quant_blocks_int8(x) if blk else fake_quant_rows_dynamic(x)
    want = xg.astype(np.float64) @ dequantize_int4(wp, s, None, g, np.float64).T
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4 * np.abs(want).max())


def test_activation_blocks_match_the_grid():
    """quant._quant_blocks (the kernels' x blocks) equals grids.quantize_blocks_int8 exactly: the int8
    values, one scale a block, the zero-point block sums, the group sums; all-zero and non-finite
    blocks; quant._row_blocks gives the same block sums."""
    from edgetorch.quant.grids import quantize_blocks_int8
    from edgetorch.runtime.kernels import quant as Q
    rng = np.random.default_rng(3)
    x = (rng.normal(size=(3, 160)) * rng.uniform(0.01, 50, size=(3, 1))).astype(np.float32)
    x[1, 32:64] = 0.0
    x[1, 5] = 127.5 * 3                                # a tie on the grid
    x[2, 70] = np.nan
    x[2, 130] = np.inf
    xq = np.empty((3, 160), np.int8)
    bs, bd, xg = np.empty((3, 5), np.int32), np.empty((3, 5), np.float32), np.empty((3, 5), np.float32)
    Q._quant_blocks(x, xq, bs, bd, xg, 8)
    wq, d = quantize_blocks_int8(x)
    fin = np.repeat(np.isfinite(d), 32, axis=1)
    np.testing.assert_array_equal(xq[fin], wq[fin])
    np.testing.assert_array_equal(bd, d)
    np.testing.assert_array_equal(bs[:2], -8 * xq[:2].astype(np.int32).reshape(2, 5, 32).sum(2))
    assert d[1, 1] == 1.0 and np.isnan(d[2, 2]) and np.isinf(d[2, 4])
    np.testing.assert_allclose(xg[:2], (xq[:2].reshape(2, 5, 32).sum(2) * d[:2]), rtol=1e-6)
    bs2 = np.empty_like(bs)
    Q._row_blocks(xq, bs2)
    np.testing.assert_array_equal(bs2[:2], bs[:2])
    Q._quant_blocks(x, xq, bs, bd, xg, 0)
    assert not bs.any()


def test_int4_embedding_rows():
    from edgetorch.quant.grids import quantize_groups_int4
    rng = np.random.default_rng(3)
    for asym in (False, True):
        wp, s, z = quantize_groups_int4(rng.normal(size=(9, 64)), 32, symmetric=not asym)
        ids = np.array([[0, 8, 3], [7, 7, 1]])
        out = np.empty((2, 3, 64), np.float32)
        KERNELS["embedding_q4"](out, ids, wp, s, z, group_size=32)
        want = REGISTRY["embedding_q4"].forward(ids, wp, s, z, group_size=32)
        np.testing.assert_allclose(out, want, atol=1e-6)
        wide = np.full((3, 2, 64), np.nan, np.float32)           # a non-contiguous planned output
        KERNELS["embedding_q4"](wide.transpose(1, 0, 2), ids, wp, s, z, group_size=32)
        np.testing.assert_allclose(wide.transpose(1, 0, 2), want, atol=1e-6)
        with pytest.raises(Exception, match="out of range"):
            KERNELS["embedding_q4"](out, np.array([[0, 9, 3], [1, 1, 1]]), wp, s, z, group_size=32)


@pytest.mark.parametrize("shape,k", [((1, 3, 5, 5), 3), ((2, 16, 9, 7), 3), ((1, 64, 8, 8), 3)])
def test_static_int8_conv_matches_reference_exactly(shape, k):
    rng = np.random.default_rng(shape[1])
    xq = rng.integers(-128, 128, size=shape).astype(np.int8)
    wq = rng.integers(-127, 128, size=(5, shape[1], k, k)).astype(np.int8)
    ws = rng.uniform(1e-3, 1e-2, 5).astype(np.float32)
    b = rng.normal(size=5).astype(np.float32)
    attrs = dict(padding=(1, 1), in_scale=0.03, in_zp=-20, out_scale=0.5, out_zp=7, activation="relu")
    want = REGISTRY["conv2d_qs8"].forward(xq, wq, ws, b, **attrs)
    out = np.empty(want.shape, np.int8)
    KERNELS["conv2d_qs8"](out, xq, wq, ws, b, **attrs)
    np.testing.assert_array_equal(out, want)
    assert out.min() >= 7


@pytest.mark.parametrize("vnni", _int8_paths())
@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (3, 5, 7), (4, 4, 64), (8, 16, 4), (9, 13, 100), (17, 33, 131),
                                   (130, 67, 384), (64, 300, 1536)])
def test_int8_gemm_is_exact(m, n, k, vnni, monkeypatch):
    """Both paths, exact; shapes off the VNNI micro-tile (8 rows x 16 columns, K in quads) on each side."""
    from edgetorch._native import simd
    from edgetorch.runtime.kernels.quant import gemm_i8
    monkeypatch.setattr(simd, "HAVE_VNNI", vnni)
    rng = np.random.default_rng(m * n + k)
    a = rng.integers(-128, 128, size=(m, k)).astype(np.int8)
    w = rng.integers(-128, 128, size=(n, k)).astype(np.int8)
    a[0, :], w[0, :] = -128, -128                    # the largest products
    np.testing.assert_array_equal(gemm_i8(a, w), a.astype(np.int64) @ w.astype(np.int64).T)


@pytest.mark.parametrize("vnni", _int8_paths())
@pytest.mark.parametrize("m,n,k", [(1, 7, 5), (3, 288, 288), (8, 16, 64), (13, 33, 131), (360, 10, 576)])
@pytest.mark.parametrize("act", [None, "relu", "gelu"])
def test_int8_dynamic_linear_on_both_paths(m, n, k, act, vnni, monkeypatch):
    from edgetorch._native import simd
    monkeypatch.setattr(simd, "HAVE_VNNI", vnni)
    rng = np.random.default_rng(m + n + k)
    x = rng.normal(size=(m, k)).astype(np.float32)
    x[0] = 0                                         # an all-zero row: scale 1, no division by zero
    wq = rng.integers(-127, 128, size=(n, k)).astype(np.int8)
    s = rng.uniform(0.001, 0.01, size=n).astype(np.float32)
    for b in (None, rng.normal(size=n).astype(np.float32)):
        out = np.empty((m, n), np.float32)
        KERNELS["linear_q8"](out, x, wq, s, b, activation=act, dynamic=True)
        want = REGISTRY["linear_q8"].forward(x, wq, s, b, activation=act, dynamic=True)
        np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(want).max()))


@pytest.mark.parametrize("m,k", [(1, 1), (3, 288), (40, 1000), (129, 384)])
def test_row_quantization_serial_and_parallel_match_numpy(m, k):
    """Per-row int8 quantization: scale = max|x| / 127 (1 for a zero row), round half to even;
    the max runs as an integer max over the float bits, so denormals and zeros are checked too."""
    from edgetorch.runtime.kernels.quant import _quant_rows_p, _quant_rows_s
    rng = np.random.default_rng(k)
    x = (rng.normal(size=(m, k)) * 3).astype(np.float32)
    x[0, 0] = 127 * 0.5 * 3 if k > 1 else x[0, 0]      # ties at .5 somewhere in row 0
    if m > 2:
        x[1] = 0
        x[2] = 0
        x[2, -1] = -1e-40
    amax = np.abs(x).max(axis=1)
    d = np.where(amax > 0, amax / np.float32(127), np.float32(1)).astype(np.float32)
    want = np.clip(np.rint(x / d[:, None]), -127, 127).astype(np.int8)
    for fn in (_quant_rows_s, _quant_rows_p):
        for off, dt in ((0, np.int8), (128, np.uint8)):
            q, sx = np.empty((m, k), dt), np.empty(m, np.float32)
            fn(x, q, sx, off)
            np.testing.assert_array_equal(sx, d)
            np.testing.assert_array_equal(q.astype(np.int32) - off, want)


@pytest.mark.parametrize("groups,stride", [(1, (1, 1)), (2, (2, 1)), (4, (1, 2))])
def test_static_int8_conv_groups_and_linear(groups, stride):
    rng = np.random.default_rng(groups)
    xq = rng.integers(-128, 128, size=(2, 8, 7, 6)).astype(np.int8)
    wq = rng.integers(-127, 128, size=(12, 8 // groups, 3, 3)).astype(np.int8)
    ws = rng.uniform(1e-3, 1e-2, 12).astype(np.float32)
    attrs = dict(stride=stride, padding=(1, 1), groups=groups, in_scale=0.03, in_zp=5, out_scale=0.2, out_zp=-3)
    want = REGISTRY["conv2d_qs8"].forward(xq, wq, ws, None, **attrs)
    out = np.empty(want.shape, np.int8)
    KERNELS["conv2d_qs8"](out, xq, wq, ws, None, **attrs)
    np.testing.assert_array_equal(out, want)
    x2 = rng.integers(-128, 128, size=(3, 5, 40)).astype(np.int8)
    w2 = rng.integers(-127, 128, size=(9, 40)).astype(np.int8)
    b2 = rng.normal(size=9).astype(np.float32)
    la = dict(in_scale=0.05, in_zp=-11, out_scale=0.7, out_zp=4, activation="relu")
    want = REGISTRY["linear_qs8"].forward(x2, w2, ws[:9], b2, **la)
    out = np.empty(want.shape, np.int8)
    KERNELS["linear_qs8"](out, x2, w2, ws[:9], b2, **la)
    np.testing.assert_array_equal(out, want)
