"""One AdamW step, in place: the fast version of adamw_step in nanograd/optim.py (the math is there).

param, grad, exp_avg, exp_avg_sq: same shape and dtype; param and the moments C-contiguous. The numba
kernel does the reference's four updates in one pass over memory, where NumPy makes one pass (and a
temporary) per operation.
"""
import math

import numpy as np
from numba import njit, prange

from .fastmath import FAST


def _check_inputs(param, grad, exp_avg, exp_avg_sq, step):
    for name, array in (("grad", grad), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
        if array.shape != param.shape or array.dtype != param.dtype:
            raise ValueError(f"adamw_step: {name} is {array.dtype}{array.shape} but param is "
                             f"{param.dtype}{param.shape}; they must match")
    for name, array in (("param", param), ("exp_avg", exp_avg), ("exp_avg_sq", exp_avg_sq)):
        if not array.flags.c_contiguous or not array.flags.writeable:
            raise ValueError(f"adamw_step updates {name} in place, so it must be a writeable "
                             "C-contiguous array")
    if step < 1:
        raise ValueError(f"adamw_step: step counts from 1, got {step}")


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _adamw_flat(param, grad, m, v, decay, beta1, beta2, eps, step_size, inv_sqrt_bc2):
    one = param.dtype.type(1)
    for i in prange(param.shape[0]):
        g = grad[i]
        m[i] = beta1 * m[i] + (one - beta1) * g
        v[i] = beta2 * v[i] + (one - beta2) * g * g
        param[i] = param[i] * decay - step_size * m[i] / (np.sqrt(v[i]) * inv_sqrt_bc2 + eps)


def adamw_step(param, grad, exp_avg, exp_avg_sq, lr, beta1, beta2, eps, weight_decay, step):
    _check_inputs(param, grad, exp_avg, exp_avg_sq, step)
    as_dtype = param.dtype.type
    _adamw_flat(param.reshape(-1), np.ascontiguousarray(grad).reshape(-1), exp_avg.reshape(-1),
                exp_avg_sq.reshape(-1), as_dtype(1 - lr * weight_decay), as_dtype(beta1), as_dtype(beta2),
                as_dtype(eps), as_dtype(lr / (1 - beta1**step)), as_dtype(1 / math.sqrt(1 - beta2**step)))
