"""Matrix kernels: BLAS through numpy's matmul writing into the planned output; Numba GEMVs for
decode-sized float32 linears (on constant weights packed in 32-row panels, or a row loop), a small
GEMM, and the GEMV chain that runs a batch-1 MLP's linears as one call."""
import numba
import numpy as np
from numba import njit, prange

from edgetorch._native import simd
from edgetorch._native.simd import wfadd, wfload, wfload_mask, wfma, wfmax, wfsplat, wfstore_mask, wfzero

from . import sgemm
from ._derived import derived
from ._jit import twins
from .elementwise import gelu_into, sigmoid_into
from .registry import group_preparer, kernel, preparer


@kernel("matmul")
def k_matmul(out, a, b):
    if out.ndim == 0:
        out[...] = np.dot(a, b)
    else:
        np.matmul(a, b, out=out)


def _gemv_py(x, w, b, relu, out):
    # x (M, K), w (N, K), out (M, N) float32; b (N,) or (0,); one weight row a task, bias and
    # ReLU applied as each output is written.  Measured against 4 rows a task sharing loads of
    # x: this streams better (15M Llama decode 3.99 -> 2.82 ms, 110M 18.8 -> 17.1 ms). Two rows a
    # task is faster on a cache-hot matrix alone (512x784: 13.3 vs 15.2 us) but slower from DRAM
    # (32000x288: 1.3 vs 0.64 ms) and in the 15M decode (2.6-3.0 vs 2.1-2.6 ms): not taken.
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


def _panel_dots_py(x, m, p, K, k0, k1, t0, t1, b, relu, out, row):
    # For panels t0..t1-1 of p (a weight (N, K) packed by sgemm.pack_wide: panels of 32 weight rows
    # stored k-major, p[(P K + k) 32 + c] = w[32 P + c, k], zeros past N, the layout the GEMM path of
    # prefills packs too: one copy serves both), out[row, 32 P + c] = the sum over columns k0..k1-1
    # of p's values times x[m, k], plus b (unless empty), ReLU'd if relu; out (R, N) float32.  Each
    # step loads 32 weights of one column, contiguous, times x's broadcast value; 4 columns a step
    # into 8 accumulators (FMA latency hidden): the 32 outputs build in lanes, no horizontal sums,
    # and a thread reads one sequential stream.  Bias, ReLU and a last panel's tail are masked.
    N = out.shape[1]
    k4 = k0 + (k1 - k0) // 4 * 4
    hb = b.shape[0] > 0
    for t in range(t0, t1):
        base = t * K * 32
        j = 32 * t
        n = N - j
        m0 = (1 << min(16, n)) - 1               # the panel's live columns: lanes of lo, then hi
        m1 = (1 << min(16, n - 16)) - 1 if n > 16 else 0
        c0 = wfzero()
        c1 = wfzero()
        c2 = wfzero()
        c3 = wfzero()
        c4 = wfzero()
        c5 = wfzero()
        c6 = wfzero()
        c7 = wfzero()
        for k in range(k0, k4, 4):
            o = base + 32 * k
            s0 = wfsplat(x[m, k])
            s1 = wfsplat(x[m, k + 1])
            s2 = wfsplat(x[m, k + 2])
            s3 = wfsplat(x[m, k + 3])
            c0 = wfma(wfload(p, o), s0, c0)
            c1 = wfma(wfload(p, o + 16), s0, c1)
            c2 = wfma(wfload(p, o + 32), s1, c2)
            c3 = wfma(wfload(p, o + 48), s1, c3)
            c4 = wfma(wfload(p, o + 64), s2, c4)
            c5 = wfma(wfload(p, o + 80), s2, c5)
            c6 = wfma(wfload(p, o + 96), s3, c6)
            c7 = wfma(wfload(p, o + 112), s3, c7)
        for k in range(k4, k1):
            o = base + 32 * k
            s0 = wfsplat(x[m, k])
            c0 = wfma(wfload(p, o), s0, c0)
            c1 = wfma(wfload(p, o + 16), s0, c1)
        lo = wfadd(wfadd(c0, c2), wfadd(c4, c6))
        hi = wfadd(wfadd(c1, c3), wfadd(c5, c7))
        if hb:
            lo = wfadd(lo, wfload_mask(b, j, m0))
            hi = wfadd(hi, wfload_mask(b, j + 16, m1))
        if relu:
            lo = wfmax(lo, wfzero())
            hi = wfmax(hi, wfzero())
        wfstore_mask(out, row * N + j, lo, m0)
        wfstore_mask(out, row * N + j + 16, hi, m1)


