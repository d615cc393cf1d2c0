"""Arrays derived from a program's constants, computed once and kept while the constant lives:
widened float16 scales, weight row sums for zero-point corrections, weights repacked in the
layout a kernel wants (runtime/kernels/vnni.py, sgemm.py), as ONNX Runtime prepacks weights."""
import weakref

import numpy as np

_DERIVED = {}


def derived(a, tag, fn):
    """fn(a), computed once and kept while the constant `a` lives.  Only read-only arrays (a loaded
    program's constants) are cached: a writeable one (an arena value, a caller's array) may change
    under the same id, so it is derived afresh on every call."""
    if getattr(a, "flags", None) is None or a.flags.writeable:
        return fn(a)
    key = (id(a), tag)
    hit = _DERIVED.get(key)
    if hit is not None and hit[0]() is a:
        return hit[1]
    val = fn(a)
    try:
        ref = weakref.ref(a, lambda _, k=key, d=_DERIVED: d.pop(k, None))
    except TypeError:           # an object that cannot be weakly referenced is not cached
        return val
    _DERIVED[key] = (ref, val)
    return val


_FILLED = {}


def filled(n, value):
    """A read-only float32 row of n copies of value, made once per (n, value): the zero bias of a
    linear or convolution without one, the unit row scales of float activations."""
    key = (n, float(value))
    a = _FILLED.get(key)
    if a is None:
        a = _FILLED[key] = np.full(n, value, np.float32)
        a.flags.writeable = False
    return a
