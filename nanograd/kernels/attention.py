"""Attention: the fast version of attention_forward / attention_backward in nanograd/functional.py, whose
NumPy reference states the math (read that first; this file is about doing it fast).

Shapes: q, out, dq, dout (B, H, Tq, D); k, v, dk, dv (B, H, Tk, D), Tq <= Tk; lse (B, H, Tq). Any strides
are accepted, so q, k, v may be head views into the (B, T, 3C) output of a qkv projection, with no
transposed copies. Backward uses dS = P * (dP - rowsum(dout * out)): rowsum(dout * out)_i equals
sum_j P_ij dP_ij, the softmax backward's dot product, from arrays already at hand.

The numba kernels run one (b, h) per parallel iteration, so a head's (Tq, Tk) matrices live only in
that thread's cache (256 KB at T=256) instead of a (B, H, T, T) array in memory, and keys past the
causal limit are skipped rather than computed and masked. Each head's q, k, v rows are first copied
into contiguous thread-local arrays (cheap next to the O(T^2 D) work, and what lets the loops
vectorize whatever the caller's strides). Three loop shapes do all the products,
each sharing every memory access among four multiply-adds and vectorizing over a contiguous axis:
    _row_products            S = scale q k^T, dP = dout v^T      (four dot products per load of k_j)
    _add_products            out += P v, dq += dS k               (four rows of v or k per pass)
    _add_transposed_products dk += dS^T q, dv += P^T dout         (no transposed copy of P or dS)
"""
import math

import numpy as np
from numba import njit, prange

from .fastmath import FAST, fast_exp
from .softmax import softmax_row


@njit(cache=True, error_model="numpy", fastmath=FAST)
def _dot4(a0, a1, a2, a3, b):
    """(a0 . b, a1 . b, a2 . b, a3 . b): four dot products share each load of b."""
    s0 = s1 = s2 = s3 = b.dtype.type(0)
    for l in range(b.shape[0]):
        x = b[l]
        s0 += a0[l] * x
        s1 += a1[l] * x
        s2 += a2[l] * x
        s3 += a3[l] * x
    return s0, s1, s2, s3


@njit(cache=True, error_model="numpy", fastmath=FAST)
def _dot(a, b):
    s = b.dtype.type(0)
    for l in range(b.shape[0]):
        s += a[l] * b[l]
    return s


@njit(cache=True, error_model="numpy", fastmath=FAST)
def _row_products(a, b, out, scale, n_out):
    """out[i, j] = scale * (a[i] . b[j]) for j < n_out_i: out = scale a b^T, causally limited.

    Rows of a go four at a time up to the largest limit of the four; the few entries past a row's
    own n_out_i are written too and the callers overwrite them."""
    m = a.shape[0]
    for i0 in range(0, m - 3, 4):
        a0, a1, a2, a3 = a[i0], a[i0 + 1], a[i0 + 2], a[i0 + 3]
        for j in range(max(n_out[i0], n_out[i0 + 3])):
            s0, s1, s2, s3 = _dot4(a0, a1, a2, a3, b[j])
            out[i0, j] = s0 * scale
            out[i0 + 1, j] = s1 * scale
            out[i0 + 2, j] = s2 * scale
            out[i0 + 3, j] = s3 * scale
    for i in range(m - m % 4, m):
        for j in range(n_out[i]):
            out[i, j] = _dot(a[i], b[j]) * scale


@njit(cache=True, error_model="numpy", fastmath=FAST)
def _add_products(weights, rows, out, n_cols):
    """out[i] += sum_{j < n_cols_i} weights[i, j] * rows[j]: out += weights rows.

    Four rows j at a time, so each out[i] is loaded and stored once per four multiply-adds."""
    m = weights.shape[0]
    n_max = 0
    for i in range(m):
        n_max = max(n_max, n_cols[i])
    for j0 in range(0, n_max - 3, 4):
        r0, r1, r2, r3 = rows[j0], rows[j0 + 1], rows[j0 + 2], rows[j0 + 3]
        for i in range(m):
            if n_cols[i] <= j0:  # written as `continue`: LLVM vectorizes this form, not the if-block
                continue
            w = weights[i]
            w0, w1, w2, w3 = w[j0], w[j0 + 1], w[j0 + 2], w[j0 + 3]
            o = out[i]
            for c in range(o.shape[0]):
                o[c] += w0 * r0[c] + w1 * r1[c] + w2 * r2[c] + w3 * r3[c]
    for j in range(n_max - n_max % 4, n_max):
        r = rows[j]
        for i in range(m):
            if n_cols[i] <= j:
                continue
            w = weights[i, j]
            o = out[i]
            for c in range(o.shape[0]):
                o[c] += w * r[c]


@njit(cache=True, error_model="numpy", fastmath=FAST)
def _add_transposed_products(weights, rows, out, n_cols):
    """out[j] += sum_i weights[i, j] * rows[i] for j < n_cols_i: out += weights^T rows, no transpose.

    Four rows i at a time, so each out[j] is loaded and stored once per four multiply-adds
    (cheaper than transposing weights for _row_products: no (T, T) copy)."""
    m = weights.shape[0]
    for i0 in range(0, m - 3, 4):
        r0, r1, r2, r3 = rows[i0], rows[i0 + 1], rows[i0 + 2], rows[i0 + 3]
        for j in range(max(n_cols[i0], n_cols[i0 + 3])):
            w0, w1, w2, w3 = weights[i0, j], weights[i0 + 1, j], weights[i0 + 2, j], weights[i0 + 3, j]
            o = out[j]
            for c in range(o.shape[0]):
                o[c] += w0 * r0[c] + w1 * r1[c] + w2 * r2[c] + w3 * r3[c]
    for i in range(m - m % 4, m):
        r = rows[i]
        for j in range(n_cols[i]):
            w = weights[i, j]
            o = out[j]
            for c in range(o.shape[0]):
                o[c] += w * r[c]


