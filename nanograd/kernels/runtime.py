"""The process the kernels run in: their thread pools and the memory a training step reuses. Skip on a first read.

Nothing here runs at import. The first kernel call (or `set_num_threads`) calls `start()`, once, which does
two things, each only where the user has not chosen otherwise through the environment:

- It starts numba's thread pool with idle threads asleep (OMP_WAIT_POLICY=PASSIVE). numba's pool and
  OpenBLAS's take turns in every training step; if numba's threads keep spinning after their work, four
  threads fight over two cores and a step runs several times slower (a config-a step in a plain loop: about
  300 ms against 50). OpenMP reads the policy when numba's pool loads it, so the variable is set for that
  moment only and then removed: other OpenMP libraries the program loads later see the environment it had.
- It asks glibc's malloc to keep freed memory for reuse (`keep_freed_memory`). A training step allocates
  the same big arrays every step; by default glibc serves big allocations with fresh pages from the OS and
  gives them back on free, so every step would fault them in again while the OS zeroes every page (a
  config-a step: about 40 ms against 50). Process-wide: the process keeps its peak memory instead of
  returning it to the OS. Setting any of MALLOC_MMAP_MAX_, MALLOC_MMAP_THRESHOLD_, MALLOC_TRIM_THRESHOLD_ or
  GLIBC_TUNABLES leaves malloc as the user set it.

Thread counts: numba and OpenBLAS each start with one thread per usable core; `set_num_threads` changes
both. OpenBLAS is reached through ctypes, with no extra dependency: NumPy wheels bundle it as a shared
library (numpy.libs/libscipy_openblas64_*.so on Linux, numpy/.dylibs on macOS) which exports
`scipy_openblas_set_num_threads64_` (older builds: `openblas_set_num_threads`). If no OpenBLAS is found
(NumPy built against MKL or Accelerate), only numba's count changes and `blas_threads_settable()` says so.

OpenBLAS's own idle threads spin for a while after each product (OPENBLAS_THREAD_TIMEOUT), read once when
NumPy loads, before anything here can run: a program that wants them to sleep sooner sets it at its very start,
as examples/train_shakespeare.py does.
"""
import ctypes
import glob
import os
import sys

import numba
import numpy as np
from numba.np.ufunc import parallel as _numba_parallel

_SETTER_NAMES = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads_",
                 "openblas_set_num_threads64_", "openblas_set_num_threads")
_CORENAME_NAMES = ("scipy_openblas_get_corename64_", "scipy_openblas_get_corename_", "openblas_get_corename64_",
                   "openblas_get_corename")
_M_TRIM_THRESHOLD = -1  # free memory at the top of the heap beyond this is returned to the OS
_M_MMAP_MAX = -4  # how many allocations may be served by mmap; 0: none, all come from the heap
_USER_MALLOC_TUNING = ("GLIBC_TUNABLES", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")
started = None  # what start() did, once it has run: {"idle_threads": ..., "keep_freed_memory": ...}


def start() -> dict:
    """Start numba's pool with sleeping idle threads and keep freed memory, as described above; once per process.
    Returns what took effect, e.g. {"idle_threads": "PASSIVE", "keep_freed_memory": True}."""
    global started
    if started is None:
        started = {"idle_threads": _start_numba_pool(), "keep_freed_memory": keep_freed_memory()}
    return started


def _start_numba_pool() -> str:
    if _numba_parallel._is_initialized:  # started by other numba code before ours: its policy stands
        return "as found: numba's pool had started"
    if "OMP_WAIT_POLICY" in os.environ:  # the user's choice
        _numba_parallel._launch_threads()
        return os.environ["OMP_WAIT_POLICY"]
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    try:
        _numba_parallel._launch_threads()  # loads the OpenMP runtime, which reads the policy now
    finally:
        del os.environ["OMP_WAIT_POLICY"]
    return "PASSIVE"


def keep_freed_memory() -> bool:
    """Ask glibc's malloc to serve every allocation from its heap and keep freed memory there; False where it
    cannot (not glibc) or should not (the user tuned malloc through the environment)."""
    if not sys.platform.startswith("linux") or any(name in os.environ for name in _USER_MALLOC_TUNING):
        return False
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # not glibc (e.g. musl): leave its allocator alone
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    return bool(mallopt(_M_MMAP_MAX, 0)) and bool(mallopt(_M_TRIM_THRESHOLD, 2**31 - 1))


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (what `taskset` or a container allows) where the
    system reports one, else the machine's count. numba sizes its thread pool by the same affinity."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _openblas_function(names, argtypes, restype=None):
    """The first of `names` that NumPy's bundled OpenBLAS exports, typed; None without one."""
    numpy_dir = os.path.dirname(np.__file__)
    candidates = (glob.glob(os.path.join(numpy_dir + ".libs", "*openblas*"))
                  + glob.glob(os.path.join(numpy_dir, ".dylibs", "*openblas*")))
    for path in candidates:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        for name in names:
            function = getattr(library, name, None)
            if function is not None:
                function.argtypes, function.restype = argtypes, restype
                return function
    return None


_openblas_set_num_threads = _openblas_function(_SETTER_NAMES, [ctypes.c_int])
_openblas_get_corename = _openblas_function(_CORENAME_NAMES, [], ctypes.c_char_p)


def blas_kernel() -> str | None:
    """The kernel family OpenBLAS chose for this CPU (e.g. "SkylakeX", "Haswell"; OPENBLAS_CORETYPE forces
    one), or None where NumPy uses another BLAS. Float32 products round differently in each family, so a
    result in the last bits depends on it: benchmarks and docs print it beside the CPU model."""
    return _openblas_get_corename().decode() if _openblas_get_corename is not None else None


def blas_threads_settable():
    return _openblas_set_num_threads is not None


def set_num_threads(n):
    """Use n threads in numba kernels and in OpenBLAS (n from 1 to numba.config.NUMBA_NUM_THREADS)."""
    n = int(n)
    if not 1 <= n <= numba.config.NUMBA_NUM_THREADS:
        raise ValueError(f"set_num_threads: n must be in [1, {numba.config.NUMBA_NUM_THREADS}] "
                         f"(numba's pool size, set by NUMBA_NUM_THREADS), got {n}")
    start()
    numba.set_num_threads(n)
    if _openblas_set_num_threads is not None:
        _openblas_set_num_threads(n)
