"""Matrix products: NumPy's matmul (BLAS), except for a single row.

A single row times a matrix (a generation step at batch 1) goes through np.vecdot on the calling thread:
BLAS would wake its threads for a product too small to share. Everything else is np.matmul: a numba GEMM
was tried and lost to BLAS at every GPT shape (benchmarks/gemm_experiment.py keeps it and its measurements).
"""
import numpy as np


def matmul(a, b):
    """a @ b with np.matmul semantics."""
    if a.ndim == 2 and b.ndim == 2 and a.shape[0] == 1 and a.shape[1] == b.shape[0]:
        return np.vecdot(b.T, a)[None, :]  # (1, N): row . each column of b
    return np.matmul(a, b)
