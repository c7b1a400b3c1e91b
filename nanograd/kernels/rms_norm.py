"""RMSNorm: the fast version of rms_norm_forward / rms_norm_backward in nanograd/functional_modern.py.

Shapes: x, y, dy, dx (..., C); weight, dweight (C,) or None; rstd (..., 1).
As layer_norm.py, without the mean: one parallel pass per row forward; backward in fixed blocks of rows, each
writing its own partial dweight row (no two threads add into the same memory), summed last. Without a weight
(QK-norm) the kernels run with a weight of ones and the wrapper drops dweight.
"""
import numpy as np
from numba import njit, prange

from ._arrays import as_rows, check_same_shape
from .fastmath import FAST

ROWS_PER_BLOCK = 64


def _weight_or_ones(x, weight):
    if weight is None:
        return np.ones(x.shape[-1], x.dtype)
    if weight.shape != (x.shape[-1],):
        raise ValueError(f"rms_norm: weight has shape {weight.shape}, expected ({x.shape[-1]},) "
                         f"for input of shape {x.shape}")
    return np.ascontiguousarray(weight, dtype=x.dtype)


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _rms_norm_forward_rows(x, weight, eps, y, rstd):
    n_cols = x.shape[1]
    one, inv_n = x.dtype.type(1), x.dtype.type(1 / n_cols)  # typed: a Python number would promote float32
    for i in prange(x.shape[0]):
        xr, yr = x[i], y[i]
        sq = x.dtype.type(0)
        for c in range(n_cols):
            sq += xr[c] * xr[c]
        r = one / np.sqrt(sq * inv_n + eps)
        for c in range(n_cols):
            yr[c] = xr[c] * r * weight[c]
        rstd[i] = r


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _rms_norm_backward_blocks(dy, x, weight, rstd, dx, dweight_parts):
    n_rows, n_cols = x.shape
    inv_n = x.dtype.type(1 / n_cols)
    for block in prange(dweight_parts.shape[0]):
        dw = dweight_parts[block]
        dw[:] = 0
        for i in range(block * ROWS_PER_BLOCK, min(n_rows, (block + 1) * ROWS_PER_BLOCK)):
            xr, dyr, dxr, r = x[i], dy[i], dx[i], rstd[i]
            gx_sum = x.dtype.type(0)
            for c in range(n_cols):
                xhat = xr[c] * r
                gx_sum += dyr[c] * weight[c] * xhat
                dw[c] += dyr[c] * xhat
            gx_mean = gx_sum * inv_n
            for c in range(n_cols):
                dxr[c] = r * (dyr[c] * weight[c] - xr[c] * r * gx_mean)


def rms_norm_forward(x, weight, eps):
    rows = as_rows(x)
    y = np.empty_like(rows)
    rstd = np.empty(rows.shape[0], x.dtype)
    _rms_norm_forward_rows(rows, _weight_or_ones(x, weight), x.dtype.type(eps), y, rstd)
    return y.reshape(x.shape), rstd.reshape(x.shape[:-1] + (1,))


def rms_norm_backward(dy, x, weight, rstd):
    check_same_shape(dy, x, "dy", "x")
    rows, dy_rows = as_rows(x), as_rows(dy, "dy")
    n_rows, n_cols = rows.shape
    n_blocks = max(1, -(-n_rows // ROWS_PER_BLOCK))
    dx = np.empty_like(rows)
    dweight_parts = np.empty((n_blocks, n_cols), x.dtype)
    _rms_norm_backward_blocks(dy_rows, rows, _weight_or_ones(x, weight),
                              np.ascontiguousarray(rstd, dtype=x.dtype).reshape(-1), dx, dweight_parts)
    return dx.reshape(x.shape), None if weight is None else dweight_parts.sum(axis=0)
