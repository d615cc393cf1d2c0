"""The runtime's CLI commands, and the Numba cache location."""
import os
import subprocess
import sys

import numpy as np

import edgetorch as et
from edgetorch.exporter import Dim
from edgetorch.models import MLP


def _prog(tmp_path):
    et.manual_seed(0)
    p = tmp_path / "m.etp"
    et.export(MLP((6, 8, 3)).eval(), (et.randn(2, 6),), dynamic_shapes={"x": {0: Dim("b", max=8)}}).save(p)
    return p


def test_run_bench_warmup_commands(tmp_path, capsys):
    from edgetorch.cli import main
    p = _prog(tmp_path)
    np.save(tmp_path / "x.npy", np.ones((3, 6), np.float32))
    assert main(["run", str(p), "--input", str(tmp_path / "x.npy"), "--out", str(tmp_path / "y.npy")]) == 0
    assert np.load(tmp_path / "y.npy").shape == (3, 3)
    assert main(["run", str(p), "--input", f"x={tmp_path / 'x.npy'}"]) == 0
    assert main(["bench", str(p), "--iters", "5", "--warmup", "1", "--size", "max"]) == 0
    out = capsys.readouterr().out
    assert "p50" in out and "p99" in out and "numba_threading_layer" in out and "x[8, 6]" in out
    assert main(["warmup", str(p)]) == 0
    np.save(tmp_path / "bad.npy", np.ones((3, 7), np.float32))
    assert main(["run", str(p), "--input", str(tmp_path / "bad.npy")]) == 2
    assert "dim 1: expected 6, got 7" in capsys.readouterr().err


def test_numba_cache_dir_is_honoured(tmp_path):
    """Kernels compile into NUMBA_CACHE_DIR (the place for read-only installs)."""
    p = _prog(tmp_path)
    cache = tmp_path / "cache"
    code = ("import numpy as np; from edgetorch.runtime import load; "
            f"p = load({str(p)!r}); p.warmup(); "
            "from edgetorch.runtime.kernels import nn; x = np.ones((3, 5), np.float32); o = np.empty_like(x); "
            "nn.k_softmax(o, x, dim=-1)")
    env = dict(os.environ, NUMBA_CACHE_DIR=str(cache))
    r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    files = [f for _, _, fs in os.walk(cache) for f in fs]
    assert any(f.endswith(".nbi") for f in files) and any(f.endswith(".nbc") for f in files)
