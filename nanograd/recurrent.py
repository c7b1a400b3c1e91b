"""Recurrent networks: the LSTM recurrence as one graph node, and the dropouts AWD-LSTM trains it with.

An LSTM layer reads a sequence x_1..x_T and carries two vectors from step to step, h (what it shows) and
c (its memory). At each step, with z = x_t W_ih^T + b_ih + h_{t-1} W_hh^T + b_hh cut into four parts:
    i = sigmoid(z_i)   input gate: how much of the candidate to write
    f = sigmoid(z_f)   forget gate: how much of the old memory to keep
    g = tanh(z_g)      the candidate
    o = sigmoid(z_o)   output gate: how much of the memory to show
    c_t = f * c_{t-1} + i * g,      h_t = o * tanh(c_t)
(PyTorch's gate order and names.) x_t W_ih^T does not depend on h, so it is computed for all steps at
once, as one matrix product, before the loop (nn.LSTM does that with F.linear); only h_{t-1} W_hh^T must
wait for the previous step. `lstm_forward` and `lstm_backward` below are that loop and its backward
(backpropagation through time) in NumPy; `@fast_kernel(kernels.lstm...)` runs the same loop in numba
(nanograd/kernels/lstm.py), tested equal.

AWD-LSTM (Merity et al. 2017, "Regularizing and Optimizing LSTM Language Models") regularises with masks
that stay fixed along time: `locked_dropout` (one mask per sequence, the same at every step),
`embedding_dropout` (whole tokens dropped from the embedding table), and DropConnect on W_hh (one mask on
the weights for a whole batch: nn.LSTM's weight_drop, which is F.dropout applied to the weight).
"""
from __future__ import annotations

import numpy as np

from . import kernels
from .kernels import fast_kernel
from .random import generator
from .tensor import Tensor


def _sigmoid(z):
    """1 / (1 + exp(-z)), written with tanh so that no exp can overflow."""
    return 0.5 * (1.0 + np.tanh(0.5 * z))


# ---- the recurrence: xw, dxw (B, T, 4H); w_hh (4H, H); h0, c0, dh0, dc0 (B, H); states (2, B, T, H) ----

@fast_kernel(kernels.lstm.lstm_forward)
def lstm_forward(xw, w_hh, h0, c0):
    """(states, gates): states[0] = h_t and states[1] = c_t for every step t (B, T, H each); gates (B, T, 4H)
    holds i, f, g, o after their nonlinearity, saved for backward.

    xw = x W_ih^T + b_ih + b_hh for every step: the input's share of the gates, computed beforehand."""
    B, T, H4 = xw.shape
    H = H4 // 4
    states = np.empty((2, B, T, H), xw.dtype)
    gates = np.empty((B, T, H4), xw.dtype)
    h, c = h0, c0  # (B, H)
    for t in range(T):
        z = xw[:, t] + h @ w_hh.T  # (B, 4H): every gate's pre-activation
        i, f, o = _sigmoid(z[:, :H]), _sigmoid(z[:, H:2 * H]), _sigmoid(z[:, 3 * H:])  # (B, H) each
        g = np.tanh(z[:, 2 * H:3 * H])  # (B, H)
        c = f * c + i * g  # keep part of the old memory, write part of the candidate
        h = o * np.tanh(c)  # show part of the memory
        states[0, :, t], states[1, :, t] = h, c
        gates[:, t] = np.concatenate([i, f, g, o], axis=1)
    return states, gates


