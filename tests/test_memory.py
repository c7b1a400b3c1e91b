"""nanograd.process: importing nanograd changes nothing process-wide; tune_process() does, explicitly."""
import platform
import subprocess
import sys

import pytest

IMPORT_ONLY = "import os, nanograd; print(os.environ.get('OMP_WAIT_POLICY'))"
TUNED = "import os, nanograd; d = nanograd.tune_process(); print(os.environ.get('OMP_WAIT_POLICY'), d['keep_freed_memory'])"


def run_fresh(code, **extra_env):
    env = {k: v for k, v in __import__("os").environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env={**env, **extra_env})
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_import_has_no_process_wide_effect():
    assert run_fresh(IMPORT_ONLY) == "None"


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="memory is kept through glibc's mallopt")
def test_tune_process_sets_the_wait_policy_and_keeps_memory_unless_the_user_chose():
    assert run_fresh(TUNED) == "PASSIVE True"
    assert run_fresh(TUNED, OMP_WAIT_POLICY="ACTIVE") == "ACTIVE True"
    assert run_fresh(TUNED, MALLOC_MMAP_MAX_="65536") == "PASSIVE False"
    assert run_fresh(TUNED, GLIBC_TUNABLES="glibc.malloc.trim_threshold=0") == "PASSIVE False"


def test_tune_process_after_the_thread_pool_started_says_so():
    code = ("import numpy as np, nanograd; from nanograd import functional as F; "
            "F.gelu_forward.kernel(np.ones(4096, np.float32)); print(nanograd.tune_process()['omp_wait_policy'])")
    assert run_fresh(code).startswith("unchanged")
