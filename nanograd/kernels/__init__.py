"""nanograd.kernels: numba versions of the engine's hot loops. Skip this package on a first read.

Each kernel is a drop-in for a plain-NumPy reference that sits beside the op using it (in
nanograd/functional.py and nanograd/optim.py): same arguments, same results, tested equal on generated
shapes, dtypes and memory layouts (tests/test_kernels_twins.py). The reference names its kernel:

    @fast_kernel(kernels.softmax.softmax_forward)
    def softmax_forward(x): ...            # the math, in NumPy

and the decorated function runs the kernel when all of these hold, else the NumPy reference:
- the backend is "numba": the default; NANOGRAD_KERNELS=numpy (read at import) or `use_backend("numpy")`
  (a context manager too) runs only the references, for reading and debugging;
- the float arrays are float32 or float64 (what the kernels are compiled for);
- the first array holds at least MIN_KERNEL_SIZE numbers: a parallel kernel wakes numba's thread pool,
  which costs more than NumPy needs for a few rows (one token's step in generation, for example).
`f.reference` and `f.kernel` reach either side directly. The first kernel to run starts numba's thread pool
the way a training step needs it (runtime.start: idle threads asleep, freed memory kept), so a program is
fast without a setup call.

Modules, one concept each: fastmath (vectorizable exp and max), softmax, gelu, layer_norm,
cross_entropy, attention, embedding, adamw, lstm; runtime (thread pools, thread counts, malloc).
Matrix products are NumPy's own (BLAS): a numba GEMM lost to it at every GPT shape
(benchmarks/gemm_experiment.py).
"""
import functools
import os

import numpy as np

from . import adamw, attention, cross_entropy, embedding, gelu, layer_norm, lstm, rms_norm, rotary, softmax
from . import runtime
from .runtime import blas_kernel, blas_threads_settable, set_num_threads, usable_cores

BACKENDS = ("numba", "numpy")
MIN_KERNEL_SIZE = 2048
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


def _worth_a_kernel(args):
    """The rules above: every float array float32 or float64, the first one MIN_KERNEL_SIZE numbers or more."""
    first = True
    for a in args:
        if isinstance(a, np.ndarray) and a.dtype.kind == "f":
            if a.dtype not in _NUMBA_DTYPES or (first and a.size < MIN_KERNEL_SIZE):
                return False
            first = False
    return not first


def fast_kernel(kernel):
    """Decorator for a NumPy reference: run `kernel` in its place when the rules above allow."""
    def decorate(reference):
        @functools.wraps(reference)
        def run(*args):
            if BACKEND == "numba" and _worth_a_kernel(args):
                if runtime.started is None:  # the first kernel of this process: start its thread pool
                    runtime.start()
                return kernel(*args)
            return reference(*args)

        run.reference, run.kernel = reference, kernel
        return run

    return decorate


__all__ = ["BACKEND", "BACKENDS", "MIN_KERNEL_SIZE", "use_backend", "fast_kernel", "set_num_threads",
           "blas_kernel", "blas_threads_settable", "usable_cores", "runtime", "adamw", "attention", "cross_entropy", "embedding", "gelu",
           "layer_norm", "lstm", "rms_norm", "rotary", "softmax"]
