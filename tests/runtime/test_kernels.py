"""Every runtime kernel against the frontend's numpy forward (the reference)
on the registry's sample inputs, plus odd shapes for the Numba kernels."""
import numpy as np
import pytest

from edgetorch.ops import REGISTRY
from edgetorch.ops.registry import TensorMeta
from edgetorch.runtime.kernels import KERNELS

HELPERS = {"conv2d_weight", "max_pool2d_backward", "avg_pool2d_backward", "adaptive_avg_pool2d_backward",
           "batch_norm_train_backward"}


def _int8_paths():
    # the VNNI kernels (runtime/kernels/vnni.py) where the CPU has them, and the portable loops always
    from edgetorch._native import simd
    return [pytest.param(True, id="vnni", marks=pytest.mark.skipif(not simd.HAVE_VNNI, reason="no AVX512-VNNI")),
            pytest.param(False, id="portable")]


def at_end(a):
    """A copy of a whose last byte sits right before an unreadable page: a kernel that reads or
    writes past the array faults (tests.test_conv_direct._guarded)."""
    from tests.test_conv_direct import _guarded
    g = _guarded((-(-a.nbytes // 4),), True).view(np.uint8)[-a.nbytes:].view(a.dtype).reshape(a.shape)
    g[...] = a
    return g


def test_kernel_table_and_registry_agree():
    assert set(KERNELS) == set(REGISTRY) - HELPERS
    assert not set(KERNELS) - set(REGISTRY)


def _cases():
    for name, d in sorted(REGISTRY.items()):
        if d.samples is None or name not in KERNELS:
            continue
        for i, s in enumerate(d.samples(np.random.default_rng(7))):
            yield pytest.param(name, i, id=f"{name}-{i}")


def _f32(a):
    return a.astype(np.float32) if isinstance(a, np.ndarray) and a.dtype == np.float64 else a


@pytest.mark.parametrize("name,i", list(_cases()))
def test_kernel_matches_reference(name, i):
    d = REGISTRY[name]
    s = d.samples(np.random.default_rng(7))[i]
    if "data-dependent" in s.note:
        pytest.skip("data-dependent output shape: never in a program")
    args = [_f32(a) for a in s.args]
    want = np.asarray(d.forward(*args, **s.attrs))
    metas = [None if a is None else TensorMeta(a.shape, a.dtype) for a in args]
    m = d.meta(*metas, **s.attrs)
    out = np.full(tuple(m.shape), 123.0).astype(m.dtype)
    KERNELS[name](out, *args, **s.attrs)
    np.testing.assert_allclose(out.astype(np.float64), want.astype(np.float64), rtol=2e-5, atol=2e-5,
                               err_msg=name)


@pytest.mark.parametrize("rows,n", [(1, 1), (1, 7), (3, 17), (97, 33), (130, 5)])
def test_row_kernels_odd_shapes(rows, n):
    rng = np.random.default_rng(rows * 100 + n)
    x = rng.normal(size=(rows, n)).astype(np.float32)
    w = rng.normal(size=n).astype(np.float32)
    b = rng.normal(size=n).astype(np.float32)
    for op, args, attrs in [("rms_norm", (x, w), dict(normalized_shape=(n,), eps=1e-6)),
                            ("rms_norm", (x, None), dict(normalized_shape=(n,))),
                            ("layer_norm", (x, w, b), dict(normalized_shape=(n,))),
                            ("layer_norm", (x, None, None), dict(normalized_shape=(n,))),
                            ("softmax", (x,), dict(dim=-1)), ("log_softmax", (x,), dict(dim=-1))]:
        out = np.empty_like(x)
        KERNELS[op](out, *args, **attrs)
        np.testing.assert_allclose(out, REGISTRY[op].forward(*args, **attrs), rtol=1e-5, atol=1e-5, err_msg=op)


@pytest.mark.parametrize("b,hq,hk,l,s,e", [(1, 1, 1, 1, 1, 1), (1, 6, 6, 1, 37, 48), (2, 4, 2, 5, 5, 16),
                                            (1, 8, 2, 3, 130, 64), (1, 3, 3, 9, 9, 5), (2, 4, 2, 17, 40, 16),
                                            (1, 12, 12, 128, 128, 32), (1, 2, 1, 31, 31, 7)])
@pytest.mark.parametrize("par", [pytest.param(False, id="serial"), pytest.param(True, id="parallel")])
def test_attention_kernel_odd_shapes(b, hq, hk, l, s, e, par, monkeypatch):
    from edgetorch.runtime.kernels import attention as knn
    monkeypatch.setattr(knn, "DECODE_PAR_WORK", 0 if par else 1 << 62)
    monkeypatch.setattr(knn, "ATTN_PAR_WORK", 0 if par else 1 << 62)
    rng = np.random.default_rng(l * s)
    q = rng.normal(size=(b, hq, l, e)).astype(np.float32)
    k = rng.normal(size=(b, hk, s, e)).astype(np.float32)
    v = rng.normal(size=(b, hk, s, e)).astype(np.float32)
    mask = np.arange(s)[None, :] <= (np.arange(l)[:, None] + s - l)      # decode-style causal
    out = np.empty((b, hq, l, e), np.float32)
    KERNELS["scaled_dot_product_attention"](out, q, k, v, mask, enable_gqa=hq != hk)
    want = REGISTRY["scaled_dot_product_attention"].forward(q, k, v, mask, enable_gqa=hq != hk)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("par", [pytest.param(False, id="serial"), pytest.param(True, id="parallel")])
def test_decode_attention_masks(par, monkeypatch):
    """The decode kernel (<= 8 queries) with a KV cache's unused tail masked (never read: filled with
    NaN here), as a bool mask (read as is) and as the same additive float mask, a (1, 1, L, S) shape,
    and a query row that sees no key (zeros)."""
    from edgetorch.runtime.kernels import attention as knn
    monkeypatch.setattr(knn, "DECODE_PAR_WORK", 0 if par else 1 << 62)
    rng = np.random.default_rng(5)
    b, h, l, s, e, live = 1, 4, 3, 40, 16, 23
    q = rng.normal(size=(b, h, l, e)).astype(np.float32)
    k = rng.normal(size=(b, h, s, e)).astype(np.float32)
    v = rng.normal(size=(b, h, s, e)).astype(np.float32)
    mask = np.arange(s)[None, :] <= (np.arange(l)[:, None] + live - l)
    mask[1] = False                                           # query 1 sees nothing
    want = REGISTRY["scaled_dot_product_attention"].forward(q, k[:, :, :live], v[:, :, :live], mask[:, :live])
    want[:, :, 1] = 0.0
    k[:, :, live:] = np.nan                                   # the cache's tail: must not be read
    v[:, :, live:] = np.nan
    for m in (mask, mask[None, None], np.where(mask, np.float32(0), np.float32(-np.inf))):
        out = np.full((b, h, l, e), np.nan, np.float32)
        KERNELS["scaled_dot_product_attention"](out, q, k, v, m)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("e", [1, 5, 16, 17, 48, 64, 100, 128, 129])
@pytest.mark.parametrize("half", [False, True])
def test_decode_attention_vector_kernel_head_sizes(e, half, monkeypatch):
    """The 16-lane decode kernel (head sizes up to 128: 1-8 vectors, the last one masked) against the
    reference, serial and parallel, grouped heads, 1 and 3 queries, float32 or float16 caches; each
    array ends right before an unreadable page (the masked loads and stores stay inside); 129 takes
    the scalar loops."""
    from edgetorch._native import simd
    from edgetorch.runtime.kernels import attention as knn
    if not simd.HAVE_AVX512:
        pytest.skip("needs AVX-512F")
    rng = np.random.default_rng(e)
    dt = np.float16 if half else np.float32
    for l, hq, hk, s in ((1, 6, 6, 40), (3, 4, 2, 19)):
        q = rng.normal(size=(1, hq, l, e)).astype(np.float32)
        k = rng.normal(size=(1, hk, s, e)).astype(dt)
        v = rng.normal(size=(1, hk, s, e)).astype(dt)
        mask = np.arange(s)[None, :] <= (np.arange(l)[:, None] + s - 4 - l)
        want = REGISTRY["scaled_dot_product_attention"].forward(q, k, v, mask, enable_gqa=hq != hk)
        kern = knn._decode_attention(q, k, v, q)
        assert (kern is knn._attention) == (e > 128)
        for par in (False, True):
            monkeypatch.setattr(knn, "DECODE_PAR_WORK", 0 if par else 1 << 62)
            out = at_end(np.full((1, hq, l, e), np.nan, np.float32))
            KERNELS["scaled_dot_product_attention"](out, at_end(q), at_end(k), at_end(v), at_end(mask[None, None]),
                                                    enable_gqa=hq != hk)
            np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("l,s,hq,hk", [(1, 37, 6, 6), (3, 130, 8, 2), (20, 33, 4, 4)])
@pytest.mark.parametrize("par", [pytest.param(False, id="serial"), pytest.param(True, id="parallel")])
def test_attention_over_a_float16_kv_cache(l, s, hq, hk, par, monkeypatch):
    """float32 queries over float16 keys and values (a float16 KV cache): the decode loop reads the
    halves as they are, longer query blocks widen the keys they attend over; the unused tail of the
    cache (NaN here) is never read."""
    from edgetorch.runtime.kernels import attention as knn
    monkeypatch.setattr(knn, "DECODE_PAR_WORK", 0 if par else 1 << 62)
    rng = np.random.default_rng(l + s)
    live = s - 3
    q = rng.normal(size=(1, hq, l, 16)).astype(np.float32)
    k = rng.normal(size=(1, hk, s, 16)).astype(np.float16)
    v = rng.normal(size=(1, hk, s, 16)).astype(np.float16)
    mask = np.arange(s)[None, :] <= (np.arange(l)[:, None] + live - l)
    want = REGISTRY["scaled_dot_product_attention"].forward(q, k[:, :, :live], v[:, :, :live], mask[:, :live],
                                                            enable_gqa=hq != hk)
    k[:, :, live:] = np.nan
    v[:, :, live:] = np.nan
    out = np.full((1, hq, l, 16), np.nan, np.float32)
    KERNELS["scaled_dot_product_attention"](out, q, k, v, mask[None, None], enable_gqa=hq != hk)
    np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
    assert want.dtype == np.float32
    with pytest.raises(ValueError, match="float"):          # a float16 key with float32 values
        KERNELS["scaled_dot_product_attention"](out, q, k, v.astype(np.float32), mask[None, None])


@pytest.mark.parametrize("l,s", [(9, 9), (20, 33), (128, 128), (13, 24)])
@pytest.mark.parametrize("e,ev", [(16, 8), (24, 24), (5, 13), (32, 48)])
def test_prefill_attention_with_padding_mask_and_empty_rows(l, s, e, ev):
    """The fused loop (more than 8 queries; keys and value lanes in steps of 16, a lone 8, a scalar
    tail) with an encoder's (B, 1, 1, S) padding mask, a causal mask, and a (B, 1, L, S) mask with
    fully masked rows (those give zeros)."""
    rng = np.random.default_rng(l + s + e)
    q = rng.normal(size=(2, 3, l, e)).astype(np.float32)
    k = rng.normal(size=(2, 3, s, e)).astype(np.float32)
    v = rng.normal(size=(2, 3, s, ev)).astype(np.float32)
    pad = np.ones((2, 1, 1, s), bool)
    pad[1, ..., s // 2:] = False
    rows = rng.random((2, 1, l, s)) < 0.7
    rows[0, 0, 3] = False
    for mask, causal in ((pad, False), (None, True), (rows, False), (pad, True)):
        out = np.empty((2, 3, l, ev), np.float32)
        KERNELS["scaled_dot_product_attention"](out, q, k, v, mask, is_causal=causal)
        want = REGISTRY["scaled_dot_product_attention"].forward(q, k, v, mask, is_causal=causal)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
        if mask is rows:
            assert not out[0, :, 3].any()


@pytest.mark.parametrize("b,t,h,kv,d", [(1, 1, 1, 1, 8), (2, 9, 3, 3, 13), (1, 37, 4, 2, 16), (3, 130, 2, 1, 24),
                                         (1, 128, 12, 12, 32)])
def test_packed_attention_odd_shapes(b, t, h, kv, d, monkeypatch):
    """Heads read in place from a packed (B, T, q | k | v) projection: odd head sizes (vector tails),
    grouped-query heads, padding masks, causal, a non-contiguous projection and output, against
    the registry's reference, through the serial and the parallel loop."""
    from edgetorch.runtime.kernels import attention as knn
    rng = np.random.default_rng(b * 1000 + t)
    qkv = rng.normal(size=(b, t, (h + 2 * kv) * d)).astype(np.float32)
    pad = np.ones((b, 1, 1, t), bool)
    pad[-1, ..., t // 2 + 1:] = False
    ref = REGISTRY["packed_attention"].forward
    for par in (0, 1 << 62):
        monkeypatch.setattr(knn, "ATTN_PAR_WORK", par)
        for mask, causal in ((pad, False), (None, True), (pad, True), (None, False)):
            out = np.full((b, t, h * d), np.nan, np.float32)
            KERNELS["packed_attention"](out, qkv, mask, heads=h, kv_heads=kv, is_causal=causal)
            want = ref(qkv.astype(np.float64), mask, heads=h, kv_heads=kv, is_causal=causal)
            np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5)
    wide = np.zeros((b, t, qkv.shape[2] + 3), np.float32)
    wide[..., 1:-2] = qkv
    o2 = np.zeros((b, t, h * d + 5), np.float32)
    KERNELS["packed_attention"](o2[..., 2:-3], wide[..., 1:-2], pad, heads=h, kv_heads=kv, scale=0.7)
    np.testing.assert_allclose(o2[..., 2:-3], ref(qkv.astype(np.float64), pad, heads=h, kv_heads=kv, scale=0.7),
                               rtol=1e-4, atol=1e-5)
    assert not o2[..., :2].any() and not o2[..., -3:].any()


def test_packed_attention_refuses_what_does_not_fit():
    qkv = np.zeros((1, 4, 3 * 8), np.float32)
    for out, kw in ((np.zeros((1, 4, 8), np.float32), dict(heads=3, kv_heads=2)),      # 24 is not 7 heads
                    (np.zeros((1, 4, 9), np.float32), dict(heads=1, kv_heads=1)),      # output width
                    (np.zeros((1, 4, 8), np.float32), dict(heads=1.0, kv_heads=1))):   # not an int
        with pytest.raises(ValueError, match="packed_attention"):
            KERNELS["packed_attention"](out, qkv, None, **kw)
    with pytest.raises(ValueError, match="mask"):
        KERNELS["packed_attention"](np.zeros((1, 4, 8), np.float32), qkv, np.ones((1, 1, 1, 5), bool),
                                    heads=1, kv_heads=1)


def test_negative_and_out_of_range_ids_are_input_errors():
    from edgetorch.runtime import InputError
    w = np.ones((5, 3), np.float32)
    out = np.empty((2, 3), np.float32)
    for ids in (np.array([0, 5]), np.array([-1, 0])):
        with pytest.raises(InputError, match="out of range"):
            KERNELS["embedding"](out, ids, w)


@pytest.mark.parametrize("wide", [pytest.param(True, id="zmm"), pytest.param(False, id="ymm")])
@pytest.mark.parametrize("m,n,k", [(17, 16, 2), (65, 16, 1), (67, 17, 33), (128, 1536, 384), (200, 33, 130),
                                   (256, 40, 7), (24, 64, 31)])
def test_packed_float_gemm_rows(m, n, k, wide, monkeypatch):
    """17..256-row float32 linears: prepacked 16- (8 lanes) or 32-column (16 lanes) panels, 8-row tiles,
    a row tail, N padding."""
    from edgetorch._native import simd
    if wide and not simd.HAVE_AVX512:
        pytest.skip("no AVX-512F")
    if not simd.HAVE_FMA:
        pytest.skip("no FMA: BLAS runs these")
    monkeypatch.setattr(simd, "HAVE_AVX512", wide)
    rng = np.random.default_rng(m * n + k)
    x = rng.normal(size=(m, k)).astype(np.float32)
    w = rng.normal(size=(n, k)).astype(np.float32)
    w.flags.writeable = False                       # a program constant: packed once, cached
    b = rng.normal(size=n).astype(np.float32)
    b.flags.writeable = False
    want = x.astype(np.float64) @ w.T.astype(np.float64)
    for bias, act in ((b, None), (None, None), (b, "relu"), (None, "relu")):
        # bias and ReLU are applied in the tiles' stores (the padded bias cached beside the panels)
        out = np.empty((m, n), np.float32)
        if act is None:
            KERNELS["linear"](out, x, w, bias)
        else:
            KERNELS["fused_linear"](out, x, w, bias, activation=act)
        ref = want + (0 if bias is None else b)
        np.testing.assert_allclose(out, ref if act is None else np.maximum(ref, 0), rtol=1e-4,
                                   atol=1e-4 * np.sqrt(k))


def test_derived_arrays_are_cached_only_for_read_only_constants():
    """A writeable weight (an arena value) may change under the same id: never served stale."""
    from edgetorch.runtime.kernels._derived import derived
    rng = np.random.default_rng(0)
    x = rng.normal(size=(100, 8)).astype(np.float32)
    w = rng.normal(size=(16, 8)).astype(np.float32)
    out = np.empty((100, 16), np.float32)
    KERNELS["linear"](out, x, w)
    w *= 2
    KERNELS["linear"](out, x, w)
    np.testing.assert_allclose(out, x @ w.T, rtol=1e-5, atol=1e-5)
    calls = []
    w.flags.writeable = False
    for _ in range(2):
        derived(w, "probe", lambda a: calls.append(1) or a.sum())
    assert len(calls) == 1


@pytest.mark.parametrize("m,n,k", [(1, 1, 1), (1, 7, 5), (3, 4099, 257), (4, 33, 288), (2, 3, 0), (5, 9, 7),
                                   (6, 1, 3), (7, 2, 17), (13, 33, 784), (16, 257, 31), (17, 40, 33),
                                   (64, 257, 31), (65, 8, 8), (128, 7, 9), (300, 20, 11), (32, 10, 64),
                                   (2000, 15, 67)])
def test_float_linear_gemv_and_blas_paths(m, n, k):
    """Decode-sized float32 linears run a Numba GEMV (serial and parallel copies, tails), 5..16 rows a
    Numba GEMM in 4x4 blocks (row and column tails; at any row count with fewer than 16 columns: a
    classifier head), 17..256 rows (16 columns or more) the packed-panel GEMM, the rest BLAS."""
    rng = np.random.default_rng(m + n + k)
    x = rng.normal(size=(1, m, k)).astype(np.float32)
    w = rng.normal(size=(n, k)).astype(np.float32)
    b = rng.normal(size=n).astype(np.float32)
    for const in (False, True):                 # a caller's weight, then a program's constant (packed)
        w.flags.writeable = not const
        out = np.full((1, m, n), np.nan, np.float32)
        KERNELS["fused_linear"](out, x, w, b, activation="relu")
        np.testing.assert_allclose(out, np.maximum(x @ w.T + b, 0), rtol=1e-4, atol=1e-4)
        KERNELS["fused_linear"](out, x, w, None, activation="gelu")
        np.testing.assert_allclose(out, REGISTRY["gelu"].forward(x @ w.T), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("m", [1, 2, 4])
@pytest.mark.parametrize("k", [1, 3, 4, 5, 17, 288, 785])
@pytest.mark.parametrize("n", [1, 15, 16, 17, 32, 33, 100])
def test_float_gemv_panel_kernel(m, k, n, monkeypatch):
    """The float32 GEMV over sgemm's 32-row panels: steps of 4 columns into 8 accumulators and a
    column tail, a last panel of 1..32 rows (masked bias loads and stores), with and without bias and
    ReLU; serial and parallel copies, every operand right before an unreadable page (a fault
    otherwise); against float64 numpy.  A constant weight takes it (packed once, the packed copy
    shared with the GEMM path) where its rows fill their panels; a caller's writeable weight keeps
    the row loop."""
    from edgetorch._native import simd
    from edgetorch.runtime.kernels import linalg as L
    from edgetorch.runtime.kernels import sgemm
    if not simd.HAVE_AVX512:
        pytest.skip("needs AVX-512F")
    rng = np.random.default_rng(m * 1000 + k + n)
    x = rng.normal(size=(m, k)).astype(np.float32)
    w = rng.normal(size=(n, k)).astype(np.float32)
    b = rng.normal(size=n).astype(np.float32)
    p = sgemm.pack_wide(w)[0]
    assert p.size == -(-n // 32) * 32 * k
    for bias in (b, np.zeros(0, np.float32)):
        lin = x.astype(np.float64) @ w.T.astype(np.float64) + (b if bias.size else 0)
        for relu in (False, True):
            want = np.maximum(lin, 0) if relu else lin
            for fn in (L._gemv_panels, L._gemv_panels_par):
                out = at_end(np.full((m, n), np.nan, np.float32))
                fn(at_end(x), at_end(p), at_end(bias), relu, out)
                np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * max(1.0, np.abs(want).max()))
    calls = []
    for name in ("_gemv_panels", "_gemv_panels_par", "_gemv", "_gemv_par"):
        real = getattr(L, name)
        monkeypatch.setattr(L, name, lambda *a, _r=real, _n=name: calls.append(_n) or _r(*a))
    for const in (True, False):
        w.flags.writeable = not const
        out = np.full((m, n), np.nan, np.float32)
        KERNELS["fused_linear"](out, x, w, b, activation="relu")
        np.testing.assert_allclose(out, np.maximum(x @ w.T + b, 0), rtol=1e-4, atol=1e-4)
    # a constant weight takes the panels where its rows fill them to 3/4 (a 10-row head read 64 KB for 20)
    assert calls[0].startswith("_gemv_panels") == L._panels_pay(n) and not calls[1].startswith("_gemv_panels")
    assert [L._panels_pay(r) for r in (1, 23, 24, 32, 33, 47, 48, 64, 65, 97)] == \
        [False, False, True, True, False, False, True, True, False, True]


@pytest.mark.parametrize("index", [(slice(None, 1), slice(None), "#"), (Ellipsis, "#", slice(None)),
                                   ("#", None, Ellipsis), (0, slice(None), "#"), ("#", slice(1, 3), "#")])
def test_one_element_tensor_indices_fast_path(index):
    """A single 1-element integer index takes a cached one-wide slice (two of them keep numpy's
    advanced indexing, which merges and moves their dims): same result as the reference either
    way, and the range check still refuses out-of-range and negative positions."""
    from edgetorch.runtime import InputError
    rng = np.random.default_rng(len(index))
    x = rng.normal(size=(2, 5, 7)).astype(np.float32)
    n = sum(1 for e in index if isinstance(e, str))
    idx = [np.array([1]) for _ in range(n)]
    want = np.asarray(REGISTRY["getitem"].forward(x, *idx, index=index))
    out = np.empty(want.shape, np.float32)
    KERNELS["getitem"](out, x, *idx, index=index)
    np.testing.assert_array_equal(out, want)
    v = rng.normal(size=want.shape).astype(np.float32)
    want_put = np.asarray(REGISTRY["index_put"].forward(x, v, *idx, index=index))
    out = x.copy()
    KERNELS["index_put"](out, x, v, *idx, index=index)
    np.testing.assert_array_equal(out, want_put)
    for bad in (-1, 99):
        with pytest.raises(InputError, match="out of range"):
            KERNELS["getitem"](np.empty(want.shape, np.float32), x, *([np.array([bad])] + idx[1:]), index=index)


def test_kernels_refuse_operands_that_disagree_with_the_planned_output():
    """Found by the fuzzer: a mutated input batch (106) beside an output planned for 2 made the
    convolution panels write past the output. Each kernel checks its operands against its output."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(106, 1, 8, 8)).astype(np.float32)
    w = rng.normal(size=(8, 1, 3, 3)).astype(np.float32)
    out = np.empty((2, 8, 8, 8), np.float32)
    with pytest.raises(ValueError, match="do not fit"):
        KERNELS["conv2d"](out, x, w, None, padding=(1, 1))
    q = rng.normal(size=(2, 2, 12, 8)).astype(np.float32)
    k = rng.normal(size=(2, 2, 12, 8)).astype(np.float32)
    v = rng.normal(size=(1, 2, 12, 8)).astype(np.float32)         # one batch fewer than k
    with pytest.raises(ValueError, match="attention"):
        KERNELS["scaled_dot_product_attention"](np.empty((2, 2, 12, 8), np.float32), q, k, v)


@pytest.mark.parametrize("shape", [(1, 7), (3, 40), (1, 1, 33), (2, 2, 5), (4, 300)])
def test_gemv_fast_path_and_its_fallbacks(shape):
    """Decode-sized float32 linears take a short path (2-d rows or a decoder's (1, 1, K)); a float64
    bias, a strided input or a strided output take the general one: all give the same numbers."""
    rng = np.random.default_rng(sum(shape))
    k = shape[-1]
    x = rng.normal(size=shape).astype(np.float32)
    w = rng.normal(size=(9, k)).astype(np.float32)
    b = rng.normal(size=9).astype(np.float32)
    want = x.astype(np.float64) @ w.T.astype(np.float64) + b
    cases = [(x, b, None), (x, None, None), (x, b.astype(np.float64), None),
             (np.asfortranarray(x) if x.ndim == 2 else x, b, None), (x, b, "strided")]
    for xx, bb, mode in cases:
        for act in (None, "relu"):
            if mode == "strided":
                big = np.zeros(shape[:-1] + (18,), np.float32)
                out = big[..., ::2]
            else:
                out = np.empty(shape[:-1] + (9,), np.float32)
            KERNELS["fused_linear"](out, xx, w, bb, activation=act)
            ref = want if bb is not None else want - b
            np.testing.assert_allclose(out, np.maximum(ref, 0) if act else ref, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("shape", [(1,), (7, 3), (32, 16, 16, 16)])
def test_add_relu_kernel_paths(shape):
    """The one-pass Numba kernel (serial and parallel sizes; NaN kept, no negative zeros) and the
    numpy fallback for strided or float64 inputs."""
    rng = np.random.default_rng(len(shape))
    a = rng.normal(size=shape).astype(np.float32)
    b = rng.normal(size=shape).astype(np.float32)
    a.reshape(-1)[0] = np.nan
    for x, y in ((a, b), (a.astype(np.float64), b.astype(np.float64)), (np.asfortranarray(a), b)):
        out = np.empty(shape, x.dtype)
        KERNELS["add_relu"](out, x, y)
        want = np.maximum(x + y, 0)
        np.testing.assert_array_equal(out, want)
        assert not np.signbit(out[~np.isnan(out)]).any()


def _pool_reference(x, k, s, p, d, oh, ow, low):
    """numpy max over strided windows of the padded input (the kernel's earlier implementation)."""
    from edgetorch.runtime.kernels.conv import _windows
    return _windows(x, k, s, p, d, oh, ow, low).max(axis=(4, 5))


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int8, np.uint8])
@pytest.mark.parametrize("n,c,h,w,k,s,p,d,ceil", [
    (1, 32, 8, 8, (2, 2), (2, 2), (0, 0), (1, 1), False), (2, 3, 7, 9, (3, 3), (2, 2), (1, 1), (1, 1), False),
    (1, 5, 11, 6, (3, 2), (1, 2), (1, 0), (2, 1), False), (3, 2, 7, 7, (2, 2), (2, 2), (0, 0), (1, 1), True),
    (1, 1, 5, 5, (3, 3), (2, 2), (1, 1), (1, 1), True), (64, 64, 16, 16, (3, 3), (2, 2), (1, 1), (1, 1), False)])
def test_max_pool_kernel_matches_numpy_windows(dtype, n, c, h, w, k, s, p, d, ceil):
    """runtime/kernels/conv.py's Numba max pooling (serial and, for the last case, parallel) against
    numpy's max over the padded strided windows: padding, dilation, ceil_mode's overhanging windows."""
    import math
    rng = np.random.default_rng(h * w + c)
    x = (rng.standard_normal((n, c, h, w)) * 50).astype(dtype) if np.dtype(dtype).kind == "f" else \
        rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, (n, c, h, w), dtype=dtype)
    rnd = math.ceil if ceil else math.floor
    oh, ow = (rnd((size + 2 * p[i] - d[i] * (k[i] - 1) - 1) / s[i]) + 1 for i, size in enumerate((h, w)))
    out = np.empty((n, c, oh, ow), dtype)
    KERNELS["max_pool2d"](out, x, kernel_size=k, stride=s, padding=p, dilation=d, ceil_mode=ceil)
    low = -np.inf if np.dtype(dtype).kind == "f" else np.iinfo(dtype).min
    np.testing.assert_array_equal(out, _pool_reference(x, k, s, p, d, oh, ow, low))


def test_max_pool_kernel_propagates_nan():
    x = np.arange(2 * 4 * 4, dtype=np.float32).reshape(1, 2, 4, 4)
    x[0, 0, 1, 1] = np.nan
    out = np.empty((1, 2, 2, 2), np.float32)
    KERNELS["max_pool2d"](out, x, kernel_size=(2, 2), stride=(2, 2))
    assert np.isnan(out[0, 0, 0, 0]) and not np.isnan(out[0, 0]).ravel()[1:].any()
    np.testing.assert_array_equal(out[0, 1], [[21, 23], [29, 31]])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,osz", [((1, 32, 4, 4), (2, 2)), ((2, 3, 7, 5), (3, 2)), ((1, 2, 5, 9), (4, 7)),
                                       ((3, 4, 6, 6), (6, 6)), ((8, 64, 17, 19), (5, 3))])
def test_adaptive_avg_pool_kernel_matches_numpy_bins(dtype, shape, osz):
    x = np.random.default_rng(sum(shape)).standard_normal(shape).astype(dtype)
    out = np.empty(shape[:2] + osz, dtype)
    KERNELS["adaptive_avg_pool2d"](out, x, output_size=osz)
    h, w = shape[2:]
    want = np.empty_like(out)
    for i in range(osz[0]):
        for j in range(osz[1]):
            want[..., i, j] = x[..., i * h // osz[0]:-(-(i + 1) * h // osz[0]),
                                j * w // osz[1]:-(-(j + 1) * w // osz[1])].mean(axis=(-2, -1))
    tol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(out, want, rtol=tol, atol=tol)


@pytest.mark.parametrize("shape,k,stride,padding,dilation", [
    ((1, 3, 9, 7), 3, (1, 2), (0, 2), (2, 1)), ((2, 4, 6, 11), 2, (2, 1), (1, 0), (1, 3)),
    ((1, 2, 5, 3), 3, (1, 1), (1, 3), (1, 4)),         # a tap column wholly in the padding
    ((8, 32, 16, 16), 3, (1, 1), (1, 1), (1, 1))])     # the last: im2col in parallel
def test_static_int8_conv_im2col_windows(shape, k, stride, padding, dilation):
    """conv2d_qs8's one-pass int8 im2col (padding filled with the input zero point) at dilations,
    asymmetric padding and strides, bit-exact against the op's numpy forward."""
    rng = np.random.default_rng(sum(shape))
    xq = rng.integers(-128, 128, size=shape).astype(np.int8)
    wq = rng.integers(-127, 128, size=(6, shape[1], k, k)).astype(np.int8)
    ws = rng.uniform(1e-3, 1e-2, 6).astype(np.float32)
    attrs = dict(stride=stride, padding=padding, dilation=dilation, in_scale=0.05, in_zp=-9, out_scale=0.3, out_zp=2)
    want = REGISTRY["conv2d_qs8"].forward(xq, wq, ws, None, **attrs)
    out = np.empty(want.shape, np.int8)
    KERNELS["conv2d_qs8"](out, xq, wq, ws, None, **attrs)
    np.testing.assert_array_equal(out, want)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_quantize_and_dequantize_per_tensor_match_the_numpy_formula(dtype):
    """The one-pass Numba quantize / dequantize: numpy's rint(x / float32(scale)) + zp, clipped (half-way
    values round to even, both ends saturate), and (q - zp) * scale, bit for bit."""
    rng = np.random.default_rng(7)
    for shape in [(1, 1, 8, 8), (3, 7, 5), (0,)]:
        for scale, zp in ((0.0123, -128), (0.05, 4), (1e-3, 0)):
            x = (rng.standard_normal(shape) * 3).astype(dtype)
            if x.size >= 4:
                x.flat[:4] = np.array([0.5, 1.5, -2.5, 1e9], dtype) * dtype(np.float32(scale))   # ties, overflow
            q = np.empty(shape, np.int8)
            KERNELS["quantize_per_tensor"](q, x, scale=scale, zero_point=zp)
            want = np.clip(np.rint(x / np.float32(scale)) + zp, -128, 127).astype(np.int8)
            np.testing.assert_array_equal(q, want)
            f = np.empty(shape, np.float32)
            KERNELS["dequantize_per_tensor"](f, q, scale=scale, zero_point=zp)
            np.testing.assert_array_equal(f, (q.astype(np.int32) - np.int32(zp)).astype(np.float32) * np.float32(scale))


def test_per_element_divisions_compile_without_raising_checks():
    """SiLU / SwiGLU / GELU (erf) divide by a value that changes per element (and is >= 1): under
    Numba's default error model each division carries a zero check that raises, and LLVM keeps the
    loop scalar (`vdivss`); the kernels compile with error_model="numpy" so it vectorizes.  A fresh
    compile of the GELU body shows both."""
    import re

    from numba import njit

    from edgetorch.runtime.kernels import elementwise as E
    for disp in (E._silu, E._swiglu, E._silu32, E._silu32_par, E._gelu_erf_s, E._gelu_erf_p):
        assert disp.targetoptions.get("error_model") == "numpy", disp
    x = np.linspace(-8, 8, 999).astype(np.float32)
    vector_div = re.compile(r"\bv(?:divps|rcp14ps|rcpps)\s[^\n]*%[yz]mm")     # a division on 8 or 16 lanes
    for model, vector in (("python", False), ("numpy", True)):
        f = njit(fastmath=True, error_model=model)(E._gelu_erf_s.py_func)
        out = np.empty_like(x)
        f(x, out)
        assert bool(vector_div.search(f.inspect_asm(f.signatures[0]))) == vector, model
    out, ref = np.empty_like(x), np.empty_like(x)
    E._gelu_erf_s(x, out)
    njit(fastmath=True)(E._gelu_erf_s.py_func)(x, ref)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-7)     # fastmath: a refined reciprocal estimate
