"""Rotary position embedding: the fast version of rotary_forward in nanograd/functional_modern.py.

Shapes: x, y (..., T, hs); cos, sin (T, hs/2). One pass over x instead of NumPy's six temporaries (the products,
the sum, the difference, the concatenation); x may be a strided view (q and k arrive as views of the qkv
projection), and y is written contiguous. The backward is this same kernel with sin negated.
"""
import numpy as np
from numba import njit, prange

from .fastmath import FAST


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _rotary_rows(x, cos, sin, y):
    n, T, hs = x.shape
    half = hs // 2
    for r in prange(n * T):
        b, t = r // T, r % T
        for i in range(half):
            x1, x2 = x[b, t, i], x[b, t, i + half]
            y[b, t, i] = x1 * cos[t, i] - x2 * sin[t, i]
            y[b, t, i + half] = x1 * sin[t, i] + x2 * cos[t, i]


def rotary_forward(x, cos, sin):
    if x.ndim < 2 or cos.shape != (x.shape[-2], x.shape[-1] // 2) or sin.shape != cos.shape:
        raise ValueError(f"rotary: cos {cos.shape} and sin {sin.shape} must be (T, hs/2) for x of shape {x.shape}")
    rows = x.reshape((-1,) + x.shape[-2:])  # (N, T, hs): a view when the leading axes fold (after QK-norm), else a copy
    y = np.empty(rows.shape, x.dtype)
    _rotary_rows(rows, np.ascontiguousarray(cos, dtype=x.dtype), np.ascontiguousarray(sin, dtype=x.dtype), y)
    return y.reshape(x.shape)
