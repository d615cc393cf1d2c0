"""Prepared kernels (registry.py's preparers): the same results as the kernels, for fresh arrays of
the prepared shapes, and programs that prepare on their second call of a size."""
import numpy as np
import pytest

import edgetorch as et
from edgetorch._native import simd
from edgetorch.exporter import quantize
from edgetorch.models import MLP, Decoder, ResNet
from edgetorch.ops import REGISTRY
from edgetorch.runtime import InputError, load
from edgetorch.runtime.kernels import KERNELS, PREPARE, PREPARE_GROUP
from edgetorch.runtime.program import _done as P_done

from ..exporter.test_capture import export_llama, small_llama

RNG = np.random.default_rng(0)


def _f32(*shape):
    return RNG.standard_normal(shape).astype(np.float32)


def _q4(n, k):
    return RNG.integers(0, 256, ((n + 1) // 2, k), dtype=np.uint8), (RNG.random((n, k // 32)) * 0.1).astype(np.float32)


def _cases():
    """(op, out shape, out dtype, make_inputs() -> list of arrays or None, attrs); make_inputs is
    called twice: once to prepare, once for the arrays both paths then run on."""
    w8 = RNG.integers(-127, 128, (37, 29), dtype=np.int8)
    w8big = RNG.integers(-127, 128, (301, 263), dtype=np.int8)     # past PAR_WEIGHTS: the parallel copy
    s8, s8big = _f32(37), _f32(301)
    wp, s4 = _q4(37, 64)
    wpbig, s4big = _q4(300, 256)
    zero = RNG.integers(0, 16, (37, 2), dtype=np.uint8)
    w, wbig, b = _f32(13, 7), _f32(300, 250), _f32(13)
    mask = np.zeros((1, 1, 1, 11), bool)
    mask[..., :7] = True
    cache = _f32(1, 2, 11, 8)
    yield "linear", (1, 13), lambda: [_f32(1, 7), w, b], {}
    yield "linear", (1, 1, 13), lambda: [_f32(1, 1, 7), w, None], {}
    yield "linear", (3, 300), lambda: [_f32(3, 250), wbig, None], {}
    yield "fused_linear", (2, 13), lambda: [_f32(2, 7), w, b], {"activation": "relu"}
    yield "fused_linear", (1, 1, 13), lambda: [_f32(1, 1, 7), w, b], {"activation": "gelu"}
    # constant (read-only) weights: the panel GEMV on the packed copy, serial and parallel
    wfc, wfcbig = w.copy(), _f32(300, 250)
    wfc.flags.writeable = wfcbig.flags.writeable = False
    yield "linear", (1, 13), lambda: [_f32(1, 7), wfc, b], {}
    yield "fused_linear", (1, 1, 300), lambda: [_f32(1, 1, 250), wfcbig, _f32(300)], {"activation": "relu"}
    yield "fused_linear", (4, 13), lambda: [_f32(4, 7), wfc, None], {"activation": "gelu"}
    yield "linear_q8", (1, 1, 37), lambda: [_f32(1, 1, 29), w8, s8, None], {}
    yield "linear_q8", (4, 37), lambda: [_f32(4, 29), w8, s8, _f32(37)], {}
    yield "linear_q8", (1, 1, 301), lambda: [_f32(1, 1, 263), w8big, s8big, None], {}
    # int8-dynamic on VNNI (constant weights): the scaling fused into the GEMM's tiles (48 outputs, a
    # multiple of 16; 10 rows: a tile of 8 and two single rows) or a second pass (37 outputs)
    wd16, sd16, wd37 = RNG.integers(-127, 128, (48, 29), dtype=np.int8), _f32(48), w8.copy()
    for a in (wd16, sd16, wd37):
        a.flags.writeable = False
    yield "linear_q8", (2, 5, 48), lambda: [_f32(2, 5, 29), wd16, sd16, _f32(48)], {"dynamic": True,
                                                                                       "activation": "gelu"}
    yield "linear_q8", (10, 48), lambda: [_f32(10, 29), wd16, sd16, None], {"dynamic": True, "activation": "relu"}
    yield "linear_q8", (3, 37), lambda: [_f32(3, 29), wd37, s8, None], {"dynamic": True}
    yield "linear_q4", (1, 1, 37), lambda: [_f32(1, 1, 64), wp, s4, None, None], {}
    yield "linear_q4", (3, 37), lambda: [_f32(3, 64), wp, s4, zero, _f32(37)], {}
    yield "linear_q4", (1, 300), lambda: [_f32(1, 256), wpbig, s4big, None, None], {}
    yield "linear_q4", (1, 300), lambda: [_f32(1, 256), wpbig, s4big, None, None], {"dynamic": True}
    # int8 activation blocks (int4-weight): a 32-column last step (K = 96), zero points, a bias
    wp96, s96 = _q4(37, 96)
    zero96 = RNG.integers(0, 16, (37, 3), dtype=np.uint8)
    yield "linear_q4", (2, 37), lambda: [_f32(2, 96), wp96, s96, zero96, _f32(37)], {"act_block": 32}
    yield "linear_q4", (1, 300), lambda: [_f32(1, 256), wpbig, s4big, None, None], {"act_block": 32}
    s4half = s4big.astype(np.float16)                   # the file's float16 scales, read as they are
    yield "linear_q4", (1, 300), lambda: [_f32(1, 256), wpbig, s4half, None, None], {"act_block": 32}
    yield "linear_q4", (2, 300), lambda: [_f32(2, 256), wpbig, s4half, None, _f32(300)], {"dynamic": True}
    yield "rms_norm", (1, 3, 17), lambda: [_f32(1, 3, 17), _f32(17)], {"normalized_shape": (17,), "eps": 1e-5}
    yield "rms_norm", (5, 9), lambda: [_f32(5, 9), None], {"normalized_shape": (9,)}
    yield "rotary_embedding", (1, 3, 2, 10), lambda: [_f32(1, 3, 2, 10), _f32(2, 10), _f32(2, 10)], {}
    yield "swiglu", (1, 1, 23), lambda: [_f32(1, 1, 23), _f32(1, 1, 23)], {}
    yield "scaled_dot_product_attention", (1, 4, 1, 8), \
        lambda: [_f32(1, 4, 1, 8), _f32(1, 2, 11, 8), _f32(1, 2, 11, 8), mask], {}
    yield "scaled_dot_product_attention", (1, 2, 3, 8), \
        lambda: [_f32(1, 2, 3, 8), _f32(1, 2, 11, 8), _f32(1, 2, 11, 8), np.ones((1, 1, 3, 11), bool)], \
        {"scale": 0.3}
    yield "scaled_dot_product_attention", (1, 4, 1, 8), \
        lambda: [_f32(1, 4, 1, 8), _f32(1, 2, 11, 8).astype(np.float16), _f32(1, 2, 11, 8).astype(np.float16),
                 mask], {}                                      # a float16 KV cache
    yield "index_put", cache.shape, lambda: [cache, _f32(1, 2, 1, 8), np.array([5])], \
        {"index": (slice(None, 1), slice(None), "#")}
    # convolutions: constant (read-only) weights; padding passes, in-task padding (>= 4 images),
    # strided and gathered panels, a subsampled 1x1, ReLU fused or not
    # (row-padded: 8 and 16 wide at stride 1, two images copied into the run's buffer, four padding
    # their own rows; stride 2 deinterleaved below 4 images)
    for n, c, o, h, k, st, pad, act in ((1, 3, 16, 9, 3, 1, 1, None), (5, 4, 9, 8, 3, 2, 1, "relu"),
                                        (2, 6, 11, 10, 1, 2, 0, None), (4, 2, 8, 16, 3, 1, 1, "relu"),
                                        (2, 5, 11, 8, 3, 1, 1, None), (2, 3, 10, 16, 3, 2, 1, "relu")):
        wc, bc = _f32(o, c, k, k), _f32(o)
        wc.flags.writeable = bc.flags.writeable = False
        oh = (h + 2 * pad - k) // st + 1
        attrs = {"stride": (st, st), "padding": (pad, pad)}
        yield ("fused_conv2d", (n, o, oh, oh), (lambda n=n, c=c, h=h, wc=wc, bc=bc: [_f32(n, c, h, h), wc, bc]),
               dict(attrs, activation=act)) if act else \
            ("conv2d", (n, o, oh, oh), (lambda n=n, c=c, h=h, wc=wc: [_f32(n, c, h, h), wc, None]), attrs)
    # static int8: constant weights, scales and biases
    for n, c, o, h, st, pad, act in ((1, 3, 7, 9, 1, 1, "relu"), (3, 8, 16, 10, 2, 0, None)):
        wq, ws, bq = RNG.integers(-127, 128, (o, c, 3, 3), dtype=np.int8), (RNG.random(o) * 0.01).astype(np.float32), \
            _f32(o)
        for a in (wq, ws, bq):
            a.flags.writeable = False
        oh = (h + 2 * pad - 3) // st + 1
        yield "conv2d_qs8", (n, o, oh, oh), \
            (lambda n=n, c=c, h=h, wq=wq, ws=ws, bq=bq: [RNG.integers(-128, 128, (n, c, h, h), dtype=np.int8), wq, ws,
                                                          bq]), \
            {"stride": (st, st), "padding": (pad, pad), "in_scale": 0.05, "in_zp": -9, "out_scale": 0.4, "out_zp": 3,
             "activation": act}
    wl, sl = RNG.integers(-127, 128, (11, 37), dtype=np.int8), (RNG.random(11) * 0.01).astype(np.float32)
    wl.flags.writeable = sl.flags.writeable = False
    yield "linear_qs8", (2, 3, 11), lambda: [RNG.integers(-128, 128, (2, 3, 37), dtype=np.int8), wl, sl, None], \
        {"in_scale": 0.1, "in_zp": 5, "out_scale": 0.3, "out_zp": -2, "activation": "relu"}


@pytest.mark.parametrize("case", list(_cases()), ids=lambda c: c[0])
def test_prepared_run_matches_kernel(case):
    """A prepared run against its kernel on fresh arrays of the prepared shapes, twice."""
    op, shape, make, attrs = case
    assert op in PREPARE
    prep_args = make()
    dtype = np.int8 if op.endswith("_qs8") else np.float32
    out = np.empty(shape, dtype)
    if op == "index_put":
        out = prep_args[0]                   # a write planned in place: out is the state buffer
    run = PREPARE[op](out, *prep_args, **attrs)
    if run is None:
        # only where the kernel's fast path needs instructions this CPU lacks
        assert (op == "linear_q4" and not (simd.HAVE_AVX512 if not attrs.get("dynamic") else simd.HAVE_VNNI)) \
            or (op == "linear_q4" and attrs.get("act_block") and not (simd.HAVE_AVX512 and simd.HAVE_VNNI)) \
            or (op == "linear_q8" and attrs.get("dynamic") and not simd.HAVE_VNNI) \
            or (op.endswith("conv2d") and not simd.HAVE_FMA)
        return
    args = make()                           # fresh arrays: a run must not keep the prepared ones
    if op == "index_put":
        want = args[0].copy()
        KERNELS[op](want, want, *args[1:], **attrs)
        run(args[0], *args)
        np.testing.assert_array_equal(args[0], want)
        return
    for _ in range(2):                      # twice: runs that keep scratch (padded copies) reuse it
        want = np.empty(shape, dtype)
        KERNELS[op](want, *args, **attrs)
        got = np.full(shape, np.nan if dtype == np.float32 else 99, dtype)
        run(got, *args)
        np.testing.assert_array_equal(got, want)
        args = make()


def test_preparers_decline_what_they_do_not_cover():
    x, w = _f32(40, 7), _f32(13, 7)
    assert PREPARE["linear"](np.empty((40, 13), np.float32), x, w) is None           # a GEMM, not a GEMV
    mask = np.ones((1, 1, 1, 11), np.float32)                                         # a float mask
    assert PREPARE["scaled_dot_product_attention"](np.empty((1, 2, 1, 8), np.float32), _f32(1, 2, 1, 8),
                                                   _f32(1, 2, 11, 8), _f32(1, 2, 11, 8), mask) is None
    c = _f32(1, 2, 11, 8)
    assert PREPARE["index_put"](c, c, _f32(1, 2, 1, 8), np.array([1]), index=(slice(None), slice(None), "#"),
                                accumulate=True) is None
    # a convolution's weight that is not a constant (writeable: computed, or a caller's) is not packed once
    assert PREPARE["conv2d"](np.empty((1, 4, 6, 6), np.float32), _f32(1, 3, 8, 8), _f32(4, 3, 3, 3)) is None
    assert PREPARE["linear_qs8"](np.empty((1, 4), np.int8), np.zeros((1, 5), np.int8), np.ones((4, 5), np.int8),
                                 np.ones(4, np.float32)) is None


@pytest.mark.parametrize("op", ["linear", "linear_q8"])
def test_prepared_linear_refuses_other_weights(op):
    """A prepared GEMV may hold a packed copy of its weight: run with another weight it refuses, never
    computes with the stale copy."""
    w = _f32(13, 7) if op == "linear" else RNG.integers(-127, 128, (13, 7), dtype=np.int8)
    w.flags.writeable = False
    extra = [] if op == "linear" else [_f32(13)]
    run = PREPARE[op](np.empty((1, 13), np.float32), _f32(1, 7), w, *extra)
    assert run is not None
    with pytest.raises(ValueError, match="another weight|other weights"):
        run(np.empty((1, 13), np.float32), _f32(1, 7), w.copy(), *extra)


@pytest.mark.parametrize("shape,index,dtype,numba_copy", [
    ((1, 2, 11, 8), (slice(None, 1), slice(None), "#"), np.float32, True),        # a decoder's KV cache
    ((3, 11, 5), (slice(None), "#"), np.float32, True),
    ((11, 4), ("#",), np.float32, True),
    ((1, 2, 11, 8), (slice(None, 1), slice(None), "#"), np.float16, False),       # a float16 cache: numpy
    ((2, 3, 11, 8), (slice(0, 1), slice(None), "#"), np.float32, False),          # part of a dim: numpy
    ((1, 2, 11, 8), (Ellipsis, "#", slice(None)), np.float32, False)])
def test_prepared_kv_write_paths(shape, index, dtype, numba_copy):
    """The prepared in-place write of one position: whole rows of a float32 cache through the Numba
    copy, anything else through numpy's indexing; both as the kernel writes, the position checked."""
    rng = np.random.default_rng(len(shape))
    cache = rng.normal(size=shape).astype(dtype)
    vshape = cache[tuple(slice(0, 1) if isinstance(e, str) else e for e in index)].shape   # one position's
    values = rng.normal(size=vshape).astype(dtype)
    run = PREPARE["index_put"](cache, cache, values, np.array([0]), index=index)
    assert run is not None and ("_put_row" in run.__code__.co_names) == numba_copy
    for p in (0, 4, 10):                                # the indexed dim is 11 long in every case
        want, got = cache.copy(), cache.copy()
        KERNELS["index_put"](want, want, values, np.array([p]), index=index)
        run(got, got, values, np.array([p]))
        np.testing.assert_array_equal(got, want)
    for bad in (11, -1):
        with pytest.raises(InputError, match="out of range"):
            run(cache, cache, values, np.array([bad]))


def test_prepared_index_put_still_checks_the_position():
    c = _f32(1, 2, 11, 8)
    run = PREPARE["index_put"](c, c, _f32(1, 2, 1, 8), np.array([0]), index=(slice(None, 1), slice(None), "#"))
    with pytest.raises(InputError, match="index 11 is out of range"):
        run(c, c, _f32(1, 2, 1, 8), np.array([11]))
    with pytest.raises(InputError, match="out of range"):
        run(c, c, _f32(1, 2, 1, 8), np.array([-1]))


def test_rotary_with_a_broadcast_table_takes_the_numpy_path():
    # cos / sin of shape (T, 1) broadcast over the head dim: the Numba loop reads (T, D) tables and
    # must not be given these
    x, cos, sin = _f32(1, 2, 3, 6), _f32(3, 1), _f32(3, 1)
    out = np.empty_like(x)
    KERNELS["rotary_embedding"](out, x, cos, sin)
    rot = np.concatenate([-x[..., 3:], x[..., :3]], axis=-1)
    np.testing.assert_allclose(out, x * cos + rot * sin, rtol=1e-6)
    assert PREPARE["rotary_embedding"](out, x, cos, sin) is None


def _never_prepared(prog, name):
    m = prog.method(name)
    m._prepare = lambda env, dims: m._runner
    return m


@pytest.mark.parametrize("preset", ["float32", "int8-weight", "int4-weight", "8da4w"])
def test_decode_is_the_same_prepared_or_not(preset):
    et.manual_seed(0)
    ep = export_llama(Decoder(small_llama()).eval())
    data = (ep if preset == "float32" else quantize(ep, preset)).to_bytes()
    plain, prepared = load(data), load(data)
    dec_plain = _never_prepared(plain, "decode")
    ids = np.random.default_rng(1).integers(0, 128, size=(1, 5))
    for p in (plain, prepared):
        p.prefill(ids, np.array([0]))
    dec = prepared.method("decode")
    tok = np.array([[3]])
    for i in range(5, 12):
        a = dec_plain(tok, np.array([i]))
        b = dec(tok, np.array([i]))
        np.testing.assert_array_equal(a, b)
        tok = np.array([[int(np.argmax(b[0, -1]))]])
    assert dec._prepared is not None and dec._prepared is not dec._runner
    for name in plain.state:
        np.testing.assert_array_equal(plain.state[name], prepared.state[name])
    # past the cache: an InputError from the prepared KV write, and the program still works after it
    with pytest.raises(InputError, match="out of range"):
        dec(tok, np.array([small_llama().max_position_embeddings]))
    np.testing.assert_array_equal(dec(tok, np.array([12])), dec_plain(tok, np.array([12])))


def test_mlp_prepares_on_its_second_call_of_a_size():
    et.manual_seed(0)
    m = MLP((20, 32, 32, 5)).eval()
    p = load(et.export(m, (et.randn(3, 20),), dynamic_shapes={"x": {0: et.exporter.Dim("batch", max=64)}})
             .to_bytes())
    f = p.method("forward")
    x1, x2 = _f32(1, 20), _f32(1, 20)
    with et.no_grad():
        want1, want2 = m(et.tensor(x1)).numpy(), m(et.tensor(x2)).numpy()
    np.testing.assert_allclose(p(x1), want1, atol=1e-5)
    assert f._prepared is None                              # one call of this size: nothing prepared
    np.testing.assert_allclose(p(x2), want2, atol=1e-5)
    assert f._prepared is not None and f._prepared is not f._runner
    np.testing.assert_allclose(p(x1), want1, atol=1e-5)     # prepared, new data
    assert f._steady_sig == ((np.dtype(np.float32), (1, 20)),)  # steady calls of this shape skip the binding
    # what the steady path does not take still runs, through the binding: a float64 input (cast),
    # a strided one, a keyword call; the same numbers
    np.testing.assert_allclose(p(x1.astype(np.float64)), want1, atol=1e-5)
    np.testing.assert_allclose(p(np.asfortranarray(np.repeat(x1, 2, 0))[:1]), want1, atol=1e-5)
    np.testing.assert_allclose(p(x=x1), want1, atol=1e-5)
    with pytest.raises(InputError, match="expected rank 2"):
        p(x1[0])
    np.testing.assert_allclose(p(_f32(7, 20)).shape, (7, 5))  # another size: its own (unprepared) run
    assert f._prepared is None and f._steady_sig is None
    np.testing.assert_allclose(p(x2), want2, atol=1e-5)     # back to batch 1: unprepared, then again
    np.testing.assert_allclose(p(x1), want1, atol=1e-5)
    np.testing.assert_allclose(p(x2), want2, atol=1e-5)


@pytest.mark.parametrize("sizes,batch", [((300, 256, 256, 10), 1), ((300, 256, 256, 10), 3), ((20, 32, 32, 5), 1),
                                         ((257, 300, 333, 7), 1), ((64, 1100, 100, 3), 2), ((300, 256, 256), 1),
                                         ((300, 256, 256, 300, 5), 1), ((300, 256, 40), 4)])
def test_mlp_linears_run_as_one_chain(sizes, batch):
    """A batch-1..4 MLP's linears (constant weights; the first two each past GEMV_PAR, their panels
    well filled) are prepared as one step with a small third one, the GEMV chain (hidden values
    computed and consumed per task, the partial sums added after the region, then the head): the
    same numbers as eager; a large third layer stays apart, and what follows runs on its own."""
    from edgetorch.runtime.kernels import linalg
    et.manual_seed(0)
    m = MLP(sizes).eval()
    p = load(et.export(m, (et.randn(2, sizes[0]),), dynamic_shapes={"x": {0: et.exporter.Dim("batch", max=8)}})
             .to_bytes())
    f = p.method("forward")
    for i in range(4):
        x = _f32(batch, sizes[0])
        with et.no_grad():
            want = m(et.tensor(x)).numpy()
        np.testing.assert_allclose(p(x), want, rtol=1e-5, atol=1e-5)
    done = [st[0] is P_done for st in f._prepared_steps]
    layers = list(zip(sizes[:-1], sizes[1:]))
    chained = simd.HAVE_AVX512 and all(a * b >= linalg.GEMV_PAR and linalg._panels_pay(b) for a, b in layers[:2])
    if not chained:
        assert not any(done)
    elif len(layers) > 2 and layers[2][0] * layers[2][1] < linalg.GEMV_PAR:
        assert done[:3] == [False, True, True] and not any(done[3:])
    else:
        assert done[:2] == [False, True] and not any(done[2:])


@pytest.mark.parametrize("m,k1,n1,n2,n3,parts", [(1, 5, 1, 1, 0, 2), (1, 33, 70, 17, 3, 2), (2, 100, 64, 33, 0, 3),
                                                 (4, 7, 31, 65, 10, 1), (1, 300, 257, 40, 1, 5),
                                                 (3, 1, 40, 3, 2, 2)])
@pytest.mark.parametrize("bias", [True, False])
def test_gemv_chain_kernel(m, k1, n1, n2, n3, parts, bias):
    """The GEMV chain on its own: any split of the hidden panels over the tasks (more tasks than
    panels leave some empty: their partial sums must be zeros), ReLU on any layer, with and without
    a third layer, operands right before an unreadable page; against float64 numpy."""
    from edgetorch.runtime.kernels import linalg as L
    from edgetorch.runtime.kernels import sgemm
    from .test_kernels import at_end
    if not simd.HAVE_AVX512:
        pytest.skip("needs AVX-512F")
    rng = np.random.default_rng(m + k1 + n1 + n2 + n3)
    x, w1, w2, w3 = (rng.normal(size=s).astype(np.float32) for s in ((m, k1), (n1, k1), (n2, n1), (n3, n2)))
    b1, b2, b3 = (rng.normal(size=n).astype(np.float32) if bias else np.zeros(0, np.float32) for n in (n1, n2, n3))
    for relu1, relu2, relu3 in ((True, False, True), (False, True, False)):
        h = x.astype(np.float64) @ w1.T + (b1 if bias else 0)
        h = np.maximum(h, 0) if relu1 else h
        want = h @ w2.T + (b2 if bias else 0)
        want = np.maximum(want, 0) if relu2 else want
        if n3:
            want = want @ w3.T + (b3 if bias else 0)
            want = np.maximum(want, 0) if relu3 else want
        out = at_end(np.full((m, n3 or n2), np.nan, np.float32))
        mid = at_end(np.full((m, n2), np.nan, np.float32)) if n3 else out
        h, part = np.empty((m, n1), np.float32), np.full((parts, m, n2), np.nan, np.float32)
        L._gemv_chain(at_end(x), at_end(sgemm.pack_wide(w1)[0]), at_end(b1), relu1, at_end(h),
                      at_end(sgemm.pack_wide(w2)[0]), at_end(b2), relu2, at_end(part), mid, at_end(w3), at_end(b3),
                      relu3, out)
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(want).max()))


