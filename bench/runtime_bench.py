"""The runtime against its peers, side by side in one process on the same weights.

    python bench/runtime_bench.py [--repeats 7] [--processes 3] [--quick]

For each reference model: the edgetorch runtime (program exported from the
edgetorch model, timed in a child process of its own: PyTorch's and ONNX
Runtime's spinning thread pools in the same process would otherwise take
its cores; with --processes P, P such children, and every peer timed P
times too, each keeping its lowest median: this host runs whole processes
in a slow mode at times, 1.5x and more; the systems' windows alternate, so
a slow phase of minutes does not fall on one system's all), ONNX Runtime (the same weights in an equivalent PyTorch
model exported with torch.onnx.export, opset 17, 2 intra-op threads) and
PyTorch eager (2 threads). Reports median latency and the ratio
edgetorch / ONNX Runtime, and ExecuTorch 1.5.1 with its XNNPACK delegate
(bench/executorch_peer.py, one case per child process) where it runs. Then Llama decode tokens/s against PyTorch eager
(transformers with its KV cache), ExecuTorch's own Llama on XNNPACK and the DRAM floor, a 64-token prefill (last position's logits), cold and warm start in
fresh processes, and the load time of a 100 MB program.
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from _timing import load_avg, timeit  # noqa: E402


def models(quick):
    import edgetorch as et
    from edgetorch.exporter import Dim
    from edgetorch.models import MLP, Encoder, EncoderConfig, ResNet
    et.manual_seed(0)
    mlp = MLP((784, 512, 512, 10)).eval()
    yield ("MLP 784-512-512-10", mlp, "mlp", [("x", (1, 784)), ("x", (32, 784))],
           lambda m: et.export(m, (et.randn(2, 784),), dynamic_shapes={"x": {0: Dim("batch", max=64)}}))
    r = ResNet()
    with et.no_grad():
        r(et.randn(8, 3, 32, 32))
    r.eval()
    yield ("ResNet-8 3x32x32", r, "resnet", [("x", (1, 3, 32, 32)), ("x", (32, 3, 32, 32))],
           lambda m: et.export(m, (et.randn(2, 3, 32, 32),), dynamic_shapes={"x": {0: Dim("batch", max=64)}}))
    cfg = EncoderConfig()     # MiniLM-L6 shape: 6 layers, hidden 384, 12 heads
    e = Encoder(cfg).eval()
    b, s = Dim("batch", max=32), Dim("seq", max=512)
    yield ("MiniLM-shaped encoder seq 128", e, "bert", [("ids", (1, 128))],
           lambda m: et.export(m, (et.randint(1, 1000, (2, 16)), et.ones(2, 16, dtype="int64")),
                               dynamic_shapes={"input_ids": {0: b, 1: s}, "attention_mask": {0: b, 1: s}}))


def _inputs(kind, shape):
    rng = np.random.default_rng(0)
    if kind == "bert":
        return [rng.integers(1, 30000, size=shape).astype(np.int64), np.ones(shape, np.int64)]
    return [rng.standard_normal(shape).astype(np.float32)]


def child_et(path, kind, shape, repeats):
    """Time the edgetorch program in this (fresh) process; prints seconds per call."""
    from edgetorch.runtime import load
    prog = load(path)
    if kind == "llama_prefill":
        ids = np.random.default_rng(0).integers(0, 32000, size=(1, shape[0]))
        pf = prog.method("prefill_last")
        print(timeit(lambda: pf(ids, np.array([0])), repeats))
        return
    if kind == "llama":
        ids = np.random.default_rng(0).integers(0, 32000, size=(1, shape[0]))
        prog.prefill(ids, np.array([0]))
        dec = prog.method("decode")
        tok, pos = np.array([[7]]), np.array([shape[0]])
        print(timeit(lambda: dec(tok, pos), repeats))
        return
    xs = _inputs(kind, shape)
    out = prog(*xs)
    np.save(path + ".out.npy", out)
    print(timeit(lambda: prog(*xs), repeats))


def run_child(path, kind, shape, repeats):
    r = subprocess.run([sys.executable, os.path.abspath(__file__), "--child", path, kind,
                        ",".join(map(str, shape)), str(repeats)], capture_output=True, text=True)
    if r.returncode:
        raise RuntimeError(r.stderr)
    return float(r.stdout.strip().splitlines()[-1])


PROCESSES = 1      # --processes: timing windows per measurement, the lowest median kept (see above)


def best(fn):
    """The lowest of PROCESSES measurements fn() (seconds)."""
    return min(fn() for _ in range(PROCESSES))


def best_interleaved(*fns):
    """The lowest of PROCESSES measurements of each fn (seconds), the systems' windows taken in turn
    (A, B, C, A, B, C, ...): the host's slow phases last minutes, and back-to-back windows put one
    system's all inside one."""
    got = [[] for _ in fns]
    for _ in range(PROCESSES):
        for g, fn in zip(got, fns):
            g.append(fn())
    return [min(g) for g in got]


