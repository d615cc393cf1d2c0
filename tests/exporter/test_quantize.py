"""Quantization presets: numerics against the float program, sharing, sizes,
format, runtime = reference interpreter = eager graph, configs and errors."""
import numpy as np
import pytest

import edgetorch as et
from edgetorch.exporter import Dim, ExportError, QuantConfig, quantize, read
from edgetorch.exporter.quantize import quantize_rows_int8
from edgetorch.exporter.reference import ReferenceProgram
from edgetorch.models import MLP, Decoder
from edgetorch.runtime import load

from .test_capture import export_llama, small_llama


def test_row_quantization_round_trips_within_half_a_step():
    w = np.random.default_rng(0).normal(size=(7, 13)).astype(np.float32)
    w[3] = 0
    wq, s = quantize_rows_int8(w)
    assert wq.dtype == np.int8 and s.shape == (7,) and np.abs(wq).max() <= 127
    assert np.all(np.abs(wq * s[:, None] - w) <= s[:, None] / 2 + 1e-7)
    assert s[3] == 1 and not wq[3].any()


def test_mlp_int8_weight_is_close_small_and_runs():
    et.manual_seed(0)
    m = MLP().eval()
    ep = et.export(m, (et.randn(2, 784),), dynamic_shapes={"x": {0: Dim("b", max=64)}})
    q = quantize(ep)
    assert [n.op for n in q.graph.nodes] == ["linear_q8"] * 3
    assert [n.op for n in ep.graph.nodes] != [n.op for n in q.graph.nodes]      # input left unchanged
    x = et.randn(9, 784)
    with et.no_grad():
        ref = m(x).numpy()
    got = q.module()(x).numpy()
    assert np.abs(got - ref).max() < 0.02 * np.abs(ref).max()
    data = q.to_bytes()
    n = sum(p.numel() for p in m.parameters())
    assert len(data) / n <= 1.05
    info = read(data)
    qv = [v for v in info.methods[0].values if v.quant]
    assert len(qv) == 3 and all(v.dtype == "int8" and v.quant["scheme"] == "per_channel_symmetric" and
                                info.constants[v.quant["scale"]].dtype == "float32" for v in qv)
    np.testing.assert_allclose(load(data)(x.numpy()), got, atol=1e-5)
    np.testing.assert_allclose(ReferenceProgram(info).run("forward", x.numpy())[0], got, atol=1e-5)


def test_llama_tied_table_is_shared_and_decode_matches():
    et.manual_seed(0)
    m = Decoder(small_llama()).eval()              # tied embeddings (the default)
    q = quantize(export_llama(m))
    info = read(q.to_bytes())
    int8 = [c for c in info.constants if c.dtype == "int8"]
    assert sum(1 for c in int8 if c.name == "model.embed_tokens.weight#int8") == 1
    assert "embedding_q8" in info.op_histogram() and info.metadata["quantization"] == "int8-weight"
    p, ref = load(q.to_bytes()), q.module()
    ids = np.random.default_rng(0).integers(0, 128, size=(1, 6))
    a = p.prefill(ids[:, :4], np.array([0]))
    np.testing.assert_allclose(a, ref.prefill(et.tensor(ids[:, :4]), et.tensor([0])).numpy(), atol=1e-4)
    for i in (4, 5):
        np.testing.assert_allclose(p.decode(ids[:, i:i + 1], np.array([i])),
                                   ref.decode(et.tensor(ids[:, i:i + 1]), et.tensor([i])).numpy(), atol=1e-4)
    with et.no_grad():
        full = m(et.tensor(ids)).numpy()
    assert np.abs(a - full[:, :4]).max() < 0.05 * np.abs(full).max()


def test_skip_patterns_and_unknown_presets():
    et.manual_seed(0)
    ep = et.export(MLP((8, 6, 4)).eval(), (et.randn(2, 8),))
    q = quantize(ep, QuantConfig(skip=["layers.1.*"]))
    assert [n.op for n in q.graph.nodes] == ["linear_q8", "linear"]
    with pytest.raises(ExportError, match="unknown quantization preset 'int3-magic'"):
        quantize(ep, "int3-magic")
    with pytest.raises(ExportError, match="group size 48"):
        quantize(ep, QuantConfig("int4-weight", group_size=48))
    with pytest.raises(ExportError, match="needs calibration data"):
        quantize(ep, "int8-static")
    with pytest.raises(ExportError, match="unknown observer"):
        QuantConfig("int8-static", observer="vibes")