def test_gemv_chain_declines():
    def prep(outs, ins, acts):
        ops = tuple("fused_linear" if a else "linear" for a in acts)
        return PREPARE_GROUP[ops](outs, ins, [{"activation": a} if a else {} for a in acts])
    w1, w2 = _ro(_f32(300, 256)), _ro(_f32(10, 300))
    out1, out2, x = np.empty((1, 300), np.float32), np.empty((1, 10), np.float32), _f32(1, 256)
    assert prep([out1, out2], [[x, w1, None], [out1, w2]], ["relu", None]) is None      # the second is small
    w2 = _ro(_f32(300, 300))
    out2 = np.empty((1, 300), np.float32)
    assert (prep([out1, out2], [[x, w1, None], [out1, w2]], ["relu", None]) is not None) == simd.HAVE_AVX512
    assert prep([out1, out2], [[x, w1, None], [out1, w2]], ["gelu", None]) is None      # not fused in the kernel
    assert prep([out1, out2], [[x, w1], [out1, _f32(300, 300)]], ["relu", None]) is None  # a writeable weight
    assert prep([out1, out2], [[x, w1], [w2, out1]], ["relu", None]) is None              # the hidden value not x
    big = np.empty((5, 300), np.float32)
    assert prep([big, np.empty((5, 300), np.float32)], [[_f32(5, 256), w1], [big, w2]], [None, None]) is None  # a GEMM
    w3, out3 = _ro(_f32(10, 300)), np.empty((1, 10), np.float32)
    assert (prep([out1, out2, out3], [[x, w1], [out1, w2], [out2, w3]], ["relu", "relu", None]) is not None) \
        == simd.HAVE_AVX512
    assert prep([out1, out2, out3], [[x, w1], [out1, w2], [out2, w3]], ["relu", "gelu", None]) is None
    w3, out3 = _ro(_f32(300, 300)), np.empty((1, 300), np.float32)                        # a large third layer
    assert prep([out1, out2, out3], [[x, w1], [out1, w2], [out2, w3]], ["relu", "relu", None]) is None


