"""The runtime's kernel table: op name -> kernel.

A kernel is `fn(out, *inputs, **attrs)`: it writes the op's result into the
preallocated `out` (an arena view of the planned shape) and allocates
nothing it returns.  The runtime never imports the frontend's op registry;
a test checks that this table and the registry agree.
"""
KERNELS = {}


def kernel(name, *, alias=False):
    """Register `fn` as the kernel of op `name`."""
    def deco(fn):
        if name in KERNELS:
            raise RuntimeError(f"kernel {name!r} registered twice")
        fn.op_name = name
        KERNELS[name] = fn
        return fn
    return deco
