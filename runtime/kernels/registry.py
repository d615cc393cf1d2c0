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
A pair preparer (below) does the same for two instructions the runtime then
runs as one (a convolution and the residual add + ReLU that alone reads it).
"""
KERNELS = {}
PREPARE = {}
PREPARE_PAIR = {}


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


def pair_preparer(first, second):
    """Register `prep` for instruction `first` followed by `second`, the only reader of first's output:
    `prep(out2, inputs2, attrs2, out1, *inputs1, **attrs1)` (out2: second's output; inputs2: second's
    inputs, out1 among them once; out1: first's planned output, which the fused run need not write)
    returns `run(out2, *inputs1, *others2)` doing both, others2 being inputs2 without out1, in
    order; or None.  The same rules as a preparer's `run`."""
    def deco(fn):
        if (first, second) in PREPARE_PAIR:
            raise RuntimeError(f"pair preparer {(first, second)!r} registered twice")
        PREPARE_PAIR[(first, second)] = fn
        return fn
    return deco
