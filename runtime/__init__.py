"""edgetorch.runtime: loads and runs `.etp` programs (numpy + numba + flatbuffers).

    from edgetorch.runtime import load
    prog = load("model.etp")        # verified, constants memory-mapped
    y = prog(x)                     # "forward"; prog.method("decode")(ids, pos)

It never imports the frontend's registry, nn, optim or the exporter.
"""
# Threading set-up for every Numba kernel (OpenMP spin, OpenBLAS idle spin,
# the threading layer) happens in edgetorch._native, before numba loads.
import edgetorch._native  # noqa: F401

from edgetorch._errors import InputError, ProgramError  # noqa: E402

from .program import Method, Program, load, random_inputs  # noqa: E402
from .threads import get_num_threads, set_num_threads  # noqa: E402

__all__ = ["load", "Program", "Method", "ProgramError", "InputError", "set_num_threads", "get_num_threads",
           "random_inputs"]
