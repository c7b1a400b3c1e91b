"""nanograd.kernels.runtime: importing nanograd changes nothing process-wide; the first kernel starts numba's pool
with idle threads asleep and keeps freed memory, each unless the user chose otherwise through the environment."""
import os
import platform
import subprocess
import sys

import pytest

IMPORT_ONLY = ("import os, nanograd; from numba.np.ufunc import parallel; "
               "print(os.environ.get('OMP_WAIT_POLICY'), parallel._is_initialized, nanograd.kernels.runtime.started)")
FIRST_KERNEL = ("import os, numpy as np, nanograd; from nanograd import functional as F; "
                "F.gelu_forward(np.ones(4096, np.float32)); s = nanograd.kernels.runtime.started; "
                "print(os.environ.get('OMP_WAIT_POLICY'), s['idle_threads'], s['keep_freed_memory'])")
_OURS = ("OMP_WAIT_POLICY", "OMP_DISPLAY_ENV", "GLIBC_TUNABLES", "MALLOC_MMAP_MAX_", "MALLOC_MMAP_THRESHOLD_",
         "MALLOC_TRIM_THRESHOLD_", "NANOGRAD_KERNELS")


def run_fresh(code, **extra_env):
    env = {k: v for k, v in os.environ.items() if k not in _OURS}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, **extra_env})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip(), out.stderr


def test_import_has_no_process_wide_effect():
    assert run_fresh(IMPORT_ONLY)[0] == "None False None"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="memory is kept through glibc's mallopt")
def test_the_first_kernel_starts_a_sleeping_pool_and_keeps_memory_unless_the_user_chose():
    # OMP_DISPLAY_ENV makes the OpenMP runtime print the settings it read when numba's pool loaded it: the
    # policy took effect there, and the environment the rest of the program sees is as it was (None).
    out, err = run_fresh(FIRST_KERNEL, OMP_DISPLAY_ENV="TRUE")
    assert out == "None PASSIVE True"
    assert "OMP_WAIT_POLICY = 'PASSIVE'" in err
    out, err = run_fresh(FIRST_KERNEL, OMP_WAIT_POLICY="ACTIVE", OMP_DISPLAY_ENV="TRUE")
    assert out == "ACTIVE ACTIVE True" and "OMP_WAIT_POLICY = 'ACTIVE'" in err
    assert run_fresh(FIRST_KERNEL, MALLOC_MMAP_MAX_="65536")[0] == "None PASSIVE False"
    assert run_fresh(FIRST_KERNEL, GLIBC_TUNABLES="glibc.malloc.trim_threshold=0")[0] == "None PASSIVE False"


def test_set_num_threads_starts_the_pool_the_same_way():
    code = "import nanograd; nanograd.set_num_threads(1); print(nanograd.kernels.runtime.started['idle_threads'])"
    assert run_fresh(code)[0] == "PASSIVE"


def test_a_pool_started_by_other_numba_code_is_left_as_found():
    code = ("import numba, numpy as np, nanograd; from nanograd import functional as F; numba.get_num_threads(); "
            "F.gelu_forward(np.ones(4096, np.float32)); print(nanograd.kernels.runtime.started['idle_threads'])")
    assert run_fresh(code)[0].startswith("as found")


def test_the_numpy_backend_starts_nothing():
    code = ("import numpy as np, nanograd; from nanograd import functional as F; from numba.np.ufunc import parallel; "
            "F.gelu_forward(np.ones(4096, np.float32)); print(parallel._is_initialized, nanograd.kernels.runtime.started)")
    assert run_fresh(code, NANOGRAD_KERNELS="numpy")[0] == "False None"
