"""Cross-entropy of logits against integer targets, fused with the softmax.

Shapes: logits, dlogits (N, V); targets (N,) integers; saved = lse (N,); loss a 0-d array.

Forward, with valid rows R = {n : targets_n != ignore_index} and lse_n = log sum_v exp(logits_nv):
    loss = (1 / |R|) * sum_{n in R} (lse_n - logits_{n, targets_n})
Backward (dloss the upstream scalar gradient):
    dlogits_nv = dloss / |R| * (softmax(logits_n)_v - [v == targets_n])   for n in R
    dlogits_nv = 0                                                        for n not in R
If every row is ignored (|R| = 0) the loss is defined as 0.0 and its gradient is all zeros, rather
than the 0/0 = NaN a plain mean would give (PyTorch returns NaN there).

A target outside [0, V) that is not ignore_index raises ValueError naming the id and its row.
The numba kernels compute a row's log-sum-exp in one pass over the row (vectorizable fast_exp) and
form the backward's softmax again from lse instead of keeping an (N, V) probability array.
"""
import numpy as np
from numba import njit, prange

from .fastmath import FAST, fast_exp
from .softmax import logsumexp_row


def _check_inputs(logits, targets, ignore_index):
    """Validate shapes and ids; return the boolean mask of rows that count."""
    if logits.ndim != 2:
        raise ValueError(f"cross_entropy: logits must be (N, V), got shape {logits.shape}")
    if targets.shape != (logits.shape[0],):
        raise ValueError(f"cross_entropy: targets must have shape ({logits.shape[0]},) to match "
                         f"logits {logits.shape}, got {targets.shape}")
    if targets.dtype.kind not in "iu":
        raise ValueError(f"cross_entropy: targets must be integers, got dtype {targets.dtype}")
    valid = targets != ignore_index
    bad = valid & ((targets < 0) | (targets >= logits.shape[1]))
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"cross_entropy: target id {int(targets[row])} at row {row} is outside "
                         f"[0, {logits.shape[1]}) and is not ignore_index={ignore_index}")
    return valid


def cross_entropy_forward_numpy(logits, targets, ignore_index):
    valid = _check_inputs(logits, targets, ignore_index)
    m = logits.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
    rows = np.flatnonzero(valid)
    n_valid = max(len(rows), 1)
    loss = (lse[rows] - logits[rows, targets[rows]]).sum() / n_valid
    return np.asarray(loss, dtype=logits.dtype), lse


def cross_entropy_backward_numpy(logits, targets, saved, ignore_index, dloss):
    valid = _check_inputs(logits, targets, ignore_index)
    lse = saved
    rows = np.flatnonzero(valid)
    dlogits = np.exp(logits - lse[:, None])
    dlogits[rows, targets[rows]] -= 1.0
    dlogits[~valid] = 0.0
    dlogits *= float(dloss) / max(len(rows), 1)
    return dlogits.astype(logits.dtype, copy=False)


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _cross_entropy_forward_rows(logits, targets, valid, lse, row_loss):
    for i in prange(logits.shape[0]):
        lse[i] = logsumexp_row(logits[i])
        row_loss[i] = lse[i] - logits[i, targets[i]] if valid[i] else 0


@njit(parallel=True, cache=True, error_model="numpy", fastmath=FAST)
def _cross_entropy_backward_rows(logits, targets, valid, lse, scale, dlogits):
    for i in prange(logits.shape[0]):
        row, out = logits[i], dlogits[i]
        if not valid[i]:
            out[:] = 0
            continue
        row_lse = lse[i]  # a local, so the loop needs no alias check against out
        for v in range(row.shape[0]):
            out[v] = fast_exp(row[v] - row_lse) * scale
        out[targets[i]] -= scale


def cross_entropy_forward_numba(logits, targets, ignore_index):
    valid = _check_inputs(logits, targets, ignore_index)
    rows = np.ascontiguousarray(logits)
    lse = np.empty(rows.shape[0], rows.dtype)
    row_loss = np.empty(rows.shape[0], rows.dtype)
    safe_targets = np.where(valid, targets, 0).astype(np.int64)
    _cross_entropy_forward_rows(rows, safe_targets, valid, lse, row_loss)
    loss = row_loss.sum() / max(int(valid.sum()), 1)
    return np.asarray(loss, dtype=logits.dtype), lse


def cross_entropy_backward_numba(logits, targets, saved, ignore_index, dloss):
    valid = _check_inputs(logits, targets, ignore_index)
    rows = np.ascontiguousarray(logits)
    dlogits = np.empty_like(rows)
    scale = rows.dtype.type(float(dloss) / max(int(valid.sum()), 1))
    safe_targets = np.where(valid, targets, 0).astype(np.int64)
    _cross_entropy_backward_rows(rows, safe_targets, valid, np.ascontiguousarray(saved, dtype=rows.dtype),
                                 scale, dlogits)
    return dlogits
