"""Neural-network functions on Tensors: each is one node in the graph, its backward written by hand.

Every op below comes as three pieces, in reading order:
    <op>_forward(arrays) and <op>_backward(arrays): the math, in plain NumPy, with shapes;
    <op>(Tensors): checks its input, runs the forward, and hands the backward to the graph.
One fused node instead of a chain of small ones (exp, sum, divide, ...) keeps fewer arrays alive for
backward and is faster. Each `@fast_kernel(...)` line names a numba kernel in `nanograd/kernels/` that
computes the same thing faster and is tested equal to the NumPy below it; skip the kernels on a first
read (NANOGRAD_KERNELS=numpy runs only the NumPy written here). `dropout` is a composition of Tensor ops.
The parts of today's LLMs (rms_norm, rotary, relu_squared) live in functional_modern.py and are named here too.
"""
from __future__ import annotations

import math

import numpy as np

from . import kernels
from .kernels import fast_kernel
from .random import generator
from .tensor import Tensor, check_axis
from .functional_modern import relu_squared, rms_norm, rotary, rotary_angles  # noqa: F401  (F.rms_norm etc.)


def _to_last(a: np.ndarray, axis: int) -> np.ndarray:
    return a if axis in (-1, a.ndim - 1) else np.moveaxis(a, axis, -1)


def _from_last(a: np.ndarray, axis: int) -> np.ndarray:
    return a if axis in (-1, a.ndim - 1) else np.moveaxis(a, -1, axis)


def _check_int_array(name: str, ids) -> np.ndarray:
    ids = np.asarray(ids.data if isinstance(ids, Tensor) else ids)
    if not np.issubdtype(ids.dtype, np.integer):
        raise TypeError(f"{name} must be an integer array, got dtype {ids.dtype}")
    return ids


# ---- softmax and log_softmax: x, y, dy, dx (..., V), along the last axis ------------------------

@fast_kernel(kernels.softmax.softmax_forward)
def softmax_forward(x):
    """y = exp(x - m) / sum(exp(x - m)), m = max(x): subtracting m changes nothing but prevents overflow."""
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


@fast_kernel(kernels.softmax.softmax_backward)
def softmax_backward(y, dy):
    """dx = y * (dy - sum(dy * y)): softmax's Jacobian, diag(y) - y y^T, applied to dy in one pass."""
    return y * (dy - (dy * y).sum(axis=-1, keepdims=True))


@fast_kernel(kernels.softmax.log_softmax_forward)
def log_softmax_forward(x):
    """z = x - m - log(sum(exp(x - m))), m = max(x)."""
    shifted = x - x.max(axis=-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))


@fast_kernel(kernels.softmax.log_softmax_backward)
def log_softmax_backward(z, dy):
    """dx = dy - exp(z) * sum(dy): exp(z) is the softmax."""
    return dy - np.exp(z) * dy.sum(axis=-1, keepdims=True)


def softmax(x: Tensor, axis: int = -1) -> Tensor:
    """exp(x) / sum(exp(x)) along `axis`."""
    check_axis(axis, x.ndim, x.shape)
    y = _from_last(softmax_forward(_to_last(x.data, axis)), axis)
    return Tensor.from_op(y, (x,), lambda g: (
        _from_last(softmax_backward(_to_last(y, axis), _to_last(g, axis)), axis),), "softmax")


def log_softmax(x: Tensor, axis: int = -1) -> Tensor:
    """x - logsumexp(x) along `axis`, computed without overflow."""
    check_axis(axis, x.ndim, x.shape)
    z = _from_last(log_softmax_forward(_to_last(x.data, axis)), axis)
    return Tensor.from_op(z, (x,), lambda g: (
        _from_last(log_softmax_backward(_to_last(z, axis), _to_last(g, axis)), axis),), "log_softmax")


# ---- cross-entropy: logits, dlogits (N, V); targets (N,) ids; lse (N,); loss a 0-d array ----------

@fast_kernel(kernels.cross_entropy.cross_entropy_forward)
def cross_entropy_forward(logits, targets, ignore_index):
    """(loss, lse): loss = mean over counted rows n of lse_n - logits[n, targets_n], lse_n = logsumexp(logits_n).

    Rows whose target is ignore_index do not count; if none counts the loss is 0 (not 0/0)."""
    m = logits.max(axis=1, keepdims=True)
    lse = (m + np.log(np.exp(logits - m).sum(axis=1, keepdims=True)))[:, 0]
    rows = np.flatnonzero(targets != ignore_index)
    loss = (lse[rows] - logits[rows, targets[rows]]).sum() / max(len(rows), 1)
    return np.asarray(loss, dtype=logits.dtype), lse


