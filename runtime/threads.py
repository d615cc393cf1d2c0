"""Threading choices for the runtime's kernels.

The threading layer and the BLAS threads' idle spin are set up in
edgetorch/_native (shared with the frontend's Numba paths).  BLAS (numpy's OpenBLAS) and Numba share the cores: the
runtime gives both the same thread count so they do not oversubscribe.
"""
from __future__ import annotations

import numba

from edgetorch._native.threads import choose_threading_layer

__all__ = ["set_num_threads", "get_num_threads", "info", "choose_threading_layer"]


def set_num_threads(n: int):
    """Threads for Numba kernels and BLAS (results do not depend on it beyond float reassociation)."""
    n = int(n)
    if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        from edgetorch._errors import EdgeTorchError
        raise EdgeTorchError(f"set_num_threads: {n} is outside [1, {numba.config.NUMBA_NUM_THREADS}]")
    numba.set_num_threads(n)
    from threadpoolctl import threadpool_limits
    threadpool_limits(n)


def get_num_threads() -> int:
    return numba.get_num_threads()


def info() -> dict:
    """Threading layer, Numba threads, BLAS libraries and the SIMD kernel families in use (for
    `edgetorch bench` and the benchmarks' headers)."""
    out = {"numba_threading_layer": choose_threading_layer(), "numba_threads": numba.get_num_threads()}
    try:
        out["numba_threading_layer_active"] = numba.threading_layer()
    except ValueError:
        out["numba_threading_layer_active"] = "(no parallel region run yet)"
    from threadpoolctl import threadpool_info
    out["blas"] = [f"{i['internal_api']} {i.get('architecture', '')} x{i['num_threads']}" for i in threadpool_info()]
    from edgetorch._native import simd
    out["simd"] = {"avx512_vnni": simd.HAVE_VNNI, "avx2_fma": simd.HAVE_FMA}     # which kernel families run
    return out

