"""The engine's random generator (used by dropout), with its state exposed for exact resume."""
import numpy as np

_generator = np.random.default_rng()


def manual_seed(seed: int) -> None:
    """Seed the generator that dropout draws from."""
    global _generator
    _generator = np.random.default_rng(seed)


def generator() -> np.random.Generator:
    return _generator


def get_rng_state() -> dict:
    """The generator's state as a JSON-serialisable dict."""
    return _generator.bit_generator.state


def set_rng_state(state: dict) -> None:
    _generator.bit_generator.state = state
