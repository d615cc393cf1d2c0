"""A float32 exp that LLVM vectorizes.

Numba lowers math.exp on float32 to a scalar libm call per element (no SVML
here): the softmax of a MiniLM-shaped layer's scores (196,608 floats) took
longer in a Numba loop than numpy's several vectorized passes.  This one is
the classic range reduction of Cephes' expf (S. L. Moshier): n = round(x /
ln 2), r = x - n ln 2 in two parts (Cody-Waite), exp(r) = 1 + r + r^2 P(r)
with Cephes' degree-5 coefficients, times 2^n built in the exponent bits.
Every step is a plain arithmetic map, so the loop compiles to SIMD code; the
2^n bits go through an int32 scratch row viewed as float32 (Numba has no
scalar bitcast).  Accuracy: within 1.5 ulp of float64 exp over [-87.3, 87.6]
(numpy's float32 exp: 3.3 ulp; tests/test_vmath.py); inputs below -87.3 give
0 (exp underflows there), inputs above 87.6 are clamped to it (2^n must stay
a normal float): the softmax arguments it serves are <= 0.

It is compiled with `contract` and `nsz` only: no `reassoc` (the two-part
subtraction must not be folded back together; callers sum the results in
their own loop) and no `ninf` (masked inputs are -inf and must give 0).
"""
import numpy as np
from numba import njit

_LOG2E = np.float32(1.4426950408889634)
_C1 = np.float32(0.693359375)           # ln 2, high part (exact in a few bits)
_C2 = np.float32(-2.12194440e-4)        # ln 2 - _C1
_P0 = np.float32(1.9875691500e-4)
_P1 = np.float32(1.3981999507e-3)
_P2 = np.float32(8.3334519073e-3)
_P3 = np.float32(4.1665795894e-2)
_P4 = np.float32(1.6666665459e-1)
_P5 = np.float32(5.0000001201e-1)
_LO = np.float32(-87.33654)             # exp below this is under float32's smallest normal
_HI = np.float32(87.6)            # n <= 127


@njit(cache=True, fastmath={"nsz", "contract"})
def exp_shifted(x, m, out, bits):
    """out[j] = exp(x[j] - m) for j < len(x), float32; bits: an int32 scratch of the same length.
    out must not overlap x: LLVM's run-time overlap check then fails and the loop runs scalar
    (8x slower, measured)."""
    n_ = x.shape[0]
    for j in range(n_):
        v = x[j] - m
        v = min(max(v, _LO), _HI)
        n = np.floor(v * _LOG2E + np.float32(0.5))
        r = v - n * _C1
        r = r - n * _C2
        p = ((((_P0 * r + _P1) * r + _P2) * r + _P3) * r + _P4) * r + _P5
        out[j] = (p * r * r + r + np.float32(1.0)) if x[j] - m > _LO else np.float32(0.0)
        bits[j] = np.int32((np.int32(n) + np.int32(127)) << np.int32(23))
    scale = bits[:n_].view(np.float32)
    for j in range(n_):
        out[j] = out[j] * scale[j]
