"""Embedding backward: scatter-add output gradients into the rows of the table they came from.

Shapes: ids any integer shape S; dout S + (C,); dweight (num_embeddings, C).
Forward (done by the engine as plain indexing): out[s] = weight[ids[s]].
Backward: dweight[r] = sum over positions s with ids[s] == r of dout[s]   (repeated ids add up).

The numba kernel splits the C columns into blocks, one block per parallel iteration: every thread
walks all ids but writes only its own columns, so repeated ids never race.
"""
import numpy as np
from numba import njit, prange

COLUMNS_PER_BLOCK = 64


def _check_inputs(ids, dout, num_embeddings):
    if ids.dtype.kind not in "iu":
        raise ValueError(f"embedding: ids must be integers, got dtype {ids.dtype}")
    if dout.shape[:-1] != ids.shape or dout.ndim != ids.ndim + 1:
        raise ValueError(f"embedding: dout has shape {dout.shape}, expected ids.shape + (C,) = {ids.shape} + (C,)")
    bad = (ids < 0) | (ids >= num_embeddings)
    if bad.any():
        position = np.unravel_index(int(np.argmax(bad)), ids.shape)
        raise ValueError(f"embedding: id {int(ids[position])} at position {tuple(map(int, position))} "
                         f"is outside [0, {num_embeddings})")


def embedding_backward_numpy(ids, dout, num_embeddings):
    _check_inputs(ids, dout, num_embeddings)
    dweight = np.zeros((num_embeddings, dout.shape[-1]), dout.dtype)
    np.add.at(dweight, ids.reshape(-1), dout.reshape(-1, dout.shape[-1]))
    return dweight


@njit(parallel=True, cache=True, error_model="numpy")
def _embedding_backward_blocks(ids, dout, dweight):
    n_cols = dout.shape[1]
    for block in prange(-(-n_cols // COLUMNS_PER_BLOCK)):
        c0 = block * COLUMNS_PER_BLOCK
        c1 = min(n_cols, c0 + COLUMNS_PER_BLOCK)
        for n in range(ids.shape[0]):
            src = dout[n, c0:c1]
            dst = dweight[ids[n], c0:c1]
            for c in range(src.shape[0]):
                dst[c] += src[c]


def embedding_backward_numba(ids, dout, num_embeddings):
    _check_inputs(ids, dout, num_embeddings)
    dweight = np.zeros((num_embeddings, dout.shape[-1]), dout.dtype)
    _embedding_backward_blocks(np.ascontiguousarray(ids, dtype=np.int64).reshape(-1),
                               np.ascontiguousarray(dout).reshape(-1, dout.shape[-1]), dweight)
    return dweight
