"""The runtime's kernel table: op name -> kernel.

A kernel is `fn(out, *inputs, **attrs)`: it writes the op's result into the
preallocated `out` (an arena view of the planned shape) and allocates
nothing it returns.  The runtime never imports the frontend's op registry;
a test checks that this table and the registry agree.

A kernel may also have a preparer, `prep(out, *inputs, **attrs)`, called
once the runtime has seen a method run twice with the same dims: it returns
`run(out, *inputs)`, the kernel's work for arrays of exactly these shapes,
dtypes and layouts with its attribute checks and branch choices made once
(a decode step runs ~100 kernels whose Python checks cost 1-2 us each), or
None to keep the kernel.  `run` must not keep the arrays it was prepared
with (a concurrent call passes its own arena's); it may keep what it
derives from read-only constants, which stay the same objects per program.
"""
KERNELS = {}
PREPARE = {}


def kernel(name, *, alias=False):
    """Register `fn` as the kernel of op `name`."""
    def deco(fn):
        if name in KERNELS:
            raise RuntimeError(f"kernel {name!r} registered twice")
        fn.op_name = name
        KERNELS[name] = fn
        return fn
    return deco


def preparer(name):
    """Register `prep` as the preparer of op `name`'s kernel (see above)."""
    def deco(fn):
        if name in PREPARE:
            raise RuntimeError(f"preparer {name!r} registered twice")
        PREPARE[name] = fn
        return fn
    return deco
