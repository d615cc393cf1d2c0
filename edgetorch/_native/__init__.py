"""Numba routines shared by the frontend's eager ops and the runtime's kernels.

Nothing here imports the op registry, nn, optim or the exporter, so the
runtime may use it (DESIGN.md's layering); the runtime registers these under
op names in runtime/kernels, the frontend calls them from an op's forward for
the float32 cases they cover (imported lazily there: numba loads on first use).

Importing this package sets up threading for every Numba kernel of edgetorch,
before numba (and, where it can, OpenBLAS) loads:

* Numba's OpenMP threads and OpenBLAS's threads share the cores, and kernels
  of the two alternate within every call.  With libgomp's default spin-wait
  (300,000 spins) idle OpenMP threads burn the cores BLAS needs (a
  MiniLM-shaped layer at batch 8 ran 20x slower); fully passive waiting costs
  15-45 us to wake the threads for every parallel region, more than a decode
  GEMV takes.  A short spin (20,000) keeps threads awake between the kernels
  of one step and hands the cores back to BLAS quickly: measured, int8 Llama
  decode 1.68 -> 1.42 ms/token, the encoder unchanged.
* The other way round: OpenBLAS's idle threads spin 2**28 cycles (~0.1 s)
  after every BLAS call, on the cores the next Numba kernel needs (a direct
  3x3 convolution after a BLAS one ran 50 us alone, 1-2 ms in ResNet-8).  The
  spin is cut to 2**BLAS_SPIN_EXP cycles (OpenBLAS's minimum, measured best
  here): through the environment when OpenBLAS is not loaded yet, else by
  making it re-read the environment (threads.shorten_blas_spin).
* The threading layer: OpenMP, else TBB, never workqueue (threads.py).
* The on-disk cache of every kernel defined in edgetorch/_native and the
  runtime's kernels is keyed by all of those files, not just the kernel's own
  (cache.py): a changed intrinsic or inlined helper recompiles its users.

A wait policy, spin count or timeout the user set wins.
"""
import os

BLAS_SPIN_EXP = 4

if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["GOMP_SPINCOUNT"] = "20000"
_blas_env_set = "OPENBLAS_THREAD_TIMEOUT" in os.environ
if not _blas_env_set:
    os.environ["OPENBLAS_THREAD_TIMEOUT"] = str(BLAS_SPIN_EXP)

from .threads import choose_threading_layer, shorten_blas_spin  # noqa: E402

choose_threading_layer()
if not _blas_env_set:
    shorten_blas_spin()

# before any kernel is defined: cached kernels notice changes in the code they inline (cache.py)
from .cache import install as _install_cache_stamps  # noqa: E402

_install_cache_stamps()
