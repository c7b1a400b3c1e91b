"""nanograd.memory: freed memory is recycled on glibc, and a user's own malloc tuning is respected."""
import os
import platform
import subprocess
import sys

import pytest

CHECK = "import nanograd.memory as m; print(m.recycling_enabled())"


def recycling_in_fresh_process(**extra_env):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MALLOC_", "GLIBC_TUNABLES"))}
    env.update(extra_env)
    out = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, env=env, check=True)
    return out.stdout.strip()


@pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="recycling is set up through glibc's mallopt")
def test_recycling_on_glibc_unless_the_user_tuned_malloc():
    assert recycling_in_fresh_process() == "True"
    assert recycling_in_fresh_process(MALLOC_MMAP_MAX_="65536") == "False"
    assert recycling_in_fresh_process(GLIBC_TUNABLES="glibc.malloc.trim_threshold=0") == "False"
