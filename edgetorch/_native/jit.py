"""Compiling one kernel body twice: serial and parallel.

A parallel region costs a few us when the OpenMP threads are still
spinning from the previous one and 15-45 us when they have gone to sleep
(runtime/__init__.py sets a short spin so they do not steal BLAS's cores);
small work runs faster serial.  Kernels pick the serial copy below a size
and the parallel one above it.
"""
import types

from numba import njit


def variant(fn, name, bind=None, **flags):
    """A Numba dispatcher of `fn` named `name`, its global names rebound by `bind` (Numba takes
    globals as compile-time constants: one body, several compiled variants, say 8- and 16-lane
    vector kernels or another inlined epilogue).  The name keeps the variants apart in Numba's
    on-disk cache."""
    glb = fn.__globals__ if bind is None else dict(fn.__globals__, **bind)
    f = types.FunctionType(fn.__code__, glb, name, fn.__defaults__, fn.__closure__)
    f.__qualname__ = name
    f.__doc__ = fn.__doc__
    return njit(cache=True, **flags)(f)


def twins(fn, suffix="", bind=None, **flags):
    """(serial, parallel) dispatchers of `fn` (prange runs as range in the serial one), variants
    (above) named fn + suffix + _serial / _par."""
    return [variant(fn, fn.__name__ + suffix + ("_par" if par else "_serial"), bind, parallel=par, **flags)
            for par in (False, True)]
