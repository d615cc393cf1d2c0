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
A group preparer (below) does the same for instructions in a row the runtime
then runs as one (a convolution and the residual add + ReLU that alone reads
it; a batch-1 MLP's linears).
"""
KERNELS = {}
PREPARE = {}
PREPARE_GROUP = {}


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


def group_preparer(*ops):
    """Register `prep` for the instructions `ops` in a row, each output but the last read by the next
    instruction alone (once): `prep(outs, inputs, attrs)` (per instruction, in order: its planned
    output, its input arrays, its attributes; the outputs but the last need not be written) returns
    `run(out_last, *flat)` doing them all, flat being the first instruction's inputs, then each next
    one's inputs without the output before it, in order; or None.  The same rules as a preparer's
    `run`.  The runtime tries the longest registered group first."""
    if len(ops) < 2:
        raise ValueError("a group is two instructions or more")

    def deco(fn):
        if ops in PREPARE_GROUP:
            raise RuntimeError(f"group preparer {ops!r} registered twice")
        PREPARE_GROUP[ops] = fn
        return fn
    return deco