def _conv_add_relu(out, r, c, *inputs, **attrs):
    """The conv2d + add_relu group preparer, called as the runtime calls it: the sum's output, its other
    operand, the convolution's output, then the convolution's inputs and attributes."""
    return PREPARE_GROUP[("conv2d", "add_relu")]([c, out], [list(inputs), [c, r]], [attrs, {}])


def _ro(a):
    a = np.ascontiguousarray(a)
    a.flags.writeable = False             # a program's constant
    return a


@pytest.mark.skipif(not simd.HAVE_AVX512, reason="the fused shortcut kernel needs AVX-512F")
@pytest.mark.parametrize("n,c,h,w,o,s", [(3, 16, 32, 32, 32, 2), (2, 32, 16, 16, 64, 2), (5, 5, 8, 16, 8, 2),
                                         (3, 8, 8, 8, 16, 1), (1, 3, 12, 12, 24, 1), (40, 16, 16, 16, 16, 2)])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_shortcut_conv_add_relu(n, c, h, w, o, s, bias):
    """conv2d 1x1 (stride 1, or 2 with 16-multiple or 8-wide outputs) + add_relu as one pass, serial
    and parallel (40 images), against numpy; the pass never touches the conv's own output."""
    rng = np.random.default_rng(n * c + o)
    x = rng.normal(size=(n, c, h, w)).astype(np.float32)
    wt, b = _ro(rng.normal(size=(o, c, 1, 1)).astype(np.float32)), _ro(rng.normal(size=o).astype(np.float32))
    oh, ow = (h - 1) // s + 1, (w - 1) // s + 1
    r = rng.normal(size=(n, o, oh, ow)).astype(np.float32)
    c_out, out = np.full((n, o, oh, ow), np.nan, np.float32), np.full((n, o, oh, ow), np.nan, np.float32)
    args = [x, wt, b] if bias else [x, wt]
    run = _conv_add_relu(out, r, c_out, *args, stride=(s, s))
    assert run is not None
    run(out, *[np.array(a) for a in args], r.copy())       # fresh arrays: the run keeps none of them
    conv = np.einsum("oc,nchw->nohw", wt[:, :, 0, 0].astype(np.float64), x[:, :, ::s, ::s].astype(np.float64))
    want = np.maximum(conv + (b[None, :, None, None] if bias else 0) + r, 0)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5)
    assert np.isnan(c_out).all()


