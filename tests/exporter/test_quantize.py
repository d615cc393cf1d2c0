"""int8 weight-only quantization: numerics, sharing, sizes, format, runtime."""
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
    assert sum(1 for c in int8 if c.name == "model.embed_tokens.weight") == 1
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
    with pytest.raises(ExportError, match="planned; not implemented yet"):
        quantize(ep, "int4-weight")
    with pytest.raises(ExportError, match="available"):
        quantize(ep, "int3-magic")


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
