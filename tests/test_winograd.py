"""runtime/kernels/winograd.py: 3x3 stride-1 convolutions by F(2x2, 3x3), against a float64 direct
reference (tests/test_conv_direct.py's), serial and parallel, and the paths that choose it."""
import numpy as np
import pytest

from edgetorch._native import simd
from edgetorch.runtime.kernels import conv as cv
from edgetorch.runtime.kernels import winograd

from .test_conv_direct import _guarded, reference

pytestmark = pytest.mark.skipif(not simd.HAVE_AVX512, reason="needs AVX-512F (masked loads and stores)")


def _ro(a):
    a.flags.writeable = False
    return a


def _case(n, c, o, h, w, seed=0):
    rng = np.random.default_rng(seed + n * c * o + h * w)
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    wt = _ro(rng.standard_normal((o, c, 3, 3)).astype(np.float32))
    b = _ro(rng.standard_normal(o).astype(np.float32))
    r = rng.standard_normal((n, o, h, w)).astype(np.float32)
    return x, wt, b, r


def _close(out, want, c):
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=2e-5 * np.sqrt(9 * c) * np.abs(want).max() ** 0.5)


@pytest.mark.parametrize("n,c,o,h,w", [
    (1, 3, 16, 32, 32), (2, 16, 16, 32, 32), (1, 32, 32, 16, 16), (3, 64, 64, 8, 8),     # ResNet-8's layers
    (1, 1, 8, 2, 16),            # one tile row; a single input channel
    (1, 3, 8, 2, 8),             # four tiles: a group's lone vector, mostly empty
    (3, 5, 24, 6, 48),           # 24 tiles a row: a vector's halves in two tile rows, partial groups
    (2, 3, 16, 4, 24),           # 8-lane pieces (W % 16 != 0), groups across images
    (1, 8, 8, 6, 8),             # 12 tiles: a vector's last quarter past the batch's last tile
    (5, 7, 40, 10, 16), (2, 64, 8, 4, 16), (1, 64, 64, 8, 8),     # output-channel ranges split (b1)
    (1, 3, 8, 4, 16),            # F(4x4): one tile row, one piece a vector
    (3, 5, 16, 12, 48),          # F(4x4): 3 pieces a tile row, vectors across rows and images
    (1, 2, 8, 8, 32), (2, 24, 16, 16, 16),
    (3, 5, 24, 8, 8), (1, 1, 8, 16, 8)])     # F(4x4) 8 wide: pieces of 2 x 2 tiles (two tile rows)
@pytest.mark.parametrize("relu", [False, True])
def test_winograd_matches_the_reference(n, c, o, h, w, relu):
    """Bias or none, ReLU or not, serial and parallel, F(2x2, 3x3) and (where the height is a
    multiple of 4 and the width of 16) F(4x4, 3x3): against a float64 direct convolution."""
    x, wt, b, _ = _case(n, c, o, h, w)
    assert winograd.applies(x.shape, wt.shape, (n, o, h, w), (1, 1), (1, 1), (1, 1), 1)
    for f4 in (False, True) if winograd._f4_fits(h, w) else (False,):
        for bias in (None, b):
            want = reference(x, wt, np.zeros(o, np.float32) if bias is None else bias, 1, (1, 1))
            want = np.maximum(want, 0) if relu else want
            for par in (False, True):
                out = np.full(want.shape, np.nan, np.float32)
                winograd.run(out, x, wt, bias, relu, par=par, f4=f4)
                _close(out, want, c)


@pytest.mark.parametrize("n,c,o,h,w", [(2, 16, 16, 32, 32), (3, 5, 24, 6, 48), (1, 8, 8, 6, 8), (1, 64, 64, 8, 8),
                                       (3, 4, 8, 4, 48), (2, 8, 16, 16, 8)])
def test_winograd_adds_a_residual(n, c, o, h, w):
    """relu(conv + b + r) in the output transform's stores (16-lane rows and 8-lane pieces, partial
    vectors); r without the ReLU, or of another shape, is refused."""
    x, wt, b, r = _case(n, c, o, h, w, seed=1)
    want = np.maximum(reference(x, wt, b, 1, (1, 1)) + r, 0)
    for f4 in (False, True) if winograd._f4_fits(h, w) else (False,):
        for par in (False, True):
            out = np.full(want.shape, np.nan, np.float32)
            winograd.run(out, x, wt, b, True, r=r, par=par, f4=f4)
            _close(out, want, c)
    with pytest.raises(ValueError, match="residual"):
        winograd.run(out, x, wt, b, False, r=r)