@njit(cache=True, error_model="numpy")
def _visible_keys(tq, tk, causal):
    """For each query i, the number of keys it sees: i + (Tk - Tq) + 1 if causal, else Tk."""
    n_keys = np.empty(tq, np.int64)
    for i in range(tq):
        n_keys[i] = min(tk, i + tk - tq + 1) if causal else tk
    return n_keys


@njit(cache=True, error_model="numpy")
def _copy_rows(src, dst):
    """dst[...] = src for a strided dst, row by row: numba's generic slice assignment is slower (benchmarks)."""
    for t in range(src.shape[0]):
        src_row, dst_row = src[t], dst[t]
        for c in range(src.shape[1]):
            dst_row[c] = src_row[c]


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _attention_forward_heads(q, k, v, causal, out, lse):
    """q, out (B, H, Tq, D), k, v (B, H, Tk, D), lse (B, H, Tq). Any strides: each head is copied into
    contiguous thread-local arrays first, so q, k, v may be views into the (B, T, 3C) output of the qkv
    projection and out a view into a (B, T, C) array, with no transposed copies around the kernel."""
    n_batch, n_head, tq, d = q.shape
    tk = k.shape[2]
    scale = q.dtype.type(1 / math.sqrt(d))
    n_keys = _visible_keys(tq, tk, causal)
    for bh in prange(n_batch * n_head):
        b, h = bh // n_head, bh % n_head
        qh, kh, vh = q[b, h].copy(), k[b, h].copy(), v[b, h].copy()
        scores, probs = np.empty((tq, tk), q.dtype), np.empty((tq, tk), q.dtype)
        _row_products(qh, kh, scores, scale, n_keys)
        for i in range(tq):
            lse[b, h, i] = softmax_row(scores[i, :n_keys[i]], probs[i, :n_keys[i]])
            probs[i, n_keys[i]:] = 0
        outh = np.zeros((tq, d), q.dtype)
        _add_products(probs, vh, outh, n_keys)
        _copy_rows(outh, out[b, h])


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _attention_backward_heads(dout, q, k, v, out, lse, causal, dq, dk, dv):
    """Shapes as in _attention_forward_heads, dq/dk/dv like q/k/v; any strides (heads copied in and out)."""
    n_batch, n_head, tq, d = q.shape
    tk = k.shape[2]
    scale = q.dtype.type(1 / math.sqrt(d))
    one = q.dtype.type(1)
    n_keys = _visible_keys(tq, tk, causal)
    for bh in prange(n_batch * n_head):
        b, h = bh // n_head, bh % n_head
        qh, kh, vh, douth = q[b, h].copy(), k[b, h].copy(), v[b, h].copy(), dout[b, h].copy()
        probs = np.empty((tq, tk), q.dtype)
        dscores = np.empty((tq, tk), q.dtype)
        _row_products(qh, kh, probs, scale, n_keys)
        _row_products(douth, vh, dscores, one, n_keys)
        for i in range(tq):
            delta = _dot(douth[i], out[b, h, i])  # = sum_j P_ij dP_ij
            p_row, ds_row = probs[i], dscores[i]
            row_lse = lse[b, h, i]
            for j in range(n_keys[i]):
                p = fast_exp(p_row[j] - row_lse)
                p_row[j] = p
                ds_row[j] = p * (ds_row[j] - delta) * scale
            p_row[n_keys[i]:] = 0
            ds_row[n_keys[i]:] = 0
        # dq = dS k, dk = dS^T q, dv = P^T dout (scale is already inside dS)
        dqh, dkh, dvh = np.zeros((tq, d), q.dtype), np.zeros((tk, d), q.dtype), np.zeros((tk, d), q.dtype)
        _add_products(dscores, kh, dqh, n_keys)
        _add_transposed_products(dscores, qh, dkh, n_keys)
        _add_transposed_products(probs, douth, dvh, n_keys)
        _copy_rows(dqh, dq[b, h])
        _copy_rows(dkh, dk[b, h])
        _copy_rows(dvh, dv[b, h])


def attention_forward(q, k, v, causal):
    """(out, lse), as the reference. `out` is laid out (B, T, H, D) in memory, viewed as (B, H, T, D):
    merging the heads back into (B, T, C) after attention is then a view, not a copy."""
    n_batch, n_head, tq, d = q.shape
    out = np.empty((n_batch, tq, n_head, d), q.dtype).transpose(0, 2, 1, 3)
    lse = np.empty(q.shape[:3], q.dtype)
    _attention_forward_heads(q, k.astype(q.dtype, copy=False), v.astype(q.dtype, copy=False), bool(causal), out, lse)
    return out, lse


def attention_backward(dout, q, k, v, out, lse, causal):
    """(dq, dk, dv), as the reference, each laid out in memory as its input is (np.empty_like keeps the
    order of the axes): when q, k, v are head views of one (B, T, 3C) array, the moves that undo the head
    split in backward are views too."""
    dq, dk, dv = np.empty_like(q), np.empty_like(k), np.empty_like(v)
    _attention_backward_heads(dout.astype(q.dtype, copy=False), q, k, v, out, lse, bool(causal), dq, dk, dv)
    return dq, dk, dv
