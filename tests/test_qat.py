"""Quantization-aware training: the eager fake-quantized model computes what the
exported, quantized program computes (same grids), and gradients pass straight
through the rounding."""
import numpy as np
import pytest

import edgetorch as et
from edgetorch.exporter import QuantConfig, quantize
from edgetorch.models import MLP
from edgetorch.quant import convert_qat, prepare_qat


@pytest.mark.parametrize("preset", ["int8-weight", "int4-weight", "int8-dynamic", "8da4w", "float16-weight"])
def test_qat_model_matches_the_quantized_program(preset):
    et.manual_seed(0)
    m = MLP((64, 96, 40, 10)).eval()              # 40 inputs: the last layer falls back from int4 to int8
    x = et.randn(5, 64)
    prepare_qat(m, preset)
    with et.no_grad():
        fq = m(x).numpy()
    q = quantize(et.export(m, (x,)), preset)       # capture sees the float weights
    np.testing.assert_allclose(q.module()(x).numpy(), fq, rtol=1e-5, atol=1e-5)
    convert_qat(m)
    with et.no_grad():
        plain = m(x).numpy()
    assert type(m.layers[0]) is et.nn.Linear and np.abs(plain - fq).max() > 0


def test_straight_through_gradient():
    from edgetorch.quant.grids import fake_quant_int4
    et.manual_seed(0)
    m = MLP((64, 8)).eval()
    twin = MLP((64, 8)).eval()
    twin.load_state_dict(m.state_dict())
    twin.layers[0].weight.data = et.tensor(fake_quant_int4(m.layers[0].weight.detach().numpy(), 32))
    prepare_qat(m, QuantConfig("int4-weight", group_size=32, act_block=0))   # the weight STE alone
    x = et.randn(4, 64)
    (m(x) ** 2).sum().backward()
    (twin(x) ** 2).sum().backward()
    np.testing.assert_allclose(m.layers[0].weight.grad.numpy(), twin.layers[0].weight.grad.numpy(), rtol=1e-5)


def test_qat_fine_tuning_lowers_the_quantized_loss():
    """A regression fit under int4 QAT; the exported int4 program keeps the QAT loss."""
    rng = np.random.default_rng(0)
    X = rng.normal(size=(256, 64)).astype(np.float32)
    Y = (X @ rng.normal(size=(64, 4)) * 0.3).astype(np.float32)
    et.manual_seed(0)
    m = MLP((64, 64, 4))
    prepare_qat(m, "int4-weight")
    opt = et.optim.Adam(m.parameters(), lr=3e-3)
    x, y = et.tensor(X), et.tensor(Y)
    losses = []
    for _ in range(150):
        opt.zero_grad()
        loss = et.nn.functional.mse_loss(m(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.2 * losses[0]
    m.eval()
    q = quantize(et.export(m, (x,)), "int4-weight")
    qloss = float(np.mean((q.module()(x).numpy() - Y) ** 2))
    assert qloss < 1.1 * losses[-1] + 1e-6
    assert "qat=int4-weight" in repr(m)


@pytest.mark.parametrize("preset", ["int8-weight", "int8-dynamic"])
def test_qat_conv_net_matches_the_quantized_program(preset):
    """Convs (no batch norm to fold) get the exporter's int8 per-channel grid in QAT too."""
    nn = et.nn
    et.manual_seed(0)
    m = nn.Sequential(nn.Conv2d(1, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3, stride=2), nn.ReLU(),
                      nn.Flatten(), nn.Linear(8 * 3 * 3, 5)).eval()
    x = et.randn(4, 1, 8, 8)
    prepare_qat(m, preset)
    assert "qat=" in repr(m[0]) and "qat=" in repr(m[5])
    with et.no_grad():
        fq = m(x).numpy()
    q = quantize(et.export(m, (x,)), preset)
    assert "dequantize_per_channel" in [n.op for n in q.graph.nodes]
    np.testing.assert_allclose(q.module()(x).numpy(), fq, rtol=1e-5, atol=1e-5)
