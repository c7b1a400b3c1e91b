"""The LSTM recurrence: the fast version of lstm_forward / lstm_backward in nanograd/recurrent.py.

Same arguments and results as the NumPy references; the difference is where the time loop runs. The
reference loops over time steps in Python and calls NumPy several times per step; here the whole loop
over T steps is one call, so a step costs no Python at all. Each step is two parallel loops:
  forward:  z = xw[:, t] + h @ w_hh^T   (a loop over the 4H gate rows, each row of w_hh read once and
                                        dotted with every sequence's h: the row stays in L1 across B)
            gates and the new c, h       (a loop over sequences, vectorized over the H units)
  backward: the gate gradients dz[:, t]  (a loop over sequences, vectorized over units)
            dh = dz[:, t] @ w_hh        (a loop over the H columns of w_hh, through its transpose)
The matrix products are numba loops, not BLAS (numba reaches BLAS only through SciPy, which the engine
does not depend on); at these sizes (a few sequences times a 4H x H matrix) a BLAS call per step would not
be faster than the loop. The input projection (for all steps) and dw_hh (over all steps) are each one
BLAS product outside the loop, in the op (nanograd/recurrent.py).

sigmoid(z) = 1 / (1 + exp(-z)) and tanh(c) = 2 sigmoid(2c) - 1 go through `fast_exp`, which vectorizes
(math.tanh would be a scalar libm call per element).
"""
import numpy as np
from numba import njit, prange

from .fastmath import FAST, fast_exp


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _forward_loop(xw, w_hh, h, c, states, gates, z):
    """Run the T steps. h, c (B, H) hold h0, c0 on entry and are updated in place; z (B, 4H) is scratch."""
    B, T, H4 = xw.shape
    H = H4 // 4
    one, two = xw.dtype.type(1), xw.dtype.type(2)
    for t in range(T):
        for j in prange(H4):  # z[:, j] = xw[:, t, j] + h . w_hh[j], for every sequence b
            w = w_hh[j]
            b = 0
            while b + 4 <= B:  # four sequences at a time: each load of w[k] feeds four multiply-adds
                h0, h1, h2, h3 = h[b], h[b + 1], h[b + 2], h[b + 3]
                a0 = a1 = a2 = a3 = xw.dtype.type(0)
                for k in range(H):
                    wk = w[k]
                    a0 += h0[k] * wk
                    a1 += h1[k] * wk
                    a2 += h2[k] * wk
                    a3 += h3[k] * wk
                z[b, j], z[b + 1, j] = xw[b, t, j] + a0, xw[b + 1, t, j] + a1
                z[b + 2, j], z[b + 3, j] = xw[b + 2, t, j] + a2, xw[b + 3, t, j] + a3
                b += 4
            for b in range(b, B):
                hb = h[b]
                acc = xw.dtype.type(0)
                for k in range(H):
                    acc += hb[k] * w[k]
                z[b, j] = xw[b, t, j] + acc
        for b in prange(B):
            zi, zf, zg, zo = z[b, 0:H], z[b, H:2 * H], z[b, 2 * H:3 * H], z[b, 3 * H:H4]
            gb = gates[b, t]
            gi, gf, gg, go = gb[0:H], gb[H:2 * H], gb[2 * H:3 * H], gb[3 * H:H4]
            hb, cb, hs, cs = h[b], c[b], states[0, b, t], states[1, b, t]
            for u in range(H):
                i = one / (one + fast_exp(-zi[u]))
                f = one / (one + fast_exp(-zf[u]))
                g = two / (one + fast_exp(-two * zg[u])) - one
                o = one / (one + fast_exp(-zo[u]))
                cu = f * cb[u] + i * g
                hu = o * (two / (one + fast_exp(-two * cu)) - one)
                gi[u], gf[u], gg[u], go[u] = i, f, g, o
                cb[u], hb[u], cs[u], hs[u] = cu, hu, cu, hu


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _backward_loop(dstates, w_hh_t, c0, states, gates, dxw, dh, dc):
    """Run the T steps backward. dh, dc (B, H) are zero on entry and hold dh0, dc0 on exit; w_hh_t (H, 4H)."""
    B, T, H4 = dxw.shape
    H = H4 // 4
    one, two = dxw.dtype.type(1), dxw.dtype.type(2)
    for t in range(T - 1, -1, -1):
        for b in prange(B):
            c_prev = c0[b] if t == 0 else states[1, b, t - 1]
            gb, db = gates[b, t], dxw[b, t]
            gi, gf, gg, go = gb[0:H], gb[H:2 * H], gb[2 * H:3 * H], gb[3 * H:H4]
            di, df, dg, do = db[0:H], db[H:2 * H], db[2 * H:3 * H], db[3 * H:H4]
            dhs, dcs, cs = dstates[0, b, t], dstates[1, b, t], states[1, b, t]
            dhb, dcb = dh[b], dc[b]
            for u in range(H):
                i, f, g, o = gi[u], gf[u], gg[u], go[u]
                tc = two / (one + fast_exp(-two * cs[u])) - one
                dhu = dhs[u] + dhb[u]
                dcu = dcs[u] + dcb[u] + dhu * o * (one - tc * tc)
                di[u] = dcu * g * i * (one - i)
                df[u] = dcu * c_prev[u] * f * (one - f)
                dg[u] = dcu * i * (one - g * g)
                do[u] = dhu * tc * o * (one - o)
                dcb[u] = dcu * f
        for k in prange(H):  # dh[:, k] = dz[:, t] . w_hh[:, k], four sequences at a time as in the forward
            w = w_hh_t[k]
            b = 0
            while b + 4 <= B:
                d0, d1, d2, d3 = dxw[b, t], dxw[b + 1, t], dxw[b + 2, t], dxw[b + 3, t]
                a0 = a1 = a2 = a3 = dxw.dtype.type(0)
                for j in range(H4):
                    wj = w[j]
                    a0 += d0[j] * wj
                    a1 += d1[j] * wj
                    a2 += d2[j] * wj
                    a3 += d3[j] * wj
                dh[b, k], dh[b + 1, k], dh[b + 2, k], dh[b + 3, k] = a0, a1, a2, a3
                b += 4
            for b in range(b, B):
                dzb = dxw[b, t]
                acc = dxw.dtype.type(0)
                for j in range(H4):
                    acc += dzb[j] * w[j]
                dh[b, k] = acc

def lstm_forward(xw, w_hh, h0, c0):
    dtype = xw.dtype
    B, T, H4 = xw.shape
    states = np.empty((2, B, T, H4 // 4), dtype)
    gates = np.empty_like(xw, order="C")
    h, c = np.array(h0, dtype, order="C"), np.array(c0, dtype, order="C")  # copies: updated in place
    _forward_loop(np.ascontiguousarray(xw), np.ascontiguousarray(w_hh, dtype), h, c, states, gates,
                  np.empty((B, H4), dtype))
    return states, gates


def lstm_backward(dstates, w_hh, c0, states, gates):
    dtype = gates.dtype
    B, T, H4 = gates.shape
    H = H4 // 4
    dxw = np.empty((B, T, H4), dtype)
    dh, dc = np.zeros((B, H), dtype), np.zeros((B, H), dtype)
    _backward_loop(np.ascontiguousarray(dstates, dtype), np.ascontiguousarray(np.asarray(w_hh, dtype).T),
                   np.ascontiguousarray(c0, dtype), states, gates, dxw, dh, dc)
    return dxw, dh, dc
