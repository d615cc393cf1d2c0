"""ExecuTorch (XNNPACK delegate, fp32) on the benchmark models, for bench/runtime_bench.py.

    python bench/executorch_peer.py mlp:1    # prints JSON: [median seconds, max |diff| vs torch]

One case per process: an ExecuTorch failure can abort the interpreter.

Needs `pip install executorch==1.5.1` (it installs beside torch 2.13.0); the
runtime benchmark calls this in a child process and reports "not installed"
when the import fails. Weights: the same seeded edgetorch models, copied
into the PyTorch twins of bench/peers.py, exported with torch.export and
lowered with XnnpackPartitioner.
"""
from __future__ import annotations

import json
import os
import sys
import warnings

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _timing import timeit  # noqa: E402


def lower(torch_model, args):
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower
    from executorch.runtime import Runtime
    ep = torch.export.export(torch_model, tuple(args))
    prog = to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()]).to_executorch()
    return Runtime.get().load_program(prog.buffer).load_method("forward")


def main(case, repeats=7):
    warnings.simplefilter("ignore")
    import numpy as np
    import torch
    torch.set_num_threads(2)
    import peers
    from runtime_bench import _inputs, models
    want_kind, want_batch = case.split(":")
    for name, model, kind, cases, _ in models(False):
        if kind != want_kind:
            continue
        tm = {"mlp": peers.torch_mlp, "resnet": peers.torch_resnet, "bert": peers.torch_bert}[kind](model)
        for _, shape in cases:
            if shape[0] != int(want_batch):
                continue
            xs = [torch.tensor(a) for a in _inputs(kind, shape)]
            method = lower(tm, xs)
            res = method.execute(xs)
            with torch.no_grad():
                err = float(np.abs(res[0].numpy() - tm(*xs).numpy()).max())
            print(json.dumps([timeit(lambda: method.execute(xs), repeats), err]))
            return


def run_case(case, timeout=900):
    """Median seconds per call, or a string saying why there is none."""
    import subprocess
    r = subprocess.run([sys.executable, os.path.abspath(__file__), case], capture_output=True, text=True,
                       timeout=timeout)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("[")]
    if not lines:      # (ExecuTorch may also abort at interpreter exit, after printing)
        # torchao's optional CUDA extensions log "Failed to load ..." on every import: not the failure
        err = [ln for ln in (r.stderr or "").splitlines()
               if ("No module named" in ln or "fail" in ln.lower() or "Error" in ln) and "cpuinfo" not in ln
               and "torchao" not in ln]
        if any("No module named" in ln for ln in err):
            return "not installed"
        if r.returncode < 0 or r.returncode > 128:
            sig = -r.returncode if r.returncode < 0 else r.returncode - 128
            return f"crashed (signal {sig})" + (f": {err[-1].split(']')[-1].strip()[:60]}" if err else "")
        return "failed (" + (err[-1].split("]")[-1].strip()[:70] if err else f"exit {r.returncode}") + ")"
    return json.loads(lines[-1])[0]


if __name__ == "__main__":
    main(sys.argv[1])
