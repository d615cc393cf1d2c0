"""Compiling kernel bodies: variants, serial/parallel twins, and chunked bodies.

`twins` compiles one body twice, serial and parallel (prange); `chunked` compiles
a chunk body once and runs it serial or in parallel (below: far cheaper to
compile).  A parallel region costs a few us when the OpenMP threads are still
spinning from the previous one and 15-45 us when they have gone to sleep
(runtime/__init__.py sets a short spin so they do not steal BLAS's cores);
small work runs faster serial.  Kernels pick the serial copy below a size
and the parallel one above it.
"""
import types as _pytypes

import numpy as np
from numba import config, njit, prange, typeof, types
from numba._dispatcher import compute_fingerprint
from numba.core.typing.typeof import Purpose
from numba.extending import intrinsic


def variant(fn, name, bind=None, **flags):
    """A Numba dispatcher of `fn` named `name`, its global names rebound by `bind` (Numba takes
    globals as compile-time constants: one body, several compiled variants, say 8- and 16-lane
    vector kernels or another inlined epilogue).  The name keeps the variants apart in Numba's
    on-disk cache."""
    glb = fn.__globals__ if bind is None else dict(fn.__globals__, **bind)
    f = _pytypes.FunctionType(fn.__code__, glb, name, fn.__defaults__, fn.__closure__)
    f.__qualname__ = name
    f.__doc__ = fn.__doc__
    return njit(cache=True, **flags)(f)


def twins(fn, suffix="", bind=None, **flags):
    """(serial, parallel) dispatchers of `fn` (prange runs as range in the serial one), variants
    (above) named fn + suffix + _serial / _par."""
    return [variant(fn, fn.__name__ + suffix + ("_par" if par else "_serial"), bind, parallel=par, **flags)
            for par in (False, True)]


# ---------------------------------------------------------------- chunked kernels
# A parallel twin compiled by `twins` costs far more than its serial copy: Numba outlines the prange
# body into a gufunc, types and lowers it again, and LLVM optimizes the body once in the gufunc's
# module and once more in the caller's (each library re-optimizes what it links in).  The
# MiniLM-shaped encoder's attention took 3.5 s serial and 9-10.5 s parallel, most of a cold start.
# `chunked` compiles a body once, serial, and runs it in parallel through one small driver that
# calls the compiled body by its address (nothing linked, so nothing re-optimized): 0.6 s for the
# driver, once per argument-type signature, cached on disk like the body.

@intrinsic
def _call_at(typingctx, addr, args):
    """Call the Numba-compiled function at `addr` (its native entry point, Numba's calling
    convention) with the values of the tuple `args`; True when it raised.  The caller guarantees
    that the function was compiled for exactly these argument types (Chunks keys them by Numba's
    own type fingerprints)."""
    if not isinstance(addr, types.Integer) or not isinstance(args, types.BaseTuple):
        return None
    argtys = tuple(args.types)

    def codegen(context, builder, signature, llargs):
        fnaddr, tup = llargs
        vals = [builder.extract_value(tup, i) for i in range(len(argtys))]
        fnty = context.call_conv.get_function_type(types.void, argtys)
        status, _ = context.call_conv.call_function(builder, builder.inttoptr(fnaddr, fnty.as_pointer()),
                                                    types.void, argtys, vals)
        return status.is_error

    return types.boolean(addr, args), codegen


@njit(cache=True, parallel=True)
def _drive(addr, n, parts, args):
    # chunks 0 .. n - 1 as `parts` contiguous ranges (one a thread: the static split a prange over
    # the chunks would make), each range one call body(lo, hi, *args); how many calls raised
    failed = 0
    for p in prange(parts):
        lo = np.int64(p) * n // parts
        hi = (np.int64(p) + 1) * n // parts
        if _call_at(addr, (lo, hi) + args):
            failed += 1
    return failed


# ranges a parallel run splits its chunks into: the most threads Numba may run (numba.get_num_threads()
# costs ~1.2 us a call); under set_num_threads(k < this) a thread takes several ranges in turn
_THREADS = max(1, config.NUMBA_NUM_THREADS)


class Chunks:
    """A kernel body `fn(c_lo, c_hi, *args)` that runs its chunks c_lo .. c_hi - 1 (independent work:
    each writes its own part of the output), compiled once (`body`, a Numba dispatcher) and run
    serial (`serial(n, *args)`) or spread over the Numba threads (`parallel(n, *args)`).  The
    arguments must be arrays and scalars (Numba's parallel loops do not take tuples through)."""

    def __init__(self, fn, name, bind=None, **flags):
        self.body = variant(fn, name, bind, **flags)
        self._addr = {}

    def serial(self, n, *args):
        self.body(0, n, *args)

    def parallel(self, n, *args):
        key = tuple(map(compute_fingerprint, args))
        addr = self._addr.get(key)
        if addr is None:
            addr = self._address(args, key)
        if _drive(addr, n, min(n, _THREADS), args):
            # a chunk raised (MemoryError for its scratch, say): run serial to raise the error itself
            self.body(0, n, *args)
            raise RuntimeError(f"{self.body.__name__}: a parallel chunk failed")

    def bound(self, *args):
        """`run(n, *args)`: parallel(n, *args) for calls whose arguments have exactly the types of these
        (a prepared run's constants and arena views, whose dtypes, ranks and layouts a program fixes):
        the compiled entry is looked up once here instead of fingerprinting every argument a call
        (~1 us; a batch-1 ResNet-8 forward makes 9 such calls)."""
        key = tuple(map(compute_fingerprint, args))
        addr = self._addr.get(key)
        if addr is None:
            addr = self._address(args, key)

        def run(n, *a):
            if _drive(addr, n, min(n, _THREADS), a):
                self.body(0, n, *a)
                raise RuntimeError(f"{self.body.__name__}: a parallel chunk failed")
        return run

    def _address(self, args, key):
        sig = (types.int64, types.int64) + tuple(typeof(a, Purpose.argument) for a in args)
        self.body.compile(sig)
        cres = self.body.overloads[sig]
        addr = cres.library.get_pointer_to_function(cres.fndesc.llvm_func_name)
        if not addr:
            raise RuntimeError(f"{self.body.__name__}: no compiled entry point for {sig}")
        self._addr[key] = addr
        return addr


def chunked(fn, suffix="", bind=None, **flags):
    """Chunks of `fn` (above), its dispatcher named fn + suffix + _chunks."""
    return Chunks(fn, fn.__name__ + suffix + "_chunks", bind, **flags)
