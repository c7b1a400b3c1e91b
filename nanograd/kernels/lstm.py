"""The LSTM recurrence: the fast version of lstm_forward / lstm_backward in nanograd/recurrent.py.

Same arguments and results as the NumPy references; the difference is where the time loop runs. The
reference loops over time steps in Python and calls NumPy several times per step; here the whole loop
over T steps is one call, so a step costs no Python at all. Each step is two parallel loops:
  forward:  z = xw[:, t] + h @ w_hh^T   (a loop over pairs of the 4H gate rows, each row of w_hh read once
                                        and dotted with every sequence's h, four sequences at a time)
            gates and the new c, h       (a loop over sequences, vectorized over the H units)
  backward: the gate gradients dz[:, t]  (a loop over sequences, vectorized over units)
            dh = dz[:, t] @ w_hh        (a loop over pairs of the H columns of w_hh, through its transpose)
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
    zero, one, two = xw.dtype.type(0), xw.dtype.type(1), xw.dtype.type(2)
    for t in range(T):
        for jj in prange(H4 // 2):  # z[:, j] = xw[:, t, j] + h . w_hh[j], for two gate rows j and every b
            j = 2 * jj
            w, v = w_hh[j], w_hh[j + 1]
            b = 0
            while b + 4 <= B:  # a 4 x 2 block: each load of h or w feeds two or four multiply-adds
                h0, h1, h2, h3 = h[b], h[b + 1], h[b + 2], h[b + 3]
                a0 = a1 = a2 = a3 = e0 = e1 = e2 = e3 = zero
                for k in range(H):
                    wk, vk, x0, x1, x2, x3 = w[k], v[k], h0[k], h1[k], h2[k], h3[k]
                    a0 += x0 * wk
                    a1 += x1 * wk
                    a2 += x2 * wk
                    a3 += x3 * wk
                    e0 += x0 * vk
                    e1 += x1 * vk
                    e2 += x2 * vk
                    e3 += x3 * vk
                z[b, j], z[b + 1, j], z[b + 2, j], z[b + 3, j] = a0, a1, a2, a3
                z[b, j + 1], z[b + 1, j + 1], z[b + 2, j + 1], z[b + 3, j + 1] = e0, e1, e2, e3
                b += 4
            for b in range(b, B):
                hb = h[b]
                a0 = e0 = zero
                for k in range(H):
                    a0 += hb[k] * w[k]
                    e0 += hb[k] * v[k]
                z[b, j], z[b, j + 1] = a0, e0
            for b in range(B):
                z[b, j] += xw[b, t, j]
                z[b, j + 1] += xw[b, t, j + 1]
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
    zero, one, two = dxw.dtype.type(0), dxw.dtype.type(1), dxw.dtype.type(2)
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
        for kk in prange((H + 1) // 2):  # dh[:, k] = dz[:, t] . w_hh[:, k], two columns at a time as in forward
            k = 2 * kk
            k2 = k + 1 if k + 1 < H else k  # an odd H computes its last column twice
            w, v = w_hh_t[k], w_hh_t[k2]
            b = 0
            while b + 4 <= B:
                d0, d1, d2, d3 = dxw[b, t], dxw[b + 1, t], dxw[b + 2, t], dxw[b + 3, t]
                a0 = a1 = a2 = a3 = e0 = e1 = e2 = e3 = zero
                for j in range(H4):
                    wj, vj, x0, x1, x2, x3 = w[j], v[j], d0[j], d1[j], d2[j], d3[j]
                    a0 += x0 * wj
                    a1 += x1 * wj
                    a2 += x2 * wj
                    a3 += x3 * wj
                    e0 += x0 * vj
                    e1 += x1 * vj
                    e2 += x2 * vj
                    e3 += x3 * vj
                dh[b, k], dh[b + 1, k], dh[b + 2, k], dh[b + 3, k] = a0, a1, a2, a3
                dh[b, k2], dh[b + 1, k2], dh[b + 2, k2], dh[b + 3, k2] = e0, e1, e2, e3
                b += 4
            for b in range(b, B):
                dzb = dxw[b, t]
                a0 = e0 = zero
                for j in range(H4):
                    a0 += dzb[j] * w[j]
                    e0 += dzb[j] * v[j]
                dh[b, k], dh[b, k2] = a0, e0

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
