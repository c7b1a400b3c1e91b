"""nanograd.kernels: the engine's hot loops as plain array functions (np.ndarray in, np.ndarray out).

Every kernel exists twice, side by side in its module: `<name>_numpy`, the readable reference, and
`<name>_numba`, a jitted version tested against it. The public `<name>` below runs one of them:

- Backend: environment variable NANOGRAD_KERNELS = "numba" (default) | "numpy", read at import.
  `BACKEND` holds the active name; `use_backend(name)` switches at run time and also works as a
  context manager that switches back (`with K.use_backend("numpy"): ...`).
- dtype: numba kernels are compiled for float32 and float64; any other float dtype runs the twin.
- matmul: under "numba", a measured rule picks the packed numba kernel or NumPy's BLAS by shape
  (see gemm.py). Under "numpy" it is np.matmul.

Modules, one concept each: fastmath (vectorizable exp and max), softmax, gelu, layer_norm,
cross_entropy, attention, embedding, adamw, gemm (matmul), threads (thread counts for numba and OpenBLAS).
"""
import functools
import os

import numpy as np

from . import adamw, attention, cross_entropy, embedding, gelu, gemm, layer_norm, softmax
from .threads import blas_threads_settable, set_num_threads

BACKENDS = ("numba", "numpy")
_NUMBA_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))


def _checked_backend(name):
    if name not in BACKENDS:
        raise ValueError(f"unknown kernel backend {name!r} (from NANOGRAD_KERNELS or use_backend); "
                         f"choose one of {BACKENDS}")
    return name


BACKEND = _checked_backend(os.environ.get("NANOGRAD_KERNELS", "numba"))


class use_backend:
    """Switch every kernel to backend `name` now; as a context manager, switch back on exit."""

    def __init__(self, name):
        global BACKEND
        self.previous = BACKEND
        BACKEND = _checked_backend(name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info):
        global BACKEND
        BACKEND = self.previous


def _numba_compiled_for(args):
    return all(a.dtype in _NUMBA_DTYPES for a in args if isinstance(a, np.ndarray) and a.dtype.kind == "f")


def _dispatch(name, numpy_twin, numba_version):
    @functools.wraps(numpy_twin)
    def kernel(*args):
        if BACKEND == "numba" and _numba_compiled_for(args):
            return numba_version(*args)
        return numpy_twin(*args)

    kernel.__name__ = kernel.__qualname__ = name
    return kernel


matmul = _dispatch("matmul", gemm.matmul_numpy, gemm.matmul_by_shape)
softmax_forward = _dispatch("softmax_forward", softmax.softmax_forward_numpy, softmax.softmax_forward_numba)
softmax_backward = _dispatch("softmax_backward", softmax.softmax_backward_numpy, softmax.softmax_backward_numba)
log_softmax_forward = _dispatch("log_softmax_forward", softmax.log_softmax_forward_numpy,
                                softmax.log_softmax_forward_numba)
log_softmax_backward = _dispatch("log_softmax_backward", softmax.log_softmax_backward_numpy,
                                 softmax.log_softmax_backward_numba)
gelu_forward = _dispatch("gelu_forward", gelu.gelu_forward_numpy, gelu.gelu_forward_numba)
gelu_backward = _dispatch("gelu_backward", gelu.gelu_backward_numpy, gelu.gelu_backward_numba)
layer_norm_forward = _dispatch("layer_norm_forward", layer_norm.layer_norm_forward_numpy,
                               layer_norm.layer_norm_forward_numba)
layer_norm_backward = _dispatch("layer_norm_backward", layer_norm.layer_norm_backward_numpy,
                                layer_norm.layer_norm_backward_numba)
cross_entropy_forward = _dispatch("cross_entropy_forward", cross_entropy.cross_entropy_forward_numpy,
                                  cross_entropy.cross_entropy_forward_numba)
cross_entropy_backward = _dispatch("cross_entropy_backward", cross_entropy.cross_entropy_backward_numpy,
                                   cross_entropy.cross_entropy_backward_numba)
attention_forward = _dispatch("attention_forward", attention.attention_forward_numpy,
                              attention.attention_forward_numba)
attention_backward = _dispatch("attention_backward", attention.attention_backward_numpy,
                               attention.attention_backward_numba)
embedding_backward = _dispatch("embedding_backward", embedding.embedding_backward_numpy,
                               embedding.embedding_backward_numba)
adamw_step = _dispatch("adamw_step", adamw.adamw_step_numpy, adamw.adamw_step_numba)

__all__ = ["BACKEND", "BACKENDS", "use_backend", "set_num_threads", "blas_threads_settable", "matmul",
           "softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward",
           "gelu_forward", "gelu_backward", "layer_norm_forward", "layer_norm_backward",
           "cross_entropy_forward", "cross_entropy_backward", "attention_forward", "attention_backward",
           "embedding_backward", "adamw_step"]
