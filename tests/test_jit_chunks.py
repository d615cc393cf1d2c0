"""edgetorch._native.jit.chunked: one compiled body run serial or spread over the Numba threads by
its address."""
import numba
import numpy as np
import pytest

from edgetorch._native.jit import chunked


def _count_py(lo, hi, x, out, k):
    # every chunk adds once: a chunk run twice or skipped shows in `out`
    for c in range(lo, hi):
        if x[c] < 0:
            raise ValueError("negative input")
        out[c] += x[c] * k + c


_count = chunked(_count_py)


@pytest.mark.parametrize("n", [0, 1, 2, 3, 17, 1000])
@pytest.mark.parametrize("mode", ["serial", "parallel"])
def test_every_chunk_runs_once(n, mode):
    x = np.arange(n, dtype=np.float32)
    out = np.zeros(n, np.float32)
    getattr(_count, mode)(n, x, out, np.float32(2.0))
    np.testing.assert_array_equal(out, x * 2 + np.arange(n))


@pytest.mark.parametrize("threads", [1, 2])
def test_thread_counts_agree(threads):
    old = numba.get_num_threads()
    numba.set_num_threads(min(threads, numba.config.NUMBA_NUM_THREADS))
    try:
        x = np.linspace(0, 1, 101)
        out = np.zeros(101)
        _count.parallel(101, x, out, 3.0)
        np.testing.assert_allclose(out, x * 3 + np.arange(101))
    finally:
        numba.set_num_threads(old)


def test_argument_types_kept_apart():
    # float32 and float64 arguments: two compiled bodies, each called at its own address
    for dt in (np.float32, np.float64, np.float32):
        x = np.arange(9, dtype=dt) / 3
        out = np.zeros(9, dt)
        _count.parallel(9, x, out, dt(1.5))
        np.testing.assert_allclose(out, x * 1.5 + np.arange(9), rtol=1e-6)
    assert len(_count.body.overloads) >= 2


def test_a_chunk_that_raises_raises_its_error():
    x = np.ones(50, np.float32)
    x[37] = -1
    with pytest.raises(ValueError, match="negative input"):
        _count.parallel(50, x, np.zeros(50, np.float32), np.float32(1))
    with pytest.raises(ValueError, match="negative input"):
        _count.serial(50, x, np.zeros(50, np.float32), np.float32(1))


def test_bound_runs_reuse_the_entry_looked_up_once():
    """Chunks.bound: the entry for these argument types looked up at bind time; later calls with other
    arrays of the same types run every chunk once, and a chunk's error still surfaces."""
    n = 40
    run = _count.bound(np.zeros(n, np.float32), np.zeros(n, np.float32), np.float32(1))
    for k in (1.0, 2.5):
        x = np.arange(n, dtype=np.float32)
        out = np.zeros(n, np.float32)
        run(n, x, out, np.float32(k))
        np.testing.assert_allclose(out, x * k + np.arange(n))
    x[5] = -1
    with pytest.raises(ValueError, match="negative input"):
        run(n, x, np.zeros(n, np.float32), np.float32(1))
