"""Loaded programs: reference models against eager, inputs, state, threads."""
import threading

import numpy as np
import pytest

import edgetorch as et
from edgetorch.exporter import Dim
from edgetorch.models import MLP, Decoder, Encoder, ResNet
from edgetorch.runtime import InputError, load

from ..exporter.test_capture import export_llama, small_bert, small_llama


@pytest.fixture(scope="module")
def mlp():
    et.manual_seed(0)
    m = MLP((20, 32, 32, 5)).eval()
    return m, load(et.export(m, (et.randn(3, 20),), dynamic_shapes={"x": {0: Dim("batch", max=64)}}).to_bytes())


def test_mlp_at_dynamic_extremes(mlp):
    m, p = mlp
    for b in (1, 17, 64):
        x = np.random.default_rng(b).normal(size=(b, 20)).astype(np.float32)
        with et.no_grad():
            np.testing.assert_allclose(p(x), m(et.tensor(x)).numpy(), atol=1e-5)


def test_resnet_and_encoder_match_eager_and_module():
    et.manual_seed(0)
    r = ResNet()
    with et.no_grad():
        r(et.randn(4, 3, 32, 32))
    r.eval()
    ep = et.export(r, (et.randn(2, 3, 32, 32),), dynamic_shapes={"x": {0: Dim("batch", max=32)}})
    p = load(ep.to_bytes())
    for b in (1, 3):
        x = et.randn(b, 3, 32, 32)
        with et.no_grad():
            want = r(x).numpy()
        np.testing.assert_allclose(p(x.numpy()), want, atol=1e-4)
        np.testing.assert_allclose(ep.module()(x).numpy(), want, atol=1e-4)
    e = Encoder(small_bert()).eval()
    b, s = Dim("batch", max=8), Dim("seq", max=40)
    ep = et.export(e, (et.randint(1, 97, (2, 5)), et.ones(2, 5, dtype="int64")),
                   dynamic_shapes={"input_ids": {0: b, 1: s}, "attention_mask": {0: b, 1: s}})
    p = load(ep.to_bytes())
    for bs, sl in ((1, 1), (2, 13), (8, 40)):
        ids = et.randint(1, 97, (bs, sl))
        mask = np.ones((bs, sl), np.int64)
        mask[0, sl // 2 + 1:] = 0
        with et.no_grad():
            want = e(ids, et.tensor(mask)).numpy()
        np.testing.assert_allclose(p(ids.numpy(), mask), want, atol=1e-4)
        np.testing.assert_allclose(p(input_ids=ids.numpy(), attention_mask=mask), want, atol=1e-4)


def test_llama_prefill_decode_and_state():
    et.manual_seed(0)
    m = Decoder(small_llama()).eval()
    p = load(export_llama(m).to_bytes())
    assert p.methods == ["prefill", "decode"] and p.method("decode").stateful
    ids = et.randint(0, 128, (1, 12))
    with et.no_grad():
        full = m(ids).numpy()
    a = ids.numpy()
    out = [p.prefill(a[:, :5], np.array([0]))]
    for i in range(5, 12):
        out.append(p.decode(a[:, i:i + 1], np.array([i])))
    np.testing.assert_allclose(np.concatenate(out, 1), full, atol=1e-4)
    assert any(np.any(v) for v in p.state.values())
    p.reset_state()
    assert not any(np.any(v) for v in p.state.values())
    np.testing.assert_allclose(p.prefill(a[:, :5], np.array([0])), full[:, :5], atol=1e-4)


def test_llama_float16_kv_cache():
    """kv_cache_dtype="float16" (llama.cpp's default): the program keeps float16 state that the decode
    attention reads as it is (GQA: 4 query heads over 2 KV heads); runtime == eager, which rounds
    the cache alike, and close to the float32 cache."""
    from dataclasses import replace
    et.manual_seed(0)
    m = Decoder(replace(small_llama(), kv_cache_dtype="float16")).eval()
    et.manual_seed(0)
    m32 = Decoder(small_llama()).eval()
    p = load(export_llama(m).to_bytes())
    assert {v.dtype for v in p.state.values()} == {np.dtype(np.float16)}
    ids = et.randint(0, 128, (1, 12))
    a = ids.numpy()
    out = [p.prefill(a[:, :5], np.array([0]))]
    for i in range(5, 12):
        out.append(p.decode(a[:, i:i + 1], np.array([i])))
    with et.no_grad():
        eager = [m(ids[:, :5], start_pos=0).numpy()] + [m(ids[:, i:i + 1], start_pos=i).numpy() for i in range(5, 12)]
        full32 = m32(ids).numpy()
    np.testing.assert_allclose(np.concatenate(out, 1), np.concatenate(eager, 1), atol=1e-4)
    np.testing.assert_allclose(np.concatenate(out, 1), full32, atol=2e-2)
    with pytest.raises(ValueError, match="kv_cache_dtype"):
        replace(small_llama(), kv_cache_dtype="bfloat16")


def test_input_errors_name_the_input(mlp):
    _, p = mlp
    x = np.zeros((2, 20), np.float32)
    cases = [((), "takes 1 inputs"), ((x, x), "takes 1 inputs"),
             ((np.zeros((2, 21), np.float32),), "dim 1: expected 20, got 21"),
             ((np.zeros((65, 20), np.float32),), r"\(batch\) is 65; expected 1 <= batch <= 64"),
             ((np.zeros((2, 20, 1), np.float32),), "expected rank 2"),
             ((np.zeros((2, 20), np.int64),), "expected float32, got int64")]
    for args, needle in cases:
        with pytest.raises(InputError, match=needle):
            p(*args)
    with pytest.raises(InputError, match="no input named 'y'"):
        p(y=x)
    np.testing.assert_allclose(p(x.astype(np.float64)), p(x))           # same-kind cast
    np.testing.assert_allclose(p(np.asfortranarray(np.ones((3, 20)))), p(np.ones((3, 20), np.float32)))


def test_out_of_range_token_is_an_input_error():
    et.manual_seed(0)
    p = load(export_llama(Decoder(small_llama()).eval()).to_bytes())
    np.testing.assert_allclose(p.decode(np.array([[5]], np.int32), np.array([3], np.int32)),
                               p.decode(np.array([[5]]), np.array([3])), atol=1e-6)    # int32 ids are fine
    with pytest.raises(InputError, match="do not fit"):
        p.decode(np.array([[5]], np.uint64) + np.uint64(2 ** 63), np.array([3]))
    with pytest.raises(InputError, match="out of range"):
        p.decode(np.array([[128]]), np.array([3]))
    with pytest.raises(InputError, match="out of range"):
        p.decode(np.array([[-1]]), np.array([3]))
    with pytest.raises(InputError, match="out of range"):
        p.decode(np.array([[5]]), np.array([32]))     # past the KV cache


def test_eight_threads_get_correct_results(mlp):
    m, p = mlp
    xs = [np.random.default_rng(i).normal(size=(i + 1, 20)).astype(np.float32) for i in range(8)]
    with et.no_grad():
        want = [m(et.tensor(x)).numpy() for x in xs]
    errors = []

    def work(i):
        for _ in range(50):
            if not np.allclose(p(xs[i]), want[i], atol=1e-5):
                errors.append(i)

    ts = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert not errors


def test_profile_names_ops_and_lines(mlp):
    _, p = mlp
    prof = p.method("forward").profile(np.ones((2, 20), np.float32))
    text = str(prof)
    assert "fused_linear" in text and "vision.py" in text and prof.total > 0


def test_warmup_and_program_info(mlp):
    _, p = mlp
    p.warmup()
    assert p.arena_bytes()["forward"] > 0 and p.constant_bytes > 0
    assert "batch" in repr(p.method("forward").inputs[0])


def test_planned_view_reshapes_run_no_kernel():
    """A reshape, or a getitem of one contiguous run (a decode step's q/k/v and gate/up slices of the
    packed projections), planned as a view of its input's slot is dropped from the steps; results
    still match; the element-count key that guards the skip tells equal from unequal shapes."""
    from edgetorch.runtime.verify import planned_view
    from edgetorch.schemas.format import DimE
    et.manual_seed(0)
    m = Decoder(small_llama()).eval()
    ep = export_llama(m)
    p = load(ep.to_bytes())
    dec = p.method("decode")
    vals = dec.info.values
    views = [i.op for i in dec.info.instructions if planned_view(vals, i)]
    assert views.count("reshape") >= 4 and views.count("getitem") >= 5
    assert len(dec._steps) == len(dec.info.instructions) - len(views)
    pv = p.method("prefill").info.values         # prefill's slices of a (1, seq, ...) projection copy
    dyn = [i for i in p.method("prefill").info.instructions
           if i.op == "getitem" and any(isinstance(d, DimE) for d in pv[i.inputs[0]].shape)]
    assert dyn and not any(planned_view(pv, i) for i in dyn)
    ids = np.random.default_rng(0).integers(0, 128, size=(1, 5))
    ref = ep.module()
    np.testing.assert_allclose(p.prefill(ids[:, :4], np.array([0])),
                               ref.prefill(et.tensor(ids[:, :4]), et.tensor([0])).numpy(), atol=1e-4)
    np.testing.assert_allclose(dec(ids[:, 4:5], np.array([4])),
                               ref.decode(et.tensor(ids[:, 4:5]), et.tensor([4])).numpy(), atol=1e-4)
    prof = dec.profile(ids[:, 4:5], np.array([4]))
    assert len(prof.rows) == len(dec._steps)
    assert sorted(prof.index) == prof.index and max(prof.index) < len(dec.info.instructions)
    from edgetorch.runtime.program import _numel_key
    s = DimE(("sym", 0))
    assert _numel_key((s, 6, 48)) == _numel_key((s, 288)) != _numel_key((s, 6, 47))
