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
import statistics
import time

import numpy as np


def _median_time(fn, iters, repeats):
    fn()
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        out.append((time.perf_counter() - t0) / iters)
    return statistics.median(out)


def chain_et(et, grad):
    x = et.randn(16, requires_grad=grad)

    def f():
        y = x
        for _ in range(2):
            y = ((y + 1.0) * 0.5).relu() - 0.25
            y = y.tanh()
        y = y.sum()
        if grad:
            y.backward()
    return f


def chain_torch(torch, grad):
    x = torch.randn(16, requires_grad=grad)

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
    tnn = torch.nn
    if which == "mlp":
        m = tnn.Sequential(tnn.Linear(784, 512), tnn.ReLU(), tnn.Linear(512, 512), tnn.ReLU(), tnn.Linear(512, 10))
        x = torch.randn(64, 784)
    else:
        class Block(tnn.Module):
            def __init__(self, cin, cout, stride):
                super().__init__()
                self.c1 = tnn.Conv2d(cin, cout, 3, stride, 1, bias=False)
                self.b1 = tnn.BatchNorm2d(cout)
                self.c2 = tnn.Conv2d(cout, cout, 3, 1, 1, bias=False)
                self.b2 = tnn.BatchNorm2d(cout)
                self.sc = tnn.Identity() if stride == 1 and cin == cout else tnn.Sequential(
                    tnn.Conv2d(cin, cout, 1, stride, bias=False), tnn.BatchNorm2d(cout))

            def forward(self, x):
                return torch.relu(self.b2(self.c2(torch.relu(self.b1(self.c1(x))))) + self.sc(x))
        m = tnn.Sequential(tnn.Conv2d(3, 16, 3, 1, 1, bias=False), tnn.BatchNorm2d(16), tnn.ReLU(),
                           Block(16, 16, 1), Block(16, 32, 2), Block(32, 64, 2),
                           tnn.AdaptiveAvgPool2d(1), tnn.Flatten(), tnn.Linear(64, 10))
        x = torch.randn(64, 3, 32, 32)
    y = torch.randint(0, 10, (64,))
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)

    def f():
        opt.zero_grad()
        torch.nn.functional.cross_entropy(m(x), y).backward()
        opt.step()
    return f


def load_avg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")


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
        te = _median_time(chain_et(et, grad), 2000, a.repeats) / n_ops * 1e6
        tt = _median_time(chain_torch(torch, grad), 2000, a.repeats) / n_ops * 1e6
        label = "per-op overhead, forward + backward" if grad else "per-op overhead, no grad"
        rows.append((label, f"{te:.2f} us", f"{tt:.2f} us", te / tt))
    for which, iters in (("mlp", 20), ("resnet", 3)):
        fe, model = train_step_et(et, which)
        te = _median_time(fe, iters, a.repeats) * 1e3
        tt = _median_time(train_step_torch(torch, which, model), iters, a.repeats) * 1e3
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
