"""Train the digits CNN checkpoint the quantization accuracy tests use (the
README demo's model and recipe, examples/digits_demo.py).

    python tools/train_digits_cnn.py [--out tests/data/digits_cnn.safetensors]
"""
import argparse
import os
import sys

import edgetorch as et

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "examples"))
from digits_demo import train  # noqa: E402

ap = argparse.ArgumentParser()
ap.add_argument("--out", default="tests/data/digits_cnn.safetensors")
a = ap.parse_args()
model, acc, secs, _ = train(progress=False)
et.save(model.state_dict(), a.out, metadata={"model": "SmallCNN", "dataset": "sklearn digits",
                                             "test_accuracy": f"{acc:.4f}"})
print(f"test accuracy {acc * 100:.2f} % after {secs:.1f} s; wrote {a.out}")
