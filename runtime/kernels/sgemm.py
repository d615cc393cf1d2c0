"""float32 GEMM in Numba with explicit vectors: out (M, N) = x (M, K) @ w (N, K).T.

The weight is packed once (kept while the constant lives, as ONNX Runtime
prepacks its GEMM weights) in panels of 16 output columns: panel p holds
w[16p + j, k] at (p * K + k) * 16 + j, so the two 8-lane loads of step k give
the panel's 16 columns.  The micro-kernel keeps 8 rows x 16 columns in 16
vector accumulators; a step is 2 weight loads, 8 broadcasts of x and 16 FMAs.
Rows past the last block of 8 run one at a time with two accumulator chains
per vector.  N pads to a multiple of 16 with zero columns (computed into a
scratch row block and dropped).  Where the CPU has AVX-512F the same design
runs in 16-lane vectors (`pack_wide`: 32-column panels, an 8 x 32 tile in 16
zmm accumulators): a step's 16 FMAs then do twice the work for the same 10
loads, 165-190 -> 218-229 GFLOPS on the encoder's shapes (ONNX Runtime's
MLAS 182-205 in the same measurement), about this host's 2-core peak.  The
bias and ReLU are applied as the tiles are stored.

Why not OpenBLAS (numpy's matmul): measured here, on the encoder's and the
MLP's shapes this runs 150-178 GFLOPS where OpenBLAS gave 86-160, and it
runs on Numba's OpenMP threads: BLAS's own pool then never wakes between the
runtime's Numba kernels (the two pools spinning on two cores slowed whichever
ran next).  OpenBLAS keeps the shapes where its cache blocking wins (many
rows and a large K: runtime/kernels/linalg.py decides).
"""
import numpy as np

from edgetorch._native import simd
from edgetorch._native.jit import variant

from ._derived import filled
from ._jit import chunked

NR = 16
MR = 8


