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

The numba kernels run one (b, h) per parallel iteration and one query row at a time, so the
(Tq, Tk) matrices never exist: each row's scores live in a Tk-long buffer in L1. Keys past the
causal limit are skipped, not computed and masked. Every inner loop runs over a contiguous axis
(k and v are transposed once per head), so LLVM vectorizes it.
"""
import math

import numpy as np
from numba import njit, prange

from .fastmath import FAST, fast_exp, row_max
from .softmax import softmax_backward_numpy


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
def _row_scores(qi, kt, scale, scores):
    """scores[j] = scale * (qi . k_j) for every j < len(scores), with kt = k^T (D, Tk)."""
    scores[:] = 0
    n_keys = scores.shape[0]
    for c in range(qi.shape[0]):
        a = qi[c] * scale
        kc = kt[c, :n_keys]
        for j in range(n_keys):
            scores[j] += a * kc[j]


@njit(parallel=True, cache=True, fastmath=FAST)
def _attention_forward_heads(q, k, v, causal, out, lse):
    n_heads, tq, d = q.shape
    tk = k.shape[1]
    scale = q.dtype.type(1 / math.sqrt(d))
    for h in prange(n_heads):
        kt = np.ascontiguousarray(k[h].T)
        buffer = np.empty(tk, q.dtype)
        for i in range(tq):
            n_keys = min(tk, i + tk - tq + 1) if causal else tk
            scores = buffer[:n_keys]
            _row_scores(q[h, i], kt, scale, scores)
            m = row_max(scores)
            total = q.dtype.type(0)
            for j in range(n_keys):
                e = fast_exp(scores[j] - m)
                scores[j] = e
                total += e
            o = out[h, i]
            o[:] = 0
            for j in range(n_keys):
                p = scores[j]
                vj = v[h, j]
                for c in range(d):
                    o[c] += p * vj[c]
            inv_total = 1 / total
            for c in range(d):
                o[c] *= inv_total
            lse[h, i] = m + math.log(total)


@njit(parallel=True, cache=True, fastmath=FAST)
def _attention_backward_heads(dout, q, k, v, out, lse, causal, dq, dk, dv):
    n_heads, tq, d = q.shape
    tk = k.shape[1]
    scale = q.dtype.type(1 / math.sqrt(d))
    for h in prange(n_heads):
        kt = np.ascontiguousarray(k[h].T)
        vt = np.ascontiguousarray(v[h].T)
        probs_buffer = np.empty(tk, q.dtype)
        dscores_buffer = np.empty(tk, q.dtype)
        dk[h] = 0
        dv[h] = 0
        for i in range(tq):
            n_keys = min(tk, i + tk - tq + 1) if causal else tk
            probs, dscores = probs_buffer[:n_keys], dscores_buffer[:n_keys]
            _row_scores(q[h, i], kt, scale, probs)
            for j in range(n_keys):
                probs[j] = fast_exp(probs[j] - lse[h, i])
            do, o = dout[h, i], out[h, i]
            _row_scores(do, vt, q.dtype.type(1), dscores)
            delta = q.dtype.type(0)
            for c in range(d):
                delta += do[c] * o[c]
            for j in range(n_keys):
                dscores[j] = probs[j] * (dscores[j] - delta) * scale
            dqi, qi = dq[h, i], q[h, i]
            dqi[:] = 0
            for j in range(n_keys):
                ds, p = dscores[j], probs[j]
                kj, dkj, dvj = k[h, j], dk[h, j], dv[h, j]
                for c in range(d):
                    dqi[c] += ds * kj[c]
                    dkj[c] += ds * qi[c]
                    dvj[c] += p * do[c]


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
