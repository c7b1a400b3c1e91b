"""nanograd.kernels: the engine's hot loops as plain array functions (np.ndarray in, np.ndarray out).

Every kernel exists twice, side by side in its module: `<name>_numpy`, the readable reference, and
`<name>_numba`, a jitted version tested against it. The public `<name>` below runs one of them:

- Backend: environment variable NANOGRAD_KERNELS = "numba" (default) | "numpy", read at import.
  `BACKEND` holds the active name; `use_backend(name)` switches at run time and also works as a
  context manager that switches back (`with K.use_backend("numpy"): ...`).
- dtype: numba kernels are compiled for float32 and float64; other dtypes (float16, integer data)
  run the twin.
- matmul: under "numba" it goes through a measured rule, `gemm.matmul_by_shape`, which today sends
  every shape to NumPy's BLAS: the packed numba GEMM measured 3-8x slower here (see gemm.py).
- Threads: `set_num_threads(n)` sets numba's and OpenBLAS's thread counts together (threads.py).

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
    """True when the float arrays among args exist and are all float32/float64."""
    float_dtypes = [a.dtype for a in args if isinstance(a, np.ndarray) and a.dtype.kind == "f"]
    return bool(float_dtypes) and all(dtype in _NUMBA_DTYPES for dtype in float_dtypes)


def _dispatch(module, name, numba_name=None):
    """The public kernel `name`: module.<name>_numba (or numba_name) or module.<name>_numpy.

    Looked up on the module at each call, so a test can replace one side and see which ran.
    """
    numpy_name, numba_name = f"{name}_numpy", numba_name or f"{name}_numba"

    @functools.wraps(getattr(module, numpy_name))
    def kernel(*args, **outputs):
        if BACKEND == "numba" and _numba_compiled_for(args):
            return getattr(module, numba_name)(*args, **outputs)
        return getattr(module, numpy_name)(*args, **outputs)

    kernel.__name__ = kernel.__qualname__ = name
    return kernel


matmul = _dispatch(gemm, "matmul", numba_name="matmul_by_shape")
softmax_forward = _dispatch(softmax, "softmax_forward")
softmax_backward = _dispatch(softmax, "softmax_backward")
log_softmax_forward = _dispatch(softmax, "log_softmax_forward")
log_softmax_backward = _dispatch(softmax, "log_softmax_backward")
gelu_forward = _dispatch(gelu, "gelu_forward")
gelu_backward = _dispatch(gelu, "gelu_backward")
layer_norm_forward = _dispatch(layer_norm, "layer_norm_forward")
layer_norm_backward = _dispatch(layer_norm, "layer_norm_backward")
cross_entropy_forward = _dispatch(cross_entropy, "cross_entropy_forward")
cross_entropy_backward = _dispatch(cross_entropy, "cross_entropy_backward")
attention_forward = _dispatch(attention, "attention_forward")
attention_backward = _dispatch(attention, "attention_backward")
embedding_backward = _dispatch(embedding, "embedding_backward")
adamw_step = _dispatch(adamw, "adamw_step")

__all__ = ["BACKEND", "BACKENDS", "use_backend", "set_num_threads", "blas_threads_settable", "matmul",
           "softmax_forward", "softmax_backward", "log_softmax_forward", "log_softmax_backward",
           "gelu_forward", "gelu_backward", "layer_norm_forward", "layer_norm_backward",
           "cross_entropy_forward", "cross_entropy_backward", "attention_forward", "attention_backward",
           "embedding_backward", "adamw_step"]
