"""Layer norm: the fast version of layer_norm_forward / layer_norm_backward in nanograd/functional.py.

Shapes: x, y, dy, dx (..., C); weight, bias, dweight, dbias (C,); mean, rstd (...,).
The numba forward does one parallel pass per row (variance from the centered values, two reads of a
row that sits in L1). The backward splits the rows into fixed blocks: each block writes its own
partial dweight/dbias row, so no two threads add into the same memory; the partials are summed last.
"""
import numpy as np
from numba import njit, prange

from ._arrays import as_rows, check_same_shape
from .fastmath import FAST

ROWS_PER_BLOCK = 64


def _check_params(x, weight, name):
    if weight.shape != (x.shape[-1],):
        raise ValueError(f"layer_norm: {name} has shape {weight.shape}, expected ({x.shape[-1]},) "
                         f"for input of shape {x.shape}")


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _layer_norm_forward_rows(x, weight, bias, eps, y, mean, rstd):
    n_cols = x.shape[1]
    one, inv_n = x.dtype.type(1), x.dtype.type(1 / n_cols)  # typed: a Python number would promote float32
    for i in prange(x.shape[0]):
        xr, yr = x[i], y[i]
        total = x.dtype.type(0)
        for c in range(n_cols):
            total += xr[c]
        mu = total * inv_n
        sq = x.dtype.type(0)
        for c in range(n_cols):
            d = xr[c] - mu
            sq += d * d
        r = one / np.sqrt(sq * inv_n + eps)
        for c in range(n_cols):
            yr[c] = (xr[c] - mu) * r * weight[c] + bias[c]
        mean[i] = mu
        rstd[i] = r


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _layer_norm_backward_blocks(dy, x, weight, mean, rstd, dx, dweight_parts, dbias_parts):
    n_rows, n_cols = x.shape
    inv_n = x.dtype.type(1 / n_cols)
    for block in prange(dweight_parts.shape[0]):
        dw, db = dweight_parts[block], dbias_parts[block]
        dw[:] = 0
        db[:] = 0
        for i in range(block * ROWS_PER_BLOCK, min(n_rows, (block + 1) * ROWS_PER_BLOCK)):
            xr, dyr, dxr = x[i], dy[i], dx[i]
            mu, r = mean[i], rstd[i]
            g_sum = x.dtype.type(0)
            gx_sum = x.dtype.type(0)
            for c in range(n_cols):
                xhat = (xr[c] - mu) * r
                g = dyr[c] * weight[c]
                g_sum += g
                gx_sum += g * xhat
                dw[c] += dyr[c] * xhat
                db[c] += dyr[c]
            g_mean = g_sum * inv_n
            gx_mean = gx_sum * inv_n
            for c in range(n_cols):
                xhat = (xr[c] - mu) * r
                dxr[c] = r * (dyr[c] * weight[c] - g_mean - xhat * gx_mean)


def layer_norm_forward(x, weight, bias, eps):
    _check_params(x, weight, "weight")
    _check_params(x, bias, "bias")
    rows = as_rows(x)
    y = np.empty_like(rows)
    mean = np.empty(rows.shape[0], x.dtype)
    rstd = np.empty(rows.shape[0], x.dtype)
    _layer_norm_forward_rows(rows, np.ascontiguousarray(weight, dtype=x.dtype),
                             np.ascontiguousarray(bias, dtype=x.dtype), x.dtype.type(eps), y, mean, rstd)
    return y.reshape(x.shape), mean.reshape(x.shape[:-1]), rstd.reshape(x.shape[:-1])


def layer_norm_backward(dy, x, weight, mean, rstd):
    check_same_shape(dy, x, "dy", "x")
    rows, dy_rows = as_rows(x), as_rows(dy, "dy")
    n_rows, n_cols = rows.shape
    n_blocks = max(1, -(-n_rows // ROWS_PER_BLOCK))
    dx = np.empty_like(rows)
    dweight_parts = np.empty((n_blocks, n_cols), x.dtype)
    dbias_parts = np.empty((n_blocks, n_cols), x.dtype)
    _layer_norm_backward_blocks(dy_rows, rows, np.ascontiguousarray(weight, dtype=x.dtype),
                                np.ascontiguousarray(mean, dtype=x.dtype).reshape(-1),
                                np.ascontiguousarray(rstd, dtype=x.dtype).reshape(-1),
                                dx, dweight_parts, dbias_parts)
    return dx.reshape(x.shape), dweight_parts.sum(axis=0), dbias_parts.sum(axis=0)