@pytest.mark.skipif(not simd.HAVE_FMA, reason="the panel kernels need FMA")
@pytest.mark.parametrize("n,c,h,w,o,s,pad", [(2, 16, 32, 32, 16, 1, 1), (5, 16, 32, 32, 16, 1, 1),
                                             (1, 8, 16, 16, 24, 2, 1), (6, 8, 16, 16, 16, 2, 1),
                                             (3, 5, 5, 8, 9, 1, 1), (4, 3, 7, 11, 8, 1, 1),
                                             (2, 4, 9, 9, 16, 1, 2), (2, 16, 16, 16, 12, 2, 0)])
@pytest.mark.parametrize("bias", [True, False])
def test_fused_conv3x3_add_relu(n, c, h, w, o, s, pad, bias):
    """A 3x3 (or 5x5) convolution + add_relu as one pass: the residual added and ReLU applied in the
    kernels' stores (row-padded stride 1 and 2, copied or padded in the task, and the panel kernel;
    full and partial last panels; channels past the last block of 8: a 12-channel 1x1 shortcut, which
    the 1x1 pass does not take, runs on the panels), against numpy; the convolution's own output is
    never touched."""
    rng = np.random.default_rng(n * c + o + h)
    k = 2 * pad + 1
    x = rng.normal(size=(n, c, h, w)).astype(np.float32)
    wt, b = _ro(rng.normal(size=(o, c, k, k)).astype(np.float32)), _ro(rng.normal(size=o).astype(np.float32))
    oh, ow = (h - 1) // s + 1, (w - 1) // s + 1
    r = rng.normal(size=(n, o, oh, ow)).astype(np.float32)
    c_out = np.full((n, o, oh, ow), np.nan, np.float32)
    out = np.full((n, o, oh, ow), np.nan, np.float32)
    args = [x, wt, b] if bias else [x, wt]
    run = _conv_add_relu(out, r, c_out, *args, stride=(s, s), padding=(pad, pad))
    assert run is not None
    run(out, *[np.array(a) for a in args], r.copy())
    conv = REGISTRY["conv2d"].forward(x.astype(np.float64), wt.astype(np.float64),
                                      b.astype(np.float64) if bias else None, stride=(s, s), padding=(pad, pad))
    np.testing.assert_allclose(out, np.maximum(conv + r, 0), rtol=1e-4, atol=1e-4)
    assert np.isnan(c_out).all()


