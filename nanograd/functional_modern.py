"""The parts today's LLMs use where GPT-2 used others, each one node with its backward written by hand:
    rms_norm       for layer_norm       (Llama, modded-nanogpt): scale by the root mean square, no centring
    rotary         for learned positions (RoPE, Su et al. 2021): turn q and k by an angle that grows with position
    relu_squared   for GELU             (Primer, So et al. 2021; modded-nanogpt): max(x, 0)^2
They are laid out as functional.py's ops are (forward and backward in plain NumPy, then the Tensor op) and
are reached through it: `F.rms_norm`, `F.rotary`, `F.relu_squared`. gpt/model.py's "modern" recipe uses them;
its "gpt2" recipe never does. rms_norm and rotary have numba kernels (kernels/rms_norm.py, rotary.py): in NumPy
they took 13% and 6% of a modern training step. relu_squared is two elementwise passes, a small share of a step.
"""
from __future__ import annotations

import numpy as np

from . import kernels
from .kernels import fast_kernel
from .tensor import Tensor

# ---- RMSNorm: x, y, dy, dx (..., C); weight (C,) or None; rstd (..., 1) ----------------------------------

@fast_kernel(kernels.rms_norm.rms_norm_forward)
def rms_norm_forward(x, weight, eps):
    """(y, rstd): y = x * rstd * weight, rstd = 1 / sqrt(mean(x^2) + eps) over the last axis. Unlike layer norm
    nothing is subtracted: the mean is left in, and there is no bias."""
    rstd = 1.0 / np.sqrt((x * x).mean(axis=-1, keepdims=True) + eps)  # (..., 1)
    y = x * rstd if weight is None else x * rstd * weight
    return y.astype(x.dtype, copy=False), rstd.astype(x.dtype, copy=False)


@fast_kernel(kernels.rms_norm.rms_norm_backward)
def rms_norm_backward(dy, x, weight, rstd):
    """(dx, dweight). With xhat = x * rstd and g = dy * weight, per row:
        dx = rstd * (g - xhat * mean(g * xhat))
    term 1: the direct path through xhat; term 2: through rstd (layer norm's backward without its mean term).
    dweight sums dy * xhat over all rows (None without a weight)."""
    xhat = x * rstd  # (..., C)
    g = dy if weight is None else dy * weight
    dx = rstd * (g - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    dweight = None if weight is None else (dy * xhat).reshape(-1, x.shape[-1]).sum(axis=0)
    return dx.astype(x.dtype, copy=False), dweight


def rms_norm(x: Tensor, weight: Tensor | None = None, eps: float = 1e-6) -> Tensor:
    """x / rms(x) along the last axis, times weight (C,) if given. x (..., C).

    Without a weight it is QK-norm's op: queries and keys of unit RMS, so no attention score can grow large."""
    if weight is not None and weight.shape != x.shape[-1:]:
        raise ValueError(f"rms_norm: weight of shape {weight.shape} does not match input of shape {x.shape} "
                         f"(expected ({x.shape[-1]},))")
    w = None if weight is None else weight.data
    y, rstd = rms_norm_forward(x.data, w, eps)

    def backward(g):
        dx, dweight = rms_norm_backward(g, x.data, w, rstd)
        return (dx,) if weight is None else (dx, dweight)

    return Tensor.from_op(y, (x,) if weight is None else (x, weight), backward, "rms_norm")


# ---- rotary position embedding: x, y, dy, dx (..., T, hs); positions (T,); cos, sin (T, hs/2) ------------

def rotary_angles(positions, head_size, dtype=np.float32, base=10000.0):
    """(cos, sin), each (T, hs/2) in `dtype`: pair i of the position p turns by p * base^(-2i/hs). The first pairs
    turn fast (they tell near positions apart), the last ones slowly (they still differ far away). Computed in
    float64, as a position times a small frequency must not round before its cosine is taken."""
    inv_freq = base ** (-np.arange(0, head_size, 2, dtype=np.float64) / head_size)  # (hs/2,)
    angles = np.asarray(positions, dtype=np.float64)[:, None] * inv_freq  # (T, hs/2)
    return np.cos(angles).astype(dtype), np.sin(angles).astype(dtype)


@fast_kernel(kernels.rotary.rotary_forward)
def rotary_forward(x, cos, sin):
    """y: each pair (x1_i, x2_i) = (x[..., i], x[..., i + hs/2]) turned by its angle:
        y1 = x1 cos - x2 sin,   y2 = x1 sin + x2 cos
    A turn keeps lengths, and q_m . k_n of a query turned by m and a key turned by n depends on m - n only."""
    half = x.shape[-1] // 2
    x1, x2 = x[..., :half], x[..., half:]  # (..., T, hs/2) each
    y = np.concatenate([x1 * cos - x2 * sin, x1 * sin + x2 * cos], axis=-1)  # (..., T, hs)
    return y.astype(x.dtype, copy=False)


def rotary_backward(dy, cos, sin):
    """dx: a turn's Jacobian is the rotation matrix, and its transpose turns back by the same angle:
        dx1 = dy1 cos + dy2 sin,   dx2 = -dy1 sin + dy2 cos     (rotary_forward with sin negated)."""
    return rotary_forward(dy, cos, -sin)


def rotary(x: Tensor, cos, sin) -> Tensor:
    """x (..., T, hs) with its time axis second to last (q or k of shape (B, nh, T, hs)), each position's vector
    turned by its angles: (cos, sin) = rotary_angles(positions, hs), each (T, hs/2), for absolute positions, so
    a KV cache keeps keys turned once and its window can slide (gpt/generate.py). The model computes them once
    a forward, for q and k of every layer.

        y = F.rotary(q, *F.rotary_angles(np.arange(T), hs))"""
    if x.ndim < 2 or x.shape[-1] % 2 or cos.shape != (x.shape[-2], x.shape[-1] // 2) or sin.shape != cos.shape:
        raise ValueError(f"rotary: input of shape {x.shape} needs an even last axis and (cos, sin) of shape "
                         f"(T, hs/2) = ({x.shape[-2]}, {x.shape[-1] // 2}), got {cos.shape} and {sin.shape}")
    return Tensor.from_op(rotary_forward(x.data, cos, sin), (x,), lambda g: (rotary_backward(g, cos, sin),),
                          "rotary")


# ---- squared ReLU: x, y, dy, dx any shape, elementwise ---------------------------------------------------

def relu_squared(x: Tensor) -> Tensor:
    """y = max(x, 0)^2, dx = 2 max(x, 0) dy. Zero for negative inputs as ReLU, but smooth at 0 and growing
    faster for large ones: at this size it trains to a lower loss than GELU (docs/recipes.md)."""
    r = np.maximum(x.data, 0)
    return Tensor.from_op(r * r, (x,), lambda g: (2 * r * g,), "relu_squared")
