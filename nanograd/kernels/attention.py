"""Scaled dot-product attention, optionally causal, fused into one kernel per (batch, head).

Shapes: q, out, dq, dout (B, H, Tq, D); k, v, dk, dv (B, H, Tk, D), Tq <= Tk; saved = lse (B, H, Tq).

Forward, per (b, h), with scale = 1 / sqrt(D):
    S = scale * q k^T                  (Tq, Tk)
    S_ij = -inf where causal and j > i + (Tk - Tq)     (bottom-right alignment: the last query row
                                                        sees every key, as in a KV-cache decode step)
    lse_i = log sum_j exp(S_ij),   P = exp(S - lse),   out = P v
Backward (P is recomputed from the saved lse rather than stored: it is B*H*Tq*Tk numbers,
100 MB per layer at B=64, H=6, T=256):
    dv = P^T dout,   dP = dout v^T,   dS = P * (dP - rowsum(dout * out)),
    dq = scale * dS k,   dk = scale * dS^T q
(rowsum(dout * out)_i = sum_j P_ij dP_ij, the softmax backward's dot product.)

The numba kernels run one (b, h) per parallel iteration, so a head's (Tq, Tk) matrices live only in
that thread's cache (256 KB at T=256) instead of a (B, H, T, T) array in memory; masked keys are
skipped, not computed and then masked. Every product is written as rows-times-rows,
    out[i, j] = sum_l a[i, l] * b[j, l]
with both operands contiguous along l (k, v, q, dout and the score matrices are transposed per head
where needed), and four rows of a share each load of b (`_dot4`): measured ~2x faster than one dot
product at a time, and LLVM vectorizes the loop over l.
"""
import math

import numpy as np
from numba import njit, prange

from .fastmath import FAST, fast_exp
from .softmax import softmax_backward_numpy, softmax_row


def _check_inputs(q, k, v):
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"attention: q, k, v must be (B, H, T, D); got {q.shape}, {k.shape}, {v.shape}")
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"attention: q {q.shape} and k, v {k.shape}, {v.shape} must share B, H and D, "
                         "and k, v must have the same shape")
    if q.shape[2] > k.shape[2]:
        raise ValueError(f"attention: Tq={q.shape[2]} must not exceed Tk={k.shape[2]}")


def _causal_mask(tq, tk):
    """True where query i must not see key j, i.e. j > i + (Tk - Tq)."""
    return np.triu(np.ones((tq, tk), dtype=bool), k=tk - tq + 1)


