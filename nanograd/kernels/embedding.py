"""Embedding backward (scatter-add): the fast version of embedding_backward in nanograd/functional.py.

Shapes: ids any integer shape S, checked by the op to lie in [0, num_embeddings); dout S + (C,);
dweight (num_embeddings, C).

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


def embedding_backward(ids, dout, num_embeddings):
    _check_inputs(ids, dout, num_embeddings)
    dweight = np.zeros((num_embeddings, dout.shape[-1]), dout.dtype)
    _embedding_backward_blocks(np.ascontiguousarray(ids, dtype=np.int64).reshape(-1),
                               np.ascontiguousarray(dout).reshape(-1, dout.shape[-1]), dweight)
    return dweight
