"""Attention: the fast version of attention_forward / attention_backward in nanograd/functional.py, whose
NumPy reference states the math (read that first; this file is about doing it fast).

Shapes: q, out, dq, dout (B, H, Tq, D); k, v, dk, dv (B, H, Tk, D), Tq <= Tk; lse (B, H, Tq). Any strides
are accepted, so q, k, v may be head views into the (B, T, 3C) output of a qkv projection, with no
transposed copies. Backward uses dS = P * (dP - rowsum(dout * out)): rowsum(dout * out)_i equals
sum_j P_ij dP_ij, the softmax backward's dot product, from arrays already at hand.

The numba kernels run one (b, h) per parallel iteration. A head's rows are first copied into contiguous
thread-local arrays (cheap next to the O(T^2 D) work, and what lets the loops vectorize whatever the
caller's strides), and its queries are then taken in blocks of BLOCK = 4 rows: a block's scores, softmax
and products are finished while its (4, Tk) rows are in L1, and no (Tq, Tk) matrix is ever stored.
Keys past the causal limit of the block's last row are skipped, not computed and masked.

Padding removes every remainder loop: the copies have Tq and Tk rounded up to multiples of 4, with
zero rows, and a block works on its visible keys rounded up to a multiple of 4. The few scores past a
row's own limit (at most 3) are set to -inf, so their probability is exactly 0 and they add nothing.

Three loop shapes do all the products. Each vectorizes over the contiguous head axis D and uses every
load for several multiply-adds:
    _block_scores                   S = scale q k^T, dP = dout v^T   4 rows x 2 keys: 8 dot products share
                                                                      each load of q and k
    _add_block_products             out += P v, dq += dS k           4 rows x 4 keys: each output element is
                                                                      loaded and stored once per 4 multiply-adds
    _add_block_transposed_products  dk += dS^T q, dv += P^T dout     one key, 4 rows: P^T is never formed
The forward keeps P unnormalized (exp(S - rowmax)) and divides each output row by the row's sum once,
instead of dividing all Tk probabilities.
"""
import math

import numpy as np
from numba import njit, prange

from .fastmath import FAST, fast_exp, row_max

BLOCK = 4  # query rows per block; the loops below are written out for exactly 4


@njit(cache=True, error_model="numpy", fastmath=FAST)
def _block_scores(a, b, out, scale, n):
    """out[r, j] = scale * (a[r] . b[j]) for r < 4, j < n; a (4, D), b (>= n, D), out (4, >= n), n even.

    Two keys per pass: 8 running sums, each load of a[r] used twice and each load of b[j] four times."""
    a0, a1, a2, a3 = a[0], a[1], a[2], a[3]
    zero = a.dtype.type(0)
    for j in range(0, n, 2):
        x, y = b[j], b[j + 1]
        s0 = s1 = s2 = s3 = t0 = t1 = t2 = t3 = zero
        for l in range(x.shape[0]):
            s0 += a0[l] * x[l]
            s1 += a1[l] * x[l]
            s2 += a2[l] * x[l]
            s3 += a3[l] * x[l]
            t0 += a0[l] * y[l]
            t1 += a1[l] * y[l]
            t2 += a2[l] * y[l]
            t3 += a3[l] * y[l]
        out[0, j], out[1, j], out[2, j], out[3, j] = s0 * scale, s1 * scale, s2 * scale, s3 * scale
        out[0, j + 1], out[1, j + 1], out[2, j + 1], out[3, j + 1] = t0 * scale, t1 * scale, t2 * scale, t3 * scale


@njit(cache=True, error_model="numpy", fastmath=FAST)
def _add_block_products(weights, rows, out, n):
    """out[r] += sum_{j < n} weights[r, j] * rows[j] for r < 4; weights (4, >= n), rows (>= n, D),
    out (4, D), n a multiple of 4.

    Four rows j per pass, written out: each out[r, c] is loaded and stored once per 4 multiply-adds, and
    each rows[j, c] loaded once serves all 4 output rows."""
    o0, o1, o2, o3 = out[0], out[1], out[2], out[3]
    w0, w1, w2, w3 = weights[0], weights[1], weights[2], weights[3]
    for j in range(0, n, 4):
        x0, x1, x2, x3 = rows[j], rows[j + 1], rows[j + 2], rows[j + 3]
        a0, a1, a2, a3 = w0[j], w0[j + 1], w0[j + 2], w0[j + 3]
        b0, b1, b2, b3 = w1[j], w1[j + 1], w1[j + 2], w1[j + 3]
        c0, c1, c2, c3 = w2[j], w2[j + 1], w2[j + 2], w2[j + 3]
        d0, d1, d2, d3 = w3[j], w3[j + 1], w3[j + 2], w3[j + 3]
        for c in range(o0.shape[0]):
            y0, y1, y2, y3 = x0[c], x1[c], x2[c], x3[c]
            o0[c] += a0 * y0 + a1 * y1 + a2 * y2 + a3 * y3
            o1[c] += b0 * y0 + b1 * y1 + b2 * y2 + b3 * y3
            o2[c] += c0 * y0 + c1 * y1 + c2 * y2 + c3 * y3
            o3[c] += d0 * y0 + d1 * y1 + d2 * y2 + d3 * y3


