"""Input preparation shared by the kernel wrappers: numba kernels want C-contiguous arrays."""
import numpy as np


def as_rows(x, name="x"):
    """View x (..., C) as a C-contiguous (N, C) array of rows (copying only if x is a strided view)."""
    if x.ndim == 0:
        raise ValueError(f"{name} must have at least 1 dimension, got a 0-d array")
    return np.ascontiguousarray(x).reshape(-1, x.shape[-1])


def check_same_shape(a, b, name_a, name_b):
    if a.shape != b.shape:
        raise ValueError(f"{name_a} has shape {a.shape} but {name_b} has shape {b.shape}; they must match")