_panel_dots = njit(fastmath=True, inline="always")(_panel_dots_py)


def _gemv_panels_py(x, p, b, relu, out):
    # x (M, K), out (M, N) float32, p packed by sgemm.pack_wide (_panel_dots_py); a task is a panel.
    # Against _gemv_py (rows: per-row horizontal sums, LLVM's remainder loops), alternating rounds,
    # arrays alone: 32000 x 288 from DRAM 814 -> 641 us, 4096 x 4096 2257 -> 1689 us; in programs
    # (in-process A/B) the 110M float32 Llama's decode step 17.3 -> 15.4 and 16.9 -> 15.3 ms, 15M
    # 2.04 -> 2.04 and 2.03 -> 1.94 ms, the batch-1 MLP unchanged (its weights come from L3 either way).
    M, K = x.shape
    N = out.shape[1]
    for t in prange((N + 31) // 32):
        for m in range(M):
            _panel_dots(x, m, p, K, 0, K, t, t + 1, b, relu, out, m)


_gemv_panels, _gemv_panels_par = twins(_gemv_panels_py, fastmath=True)


def _gemv_chain_py(x, p1, b1, relu1, h, p2, b2, relu2, part, out, w3, b3, relu3, out3):
    # Two or three GEMVs in a row, out = act2(act1(x @ w1.T + b1) @ w2.T + b2) and, unless w3 has no
    # rows, out3 = act3(out @ w3.T + b3), in one call and one parallel region: task t (of T =
    # part.shape[0]) computes its share of the hidden values h (w1's panels q0..q1-1: rows lo..hi-1,
    # the whole dot over x), then multiplies just those by w2's columns lo..hi-1 for every output
    # (part[t] = h[:, lo:hi] @ w2[:, lo:hi].T): a task reads only the hidden values it wrote, so no
    # barrier is needed between the layers (Megatron-LM's column- then row-parallel linear pair).
    # The partial sums are added after the region, with b2 and act2; then the small third layer (a
    # classifier head, row-major w3), serial.  p1, p2 packed by sgemm.pack_wide; h (M, N1) and part
    # (T, M, N2) scratch, out too when there is a third layer.  (Hinting w3 into the cache during the
    # region, by the task that runs the head or by another, measured no faster.)
    M, K1 = x.shape
    N1 = h.shape[1]
    N2 = out.shape[1]
    T = part.shape[0]
    P1 = (N1 + 31) // 32
    P2 = (N2 + 31) // 32
    nob = b2[:0]
    for t in prange(T):
        q0 = t * P1 // T
        q1 = (t + 1) * P1 // T
        lo = min(32 * q0, N1)
        hi = min(32 * q1, N1)
        for m in range(M):
            _panel_dots(x, m, p1, K1, 0, K1, q0, q1, b1, relu1, h, m)
            _panel_dots(h, m, p2, N1, lo, hi, 0, P2, nob, False, part[t], m)
    hb = b2.shape[0] > 0
    for m in range(M):
        for n in range(N2):
            a = part[0, m, n]
            for t in range(1, T):
                a += part[t, m, n]
            if hb:
                a += b2[n]
            out[m, n] = max(a, np.float32(0.0)) if relu2 else a
    N3 = w3.shape[0]
    hb3 = b3.shape[0] > 0
    for m in range(M):
        for j in range(N3):
            a = np.float32(0.0)
            for k in range(N2):
                a += out[m, k] * w3[j, k]
            if hb3:
                a += b3[j]
            out3[m, j] = max(a, np.float32(0.0)) if relu3 else a


_gemv_chain = twins(_gemv_chain_py, fastmath=True)[1]


def _panels_pay(n):
    """Whether n weight rows fill their 32-row panels to 3/4 or more: the panel kernel reads the
    zero rows too (a 10-way classifier head read 64 KB for its 20: 2.4 us after the MLP's hidden
    layers, the row loop 0.7 us)."""
    return 4 * n >= 3 * (-(-n // 32) * 32)


def _gemv_plan(w):
    """(kernel, weight) for the float32 GEMV out = x @ w.T + b of <= GEMV_ROWS rows, called as
    kernel(x2, weight, b, relu, o2): the panel kernel on w packed once (sgemm.pack_wide) where
    AVX-512 and w is a constant (read-only: a program's), else the row loop on w itself; serial
    below GEMV_PAR weights."""
    par = w.shape[0] * w.shape[1] >= GEMV_PAR
    if simd.HAVE_AVX512 and not w.flags.writeable and _panels_pay(w.shape[0]):
        return (_gemv_panels_par if par else _gemv_panels), derived(w, "sgemm_wide", sgemm.pack_wide)[0]
    return (_gemv_par if par else _gemv), w


def _gemm_small_py(x, w, b, relu, out):
    # x (M, K), w (N, K), out (M, N) float32, M small (5..64): blocks of 4 weight rows x 4 rows of
    # x, 16 running sums (each vectorized along K), so every loaded vector serves 4 products;
    # a task is 4 weight rows (their 6-24 KB stay in L1 while x streams from L2) or a tail row
    M, K = x.shape
    N = w.shape[0]
    hb = b.shape[0] > 0
    M4 = (M // 4) * 4
    N4 = N // 4
    for t in prange(N4 + (N - 4 * N4)):
        if t < N4:
            j = 4 * t
            width = 4
            for m in range(0, M4, 4):
                a00 = np.float32(0.0)
                a01 = np.float32(0.0)
                a02 = np.float32(0.0)
                a03 = np.float32(0.0)
                a10 = np.float32(0.0)
                a11 = np.float32(0.0)
                a12 = np.float32(0.0)
                a13 = np.float32(0.0)
                a20 = np.float32(0.0)
                a21 = np.float32(0.0)
                a22 = np.float32(0.0)
                a23 = np.float32(0.0)
                a30 = np.float32(0.0)
                a31 = np.float32(0.0)
                a32 = np.float32(0.0)
                a33 = np.float32(0.0)
                for k in range(K):
                    w0 = w[j, k]
                    w1 = w[j + 1, k]
                    w2 = w[j + 2, k]
                    w3 = w[j + 3, k]
                    x0 = x[m, k]
                    x1 = x[m + 1, k]
                    x2 = x[m + 2, k]
                    x3 = x[m + 3, k]
                    a00 += x0 * w0
                    a01 += x0 * w1
                    a02 += x0 * w2
                    a03 += x0 * w3
                    a10 += x1 * w0
                    a11 += x1 * w1
                    a12 += x1 * w2
                    a13 += x1 * w3
                    a20 += x2 * w0
                    a21 += x2 * w1
                    a22 += x2 * w2
                    a23 += x2 * w3
                    a30 += x3 * w0
                    a31 += x3 * w1
                    a32 += x3 * w2
                    a33 += x3 * w3
                out[m, j] = a00
                out[m, j + 1] = a01
                out[m, j + 2] = a02
                out[m, j + 3] = a03
                out[m + 1, j] = a10
                out[m + 1, j + 1] = a11
                out[m + 1, j + 2] = a12
                out[m + 1, j + 3] = a13
                out[m + 2, j] = a20
                out[m + 2, j + 1] = a21
                out[m + 2, j + 2] = a22
                out[m + 2, j + 3] = a23
                out[m + 3, j] = a30
                out[m + 3, j + 1] = a31
                out[m + 3, j + 2] = a32
                out[m + 3, j + 3] = a33
            for m in range(M4, M):
                a00 = np.float32(0.0)
                a01 = np.float32(0.0)
                a02 = np.float32(0.0)
                a03 = np.float32(0.0)
                for k in range(K):
                    x0 = x[m, k]
                    a00 += x0 * w[j, k]
                    a01 += x0 * w[j + 1, k]
                    a02 += x0 * w[j + 2, k]
                    a03 += x0 * w[j + 3, k]
                out[m, j] = a00
                out[m, j + 1] = a01
                out[m, j + 2] = a02
                out[m, j + 3] = a03
        else:
            j = 4 * N4 + (t - N4)          # the weight rows past the last block of 4, one a task
            width = 1
            for m in range(M):
                a00 = np.float32(0.0)
                for k in range(K):
                    a00 += x[m, k] * w[j, k]
                out[m, j] = a00
        for jo in range(j, j + width):     # bias and ReLU as this task's columns are done
            for m in range(M):
                v = out[m, jo] + b[jo] if hb else out[m, jo]
                out[m, jo] = max(v, np.float32(0.0)) if relu else v


# 5..64-row float32 linears (MLP batches, short prefills): 160-196 GFLOPS here where OpenBLAS
# reached 90-157 on the same shapes (MLP 32x784 @ 784x512: 137 vs 287 us; the whole MLP at
# batch 32: 0.55 -> 0.32 ms, batch 8: 0.34 -> 0.09 ms). Alone it also beats OpenBLAS at 128 rows
# (MiniLM's 128x384 @ 384x1536: 863 vs 1030 us), but inside the encoder, between the attention's
# BLAS matmuls, it measured no faster (30-44 ms either way, 8 alternating rounds), and from 256
# rows OpenBLAS's cache blocking wins (512x384 @ 384x1152: 2.7 vs 2.3 ms): BLAS keeps those.
_gemm_small, _gemm_small_par = twins(_gemm_small_py, fastmath=True)
# up to 16 rows this kernel; 17..256 rows the packed-panel GEMM of sgemm.py (prepacked weights,
# Numba's threads only). The MLP alternating in one process: batch 8 0.096 (this) vs 0.119 ms,
# batch 32 0.320 vs 0.296, batch 64 0.702 vs 0.549. From 512 rows OpenBLAS's cache blocking wins
# (512x384 @ 384x1152: 199 vs 165 GFLOPS, measured)
GEMM_SMALL_ROWS = 16
SGEMM_ROWS = 256
# Fewer than sgemm.NR outputs (a classifier head) at any row count runs _gemm_small too: through
# numpy's matmul, ResNet-8's 32 x 64 @ 64 x 10 head took 51-90 us inside the forward (right after
# Numba's parallel regions; 9 us alone), the Numba kernel 9-17 us there.


_NOBIAS = np.zeros(0, np.float32)


_F32 = np.dtype(np.float32)


def _gemv_case(out, x, w, b):
    """Whether out = x @ w.T + b is the GEMV case (<= GEMV_ROWS rows of float32, C-contiguous), in as
    few attribute reads as it takes (a batch-1 MLP's whole forward is ~30 us of GEMVs: the checks of
    _linear's general path cost ~2 us a linear); builtin dtypes are singletons, so `is` holds for
    every float32 array.  The input's rank when it is: 2 for (rows, K), 3 for a decoder's (1, 1, K);
    else 0."""
    xs, ws = x.shape, w.shape
    n2, n3 = len(xs) == 2, len(xs) == 3
    if (n2 or n3) and len(ws) == 2 and 0 < (xs[0] if n2 else xs[0] * xs[1]) <= GEMV_ROWS and xs[-1] == ws[1] \
            and xs[-1] and x.dtype is _F32 and w.dtype is _F32 and out.dtype is _F32 \
            and out.shape == xs[:-1] + (ws[0],) \
            and (b is None or (b.dtype is _F32 and b.shape == (ws[0],) and b.flags.c_contiguous)) \
            and x.flags.c_contiguous and w.flags.c_contiguous and out.flags.c_contiguous:
        return len(xs)
    return 0


def _linear(out, x, w, b, activation=None):
    """out = x @ w.T + b; returns True when the activation was applied too (the GEMV fuses ReLU)."""
    case = _gemv_case(out, x, w, b)
    if case:                                      # the common small case first
        ws = w.shape
        n2 = case == 2
        relu = activation == "relu"
        kern, wk = _gemv_plan(w)
        kern(x if n2 else x.reshape(-1, ws[1]), wk, _NOBIAS if b is None else b, relu,
             out if n2 else out.reshape(-1, ws[0]))
        return relu
    if w.ndim != 2 or x.ndim < 1 or x.shape[-1] != w.shape[1] or out.shape != x.shape[:-1] + (w.shape[0],):
        raise ValueError(f"linear: input {x.shape}, weight {w.shape} -> {out.shape} do not fit")
    if x.shape[-1] == 0:                          # empty dot products (reshape(-1, 0) is undefined)
        out[...] = 0
    elif x.ndim >= 2 and x.dtype == np.float32 and w.dtype == np.float32 and out.dtype == np.float32 \
            and x.flags.c_contiguous and w.flags.c_contiguous and out.flags.c_contiguous \
            and x.size // x.shape[-1] <= GEMV_ROWS:
        x2 = x.reshape(-1, x.shape[-1])
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"linear: bias {b.shape} for {w.shape[0]} outputs")
        bb = _NOBIAS if b is None else b.astype(np.float32, copy=False)
        relu = activation == "relu"
        (_gemv_par if w.size >= GEMV_PAR else _gemv)(x2, w, bb, relu, out.reshape(-1, w.shape[0]))
        return relu
    elif x.ndim >= 2 and x.dtype == np.float32 and w.dtype == np.float32 and out.dtype == np.float32 \
            and x.flags.c_contiguous and w.flags.c_contiguous and out.flags.c_contiguous \
            and (x.size // x.shape[-1] <= GEMM_SMALL_ROWS or w.shape[0] < sgemm.NR):
        x2 = x.reshape(-1, x.shape[-1])
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"linear: bias {b.shape} for {w.shape[0]} outputs")
        bb = _NOBIAS if b is None else b.astype(np.float32, copy=False)
        relu = activation == "relu"
        (_gemm_small_par if w.size * x2.shape[0] >= GEMV_PAR else _gemm_small)(
            x2, w, bb, relu, out.reshape(-1, w.shape[0]))
        return relu
    elif x.ndim >= 2 and x.dtype == np.float32 and w.dtype == np.float32 and out.dtype == np.float32 \
            and x.flags.c_contiguous and out.flags.c_contiguous and w.shape[0] >= sgemm.NR \
            and x.size // x.shape[-1] <= SGEMM_ROWS and simd.HAVE_FMA:
        if b is not None and b.shape != (w.shape[0],):
            raise ValueError(f"linear: bias {b.shape} for {w.shape[0]} outputs")
        relu = activation == "relu"
        packed = derived(w, "sgemm_wide", sgemm.pack_wide) if simd.HAVE_AVX512 else derived(w, "sgemm", sgemm.pack)
        sgemm.sgemm_into(out.reshape(-1, w.shape[0]), x.reshape(-1, x.shape[-1]), packed,
                         None if b is None else derived(b, "sgemm_bias", sgemm.pad_bias), relu)
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


# a prepared GEMV may hold its weight's packed copy: run with another weight it refuses
_OTHER_WEIGHT = "linear: a prepared run called with another weight"


def _prep_linear(out, x, w, b, activation):
    """The GEMV case of _linear (<= GEMV_ROWS rows: decode steps, batch-1 MLPs), its checks made
    once: the run is the Numba call and an activation other than ReLU."""
    case = _gemv_case(out, x, w, b)
    if not case or (activation is not None and activation not in ACTS):
        return None
    n2 = case == 2
    relu = activation == "relu"
    act = None if activation is None or relu else ACTS[activation]
    kern, wk = _gemv_plan(w)
    nob = b is None
    N, K = w.shape
    w0 = w
    if n2 and act is None:
        if nob:
            def run(out, x, w, b=None):
                if w is not w0:
                    raise ValueError(_OTHER_WEIGHT)
                kern(x, wk, _NOBIAS, relu, out)
        else:
            def run(out, x, w, b):
                if w is not w0:
                    raise ValueError(_OTHER_WEIGHT)
                kern(x, wk, b, relu, out)
        return run

    def run(out, x, w, b=None):
        if w is not w0:
            raise ValueError(_OTHER_WEIGHT)
        kern(x.reshape(-1, K), wk, _NOBIAS if nob else b, relu, out.reshape(-1, N))
        if act is not None:
            act(out)
    return run


def _gemv_layer(out, ins, attrs):
    """(x, w, b, activation) of a linear or fused_linear instruction taken by the GEMV chain: <= 4 rows
    of float32 (_gemv_case), a constant weight; else None."""
    if not 2 <= len(ins) <= 3 or set(attrs) - {"activation"}:
        return None
    x, w = ins[:2]
    b = ins[2] if len(ins) == 3 else None
    if not _gemv_case(out, x, w, b) or w.flags.writeable:
        return None
    return x, w, b, attrs.get("activation")


def _prep_gemv_chain(outs, ins, attrs):
    """Two or three GEMVs in a row, each output read by the next alone (a batch-1 MLP): one call and
    one parallel region (_gemv_chain_py) where the first two are large enough to run parallel (each
    past GEMV_PAR), their panels well filled, the activations between them ReLU or none; a third
    layer only if small (below GEMV_PAR: a head the region's end runs serially).  The MLP
    784-512-512-10 at batch 1: the pair against two GEMVs 22.6 -> 21.6 us (kernels alone); the
    program with the head in the chain against the pair and the head apart 26.8 -> 26.4 us
    (in-process, alternating, five rounds of medians)."""
    layers = [_gemv_layer(o, i, a) for o, i, a in zip(outs, ins, attrs)]
    if not simd.HAVE_AVX512 or None in layers:
        return None
    (x, w1, b1, act1), (h1, w2, b2, act2) = layers[:2]
    third = layers[2] if len(layers) == 3 else None
    if h1 is not outs[0] or (third is not None and third[0] is not outs[1]) or act1 not in (None, "relu") \
            or w1.size < GEMV_PAR or w2.size < GEMV_PAR or not (_panels_pay(w1.shape[0]) and _panels_pay(w2.shape[0])):
        return None
    if third is None:
        act_out, w3, b3, relu3, out3 = act2, np.zeros((0, w2.shape[0]), np.float32), _NOBIAS, False, None
    else:
        _, w3, b3, act_out = third
        if act2 not in (None, "relu") or w3.size >= GEMV_PAR or not w3.flags.c_contiguous:
            return None
        relu3 = act_out == "relu"
    if act_out is not None and act_out != "relu" and act_out not in ACTS:
        return None
    post = None if act_out is None or act_out == "relu" else ACTS[act_out]
    N1, K1 = w1.shape
    N2 = w2.shape[0]
    M = x.size // K1
    p1 = derived(w1, "sgemm_wide", sgemm.pack_wide)[0]
    p2 = derived(w2, "sgemm_wide", sgemm.pack_wide)[0]
    # scratch the run keeps (prepared runs are called one at a time): the hidden values, the tasks'
    # partial sums, the second layer's output where a third reads it
    h = np.empty((M, N1), np.float32)
    part = np.empty((max(1, numba.get_num_threads()), M, N2), np.float32)
    mid = np.empty((M, N2), np.float32) if third is not None else None
    relu1, relu2 = act1 == "relu", act2 == "relu"
    n1, n2 = len(ins[0]), len(ins[1]) - 1          # flat: the first's inputs, then the second's w2 [, b2] ...
    weights = (w1, w2) + ((w3,) if third is not None else ())
    at = (1, n1) + ((n1 + n2,) if third is not None else ())

    def run(out, *a):
        for i, w in zip(at, weights):
            if a[i] is not w:
                raise ValueError(_OTHER_WEIGHT)
        bb1 = a[2] if n1 == 3 and a[2] is not None else _NOBIAS
        bb2 = a[n1 + 1] if n2 == 2 and a[n1 + 1] is not None else _NOBIAS
        if third is None:
            o2 = out.reshape(M, N2)
            _gemv_chain(a[0].reshape(M, K1), p1, bb1, relu1, h, p2, bb2, relu2, part, o2, w3, b3, relu3, o2)
        else:
            bb3 = a[-1] if len(a) == n1 + n2 + 2 and a[-1] is not None else _NOBIAS
            _gemv_chain(a[0].reshape(M, K1), p1, bb1, relu1, h, p2, bb2, relu2, part, mid, w3, bb3, relu3,
                        out.reshape(M, w3.shape[0]))
        if post is not None:
            post(out)
    return run


for _first in ("linear", "fused_linear"):
    for _second in ("linear", "fused_linear"):
        group_preparer(_first, _second)(_prep_gemv_chain)
        for _third in ("linear", "fused_linear"):
            group_preparer(_first, _second, _third)(_prep_gemv_chain)


@preparer("linear")
def p_linear(out, x, w, b=None):
    return _prep_linear(out, x, w, b, None)


@preparer("fused_linear")
def p_fused_linear(out, x, w, b=None, activation=None):
    return _prep_linear(out, x, w, b, activation)


@kernel("einsum")
def k_einsum(out, a, b, equation=""):
    out[...] = np.einsum(equation, a, b, optimize=True)