@njit(cache=True, error_model="numpy", fastmath=FAST)
def _add_block_transposed_products(weights, rows, out, n):
    """out[j] += sum_{r < 4} weights[r, j] * rows[r] for j < n: out += weights^T rows, without transposing.
    weights (4, >= n), rows (4, D), out (>= n, D); each out[j] is loaded and stored once per 4 multiply-adds."""
    x0, x1, x2, x3 = rows[0], rows[1], rows[2], rows[3]
    w0, w1, w2, w3 = weights[0], weights[1], weights[2], weights[3]
    for j in range(n):
        a0, a1, a2, a3 = w0[j], w1[j], w2[j], w3[j]
        o = out[j]
        for c in range(o.shape[0]):
            o[c] += a0 * x0[c] + a1 * x1[c] + a2 * x2[c] + a3 * x3[c]


@njit(cache=True, error_model="numpy")
def _visible_keys(tq, tk, causal, n_rows):
    """For each query row i < n_rows (n_rows >= tq: padding rows included), the number of keys it sees:
    i + (Tk - Tq) + 1 if causal, else Tk; never more than Tk."""
    n_keys = np.empty(n_rows, np.int64)
    for i in range(n_rows):
        n_keys[i] = min(tk, i + tk - tq + 1) if causal else tk
    return n_keys


