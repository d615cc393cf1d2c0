"""Timing helpers shared by the benchmarks: medians of repeated runs."""
import os
import statistics
import time


def timeit(fn, repeats, min_time=0.2):
    """Median seconds per call over `repeats` runs of enough calls to last `min_time`."""
    fn()
    fn()
    t0 = time.perf_counter()
    fn()
    one = max(time.perf_counter() - t0, 1e-6)
    iters = max(1, int(min_time / one))
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        for _ in range(iters):
            fn()
        out.append((time.perf_counter() - t0) / iters)
    return statistics.median(out)


def load_avg():
    try:
        return os.getloadavg()[0]
    except OSError:
        return float("nan")
