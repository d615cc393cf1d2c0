import os

import numpy as np
import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def torch_or_skip():
    return pytest.importorskip("torch", reason="the oracle extra (torch) is not installed")
