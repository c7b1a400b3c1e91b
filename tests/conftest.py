"""Shared pytest configuration.

Hypothesis profiles: "dev" (default) explores randomly; "ci" is derandomized with a bounded
number of examples so the whole suite is reproducible and stays within CI's time budget.
CI selects it through the CI environment variable; HYPOTHESIS_PROFILE overrides either.
"""
import os

from hypothesis import HealthCheck, settings

import nanograd

# What the first kernel through the engine does, done first because some tests call kernels directly: numba's
# idle threads sleep, so its pool and OpenBLAS's do not spin against each other on a small machine.
nanograd.kernels.runtime.start()

settings.register_profile(
    "ci",
    derandomize=True,
    max_examples=25,
    deadline=None,
    print_blob=True,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.register_profile(
    "dev",
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci" if os.environ.get("CI") else "dev"))
