"""The direct 3x3 convolution kernels (runtime/kernels/_conv_direct.py, generated) and the
1x1 per-image GEMM path, against a float64 numpy convolution over odd shapes."""
import os
import subprocess
import sys
import threading

import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

import edgetorch.runtime  # noqa: F401  (threading set-up before the kernels load)
from edgetorch.runtime.kernels import conv as cv

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def reference(x, w, b, stride, padding):
    k = w.shape[2]
    xp = np.pad(x.astype(np.float64), ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    win = sliding_window_view(xp, (k, k), axis=(2, 3))[:, :, ::stride, ::stride]
    return np.einsum("nchwij,ocij->nohw", win, w.astype(np.float64)) + b.reshape(1, -1, 1, 1)


def _run(x, w, b, stride, padding, relu):
    oh, ow = (cv._out(x.shape[2 + i], w.shape[2], stride, padding[i], 1) for i in range(2))
    out = np.full((x.shape[0], w.shape[0], oh, ow), np.nan, np.float32)
    applied = cv.conv2d_into(out, x, w, b, (stride, stride), padding, (1, 1), 1, relu=relu)
    return out, applied


SHAPES = [(1, 1, 1, 1, 1), (2, 3, 5, 7, 11), (1, 16, 16, 32, 32), (3, 7, 13, 5, 3), (1, 2, 9, 4, 6),
          (5, 17, 4, 9, 9), (2, 5, 6, 2, 8)]


@pytest.mark.parametrize("stride", [1, 2])
@pytest.mark.parametrize("padding", [(0, 0), (1, 1), (2, 1), (0, 2)])
@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: "x".join(map(str, s)))
def test_direct_3x3_matches_numpy(shape, padding, stride):
    n, c, o, h, w = shape
    if h + 2 * padding[0] < 3 or w + 2 * padding[1] < 3:
        pytest.skip("window larger than the padded input")
    rng = np.random.default_rng(sum(shape) + 10 * stride + padding[0])
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = rng.standard_normal((o, c, 3, 3)).astype(np.float32)
    b = rng.standard_normal(o).astype(np.float32)
    want = reference(x, wt, b, stride, padding)
    for relu in (False, True):
        got, applied = _run(x, wt, b, stride, padding, relu)
        assert applied == relu            # the direct kernels fuse ReLU
        ref = np.maximum(want, 0) if relu else want
        np.testing.assert_allclose(got, ref, rtol=1e-5, atol=1e-5 * (1 + np.abs(want).max()))


@pytest.mark.parametrize("par", [False, True])
def test_serial_and_parallel_copies_agree(par, monkeypatch):
    monkeypatch.setattr(cv, "DIRECT_PAR_MACS", 0 if par else 1 << 62)
    rng = np.random.default_rng(3)
    x = rng.standard_normal((3, 6, 10, 7)).astype(np.float32)
    wt = rng.standard_normal((10, 6, 3, 3)).astype(np.float32)     # 10 channels: two blocks of 4 and a tail
    b = np.zeros(10, np.float32)
    got, _ = _run(x, wt, b, 1, (1, 1), False)
    np.testing.assert_allclose(got, reference(x, wt, b, 1, (1, 1)), rtol=1e-5, atol=1e-4)


def test_direct_path_is_taken_and_buffer_borders_stay_zero(monkeypatch):
    calls = []
    real = cv._direct
    monkeypatch.setattr(cv, "_direct", lambda *a: calls.append(a[4:6]) or real(*a))
    rng = np.random.default_rng(5)
    wt = rng.standard_normal((8, 4, 3, 3)).astype(np.float32)
    b = rng.standard_normal(8).astype(np.float32)
    for s in (1, 2):
        for _ in range(3):           # the padded buffer is reused: stale data would show at the borders
            x = (rng.standard_normal((2, 4, 12, 12)) * 100).astype(np.float32)
            got, _ = _run(x, wt, b, s, (1, 1), False)
            np.testing.assert_allclose(got, reference(x, wt, b, s, (1, 1)), rtol=1e-5, atol=1e-3)
    assert calls == [(3, 1)] * 3 + [(3, 2)] * 3


def test_small_outputs_at_large_batch_take_blas():
    calls = []
    real = cv._direct
    cv_direct, cv._direct = cv._direct, lambda *a: calls.append(1) or real(*a)
    try:
        rng = np.random.default_rng(6)
        x = rng.standard_normal((32, 64, 8, 8)).astype(np.float32)
        wt = rng.standard_normal((64, 64, 3, 3)).astype(np.float32)
        b = rng.standard_normal(64).astype(np.float32)
        got, applied = _run(x, wt, b, 1, (1, 1), True)
    finally:
        cv._direct = cv_direct
    assert not calls and not applied           # BLAS path: the caller applies ReLU
    np.testing.assert_allclose(got, reference(x, wt, b, 1, (1, 1)), rtol=1e-4, atol=1e-3)


@pytest.mark.parametrize("stride", [1, 2, 3])
def test_pointwise_per_image_gemm(stride):
    rng = np.random.default_rng(stride)
    x = rng.standard_normal((3, 5, 9, 7)).astype(np.float32)
    wt = rng.standard_normal((6, 5, 1, 1)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    got, applied = _run(x, wt, b, stride, (0, 0), True)
    assert not applied
    np.testing.assert_allclose(got, reference(x, wt, b, stride, (0, 0)), rtol=1e-5, atol=1e-5)


def test_concurrent_calls_do_not_share_buffers():
    rng = np.random.default_rng(9)
    wt = rng.standard_normal((8, 3, 3, 3)).astype(np.float32)
    b = np.zeros(8, np.float32)
    xs = [rng.standard_normal((2, 3, 16, 16)).astype(np.float32) for _ in range(8)]
    wants = [reference(x, wt, b, 1, (1, 1)) for x in xs]
    errors = []

    def work(i):
        for _ in range(20):
            got, _ = _run(xs[i], wt, b, 1, (1, 1), False)
            if not np.allclose(got, wants[i], rtol=1e-4, atol=1e-4):
                errors.append(i)
    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors


def test_generated_file_is_current():
    r = subprocess.run([sys.executable, os.path.join(ROOT, "tools", "gen_conv_direct.py"), "--check"])
    assert r.returncode == 0, "runtime/kernels/_conv_direct.py differs from tools/gen_conv_direct.py's output"
