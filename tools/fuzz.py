"""Fuzz the program loader and runtime with mutated .etp files.

    python tools/fuzz.py --count 100000 [--seed 0] [--batch 2000] [--boundscheck]

Seeds are small programs exported from the reference models (and quantized with each kind of kernel). Each mutant
is a seed with bit flips, random or boundary bytes, truncation, inserted
or deleted bytes, or a 4/8-byte field overwritten with a huge, negative or
out-of-file value. Every mutant is loaded and, when load succeeds, every
method runs on inputs at its dims' lower bounds. The only acceptable
outcomes are success, ProgramError and InputError (half the mutants are
loaded without the constant checksum, so damaged weights and index tables
reach verification and the kernels): anything else, a crash
of the interpreter or a hang counts as a failure. Batches run in child
processes with a timeout, so a crash or hang is caught and the batch's
mutants are replayed one by one to name the culprit.
--boundscheck runs the children with NUMBA_BOUNDSCHECK=1, so an
out-of-bounds access in a Numba kernel shows up as an IndexError.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def seeds():
    """A few small programs covering the op families and the container features."""
    import edgetorch as et
    from edgetorch.exporter import Dim
    from edgetorch.models import MLP, Decoder, DecoderConfig, Encoder, EncoderConfig, ResNet, SmallCNN
    et.manual_seed(0)
    out = [et.export(MLP((6, 8, 3)).eval(), (et.randn(2, 6),), dynamic_shapes={"x": {0: Dim("b", max=4)}},
                     metadata={"k": "v"}).to_bytes()]
    out.append(et.export(SmallCNN(width=2).eval(), (et.randn(2, 1, 8, 8),)).to_bytes())
    e = Encoder(EncoderConfig(vocab_size=11, hidden_size=8, num_hidden_layers=1, num_attention_heads=2,
                              intermediate_size=8, max_position_embeddings=6)).eval()
    s = Dim("s", max=6)
    out.append(et.export(e, (et.randint(1, 11, (1, 3)), et.ones(1, 3, dtype="int64")),
                         dynamic_shapes={"input_ids": {1: s}, "attention_mask": {1: s}}).to_bytes())
    d = Decoder(DecoderConfig(vocab_size=13, hidden_size=8, intermediate_size=8, num_hidden_layers=1,
                              num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=6)).eval()
    q = Dim("q", min=1, max=6)
    ld = et.export_methods(d, {"prefill": (d, (et.randint(0, 13, (1, 3)), et.tensor([0])), {"input_ids": {1: q}}),
                               "decode": (d, (et.randint(0, 13, (1, 1)), et.tensor([3])))})
    out.append(ld.to_bytes())
    from edgetorch.exporter import QuantConfig, quantize
    out.append(quantize(ld).to_bytes())         # int8 weights: the Numba int8 kernels
    d4 = Decoder(DecoderConfig(vocab_size=13, hidden_size=32, intermediate_size=32, num_hidden_layers=1,
                               num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=6)).eval()
    l4 = et.export_methods(d4, {"prefill": (d4, (et.randint(0, 13, (1, 3)), et.tensor([0])), {"input_ids": {1: q}}),
                                "decode": (d4, (et.randint(0, 13, (1, 1)), et.tensor([3])))})
    out.append(quantize(l4, QuantConfig("int4-weight", symmetric=False)).to_bytes())   # int4 GEMV, zero points
    out.append(quantize(l4, "8da4w").to_bytes())                                       # int8-activation int4 GEMV
    cnn = et.export(SmallCNN(width=2).eval(), (et.randn(2, 1, 8, 8),), dynamic_shapes={"x": {0: Dim("b", max=4)}})
    out.append(quantize(cnn, "int8-static", calibration=[(et.randn(4, 1, 8, 8),)]).to_bytes())  # int8 GEMM
    mlp = et.export(MLP((6, 8, 3)).eval(), (et.randn(2, 6),), dynamic_shapes={"x": {0: Dim("b", max=8)}})
    out.append(quantize(mlp, "int8-dynamic").to_bytes())
    # inputs run at the dims' lower bounds: these reach the explicit-SIMD kernels (packed-panel GEMM from
    # 17 rows, the fused prefill attention from 9 queries, convolution panels with a full 8-channel block)
    wide = et.export(MLP((6, 16, 3)).eval(), (et.randn(18, 6),), dynamic_shapes={"x": {0: Dim("b", min=17, max=20)}})
    out.append(wide.to_bytes())
    e9 = Encoder(EncoderConfig(vocab_size=11, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                               intermediate_size=16, max_position_embeddings=12)).eval()
    s9 = Dim("s", min=9, max=12)
    out.append(et.export(e9, (et.randint(1, 11, (1, 10)), et.ones(1, 10, dtype="int64")),
                         dynamic_shapes={"input_ids": {1: s9}, "attention_mask": {1: s9}}).to_bytes())
    out.append(et.export(SmallCNN(width=8).eval(), (et.randn(2, 1, 8, 8),)).to_bytes())
    # residual blocks: add_relu, strided convolutions, the one-pass padding
    out.append(et.export(ResNet(num_classes=3, widths=(8, 8, 8), in_channels=1).eval(), (et.randn(2, 1, 8, 8),),
                         dynamic_shapes={"x": {0: Dim("b", max=2)}}).to_bytes())
    # 4 images of 16 x 16: the convolutions read the input in place and pad it inside each task
    out.append(et.export(ResNet(num_classes=3, widths=(4, 4, 4), in_channels=1).eval(),
                         (et.randn(4, 1, 16, 16),)).to_bytes())
    # Winograd F(4x4): on 16-wide rows (the stem) and on 8-wide pieces (stage 2); the 8 x 8 ResNet above
    # runs F(2x2) on 8-wide pieces
    out.append(et.export(ResNet(num_classes=3, widths=(8, 8, 8), in_channels=1).eval(),
                         (et.randn(4, 1, 16, 16),)).to_bytes())
    # batch-1 GEMVs on constant weights: 32-row panels (serial), and the chain of a hidden pair past
    # GEMV_PAR with a head (one parallel region, the head after it)
    out.append(et.export(MLP((6, 32, 32, 3)).eval(), (et.randn(2, 6),),
                         dynamic_shapes={"x": {0: Dim("b", max=4)}}).to_bytes())
    out.append(et.export(MLP((256, 256, 256, 5)).eval(), (et.randn(2, 256),),
                         dynamic_shapes={"x": {0: Dim("b", max=4)}}).to_bytes())
    return out


_BOUNDARY = [0, 1, 0x7F, 0x80, 0xFF, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 2 ** 63 - 1, 2 ** 64 - 1]


def mutate(data: bytes, rng) -> bytes:
    b = bytearray(data)
    kind = rng.integers(0, 7)
    if kind == 0:                                   # bit flips
        for _ in range(rng.integers(1, 9)):
            i = rng.integers(0, len(b))
            b[i] ^= 1 << int(rng.integers(0, 8))
    elif kind == 1:                                 # random bytes
        for _ in range(rng.integers(1, 5)):
            b[rng.integers(0, len(b))] = int(rng.integers(0, 256))
    elif kind == 2:                                 # truncation
        b = b[:rng.integers(0, len(b))]
    elif kind == 3:                                 # insert or delete a run
        i = int(rng.integers(0, len(b)))
        n = int(rng.integers(1, 17))
        b = b[:i] + bytes(rng.integers(0, 256, size=n).astype(np.uint8)) + b[i:] if rng.random() < 0.5 \
            else b[:i] + b[i + n:]
    else:                                           # a 4- or 8-byte field set to a boundary value
        width = 4 if kind < 6 else 8
        i = int(rng.integers(0, max(1, len(b) - width)))
        v = _BOUNDARY[int(rng.integers(0, len(_BOUNDARY)))] if rng.random() < 0.7 else \
            int(rng.integers(0, 2 ** 31)) * (len(b) // 7 + 1)
        b[i:i + width] = (v % (1 << (8 * width))).to_bytes(width, "little")
    return bytes(b)


def run_one(data, check_crc=True):
    """'ok', 'rejected' or the repr of an unexpected exception."""
    from edgetorch.runtime import InputError, ProgramError, load, random_inputs
    try:
        prog = load(data, memory_budget=1 << 28, verify_checksum=check_crc)
        for name in prog.methods:
            m = prog.method(name)
            m(*random_inputs(m, "min"))
            m(*random_inputs(m, "min", seed=1))     # the second call of a size runs the prepared kernels
            m(*random_inputs(m, "min", seed=2))     # and the third the steady path (no binding)
        return "ok"
    except (ProgramError, InputError):
        return "rejected"
    except Exception as e:  # noqa: BLE001  (that is what the fuzzer looks for)
        return f"{type(e).__name__}: {str(e)[:200]}"


class _Slow(Exception):
    """A mutant ran past its time limit."""


def _alarm(signum, frame):
    raise _Slow()


def load_seeds(path):
    if path and os.path.exists(path):
        with np.load(path) as z:
            return [z[k].tobytes() for k in sorted(z.files)]
    return seeds()


def worker(start, count, seed, seed_file=None, per_mutant=10):
    """Run mutants [start, start+count) of campaign `seed`; print one JSON line each for failures.

    A mutant that runs longer than `per_mutant` seconds is reported as hung.
    """
    import signal
    import warnings
    warnings.simplefilter("ignore")
    base = load_seeds(seed_file)
    counts = {"ok": 0, "rejected": 0, "failed": 0}
    # the unmutated programs once, untimed: the kernels they need compile here (into an empty Numba
    # cache that took longer than per_mutant, and the first mutant to reach a kernel looked hung)
    for b in base:
        run_one(b)
    signal.signal(signal.SIGALRM, _alarm)
    for k in range(start, start + count):
        rng = np.random.default_rng([seed, k])
        data = mutate(base[k % len(base)], rng)
        # half the mutants skip the checksum, so damaged constants reach the later checks and the kernels
        signal.alarm(per_mutant)
        try:
            r = run_one(data, check_crc=bool(k % 2))
        except _Slow:
            r = f"hung: more than {per_mutant} s"
        finally:
            signal.alarm(0)
        if r in ("ok", "rejected"):
            counts[r] += 1
        else:
            counts["failed"] += 1
            print(json.dumps({"mutant": k, "error": r}), flush=True)
    print(json.dumps({"counts": counts}), flush=True)


def campaign(count, seed=0, batch=2000, boundscheck=False, timeout=600, log=print):
    import tempfile
    env = dict(os.environ)
    tmp = tempfile.mkdtemp(prefix="etfuzz")
    seed_file = os.path.join(tmp, "seeds.npz")
    np.savez(seed_file, **{f"s{i}": np.frombuffer(b, np.uint8) for i, b in enumerate(seeds())})
    if boundscheck:
        env["NUMBA_BOUNDSCHECK"] = "1"
        env["NUMBA_CACHE_DIR"] = os.path.join(ROOT, ".numba-boundscheck")   # separate compiled kernels
    totals = {"ok": 0, "rejected": 0, "failed": 0, "crashed": 0, "hung": 0}
    failures = []
    t0 = time.time()
    for start in range(0, count, batch):
        n = min(batch, count - start)
        ok, out = _child(start, n, seed, env, timeout, seed_file)
        if not ok:                                   # replay one by one to find the culprit
            for k in range(start, start + n):
                ok1, out1 = _child(k, 1, seed, env, 60, seed_file)
                if not ok1:
                    totals[out1] += 1
                    failures.append({"mutant": k, "error": out1})
                else:
                    _tally(out1, totals, failures)
        else:
            _tally(out, totals, failures)
        log(f"{start + n}/{count} mutants, {time.time() - t0:.0f} s: {totals}")
    return totals, failures


def _child(start, n, seed, env, timeout, seed_file):
    cmd = [sys.executable, os.path.abspath(__file__), "--worker", "--start", str(start), "--count", str(n),
           "--seed", str(seed), "--seed-file", seed_file]
    try:
        r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return False, "hung"
    if r.returncode != 0:
        return False, "crashed"
    return True, r.stdout


def _tally(out, totals, failures):
    for line in out.splitlines():
        if not line.startswith("{"):
            continue
        d = json.loads(line)
        if "counts" in d:
            for k, v in d["counts"].items():
                totals[k] += v
        else:
            failures.append(d)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--count", type=int, default=10000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch", type=int, default=2000)
    p.add_argument("--boundscheck", action="store_true")
    p.add_argument("--worker", action="store_true")
    p.add_argument("--start", type=int, default=0)
    p.add_argument("--seed-file")
    a = p.parse_args()
    if a.worker:
        worker(a.start, a.count, a.seed, a.seed_file)
        return 0
    totals, failures = campaign(a.count, a.seed, a.batch, a.boundscheck)
    print(json.dumps({"totals": totals, "failures": failures[:50]}, indent=1))
    return 1 if failures or totals["crashed"] or totals["hung"] else 0


if __name__ == "__main__":
    sys.exit(main())
