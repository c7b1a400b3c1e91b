"""The LSTM recurrence: the fast version of lstm_forward / lstm_backward in nanograd/recurrent.py.

Same arguments and results as the NumPy references; the difference is where the time loop runs. The
reference loops over time steps in Python and calls NumPy several times per step; here the whole loop
over T steps is one call, so a step costs no Python at all. Each step of a sequence is
  forward:  z = xw[b, t] + h[b] @ w_hh^T, then the gates and the new c, h
  backward: the gate gradients dz = dxw[b, t], then dh[b] = dz @ w_hh
Sequences never exchange anything inside the loop, so the threads split the batch: each runs all T steps
for its own rows, and the threads meet once per call instead of after every step (at the handful of
sequences a step holds, a meeting per step costs about as much as the step's work).

The products are `_rows_dot`, one loop for both directions: out[r, n] = a[r] . w[n], in blocks of six rows
of a by two rows of w, so that each load of a or w feeds two or six multiply-adds (six: one thread's share
of a batch of 12 on two threads). They are numba loops, not BLAS (numba reaches BLAS only through SciPy,
which the engine does not depend on, and a BLAS call per step would cost more than these few rows of work). The input projection (for all steps) and dw_hh (over all
steps) are each one BLAS product outside the loop, in the op (nanograd/recurrent.py).

sigmoid(z) = 1 / (1 + exp(-z)) and tanh(c) = 2 sigmoid(2c) - 1 go through `fast_exp`, which vectorizes
(math.tanh would be a scalar libm call per element).
"""
import numpy as np
from numba import get_num_threads, njit, prange

from .fastmath import FAST, fast_exp


@njit(cache=True, error_model="numpy", fastmath=FAST)
def _rows_dot(a, w, out):
    """out[r, n] = a[r] . w[n] for a (R, K), w (N, K), out (R, N): the product a @ w^T, row by row."""
    R, K = a.shape
    N = w.shape[0]
    zero = a.dtype.type(0)
    r = 0
    while r + 6 <= R:  # six rows of a at a time: they stay in the L1 cache while every row of w passes
        x0, x1, x2, x3, x4, x5 = a[r], a[r + 1], a[r + 2], a[r + 3], a[r + 4], a[r + 5]
        for nn in range((N + 1) // 2):  # two rows of w at a time: each load feeds two or six multiply-adds
            n = 2 * nn
            n2 = n + 1 if n + 1 < N else n  # an odd N computes its last row twice
            w0, w1 = w[n], w[n2]
            p0 = p1 = p2 = p3 = p4 = p5 = q0 = q1 = q2 = q3 = q4 = q5 = zero
            for k in range(K):
                u, v = w0[k], w1[k]
                y0, y1, y2, y3, y4, y5 = x0[k], x1[k], x2[k], x3[k], x4[k], x5[k]
                p0 += y0 * u
                p1 += y1 * u
                p2 += y2 * u
                p3 += y3 * u
                p4 += y4 * u
                p5 += y5 * u
                q0 += y0 * v
                q1 += y1 * v
                q2 += y2 * v
                q3 += y3 * v
                q4 += y4 * v
                q5 += y5 * v
            out[r, n], out[r + 1, n], out[r + 2, n], out[r + 3, n], out[r + 4, n], out[r + 5, n] = (
                p0, p1, p2, p3, p4, p5)
            out[r, n2], out[r + 1, n2], out[r + 2, n2], out[r + 3, n2], out[r + 4, n2], out[r + 5, n2] = (
                q0, q1, q2, q3, q4, q5)
        r += 6
    for r in range(r, R):  # the rows left over, one at a time
        x0 = a[r]
        for nn in range((N + 1) // 2):
            n = 2 * nn
            n2 = n + 1 if n + 1 < N else n
            w0, w1 = w[n], w[n2]
            p0 = q0 = zero
            for k in range(K):
                p0 += x0[k] * w0[k]
                q0 += x0[k] * w1[k]
            out[r, n], out[r, n2] = p0, q0


def _chunks(B):
    """How many groups of sequences the threads share out: one per thread, at most one per sequence."""
    return max(1, min(B, get_num_threads()))


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _forward_loop(xw, w_hh, h, c, states, gates, n_chunks):
    """Run the T steps. h, c (B, H) hold h0, c0 on entry and are updated in place."""
    B, T, H4 = xw.shape
    H = H4 // 4
    one, two = xw.dtype.type(1), xw.dtype.type(2)
    for chunk in prange(n_chunks):  # each thread runs every step for its own sequences b0..b1-1
        b0, b1 = chunk * B // n_chunks, (chunk + 1) * B // n_chunks
        z = np.empty((b1 - b0, H4), xw.dtype)
        for t in range(T):
            _rows_dot(h[b0:b1], w_hh, z)  # z = h @ w_hh^T for these sequences
            for r in range(b1 - b0):
                b = b0 + r
                zb, xb = z[r], xw[b, t]
                for j in range(H4):
                    zb[j] += xb[j]
                zi, zf, zg, zo = zb[0:H], zb[H:2 * H], zb[2 * H:3 * H], zb[3 * H:H4]
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
def _backward_loop(dstates, w_hh_t, c0, states, gates, dxw, dh, dc, n_chunks):
    """Run the T steps backward. dh, dc (B, H) are zero on entry and hold dh0, dc0 on exit; w_hh_t (H, 4H)."""
    B, T, H4 = dxw.shape
    H = H4 // 4
    one, two = dxw.dtype.type(1), dxw.dtype.type(2)
    for chunk in prange(n_chunks):  # each thread runs every step for its own sequences b0..b1-1
        b0, b1 = chunk * B // n_chunks, (chunk + 1) * B // n_chunks
        dz = np.empty((b1 - b0, H4), dxw.dtype)
        for t in range(T - 1, -1, -1):
            for r in range(b1 - b0):
                b = b0 + r
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
                dzr = dz[r]
                for j in range(H4):  # a loop: numba's slice assignment is far slower
                    dzr[j] = db[j]
            _rows_dot(dz, w_hh_t, dh[b0:b1])  # dh = dz @ w_hh for these sequences, to step t - 1


def lstm_forward(xw, w_hh, h0, c0):
    dtype = xw.dtype
    B, T, H4 = xw.shape
    states = np.empty((2, B, T, H4 // 4), dtype)
    gates = np.empty_like(xw, order="C")
    h, c = np.array(h0, dtype, order="C"), np.array(c0, dtype, order="C")  # copies: updated in place
    _forward_loop(np.ascontiguousarray(xw), np.ascontiguousarray(w_hh, dtype), h, c, states, gates, _chunks(B))
    return states, gates


def lstm_backward(dstates, w_hh, c0, states, gates):
    dtype = gates.dtype
    B, T, H4 = gates.shape
    H = H4 // 4
    dxw = np.empty((B, T, H4), dtype)
    dh, dc = np.zeros((B, H), dtype), np.zeros((B, H), dtype)
    _backward_loop(np.ascontiguousarray(dstates, dtype), np.ascontiguousarray(np.asarray(w_hh, dtype).T),
                   np.ascontiguousarray(c0, dtype), states, gates, dxw, dh, dc, _chunks(B))
    return dxw, dh, dc
