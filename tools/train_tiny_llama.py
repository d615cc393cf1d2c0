"""Train the small Llama-style checkpoint the quantization accuracy tests use.

    python tools/train_tiny_llama.py [--steps 1500] [--out tests/data/tiny_llama_pydoc.safetensors]

Byte-level tokens (vocab 256) over Python's own pydoc_data.topics (the text of
the language reference that ships with CPython: nothing is downloaded).  The
topics are sorted by name; the first 90% of the bytes train, the last 10% are
held out.  Trained with edgetorch itself (AdamW, cosine schedule); weights are
stored as float16 to keep the file small (the float32 model the tests use is
these weights widened, so float32 vs quantized comparisons are exact about
what they compare).  Run once; the result is committed.
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np

import edgetorch as et
from edgetorch.models import Decoder, DecoderConfig

CONFIG = dict(vocab_size=256, hidden_size=128, intermediate_size=320, num_hidden_layers=3, num_attention_heads=4,
              num_key_value_heads=2, max_position_embeddings=128, tie_word_embeddings=True)


def corpus():
    from pydoc_data import topics
    text = "\n".join(topics.topics[k] for k in sorted(topics.topics)).encode("utf-8")
    data = np.frombuffer(text, np.uint8).astype(np.int64)
    cut = int(len(data) * 0.9)
    return data[:cut], data[cut:]


def model():
    return Decoder(DecoderConfig(**CONFIG))


def load(path):
    m = model().eval()
    sd = et.load(path)
    m.load_state_dict({k: v.to("float32") for k, v in sd.items()}, strict=False)
    return m


def export_forward(m, seq=128, batch=8):
    """A float program of the checkpoint's full-sequence forward (logits for every position)."""
    return et.export(m, (et.randint(0, 256, (batch, seq)),), verify=False)


def perplexity(prog, held, seq=128, windows=64, batch=8):
    """exp(mean next-byte NLL) of a program over `windows` consecutive held-out windows."""
    nll, n = 0.0, 0
    chunks = np.stack([held[i * seq:(i + 1) * seq + 1] for i in range(windows)])
    for i in range(0, windows, batch):
        c = chunks[i:i + batch]
        logits = prog(c[:, :-1]).astype(np.float64)
        logits -= logits.max(-1, keepdims=True)
        logp = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
        nll -= np.take_along_axis(logp, c[:, 1:, None], -1).sum()
        n += c[:, 1:].size
    return float(np.exp(nll / n))


def main(argv=None):
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--out", default="tests/data/tiny_llama_pydoc.safetensors")
    a = ap.parse_args(argv)
    train, held = corpus()
    et.manual_seed(0)
    rng = np.random.default_rng(0)
    m = model()
    opt = et.optim.AdamW(m.parameters(), lr=a.lr, weight_decay=0.01)
    sched = et.optim.lr_scheduler.LambdaLR(
        opt, lambda s: min(1.0, (s + 1) / 100) * 0.5 * (1 + math.cos(math.pi * min(s, a.steps) / a.steps)))
    t0 = time.time()
    for step in range(a.steps):
        starts = rng.integers(0, len(train) - a.seq - 1, size=a.batch)
        chunk = np.stack([train[s:s + a.seq + 1] for s in starts])
        logits = m(et.tensor(chunk[:, :-1]))
        loss = et.nn.functional.cross_entropy(logits.reshape(-1, 256), et.tensor(chunk[:, 1:].reshape(-1)))
        opt.zero_grad()
        loss.backward()
        et.nn.utils.clip_grad_norm_(m.parameters(), 1.0)
        opt.step()
        sched.step()
        if step % 100 == 0 or step == a.steps - 1:
            print(f"step {step:5d}  loss {loss.item():.3f}  {time.time() - t0:.0f} s", flush=True)
    sd = {k: v.detach().to("float16") for k, v in m.state_dict().items() if k != "lm_head.weight"}
    et.save(sd, a.out)
    print("wrote", a.out)


if __name__ == "__main__":
    main()
