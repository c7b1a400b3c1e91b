"""Every numba kernel equals the NumPy reference it stands in for, on generated shapes, dtypes and layouts.

Each op's reference is decorated `@fast_kernel(kernel)` in nanograd/functional.py or nanograd/optim.py;
`f.kernel(*args)` and `f.reference(*args)` run either side directly, whatever the size of the input, so
both are compared here on small arrays too. The references are proven against finite differences in
test_kernels_math.py; here the kernels are held to them. Tolerances are explained in
kernel_inputs.TOLERANCE.
"""
import numpy as np
from hypothesis import given
from hypothesis import strategies as st

import nanograd.functional as F
import nanograd.functional_modern as M
from nanograd import kernels as K
from nanograd.optim import adamw_step
from kernel_inputs import assert_close, dims, dtypes, layouts, make, seeds


def both(f, *args):
    """(kernel result, reference result) of one @fast_kernel function on the same arguments."""
    return f.kernel(*args), f.reference(*args)


def test_each_reference_names_its_kernel():
    pairs = [(F.softmax_forward, K.softmax.softmax_forward), (F.softmax_backward, K.softmax.softmax_backward),
             (F.log_softmax_forward, K.softmax.log_softmax_forward),
             (F.log_softmax_backward, K.softmax.log_softmax_backward),
             (F.cross_entropy_forward, K.cross_entropy.cross_entropy_forward),
             (F.cross_entropy_backward, K.cross_entropy.cross_entropy_backward),
             (F.gelu_forward, K.gelu.gelu_forward), (F.gelu_backward, K.gelu.gelu_backward),
             (F.layer_norm_forward, K.layer_norm.layer_norm_forward),
             (F.layer_norm_backward, K.layer_norm.layer_norm_backward),
             (F.embedding_backward, K.embedding.embedding_backward),
             (F.attention_forward, K.attention.attention_forward),
             (F.attention_backward, K.attention.attention_backward), (adamw_step, K.adamw.adamw_step),
             (M.rms_norm_forward, K.rms_norm.rms_norm_forward), (M.rms_norm_backward, K.rms_norm.rms_norm_backward),
             (M.rotary_forward, K.rotary.rotary_forward)]
    for decorated, kernel in pairs:
        assert decorated.kernel is kernel
        assert decorated.reference is not kernel and decorated.reference.__name__ == decorated.__name__


