"""edgetorch.runtime: loads and runs `.etp` programs (numpy + numba + flatbuffers).

    from edgetorch.runtime import load
    prog = load("model.etp")        # verified, constants memory-mapped
    y = prog(x)                     # "forward"; prog.method("decode")(ids, pos)

It never imports the frontend's registry, nn, optim or the exporter.
"""
from edgetorch._errors import InputError, ProgramError

from .program import Method, Program, load, random_inputs
from .threads import get_num_threads, set_num_threads

__all__ = ["load", "Program", "Method", "ProgramError", "InputError", "set_num_threads", "get_num_threads",
           "random_inputs"]
