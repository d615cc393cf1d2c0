"""Each pass alone keeps numerics and does what it says."""
import numpy as np

import edgetorch as et
from edgetorch import nn
from edgetorch.exporter import Dim
from edgetorch.exporter.passes import PASSES
from edgetorch.models import ResNet


class Toy(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.fc = nn.Linear(4, 5)
        self.register_buffer("scale", et.full((5,), 2.0))

    def forward(self, x):
        y = self.bn(self.conv(x)).relu()
        y = y.mean(dim=(2, 3))
        a = self.fc(y).relu()
        b = self.fc(y).relu()                      # common subexpression
        (a * 100).sum()                            # dead code
        c = a.reshape(a.shape[0], 5) + b * (self.scale * 0.5)   # no-op view; foldable constant
        return c.to(et.float32)


def _toy():
    et.manual_seed(0)
    m = Toy()
    with et.no_grad():
        m(et.randn(4, 3, 6, 6))   # running stats
    return m.eval()


def _check(names):
    m = _toy()
    x = et.randn(2, 3, 6, 6)
    raw = et.export(m, (x,), optimize=False)
    ep = et.export(m, (x,), optimize=names)
    with et.no_grad():
        want = m(x).numpy()
    np.testing.assert_allclose(ep.module()(x).numpy(), want, atol=1e-5)
    np.testing.assert_allclose(raw.module()(x).numpy(), want, atol=1e-5)
    return raw, ep


def _ops(ep):
    return [n.op for n in ep.graph.nodes]


def test_dce_removes_unused_work():
    raw, ep = _check(["dce"])
    assert "sum" not in _ops(ep) and "sum" not in _ops(raw)   # dce always runs
    assert ep.graph.constants


def test_cse_merges_duplicates():
    raw, ep = _check(["cse", "dce"])
    assert _ops(raw).count("linear") == 2 and _ops(ep).count("linear") == 1


def test_constant_folding():
    raw, ep = _check(["fold_constants"])
    assert _ops(raw).count("mul") == 2 and _ops(ep).count("mul") == 1


def test_noop_views_removed():
    raw, ep = _check(["remove_noop_views", "dce"])
    assert "reshape" in _ops(raw) and "reshape" not in _ops(ep) and "to" not in _ops(ep)


def test_conv_bn_folding_and_activation_fusion():
    raw, ep = _check(["fold_conv_bn", "fuse_bias_activation", "dce"])
    assert "batch_norm" in _ops(raw) and "batch_norm" not in _ops(ep)
    assert "fused_conv2d" in _ops(ep) and "fused_linear" in _ops(ep) and "relu" not in _ops(ep)


def test_all_passes_on_resnet_keep_numerics():
    et.manual_seed(0)
    r = ResNet()
    with et.no_grad():
        r(et.randn(4, 3, 32, 32))
    r.eval()
    x = et.randn(2, 3, 32, 32)
    ep = et.export(r, (x,))
    with et.no_grad():
        np.testing.assert_allclose(ep.module()(x).numpy(), r(x).numpy(), atol=1e-5)
    assert set(PASSES) >= {"dce", "cse", "fold_constants", "fold_conv_bn", "fuse_bias_activation",
                           "remove_noop_views"}


def test_parallel_linears_are_fused():
    class QKV(nn.Module):
        def __init__(self):
            super().__init__()
            self.q, self.k, self.v = nn.Linear(8, 8, bias=False), nn.Linear(8, 4, bias=False), nn.Linear(8, 4, bias=False)
            self.o = nn.Linear(8, 3)
            self.p = nn.Linear(8, 3)

        def forward(self, x):
            return self.q(x).sum(-1, keepdim=True) * self.k(x)[..., :1] + self.v(x)[..., :1] + self.o(x) + self.p(x)

    et.manual_seed(0)
    m = QKV().eval()
    x = et.randn(2, 5, 8)
    ep = et.export(m, (x,), optimize=["fuse_parallel_linears", "dce"])
    ops = _ops(ep)
    assert ops.count("linear") == 2        # q/k/v (no bias) and o/p (bias) groups
    with et.no_grad():
        np.testing.assert_allclose(ep.module()(x).numpy(), m(x).numpy(), atol=1e-5)
    from edgetorch.runtime import load
    np.testing.assert_allclose(load(ep.to_bytes())(x.numpy()), m(x).detach().numpy(), atol=1e-5)


def test_swiglu_fusion_keeps_numerics_and_skips_broadcasts():
    class Gated(nn.Module):
        def __init__(self):
            super().__init__()
            self.g, self.u, self.d = nn.Linear(8, 12, bias=False), nn.Linear(8, 12, bias=False), nn.Linear(12, 8)

        def forward(self, x, s):
            h = self.d(nn.functional.silu(self.g(x)) * self.u(x))
            return h + nn.functional.silu(x) * s            # s broadcasts: not fused

    et.manual_seed(0)
    m = Gated().eval()
    x, s = et.randn(2, 5, 8), et.randn(1, 5, 8)
    ep = et.export(m, (x, s), dynamic_shapes={"x": {0: Dim("b", max=4)}})
    ops = _ops(ep)
    assert ops.count("swiglu") == 1 and ops.count("silu") == 1
    with et.no_grad():
        want = m(x, s).numpy()
    np.testing.assert_allclose(ep.module()(x, s).numpy(), want, atol=1e-5)
    from edgetorch.runtime import load
    np.testing.assert_allclose(load(ep.to_bytes())(x.numpy(), s.numpy()), want, atol=1e-5)


class UnitAxes(nn.Module):
    """A decode step's head split: (B, 1, H*D) -> (B, 1, H, D) -> (B, H, 1, D), and a real
    transpose that must stay a permute."""

    def forward(self, x):
        q = x.reshape(x.shape[0], 1, 3, 4).permute(0, 2, 1, 3)      # moves the size-1 axis only
        k = x.reshape(x.shape[0], 3, 4).permute(0, 2, 1)             # swaps 3 and 4
        return q.reshape(x.shape[0], 12) * 2.0, k + 1.0


def test_unit_axis_permutes_become_one_reshape():
    m = UnitAxes()
    x = et.randn(2, 1, 12)
    ep = et.export(m, (x,), dynamic_shapes={"x": {0: Dim("b", max=8)}}, optimize=["remove_noop_views", "dce"])
    raw = et.export(m, (x,), dynamic_shapes={"x": {0: Dim("b", max=8)}}, optimize=False)
    assert _ops(raw).count("permute") == 2 and _ops(ep).count("permute") == 1
    # the head split is one reshape of x (the reshape of a reshape reads x directly)
    q_path = [n for n in ep.graph.nodes if n.op == "reshape"]
    assert any(n.inputs[0].name == ep.graph.inputs[0].name for n in q_path)
    for b in (1, 5):
        xb = et.randn(b, 1, 12)
        with et.no_grad():
            want = [t.numpy() for t in m(xb)]
        got = ep.module()(xb)
        for g, w in zip(got, want):
            np.testing.assert_allclose(g.numpy(), w, atol=1e-6)
        from edgetorch.runtime import load
        outs = load(ep.to_bytes())(xb.numpy())
        for g, w in zip(outs, want):
            np.testing.assert_allclose(g, w, atol=1e-6)


def test_encoder_layers_fuse_packed_attention_and_add_layer_norm():
    """A BERT layer exports as linear (q|k|v) -> packed_attention -> linear -> add_layer_norm ...:
    no slices, no permutes, no separate residual adds; numerics kept, through the runtime too, at
    the dynamic batch and sequence extremes and with padding."""
    from edgetorch.models import Encoder, EncoderConfig
    from edgetorch.runtime import load
    et.manual_seed(0)
    cfg = EncoderConfig(vocab_size=50, hidden_size=24, num_hidden_layers=2, num_attention_heads=3,
                        intermediate_size=40, max_position_embeddings=40)
    m = Encoder(cfg).eval()
    b, s = Dim("batch", max=4), Dim("seq", max=33)
    ep = et.export(m, (et.randint(1, 50, (2, 7)), et.ones(2, 7, dtype="int64")),
                   dynamic_shapes={"input_ids": {0: b, 1: s}, "attention_mask": {0: b, 1: s}})
    ops = _ops(ep)
    assert ops.count("packed_attention") == 2 and ops.count("add_layer_norm") == 5
    assert not {"permute", "getitem", "scaled_dot_product_attention", "layer_norm"} & set(ops)
    prog = load(ep.to_bytes())
    rng = np.random.default_rng(0)
    for B, T in ((1, 1), (3, 17), (4, 33)):
        ids = rng.integers(1, 50, size=(B, T))
        am = np.ones((B, T), np.int64)
        am[-1, T // 2 + 1:] = 0
        with et.no_grad():
            want = m(et.tensor(ids), et.tensor(am)).numpy()
        np.testing.assert_allclose(ep.module()(et.tensor(ids), et.tensor(am)).numpy(), want, atol=1e-5)
        np.testing.assert_allclose(prog(ids, am), want, atol=1e-4)


def test_packed_attention_fusion_skips_other_layouts():
    """Only heads cut from one projection in q | k | v order, permuted (0, 2, 1, 3) and permuted
    back, fuse; k/v in another order, or an attention output read elsewhere, stay as they were."""
    class Attn(nn.Module):
        def __init__(self, order, keep):
            super().__init__()
            self.p, self.order, self.keep = nn.Linear(8, 24), order, keep

        def forward(self, x):
            b, t, _ = x.shape
            parts = self.p(x).split(8, dim=-1)
            q, k, v = (parts[i].reshape(b, t, 2, 4).transpose(1, 2) for i in self.order)
            o = nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True)
            y = o.transpose(1, 2).reshape(b, t, 8)
            return (y, o) if self.keep else y

    x = et.randn(2, 5, 8)
    for order, keep, fused in (((0, 1, 2), False, True), ((0, 2, 1), False, False), ((0, 1, 2), True, False)):
        et.manual_seed(0)
        m = Attn(order, keep).eval()
        ep = et.export(m, (x,))
        assert (_ops(ep).count("packed_attention") == 1) == fused, (order, keep)
        with et.no_grad():
            want = m(x)
        got = ep.module()(x)
        for g_, w_ in zip(got if keep else (got,), want if keep else (want,)):
            np.testing.assert_allclose(g_.numpy(), w_.numpy(), atol=1e-5)


def test_add_layer_norm_fusion_needs_the_sum_alone_and_same_shapes():
    class Post(nn.Module):
        def __init__(self):
            super().__init__()
            self.ln, self.ln2 = nn.LayerNorm(6), nn.LayerNorm(6)

        def forward(self, x, r, c):
            a = self.ln(x + r)                # fused
            s = x + c                         # c broadcasts: not fused
            t = x + r * 2
            return a, self.ln2(s), self.ln(t) + t      # the sum read twice: not fused

    et.manual_seed(0)
    m = Post().eval()
    x, r, c = et.randn(3, 6), et.randn(3, 6), et.randn(6)
    ep = et.export(m, (x, r, c))
    ops = _ops(ep)
    assert ops.count("add_layer_norm") == 1 and ops.count("layer_norm") == 2
    from edgetorch.runtime import load
    got = load(ep.to_bytes())(x.numpy(), r.numpy(), c.numpy())
    with et.no_grad():
        for g_, w_ in zip(got, m(x, r, c)):
            np.testing.assert_allclose(g_, w_.numpy(), atol=1e-5)


def test_add_relu_fusion_keeps_numerics_and_skips_broadcasts():
    class Res(nn.Module):
        def __init__(self):
            super().__init__()
            self.c = nn.Conv2d(3, 3, 3, padding=1)

        def forward(self, x, r, s):
            y = (self.c(x) + x).relu()            # fused
            z = (y + s).relu()                    # s broadcasts: not fused
            t = y + r
            return z, t.relu() + t                # the sum read twice: not fused

    et.manual_seed(0)
    m = Res().eval()
    x, r, s = et.randn(2, 3, 8, 8), et.randn(2, 3, 8, 8), et.randn(3, 1, 1)
    ep = et.export(m, (x, r, s))
    ops = _ops(ep)
    assert ops.count("add_relu") == 1 and ops.count("relu") == 2
    from edgetorch.runtime import load
    got = load(ep.to_bytes())(x.numpy(), r.numpy(), s.numpy())
    with et.no_grad():
        for g_, w_ in zip(got, m(x, r, s)):
            np.testing.assert_allclose(g_, w_.numpy(), atol=1e-5)


def test_float16_kv_cache_writes_cast_as_they_store():
    """fold_cast_into_index_put: a float16 KV cache's writes take the float32 keys and values
    directly (the frontend's cast before each write is gone: two calls a layer a step), and the
    programs with and without the pass give bit-identical logits and cache contents."""
    from dataclasses import replace

    from edgetorch.models import Decoder
    from edgetorch.runtime import load

    from .test_capture import small_llama
    et.manual_seed(0)
    m = Decoder(replace(small_llama(), kv_cache_dtype="float16")).eval()
    seq = Dim("seq", min=1, max=m.config.max_position_embeddings)
    methods = {"prefill": (m, (et.randint(0, 128, (1, 4)), et.tensor([0])), {"input_ids": {1: seq}}),
               "decode": (m, (et.randint(0, 128, (1, 1)), et.tensor([4])))}
    fused = et.export_methods(m, methods)
    plain = et.export_methods(m, methods, optimize=[p for p in PASSES if p != "fold_cast_into_index_put"])
    for ep, casts in ((fused, 0), (plain, 2 * m.config.num_hidden_layers)):
        for method in ("prefill", "decode"):
            g = ep.graphs[method]
            by_out = {n.output: n for n in g.nodes}
            puts = [n for n in g.nodes if n.op == "index_put"]
            assert len(puts) == 2 * m.config.num_hidden_layers
            assert sum(by_out.get(n.inputs[1]) is not None and by_out[n.inputs[1]].op == "to" for n in puts) == casts
            assert all(str(n.inputs[1].dtype) == ("float32" if casts == 0 else "float16") for n in puts)
    ids = np.random.default_rng(0).integers(0, 128, size=(1, 10))
    a, b = load(fused.to_bytes()), load(plain.to_bytes())
    outs = [(p.prefill(ids[:, :4], np.array([0])), [p.decode(ids[:, i:i + 1], np.array([i])) for i in range(4, 10)])
            for p in (a, b)]
    np.testing.assert_array_equal(outs[0][0], outs[1][0])
    np.testing.assert_array_equal(np.concatenate(outs[0][1]), np.concatenate(outs[1][1]))
    for k in a.state:
        np.testing.assert_array_equal(a.state[k], b.state[k])
