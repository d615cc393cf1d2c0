"""Compiling one kernel body twice: serial and parallel.

A parallel region costs a few us when the OpenMP threads are still
spinning from the previous one and 15-45 us when they have gone to sleep
(runtime/__init__.py sets a short spin so they do not steal BLAS's cores);
small work runs faster serial.  Kernels pick the serial copy below a size
and the parallel one above it.
"""
import types

from numba import njit


def twins(fn, suffix="", bind=None, **flags):
    """(serial, parallel) dispatchers of `fn` (prange runs as range in the serial one).
    Each copy gets its own name, so Numba's on-disk cache keeps them apart.  `bind` rebinds global
    names for this pair (a variant of one body, say with another inlined epilogue: Numba takes
    globals as compile-time constants), `suffix` then names the variant."""
    out = []
    glb = fn.__globals__ if bind is None else dict(fn.__globals__, **bind)
    for par in (False, True):
        f = types.FunctionType(fn.__code__, glb, fn.__name__ + suffix + ("_par" if par else "_serial"),
                               fn.__defaults__, fn.__closure__)
        f.__qualname__ = f.__name__
        out.append(njit(cache=True, parallel=par, **flags)(f))
    return out
