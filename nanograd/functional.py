"""Neural-network functions on Tensors.

Each function is one node in the graph whose forward and backward are array kernels from
`nanograd.kernels` (numba by default, NumPy twins with NANOGRAD_KERNELS=numpy). One fused node
instead of a chain of small ones saves memory and time; the math of each is written out in its
kernel module (`linear` calls BLAS directly). `dropout` is a composition of Tensor ops.
"""
from __future__ import annotations

import numpy as np

from . import kernels as K
from .random import generator
from .tensor import Tensor, check_axis


def _to_last(a: np.ndarray, axis: int) -> np.ndarray:
    return a if axis in (-1, a.ndim - 1) else np.moveaxis(a, axis, -1)


def _from_last(a: np.ndarray, axis: int) -> np.ndarray:
    return a if axis in (-1, a.ndim - 1) else np.moveaxis(a, -1, axis)


def _check_int_array(name: str, ids) -> np.ndarray:
    ids = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {ids.dtype}")
    return ids


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along `axis`."""
    check_axis(axis, x.ndim, x.shape)
    y = _from_last(K.softmax_forward(_to_last(x.data, axis)), axis)
    return Tensor._op(y, (x,), lambda g: (
        _from_last(K.softmax_backward(_to_last(y, axis), _to_last(g, axis)), axis),))


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - logsumexp(x) along `axis`, computed without overflow."""
    check_axis(axis, x.ndim, x.shape)
    y = _from_last(K.log_softmax_forward(_to_last(x.data, axis)), axis)
    return Tensor._op(y, (x,), lambda g: (
        _from_last(K.log_softmax_backward(_to_last(y, axis), _to_last(g, axis)), axis),))


def cross_entropy(logits: Tensor, targets, ignore_index: int = -1) -> Tensor:
    """Mean of -log softmax(logits)[target] over the targets that are not `ignore_index`.

    logits (..., C), targets integer (...). Softmax and the loss are one fused kernel, whose
    backward is simply softmax(logits) - onehot(target), divided by the number of targets.
    """
    targets = _check_int_array("cross_entropy targets", targets)
    if logits.ndim < 1 or targets.shape != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: targets of shape {targets.shape} do not match logits of shape "
                         f"{logits.shape} (expected targets of shape {logits.shape[:-1]})")
    n_classes = logits.shape[-1]
    flat_logits, flat_targets = logits.data.reshape(-1, n_classes), targets.reshape(-1)
    loss, saved = K.cross_entropy_forward(flat_logits, flat_targets, ignore_index)

    def backward(g):
        dlogits = K.cross_entropy_backward(flat_logits, flat_targets, saved, ignore_index, g)
        return (dlogits.reshape(logits.shape),)

    return Tensor._op(loss, (logits,), backward)


def gelu(x: Tensor) -> Tensor:
    """GELU, tanh approximation as in GPT-2: 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3)))."""
    return Tensor._op(K.gelu_forward(x.data), (x,), lambda g: (K.gelu_backward(x.data, g),))


def layer_norm(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float = 1e-5) -> Tensor:
    """Normalize the last axis to zero mean and unit variance, then scale by weight and shift by bias.

    x (..., C); weight, bias (C,) or None.
    """
    n_features = x.shape[-1]
    for name, param in (("weight", weight), ("bias", bias)):
        if param is not None and param.shape != (n_features,):
            raise ValueError(f"layer_norm: {name} of shape {param.shape} does not match input of shape {x.shape} "
                             f"(expected ({n_features},))")
    w = weight.data if weight is not None else np.ones(n_features, x.dtype)
    b = bias.data if bias is not None else np.zeros(n_features, x.dtype)
    y, mean, rstd = K.layer_norm_forward(x.data, w, b, eps)

    affine = tuple(p for p in (weight, bias) if p is not None)

    def backward(g):
        dx, dweight, dbias = K.layer_norm_backward(g, x.data, w, mean, rstd)
        return (dx,) + tuple(grad for grad, p in ((dweight, weight), (dbias, bias)) if p is not None)

    return Tensor._op(y, (x,) + affine, backward)


def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (identity in eval mode)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    keep = generator().random(x.shape) >= p
    return x * (keep.astype(x.dtype) / np.asarray(1.0 - p, dtype=x.dtype))


