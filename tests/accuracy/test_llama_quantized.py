"""Acceptance: a small Llama-style model trained with edgetorch on Python's
pydoc_data topics (committed checkpoint, tools/train_tiny_llama.py) keeps its
held-out perplexity when quantized: +0.5% for int8-weight, +2% int8-dynamic,
+5% int4-weight g32, +7% 8da4w (through the runtime)."""
import os
import sys

import pytest

from edgetorch.exporter import quantize
from edgetorch.runtime import load

HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "..", "tools"))
import train_tiny_llama as T  # noqa: E402

CKPT = os.path.join(HERE, "..", "data", "tiny_llama_pydoc.safetensors")
BUDGET = {"int8-weight": 0.005, "int8-dynamic": 0.02, "int4-weight": 0.05, "8da4w": 0.07}


@pytest.fixture(scope="module")
def float_program():
    if not os.path.exists(CKPT):
        pytest.skip("tests/data/tiny_llama_pydoc.safetensors missing (python tools/train_tiny_llama.py)")
    ep = T.export_forward(T.load(CKPT))
    _, held = T.corpus()
    return ep, held, T.perplexity(load(ep.to_bytes()), held)


def test_float_model_learned_the_text(float_program):
    _, _, ppl = float_program
    assert ppl < 6.0          # bytes: uniform is 256; the trained model is far below


@pytest.mark.parametrize("preset", list(BUDGET))
def test_quantized_perplexity_within_budget(float_program, preset):
    ep, held, base = float_program
    ppl = T.perplexity(load(quantize(ep, preset).to_bytes()), held)
    assert ppl <= base * (1 + BUDGET[preset]), (preset, ppl, base)
