"""Acceptance: the digits CNN (committed checkpoint, tools/train_digits_cnn.py)
quantized keeps its test accuracy: int8-static within 0.5 points of float32,
int8-weight and int8-dynamic within 0.3 points (359 test images: one image is
0.28 points)."""
import os
import sys

import pytest

import edgetorch as et
from edgetorch.exporter import Dim
from edgetorch.models import SmallCNN
from edgetorch.runtime import load

pytest.importorskip("sklearn")
HERE = os.path.dirname(__file__)
sys.path.insert(0, os.path.join(HERE, "..", "..", "examples"))
from digits_demo import load_digits, quantization_table, quantize_programs  # noqa: E402


@pytest.fixture(scope="module")
def program(tmp_path_factory):
    m = SmallCNN(in_channels=1, num_classes=10, width=16).eval()
    m.load_state_dict(et.load(os.path.join(HERE, "..", "data", "digits_cnn.safetensors")))
    _, _, xte, _ = load_digits()
    path = str(tmp_path_factory.mktemp("digits") / "digits.etp")
    et.export(m, (et.from_numpy(xte[:4]),), dynamic_shapes={"x": {0: Dim("batch", max=512)}}).save(path)
    return path


def test_quantized_accuracy_within_the_budget(program):
    _, _, xte, yte = load_digits()
    base = float((load(program)(xte).argmax(1) == yte).mean()) * 100
    assert base > 97
    budget = {"int8-static": 0.5, "int8-weight": 0.3, "int8-dynamic": 0.3}
    for preset, data in quantize_programs(program, tuple(budget)).items():
        acc = float((load(data)(xte).argmax(1) == yte).mean()) * 100
        assert acc >= base - budget[preset], (preset, acc, base)
        assert len(data) < 0.6 * os.path.getsize(program), preset


def test_demo_table(program):
    t = quantization_table(program)
    assert "int8-static" in t and "float32" in t and "%" in t
