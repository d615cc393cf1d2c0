"""Write the golden program of this format version under tests/data (run once per version).

    python tools/make_golden.py 1_0

Never regenerate an existing golden file: it is what later versions must keep loading.
"""
import os
import sys

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def main(tag):
    import edgetorch as et
    from edgetorch.exporter import Dim
    from edgetorch.models import MLP
    path = os.path.join(ROOT, "tests", "data", f"golden_mlp_v{tag}.etp")
    if os.path.exists(path):
        raise SystemExit(f"{path} exists; golden files are never regenerated")
    et.manual_seed(1234)
    m = MLP((12, 16, 3)).eval()
    ep = et.export(m, (et.randn(2, 12),), dynamic_shapes={"x": {0: Dim("batch", max=8)}},
                   metadata={"model": "MLP 12-16-3", "purpose": "golden file"})
    ep.save(path)
    x = np.random.default_rng(5).normal(size=(3, 12)).astype(np.float32)
    with et.no_grad():
        y = m(et.tensor(x)).numpy()
    np.savez(path.replace(".etp", ".npz"), x=x, y=y)
    print(f"wrote {path}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "1_0")
