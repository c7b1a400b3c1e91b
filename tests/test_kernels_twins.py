"""Every numba kernel equals its NumPy twin on generated shapes, dtypes and memory layouts.

The twins are proven against finite differences in test_kernels_math.py; here the numba side is
held to them. Tolerances are explained in kernel_inputs.TOLERANCE.
"""
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nanograd import kernels as K
from nanograd.kernels import (adamw, attention, cross_entropy, embedding, gelu, gemm, layer_norm,
                              softmax)
from kernel_inputs import assert_close, dims, dtypes, layouts, make, seeds


def both(module, name, *args):
    """(numba result, numpy result) of module.<name>_{numba,numpy}(*args)."""
    return getattr(module, f"{name}_numba")(*args), getattr(module, f"{name}_numpy")(*args)


@given(st.lists(dims, min_size=1, max_size=3), dtypes, layouts, seeds)
def test_softmax_family(shape, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    x, dy = make(rng, shape, dtype, layout, scale=3.0), make(rng, shape, dtype, layout)
    for forward, backward in (("softmax_forward", "softmax_backward"),
                              ("log_softmax_forward", "log_softmax_backward")):
        y_numba, y_numpy = both(softmax, forward, x)
        assert_close(y_numba, y_numpy, dtype)
        assert_close(*both(softmax, backward, y_numpy, dy), dtype)


@given(st.lists(dims, min_size=1, max_size=3), dtypes, layouts, seeds)
def test_gelu(shape, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    x, dy = make(rng, shape, dtype, layout, scale=3.0), make(rng, shape, dtype, layout)
    assert_close(*both(gelu, "gelu_forward", x), dtype)
    assert_close(*both(gelu, "gelu_backward", x, dy), dtype)


@given(st.lists(dims, min_size=1, max_size=3), dtypes, layouts, seeds)
def test_layer_norm(shape, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    x, dy = make(rng, shape, dtype, layout, scale=2.0), make(rng, shape, dtype, layout)
    weight, bias = make(rng, shape[-1:], dtype), make(rng, shape[-1:], dtype)
    forward_numba, forward_numpy = both(layer_norm, "layer_norm_forward", x, weight, bias, 1e-5)
    _, mean, rstd = forward_numpy
    # A rounding difference in the mean, ~eps * |x|, reaches xhat = (x - mean) * rstd multiplied by
    # rstd: rows whose values nearly coincide have rstd up to 1/sqrt(eps) and amplify it that much.
    condition = max(1.0, float(np.max(np.abs(x), initial=0.0) * np.max(rstd, initial=0.0)))
    for got, want in zip(forward_numba, forward_numpy):
        assert_close(got, want, dtype, condition)
    for got, want in zip(*both(layer_norm, "layer_norm_backward", dy, x, weight, mean, rstd)):
        assert_close(got, want, dtype, condition)


@given(dims, st.integers(1, 70), dtypes, layouts, seeds)
def test_cross_entropy(n_rows, n_classes, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    logits = make(rng, (n_rows, n_classes), dtype, layout, scale=3.0)
    targets = rng.integers(0, n_classes, n_rows)
    targets[rng.random(n_rows) < 0.3] = -100
    (loss_numba, lse_numba), (loss_numpy, lse_numpy) = both(cross_entropy, "cross_entropy_forward",
                                                            logits, targets, -100)
    assert_close(loss_numba, loss_numpy, dtype)
    assert_close(lse_numba, lse_numpy, dtype)
    assert_close(*both(cross_entropy, "cross_entropy_backward", logits, targets, lse_numpy, -100, 0.7), dtype)


@given(dims, dims, st.integers(1, 9), st.integers(0, 4), dims, st.booleans(), dtypes, layouts, seeds)
def test_attention(batch, heads, tq, extra_keys, head_size, causal, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    tk = tq + extra_keys
    q = make(rng, (batch, heads, tq, head_size), dtype, layout)
    k, v = (make(rng, (batch, heads, tk, head_size), dtype, layout) for _ in range(2))
    dout = make(rng, q.shape, dtype, layout)
    (out_numba, lse_numba), (out_numpy, lse_numpy) = both(attention, "attention_forward", q, k, v, causal)
    assert_close(out_numba, out_numpy, dtype)
    assert_close(lse_numba, lse_numpy, dtype)
    grads = both(attention, "attention_backward", dout, q, k, v, out_numpy, lse_numpy, causal)
    for got, want in zip(*grads):
        assert_close(got, want, dtype)


@given(dims, dims, st.integers(1, 9), dims, dtypes, seeds)
def test_attention_writes_into_given_strided_outputs(batch, heads, seq_len, head_size, dtype, seed):
    """As F.causal_self_attention calls it: q, k, v, out and the gradients are head views into
    (B, T, 3C) and (B, T, C) arrays. Each backend fills the given views with what it would return."""
    rng = np.random.default_rng(seed)

    def head_views(a, parts):
        return a.reshape(batch, seq_len, parts, heads, head_size).transpose(2, 0, 3, 1, 4)

    q, k, v = head_views(make(rng, (batch, seq_len, 3 * heads * head_size), dtype, "contiguous"), 3)
    dout = head_views(make(rng, (batch, seq_len, heads * head_size), dtype, "contiguous"), 1)[0]
    for backend in ("numba", "numpy"):
        forward, backward = (getattr(attention, f"attention_{step}_{backend}") for step in ("forward", "backward"))
        want_out, lse = forward(q, k, v, True)
        out = head_views(np.full((batch, seq_len, heads * head_size), np.nan, dtype), 1)[0]
        got_out, _ = forward(q, k, v, True, out=out)
        assert got_out is out
        assert_close(out, want_out, dtype)
        want = backward(dout, q, k, v, want_out, lse, True)
        given_grads = list(head_views(np.full((batch, seq_len, 3 * heads * head_size), np.nan, dtype), 3))
        got = backward(dout, q, k, v, want_out, lse, True, dq=given_grads[0], dk=given_grads[1], dv=given_grads[2])
        for got_grad, given_grad, want_grad in zip(got, given_grads, want):
            assert got_grad is given_grad
            assert_close(given_grad, want_grad, dtype)


def test_attention_refuses_an_output_of_the_wrong_shape():
    q = np.zeros((1, 2, 3, 4), np.float32)
    for forward in (attention.attention_forward_numba, attention.attention_forward_numpy):
        with pytest.raises(ValueError, match=r"out must be float32 of shape \(1, 2, 3, 4\)"):
            forward(q, q, q, True, out=np.zeros((1, 2, 4, 3), np.float32))


@given(st.lists(dims, min_size=1, max_size=2), st.integers(1, 130), dims, dtypes, layouts, seeds)
def test_embedding_backward(ids_shape, n_cols, n_embeddings, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, n_embeddings, ids_shape)
    dout = make(rng, tuple(ids_shape) + (n_cols,), dtype, layout)
    assert_close(*both(embedding, "embedding_backward", ids, dout, n_embeddings), dtype)


@given(st.lists(dims, min_size=1, max_size=3), st.integers(1, 5), dtypes, seeds)
def test_adamw_step(shape, step, dtype, seed):
    rng = np.random.default_rng(seed)
    grad = make(rng, shape, dtype, "strided")
    states = {}
    for backend in ("numba", "numpy"):
        param, exp_avg = make(np.random.default_rng(seed), shape, dtype), np.full(shape, 0.1, dtype)
        exp_avg_sq = np.full(shape, 0.2, dtype)
        getattr(adamw, f"adamw_step_{backend}")(param, grad, exp_avg, exp_avg_sq, 1e-2, 0.9, 0.95, 1e-8,
                                                0.1, step)
        states[backend] = (param, exp_avg, exp_avg_sq)
    for got, want in zip(states["numba"], states["numpy"]):
        assert_close(got, want, dtype)


@given(st.sampled_from([((5,), (5,)), ((3, 5), (5,)), ((5,), (5, 4)), ((2, 1, 3, 5), (4, 5, 7)),
                        ((1, 1), (1, 1)), ((7, 3), (3, 130)), ((13, 70), (70, 65))]),
       dtypes, layouts, seeds)
def test_matmul(shapes, dtype, layout, seed):
    rng = np.random.default_rng(seed)
    a, b = make(rng, shapes[0], dtype, layout), make(rng, shapes[1], dtype, layout)
    assert_close(*both(gemm, "matmul", a, b), dtype)


def test_matmul_mismatch_names_both_shapes():
    for backend in K.BACKENDS:
        with K.use_backend(backend), pytest.raises(ValueError, match=r"\(3, 4\) and \(5, 2\)"):
            K.matmul(np.ones((3, 4)), np.ones((5, 2)))
