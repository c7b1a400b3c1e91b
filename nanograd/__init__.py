"""nanograd: a tensor autograd engine on NumPy, with numba kernels for the hot paths.

The reading path (README's too). Steps 2-6, about 450 lines, hold the backward of every op a GPT training
step runs (embedding, linear, layer norm, GELU, attention with its softmax, cross-entropy, AdamW):
1. Run `python examples/backprop_tour.py`: a tiny graph, every value and gradient printed, drawn, gradchecked.
2. tensor.py: the module docstring, `unbroadcast`, the `Tensor` docstring, `__init__` and the classmethod
   under it that records an op (its parents and its backward), `_accumulate`, `backward`, `_topological_order`,
   then `__add__`, `__mul__`, `__truediv__`, `reshape`. Skip `__matmul__` (a GPT step's products run inside
   `linear` and attention; its 1-D and folded-rows branches are shape bookkeeping), the other elementwise ops
   and reductions (the same pattern), `_lift`.
3. movement.py: the docstring, `transpose`, `unbind` (how the model splits q, k and v); the rest when met.
4. kernels/__init__.py: the docstring only. On float32/float64 arrays of 2048 numbers or more, the numba
   kernel named by a `@fast_kernel(...)` line runs in place of the NumPy function under it, so a toy model in
   a debugger runs the NumPy you read and a real run the kernel; NANOGRAD_KERNELS=numpy runs the NumPy always.
5. functional.py: the docstring, then `embedding_backward`, `embedding`; `layer_norm_forward`,
   `layer_norm_backward`, `layer_norm`; `linear`; `gelu_forward`, `gelu_backward`, `gelu`; `softmax_forward`,
   `softmax_backward`, `causal_mask`, `_scores`, `attention_forward`, `attention_backward`,
   `scaled_dot_product_attention`; `cross_entropy_forward`, `cross_entropy_backward`, `cross_entropy`.
   Skip `log_softmax`, `dropout`, `sigmoid`, `_to_last`.
6. optim.py: the docstring, `Optimizer.step`, `adamw_step`, the `AdamW` docstring and `AdamW._update`,
   `clip_grad_norm_`. Skip flat_adamw.py (`FlatAdamW`: the same step on one flat array per group, for speed).
7. gradcheck.py: how each of those gradients is proven against finite differences.
8. nn.py: `Parameter`, `Module` (parameter names, `train`/`eval`, `evaluating()`), `Linear`, `Embedding`,
   `LayerNorm`.
9. gpt/model.py: GPT-2 on those ops (`attn.fused = False` runs attention written out in Tensor ops).
10. gpt/train/loop.py (`optimizer_step`: the step every training loop here takes), gpt/train/trainer.py
    (`Trainer.train_step`), then gpt/generate.py (KV cache, sampling).
11. Today's parts, beside GPT-2's: functional_modern.py (`rms_norm`, `rotary`, `relu_squared`, each forward
    beside its backward), optim.py's `newton_schulz` and `Muon`, and the lines of gpt/model.py where its
    two recipes differ (`recipe="modern"`); gpt/generate.py's KVCache then slides instead of starting over.
Last, if at all: the `@njit` functions in kernels/*.py, kernels/fastmath.py, kernels/runtime.py (thread pools),
flat_adamw.py, draw.py (graph pictures), recurrent.py (the LSTM recurrence).

Importing nanograd has no effect outside it; the first kernel starts the thread pools a training step needs
(kernels/runtime.py), so a program needs no setup call. `set_num_threads(n)` changes the threads of numba and
OpenBLAS alike.
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
