"""Elementwise kernels: numpy ufuncs writing into the planned output."""
import math

import numpy as np
from numba import njit, prange

from edgetorch._native.vmath import exp_shifted

from ._jit import twins
from .registry import kernel, preparer


def _binary(name, uf):
    @kernel(name)
    def k(out, a, b):
        uf(a, b, out=out, casting="unsafe")
    k.__name__ = f"k_{name}"
    return k


for _n, _uf in (("add", np.add), ("sub", np.subtract), ("mul", np.multiply), ("div", np.true_divide),
                ("pow", np.power), ("maximum", np.maximum), ("minimum", np.minimum),
                ("floor_divide", np.floor_divide), ("remainder", np.remainder), ("eq", np.equal),
                ("ne", np.not_equal), ("lt", np.less), ("le", np.less_equal), ("gt", np.greater),
                ("ge", np.greater_equal), ("logical_and", np.logical_and), ("logical_or", np.logical_or)):
    _binary(_n, _uf)


def _unary(name, uf):
    @kernel(name)
    def k(out, x):
        uf(x, out=out, casting="unsafe")
    k.__name__ = f"k_{name}"
    return k


for _n, _uf in (("neg", np.negative), ("abs", np.abs), ("sign", np.sign), ("exp", np.exp), ("log", np.log),
                ("sqrt", np.sqrt), ("sin", np.sin), ("cos", np.cos), ("tanh", np.tanh),
                ("logical_not", np.logical_not)):
    _unary(_n, _uf)


@kernel("rsqrt")
def k_rsqrt(out, x):
    np.sqrt(x, out=out)
    np.reciprocal(out, out=out)


@kernel("where")
def k_where(out, c, a, b):
    out[...] = np.where(c, a, b)


@kernel("clamp")
def k_clamp(out, x, min=None, max=None):  # noqa: A002
    np.clip(x, min, max, out=out, casting="unsafe")


@kernel("relu")
def k_relu(out, x):
    np.maximum(x, 0, out=out, casting="unsafe")


def _add_relu_py(a, b, out):
    for i in prange(a.shape[0]):
        v = a[i] + b[i]
        out[i] = v if not v <= 0 else a.dtype.type(0)    # NaN stays NaN, as numpy's maximum keeps it


_add_relu, _add_relu_par = twins(_add_relu_py, fastmath={"nsz", "contract", "arcp", "afn", "reassoc"})


@kernel("add_relu")
def k_add_relu(out, a, b):
    if a.shape != b.shape or out.shape != a.shape:
        raise ValueError(f"add_relu: inputs {a.shape}, {b.shape} -> {out.shape}")
    if a.dtype == b.dtype == out.dtype == np.float32 and a.flags.c_contiguous and b.flags.c_contiguous \
            and out.flags.c_contiguous:
        # one parallel pass (numpy: an add pass and a maximum pass, each on one thread)
        (_add_relu_par if a.size >= 1 << 16 else _add_relu)(a.reshape(-1), b.reshape(-1), out.reshape(-1))
    else:
        np.add(a, b, out=out, casting="unsafe")
        np.maximum(out, 0, out=out)


@kernel("leaky_relu")
def k_leaky_relu(out, x, negative_slope=0.01):
    np.multiply(x, negative_slope, out=out, casting="unsafe")
    np.maximum(x, out, out=out) if negative_slope <= 1 else np.minimum(x, out, out=out)


def sigmoid_into(out, x):
    # exp(-|x|) never overflows; then pick the stable form by sign
    e = np.exp(-np.abs(x))
    np.divide(np.where(x >= 0, 1.0, e), 1.0 + e, out=out, casting="unsafe")


@kernel("sigmoid")
def k_sigmoid(out, x):
    sigmoid_into(out, x)


# error_model="numpy" on the loops below whose divisor changes per element (1 + exp(-|x|) >= 1, the
# erf polynomial's d >= 1: never zero): under Numba's default Python error model each division
# carries a zero check that raises, and LLVM keeps such a loop scalar (a loop-invariant divisor's
# check is hoisted, which is why the others vectorize).  SiLU / SwiGLU (no fastmath) divide in IEEE
# either way, the same results; GELU's fastmath lets LLVM use a reciprocal estimate refined by a
# Newton step once the loop vectorizes.  Serial copies (the parallel ones' outlined bodies were
# vectorized already): a 128 x 1536 GELU (erf) 697 -> 65 us on one thread, a decode step's SwiGLU
# of 2048 2.8 -> 1.4 us, of 128 x 1536 244 -> 102 us.
NO_RAISE = "numpy"


