"""edgetorch.runtime: loads and runs `.etp` programs (numpy + numba + flatbuffers).

    from edgetorch.runtime import load
    prog = load("model.etp")        # verified, constants memory-mapped
    y = prog(x)                     # "forward"; prog.method("decode")(ids, pos)

It never imports the frontend's registry, nn, optim or the exporter.
"""
import os

# Numba's OpenMP threads and OpenBLAS's threads share the cores, and kernels
# of the two alternate within every call.  With libgomp's default spin-wait,
# idle OpenMP threads burn the cores BLAS needs (a MiniLM-shaped layer at
# batch 8 ran 20x slower).  Passive waiting costs ~15 us more per parallel
# region, so only large kernels go parallel.  Set before libgomp starts;
# a value the user set wins.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from edgetorch._errors import InputError, ProgramError  # noqa: E402

from .program import Method, Program, load, random_inputs  # noqa: E402
from .threads import get_num_threads, set_num_threads  # noqa: E402

__all__ = ["load", "Program", "Method", "ProgramError", "InputError", "set_num_threads", "get_num_threads",
           "random_inputs"]
