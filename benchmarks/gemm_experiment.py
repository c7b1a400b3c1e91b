"""An experiment, not shipped: a packed numba GEMM with np.matmul semantics, measured against BLAS.

    python benchmarks/gemm_experiment.py     # checks it against np.matmul on a few shapes
    python benchmarks/kernels.py             # times it against np.matmul on the GPT shapes

Shapes: a (..., M, K) @ b (..., K, N) -> (..., M, N), batch dims broadcast; a 1-D a is (K,) treated
as (1, K), a 1-D b is (K,) treated as (K, 1), and the added axis is dropped from the result.
    c[..., i, j] = sum_k a[..., i, k] * b[..., k, j]
Backward would call it too (da = dc @ b^T, db = a^T @ dc): the benchmark shapes include those products.

`matmul_numba` is the classic packed GEMM: b is copied into zero-padded panels of NR = 64 columns,
(K, 64) each, so the inner loop reads one contiguous 64-float row of a panel; a is copied into
blocks of MR = 6 rows stored k-major; each parallel iteration owns one (batch, 6-row block) and
keeps a 6 x 64 accumulator per panel, written to c once at the end.

Measured choice (benchmarks/kernels.py, float32, this machine, Nov 2026). LLVM here emits 256-bit
vectors and keeps the 6 x 64 accumulator (48 ymm registers' worth) in memory, so the kernel is far
from the register-tiled ideal; no other tile shape measured better (narrower ones stay scalar).
    1 thread, BLAS time / numba time: 2-D layer shapes of config a and b, e.g. (768x128)@(128x384),
    (16384x384)@(384x1152), (16384x1536)@(1536x384): 0.26-0.35; narrow N=65 (the vocabulary):
    0.17-0.18; batched attention shapes (48x64x32)@(48x32x64) and (384x256x64)@(384x64x256): 0.20
    and 0.34.
    2 threads: (768x128)@(128x384) numba 70 GFLOP/s, BLAS 219; (384x256x64)@(384x64x256) numba 35,
    BLAS 86. The one unstable case: that batched shape in two benchmark runs under load measured
    BLAS at 1.1x and 3.0x numba's time (OpenBLAS wakes its threads for every small GEMM), while
    with 1 thread BLAS took 0.39x of numba's time.
BLAS wins at every shape class, by 3-8x, so the engine's products are np.matmul, and this GEMM moved
here out of the library. Attention
never needs a batched matmul: it has its own fused kernel. `matmul_numba` stays as the measured
alternative: benchmarks/kernels.py checks it against np.matmul and re-measures it on every run.
"""
import numpy as np
from numba import njit, prange

from nanograd.kernels.fastmath import FAST

MR = 6   # rows of a per register tile
NR = 64  # columns of b per packed panel


def _check_shapes(a, b):
    if a.ndim == 0 or b.ndim == 0:
        raise ValueError(f"matmul: operands must have at least 1 dimension, got shapes {a.shape} and {b.shape}")
    k_a = a.shape[-1]
    k_b = b.shape[0] if b.ndim == 1 else b.shape[-2]
    if k_a != k_b:
        raise ValueError(f"matmul: shapes {a.shape} and {b.shape} do not align: {k_a} (last axis of a) "
                         f"!= {k_b} ({'only' if b.ndim == 1 else 'second-to-last'} axis of b)")
    if a.ndim <= 2 and b.ndim <= 2:  # the common case, checked without broadcast_shapes' overhead
        return ()
    try:
        return np.broadcast_shapes(a.shape[:-2], b.shape[:-2])
    except ValueError:
        raise ValueError(f"matmul: batch dimensions of {a.shape} and {b.shape} do not broadcast") from None


@njit(parallel=True, cache=True, error_model="numpy")
def _pack_panels(b, n_panels):
    """b (batch, K, N) -> zero-padded panels (batch, n_panels, K, NR)."""
    n_batch, k, n = b.shape
    panels = np.zeros((n_batch, n_panels, k, NR), b.dtype)
    for bp in prange(n_batch * n_panels):
        batch = bp // n_panels
        p = bp - batch * n_panels
        width = min(NR, n - p * NR)
        for kk in range(k):
            panels[batch, p, kk, :width] = b[batch, kk, p * NR:p * NR + width]
    return panels


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _packed_gemm(a, panels, c):
    n_batch, m, k = a.shape
    n = c.shape[2]
    n_panels = panels.shape[1]
    n_blocks = -(-m // MR)
    for job in prange(n_batch * n_blocks):
        batch = job // n_blocks
        block = job - batch * n_blocks
        i0 = block * MR
        rows = min(MR, m - i0)
        a_block = np.zeros((k, MR), a.dtype)
        for r in range(rows):
            a_row = a[batch, i0 + r]
            for kk in range(k):
                a_block[kk, r] = a_row[kk]
        acc = np.empty((MR, NR), a.dtype)
        for p in range(n_panels):
            acc[:] = 0
            panel = panels[batch, p]
            for kk in range(k):
                b_row, a_col = panel[kk], a_block[kk]
                for r in range(MR):
                    a_rk = a_col[r]
                    acc_row = acc[r]
                    for j in range(NR):
                        acc_row[j] += a_rk * b_row[j]
            width = min(NR, n - p * NR)
            for r in range(rows):
                c[batch, i0 + r, p * NR:p * NR + width] = acc[r, :width]


def matmul_numba(a, b):
    batch_shape = _check_shapes(a, b)
    dtype = np.result_type(a, b)
    a3 = a[None, :] if a.ndim == 1 else a
    b3 = b[:, None] if b.ndim == 1 else b
    m, k, n = a3.shape[-2], a3.shape[-1], b3.shape[-1]
    a3 = np.ascontiguousarray(np.broadcast_to(a3, batch_shape + (m, k)), dtype=dtype).reshape(-1, m, k)
    b3 = np.ascontiguousarray(np.broadcast_to(b3, batch_shape + (k, n)), dtype=dtype).reshape(-1, k, n)
    c = np.empty((a3.shape[0], m, n), dtype)
    _packed_gemm(a3, _pack_panels(b3, -(-n // NR)), c)
    shape = batch_shape + ((m,) if a.ndim > 1 else ()) + ((n,) if b.ndim > 1 else ())
    return c.reshape(shape)


def check_against_numpy(shapes=((5,), (5,)), seed=0):
    """Largest |matmul_numba(a, b) - np.matmul(a, b)| relative to max |np.matmul(a, b)| (float32)."""
    rng = np.random.default_rng(seed)
    a, b = (rng.standard_normal(shape).astype(np.float32) for shape in shapes)
    want = np.matmul(a, b)
    got = matmul_numba(a, b)
    if got.shape != want.shape:
        raise AssertionError(f"matmul_numba{shapes}: shape {got.shape}, np.matmul gives {want.shape}")
    return float(np.max(np.abs(got - want))) / max(1.0, float(np.max(np.abs(want))))


if __name__ == "__main__":
    for shapes in (((5,), (5,)), ((3, 5), (5,)), ((5,), (5, 4)), ((2, 1, 3, 5), (4, 5, 7)), ((1, 70), (70, 65)),
                   ((13, 70), (70, 65)), ((7, 3), (3, 130))):
        error = check_against_numpy(shapes)
        print(f"{str(shapes):<32} relative error {error:.1e}")
        assert error < 1e-5, shapes