@fast_kernel(kernels.cross_entropy.cross_entropy_backward)
def cross_entropy_backward(logits, targets, lse, ignore_index, dloss):
    """dlogits = dloss / (counted rows) * (softmax(logits) - onehot(targets)); 0 on rows that do not count."""
    counted = targets != ignore_index
    rows = np.flatnonzero(counted)
    dlogits = np.exp(logits - lse[:, None])  # softmax, rebuilt from the saved log-sum-exp
    dlogits[rows, targets[rows]] -= 1.0
    dlogits[~counted] = 0.0
    dlogits *= float(dloss) / max(len(rows), 1)
    return dlogits.astype(logits.dtype, copy=False)


def cross_entropy(logits: Tensor, targets, ignore_index: int = -1) -> Tensor:
    """Mean of -log softmax(logits)[target] over the targets that are not `ignore_index`.

    logits (..., V), targets integer (...). Softmax and the loss are one node."""
    targets = _check_int_array("cross_entropy targets", targets)
    if logits.ndim < 1 or targets.shape != logits.shape[:-1]:
        raise ValueError(f"cross_entropy: targets of shape {targets.shape} do not match logits of shape "
                         f"{logits.shape} (expected targets of shape {logits.shape[:-1]})")
    n_classes = logits.shape[-1]
    flat_logits, flat_targets = logits.data.reshape(-1, n_classes), targets.reshape(-1)
    bad = (flat_targets != ignore_index) & ((flat_targets < 0) | (flat_targets >= n_classes))
    if bad.any():
        row = int(np.argmax(bad))
        raise ValueError(f"cross_entropy: target id {int(flat_targets[row])} at row {row} is outside "
                         f"[0, {n_classes}) and is not ignore_index={ignore_index}")
    loss, lse = cross_entropy_forward(flat_logits, flat_targets, ignore_index)

    def backward(g):
        dlogits = cross_entropy_backward(flat_logits, flat_targets, lse, ignore_index, g)
        return (dlogits.reshape(logits.shape),)

    return Tensor.from_op(loss, (logits,), backward, "cross_entropy")


# ---- GELU (tanh approximation, as GPT-2): x, y, dy, dx any shape, elementwise --------------------

SQRT_2_OVER_PI, CUBIC = math.sqrt(2.0 / math.pi), 0.044715


@fast_kernel(kernels.gelu.gelu_forward)
def gelu_forward(x):
    """y = 0.5 x (1 + tanh(u)),  u = sqrt(2/pi) (x + 0.044715 x^3)."""
    u = SQRT_2_OVER_PI * (x + CUBIC * x * x * x)
    return (0.5 * x * (1.0 + np.tanh(u))).astype(x.dtype, copy=False)


@fast_kernel(kernels.gelu.gelu_backward)
def gelu_backward(x, dy):
    """dx = dy * (0.5 (1 + tanh u) + 0.5 x (1 - tanh^2 u) du/dx),  du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)."""
    t = np.tanh(SQRT_2_OVER_PI * (x + CUBIC * x * x * x))
    du_dx = SQRT_2_OVER_PI * (1.0 + 3.0 * CUBIC * x * x)
    return (dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du_dx)).astype(x.dtype, copy=False)


def gelu(x: Tensor) -> Tensor:
    """GELU, tanh approximation as in GPT-2."""
    return Tensor.from_op(gelu_forward(x.data), (x,), lambda g: (gelu_backward(x.data, g),), "gelu")


def sigmoid(x: Tensor) -> Tensor:
    """1 / (1 + exp(-x)), elementwise (the same op as x.sigmoid(): its backward is g * y * (1 - y))."""
    return x.sigmoid()


# ---- layer norm: x, y, dy, dx (..., C); weight, bias (C,); mean, rstd (...,) ----------------------

@fast_kernel(kernels.layer_norm.layer_norm_forward)
def layer_norm_forward(x, weight, bias, eps):
    """(y, mean, rstd): xhat = (x - mean) * rstd, rstd = 1 / sqrt(var + eps) (biased var); y = xhat * weight + bias."""
    mean = x.mean(axis=-1)
    centered = x - mean[..., None]
    rstd = 1.0 / np.sqrt((centered * centered).mean(axis=-1) + eps)
    y = centered * rstd[..., None] * weight + bias
    return y.astype(x.dtype, copy=False), mean, rstd.astype(x.dtype, copy=False)