def test_weight_also_read_by_an_unquantized_op_stays_available():
    class Shared(et.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc = et.nn.Linear(6, 6, bias=False)

        def forward(self, x):
            return self.fc(x) + x @ self.fc.weight          # the same weight, through matmul

    et.manual_seed(0)
    m = Shared().eval()
    q = quantize(et.export(m, (et.randn(3, 6),)))
    ops = [n.op for n in q.graph.nodes]
    assert "linear_q8" in ops and "matmul" in ops
    x = et.randn(3, 6)
    with et.no_grad():
        ref = m(x).numpy()
    np.testing.assert_allclose(load(q.to_bytes())(x.numpy()), ref, atol=0.05)


ALL = ["int8-weight", "int4-weight", "int8-dynamic", "8da4w", "int8-static", "float16-weight"]


def _mlp_program():
    et.manual_seed(0)
    m = MLP((64, 96, 32, 10)).eval()
    return m, et.export(m, (et.randn(2, 64),), dynamic_shapes={"x": {0: Dim("b", max=32)}})


@pytest.mark.parametrize("preset", ALL)
def test_every_preset_runs_the_same_in_graph_reference_and_runtime(preset):
    m, ep = _mlp_program()
    rng = np.random.default_rng(1)
    cal = [(rng.normal(size=(8, 64)).astype(np.float32),) for _ in range(4)]
    q = quantize(ep, preset, calibration=cal)
    x = rng.normal(size=(5, 64)).astype(np.float32)
    ref = ep.module()(x).numpy()
    got = q.module()(x).numpy()
    tol = {"float16-weight": 2e-3, "int8-weight": 0.02, "int8-dynamic": 0.03, "int8-static": 0.05}.get(preset, 0.15)
    assert np.abs(got - ref).max() < tol * np.abs(ref).max(), preset
    info = read(q.to_bytes())
    np.testing.assert_allclose(load(q.to_bytes())(x), got, rtol=1e-4, atol=1e-4 * np.abs(got).max())
    np.testing.assert_allclose(ReferenceProgram(info).run("forward", x)[0], got, rtol=1e-4,
                               atol=1e-4 * np.abs(got).max())
    for xb in (x[:1], rng.normal(size=(32, 64)).astype(np.float32)):        # decode-sized and batch paths
        np.testing.assert_allclose(load(q.to_bytes())(xb), q.module()(xb).numpy(), rtol=1e-4,
                                   atol=2e-4 * np.abs(got).max())


def test_preset_ops_and_int4_metadata():
    _, ep = _mlp_program()
    ops = {p: [n.op for n in quantize(ep, p, calibration=[(np.ones((2, 64), np.float32),)]).graph.nodes]
           for p in ALL}
    assert ops["int4-weight"] == ["linear_q4"] * 3 and ops["8da4w"] == ["linear_q4"] * 3
    assert ops["int8-dynamic"] == ["linear_q8"] * 3 and ops["float16-weight"].count("to") == 3
    assert ops["int8-static"] == ["quantize_per_tensor"] + ["linear_qs8"] * 3 + ["dequantize_per_tensor"]
    q = quantize(ep, QuantConfig("int4-weight", group_size=32, symmetric=False))
    assert all(n.attrs["dynamic"] is False for n in q.graph.nodes)
    info = read(q.to_bytes())
    qv = [v for v in info.methods[0].values if v.quant]
    assert len(qv) == 3
    for v in qv:
        assert v.dtype == "uint8" and v.quant["bits"] == 4 and v.quant["group_size"] == 32
        assert v.quant["scheme"] == "per_group_affine" and info.constants[v.quant["scale"]].dtype == "float16"
        assert info.constants[v.quant["zero_point"]].dtype == "uint8"
    assert info.metadata["quantization"] == "int4-weight-g32-asym"


def test_overrides_by_name_and_op_type():
    et.manual_seed(0)
    ep = et.export(MLP((64, 32, 32, 4)).eval(), (et.randn(2, 64),))
    cfg = QuantConfig("int4-weight", overrides={"layers.0": "int8-weight", "layers.2.weight": None})
    assert [n.op for n in quantize(ep, cfg).graph.nodes] == ["linear_q8", "linear_q4", "linear"]
    cfg = QuantConfig("int8-weight", overrides={"linear": "float16-weight"})
    assert [n.op for n in quantize(ep, cfg).graph.nodes].count("to") == 3


def test_int4_falls_back_to_int8_where_groups_do_not_fit():
    et.manual_seed(0)
    ep = et.export(MLP((40, 32, 4)).eval(), (et.randn(2, 40),))
    q = quantize(ep, "int4-weight")
    assert [n.op for n in q.graph.nodes] == ["linear_q8", "linear_q4"]
    assert "cannot take int4 groups of 32" in q.metadata["quantization_notes"]


def test_llama_int4_file_size_and_decode():
    """int4 g32 (symmetric, float16 scales) <= 0.6 bytes per parameter; decode matches the graph."""
    from edgetorch.models import DecoderConfig
    et.manual_seed(0)
    big = Decoder(DecoderConfig(vocab_size=4096, hidden_size=256, intermediate_size=704, num_hidden_layers=2,
                                num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)).eval()
    n = sum(p.numel() for p in big.parameters())
    for preset, most in (("int4-weight", 0.6), ("int8-weight", 1.05)):
        size = len(quantize(export_llama(big), preset).to_bytes())
        assert size / n <= most, (preset, size / n)
    cfg = small_llama()
    m = Decoder(cfg).eval()
    for preset in ("int4-weight", "8da4w"):
        q = quantize(export_llama(m), preset)
        data = q.to_bytes()
        assert "embedding_q4" in read(data).op_histogram()
        p, ref = load(data), q.module()
        ids = np.random.default_rng(0).integers(0, cfg.vocab_size, size=(1, 6))
        np.testing.assert_allclose(p.prefill(ids[:, :4], np.array([0])),
                                   ref.prefill(et.tensor(ids[:, :4]), et.tensor([0])).numpy(), atol=2e-4)
        for i in (4, 5):
            np.testing.assert_allclose(p.decode(ids[:, i:i + 1], np.array([i])),
                                       ref.decode(et.tensor(ids[:, i:i + 1]), et.tensor([i])).numpy(), atol=2e-4)


@pytest.mark.parametrize("observer", ["minmax", "moving_average", "percentile", "mse"])
def test_observers_give_ranges_containing_zero(observer):
    from edgetorch.quant.observers import make_observer
    o = make_observer(observer)
    rng = np.random.default_rng(0)
    for _ in range(5):
        o.update(rng.normal(size=4000) * 2 + 1)
    lo, hi = o.range()
    assert lo < 0 < hi and -9 < lo and hi < 11
    s, z = o.qparams()
    assert s > 0 and -128 <= z <= 127
    if observer in ("percentile", "mse"):
        mm = make_observer("minmax")
        mm.update(o.sample)
        assert hi - lo <= mm.range()[1] - mm.range()[0] + 1e-9      # clipping never widens the range


def test_mse_observer_clips_heavy_tails_and_lowers_the_error():
    from edgetorch.quant.grids import qparams_int8
    from edgetorch.quant.observers import make_observer
    x = np.random.default_rng(0).standard_t(3, size=100000)           # heavy tails
    o, mm = make_observer("mse"), make_observer("minmax")
    o.update(x)
    mm.update(x)

    def err(r):
        s, z = qparams_int8(*r)
        return np.mean(((np.clip(np.rint(x / s) + z, -128, 127) - z) * s - x) ** 2)
    assert o.range()[1] < mm.range()[1] and err(o.range()) < 0.9 * err(mm.range())
    assert err(o.range()) < err((x.min() / 2, x.max() / 2))


def test_static_int8_cnn_stays_int8_between_layers():
    from edgetorch.models import ResNet
    et.manual_seed(0)
    m = ResNet().eval()
    ep = et.export(m, (et.randn(2, 3, 32, 32),), dynamic_shapes={"x": {0: Dim("b", max=8)}})
    rng = np.random.default_rng(0)
    cal = [(rng.normal(size=(4, 3, 32, 32)).astype(np.float32),) for _ in range(3)]
    q = quantize(ep, QuantConfig("int8-static", observer="mse"), calibration=cal)
    ops = [n.op for n in q.graph.nodes]
    assert ops.count("quantize_per_tensor") == 2 and ops.count("dequantize_per_tensor") == 2    # stem and head
    assert "add_relu" in [n.op for n in ep.graph.nodes]             # the export fused add -> relu ...
    assert ops.count("add_qs8") == 3 and "relu" not in ops and "add_relu" not in ops   # ... int8 takes it
    x = cal[0][0]
    ref, got = ep.module()(x).numpy(), q.module()(x).numpy()
    assert np.abs(got - ref).max() < 0.05 * np.abs(ref).max()
    np.testing.assert_allclose(load(q.to_bytes())(x), got, atol=1e-5)
    with pytest.raises(ExportError, match="calibration batch has 3 arguments"):
        quantize(ep, "int8-static", calibration=[(x, x, x)])


def test_static_calibration_from_a_dataloader():
    """(x, y) batches of a DataLoader calibrate a one-input method (the target is ignored)."""
    from edgetorch.utils.data import DataLoader, TensorDataset
    m, ep = _mlp_program()
    rng = np.random.default_rng(0)
    ds = TensorDataset(et.tensor(rng.normal(size=(64, 64)).astype(np.float32)), et.tensor(rng.integers(0, 10, 64)))
    q = quantize(ep, "int8-static", calibration=DataLoader(ds, batch_size=16))
    a = quantize(ep, "int8-static", calibration=[(ds.tensors[0][i:i + 16],) for i in range(0, 64, 16)])
    x = rng.normal(size=(3, 64)).astype(np.float32)
    np.testing.assert_array_equal(q.module()(x).numpy(), a.module()(x).numpy())


def test_saved_programs_rebuild_into_identical_files():
    """from_info(read(file)) gives back the graphs: writing them again gives the same bytes."""
    from edgetorch.exporter.program import from_info
    from edgetorch.models import ResNet
    et.manual_seed(0)
    for ep in (et.export(ResNet().eval(), (et.randn(2, 3, 32, 32),), dynamic_shapes={"x": {0: Dim("b", max=8)}}),
               export_llama(Decoder(small_llama()).eval()),
               quantize(_mlp_program()[1], "int4-weight")):
        data = ep.to_bytes()
        again = from_info(read(data))
        assert again.to_bytes() == data


def test_cli_quantize_with_calibration_and_report(tmp_path, capsys):
    from edgetorch.cli import main
    _, ep = _mlp_program()
    ep.save(tmp_path / "mlp.etp")
    np.savez(tmp_path / "cal.npz", x=np.random.default_rng(0).normal(size=(40, 64)).astype(np.float32))
    assert main(["quantize", str(tmp_path / "mlp.etp"), "--preset", "int8-static", "--calibration",
                 str(tmp_path / "cal.npz"), "--observer", "percentile", "--report", "--quiet"]) == 0
    out = capsys.readouterr().out
    assert "mlp.int8-static.etp" in out and "linear_qs8" in out and "top-1 agreement" in out
    p = load(str(tmp_path / "mlp.int8-static.etp"))
    x = np.random.default_rng(1).normal(size=(3, 64)).astype(np.float32)
    ref = ep.module()(x).numpy()
    assert np.abs(p(x) - ref).max() < 0.05 * np.abs(ref).max()
    assert main(["quantize", str(tmp_path / "mlp.etp"), "--preset", "int4-weight", "--group-size", "64",
                 "--override", "layers.2=float", "-o", str(tmp_path / "q4.etp"), "--quiet"]) == 0
    ops = [i.op for i in read(str(tmp_path / "q4.etp")).methods[0].instructions]
    assert ops == ["linear_q4", "linear_q8", "linear"]            # 96 inputs do not split in groups of 64
    assert main(["quantize", str(tmp_path / "mlp.etp"), "--preset", "int8-static", "--quiet"]) == 2
    assert "needs calibration data" in capsys.readouterr().err
    assert main(["quantize", str(tmp_path / "mlp.etp"), "--preset", "int2", "--quiet"]) == 2