@fast_kernel(kernels.lstm.lstm_backward)
def lstm_backward(dstates, w_hh, c0, states, gates):
    """(dxw, dh0, dc0), from dstates (2, B, T, H): the gradient reaching every h_t and c_t from outside.

    Walk the steps backward, carrying dh and dc, the gradient reaching h_t and c_t from step t + 1.
    At step t, with tc = tanh(c_t):
        dh = dstates[0, t] + dh_next          dc = dstates[1, t] + dc_next + dh * o * (1 - tc^2)
        do = dh * tc     di = dc * g     dg = dc * i     df = dc * c_{t-1}     dc_next = dc * f
    each gate's pre-activation then gets its nonlinearity's slope: sigmoid' = s (1 - s), tanh' = 1 - g^2;
    dz (B, 4H) is dxw's step t, and dh_next = dz @ W_hh. dW_hh = sum over t of dz_t^T h_{t-1}: one
    product after the loop, in the op below."""
    B, T, H4 = gates.shape
    H = H4 // 4
    dxw = np.empty((B, T, H4), gates.dtype)
    dh_next, dc_next = np.zeros((B, H), gates.dtype), np.zeros((B, H), gates.dtype)
    for t in reversed(range(T)):
        i, f, g, o = gates[:, t, :H], gates[:, t, H:2 * H], gates[:, t, 2 * H:3 * H], gates[:, t, 3 * H:]
        c_prev = states[1, :, t - 1] if t > 0 else c0
        tc = np.tanh(states[1, :, t])
        dh = dstates[0, :, t] + dh_next
        dc = dstates[1, :, t] + dc_next + dh * o * (1 - tc * tc)
        dz = np.concatenate([dc * g * i * (1 - i),  # through i
                             dc * c_prev * f * (1 - f),  # through f
                             dc * i * (1 - g * g),  # through g
                             dh * tc * o * (1 - o)], axis=1)  # through o; (B, 4H)
        dxw[:, t] = dz
        dh_next, dc_next = dz @ w_hh, dc * f  # to step t - 1
    return dxw, dh_next, dc_next


def lstm_recurrence(xw: Tensor, w_hh: Tensor, h0: Tensor, c0: Tensor) -> Tensor:
    """The LSTM loop over T steps as one node: -> states (2, B, T, H), states[0] every h_t, states[1] every c_t.

    xw (B, T, 4H) = x W_ih^T + b_ih + b_hh; w_hh (4H, H); h0, c0 (B, H). Gradients may reach any h_t or c_t
    (the last ones are the layer's h_n, c_n)."""
    if xw.ndim != 3 or xw.shape[2] % 4:
        raise ValueError(f"lstm: xw must be (B, T, 4H), got shape {xw.shape}")
    B, T, H4 = xw.shape
    H = H4 // 4
    if w_hh.shape != (H4, H):
        raise ValueError(f"lstm: weight_hh of shape {w_hh.shape} does not match xw of shape {xw.shape} "
                         f"(expected ({H4}, {H}))")
    for name, s in (("h0", h0), ("c0", c0)):
        if s.shape != (B, H):
            raise ValueError(f"lstm: {name} of shape {s.shape} does not match the input (expected ({B}, {H}))")
    states, gates = lstm_forward(xw.data, w_hh.data, h0.data, c0.data)

    def backward(g):
        dxw, dh0, dc0 = lstm_backward(g, w_hh.data, c0.data, states, gates)
        h_prev = np.concatenate([h0.data[:, None], states[0, :, :-1]], axis=1)  # (B, T, H): h_{t-1} for each t
        dw_hh = dxw.reshape(-1, H4).T @ h_prev.reshape(-1, H) if w_hh.requires_grad else None  # (4H, H)
        return dxw, dw_hh, dh0, dc0

    return Tensor.from_op(states, (xw, w_hh, h0, c0), backward, "lstm")


# ---- AWD-LSTM's dropouts: x (B, T, C); weight (V, C) --------------------------------------------

def locked_dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Variational dropout: one mask per sequence and feature, the same at every time step (B, 1, C), so a
    unit dropped at step t is dropped at every step; kept values are scaled by 1/(1-p)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"locked dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    keep = generator().random((x.shape[0], 1, x.shape[2])) >= p  # (B, 1, C), broadcast over T
    return x * (keep.astype(x.dtype) / np.asarray(1.0 - p, dtype=x.dtype))


def embedding_dropout(weight: Tensor, p: float, training: bool) -> Tensor:
    """Drop whole rows of an embedding table (V, C): a dropped token reads zeros wherever it occurs in the
    batch; the other rows are scaled by 1/(1-p)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"embedding dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return weight
    keep = generator().random((weight.shape[0], 1)) >= p  # (V, 1), broadcast over C
    return weight * (keep.astype(weight.dtype) / np.asarray(1.0 - p, dtype=weight.dtype))
