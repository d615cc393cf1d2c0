"""The `edgetorch` command line.

    edgetorch --version
    edgetorch ops [--family F]      the op registry as a table, generated from the code
    edgetorch inspect m.etp [--graph]
    edgetorch run m.etp --input x.npy [--method decode] [--out y.npy]
    edgetorch bench m.etp [--method m] [--iters N] [--size min|mid|max] [--threads N]
    edgetorch warmup m.etp
"""
from __future__ import annotations

import argparse
import sys


def _kernel_table():
    """Op name -> kernel name from the runtime's kernel table, when it has one."""
    try:
        from edgetorch.runtime import kernels  # noqa: F401  (arrives with the runtime issue)
    except ImportError:
        return {}
    return {k: f"{fn.__module__.rsplit('.', 1)[-1]}.{fn.__name__}" for k, fn in getattr(kernels, "KERNELS", {}).items()}


def _forward_kind(d):
    """"numpy", or "numpy+numba" when the op's forward runs edgetorch/_native loops for the
    float32 cases they cover (read from its source: the call sites name _native or _direct)."""
    import inspect
    try:
        src = inspect.getsource(d.forward)
    except (OSError, TypeError):
        return "numpy"
    return "numpy+numba" if "_native" in src or "_direct(" in src else "numpy"


def cmd_ops(args):
    from edgetorch.ops.registry import REQUIRED, all_ops
    ops = all_ops()
    kernels = _kernel_table()
    rows = []
    for name, d in sorted(ops.items(), key=lambda kv: (kv[1].family, kv[0])):
        if args.family and d.family != args.family:
            continue
        attrs = ", ".join(k if v is REQUIRED else f"{k}={v!r}" for k, v in d.attrs.items())
        rows.append((name, d.family, ", ".join(d.inputs), attrs, _forward_kind(d),
                     "yes" if d.differentiable else "-", kernels.get(name, "")))
    head = ("op", "family", "inputs", "attributes", "forward", "backward", "kernel")
    widths = [max(len(str(r[i])) for r in rows + [head]) for i in range(len(head))]
    widths[3] = min(widths[3], 60)
    line = "  ".join(h.ljust(w) for h, w in zip(head, widths))
    print(line)
    print("  ".join("-" * w for w in widths))
    for r in rows:
        cells = [str(c) if len(str(c)) <= w else str(c)[:w - 3] + "..." for c, w in zip(r, widths)]
        print("  ".join(c.ljust(w) for c, w in zip(cells, widths)).rstrip())
    n_diff = sum(1 for r in rows if r[5] == "yes")
    print(f"\n{len(rows)} ops, {n_diff} differentiable, {sum(1 for r in rows if r[6])} with a runtime kernel")
    return 0


def cmd_inspect(args):
    from edgetorch._errors import ProgramError
    from edgetorch.schemas.describe import summary
    from edgetorch.schemas.reader import read
    try:
        info = read(args.program)
    except ProgramError as e:
        print(f"edgetorch inspect: {args.program}: {e}", file=sys.stderr)
        return 2
    print(summary(info, args.program, graph=args.graph))
    return 0


def _load(path):
    from edgetorch.runtime import ProgramError, load
    try:
        return load(path)
    except ProgramError as e:
        print(f"edgetorch: {path}: {e}", file=sys.stderr)
        raise SystemExit(2)


def cmd_run(args):
    import numpy as np

    from edgetorch.runtime import InputError, random_inputs
    prog = _load(args.program)
    m = prog.method(args.method) if args.method else prog.method(prog.methods[0] if "forward" not in
                                                                 prog.methods else "forward")
    if args.input:
        pos, named = [], {}
        for item in args.input:
            name, _, path = item.rpartition("=")
            arr = np.load(path)
            if name:
                named[name] = arr
            else:
                pos.append(arr)
    else:
        pos, named = random_inputs(m, args.size), {}
        print(f"no --input: random inputs at the {args.size} sizes: "
              + ", ".join(f"{s.name}{list(a.shape)}" for s, a in zip(m.inputs, pos)))
    try:
        out = m(*pos, **named)
    except InputError as e:
        print(f"edgetorch run: {e}", file=sys.stderr)
        return 2
    outs = out if isinstance(out, tuple) else (out,)
    for spec, o in zip(m.outputs, outs):
        flat = o.reshape(-1)[:6]
        print(f"{spec.name}: {o.dtype}{list(o.shape)} = [{', '.join(f'{x:.5g}' for x in flat.tolist())}"
              f"{', ...' if o.size > 6 else ''}]")
    if args.out:
        if len(outs) == 1:
            np.save(args.out, outs[0])
        else:
            np.savez(args.out, **{s.name: o for s, o in zip(m.outputs, outs)})
        print(f"wrote {args.out}")
    return 0