@fast_kernel(kernels.layer_norm.layer_norm_backward)
def layer_norm_backward(dy, x, weight, mean, rstd):
    """(dx, dweight, dbias). With g = dy * weight, per row:
        dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
    term 1: the direct path through xhat; term 2: through the mean; term 3: through the variance.
    dweight and dbias sum dy * xhat and dy over all rows."""
    xhat = (x - mean[..., None]) * rstd[..., None]
    g = dy * weight
    dx = rstd[..., None] * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    rows = dy.reshape(-1, x.shape[-1])
    dweight = (rows * xhat.reshape(rows.shape)).sum(axis=0)
    return dx.astype(x.dtype, copy=False), dweight, rows.sum(axis=0)


def layer_norm(x: Tensor, weight: Tensor | None, bias: Tensor | None, eps: float = 1e-5) -> Tensor:
    """Normalize the last axis to zero mean and unit variance, then scale by weight and shift by bias.

    x (..., C); weight, bias (C,) or None."""
    n_features = x.shape[-1]
    for name, param in (("weight", weight), ("bias", bias)):
        if param is not None and param.shape != (n_features,):
            raise ValueError(f"layer_norm: {name} of shape {param.shape} does not match input of shape {x.shape} "
                             f"(expected ({n_features},))")
    w = weight.data if weight is not None else np.ones(n_features, x.dtype)
    b = bias.data if bias is not None else np.zeros(n_features, x.dtype)
    y, mean, rstd = layer_norm_forward(x.data, w, b, eps)
    affine = tuple(p for p in (weight, bias) if p is not None)

    def backward(g):
        dx, dweight, dbias = layer_norm_backward(g, x.data, w, mean, rstd)
        return (dx,) + tuple(grad for grad, p in ((dweight, weight), (dbias, bias)) if p is not None)

    return Tensor.from_op(y, (x,) + affine, backward, "layer_norm")


# ---- dropout, embedding, linear ------------------------------------------------------------------

