"""The README's main job: train a small CNN on scikit-learn's digits in eager
mode, export it to a self-contained program, and inspect the program.

    make demo        (or: python examples/digits_demo.py)

1. trains edgetorch.models.SmallCNN on the 8x8 digits that ship with
   scikit-learn (no download), with a progress bar;
2. exports it with a dynamic batch dim to digits.etp (capture, passes:
   conv+batchnorm folding, conv+relu fusion; memory plan) and checks the
   program against eager on the test set;
3. prints `edgetorch inspect digits.etp`;
4. loads digits.etp with the runtime (what a device runs: no model code) and
   reports its test accuracy next to eager's, and the latency per image;
5. quantizes the program (int8-static, calibrated on 256 training images,
   plus int8-weight and int8-dynamic) and prints size, accuracy and latency
   of each next to float32.
"""
from __future__ import annotations

import argparse
import time

import numpy as np
from tqdm import tqdm

import edgetorch as et
from edgetorch.models import SmallCNN
from edgetorch.nn import functional as F
from edgetorch.utils.data import DataLoader, TensorDataset


def load_digits(seed=0, test_fraction=0.2):
    """(x_train, y_train, x_test, y_test): images (N, 1, 8, 8) in [0, 1]."""
    try:
        from sklearn.datasets import load_digits as _load
    except ImportError:
        raise SystemExit("the demo needs scikit-learn: pip install 'edgetorch[examples]'") from None
    d = _load()
    x = (d.images.astype(np.float32) / 16.0)[:, None]      # (N, 1, 8, 8)
    y = d.target.astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(x))
    n_test = int(len(x) * test_fraction)
    te, tr = order[:n_test], order[n_test:]
    return x[tr], y[tr], x[te], y[te]


def accuracy(model, x, y, batch=512):
    model.eval()
    correct = 0
    with et.no_grad():
        for i in range(0, len(x), batch):
            correct += int((model(et.from_numpy(x[i:i + batch])).argmax(1).numpy() == y[i:i + batch]).sum())
    return correct / len(x)


def train(epochs=12, batch_size=64, lr=3e-3, seed=0, progress=True):
    et.manual_seed(seed)
    xtr, ytr, xte, yte = load_digits(seed)
    model = SmallCNN(in_channels=1, num_classes=10, width=16)
    opt = et.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps = epochs * -(-len(xtr) // batch_size)
    sched = et.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=steps)
    loader = DataLoader(TensorDataset(et.from_numpy(xtr), et.from_numpy(ytr)), batch_size=batch_size,
                        shuffle=True, generator=et.Generator(seed))
    t0 = time.perf_counter()
    bar = tqdm(total=steps, desc="training", unit="step", disable=not progress)
    for epoch in range(epochs):
        model.train()
        for xb, yb in loader:
            loss = F.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
            bar.set_postfix(epoch=epoch + 1, loss=f"{loss.item():.3f}")
            bar.update()
    bar.close()
    secs = time.perf_counter() - t0
    return model, accuracy(model, xte, yte), secs, (xte, yte)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--out", default="digits.safetensors", help="where to save the trained weights")
    p.add_argument("--program", default="digits.etp", help="where to write the exported program")
    p.add_argument("--no-progress", action="store_true")
    a = p.parse_args(argv)
    print(f"edgetorch {et.__version__}: training SmallCNN on scikit-learn digits (eager mode)")
    model, acc, secs, _ = train(epochs=a.epochs, progress=not a.no_progress)
    n_params = sum(p.numel() for p in model.parameters())
    print(f"  parameters      {n_params:,}")
    print(f"  training time   {secs:.1f} s")
    print(f"  test accuracy   {acc * 100:.2f} %")
    et.save(model.state_dict(), a.out, metadata={"model": "SmallCNN", "dataset": "sklearn digits"})
    print(f"  weights saved   {a.out}")
    if acc < 0.97:
        raise SystemExit(f"accuracy {acc:.4f} is below the 97% target")
    export_and_inspect(model, a.program)
    print()
    print(quantization_table(a.program, progress=not a.no_progress))
    return 0


