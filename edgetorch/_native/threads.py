"""Threading set-up shared by every Numba kernel of edgetorch (runtime and frontend).

Numba's threading layer is chosen deliberately: OpenMP (~2 us per parallel
region) when present, else TBB, never workqueue (~100 us per region, and it
aborts when two Python threads enter parallel kernels at once; see
../shared/NUMBA.md).  OpenBLAS's idle threads are told to sleep at once
(edgetorch/_native/__init__.py says why).
"""
from __future__ import annotations

import ctypes
import os

import numba

_chosen = None
_spin_done = False


def shorten_blas_spin():
    """Make the OpenBLAS libraries already loaded honour OPENBLAS_THREAD_TIMEOUT now.

    OpenBLAS reads the variable when it loads, and numpy may have loaded it
    before edgetorch's Numba code was imported: re-read the environment and restart
    its (idle, at import) thread pool, which takes the timeout from there.
    Libraries without these entry points (other BLAS, OpenMP builds of
    OpenBLAS) are left as they are; returns the paths of those changed."""
    global _spin_done
    if _spin_done:
        return []
    _spin_done = True
    done = []
    try:
        from threadpoolctl import threadpool_info
        for info in threadpool_info():
            if info.get("internal_api") != "openblas" or info.get("threading_layer") != "pthreads":
                continue
            lib = ctypes.CDLL(info["filepath"])
            if not all(hasattr(lib, f) for f in ("openblas_read_env", "blas_thread_shutdown_", "blas_thread_init")):
                continue
            lib.openblas_read_env()
            lib.blas_thread_shutdown_()
            lib.blas_thread_init()
            done.append(info["filepath"])
    except Exception:       # a BLAS we do not know: the spin only costs speed, never correctness
        return done
    return done


def choose_threading_layer():
    global _chosen
    if _chosen is not None:
        return _chosen
    want = os.environ.get("NUMBA_THREADING_LAYER")
    if not want:
        for layer in ("omp", "tbb"):
            try:
                __import__(f"numba.np.ufunc.{layer}pool")
            except ImportError:
                continue
            numba.config.THREADING_LAYER = layer
            break
    _chosen = numba.config.THREADING_LAYER
    return _chosen
