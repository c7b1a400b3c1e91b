"""Cross-entropy fused with softmax: the fast version of the references in nanograd/functional.py.

Shapes: logits, dlogits (N, V); targets (N,) integers, checked by the op to lie in [0, V) or equal
ignore_index; lse (N,); loss a 0-d array.
The numba kernels compute a row's log-sum-exp in one pass over the row (vectorizable fast_exp) and
form the backward's softmax again from lse instead of keeping an (N, V) probability array.
"""
import numpy as np
from numba import njit, prange

from .fastmath import FAST, fast_exp
from .softmax import logsumexp_row


def _counted(logits, targets, ignore_index):
    """The rows whose target counts (bool (N,)), after checking the shapes."""
    if logits.ndim != 2 or targets.shape != (logits.shape[0],):
        raise ValueError(f"cross_entropy: logits must be (N, V) and targets (N,), got {logits.shape} and "
                         f"{targets.shape}")
    return targets != ignore_index


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


def cross_entropy_forward(logits, targets, ignore_index):
    valid = _counted(logits, targets, ignore_index)
    rows = np.ascontiguousarray(logits)
    lse = np.empty(rows.shape[0], rows.dtype)
    row_loss = np.empty(rows.shape[0], rows.dtype)
    safe_targets = np.where(valid, targets, 0).astype(np.int64)
    _cross_entropy_forward_rows(rows, safe_targets, valid, lse, row_loss)
    loss = row_loss.sum() / max(int(valid.sum()), 1)
    return np.asarray(loss, dtype=logits.dtype), lse


def cross_entropy_backward(logits, targets, lse, ignore_index, dloss):
    valid = _counted(logits, targets, ignore_index)
    rows = np.ascontiguousarray(logits)
    dlogits = np.empty_like(rows)
    scale = rows.dtype.type(float(dloss) / max(int(valid.sum()), 1))
    safe_targets = np.where(valid, targets, 0).astype(np.int64)
    _cross_entropy_backward_rows(rows, safe_targets, valid, np.ascontiguousarray(lse, dtype=rows.dtype),
                                 scale, dlogits)
    return dlogits
