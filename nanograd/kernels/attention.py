"""Scaled dot-product attention, optionally causal, fused into one kernel per (batch, head).

Shapes: q, out, dq, dout (B, H, Tq, D); k, v, dk, dv (B, H, Tk, D), Tq <= Tk; saved = lse (B, H, Tq).
Any strides are accepted, and the outputs may be passed in (`out=`; `dq=, dk=, dv=`): so q, k, v can
be views into the (B, T, 3C) output of a transformer's qkv projection, `out` a view into a (B, T, C)
array, and dq, dk, dv views into one (B, T, 3C) gradient, with no transposed copies on either side.

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


def attention_forward_numpy(q, k, v, causal, out=None):
    _check_inputs(q, k, v)
    scores = _scores_numpy(q, k, causal)
    m = scores.max(axis=-1, keepdims=True)
    lse = m + np.log(np.exp(scores - m).sum(axis=-1, keepdims=True))
    return _store(np.exp(scores - lse) @ v, out, q.dtype, "out"), lse[..., 0].astype(q.dtype, copy=False)


def attention_backward_numpy(dout, q, k, v, out, saved, causal, dq=None, dk=None, dv=None):
    _check_inputs(q, k, v)
    probs = np.exp(_scores_numpy(q, k, causal) - saved[..., None])
    dscores = softmax_backward_numpy(probs, dout @ np.swapaxes(v, -1, -2))
    scale = 1.0 / math.sqrt(q.shape[-1])
    return (_store((dscores @ k) * scale, dq, q.dtype, "dq"),
            _store((np.swapaxes(dscores, -1, -2) @ q) * scale, dk, q.dtype, "dk"),
            _store(np.swapaxes(probs, -1, -2) @ dout, dv, q.dtype, "dv"))


def _output(out, shape, dtype, name):
    """The caller's output array (any strides, e.g. a view into a bigger buffer) or a new one."""
    if out is None:
        return np.empty(shape, dtype)
    if out.shape != shape or out.dtype != dtype:
        raise ValueError(f"attention: {name} must be {dtype} of shape {shape}, got {out.dtype} of shape {out.shape}")
    return out


def _store(value, out, dtype, name):
    """value as dtype, written into the caller's `out` when one is given."""
    result = _output(out, value.shape, dtype, name)
    result[...] = value
    return result


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
            if n_cols[i] <= j0:  # written as `continue`: the same test as an if-block ran 2.5x slower
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
    (measured ~2x faster than transposing weights for _row_products at T=256)."""
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
    """dst[...] = src for a strided dst, row by row: numba's generic slice assignment measured 3x slower."""
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


def attention_forward_numba(q, k, v, causal, out=None):
    _check_inputs(q, k, v)
    out = _output(out, q.shape, q.dtype, "out")
    lse = np.empty(q.shape[:3], q.dtype)
    _attention_forward_heads(q, k.astype(q.dtype, copy=False), v.astype(q.dtype, copy=False), bool(causal), out, lse)
    return out, lse


def attention_backward_numba(dout, q, k, v, out, saved, causal, dq=None, dk=None, dv=None):
    _check_inputs(q, k, v)
    dq, dk, dv = (_output(g, x.shape, q.dtype, name) for g, x, name in ((dq, q, "dq"), (dk, k, "dk"), (dv, v, "dv")))
    _attention_backward_heads(dout.astype(q.dtype, copy=False), q, k, v, out, saved, bool(causal), dq, dk, dv)
    return dq, dk, dv