@pytest.mark.skipif(not simd.HAVE_FMA, reason="the panel kernels need FMA")
def test_fused_conv_add_relu_on_the_8_lane_panels(monkeypatch):
    """Without AVX-512 a convolution + add_relu runs on the 8-lane panel kernel, the residual added
    once each task's panels are stored (full and partial panels, channels past the last block of 8)."""
    from edgetorch.runtime.kernels import conv as cv
    monkeypatch.setattr(simd, "HAVE_AVX512", False)
    monkeypatch.setattr(cv.conv_panels, "rows_applies", lambda *a: False)
    monkeypatch.setattr(cv.conv_panels, "rows2_applies", lambda *a: False)
    rng = np.random.default_rng(5)
    for n, c, h, w, o, s in [(5, 6, 10, 12, 11, 1), (2, 8, 16, 16, 16, 2)]:
        x = rng.normal(size=(n, c, h, w)).astype(np.float32)
        wt, b = _ro(rng.normal(size=(o, c, 3, 3)).astype(np.float32)), _ro(rng.normal(size=o).astype(np.float32))
        oh, ow = (h - 1) // s + 1, (w - 1) // s + 1
        r = rng.normal(size=(n, o, oh, ow)).astype(np.float32)
        c_out, out = np.full((n, o, oh, ow), np.nan, np.float32), np.full((n, o, oh, ow), np.nan, np.float32)
        run = _conv_add_relu(out, r, c_out, x, wt, b, stride=(s, s), padding=(1, 1))
        assert run is not None
        run(out, x, wt, b, r)
        conv = REGISTRY["conv2d"].forward(x.astype(np.float64), wt.astype(np.float64), b.astype(np.float64),
                                          stride=(s, s), padding=(1, 1))
        np.testing.assert_allclose(out, np.maximum(conv + r, 0), rtol=1e-4, atol=1e-4)
        assert np.isnan(c_out).all()


