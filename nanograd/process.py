"""Process-wide tuning for a program that trains or samples: one explicit call, made by the application.

    import nanograd
    nanograd.tune_process(threads=2)     # first thing, before any kernel has run

Importing nanograd changes nothing outside it; the trainer, the sampler, the examples and the benchmarks
make this call at their entry. It does three things, each only where the user has not chosen otherwise:

- OpenMP threads sleep when idle (OMP_WAIT_POLICY=PASSIVE). numba's thread pool and OpenBLAS's take turns
  in every training step; if both keep spinning after their work, four threads fight over two cores and a
  step runs several times slower. numba reads the policy when it starts its pool, at the first parallel
  kernel, so this call must come before that; later, it leaves the policy as it is and says so.
- Freed memory stays in malloc's heap for reuse (glibc only). A training step allocates the same big
  arrays every step; glibc serves big allocations with fresh pages from the OS and unmaps them on free,
  so every step would page-fault them in again and the OS would zero every page first.
- numba and OpenBLAS use `threads` threads (kernels.set_num_threads), when given.

One more setting cannot be made here: OpenBLAS reads OPENBLAS_THREAD_TIMEOUT (how long its idle threads spin
before they sleep) once, when NumPy loads it, before this call can run. A program that trains sets it at its
very start, as examples/train_shakespeare.py does.
"""
import ctypes
import os
import sys

from numba.np.ufunc import parallel as _numba_parallel

from .kernels import set_num_threads

_M_TRIM_THRESHOLD = -1  # free memory at the top of the heap beyond this is returned to the OS
_M_MMAP_MAX = -4  # how many allocations may be served by mmap; 0: none, all come from the heap
_USER_MALLOC_TUNING = ("GLIBC_TUNABLES", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")


def usable_cores() -> int:
    """The cores this process may run on: its CPU affinity (what `taskset` or a container allows) where the
    system reports one, else the machine's count. numba sizes its thread pool by the same affinity."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def tune_process(threads: int | None = None) -> dict:
    """Apply the tuning above; returns what took effect, e.g. {"omp_wait_policy": "PASSIVE", "keep_freed_memory":
    True, "threads": 2}."""
    if _numba_parallel._is_initialized:  # too late: the pool has read the policy already
        policy = "unchanged: numba's thread pool had started"
    else:
        policy = os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    done = {"omp_wait_policy": policy, "keep_freed_memory": keep_freed_memory()}
    if threads is not None:
        set_num_threads(threads)
        done["threads"] = threads
    return done


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