def dropout(x: Tensor, p: float, training: bool) -> Tensor:
    """Zero each element with probability p and scale the rest by 1/(1-p) (identity in eval mode)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not training or p == 0.0:
        return x
    keep = generator().random(x.shape) >= p
    return x * (keep.astype(x.dtype) / np.asarray(1.0 - p, dtype=x.dtype))


@fast_kernel(kernels.embedding.embedding_backward)
def embedding_backward(ids, dout, num_embeddings):
    """dweight[r] = sum of dout[s] over the positions s whose id is r: a row used twice gets both gradients.

    ids any integer shape S, dout S + (C,), dweight (num_embeddings, C)."""
    dweight = np.zeros((num_embeddings, dout.shape[-1]), dout.dtype)
    np.add.at(dweight, ids.reshape(-1), dout.reshape(-1, dout.shape[-1]))  # add.at: repeated ids add up
    return dweight


def embedding(ids, weight: Tensor) -> Tensor:
    """Rows of `weight` (V, C) picked by integer `ids` (any shape) -> (*ids.shape, C)."""
    ids = _check_int_array("embedding ids", ids)
    n_embeddings = weight.shape[0]
    if ids.size and (ids.min() < 0 or ids.max() >= n_embeddings):
        bad = ids[(ids < 0) | (ids >= n_embeddings)][0]
        raise IndexError(f"embedding id {bad} is out of range for a table of {n_embeddings} rows")
    return Tensor.from_op(weight.data[ids], (weight,), lambda g: (embedding_backward(ids, g, n_embeddings),),
                         "embedding")


def linear(x: Tensor, weight: Tensor, bias: Tensor | None = None) -> Tensor:
    """x @ weight.T + bias, with weight (out_features, in_features) as in PyTorch; x (..., in_features).

    One node rather than transpose, matmul and add: the leading axes fold into one matrix product of rows,
    the transposed weight is only a BLAS flag, and the bias is added in place. Backward, with g (N, out):
        dx = g @ weight,   dweight = g^T x,   dbias = sum of g over rows.
    """
    n_out, n_in = weight.shape
    if x.ndim < 1 or x.shape[-1] != n_in:
        raise ValueError(f"linear: input of shape {x.shape} does not match weight of shape {weight.shape} "
                         f"(expected last input dim {n_in})")
    if bias is not None and bias.shape != (n_out,):
        raise ValueError(f"linear: bias of shape {bias.shape} does not match weight of shape {weight.shape}")
    rows = x.data.reshape(-1, n_in)  # (N, in)
    out = rows @ weight.data.T  # (N, out)
    if bias is not None:
        out += bias.data

    def backward(g):
        g = g.reshape(-1, n_out)
        dx = (g @ weight.data).reshape(x.shape) if x.requires_grad else None
        dweight = g.T @ rows if weight.requires_grad else None
        return (dx, dweight) + ((g.sum(axis=0),) if bias is not None else ())

    parents = (x, weight) if bias is None else (x, weight, bias)
    return Tensor.from_op(out.reshape(x.shape[:-1] + (n_out,)), parents, backward, "linear")


# ---- attention: q, out, dq, dout (B, nh, Tq, hs); k, v, dk, dv (B, nh, Tk, hs); lse (B, nh, Tq) ----

def causal_mask(tq: int, tk: int) -> np.ndarray:
    """(Tq, Tk) bool, True where query i must not see key j: j > i + (Tk - Tq). Aligned at the bottom right,
    so the newest queries line up with the newest keys (a one-query KV-cache step sees every key)."""
    return np.triu(np.ones((tq, tk), dtype=bool), k=tk - tq + 1)


def _scores(q, k, causal):
    """S = q k^T / sqrt(hs), -inf where masked: (B, nh, Tq, Tk)."""
    scores = (q @ np.swapaxes(k, -1, -2)) * (1.0 / math.sqrt(q.shape[-1]))
    if causal and q.shape[2] > 1:  # a single query is the newest position: it sees every key
        scores = np.where(causal_mask(q.shape[2], k.shape[2]), -np.inf, scores)
    return scores.astype(q.dtype, copy=False)


@fast_kernel(kernels.attention.attention_forward)
def attention_forward(q, k, v, causal):
    """(out, lse): P = softmax(S) over keys, out = P v. Only lse = logsumexp(S) is kept for backward, not P:
    P is recomputed there as exp(S - lse), because it is Tq * Tk numbers per head."""
    scores = _scores(q, k, causal)  # S (B, nh, Tq, Tk)
    m = scores.max(axis=-1, keepdims=True)
    lse = m + np.log(np.exp(scores - m).sum(axis=-1, keepdims=True))  # each row's log-sum-exp (B, nh, Tq, 1)
    out = np.exp(scores - lse) @ v  # P v (B, nh, Tq, hs)
    return out.astype(q.dtype, copy=False), lse[..., 0].astype(q.dtype, copy=False)


@fast_kernel(kernels.attention.attention_backward)
def attention_backward(dout, q, k, v, out, lse, causal):
    """(dq, dk, dv):  dv = P^T dout,  dP = dout v^T,  dS = softmax_backward(P, dP),
    dq = dS k / sqrt(hs),  dk = dS^T q / sqrt(hs)."""
    probs = np.exp(_scores(q, k, causal) - lse[..., None])  # P (B, nh, Tq, Tk), rebuilt from lse
    dprobs = dout @ np.swapaxes(v, -1, -2)  # dP (B, nh, Tq, Tk)
    dscores = softmax_backward.reference(probs, dprobs) * (1.0 / math.sqrt(q.shape[-1]))  # dS, scale included
    dq = dscores @ k  # (B, nh, Tq, hs)
    dk = np.swapaxes(dscores, -1, -2) @ q  # (B, nh, Tk, hs)
    dv = np.swapaxes(probs, -1, -2) @ dout  # (B, nh, Tk, hs)
    return tuple(d.astype(q.dtype, copy=False) for d in (dq, dk, dv))


def scaled_dot_product_attention(q: Tensor, k: Tensor, v: Tensor, causal: bool = True) -> Tensor:
    """softmax(q k^T / sqrt(hs) + mask) v as one node; gpt/model.py writes the same out in Tensor ops.

    q (B, nh, Tq, hs); k, v (B, nh, Tk, hs) with Tq <= Tk; the causal mask is `causal_mask(Tq, Tk)`."""
    if q.ndim != 4 or k.ndim != 4 or v.ndim != 4:
        raise ValueError(f"attention expects 4-D (B, n_head, T, hs) tensors, got {q.shape}, {k.shape}, {v.shape}")
    if k.shape != v.shape or q.shape[:2] != k.shape[:2] or q.shape[3] != k.shape[3]:
        raise ValueError(f"attention shapes do not fit: q {q.shape}, k {k.shape}, v {v.shape}")
    if q.shape[2] > k.shape[2]:
        raise ValueError(f"attention needs no more queries than keys, got Tq={q.shape[2]} > Tk={k.shape[2]}")
    out, lse = attention_forward(q.data, k.data, v.data, causal)
    return Tensor.from_op(out, (q, k, v), lambda g: attention_backward(g, q.data, k.data, v.data, out, lse, causal),
                         "attention")