@njit(cache=True, error_model=NO_RAISE)
def _silu(x, out):
    # x * sigmoid(x) in the input's precision; exp only of -|x| (never overflows); no fastmath,
    # so the division and exp stay IEEE
    for i in range(x.shape[0]):
        v = x[i]
        e = math.exp(-abs(v))
        out[i] = v / (1.0 + e) if v >= 0 else v * e / (1.0 + e)


@njit(cache=True, error_model=NO_RAISE)
def _swiglu(g, u, out):
    for i in range(g.shape[0]):
        v = g[i]
        e = math.exp(-abs(v))
        out[i] = (v / (1.0 + e) if v >= 0 else v * e / (1.0 + e)) * u[i]


def _silu32_py(g, u, gated, out):
    # float32 silu(g) (times u when gated) with the vectorized exp: chunks of 2048, each negates
    # its gate into a scratch row so exp_shifted (which must not write over its input) gives
    # exp(-g); g / (1 + exp(-g)) is exact in both tails (exp underflows to 0 for g > 87, and is
    # clamped at exp(87.6) for g < -87.6, where the result is ~0 either way)
    n = g.shape[0]
    CH = 2048
    for c in prange((n + CH - 1) // CH):
        lo = c * CH
        m = min(n, lo + CH) - lo
        t = np.empty(m, np.float32)
        e = np.empty(m, np.float32)
        bits = np.empty(m, np.int32)
        for i in range(m):
            t[i] = -g[lo + i]
        exp_shifted(t, np.float32(0.0), e, bits)
        for i in range(m):
            v = g[lo + i] / (np.float32(1.0) + e[i])
            out[lo + i] = v * u[lo + i] if gated else v


# the 64x768 SwiGLU of a 64-token Llama prefill: 376 -> 88 us (math.exp per element, serial ->
# the vectorized exp of edgetorch/_native/vmath.py, chunks in parallel)
_silu32, _silu32_par = twins(_silu32_py, error_model=NO_RAISE)
SILU_PAR = 1 << 15


def _silu_any(out, g, u):
    """silu(g) (* u) into out for contiguous float arrays of one dtype; False if not handled."""
    if g.dtype not in (np.float32, np.float64) or out.dtype != g.dtype or out.shape != g.shape \
            or not (g.flags.c_contiguous and out.flags.c_contiguous) \
            or (u is not None and (u.dtype != g.dtype or not u.flags.c_contiguous)):
        return False
    g1, o1 = g.reshape(-1), out.reshape(-1)
    u1 = g1 if u is None else u.reshape(-1)
    if g.dtype == np.float32:
        (_silu32_par if g1.shape[0] >= SILU_PAR else _silu32)(g1, u1, u is not None, o1)
    elif u is None:
        _silu(g1, o1)
    else:
        _swiglu(g1, u1, o1)
    return True


@kernel("swiglu")
def k_swiglu(out, g, u):
    if g.shape != u.shape or out.shape != g.shape:
        raise ValueError(f"swiglu: gate {g.shape}, up {u.shape} -> {out.shape}")
    if _silu_any(out, g, u):
        return
    k_silu(out, g)
    out *= u


@preparer("swiglu")
def p_swiglu(out, g, u):
    if not (g.shape == u.shape == out.shape and g.dtype == u.dtype == out.dtype == np.float32
            and g.flags.c_contiguous and u.flags.c_contiguous and out.flags.c_contiguous):
        return None
    kern = _silu32_par if g.size >= SILU_PAR else _silu32
    return lambda out, g, u: kern(g.reshape(-1), u.reshape(-1), True, out.reshape(-1))


@kernel("silu")
def k_silu(out, x):
    if _silu_any(out, x, None):                    # one pass instead of five numpy temporaries
        return
    sigmoid_into(out, x)
    np.multiply(out, x, out=out)


_SQ2PI = math.sqrt(2.0 / math.pi)


def gelu_into(out, x, approximate="none"):
    if x.dtype in (np.float32, np.float64) and out.dtype == x.dtype and out.shape == x.shape:
        # one Numba pass (math.erf / math.tanh per element) instead of numpy temporaries
        xf = x.reshape(-1) if x.flags.c_contiguous else np.ascontiguousarray(x).reshape(-1)
        (_gelu_tanh if approximate == "tanh" else _gelu_erf)(xf, out.reshape(-1))
        return
    if approximate == "tanh":
        t = x * x
        t *= 0.044715 * x
        t += x
        t *= _SQ2PI
        np.tanh(t, out=t)
        t += 1.0
        t *= x
        np.multiply(t, 0.5, out=out, casting="unsafe")
    else:
        from scipy.special import erf   # numba's np.dot needs scipy anyway
        np.multiply(0.5 * x, 1.0 + erf(x * (1.0 / math.sqrt(2.0))), out=out, casting="unsafe")


@kernel("gelu")
def k_gelu(out, x, approximate="none"):
    gelu_into(out, x, approximate)


@kernel("softplus")
def k_softplus(out, x, beta=1.0, threshold=20.0):
    bx = x * beta
    y = (np.maximum(bx, 0) + np.log1p(np.exp(-np.abs(bx)))) / beta
    out[...] = np.where(bx > threshold, x, y)


@kernel("to")
def k_to(out, x, dtype=None):
    out[...] = x


@kernel("clone")
def k_clone(out, x):
    out[...] = x


@kernel("arange")
def k_arange(out, end=None, start=0, step=1, dtype=None):
    # sized by the planned output, never by the (untrusted) attributes
    np.multiply(np.arange(out.shape[0]), step, out=out, casting="unsafe")
    out += start


@kernel("full")
def k_full(out, shape=None, value=0.0, dtype=None):
    out.fill(value)


# A&S 7.1.28's coefficients as float32 constants: float32 inputs then compute in float32 lanes (with
# float64 literals the loop ran in float64, half the lanes and a double division: 128 x 1536 80 ->
# ~25 us); float64 inputs promote them, as before
_A = tuple(np.float32(c) for c in (0.0705230784, 0.0422820123, 0.0092705272, 0.0001520143, 0.0002765672,
                                   0.0000430638))
_R2, _Z6, _ONE, _HALF = np.float32(0.7071067811865476), np.float32(6.0), np.float32(1.0), np.float32(0.5)


def _gelu_erf_py(x, out):
    # erf by Abramowitz & Stegun 7.1.28, 1 - (1 + a1 z + ... + a6 z^6)^-16 (|error| <= 3e-7): only
    # multiplies and one division, which LLVM vectorizes under NO_RAISE (no SVML here: exp and
    # math.erf stay scalar libm calls; math.erf took 1.7 ms on a 128x1536 activation, 6 of which
    # were a third of a MiniLM forward).  z is clamped at 6, where erf is 1 to double precision, so d^16 stays finite.
    a1, a2, a3, a4, a5, a6 = _A
    for i in prange(x.shape[0]):
        v = x[i]
        z = min(abs(v) * _R2, _Z6)
        d = _ONE + z * (a1 + z * (a2 + z * (a3 + z * (a4 + z * (a5 + z * a6)))))
        d = d * d
        d = d * d
        d = d * d
        d = d * d
        e = _ONE - _ONE / d
        out[i] = _HALF * v * (_ONE + (e if v >= 0 else -e))


def _gelu_tanh_py(x, out):
    for i in prange(x.shape[0]):
        v = x[i]
        out[i] = 0.5 * v * (1.0 + math.tanh(0.7978845608028654 * (v + 0.044715 * v * v * v)))


_gelu_erf_s, _gelu_erf_p = twins(_gelu_erf_py, fastmath=True, error_model=NO_RAISE)
_gelu_tanh_s, _gelu_tanh_p = twins(_gelu_tanh_py, fastmath=True)
GELU_PAR = 1 << 15


def _gelu_erf(x, out):
    (_gelu_erf_p if x.shape[0] >= GELU_PAR else _gelu_erf_s)(x, out)


def _gelu_tanh(x, out):
    (_gelu_tanh_p if x.shape[0] >= GELU_PAR else _gelu_tanh_s)(x, out)