def compare(repeats, quick):
    import torch

    import executorch_peer
    import peers
    torch.set_num_threads(2)
    rows = []
    tmp = tempfile.mkdtemp(prefix="etbench")
    for name, model, kind, cases, export in models(quick):
        path = os.path.join(tmp, f"{kind}.etp")
        export(model).save(path)
        tm = {"mlp": peers.torch_mlp, "resnet": peers.torch_resnet, "bert": peers.torch_bert}[kind](model)
        for _, shape in cases:
            xs = _inputs(kind, shape)
            txs = [torch.tensor(a) for a in xs]
            names = ["input_ids", "attention_mask"] if kind == "bert" else ["x"]
            axes = {n: ({0: "b", 1: "s"} if kind == "bert" else {0: "b"}) for n in names}
            sess = peers.ort_session(tm, txs, names, axes)
            feeds = dict(zip(names, xs))
            tfn = lambda: tm(*txs)   # noqa: E731
            with torch.no_grad():
                ref = tfn().numpy()

            def t_torch_once():
                with torch.no_grad():
                    return timeit(tfn, repeats)
            t_torch, t_ort, t_et = best_interleaved(
                t_torch_once, lambda: timeit(lambda: sess.run(None, feeds), repeats),
                lambda: run_child(path, kind, shape, repeats))
            err = float(np.abs(np.load(path + ".out.npy") - ref).max())
            t_xt = executorch_peer.run_case(f"{kind}:{shape[0]}") if not quick else "skipped (--quick)"
            rows.append((name, shape[0], t_et, t_ort, t_torch, err, t_xt))
            print(f"  {name} batch {shape[0]}: et {t_et * 1e3:.3f} ms, ort {t_ort * 1e3:.3f} ms, "
                  f"torch {t_torch * 1e3:.3f} ms (max |diff| vs torch {err:.1e})", file=sys.stderr)
    return rows


_READ = {}