def cmd_bench(args):
    import time

    import numpy as np

    from edgetorch.runtime import random_inputs, set_num_threads, threads
    if args.threads:
        set_num_threads(args.threads)
    prog = _load(args.program)
    names = [args.method] if args.method else prog.methods
    print(f"{args.program}: constants {prog.constant_bytes / 1e6:.2f} MB; threading "
          + ", ".join(f"{k}={v}" for k, v in threads.info().items()))
    for name in names:
        m = prog.method(name)
        xs = random_inputs(m, args.size)
        for _ in range(args.warmup):
            m(*xs)
        ts = []
        for _ in range(args.iters):
            t0 = time.perf_counter()
            m(*xs)
            ts.append(time.perf_counter() - t0)
        ts = np.array(ts) * 1e3
        p50, p90, p99 = np.percentile(ts, [50, 90, 99])
        batch = xs[0].shape[0] if xs and xs[0].ndim else 1
        print(f"method {name!r} inputs " + ", ".join(f"{s.name}{list(a.shape)}" for s, a in zip(m.inputs, xs)))
        print(f"  latency p50 {p50:.3f} ms  p90 {p90:.3f} ms  p99 {p99:.3f} ms  ({args.iters} runs, "
              f"{args.warmup} warm-up)")
        print(f"  throughput {1e3 / p50:.1f} calls/s, {batch * 1e3 / p50:.1f} items/s; arena "
              f"{m.info.arena_size / 1e6:.2f} MB")
    return 0


def cmd_warmup(args):
    import time
    t0 = time.perf_counter()
    prog = _load(args.program)
    t1 = time.perf_counter()
    prog.warmup()
    t2 = time.perf_counter()
    print(f"loaded in {(t1 - t0) * 1e3:.1f} ms; kernels compiled or loaded from the Numba cache in "
          f"{t2 - t1:.2f} s")
    return 0


def _calibration(path, ep, batch_size, limit):
    """Argument tuples from an .npz (one array per method input, by input name or in order,
    samples along axis 0) or a .npy (a single input)."""
    import numpy as np
    g = ep.graph
    names = [v.name for v in g.inputs]
    data = np.load(path)
    if isinstance(data, np.ndarray):
        arrays = [data]
    else:
        keys = list(data.files)
        arrays = [data[n] for n in names] if all(n in keys for n in names) else [data[k] for k in keys]
    if len(arrays) != len(names):
        raise ValueError(f"{path} holds {len(arrays)} arrays; the program's method takes {len(names)} inputs "
                         f"({', '.join(names)}): name them in the .npz")
    n = min(len(a) for a in arrays)
    if limit:
        n = min(n, limit)
    return [tuple(a[i:i + batch_size] for a in arrays) for i in range(0, n, batch_size)]


def cmd_quantize(args):
    from edgetorch._errors import EdgeTorchError
    from edgetorch.exporter import QuantConfig, compare, quantize
    from edgetorch.exporter.program import from_info
    from edgetorch.schemas.reader import read
    try:
        ep = from_info(read(args.program))
        overrides = {}
        for o in args.override or []:
            pat, _, preset = o.partition("=")
            overrides[pat] = None if preset in ("", "float", "none") else preset
        cfg = QuantConfig(args.preset, group_size=args.group_size, symmetric=not args.asymmetric,
                          overrides=overrides, skip=args.skip or [], observer=args.observer)
        cal = _calibration(args.calibration, ep, args.batch_size, args.limit) if args.calibration else None
        q = quantize(ep, cfg, calibration=cal, progress=not args.quiet)
        out = args.output or args.program.rsplit(".", 1)[0] + f".{args.preset}.etp"
        q.save(out)
    except (EdgeTorchError, ValueError, OSError, KeyError) as e:
        print(f"edgetorch quantize: {e}", file=sys.stderr)
        return 2
    import os
    a, b = os.path.getsize(args.program), os.path.getsize(out)
    print(f"wrote {out}: {b:,} bytes ({b / a:.2f}x of {a:,}), preset {q.metadata['quantization']}")
    if q.metadata.get("quantization_notes"):
        print("notes:", q.metadata["quantization_notes"])
    if args.report:
        if cal is None:
            from edgetorch.runtime import random_inputs
            from edgetorch.runtime import load as rt_load
            prog = rt_load(args.program)
            meth = prog.method("forward" if "forward" in prog.methods else prog.methods[0])
            cal = [tuple(random_inputs(meth, "mid", seed=i)) for i in range(2)]
        print(compare(ep, q, cal[:max(1, args.report_batches)]))
    return 0


