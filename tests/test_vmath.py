"""The vectorized float32 exp (edgetorch/_native/vmath.py) and the attention softmax that uses it."""
import numpy as np
import pytest

import edgetorch.runtime  # noqa: F401
from edgetorch._native.vmath import exp_shifted
from edgetorch.runtime.kernels import attention


def _exp(x, m=0.0):
    out = np.empty_like(x)
    exp_shifted(x, np.float32(m), out, np.empty(x.size, np.int32))
    return out


def test_exp_within_two_ulp_over_its_domain():
    x = np.linspace(-87.3, 87.6, 2_000_003).astype(np.float32)
    rel = np.abs(_exp(x).astype(np.float64) / np.exp(x.astype(np.float64)) - 1)
    assert rel.max() < 2 * 2.0 ** -23


@pytest.mark.parametrize("n", [1, 7, 8, 9, 31, 128, 1001])
def test_exp_shift_odd_lengths_and_underflow(n):
    rng = np.random.default_rng(n)
    x = (rng.standard_normal(n) * 30).astype(np.float32)
    x[::5] = -np.inf                                   # masked scores
    m = np.float32(x[np.isfinite(x)].max()) if np.isfinite(x).any() else np.float32(0)
    got = _exp(x, m)
    want = np.exp((x - m).astype(np.float64))          # the float32 difference is exact input
    want[want < 1.2e-38] = 0                           # below the smallest normal: 0
    np.testing.assert_allclose(got, want, rtol=3e-7, atol=0)
    assert np.all(got[::5] == 0)


def _softmax_ref(s, bias, scale):
    z = s.astype(np.float64) * scale + bias
    m = z.max(-1, keepdims=True)
    out = np.zeros_like(z)
    ok = np.isfinite(m[..., 0])
    e = np.exp(z[ok] - m[ok])
    out[ok] = e / e.sum(-1, keepdims=True)
    return out


@pytest.mark.parametrize("par", [False, True])
def test_attention_softmax_kernel(par):
    rng = np.random.default_rng(1)
    s = rng.standard_normal((2, 3, 5, 37)).astype(np.float32)
    bias = np.zeros((2, 1, 1, 37), np.float32)
    bias[0, 0, 0, 30:] = -np.inf                       # padding mask of the first sequence
    bias[1, 0, 0, :] = -np.inf                         # a fully masked row gives zeros
    want = _softmax_ref(s, np.broadcast_to(bias, s.shape), 0.3)
    (attention._softmax_scores_par if par else attention._softmax_scores)(s, np.broadcast_to(bias, s.shape), np.float32(0.3))
    np.testing.assert_allclose(s, want, rtol=1e-5, atol=1e-7)
    assert np.all(s[1] == 0)


@pytest.mark.parametrize("n", [1, 7, 2047, 2048, 2049, 70001])
def test_silu_and_swiglu_kernels_float32(n):
    """The runtime's float32 SiLU/SwiGLU through the vectorized exp, across chunk edges and tails."""
    from edgetorch.runtime.kernels.elementwise import k_silu, k_swiglu
    rng = np.random.default_rng(n)
    g = (rng.standard_normal(n) * 12).astype(np.float32)
    g[:min(n, 4)] = [100.0, -100.0, 0.0, -87.9][:min(n, 4)]
    u = rng.standard_normal(n).astype(np.float32)
    g64 = g.astype(np.float64)
    silu = g64 / (1 + np.exp(-g64))
    out = np.empty_like(g)
    k_silu(out, g)
    np.testing.assert_allclose(out, silu, rtol=2e-7, atol=1e-30)
    k_swiglu(out, g, u)
    np.testing.assert_allclose(out, silu * u, rtol=3e-7, atol=1e-30)


@pytest.mark.parametrize("masked_from", [12, 1, 0])
def test_attention_drops_keys_masked_for_every_query(masked_from):
    """A KV cache's unused tail (masked for all queries) is cut before the matmuls; same result."""
    from edgetorch.ops import REGISTRY
    from edgetorch.runtime.kernels import KERNELS
    rng = np.random.default_rng(masked_from)
    q = rng.standard_normal((1, 2, 9, 8)).astype(np.float32)
    k = rng.standard_normal((1, 2, 20, 8)).astype(np.float32)
    v = rng.standard_normal((1, 2, 20, 8)).astype(np.float32)
    mask = np.tril(np.ones((9, 20), bool), k=3)
    mask[:, masked_from:] = False
    mask = mask.reshape(1, 1, 9, 20)
    want = np.asarray(REGISTRY["scaled_dot_product_attention"].forward(q, k, v, mask))
    out = np.full(want.shape, np.nan, np.float32)
    KERNELS["scaled_dot_product_attention"](out, q, k, v, mask)
    np.testing.assert_allclose(out, np.nan_to_num(want), rtol=1e-5, atol=1e-6)