def test_fused_shortcut_declines():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2, 16, 16, 16)).astype(np.float32)
    w8 = _ro(rng.normal(size=(8, 16, 1, 1)).astype(np.float32))
    w3 = _ro(rng.normal(size=(8, 16, 3, 3)).astype(np.float32))
    o = np.empty((2, 8, 8, 8), np.float32)
    prep = _conv_add_relu
    assert prep(o, o.copy(), o.copy(), x, w3, stride=(2, 2), padding=(1, 1)) is not None          # 3x3
    assert prep(o, o, o.copy(), x, w3, stride=(2, 2), padding=(1, 1)) is None           # the sum over r
    ob = np.empty(o.size + 1, np.float32)               # the sum and r overlapping, one place apart
    assert prep(ob[:-1].reshape(o.shape), ob[1:].reshape(o.shape), o.copy(), x, w3, stride=(2, 2),
                padding=(1, 1)) is None
    assert prep(o, o.copy(), o.copy(), x, rng.normal(size=(8, 16, 1, 1)).astype(np.float32),
                stride=(2, 2)) is None                                                    # writable weights
    arena = np.empty(x.size, np.float32)                  # the sum's output in the input's (dead) slot
    xa, oa = arena.reshape(x.shape), arena[:o.size].reshape(o.shape)
    xa[...] = x
    assert prep(oa, o.copy(), o.copy(), xa, w8, stride=(2, 2)) is None
    if simd.HAVE_AVX512:
        assert prep(o, o.copy(), o.copy(), x, w8, stride=(2, 2)) is not None


