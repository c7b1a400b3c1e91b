"""Softmax and log-softmax: the fast versions of the references in nanograd/functional.py (the math is
there). x, y, dy, dx (..., V), per row of the last axis.

The numba kernels run rows in parallel and use the vectorizable `fast_exp` (float32) from fastmath.py;
they read the input once for the max and once more for the exponentials, where NumPy makes a
temporary array per step.
"""
import math

import numpy as np
from numba import njit, prange

from ._arrays import as_rows, check_same_shape
from .fastmath import FAST, fast_exp, row_max


# ---- numba kernels: one row per parallel iteration ----

@njit(cache=True, error_model="numpy", fastmath=FAST)
def softmax_row(x_row, y_row):
    """y_row = softmax(x_row) for 1-D rows; returns logsumexp(x_row).

    x_row and y_row must be different memory: when they overlap, LLVM's run-time alias check sends
    the loop to its scalar version."""
    m = row_max(x_row)
    total = x_row.dtype.type(0)
    for j in range(x_row.shape[0]):
        e = fast_exp(x_row[j] - m)
        y_row[j] = e
        total += e
    inv_total = x_row.dtype.type(1) / total
    for j in range(y_row.shape[0]):
        y_row[j] *= inv_total
    return m + math.log(total)


@njit(cache=True, error_model="numpy", fastmath=FAST)
def logsumexp_row(row):
    """log(sum_j exp(row_j)) for a 1-D row, shifted by the row max so nothing overflows."""
    m = row_max(row)
    total = row.dtype.type(0)
    for j in range(row.shape[0]):
        total += fast_exp(row[j] - m)
    return m + math.log(total)


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _softmax_forward_rows(x, y):
    for i in prange(x.shape[0]):
        softmax_row(x[i], y[i])


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _softmax_backward_rows(y, dy, dx):
    for i in prange(y.shape[0]):
        yr, dyr, dxr = y[i], dy[i], dx[i]
        dot = y.dtype.type(0)
        for j in range(yr.shape[0]):
            dot += dyr[j] * yr[j]
        for j in range(yr.shape[0]):
            dxr[j] = yr[j] * (dyr[j] - dot)


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _log_softmax_forward_rows(x, z):
    for i in prange(x.shape[0]):
        xr, zr = x[i], z[i]
        log_norm = logsumexp_row(xr)
        for j in range(xr.shape[0]):
            zr[j] = xr[j] - log_norm


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _log_softmax_backward_rows(z, dy, dx):
    for i in prange(z.shape[0]):
        zr, dyr, dxr = z[i], dy[i], dx[i]
        total = z.dtype.type(0)
        for j in range(zr.shape[0]):
            total += dyr[j]
        for j in range(zr.shape[0]):
            dxr[j] = dyr[j] - fast_exp(zr[j]) * total


# ---- the kernels: same arguments and results as the references in nanograd/functional.py ----

def _on_rows(kernel, *arrays):
    """Run kernel(rows_0, ..., out) on (N, V) contiguous views of equally shaped arrays."""
    for other in arrays[1:]:
        check_same_shape(arrays[0], other, "y", "dy")
    rows = [as_rows(a).astype(arrays[0].dtype, copy=False) for a in arrays]
    out = np.empty_like(rows[0])
    kernel(*rows, out)
    return out.reshape(arrays[0].shape)


def softmax_forward(x):
    return _on_rows(_softmax_forward_rows, x)


def softmax_backward(y, dy):
    return _on_rows(_softmax_backward_rows, y, dy)


def log_softmax_forward(x):
    return _on_rows(_log_softmax_forward_rows, x)


def log_softmax_backward(y, dy):
    return _on_rows(_log_softmax_backward_rows, y, dy)