def dram_bandwidth(passes=9):
    """(median, best) GB/s reading a 1 GiB float32 array with a 2-thread Numba reduction over
    `passes` passes.  The median is the rate the decode figures (medians themselves) are held to.
    This shared host's rate moves over minutes (session 14: 35 GB/s in one minute, 54 GB/s in 9
    passes a few minutes later), so the quantization benchmark measures it between its decode runs."""
    if not _READ:
        from numba import njit, prange

        @njit(parallel=True, fastmath=True)
        def total(a):
            s = 0.0
            for i in prange(a.shape[0]):
                s += a[i]
            return s
        _READ["a"] = np.ones(1 << 28, np.float32)
        _READ["f"] = total
        total(_READ["a"])
    a, total = _READ["a"], _READ["f"]
    rates = sorted(a.nbytes / timeit(lambda: total(a), 1, 0.0) / 1e9 for _ in range(passes))
    return rates[len(rates) // 2], rates[-1]


def llama_model():
    """The decode benchmark's Llama (dim 288, 6 layers, 6 heads, vocab 32000), seeded: the same
    weights in every process (bench/executorch_peer.py builds its ExecuTorch twin from it)."""
    import edgetorch as et
    from edgetorch.models import Decoder, DecoderConfig
    cfg = DecoderConfig(vocab_size=32000, hidden_size=288, intermediate_size=768, num_hidden_layers=6,
                        num_attention_heads=6, num_key_value_heads=6, max_position_embeddings=256)
    et.manual_seed(0)
    return Decoder(cfg).eval()


def llama_decode(repeats, ctx=128, quick=False):
    import torch

    import edgetorch as et
    import executorch_peer
    import peers
    from edgetorch.exporter import Dim
    m = llama_model()
    seq = Dim("seq", min=1, max=256)
    path = os.path.join(tempfile.mkdtemp(prefix="etbench"), "llama.etp")
    ep = et.export_methods(m, {
        "prefill": (m, (et.randint(0, 32000, (1, 8)), et.tensor([0])), {"input_ids": {1: seq}}),
        # the prompt step of generation: the last position's logits only (logits_to_keep=1)
        "prefill_last": (m, (et.randint(0, 32000, (1, 8)), et.tensor([0]), 1), {"input_ids": {1: seq}}),
        "decode": (m, (et.randint(0, 32000, (1, 1)), et.tensor([8])))})
    ep.save(path)
    from edgetorch.exporter import quantize
    quantize(ep, "int8-weight").save(path + ".q8.etp")
    ids = np.random.default_rng(0).integers(0, 32000, size=(1, ctx))
    # decode at the same position each time: the context stays at ctx tokens
    t_et = best(lambda: run_child(path, "llama", (ctx,), repeats))
    t_q8 = best(lambda: run_child(path + ".q8.etp", "llama", (ctx,), repeats))
    t_pf = best(lambda: run_child(path, "llama_prefill", (64,), repeats))
    tm = peers.torch_llama(m)
    with torch.no_grad():
        ids64 = torch.tensor(ids[:, :64])
        t_torch_pf = best(lambda: timeit(lambda: tm(ids64, use_cache=True, logits_to_keep=1), repeats))
    with torch.no_grad():
        out = tm(torch.tensor(ids), use_cache=True)
        past = out.past_key_values
        t_tok = torch.tensor([[7]])

        def step():
            # crop back to ctx so every step attends over the same context
            o = tm(t_tok, past_key_values=past, use_cache=True)
            past.crop(-1)          # drop the token just added (transformers 5: negative = tokens to remove)
            return o
        t_torch = best(lambda: timeit(step, repeats))
    weight_bytes = sum(p.numel() for p in m.parameters()) * 4
    t_xt = executorch_peer.run_case(f"llama:{ctx}") if not quick else "skipped (--quick)"
    return t_et, t_q8, t_torch, weight_bytes, t_pf, t_torch_pf, t_xt


def start_times(tmp):
    """Cold start (empty Numba cache) and warm start, fresh processes, encoder to first result."""
    import edgetorch as et
    from edgetorch.exporter import Dim
    from edgetorch.models import Encoder, EncoderConfig
    e = Encoder(EncoderConfig()).eval()
    b, s = Dim("batch", max=32), Dim("seq", max=512)
    path = os.path.join(tmp, "enc.etp")
    et.export(e, (et.randint(1, 1000, (2, 16)), et.ones(2, 16, dtype="int64")),
              dynamic_shapes={"input_ids": {0: b, 1: s}, "attention_mask": {0: b, 1: s}}).save(path)
    code = ("import time; t=time.perf_counter(); import numpy as np; from edgetorch.runtime import load; "
            f"p=load({path!r}); p(np.ones((1,128),np.int64), np.ones((1,128),np.int64)); "
            "print(time.perf_counter()-t)")
    env = dict(os.environ, NUMBA_CACHE_DIR=os.path.join(tmp, "numba-cache"))
    out = []
    for _ in range(2):
        t0 = time.perf_counter()
        r = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
        if r.returncode:
            raise RuntimeError(r.stderr)
        out.append(time.perf_counter() - t0)
    return out


def load_100mb(tmp):
    import edgetorch as et
    from edgetorch.models import MLP
    from edgetorch.runtime import load
    m = MLP((4096, 4096, 2048)).eval()    # 25 M parameters = 100 MB of float32
    path = os.path.join(tmp, "big.etp")
    et.export(m, (et.randn(2, 4096),)).save(path)
    size = os.path.getsize(path)
    load(path)
    t = statistics.median(timeit(lambda: load(path), 1, 0.0) for _ in range(7))
    return size, t


def main(argv=None):
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, path, kind, shape, repeats = sys.argv
        child_et(path, kind, tuple(int(x) for x in shape.split(",")), int(repeats))
        return
    p = argparse.ArgumentParser()
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--quick", action="store_true")
    p.add_argument("--processes", type=int, default=1,
                   help="timing windows per measurement (edgetorch: fresh child processes), lowest median kept")
    a = p.parse_args(argv)
    global PROCESSES
    PROCESSES = max(1, a.processes)
    import torch

    import edgetorch as et
    from edgetorch.runtime import threads
    l0 = load_avg()
    rows = compare(a.repeats, a.quick)
    t_et, t_q8, t_torch, wbytes, t_pf, t_torch_pf, t_xt = llama_decode(a.repeats, quick=a.quick)
    bw, bw_best = dram_bandwidth()
    with tempfile.TemporaryDirectory() as tmp:
        cold, warm = start_times(tmp)
        size, t_load = load_100mb(tmp)
    l1 = load_avg()
    import onnxruntime
    print(f"edgetorch {et.__version__}, onnxruntime {onnxruntime.__version__}, torch {torch.__version__}; "
          f"{os.cpu_count()} cpus; threading {threads.info()}; 1-min load {l0:.2f} -> {l1:.2f}; "
          f"median of {a.repeats}, lowest of {PROCESSES} windows")
    print()
    print("| model | batch | edgetorch | ONNX Runtime | PyTorch eager | ExecuTorch XNNPACK | edgetorch / ORT |")
    print("| --- | --- | --- | --- | --- | --- | --- |")
    def ms(t):      # 4 significant figures: a batch-1 MLP's 0.0263 ms
        return f"{t * 1e3:.4f} ms" if t < 1e-4 else f"{t * 1e3:.3f} ms"
    for name, bsz, te, to, tt, err, tx in rows:
        xt = ms(tx) if isinstance(tx, float) else tx
        print(f"| {name} | {bsz} | {ms(te)} | {ms(to)} | {ms(tt)} | {xt} | {te / to:.2f}x |")
    floor = wbytes / (bw * 1e9)
    print()
    print("| Llama 15M decode, 128-token context | ms/token | tokens/s |")
    print("| --- | --- | --- |")
    print(f"| edgetorch runtime (fp32) | {t_et * 1e3:.2f} | {1 / t_et:.0f} |")
    print(f"| edgetorch runtime (int8-weight; {wbytes / 4e6:.0f} MB streamed: {wbytes / 4 / t_q8 / 1e9:.1f} GB/s) | "
          f"{t_q8 * 1e3:.2f} | {1 / t_q8:.0f} |")
    print(f"| PyTorch eager (transformers, KV cache) | {t_torch * 1e3:.2f} | {1 / t_torch:.0f} |")
    print("| ExecuTorch XNNPACK fp32 (its examples/models/llama, KV cache) | "
          + (f"{t_xt * 1e3:.2f} | {1 / t_xt:.0f} |" if isinstance(t_xt, float) else f"{t_xt} | - |"))
    print(f"| DRAM floor: {wbytes / 1e6:.0f} MB of weights at {bw:.1f} GB/s (measured here: median of 9 reads, best "
          f"{bw_best:.1f}) | {floor * 1e3:.2f} | "
          f"{1 / floor:.0f} |")
    print(f"| DRAM floor at PEERS.md's 33 GB/s | {wbytes / 33e9 * 1e3:.2f} | {33e9 / wbytes:.0f} |")
    print(f"\nedgetorch decode is {t_torch / t_et:.2f}x PyTorch's tokens/s and {floor / t_et * 100:.0f}% of the "
          "DRAM floor's.")
    print()
    print("| Llama 15M prefill, 64-token prompt, last logits (float32) | ms | tokens/s |")
    print("| --- | --- | --- |")
    print(f"| edgetorch runtime | {t_pf * 1e3:.2f} | {64 / t_pf:.0f} |")
    print(f"| PyTorch eager (transformers, logits_to_keep=1) | {t_torch_pf * 1e3:.2f} | {64 / t_torch_pf:.0f} |")
    print()
    print("| start-up | time |")
    print("| --- | --- |")
    print(f"| cold start, fresh process, empty Numba cache, encoder to first result | {cold:.2f} s |")
    print(f"| warm start, fresh process, warm cache | {warm:.2f} s |")
    print(f"| load() of a {size / 1e6:.0f} MB program (mapped, verified, checksummed) | {t_load * 1e3:.1f} ms |")


if __name__ == "__main__":
    main()
