"""Matrix kernels: BLAS through numpy's matmul writing into the planned output, and a Numba
matrix-vector loop for decode-sized float32 linears."""
import numpy as np
from numba import prange

from ._jit import twins
from .elementwise import gelu_into, sigmoid_into
from .registry import kernel


@kernel("matmul")
def k_matmul(out, a, b):
    if out.ndim == 0:
        out[...] = np.dot(a, b)
    else:
        np.matmul(a, b, out=out)


def _gemv_py(x, w, b, relu, out):
    # x (M, K), w (N, K), out (M, N) float32; b (N,) or (0,); one weight row a task, bias and
    # ReLU applied as each output is written.  Measured against 4 rows a task sharing loads of
    # x: this streams better (15M Llama decode 3.99 -> 2.82 ms, 110M 18.8 -> 17.1 ms)
    M, K = x.shape
    hb = b.shape[0] > 0
    for j in prange(w.shape[0]):
        for m in range(M):
            a = np.float32(0.0)
            for k in range(K):
                a += x[m, k] * w[j, k]
            v = a + b[j] if hb else a
            out[m, j] = max(v, np.float32(0.0)) if relu else v


# decode-sized float32 linears: OpenBLAS's sgemv streamed the 15M Llama's weights at 16 GB/s
# (linears 3.7 ms a token); this loop's decode step is 2.8 ms in all (measured)
_gemv, _gemv_par = twins(_gemv_py, fastmath=True)
GEMV_ROWS = 4
GEMV_PAR = 1 << 16


