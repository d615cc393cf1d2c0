"""Print lines of code per package and the op count, so growth shows in every change.

    python tools/sz.py
"""
import os
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def count(folder):
    files, lines = 0, 0
    for dp, _, fns in os.walk(os.path.join(ROOT, folder)):
        if "__pycache__" in dp or "/generated" in dp:
            continue
        for f in fns:
            if f.endswith(".py"):
                files += 1
                with open(os.path.join(dp, f)) as fh:
                    lines += sum(1 for ln in fh if ln.strip() and not ln.strip().startswith("#"))
    return files, lines


def main():
    rows = [(d, *count(d)) for d in ("edgetorch", "exporter", "runtime", "devices", "schemas", "tests", "bench",
                                     "examples", "tools") if os.path.isdir(os.path.join(ROOT, d))]
    for d, f, n in rows:
        print(f"{d:<10} {f:>4} files {n:>7} lines")
    sys.path.insert(0, ROOT)
    from edgetorch.ops.registry import all_ops
    print(f"{'ops':<10} {len(all_ops()):>4} registry entries")


if __name__ == "__main__":
    main()
