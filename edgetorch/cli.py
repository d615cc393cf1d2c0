"""The `edgetorch` command line.

    edgetorch --version
    edgetorch ops [--family F]      the op registry as a table, generated from the code
    edgetorch inspect m.etp [--graph]
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
    return dict(getattr(kernels, "KERNELS", {}))


def cmd_ops(args):
    from edgetorch.ops.registry import REQUIRED, all_ops
    ops = all_ops()
    kernels = _kernel_table()
    rows = []
    for name, d in sorted(ops.items(), key=lambda kv: (kv[1].family, kv[0])):
        if args.family and d.family != args.family:
            continue
        attrs = ", ".join(k if v is REQUIRED else f"{k}={v!r}" for k, v in d.attrs.items())
        rows.append((name, d.family, ", ".join(d.inputs), attrs, "numpy",
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