@pytest.mark.parametrize("n,c,o,h,w", [(1, 3, 16, 32, 32), (2, 5, 8, 6, 48), (1, 4, 8, 6, 8), (3, 2, 16, 4, 24),
                                       (3, 2, 8, 4, 16), (1, 3, 8, 8, 48), (2, 3, 8, 8, 8)])
def test_winograd_touches_nothing_outside_its_arrays(n, c, o, h, w):
    """Input, residual and output each placed against unreadable pages (before and after): the masked
    loads skip the padding above, below and beside the image, and the masked stores the tiles past the
    batch's last, so the kernel runs and matches the reference instead of faulting."""
    rng = np.random.default_rng(n + c + h)
    wt = _ro(rng.standard_normal((o, c, 3, 3)).astype(np.float32))
    b = _ro(rng.standard_normal(o).astype(np.float32))
    for at_end in (True, False):
        x = _guarded((n, c, h, w), at_end)
        x[...] = rng.standard_normal(x.shape)
        r = _guarded((n, o, h, w), not at_end)
        r[...] = rng.standard_normal(r.shape)
        want = np.maximum(reference(x, wt, b, 1, (1, 1)) + r, 0)
        for f4 in (False, True) if winograd._f4_fits(h, w) else (False,):
            for par in (False, True):
                out = _guarded((n, o, h, w), at_end)
                out[...] = np.nan
                winograd.run(out, x, wt, b, True, r=r, par=par, f4=f4)
                _close(out, want, c)


def test_winograd_declines_what_it_does_not_cover():
    ok = winograd.applies
    x, w3 = (1, 4, 8, 16), (8, 4, 3, 3)
    assert ok(x, w3, (1, 8, 8, 16), (1, 1), (1, 1), (1, 1), 1)
    assert not ok(x, w3, (1, 8, 4, 8), (2, 2), (1, 1), (1, 1), 1)                    # strided
    assert not ok(x, w3, (1, 8, 6, 14), (1, 1), (0, 0), (1, 1), 1)                   # unpadded
    assert not ok(x, w3, (1, 8, 8, 16), (1, 1), (1, 1), (2, 2), 1)                   # dilated
    assert not ok(x, (8, 2, 3, 3), (1, 8, 8, 16), (1, 1), (1, 1), (1, 1), 2)          # grouped
    assert not ok(x, (12, 4, 3, 3), (1, 12, 8, 16), (1, 1), (1, 1), (1, 1), 1)        # 12 output channels
    assert not ok(x, (8, 4, 5, 5), (1, 8, 8, 16), (1, 1), (2, 2), (1, 1), 1)          # 5x5
    assert not ok((1, 4, 7, 16), w3, (1, 8, 7, 16), (1, 1), (1, 1), (1, 1), 1)        # odd height
    assert not ok((1, 4, 8, 12), w3, (1, 8, 8, 12), (1, 1), (1, 1), (1, 1), 1)        # 12 wide
    assert not ok(x, w3, (1, 8, 8, 8), (1, 1), (1, 1), (1, 1), 1)                    # not the plan's output