def test_resnet_prepared_fuses_a_shortcut_and_matches_eager():
    """ResNet-8's three residual sums run fused into a convolution once prepared (the projection
    shortcuts' 1x1s, the identity block's second 3x3: the memory plan keeps each convolution's input
    alive through its add, so the sum never takes that slot); equal to eager."""
    import edgetorch.runtime.program as P
    et.manual_seed(0)
    m = ResNet().eval()
    x = np.random.default_rng(2).normal(size=(4, 3, 32, 32)).astype(np.float32)
    p = load(et.export(m, (et.tensor(x),)).to_bytes())
    with et.no_grad():
        want = m(et.tensor(x)).numpy()
    steps = []
    real = P._straight_line
    try:
        P._straight_line = lambda st: steps.append(st) or real(st)
        np.testing.assert_allclose(p(x), want, atol=1e-4)
        np.testing.assert_allclose(p(x), want, atol=1e-4)     # prepared
        with et.no_grad():
            want2 = m(et.tensor(x * 0.5)).numpy()
        np.testing.assert_allclose(p(x * 0.5), want2, atol=1e-4)
    finally:
        P._straight_line = real
    ops = [(st[5].op, st[0] is P._done) for st in steps[-1]]
    fused = [i for i, (op, done) in enumerate(ops) if done]
    assert len(fused) == (3 if simd.HAVE_FMA else 0) and all(ops[i][0] == "add_relu" for i in fused)


def test_profile_times_the_prepared_steps():
    """m.profile times what a steady call runs: the kernels prepared for these shapes (preparing them
    on a first call if need be), a fused pair as one row named for both ops; the run's result is a
    normal call's."""
    et.manual_seed(0)
    m = ResNet().eval()
    x = np.random.default_rng(3).normal(size=(2, 3, 32, 32)).astype(np.float32)
    p = load(et.export(m, (et.tensor(x),)).to_bytes())
    meth = p.method("forward")
    prof = meth.profile(x)
    assert meth._prepared is not None
    pairs = [r for r in prof.rows if r[0] == "conv2d+add_relu"]
    assert len(pairs) == (3 if simd.HAVE_FMA else 0)
    assert len(prof.rows) == len(meth._steps) - len(pairs)
    assert "conv2d+add_relu" in str(prof) or not simd.HAVE_FMA
    with et.no_grad():
        np.testing.assert_allclose(p(x), m(et.tensor(x)).numpy(), atol=1e-4)
