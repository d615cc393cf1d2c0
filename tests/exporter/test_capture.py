"""Capture of the reference models, dynamic dims, multi-method state, and ExportError cases."""
import numpy as np
import pytest

import edgetorch as et
from edgetorch import nn
from edgetorch.exporter import Dim, ExportError
from edgetorch.models import MLP, Decoder, DecoderConfig, Encoder, EncoderConfig, ResNet


def small_llama():
    return DecoderConfig(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=32)


def small_bert():
    return EncoderConfig(vocab_size=97, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=80, max_position_embeddings=40)


def export_llama(m):
    seq = Dim("seq", min=1, max=m.config.max_position_embeddings)
    return et.export_methods(m, {
        "prefill": (m, (et.randint(0, 128, (1, 4)), et.tensor([0])), {"input_ids": {1: seq}}),
        "decode": (m, (et.randint(0, 128, (1, 1)), et.tensor([4]))),
    }, metadata={"bos_id": 1})


def test_mlp_and_resnet_module_match_eager():
    et.manual_seed(0)
    m = MLP((20, 16, 16, 5)).eval()
    ep = et.export(m, (et.randn(3, 20),), dynamic_shapes={"x": {0: Dim("batch", max=64)}})
    for b in (1, 7, 64):
        x = et.randn(b, 20)
        with et.no_grad():
            np.testing.assert_allclose(ep.module()(x).numpy(), m(x).numpy(), atol=1e-5)
    r = ResNet().eval()
    ep = et.export(r, (et.randn(2, 3, 32, 32),))
    x = et.randn(2, 3, 32, 32)
    with et.no_grad():
        np.testing.assert_allclose(ep.module()(x).numpy(), r(x).numpy(), atol=1e-5)
    assert "batch_norm" not in str(ep.graph) and "fused_conv2d" in str(ep.graph)


def test_encoder_dynamic_batch_and_sequence():
    et.manual_seed(0)
    e = Encoder(small_bert()).eval()
    b, s = Dim("batch", max=8), Dim("seq", max=40)
    ep = et.export(e, (et.randint(1, 97, (2, 5)), et.ones(2, 5, dtype="int64")),
                   dynamic_shapes={"input_ids": {0: b, 1: s}, "attention_mask": {0: b, 1: s}})
    assert "input_ids: i64[batch, seq]" in str(ep.graph)
    for bs, sl in ((1, 1), (3, 17), (8, 40)):
        ids = et.randint(1, 97, (bs, sl))
        mask = et.ones(bs, sl, dtype="int64")
        with et.no_grad():
            np.testing.assert_allclose(ep.module()(ids, mask).numpy(), e(ids, mask).numpy(), atol=1e-5)
    with pytest.raises(et.ShapeError, match="seq"):
        ep.module()(et.randint(1, 97, (2, 5)), et.ones(2, 6, dtype="int64"))
    with pytest.raises(et.ShapeError, match=r"outside \[1, 40\]"):
        ep.module()(et.randint(1, 97, (2, 41)), et.ones(2, 41, dtype="int64"))


def test_llama_prefill_then_decode_matches_full_eager():
    et.manual_seed(0)
    m = Decoder(small_llama()).eval()
    ep = export_llama(m)
    assert set(ep.methods) == {"prefill", "decode"}
    assert len(ep.state_init) == 4 and all("cache" in k for k in ep.state_init)
    ids = et.randint(0, 128, (1, 10))
    with et.no_grad():
        full = m(ids).numpy()
    pm = ep.module()
    outs = [pm.prefill(ids[:, :6], et.tensor([0])).numpy()]
    for i in range(6, 10):
        outs.append(pm.decode(ids[:, i:i + 1], et.tensor([i])).numpy())
    np.testing.assert_allclose(np.concatenate(outs, 1), full, atol=1e-5)
    # export restored the model's own cache
    assert all(np.all(b.numpy() == 0) for n, b in m.named_buffers() if "cache" in n)


def test_graph_prints_one_node_per_line_with_shapes_and_lines():
    m = MLP((4, 3)).eval()
    ep = et.export(m, (et.randn(2, 4),))
    text = str(ep.graph)
    assert "graph forward(%x: f32[2, 4]):" in text and "= linear(%x, %layers.0.weight, %layers.0.bias)" in text
    assert "vision.py:" in text


class _Branchy(nn.Module):
    def __init__(self, what):
        super().__init__()
        self.what = what

    def forward(self, x):
        if self.what == "bool":
            if x.sum() > 0:                      # LINE-bool
                return x
        if self.what == "item":
            return x * x.max().item()            # LINE-item
        if self.what == "numpy":
            return et.tensor(x.numpy() * 2)      # LINE-numpy
        if self.what == "len":
            return x * len(x)                    # LINE-len
        if self.what == "unregistered":
            return et.cumsum(x, 0)               # LINE-unregistered
        if self.what == "mask":
            return x[x > 0]                      # LINE-mask
        return x


def _line(tag):
    import inspect
    src, start = inspect.getsourcelines(_Branchy.forward)
    for i, s in enumerate(src):
        if f"LINE-{tag}" in s:
            return start + i
    raise AssertionError(tag)


@pytest.mark.parametrize("what,needle", [("bool", "bool()"), ("item", "item()"), ("numpy", "numpy()"),
                                          ("len", "len() of a dynamic dim"), ("unregistered", "cumsum"),
                                          ("mask", "boolean mask")])
def test_export_errors_name_the_line(what, needle):
    with pytest.raises(ExportError) as e:
        et.export(_Branchy(what), (et.randn(4, 3),), dynamic_shapes={"x": {0: Dim("n", max=16)}})
    msg = str(e.value)
    assert needle in msg and f"test_capture.py:{_line(what)}" in msg, msg


def test_bad_dynamic_specs_are_clear():
    m = MLP((4, 3))
    with pytest.raises(ExportError, match="not an argument"):
        et.export(m, (et.randn(2, 4),), dynamic_shapes={"y": {0: Dim("b")}})
    with pytest.raises(ExportError, match="example has size 1"):
        et.export(m, (et.randn(1, 4),), dynamic_shapes={"x": {0: Dim("b")}})
    with pytest.raises(ExportError, match="outside"):
        et.export(m, (et.randn(9, 4),), dynamic_shapes={"x": {0: Dim("b", max=8)}})
    with pytest.raises(et.EdgeTorchError, match="min <= max"):
        Dim("b", min=5, max=2)


def test_verification_catches_a_size_used_as_a_constant():
    class Specializes(nn.Module):
        def forward(self, x):
            return x.reshape(int(x.shape[0]), -1) * 2

    with pytest.raises(ExportError, match="dynamic sizes"):
        et.export(Specializes(), (et.randn(4, 5),), dynamic_shapes={"x": {0: Dim("b", max=16)}})


def test_writing_a_parameter_in_place_is_refused():
    class W(nn.Module):
        def __init__(self):
            super().__init__()
            self.w = nn.Parameter(et.ones(3))

        def forward(self, x):
            self.w.requires_grad_(False)
            self.w.add_(x)
            return self.w * 1

    with pytest.raises(ExportError, match="writes parameter 'w'"):
        et.export(W(), (et.ones(3),))
