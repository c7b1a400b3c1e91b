"""Running a trained GPT forward without autograd: ids in, next-token logits out, for generation.

The training forward (gpt/model.py) builds a graph of Tensors, paying microseconds of Python for every
op so that backward can run later. Generating at batch 1 feeds one new position per token: a handful of
matrix-vector products per layer, so that bookkeeping would be most of the time. Here the same math runs
directly on the parameters' arrays, read by reference at every call (a training step's updates are seen
at once, nothing is copied), with the same kernels as training where they pay at this size.

A KV cache keeps the keys and values of every position seen so far, per layer, so each new token costs
the work of one position instead of a pass over the whole context. tests/test_inference.py checks that
these logits equal the training forward's.
"""
import contextlib

import numpy as np

from nanograd import kernels as K


class KVCache:
    """Keys and values of the positions processed so far, for every layer.

    Buffers are (n_layer, B, n_head, block_size, head_size); positions [0, length) are filled.
    """

    def __init__(self, config, batch_size, dtype):
        shape = (config.n_layer, batch_size, config.n_head, config.block_size, config.n_embd // config.n_head)
        self.k = np.zeros(shape, dtype)
        self.v = np.zeros(shape, dtype)
        self.length = 0

    def extend(self, layer, k, v):
        """Store k, v (B, n_head, T, head_size) after the cached positions of `layer`; return views of all
        keys and values so far (B, n_head, length + T, head_size). `forward` advances `length` once every
        layer has been extended."""
        end = self.length + k.shape[2]
        self.k[layer, :, :, self.length : end] = k
        self.v[layer, :, :, self.length : end] = v
        return self.k[layer, :, :, :end], self.v[layer, :, :, :end]


def forward(model, idx, cache):
    """Logits (B, vocab_size) of the position after idx (B, T), whose ids sit right after the cached ones.

    idx must hold valid ids and fit in the window (cache.length + T <= block_size): the caller checks.
    Dropout is left out, as in eval mode.

    A single position of a single sequence (the common sampling step) runs every op on this thread: the
    NumPy twins of the kernels and NumPy's own matrix-vector loop (np.vecdot) instead of the numba kernels
    and BLAS. Its ops are tiny, and a second thread costs more than it saves: each numba kernel call took
    ~15 us to start its thread pool, and on this shared 2-core machine the 24 matrix-vector products of
    config b took 88 ms through 2-thread OpenBLAS against 1.55 ms through np.vecdot, back to back.
    """
    with K.use_backend("numpy") if idx.size == 1 else contextlib.nullcontext():
        return _forward(model, idx, cache)


def _forward(model, idx, cache):
    transformer = model.transformer
    T, start = idx.shape[1], cache.length
    x = transformer.wte.weight.data[idx] + transformer.wpe.weight.data[start : start + T]  # (B, T, C)
    for layer, block in enumerate(transformer.h):
        # Only the next token's logits are wanted, so the last block caches keys and values for every
        # position but runs the rest for the last position alone (in a full window of config a, 19% fewer
        # FLOPs for the whole forward).
        n_out = 1 if layer == len(transformer.h) - 1 else T
        x = x[:, -n_out:] + _attention(block.attn, _layer_norm(x, block.ln_1), cache, layer, n_out)
        x = x + _mlp(block.mlp, _layer_norm(x, block.ln_2))
    cache.length += T
    return _times_transposed(_layer_norm(x[:, -1], transformer.ln_f), model.lm_head.weight.data)


def _attention(attn, x, cache, layer, n_out):
    """Causal self-attention of x (B, T, C) over the cached positions and its own, for its last n_out
    positions -> (B, n_out, C)."""
    B, T, C = x.shape
    qkv = _linear(x, attn.c_attn).reshape(B, T, 3, attn.n_head, C // attn.n_head).transpose(2, 0, 3, 1, 4)
    q, k, v = qkv[0, :, :, -n_out:], qkv[1], qkv[2]  # (B, n_head, n_out or T, head_size)
    k, v = cache.extend(layer, k, v)
    # Causal masking is aligned at the bottom right, so a single query (the newest position) sees every key.
    y, _ = K.attention_forward(q, k, v, n_out > 1)
    return _linear(y.transpose(0, 2, 1, 3).reshape(B, n_out, C), attn.c_proj)


def _mlp(mlp, x):
    return _linear(K.gelu_forward(_linear(x, mlp.c_fc)), mlp.c_proj)


def _linear(x, linear):
    y = _times_transposed(x, linear.weight.data)
    if linear.bias is not None:
        y += linear.bias.data
    return y


def _times_transposed(x, weight):
    """x (..., in) @ weight.T, weight (out, in) -> (..., out). As rows (N, in): a matrix product with 2-D
    operands is one BLAS call (NumPy loops over a 3-D operand's batch, 3x slower for one row), and a single
    row goes through np.vecdot (see forward)."""
    rows = x.reshape(-1, x.shape[-1])
    y = np.vecdot(weight, rows[:, None, :]) if len(rows) == 1 else rows @ weight.T
    return y.reshape(*x.shape[:-1], -1)


def _layer_norm(x, norm):
    weight = norm.weight.data
    bias = norm.bias.data if norm.bias is not None else np.zeros_like(weight)
    return K.layer_norm_forward(x, weight, bias, norm.eps)[0]