def export_and_inspect(model, path):
    from edgetorch.cli import main as cli
    from edgetorch.exporter import Dim
    from edgetorch.exporter.reference import ReferenceProgram
    from edgetorch.schemas.reader import read
    _, _, xte, yte = load_digits()
    model.eval()
    t0 = time.perf_counter()
    ep = et.export(model, (et.from_numpy(xte[:4]),), dynamic_shapes={"x": {0: Dim("batch", max=512)}},
                   metadata={"model": "SmallCNN", "labels": ",".join(str(i) for i in range(10)),
                             "input": "8x8 grey digit scaled to [0, 1]"})
    n = ep.save(path)
    secs = time.perf_counter() - t0
    ref = ReferenceProgram(read(path))
    logits = ref.run("forward", xte)[0]
    with et.no_grad():
        eager = model(et.from_numpy(xte)).numpy()
    agree = float((logits.argmax(1) == eager.argmax(1)).mean())
    acc = float((logits.argmax(1) == yte).mean())
    print(f"\nexported {path}: {n:,} bytes in {secs:.2f} s; program accuracy {acc * 100:.2f} % "
          f"(agrees with eager on {agree * 100:.1f} % of test images, max |diff| "
          f"{np.abs(logits - eager).max():.1e})\n")
    print(f"$ edgetorch inspect {path}")
    cli(["inspect", path])
    run_on_device(path, xte, yte, eager)


def run_on_device(path, xte, yte, eager):
    """The runtime alone: load the program, classify the test set, time it."""
    from edgetorch.runtime import load
    t0 = time.perf_counter()
    prog = load(path)
    t_load = time.perf_counter() - t0
    logits = prog(xte)
    acc = float((logits.argmax(1) == yte).mean())
    eager_acc = float((eager.argmax(1) == yte).mean())
    for _ in range(20):
        prog(xte[:1])
    n = 200
    t0 = time.perf_counter()
    for i in range(n):
        prog(xte[i % len(xte)][None])
    one = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for _ in range(5):
        prog(xte)
    batched = (time.perf_counter() - t0) / 5 / len(xte)
    print(f"\nruntime: loaded {path} in {t_load * 1e3:.1f} ms; test accuracy {acc * 100:.2f} % "
          f"(eager {eager_acc * 100:.2f} %)")
    print(f"  latency per image: {one * 1e6:.0f} us one at a time, {batched * 1e6:.1f} us in a batch of {len(xte)}")


def _latency(prog, x, n=200):
    for i in range(20):
        prog(x[i % len(x)][None])
    ts = []
    for _ in range(3):
        t0 = time.perf_counter()
        for i in range(n):
            prog(x[i % len(x)][None])
        ts.append((time.perf_counter() - t0) / n)
    return float(np.median(ts))


def quantize_programs(path, presets=("int8-static", "int8-weight", "int8-dynamic"), progress=False, observer="mse"):
    """{preset: .etp bytes}: the float program at `path` quantized (calibrated on training images)."""
    from edgetorch.exporter import QuantConfig, quantize, read
    from edgetorch.exporter.program import from_info
    xtr, _, _, _ = load_digits()
    ep = from_info(read(path))
    cal = [(xtr[i:i + 64],) for i in range(0, 256, 64)]
    return {p: quantize(ep, QuantConfig(p, observer=observer), calibration=cal, progress=progress).to_bytes()
            for p in presets}


def quantization_table(path, progress=False):
    """Size, test accuracy and one-image latency of the float program and its quantized versions."""
    from edgetorch.runtime import load
    _, _, xte, yte = load_digits()
    rows = [("float32", open(path, "rb").read())] + list(quantize_programs(path, progress=progress).items())
    lines = [f"{'program':<14} {'bytes':>8} {'accuracy':>9} {'latency':>9}"]
    for name, data in rows:
        prog = load(data)
        acc = float((prog(xte).argmax(1) == yte).mean())
        lines.append(f"{name:<14} {len(data):>8,} {acc * 100:>8.2f}% {_latency(prog, xte) * 1e6:>7.0f}us")
    return "quantized (runtime, one image at a time):\n" + "\n".join(lines)


if __name__ == "__main__":
    main()
