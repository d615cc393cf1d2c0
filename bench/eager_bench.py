"""Eager frontend vs PyTorch eager, side by side in one process.

    python bench/eager_bench.py [--repeats 7]

Measures (median over repeats, each repeat timing many iterations):
  * per-op overhead: a chain of 10 small elementwise ops on a (16,) tensor,
    without and with autograd recording (then backward);
  * one training step (forward, backward, AdamW step) of the MLP
    784-512-512-10 and of ResNet-8 on 3x32x32, batch 64.
Prints a markdown table with edgetorch / PyTorch ratios (lower is better)
and the machine load while it ran.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _timing import load_avg, timeit  # noqa: E402


def chain(lib, grad):
    """10 small elementwise ops and a sum, written once for edgetorch and torch alike."""
    x = lib.randn(16, requires_grad=grad)

    def f():
        y = x
        for _ in range(2):
            y = ((y + 1.0) * 0.5).relu() - 0.25
            y = y.tanh()
        y = y.sum()
        if grad:
            y.backward()
    return f


def train_step_et(et, which):
    from edgetorch.models import MLP, ResNet
    from edgetorch.nn import functional as F
    m = MLP((784, 512, 512, 10)) if which == "mlp" else ResNet()
    x = et.randn(64, 784) if which == "mlp" else et.randn(64, 3, 32, 32)
    y = et.randint(0, 10, (64,))
    opt = et.optim.AdamW(m.parameters(), lr=1e-3)

    def f():
        opt.zero_grad()
        F.cross_entropy(m(x), y).backward()
        opt.step()
    return f, m


def train_step_torch(torch, which, et_model):
    import peers
    m = peers.torch_mlp(et_model) if which == "mlp" else peers.torch_resnet(et_model)
    m.train()
    x = torch.randn(64, 784) if which == "mlp" else torch.randn(64, 3, 32, 32)
    y = torch.randint(0, 10, (64,))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)

    def f():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    return f


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=7)
    a = p.parse_args(argv)
    import torch

    import edgetorch as et
    torch.set_num_threads(2)
    rows = []
    load0 = load_avg()
    n_ops = 10 + 1  # 2 x (add, mul, relu, sub, tanh) + sum
    for grad in (False, True):
        te = timeit(chain(et, grad), a.repeats) / n_ops * 1e6
        tt = timeit(chain(torch, grad), a.repeats) / n_ops * 1e6
        label = "per-op overhead, forward + backward" if grad else "per-op overhead, no grad"
        rows.append((label, f"{te:.2f} us", f"{tt:.2f} us", te / tt))
    for which in ("mlp", "resnet"):
        fe, model = train_step_et(et, which)
        te = timeit(fe, a.repeats) * 1e3
        tt = timeit(train_step_torch(torch, which, model), a.repeats) * 1e3
        name = "MLP 784-512-512-10" if which == "mlp" else "ResNet-8 3x32x32"
        rows.append((f"train step {name}, batch 64", f"{te:.2f} ms", f"{tt:.2f} ms", te / tt))
    load1 = load_avg()
    print(f"edgetorch {et.__version__} vs torch {torch.__version__}, numpy {np.__version__}, "
          f"python {platform.python_version()}, {os.cpu_count()} cpus, 1-min load {load0:.2f} -> {load1:.2f}, "
          f"median of {a.repeats}")
    print()
    print("| benchmark | edgetorch | PyTorch eager | ratio (et/torch) |")
    print("| --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.2f}x |")


if __name__ == "__main__":
    main()