def build_parser():
    import edgetorch
    p = argparse.ArgumentParser(prog="edgetorch", description="edgetorch: eager frontend, exporter and runtime")
    p.add_argument("--version", action="version", version=f"edgetorch {edgetorch.__version__}")
    sub = p.add_subparsers(dest="cmd")
    o = sub.add_parser("ops", help="print the op registry as a table")
    o.add_argument("--family", help="only ops of this family (elementwise, reduce, linalg, shape, index, nn, conv)")
    o.set_defaults(func=cmd_ops)
    i = sub.add_parser("inspect", help="print what a .etp program holds")
    i.add_argument("program", help="path to a .etp file")
    i.add_argument("--graph", action="store_true", help="also print every method's instruction list")
    i.set_defaults(func=cmd_inspect)
    r = sub.add_parser("run", help="run a method of a program on .npy inputs (random ones if none)")
    r.add_argument("program")
    r.add_argument("--input", action="append", help="x.npy, or name=x.npy; repeat for several inputs")
    r.add_argument("--method")
    r.add_argument("--out", help="write the output (.npy, or .npz for several)")
    r.add_argument("--size", choices=("min", "mid", "max"), default="min", help="dynamic dims of random inputs")
    r.set_defaults(func=cmd_run)
    b = sub.add_parser("bench", help="latency percentiles of a program's methods on random inputs")
    b.add_argument("program")
    b.add_argument("--method")
    b.add_argument("--iters", type=int, default=100)
    b.add_argument("--warmup", type=int, default=10)
    b.add_argument("--size", choices=("min", "mid", "max"), default="min")
    b.add_argument("--threads", type=int)
    b.set_defaults(func=cmd_bench)
    q = sub.add_parser("quantize", help="quantize a float .etp program (optionally with a per-layer report)")
    q.add_argument("program", help="a float .etp program")
    q.add_argument("--preset", default="int8-weight",
                   help="int8-weight | int4-weight | int8-dynamic | 8da4w | int8-static | float16-weight")
    q.add_argument("-o", "--output", help="where to write (default: PROGRAM.PRESET.etp)")
    q.add_argument("--calibration", help=".npz (one array per input, samples on axis 0) or .npy; int8-static needs it")
    q.add_argument("--batch-size", type=int, default=32, help="calibration batch size")
    q.add_argument("--limit", type=int, help="use at most this many calibration samples")
    q.add_argument("--observer", default="minmax", help="minmax | moving_average | percentile | mse")
    q.add_argument("--group-size", type=int, default=32, help="int4 group size (32, 64, 128, 256)")
    q.add_argument("--asymmetric", action="store_true", help="int4 groups with zero points")
    q.add_argument("--skip", action="append", help="keep layers matching this pattern in float; repeatable")
    q.add_argument("--override", action="append", help="PATTERN=PRESET (or PATTERN=float); repeatable")
    q.add_argument("--report", action="store_true", help="print SQNR / max error / cosine per layer and output")
    q.add_argument("--report-batches", type=int, default=2)
    q.add_argument("--quiet", action="store_true")
    q.set_defaults(func=cmd_quantize)

    w = sub.add_parser("warmup", help="compile (or load from cache) every kernel a program uses")
    w.add_argument("program")
    w.set_defaults(func=cmd_warmup)
    return p


def main(argv=None):
    p = build_parser()
    args = p.parse_args(argv)
    if not getattr(args, "func", None):
        p.print_help()
        return 0
    try:
        return args.func(args)
    except BrokenPipeError:  # `edgetorch ops | head`
        return 0


if __name__ == "__main__":
    sys.exit(main())
