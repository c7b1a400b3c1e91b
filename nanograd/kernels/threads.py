"""Thread count for both thread pools the kernels use: numba's (OpenMP) and NumPy's OpenBLAS.

OpenBLAS is reached through ctypes, with no extra dependency: NumPy wheels bundle it as a shared
library (numpy.libs/libscipy_openblas64_*.so on Linux, numpy/.dylibs on macOS) which exports
`scipy_openblas_set_num_threads64_` (older builds: `openblas_set_num_threads`). If no OpenBLAS is
found (e.g. NumPy built against MKL or Accelerate), only numba's count changes and
`blas_threads_settable()` says so.
"""
import ctypes
import glob
import os

import numba
import numpy as np

_SETTER_NAMES = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads_",
                 "openblas_set_num_threads64_", "openblas_set_num_threads")


def _find_openblas_setter():
    numpy_dir = os.path.dirname(np.__file__)
    candidates = (glob.glob(os.path.join(numpy_dir + ".libs", "*openblas*"))
                  + glob.glob(os.path.join(numpy_dir, ".dylibs", "*openblas*")))
    for path in candidates:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for name in _SETTER_NAMES:
            setter = getattr(library, name, None)
            if setter is not None:
                setter.argtypes = [ctypes.c_int]
                return setter
    return None


_openblas_set_num_threads = _find_openblas_setter()


def blas_threads_settable():
    return _openblas_set_num_threads is not None


def set_num_threads(n):
    """Use n threads in numba kernels and in OpenBLAS (n from 1 to numba.config.NUMBA_NUM_THREADS)."""
    n = int(n)
    if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"set_num_threads: n must be in [1, {numba.config.NUMBA_NUM_THREADS}] "
                         f"(numba's pool size, set by NUMBA_NUM_THREADS), got {n}")
    numba.set_num_threads(n)
    if _openblas_set_num_threads is not None:
        _openblas_set_num_threads(n)