def _scores_numpy(q, k, causal):
    scores = (q @ np.swapaxes(k, -1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        scores = np.where(_causal_mask(q.shape[2], k.shape[2]), -np.inf, scores)
    return scores.astype(q.dtype, copy=False)


def attention_forward_numpy(q, k, v, causal):
    _check_inputs(q, k, v)
    scores = _scores_numpy(q, k, causal)
    m = scores.max(axis=-1, keepdims=True)
    lse = m + np.log(np.exp(scores - m).sum(axis=-1, keepdims=True))
    out = np.exp(scores - lse) @ v
    return out.astype(q.dtype, copy=False), lse[..., 0].astype(q.dtype, copy=False)


def attention_backward_numpy(dout, q, k, v, out, saved, causal):
    _check_inputs(q, k, v)
    probs = np.exp(_scores_numpy(q, k, causal) - saved[..., None])
    dv = np.swapaxes(probs, -1, -2) @ dout
    dscores = softmax_backward_numpy(probs, dout @ np.swapaxes(v, -1, -2))
    scale = 1.0 / math.sqrt(q.shape[-1])
    dq = (dscores @ k) * scale
    dk = (np.swapaxes(dscores, -1, -2) @ q) * scale
    return tuple(g.astype(q.dtype, copy=False) for g in (dq, dk, dv))


@njit(cache=True, fastmath=FAST)
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


@njit(cache=True, fastmath=FAST)
def _dot(a, b):
    s = b.dtype.type(0)
    for l in range(b.shape[0]):
        s += a[l] * b[l]
    return s


@njit(cache=True, fastmath=FAST)
def _row_products(a, b, out, scale, n_out, lo, hi):
    """out[i, j] = scale * sum_{l in [lo_i, hi_i)} a[i, l] * b[j, l] for j < n_out_i.

    The per-row limits carry the causal mask. Rows of a go four at a time over the union of their
    limits, which is exact because a is zero outside each row's own [lo_i, hi_i), and writes a few
    entries past n_out_i that the callers overwrite.
    """
    m = a.shape[0]
    for i0 in range(0, m - 3, 4):
        n = max(n_out[i0], n_out[i0 + 3])
        l0 = min(lo[i0], lo[i0 + 3])
        l1 = max(hi[i0], hi[i0 + 3])
        a0, a1, a2, a3 = a[i0, l0:l1], a[i0 + 1, l0:l1], a[i0 + 2, l0:l1], a[i0 + 3, l0:l1]
        for j in range(n):
            s0, s1, s2, s3 = _dot4(a0, a1, a2, a3, b[j, l0:l1])
            out[i0, j] = s0 * scale
            out[i0 + 1, j] = s1 * scale
            out[i0 + 2, j] = s2 * scale
            out[i0 + 3, j] = s3 * scale
    for i in range(m - m % 4, m):
        l0, l1 = lo[i], hi[i]
        for j in range(n_out[i]):
            out[i, j] = _dot(a[i, l0:l1], b[j, l0:l1]) * scale


@njit(cache=True)
def _visible_keys(tq, tk, causal):
    """For each query i, the number of keys it sees: i + (Tk - Tq) + 1 if causal, else Tk."""
    n_keys = np.empty(tq, np.int64)
    for i in range(tq):
        n_keys[i] = min(tk, i + tk - tq + 1) if causal else tk
    return n_keys


@njit(cache=True)
def _first_seeing_query(tq, tk, causal):
    """For each key j, the first query that sees it: j - (Tk - Tq) if causal (at least 0), else 0."""
    first = np.empty(tk, np.int64)
    for j in range(tk):
        first[j] = max(0, j - (tk - tq)) if causal else 0
    return first


@njit(parallel=True, cache=True, fastmath=FAST)
def _attention_forward_heads(q, k, v, causal, out, lse):
    n_heads, tq, d = q.shape
    tk = k.shape[1]
    scale = q.dtype.type(1 / math.sqrt(d))
    n_keys = _visible_keys(tq, tk, causal)
    zeros = np.zeros(tq, np.int64)
    all_d = np.full(tq, d, np.int64)
    for h in prange(n_heads):
        probs = np.empty((tq, tk), q.dtype)
        _row_products(q[h], k[h], probs, scale, n_keys, zeros, all_d)
        for i in range(tq):
            visible = probs[i, :n_keys[i]]
            lse[h, i] = softmax_row(visible, visible)
            probs[i, n_keys[i]:] = 0
        _row_products(probs, np.ascontiguousarray(v[h].T), out[h], q.dtype.type(1), all_d, zeros, n_keys)


@njit(parallel=True, cache=True, fastmath=FAST)
def _attention_backward_heads(dout, q, k, v, out, lse, causal, dq, dk, dv):
    n_heads, tq, d = q.shape
    tk = k.shape[1]
    scale = q.dtype.type(1 / math.sqrt(d))
    one = q.dtype.type(1)
    n_keys = _visible_keys(tq, tk, causal)
    first_query = _first_seeing_query(tq, tk, causal)
    zeros_q = np.zeros(tq, np.int64)
    all_d_q, all_d_k = np.full(tq, d, np.int64), np.full(tk, d, np.int64)
    all_q = np.full(tk, tq, np.int64)
    for h in prange(n_heads):
        probs = np.empty((tq, tk), q.dtype)
        dscores = np.empty((tq, tk), q.dtype)
        _row_products(q[h], k[h], probs, scale, n_keys, zeros_q, all_d_q)
        _row_products(dout[h], v[h], dscores, one, n_keys, zeros_q, all_d_q)
        for i in range(tq):
            delta = _dot(dout[h, i], out[h, i])  # = sum_j P_ij dP_ij
            p_row, ds_row = probs[i], dscores[i]
            for j in range(n_keys[i]):
                p = fast_exp(p_row[j] - lse[h, i])
                p_row[j] = p
                ds_row[j] = p * (ds_row[j] - delta) * scale
            p_row[n_keys[i]:] = 0
            ds_row[n_keys[i]:] = 0
        # dq = dS k, dk = dS^T q, dv = P^T dout (scale is already inside dS)
        _row_products(dscores, np.ascontiguousarray(k[h].T), dq[h], one, all_d_q, zeros_q, n_keys)
        _row_products(np.ascontiguousarray(dscores.T), np.ascontiguousarray(q[h].T), dk[h], one,
                      all_d_k, first_query, all_q)
        _row_products(np.ascontiguousarray(probs.T), np.ascontiguousarray(dout[h].T), dv[h], one,
                      all_d_k, first_query, all_q)


def _heads(x):
    """(B, H, T, D) -> C-contiguous (B*H, T, D)."""
    return np.ascontiguousarray(x).reshape(-1, x.shape[2], x.shape[3])


def attention_forward_numba(q, k, v, causal):
    _check_inputs(q, k, v)
    qh, kh, vh = _heads(q), _heads(k).astype(q.dtype, copy=False), _heads(v).astype(q.dtype, copy=False)
    out = np.empty_like(qh)
    lse = np.empty(qh.shape[:2], q.dtype)
    _attention_forward_heads(qh, kh, vh, bool(causal), out, lse)
    return out.reshape(q.shape), lse.reshape(q.shape[:3])


def attention_backward_numba(dout, q, k, v, out, saved, causal):
    _check_inputs(q, k, v)
    qh, kh, vh = _heads(q), _heads(k), _heads(v)
    dq, dk, dv = np.empty_like(qh), np.empty_like(kh), np.empty_like(vh)
    _attention_backward_heads(_heads(dout), qh, kh, vh, _heads(out),
                              np.ascontiguousarray(saved).reshape(qh.shape[:2]), bool(causal), dq, dk, dv)
    return dq.reshape(q.shape), dk.reshape(k.shape), dv.reshape(v.shape)