@given(st.lists(dims, min_size=1, max_size=3), dtypes, layouts, seeds)
def test_softmax_family(shape, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    x, dy = make(rng, shape, dtype, layout, scale=3.0), make(rng, shape, dtype, layout)
    for forward, backward in ((F.softmax_forward, F.softmax_backward),
                              (F.log_softmax_forward, F.log_softmax_backward)):
        y_kernel, y_reference = both(forward, x)
        assert_close(y_kernel, y_reference, dtype)
        assert_close(*both(backward, y_reference, dy), dtype)


@given(st.lists(dims, min_size=1, max_size=3), dtypes, layouts, seeds)
def test_gelu(shape, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    x, dy = make(rng, shape, dtype, layout, scale=3.0), make(rng, shape, dtype, layout)
    assert_close(*both(F.gelu_forward, x), dtype)
    assert_close(*both(F.gelu_backward, x, dy), dtype)


@given(st.lists(dims, min_size=1, max_size=3), dtypes, layouts, seeds)
def test_layer_norm(shape, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    x, dy = make(rng, shape, dtype, layout, scale=2.0), make(rng, shape, dtype, layout)
    weight, bias = make(rng, shape[-1:], dtype), make(rng, shape[-1:], dtype)
    forward_kernel, forward_reference = both(F.layer_norm_forward, x, weight, bias, 1e-5)
    _, mean, rstd = forward_reference
    # A rounding difference in the mean, ~eps * |x|, reaches xhat = (x - mean) * rstd multiplied by
    # rstd: rows whose values nearly coincide have rstd up to 1/sqrt(eps) and amplify it that much.
    condition = max(1.0, float(np.max(np.abs(x), initial=0.0) * np.max(rstd, initial=0.0)))
    for got, want in zip(forward_kernel, forward_reference):
        assert_close(got, want, dtype, condition)
    for got, want in zip(*both(F.layer_norm_backward, dy, x, weight, mean, rstd)):
        assert_close(got, want, dtype, condition)


@given(st.lists(dims, min_size=1, max_size=3), dtypes, layouts, seeds, st.booleans())
def test_rms_norm(shape, dtype, layout, seed, with_weight):
    rng = np.random.default_rng(seed)
    x, dy = make(rng, shape, dtype, layout, scale=2.0), make(rng, shape, dtype, layout)
    weight = make(rng, shape[-1:], dtype) if with_weight else None
    forward_kernel, forward_reference = both(M.rms_norm_forward, x, weight, 1e-6)
    for got, want in zip(forward_kernel, forward_reference):
        assert_close(got, want, dtype)
    # Well-conditioned, unlike layer norm: nothing is subtracted, so no cancellation for rstd to amplify.
    (dx, dweight), (dx_want, dweight_want) = both(M.rms_norm_backward, dy, x, weight, forward_reference[1])
    assert_close(dx, dx_want, dtype)
    if weight is None:
        assert dweight is None and dweight_want is None
    else:
        assert_close(dweight, dweight_want, dtype)


@given(st.lists(dims, min_size=0, max_size=2), dims, st.integers(1, 4), dtypes, layouts, seeds)
def test_rotary(lead, T, half, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    x = make(rng, (*lead, T, 2 * half), dtype, layout, scale=2.0)
    cos, sin = M.rotary_angles(rng.integers(0, 5000, T), 2 * half, dtype)
    assert_close(*both(M.rotary_forward, x, cos, sin), dtype)


@given(dims, st.integers(1, 70), dtypes, layouts, seeds)
def test_cross_entropy(n_rows, n_classes, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    logits = make(rng, (n_rows, n_classes), dtype, layout, scale=3.0)
    targets = rng.integers(0, n_classes, n_rows)
    targets[rng.random(n_rows) < 0.3] = -100
    (loss_kernel, lse_kernel), (loss_reference, lse_reference) = both(F.cross_entropy_forward, logits, targets, -100)
    assert_close(loss_kernel, loss_reference, dtype)
    assert_close(lse_kernel, lse_reference, dtype)
    assert_close(*both(F.cross_entropy_backward, logits, targets, lse_reference, -100, 0.7), dtype)


@given(dims, dims, st.integers(1, 9), st.integers(0, 4), dims, st.booleans(), dtypes, layouts, seeds)
def test_attention(batch, heads, tq, extra_keys, head_size, causal, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    tk = tq + extra_keys
    q = make(rng, (batch, heads, tq, head_size), dtype, layout)
    k, v = (make(rng, (batch, heads, tk, head_size), dtype, layout) for _ in range(2))
    dout = make(rng, q.shape, dtype, layout)
    (out_kernel, lse_kernel), (out_reference, lse_reference) = both(F.attention_forward, q, k, v, causal)
    assert_close(out_kernel, out_reference, dtype)
    assert_close(lse_kernel, lse_reference, dtype)
    grads = both(F.attention_backward, dout, q, k, v, out_reference, lse_reference, causal)
    for got, want in zip(*grads):
        assert_close(got, want, dtype)


def merges_to_rows(a):
    """Does a (B, H, T, D) array become (B, T, H*D) by a view, i.e. is it laid out (B, T, H, D) in memory?"""
    batch, heads, seq_len, head_size = a.shape
    merged = a.transpose(0, 2, 1, 3).reshape(batch, seq_len, heads * head_size)
    return np.shares_memory(merged, a)


@given(dims, dims, st.integers(1, 9), dims, dtypes, seeds)
def test_attention_on_head_views_of_one_qkv_array(batch, heads, seq_len, head_size, dtype, seed):
    """As gpt/model.py calls it: q, k, v are strided head views into the (B, T, 3C) output of the qkv
    projection. The kernel reads them as they are, equals the reference, and lays out its out (and the
    gradients, which follow their inputs) so that merging the heads back to (B, T, C) is a view."""
    rng = np.random.default_rng(seed)
    width = heads * head_size
    qkv = make(rng, (batch, seq_len, 3 * width), dtype, "contiguous")
    q, k, v = (part.reshape(batch, seq_len, heads, head_size).transpose(0, 2, 1, 3)
               for part in np.split(qkv, 3, axis=2))
    assert all(np.shares_memory(part, qkv) for part in (q, k, v))
    dout = make(rng, (batch, seq_len, width), dtype, "contiguous").reshape(
        batch, seq_len, heads, head_size).transpose(0, 2, 1, 3)

    (out, lse), (out_reference, lse_reference) = both(F.attention_forward, q, k, v, True)
    assert_close(out, out_reference, dtype)
    assert_close(lse, lse_reference, dtype)
    assert out.shape == (batch, heads, seq_len, head_size) and merges_to_rows(out)

    grads = F.attention_backward.kernel(dout, q, k, v, out, lse, True)
    for got, want in zip(grads, F.attention_backward.reference(dout, q, k, v, out_reference, lse_reference, True)):
        assert_close(got, want, dtype)
    for grad, given_input in zip(grads, (q, k, v)):
        assert grad.shape == given_input.shape and not np.shares_memory(grad, qkv)
        assert merges_to_rows(grad)


@given(st.lists(dims, min_size=1, max_size=2), st.integers(1, 130), dims, dtypes, layouts, seeds)
def test_embedding_backward(ids_shape, n_cols, n_embeddings, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, n_embeddings, ids_shape)
    dout = make(rng, tuple(ids_shape) + (n_cols,), dtype, layout)
    assert_close(*both(F.embedding_backward, ids, dout, n_embeddings), dtype)


@given(st.lists(dims, min_size=1, max_size=3), st.integers(1, 5), dtypes, seeds)
def test_adamw_step(shape, step, dtype, seed):
    rng = np.random.default_rng(seed)
    grad = make(rng, shape, dtype, "strided")
    states = {}
    for side in ("kernel", "reference"):
        param, exp_avg = make(np.random.default_rng(seed), shape, dtype), np.full(shape, 0.1, dtype)
        exp_avg_sq = np.full(shape, 0.2, dtype)
        getattr(adamw_step, side)(param, grad, exp_avg, exp_avg_sq, 1e-2, 0.9, 0.95, 1e-8, 0.1, step)
        states[side] = (param, exp_avg, exp_avg_sq)
    for got, want in zip(states["kernel"], states["reference"]):
        assert_close(got, want, dtype)
