"""float32 GEMM in Numba with explicit 8-lane vectors: out (M, N) = x (M, K) @ w (N, K).T.

The weight is packed once (kept while the constant lives, as ONNX Runtime
prepacks its GEMM weights) in panels of 16 output columns: panel p holds
w[16p + j, k] at (p * K + k) * 16 + j, so the two 8-lane loads of step k give
the panel's 16 columns.  The micro-kernel keeps 8 rows x 16 columns in 16
vector accumulators; a step is 2 weight loads, 8 broadcasts of x and 16 FMAs.
Rows past the last block of 8 run one at a time with two accumulator chains
per vector.  N pads to a multiple of 16 with zero columns (computed into a
scratch row block and dropped).

Why not OpenBLAS (numpy's matmul): measured here, on the encoder's and the
MLP's shapes this runs 150-178 GFLOPS where OpenBLAS gave 86-160, and it
runs on Numba's OpenMP threads: BLAS's own pool then never wakes between the
runtime's Numba kernels (the two pools spinning on two cores slowed whichever
ran next).  OpenBLAS keeps the shapes where its cache blocking wins (many
rows and a large K: runtime/kernels/linalg.py decides).
"""
import numpy as np
from numba import prange

from edgetorch._native.simd import vfadd, vfload, vfma, vfsplat, vfstore, vfzero

from ._jit import twins

NR = 16
MR = 8


def pack(w):
    """(packed flat float32, Np) for the float32 weight w (N, K)."""
    N, K = w.shape
    Np = -(-N // NR) * NR
    wp = np.zeros((Np, K), np.float32)
    wp[:N] = w
    return np.ascontiguousarray(wp.reshape(Np // NR, NR, K).transpose(0, 2, 1)).reshape(-1), Np


def _sgemm_py(x, wp, c):
    # x (M, K) float32 C-contiguous; wp packed; c (M, Np) float32
    M, K = x.shape
    Np = c.shape[1]
    NB = Np // NR
    MB = M // MR
    for t in prange(NB * MB):
        nb = t // MB                      # panel-major: consecutive tasks reuse the panel from L1/L2
        m0 = (t % MB) * MR
        wb = nb * K * 16
        c00 = vfzero()
        c01 = vfzero()
        c10 = vfzero()
        c11 = vfzero()
        c20 = vfzero()
        c21 = vfzero()
        c30 = vfzero()
        c31 = vfzero()
        c40 = vfzero()
        c41 = vfzero()
        c50 = vfzero()
        c51 = vfzero()
        c60 = vfzero()
        c61 = vfzero()
        c70 = vfzero()
        c71 = vfzero()
        for k in range(K):
            w0 = vfload(wp, wb + k * 16)
            w1 = vfload(wp, wb + k * 16 + 8)
            a = vfsplat(x[m0, k])
            c00 = vfma(a, w0, c00)
            c01 = vfma(a, w1, c01)
            a = vfsplat(x[m0 + 1, k])
            c10 = vfma(a, w0, c10)
            c11 = vfma(a, w1, c11)
            a = vfsplat(x[m0 + 2, k])
            c20 = vfma(a, w0, c20)
            c21 = vfma(a, w1, c21)
            a = vfsplat(x[m0 + 3, k])
            c30 = vfma(a, w0, c30)
            c31 = vfma(a, w1, c31)
            a = vfsplat(x[m0 + 4, k])
            c40 = vfma(a, w0, c40)
            c41 = vfma(a, w1, c41)
            a = vfsplat(x[m0 + 5, k])
            c50 = vfma(a, w0, c50)
            c51 = vfma(a, w1, c51)
            a = vfsplat(x[m0 + 6, k])
            c60 = vfma(a, w0, c60)
            c61 = vfma(a, w1, c61)
            a = vfsplat(x[m0 + 7, k])
            c70 = vfma(a, w0, c70)
            c71 = vfma(a, w1, c71)
        o = m0 * Np + nb * NR
        vfstore(c, o, c00)
        vfstore(c, o + 8, c01)
        vfstore(c, o + Np, c10)
        vfstore(c, o + Np + 8, c11)
        vfstore(c, o + 2 * Np, c20)
        vfstore(c, o + 2 * Np + 8, c21)
        vfstore(c, o + 3 * Np, c30)
        vfstore(c, o + 3 * Np + 8, c31)
        vfstore(c, o + 4 * Np, c40)
        vfstore(c, o + 4 * Np + 8, c41)
        vfstore(c, o + 5 * Np, c50)
        vfstore(c, o + 5 * Np + 8, c51)
        vfstore(c, o + 6 * Np, c60)
        vfstore(c, o + 6 * Np + 8, c61)
        vfstore(c, o + 7 * Np, c70)
        vfstore(c, o + 7 * Np + 8, c71)
    # rows past the last micro-tile: a panel a task, two chains per vector (even and odd k)
    R = M - MB * MR
    for t in prange(NB * (R > 0)):
        wb = t * K * 16
        for m in range(MB * MR, M):
            e0 = vfzero()
            e1 = vfzero()
            d0 = vfzero()
            d1 = vfzero()
            for k in range(0, K - 1, 2):
                a = vfsplat(x[m, k])
                e0 = vfma(a, vfload(wp, wb + k * 16), e0)
                e1 = vfma(a, vfload(wp, wb + k * 16 + 8), e1)
                a = vfsplat(x[m, k + 1])
                d0 = vfma(a, vfload(wp, wb + k * 16 + 16), d0)
                d1 = vfma(a, vfload(wp, wb + k * 16 + 24), d1)
            if K % 2:
                a = vfsplat(x[m, K - 1])
                e0 = vfma(a, vfload(wp, wb + (K - 1) * 16), e0)
                e1 = vfma(a, vfload(wp, wb + (K - 1) * 16 + 8), e1)
            o = m * Np + t * NR
            vfstore(c, o, vfadd(e0, d0))
            vfstore(c, o + 8, vfadd(e1, d1))


_sgemm, _sgemm_par = twins(_sgemm_py, fastmath=True)
PAR_FLOPS = 1 << 20        # multiply-adds from which the parallel copy pays


def sgemm_into(out, x, packed):
    """out (M, N) = x (M, K) @ w.T with w packed by `pack`; out and x C-contiguous float32."""
    wp, Np = packed
    M, N = out.shape
    c = out if Np == N else np.empty((M, Np), np.float32)
    (_sgemm_par if M * Np * x.shape[1] >= PAR_FLOPS else _sgemm)(x, wp, c)
    if c is not out:
        out[...] = c[:, :N]
