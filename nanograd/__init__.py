"""nanograd: a tensor autograd engine on NumPy, with numba kernels for the hot paths.

Read in this order: tensor.py (Tensor, backward, arithmetic), movement.py (reshape, indexing, ...),
functional.py (softmax, layer norm, attention, ...), nn.py, optim.py, gradcheck.py; kernels/ last.
"""
from . import memory  # noqa: F401  (first: big arrays reuse freed memory; see memory.py)
from . import movement  # attaches reshape, transpose, indexing and masked_fill to Tensor
from .gradcheck import GradcheckError, gradcheck
from .movement import cat, stack, where
from .random import get_rng_state, manual_seed, set_rng_state
from .tensor import Tensor, is_grad_enabled, no_grad

from . import functional, nn, optim  # noqa: E402  (they build on the names above)

__all__ = [
    "Tensor", "no_grad", "is_grad_enabled", "gradcheck", "GradcheckError", "cat", "stack", "where",
    "manual_seed", "get_rng_state", "set_rng_state", "functional", "nn", "optim",
]