def _gemm_small_py(x, w, b, relu, out):
    # x (M, K), w (N, K), out (M, N) float32, M small (5..64): blocks of 2 weight rows x 4 rows of
    # x, 8 running sums, so each loaded vector of w serves 4 rows and each of x serves 2
    M, K = x.shape
    N = w.shape[0]
    hb = b.shape[0] > 0
    M4 = (M // 4) * 4
    N2 = N // 2
    for jj in prange(N2 + (N - 2 * N2)):
        if jj < N2:
            j = 2 * jj
            for m in range(0, M4, 4):
                a0 = np.float32(0.0)
                a1 = np.float32(0.0)
                a2 = np.float32(0.0)
                a3 = np.float32(0.0)
                c0 = np.float32(0.0)
                c1 = np.float32(0.0)
                c2 = np.float32(0.0)
                c3 = np.float32(0.0)
                for k in range(K):
                    wv = w[j, k]
                    wu = w[j + 1, k]
                    x0 = x[m, k]
                    x1 = x[m + 1, k]
                    x2 = x[m + 2, k]
                    x3 = x[m + 3, k]
                    a0 += x0 * wv
                    a1 += x1 * wv
                    a2 += x2 * wv
                    a3 += x3 * wv
                    c0 += x0 * wu
                    c1 += x1 * wu
                    c2 += x2 * wu
                    c3 += x3 * wu
                out[m, j] = a0
                out[m + 1, j] = a1
                out[m + 2, j] = a2
                out[m + 3, j] = a3
                out[m, j + 1] = c0
                out[m + 1, j + 1] = c1
                out[m + 2, j + 1] = c2
                out[m + 3, j + 1] = c3
            for m in range(M4, M):
                a0 = np.float32(0.0)
                c0 = np.float32(0.0)
                for k in range(K):
                    a0 += x[m, k] * w[j, k]
                    c0 += x[m, k] * w[j + 1, k]
                out[m, j] = a0
                out[m, j + 1] = c0
            j1 = j + 2
        else:
            j = N - 1                      # odd N: the last weight row alone
            for m in range(M):
                a0 = np.float32(0.0)
                for k in range(K):
                    a0 += x[m, k] * w[j, k]
                out[m, j] = a0
            j1 = N
        for jo in range(j, j1):            # bias and ReLU as this task's columns are done
            for m in range(M):
                v = out[m, jo] + b[jo] if hb else out[m, jo]
                out[m, jo] = max(v, np.float32(0.0)) if relu else v


# 5..64-row float32 linears (MLP batches, short prefills): measured against OpenBLAS here,
# 32x784 @ 784x512 245 vs 285-454 us, 32x512 @ 512x512 105-190 vs 194-315 us, 8 rows 44-83 vs
# 146-257 us, 64 rows 330 vs 390-447 us; at 128 rows they tie, so BLAS keeps those
_gemm_small, _gemm_small_par = twins(_gemm_small_py, fastmath=True)
GEMM_SMALL_ROWS = 64


_NOBIAS = np.zeros(0, np.float32)


def _linear(out, x, w, b, activation=None):
    """out = x @ w.T + b; returns True when the activation was applied too (the GEMV fuses ReLU)."""
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1] or out.shape != x.shape[:-1] + (w.shape[0],):
        raise ValueError(f"linear: input {x.shape}, weight {w.shape} -> {out.shape} do not fit")
    if x.shape[-1] == 0:                          # empty dot products (reshape(-1, 0) is undefined)
        out[...] = 0
    elif x.ndim >= 2 and x.dtype == np.float32 and w.dtype == np.float32 and out.dtype == np.float32 \
            and x.flags.c_contiguous and w.flags.c_contiguous and x.size // x.shape[-1] <= GEMV_ROWS:
        x2 = x.reshape(-1, x.shape[-1])
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"linear: bias {b.shape} for {w.shape[0]} outputs")
        bb = _NOBIAS if b is None else b.astype(np.float32, copy=False)
        relu = activation == "relu"
        (_gemv_par if w.size >= GEMV_PAR else _gemv)(x2, w, bb, relu, out.reshape(-1, w.shape[0]))
        return relu
    elif x.ndim >= 2 and x.dtype == np.float32 and w.dtype == np.float32 and out.dtype == np.float32 \
            and x.flags.c_contiguous and w.flags.c_contiguous and out.flags.c_contiguous \
            and x.size // x.shape[-1] <= GEMM_SMALL_ROWS:
        x2 = x.reshape(-1, x.shape[-1])
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"linear: bias {b.shape} for {w.shape[0]} outputs")
        bb = _NOBIAS if b is None else b.astype(np.float32, copy=False)
        relu = activation == "relu"
        (_gemm_small_par if w.size * x2.shape[0] >= GEMV_PAR else _gemm_small)(
            x2, w, bb, relu, out.reshape(-1, w.shape[0]))
        return relu
    elif x.ndim == 2 or (x.ndim > 2 and x.flags.c_contiguous):
        x2 = x.reshape(-1, x.shape[-1])
        np.matmul(x2, w.T, out=out.reshape(-1, w.shape[0]))
    elif x.ndim == 1:
        np.matmul(x, w.T, out=out)
    else:
        out[...] = np.matmul(x, w.T)
    if b is not None:
        out += b
    return False


@kernel("linear")
def k_linear(out, x, w, b=None):
    _linear(out, x, w, b)


ACTS = {
    "relu": lambda o: np.maximum(o, 0, out=o),
    "silu": lambda o: np.multiply(o, _sig(o), out=o),
    "gelu": lambda o: gelu_into(o, o),          # elementwise: in place is safe
    "gelu_tanh": lambda o: gelu_into(o, o, "tanh"),
    "sigmoid": lambda o: sigmoid_into(o, o.copy()),
    "tanh": lambda o: np.tanh(o, out=o),
}


def _sig(o):
    s = np.empty_like(o)
    sigmoid_into(s, o)
    return s


def apply_activation(out, activation):
    if activation is not None:
        if activation not in ACTS:
            raise ValueError(f"unknown activation {activation!r}; known: {sorted(ACTS)}")
        ACTS[activation](out)


@kernel("fused_linear")
def k_fused_linear(out, x, w, b=None, activation=None):
    if not _linear(out, x, w, b, activation):
        apply_activation(out, activation)


@kernel("einsum")
def k_einsum(out, a, b, equation=""):
    out[...] = np.einsum(equation, a, b, optimize=True)