def embedding(ids, weight: Tensor) -> Tensor:
    """Rows of `weight` (V, C) picked by integer `ids` (any shape) -> (*ids.shape, C)."""
    ids = _check_int_array("embedding ids", ids)
    n_embeddings = weight.shape[0]
    if ids.size and (ids.min() < 0 or ids.max() >= n_embeddings):
        bad = ids[(ids < 0) | (ids >= n_embeddings)][0]
        raise IndexError(f"embedding id {bad} is out of range for a table of {n_embeddings} rows")
    return Tensor._op(weight.data[ids], (weight,),
                      lambda g: (K.embedding_backward(ids, g, n_embeddings),))


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight.T + bias, with weight (out_features, in_features) as in PyTorch; x (..., in_features).

    One node rather than transpose, matmul and add: the leading axes fold into one GEMM of rows, the
    transposed weight is only a BLAS flag, and the bias is added in place. Backward, with g (N, out):
        dx = g @ weight,   dweight = g^T x,   dbias = sum of g over rows.
    """
    if x.ndim < 1 or x.shape[-1] != weight.shape[1]:
        raise ValueError(f"linear: input of shape {x.shape} does not match weight of shape {weight.shape} "
                         f"(expected last input dim {weight.shape[1]})")
    if bias is not None and bias.shape != (weight.shape[0],):
        raise ValueError(f"linear: bias of shape {bias.shape} does not match weight of shape {weight.shape}")
    n_in, n_out = weight.shape[1], weight.shape[0]
    rows = x.data.reshape(-1, n_in)  # (N, in)
    out = K.matmul(rows, weight.data.T)
    if bias is not None:
        out += bias.data

    def backward(g):
        g = g.reshape(-1, n_out)
        dx = K.matmul(g, weight.data).reshape(x.shape) if x.requires_grad else None
        dweight = K.matmul(g.T, rows) if weight.requires_grad else None
        return (dx, dweight) + ((g.sum(axis=0),) if bias is not None else ())

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor._op(out.reshape(x.shape[:-1] + (n_out,)), parents, backward)


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = True) -> Tensor:
    """softmax(q k^T / sqrt(hs) + mask) v as one fused kernel.

    q (B, n_head, Tq, hs); k, v (B, n_head, Tk, hs) with Tq <= Tk. The causal mask is aligned at
    the bottom right: query i sees keys j <= i + (Tk - Tq), so a single new query (Tq = 1, as in
    KV-cache decoding) sees every cached key.
    """
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"attention expects 4-D (B, n_head, T, hs) tensors, got {q.shape}, {k.shape}, {v.shape}")
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"attention shapes do not fit: q {q.shape}, k {k.shape}, v {v.shape}")
    if q.shape[2] > k.shape[2]:
        raise ValueError(f"attention needs no more queries than keys, got Tq={q.shape[2]} > Tk={k.shape[2]}")
    out, saved = K.attention_forward(q.data, k.data, v.data, causal)

    def backward(g):
        return K.attention_backward(g, q.data, k.data, v.data, out, saved, causal)

    return Tensor._op(out, (q, k, v), backward)


def causal_self_attention(qkv: Tensor, n_head: int) -> Tensor:
    """Causal multi-head self-attention straight from the output of a fused qkv projection.

    qkv (B, T, 3C) holds [q | k | v] along its last axis, each C = n_head * hs wide with the heads side
    by side; returns (B, T, C) with the heads side by side again, ready for the output projection. The
    same kernel as scaled_dot_product_attention, run on strided views: the (B, n_head, T, hs) heads are
    never copied out of qkv, the output is written in place into (B, T, C), and the gradient arrives
    as one (B, T, 3C) array instead of three to be scattered and summed.
    """
    if qkv.ndim != 3 or qkv.shape[2] % (3 * n_head):
        raise ValueError(f"causal_self_attention: qkv must be (B, T, 3C) with C divisible by n_head={n_head}, "
                         f"got shape {qkv.shape}")
    B, T, C = qkv.shape[0], qkv.shape[1], qkv.shape[2] // 3
    hs = C // n_head

    def heads(a, parts):
        """(B, T, parts*C) -> (parts, B, n_head, T, hs): views, no copies."""
        return a.reshape(B, T, parts, n_head, hs).transpose(2, 0, 3, 1, 4)

    data = np.ascontiguousarray(qkv.data)
    q, k, v = heads(data, 3)
    y = np.empty((B, T, C), qkv.dtype)
    _, lse = K.attention_forward(q, k, v, True, out=heads(y, 1)[0])

    def backward(g):
        dqkv = np.empty_like(data)
        dq, dk, dv = heads(dqkv, 3)
        K.attention_backward(heads(g, 1)[0], q, k, v, heads(y, 1)[0], lse, True, dq=dq, dk=dk, dv=dv)
        return (dqkv,)

    return Tensor._op(y, (qkv,), backward)
