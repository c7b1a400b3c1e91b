"""GELU (tanh approximation): the fast version of gelu_forward / gelu_backward in nanograd/functional.py.

The numba kernels use the identity 0.5 (1 + tanh(u)) = sigmoid(2u) = 1 / (1 + exp(-2u)), so one
vectorizable `fast_exp` replaces tanh. With s = sigmoid(2u):
    y = x s,    dy/dx = s + 2 x s (1 - s) du/dx
This form is also accurate where tanh(u) is near -1 (large negative x): 1 + tanh(u) would cancel,
1 / (1 + exp(-2u)) does not.
"""
import math

import numpy as np
from numba import njit, prange

from ._arrays import check_same_shape
from .fastmath import FAST, fast_exp

SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
CUBIC = 0.044715


# Every constant is cast to x's dtype: a bare Python number such as `2 * u` would promote float32 to
# float64 and send fast_exp to its scalar float64 branch. The gate math is written out in both
# kernels rather than called from a helper: with the helper LLVM left the loop scalar.

@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _gelu_forward_flat(x, y):
    c, a, one, two = x.dtype.type(SQRT_2_OVER_PI), x.dtype.type(CUBIC), x.dtype.type(1), x.dtype.type(2)
    for i in prange(x.shape[0]):
        xi = x[i]
        y[i] = xi / (one + fast_exp(-two * c * (xi + a * xi * xi * xi)))


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _gelu_backward_flat(x, dy, dx):
    c, a, one, two = x.dtype.type(SQRT_2_OVER_PI), x.dtype.type(CUBIC), x.dtype.type(1), x.dtype.type(2)
    for i in prange(x.shape[0]):
        xi = x[i]
        s = one / (one + fast_exp(-two * c * (xi + a * xi * xi * xi)))
        du_dx = c * (one + (two + one) * a * xi * xi)
        dx[i] = dy[i] * (s + two * xi * s * (one - s) * du_dx)


def gelu_forward(x):
    flat = np.ascontiguousarray(x).reshape(-1)
    y = np.empty_like(flat)
    _gelu_forward_flat(flat, y)
    return y.reshape(x.shape)


def gelu_backward(x, dy):
    check_same_shape(x, dy, "x", "dy")
    flat_x = np.ascontiguousarray(x).reshape(-1)
    dx = np.empty_like(flat_x)
    _gelu_backward_flat(flat_x, np.ascontiguousarray(dy, dtype=x.dtype).reshape(-1), dx)
    return dx.reshape(x.shape)