def test_conv_paths_take_winograd():
    """conv2d_into and the prepared conv2d (plain, and fused with a residual add + ReLU) run these
    shapes on winograd.py; an output overlapping the input is left to the other kernels."""
    from edgetorch.runtime.kernels.registry import PREPARE, PREPARE_GROUP
    x, wt, b, r = _case(2, 16, 16, 8, 16)
    want = reference(x, wt, b, 1, (1, 1))
    calls = []
    kern = winograd._plan(x.shape, wt.shape)[3]
    assert kern is winograd._WINO4                          # 8 x 16: F(4x4, 3x3)
    real = kern.serial, kern.parallel
    try:
        kern.serial = lambda *a: calls.append(1) or real[0](*a)
        kern.parallel = lambda *a: calls.append(1) or real[1](*a)
        out = np.full(want.shape, np.nan, np.float32)
        assert cv.conv2d_into(out, x, wt, b, (1, 1), (1, 1), (1, 1), 1, relu=True)
        _close(out, np.maximum(want, 0), 16)
        out = np.full(want.shape, np.nan, np.float32)
        run = PREPARE["conv2d"](out, x, wt, b, stride=(1, 1), padding=(1, 1))
        run(out, x, wt, b)
        _close(out, want, 16)
        c_out, out = np.full(want.shape, np.nan, np.float32), np.full(want.shape, np.nan, np.float32)
        run = PREPARE_GROUP[("conv2d", "add_relu")]([c_out, out], [[x, wt, b], [c_out, r]],
                                                     [dict(stride=(1, 1), padding=(1, 1)), {}])
        run(out, x, wt, b, r)
        _close(out, np.maximum(want + r, 0), 16)
        assert np.isnan(c_out).all()
        assert len(calls) == 3
        # a computed (writable) weight, as an int8-weight program's dequantized one: not transformed
        # again every call, the row kernels take it
        out = np.full(want.shape, np.nan, np.float32)
        assert not cv.conv2d_into(out, x, wt.copy(), b, (1, 1), (1, 1), (1, 1), 1)
        _close(out, want, 16)
        assert len(calls) == 3
        same = np.zeros((2, 16, 8, 16), np.float32)          # output = input: not on winograd.py
        assert not cv._winograd(same, same, wt.shape, (1, 1), (1, 1), (1, 1), 1)
    finally:
        kern.serial, kern.parallel = real
    assert winograd._plan((1, 16, 6, 16), wt.shape)[3] is winograd._WINO[16]         # F(2x2): height 6
    assert winograd._plan((1, 16, 8, 8), wt.shape)[3] is winograd._WINO[8]           # 4 tiles: F(2x2)
    assert winograd._plan((4, 16, 8, 8), wt.shape)[3] is winograd._WINO4N            # 16 tiles: F(4x4)
    assert winograd._plan((4, 16, 12, 8), wt.shape)[3] is winograd._WINO[8]          # 12 high: F(2x2)
    with pytest.raises(ValueError, match="F\\(4x4"):
        winograd.run(np.empty((1, 16, 6, 16), np.float32), np.zeros((1, 16, 6, 16), np.float32), wt, b, False,
                     f4=True)


def test_weight_transform_is_lavin_and_gray():
    """pack_weight's U = G g G^T: a 1D check of F(2, 3) and F(4, 3) themselves (y = A^T [(G g) *
    (B^T d)], with the B^T and A^T the kernels hard-code) on random data, and U's layouts (16 or 36
    places, O / 8, C, 8)."""
    rng = np.random.default_rng(3)
    g, d = rng.standard_normal(3), rng.standard_normal(4)
    bt = np.array([[1, 0, -1, 0], [0, 1, 1, 0], [0, -1, 1, 0], [0, 1, 0, -1]], float)
    at = np.array([[1, 1, 1, 0], [0, 1, -1, -1]], float)
    np.testing.assert_allclose(at @ ((winograd._G @ g) * (bt @ d)), [d[:3] @ g, d[1:] @ g])
    w = rng.standard_normal((16, 3, 3, 3)).astype(np.float32)
    u = winograd.pack_weight(w)
    assert u.shape == (16, 2, 3, 8) and u.dtype == np.float32
    full = np.einsum("ki,ocij,lj->klco", winograd._G, w.astype(np.float64), winograd._G)
    np.testing.assert_allclose(u[4 * 1 + 2, 1, 2, 5], full[1, 2, 2, 13], rtol=1e-6)
    g, d = rng.standard_normal(3), rng.standard_normal(6)
    bt = np.array([[4, 0, -5, 0, 1, 0], [0, -4, -4, 1, 1, 0], [0, 4, -4, -1, 1, 0], [0, -2, -1, 2, 1, 0],
                   [0, 2, -1, -2, 1, 0], [0, 4, 0, -5, 0, 1]], float)
    at = np.array([[1, 1, 1, 1, 1, 0], [0, 1, -1, 2, -2, 0], [0, 1, 1, 4, 4, 0], [0, 1, -1, 8, -8, 1]], float)
    np.testing.assert_allclose(at @ ((winograd._G4 @ g) * (bt @ d)), [d[i:i + 3] @ g for i in range(4)])
    assert (at[:, 1] == 1).all()                 # the bias folded into place (1, 1) reaches every output
    u = winograd.pack_weight4(w)
    assert u.shape == (36, 2, 3, 8)
    full = np.einsum("ki,ocij,lj->klco", winograd._G4, w.astype(np.float64), winograd._G4)
    np.testing.assert_allclose(u[6 * 4 + 1, 0, 1, 3], full[4, 1, 1, 3], rtol=1e-6)