@njit(cache=True, error_model="numpy")
def _padded(n):
    """n rounded up to a multiple of BLOCK."""
    return -(-n // BLOCK) * BLOCK


@njit(cache=True, error_model="numpy")
def _copy_rows(src, dst, n_rows):
    """dst[:n_rows] = src[:n_rows] row by row (either side strided): numba's generic slice assignment is
    slower."""
    for t in range(n_rows):
        src_row, dst_row = src[t], dst[t]
        for c in range(src_row.shape[0]):
            dst_row[c] = src_row[c]


@njit(cache=True, error_model="numpy")
def _padded_copy(src):
    """src (T, D), any strides -> a contiguous (T rounded up to a multiple of BLOCK, D) copy, the extra
    rows zero."""
    dst = np.zeros((_padded(src.shape[0]), src.shape[1]), src.dtype)
    _copy_rows(src, dst, src.shape[0])
    return dst


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _attention_forward_heads(q, k, v, causal, out, lse):
    """q (B, H, Tq, D), k, v (B, H, Tk, D), any strides; out (B, Tq, H, D) C-contiguous, lse (B, H, Tq)."""
    n_batch, n_head, tq, d = q.shape
    tk = k.shape[2]
    scale = q.dtype.type(1 / math.sqrt(d))
    zero, minus_inf = q.dtype.type(0), q.dtype.type(-np.inf)
    n_keys = _visible_keys(tq, tk, causal, _padded(tq))
    for bh in prange(n_batch * n_head):
        b, h = bh // n_head, bh % n_head
        qh, kh, vh = _padded_copy(q[b, h]), _padded_copy(k[b, h]), _padded_copy(v[b, h])
        weights = np.empty((BLOCK, kh.shape[0]), q.dtype)  # the block's S, then its unnormalized P
        acc = np.empty((BLOCK, d), q.dtype)  # the block's P v
        for i0 in range(0, qh.shape[0], BLOCK):
            n = _padded(n_keys[i0 + BLOCK - 1])  # keys the block computes: the last row sees the most
            _block_scores(qh[i0:i0 + BLOCK], kh, weights, scale, n)
            for r in range(BLOCK):
                weights[r, n_keys[i0 + r]:n] = minus_inf  # past row i0 + r's own limit (at most 3 keys)
            w0, w1, w2, w3 = weights[0, :n], weights[1, :n], weights[2, :n], weights[3, :n]
            m0, m1, m2, m3 = row_max(w0), row_max(w1), row_max(w2), row_max(w3)
            t0 = t1 = t2 = t3 = zero
            for j in range(n):  # the four rows' exponentials in one loop: one loop overhead, not four
                e0, e1 = fast_exp(w0[j] - m0), fast_exp(w1[j] - m1)
                e2, e3 = fast_exp(w2[j] - m2), fast_exp(w3[j] - m3)
                w0[j], w1[j], w2[j], w3[j] = e0, e1, e2, e3
                t0 += e0
                t1 += e1
                t2 += e2
                t3 += e3
            acc[:] = 0
            _add_block_products(weights, vh, acc, n)
            for r, row_max_r, total in ((0, m0, t0), (1, m1, t1), (2, m2, t2), (3, m3, t3)):
                if i0 + r < tq:  # not a padding row
                    lse[b, h, i0 + r] = row_max_r + math.log(total)
                    dst, src, inv_total = out[b, i0 + r, h], acc[r], 1 / total
                    for c in range(d):
                        dst[c] = src[c] * inv_total


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _attention_backward_heads(dout, q, k, v, out, lse, causal, dq, dk, dv):
    """dout, out, dq (B, H, Tq, D), the rest as in _attention_forward_heads, dk/dv like k/v; any strides."""
    n_batch, n_head, tq, d = q.shape
    tk = k.shape[2]
    scale = q.dtype.type(1 / math.sqrt(d))
    one, zero, minus_inf = q.dtype.type(1), q.dtype.type(0), q.dtype.type(-np.inf)
    n_keys = _visible_keys(tq, tk, causal, _padded(tq))
    for bh in prange(n_batch * n_head):
        b, h = bh // n_head, bh % n_head
        qh, douth = _padded_copy(q[b, h]), _padded_copy(dout[b, h])  # padding rows of dout are 0: dP = 0
        kh, vh = _padded_copy(k[b, h]), _padded_copy(v[b, h])
        probs, dscores = np.empty((BLOCK, kh.shape[0]), q.dtype), np.empty((BLOCK, kh.shape[0]), q.dtype)
        dq_block = np.empty((BLOCK, d), q.dtype)
        dkh, dvh = np.zeros(kh.shape, q.dtype), np.zeros(kh.shape, q.dtype)
        for i0 in range(0, qh.shape[0], BLOCK):
            n = _padded(n_keys[i0 + BLOCK - 1])
            _block_scores(qh[i0:i0 + BLOCK], kh, probs, scale, n)
            _block_scores(douth[i0:i0 + BLOCK], vh, dscores, one, n)
            for r in range(BLOCK):
                i = i0 + r
                row_lse, delta = zero, zero  # a padding row: its q and dout are 0, so its dS and P^T dout are 0
                if i < tq:
                    row_lse = lse[b, h, i]
                    dout_row, out_row = douth[i], out[b, h, i]
                    for c in range(d):
                        delta += dout_row[c] * out_row[c]  # = sum_j P_ij dP_ij
                p_row, ds_row = probs[r, :n], dscores[r, :n]
                p_row[n_keys[i]:] = minus_inf
                for j in range(n):
                    p = fast_exp(p_row[j] - row_lse)
                    p_row[j] = p
                    ds_row[j] = p * (ds_row[j] - delta) * scale
            # dq = dS k, dk = dS^T q, dv = P^T dout (scale is already inside dS)
            dq_block[:] = 0
            _add_block_products(dscores, kh, dq_block, n)
            _add_block_transposed_products(dscores, qh[i0:i0 + BLOCK], dkh, n)
            _add_block_transposed_products(probs, douth[i0:i0 + BLOCK], dvh, n)
            _copy_rows(dq_block, dq[b, h, i0:], min(BLOCK, tq - i0))
        _copy_rows(dkh, dk[b, h], tk)
        _copy_rows(dvh, dv[b, h], tk)


def attention_forward(q, k, v, causal):
    """(out, lse), as the reference. `out` is laid out (B, T, H, D) in memory, viewed as (B, H, T, D):
    merging the heads back into (B, T, C) after attention is then a view, not a copy."""
    n_batch, n_head, tq, d = q.shape
    out = np.empty((n_batch, tq, n_head, d), q.dtype)
    lse = np.empty(q.shape[:3], q.dtype)
    _attention_forward_heads(q, k.astype(q.dtype, copy=False), v.astype(q.dtype, copy=False), bool(causal), out, lse)
    return out.transpose(0, 2, 1, 3), lse


def attention_backward(dout, q, k, v, out, lse, causal):
    """(dq, dk, dv), as the reference, each laid out in memory as its input is (np.empty_like keeps the
    order of the axes): when q, k, v are head views of one (B, T, 3C) array, the moves that undo the head
    split in backward are views too."""
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    _attention_backward_heads(dout.astype(q.dtype, copy=False), q, k, v, out, lse, bool(causal), dq, dk, dv)
    return dq, dk, dv
