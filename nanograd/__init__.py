"""nanograd: a tensor autograd engine on NumPy, with numba kernels for the hot paths.

Read in this order: tensor.py (Tensor, backward, arithmetic), movement.py (transpose, indexing, cat, ...),
functional.py (softmax, layer norm, attention, ...: each op's forward and backward in NumPy), recurrent.py
(the LSTM recurrence and its backprop through time), nn.py, optim.py (then flat_adamw.py, AdamW in one call
per parameter group), gradcheck.py, draw.py; kernels/ last, if at all. Importing nanograd has no effect
outside it; the first kernel starts the thread pools a training step needs (kernels/runtime.py), so a
program needs no setup call. `set_num_threads(n)` changes the threads of numba and OpenBLAS alike.
"""
from . import movement  # noqa: F401  (makes transpose, indexing, unbind and masked_fill Tensor methods)
from .draw import draw, trace
from .gradcheck import GradcheckError, gradcheck
from .movement import cat, stack, where
from .kernels import set_num_threads, usable_cores
from .random import get_rng_state, manual_seed, set_rng_state
from .tensor import Tensor, is_grad_enabled, no_grad

from . import functional, nn, optim  # noqa: E402  (they build on the names above)

__all__ = [
    "Tensor", "no_grad", "is_grad_enabled", "gradcheck", "GradcheckError", "cat", "stack", "where",
    "manual_seed", "get_rng_state", "set_rng_state", "set_num_threads", "usable_cores", "functional", "nn", "optim",
    "draw", "trace",
]
