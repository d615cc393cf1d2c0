"""edgetorch.runtime: loads and runs `.etp` programs (numpy + numba + flatbuffers).

    from edgetorch.runtime import load
    prog = load("model.etp")        # verified, constants memory-mapped
    y = prog(x)                     # "forward"; prog.method("decode")(ids, pos)

It never imports the frontend's registry, nn, optim or the exporter.
"""
import os

# Numba's OpenMP threads and OpenBLAS's threads share the cores, and kernels
# of the two alternate within every call.  With libgomp's default spin-wait
# (300,000 spins) idle OpenMP threads burn the cores BLAS needs (a
# MiniLM-shaped layer at batch 8 ran 20x slower); fully passive waiting
# costs 15-45 us to wake the threads for every parallel region, more than a
# decode GEMV takes.  A short spin (20,000) keeps threads awake between the
# kernels of one step and hands the cores back to BLAS quickly: measured,
# int8 Llama decode 1.68 -> 1.42 ms/token, the encoder unchanged.  Set
# before libgomp starts; a policy or spin count the user set wins.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "20000"
# The other way round: OpenBLAS's idle threads spin 2**28 cycles (~0.1 s)
# after every BLAS call, on the cores the next Numba kernel needs (a direct
# 3x3 convolution after a BLAS one ran 50 us alone, 1-2 ms in ResNet-8).
# threads.py shortens the spin to 2**BLAS_SPIN_EXP cycles; through the
# environment when OpenBLAS is not loaded yet, else by re-reading it.
_blas_env_set = "OPENBLAS_THREAD_TIMEOUT" in os.environ
if not _blas_env_set:
    from .threads import BLAS_SPIN_EXP
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(BLAS_SPIN_EXP)

from edgetorch._errors import InputError, ProgramError  # noqa: E402

from .program import Method, Program, load, random_inputs  # noqa: E402
from .threads import get_num_threads, set_num_threads, shorten_blas_spin  # noqa: E402

if not _blas_env_set:
    shorten_blas_spin()

__all__ = ["load", "Program", "Method", "ProgramError", "InputError", "set_num_threads", "get_num_threads",
           "random_inputs"]