def pack(w, nr=NR):
    """(packed flat float32, Np, nr) for the float32 weight w (N, K): panels of nr columns."""
    N, K = w.shape
    Np = -(-N // nr) * nr
    wp = np.zeros((Np, K), np.float32)
    wp[:N] = w
    return np.ascontiguousarray(wp.reshape(Np // nr, nr, K).transpose(0, 2, 1)).reshape(-1), Np, nr


def pack_wide(w):
    """pack() in 32-column panels, for the 16-lane kernel."""
    return pack(w, 2 * NR)


# The micro-kernels are written once over the lane operations (ZERO, LOAD, SPLAT, FMA, ADD, MAX,
# STORE) and the lane count L, and compiled per width by jit.variant with simd.F8 or simd.F16 bound:
# a panel is 2 L columns wide (16 for the 8-lane kernels, 32 for the 16-lane ones).
ZERO, LOAD, SPLAT, FMA, ADD, MAX, STORE, L = (simd.F8[k] for k in ("ZERO", "LOAD", "SPLAT", "FMA", "ADD", "MAX",
                                                                      "STORE", "L"))
KOFF = None               # bound per variant: _kpacked8/16 (packed panels) or _kindex (an offset table)
AX = None                 # bound per variant: _arow (a row-major) or _apack (a packed in 8-row blocks)


def _tile_py(a, r0, b, b0, b1, koff, K):
    """The 8 x 2L micro-kernel: rows r0..r0+7 of a (R, K) against 2L values of b (flat) a step: step k
    loads lanes 0..L-1 at b0 + KOFF(koff, k) and lanes L..2L-1 at b1 + KOFF(koff, k); 16 vector
    accumulators, returned as (row 0 lanes 0..L-1, row 0 lanes L..2L-1, row 1 ...).  A step is 2 loads,
    8 broadcasts of a and 16 FMAs.  KOFF and AX are bound per variant: 2L k and row-major a for this
    GEMM's packed panels (a = the input rows, b = the packed weight, b1 = b0 + L; koff unused);
    koff[k] and a packed in (K, 8) blocks for conv_panels.py (a = the weight, b = the padded input
    read in place, or a gathered panel)."""
    c00 = ZERO()
    c01 = ZERO()
    c10 = ZERO()
    c11 = ZERO()
    c20 = ZERO()
    c21 = ZERO()
    c30 = ZERO()
    c31 = ZERO()
    c40 = ZERO()
    c41 = ZERO()
    c50 = ZERO()
    c51 = ZERO()
    c60 = ZERO()
    c61 = ZERO()
    c70 = ZERO()
    c71 = ZERO()
    for k in range(K):
        kk = KOFF(koff, k)
        w0 = LOAD(b, b0 + kk)
        w1 = LOAD(b, b1 + kk)
        x = SPLAT(AX(a, r0, 0, k, K))
        c00 = FMA(x, w0, c00)
        c01 = FMA(x, w1, c01)
        x = SPLAT(AX(a, r0, 1, k, K))
        c10 = FMA(x, w0, c10)
        c11 = FMA(x, w1, c11)
        x = SPLAT(AX(a, r0, 2, k, K))
        c20 = FMA(x, w0, c20)
        c21 = FMA(x, w1, c21)
        x = SPLAT(AX(a, r0, 3, k, K))
        c30 = FMA(x, w0, c30)
        c31 = FMA(x, w1, c31)
        x = SPLAT(AX(a, r0, 4, k, K))
        c40 = FMA(x, w0, c40)
        c41 = FMA(x, w1, c41)
        x = SPLAT(AX(a, r0, 5, k, K))
        c50 = FMA(x, w0, c50)
        c51 = FMA(x, w1, c51)
        x = SPLAT(AX(a, r0, 6, k, K))
        c60 = FMA(x, w0, c60)
        c61 = FMA(x, w1, c61)
        x = SPLAT(AX(a, r0, 7, k, K))
        c70 = FMA(x, w0, c70)
        c71 = FMA(x, w1, c71)
    return c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71


def _row_py(a, r, b, b0, b1, koff, K):
    """Row r of a against the same operand as _tile_py: (lanes 0..L-1, lanes L..2L-1), two chains per
    vector (even and odd k) so that FMA latency does not bind a lone row."""
    e0 = ZERO()
    e1 = ZERO()
    d0 = ZERO()
    d1 = ZERO()
    for k in range(0, K - 1, 2):
        x = SPLAT(a[r, k])
        kk = KOFF(koff, k)
        e0 = FMA(x, LOAD(b, b0 + kk), e0)
        e1 = FMA(x, LOAD(b, b1 + kk), e1)
        x = SPLAT(a[r, k + 1])
        kk = KOFF(koff, k + 1)
        d0 = FMA(x, LOAD(b, b0 + kk), d0)
        d1 = FMA(x, LOAD(b, b1 + kk), d1)
    if K % 2:
        x = SPLAT(a[r, K - 1])
        kk = KOFF(koff, K - 1)
        e0 = FMA(x, LOAD(b, b0 + kk), e0)
        e1 = FMA(x, LOAD(b, b1 + kk), e1)
    return ADD(e0, d0), ADD(e1, d1)


def _arow_py(a, r0, i, k, K):
    return a[r0 + i, k]               # row r0 + i of a row-major (R, K) operand


def _apack_py(a, r0, i, k, K):
    return a[r0 * K + 8 * k + i]      # rows r0..r0+7 (r0 a multiple of 8) packed as (K, 8) blocks: one
                                      # pointer and immediate offsets for the 8 broadcasts (conv weights)


def _kpacked_py(koff, k):
    return k * 2 * L                  # a packed panel: the 2 L values of step k are consecutive


def _kindex_py(koff, k):
    return koff[k]                    # an offset table (conv_panels.py: kernel tap k's place in the input)


# The epilogues: bias[bo:bo+L] added (a zero bias when the linear has none), then ReLU or not, as
# separate compiled variants of each kernel (twins(..., bind=...)) rather than branches inside one:
# LLVM duplicated the whole tile loop for each branch combination and a cold compile of the 16-lane
# kernel took 7.4 s instead of 3.3.
def _put_py(c, o, v, bias, bo):
    STORE(c, o, ADD(v, LOAD(bias, bo)))


def _put_relu_py(c, o, v, bias, bo):
    STORE(c, o, MAX(ADD(v, LOAD(bias, bo)), ZERO()))


_INLINE = dict(fastmath=True, inline="always")
_kpacked8 = variant(_kpacked_py, "_kpacked8", simd.F8, **_INLINE)
_kpacked16 = variant(_kpacked_py, "_kpacked16", simd.F16, **_INLINE)
_kindex = variant(_kindex_py, "_kindex", None, **_INLINE)
_arow = variant(_arow_py, "_arow", None, **_INLINE)
_apack = variant(_apack_py, "_apack", None, **_INLINE)
_P8, _P16 = dict(simd.F8, KOFF=_kpacked8, AX=_arow), dict(simd.F16, KOFF=_kpacked16, AX=_arow)
_I8, _I16 = dict(simd.F8, KOFF=_kindex, AX=_apack), dict(simd.F16, KOFF=_kindex, AX=_apack)
tile8x16 = variant(_tile_py, "tile8x16", _P8, **_INLINE)
tile8x32 = variant(_tile_py, "tile8x32", _P16, **_INLINE)
row16 = variant(_row_py, "row16", _P8, **_INLINE)
row32 = variant(_row_py, "row32", _P16, **_INLINE)
itile8x16 = variant(_tile_py, "itile8x16", _I8, **_INLINE)      # offset-table operands (conv_panels.py)
itile8x32 = variant(_tile_py, "itile8x32", _I16, **_INLINE)
irow16 = variant(_row_py, "irow16", dict(_I8, AX=_arow), **_INLINE)     # a row-major: the rows past
irow32 = variant(_row_py, "irow32", dict(_I16, AX=_arow), **_INLINE)    # the last block of 8
_put = variant(_put_py, "_put", simd.F8, **_INLINE)
_put_relu = variant(_put_relu_py, "_put_relu", simd.F8, **_INLINE)
_wput = variant(_put_py, "_wput", simd.F16, **_INLINE)
_wput_relu = variant(_put_relu_py, "_wput_relu", simd.F16, **_INLINE)


def _sgemm_py(t_lo, t_hi, x, wp, bias, c):
    # x (M, K) float32 C-contiguous; wp packed in PW-column panels; bias (>= Np,) float32 padded with
    # zeros; c (M, Np) float32.  The bias (and ReLU, in the _relu variants) are applied as the tiles
    # are stored.  TILE, ROW, PUT and PW: the 8- or 16-lane kernels (bound per variant below).
    # Tasks t_lo .. t_hi - 1 of `tasks(M, Np, PW)`: the MR x PW tiles, panel-major (consecutive tasks
    # reuse the panel from L1/L2), then a panel each for the rows past the last tile.
    M, K = x.shape
    Np = c.shape[1]
    NB = Np // PW
    MB = M // MR
    H = PW // 2
    koff = np.empty(0, np.int64)          # unused: KOFF steps through the packed panel
    for t in range(t_lo, min(t_hi, NB * MB)):
        nb = t // MB
        m0 = (t % MB) * MR
        c00, c01, c10, c11, c20, c21, c30, c31, c40, c41, c50, c51, c60, c61, c70, c71 = \
            TILE(x, m0, wp, nb * K * PW, nb * K * PW + H, koff, K)
        o = m0 * Np + nb * PW
        bo = nb * PW
        PUT(c, o, c00, bias, bo)
        PUT(c, o + H, c01, bias, bo + H)
        PUT(c, o + Np, c10, bias, bo)
        PUT(c, o + Np + H, c11, bias, bo + H)
        PUT(c, o + 2 * Np, c20, bias, bo)
        PUT(c, o + 2 * Np + H, c21, bias, bo + H)
        PUT(c, o + 3 * Np, c30, bias, bo)
        PUT(c, o + 3 * Np + H, c31, bias, bo + H)
        PUT(c, o + 4 * Np, c40, bias, bo)
        PUT(c, o + 4 * Np + H, c41, bias, bo + H)
        PUT(c, o + 5 * Np, c50, bias, bo)
        PUT(c, o + 5 * Np + H, c51, bias, bo + H)
        PUT(c, o + 6 * Np, c60, bias, bo)
        PUT(c, o + 6 * Np + H, c61, bias, bo + H)
        PUT(c, o + 7 * Np, c70, bias, bo)
        PUT(c, o + 7 * Np + H, c71, bias, bo + H)
    # rows past the last micro-tile: a panel a task
    for t in range(max(t_lo, NB * MB), t_hi):
        p = t - NB * MB
        for m in range(MB * MR, M):
            lo, hi = ROW(x, m, wp, p * K * PW, p * K * PW + H, koff, K)
            PUT(c, m * Np + p * PW, lo, bias, p * PW)
            PUT(c, m * Np + p * PW + H, hi, bias, p * PW + H)


def tasks(M, Np, pw):
    """_sgemm_py's task count: M // MR row tiles per pw-column panel, and a task per panel for the
    rows past the last tile."""
    return (Np // pw) * (M // MR + (M % MR > 0))


TILE, ROW, PUT, PW = tile8x16, row16, _put, NR      # the 8-lane variant's bindings


# one body, four compiled variants: the tile, single-row kernel, store and panel width (PW) are
# globals that chunked(..., bind=...) rebinds (Numba takes globals as compile-time constants); each
# variant compiles once for serial and parallel runs (the parallel twin of the 16-lane one alone took
# 3.1-3.2 s of the encoder's cold start)
_VARIANTS = {"": {}, "_relu": {"PUT": _put_relu},
             "_wide": {"TILE": tile8x32, "ROW": row32, "PUT": _wput, "PW": 32},
             "_wide_relu": {"TILE": tile8x32, "ROW": row32, "PUT": _wput_relu, "PW": 32}}
_KERNELS = {("wide" in _name, "relu" in _name): chunked(_sgemm_py, _name, _bind, fastmath=True)
            for _name, _bind in _VARIANTS.items()}
PAR_FLOPS = 1 << 20        # multiply-adds from which the parallel copy pays
def pad_bias(b):
    """The float32 bias (N,) padded with zeros to a multiple of 32 (either panel width)."""
    n = b.shape[0]
    out = np.zeros(-(-n // (2 * NR)) * 2 * NR, np.float32)
    out[:n] = b
    return out


def sgemm_into(out, x, packed, bias=None, relu=False):
    """out (M, N) = x (M, K) @ w.T (+ bias, then ReLU) with w packed by `pack` (16-column panels,
    8-lane kernel) or `pack_wide` (32-column panels, 16-lane kernel: AVX-512 only); out and x
    C-contiguous float32; bias as `pad_bias` gives it, or None."""
    wp, Np, nr = packed
    M, N = out.shape
    if bias is not None and (bias.ndim != 1 or bias.shape[0] < Np):
        raise ValueError(f"sgemm: padded bias {bias.shape} for {Np} packed columns")
    if wp.shape[0] != Np * x.shape[1] or Np % nr or nr not in (NR, 2 * NR) or not N <= Np < N + nr:
        raise ValueError(f"sgemm: packed weight of {wp.shape[0]} values ({nr}-column panels) for {N} x {x.shape[1]}")
    c = out if Np == N else np.empty((M, Np), np.float32)
    kern = _KERNELS[nr == 2 * NR, bool(relu)]
    (kern.parallel if M * Np * x.shape[1] >= PAR_FLOPS else kern.serial)(
        tasks(M, Np, nr), x, wp, filled(Np, 0.0) if bias is None else bias, c)
    if c is not out:
        out[...] = c[:, :N]
