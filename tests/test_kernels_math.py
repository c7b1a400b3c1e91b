"""The NumPy twins are right: backward against central finite differences of forward (float64),
plus the properties the engine relies on (causal masking, KV-cache alignment, ignore_index, AdamW's
formula, repeated embedding ids) checked through the public, dispatching names on both backends.
"""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from nanograd import kernels as K
from nanograd.kernels import attention, cross_entropy, embedding, gelu, layer_norm, softmax
from kernel_inputs import dims, seeds

EPS = 1e-6
# Central differences have truncation error ~EPS^2 * |f'''| ~ 1e-12 and rounding error
# ~1e-16 * |f| / EPS ~ 1e-10, so analytic and numeric projections agree to ~1e-9 relative.
FD_TOLERANCE = 1e-7


def directional_derivative(f, x, direction):
    """d/dt <weights, f(x + t direction)> at t = 0 by central differences, f returning an array."""
    return (f(x + EPS * direction) - f(x - EPS * direction)) / (2 * EPS)


def check_projection(f, x, dy, analytic_grad, rng):
    """<dy, J u> by finite differences equals <analytic_grad, u> for a random direction u."""
    u = rng.standard_normal(x.shape)
    numeric = float(np.sum(dy * directional_derivative(f, x, u)))
    analytic = float(np.sum(analytic_grad * u))
    assert abs(numeric - analytic) <= FD_TOLERANCE * max(1.0, abs(analytic)), (numeric, analytic)


@given(st.lists(dims, min_size=1, max_size=3), seeds)
def test_softmax_twins_match_finite_differences(shape, seed):
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal(shape) * 2, rng.standard_normal(shape)
    y = softmax.softmax_forward_numpy(x)
    check_projection(softmax.softmax_forward_numpy, x, dy, softmax.softmax_backward_numpy(y, dy), rng)
    z = softmax.log_softmax_forward_numpy(x)
    check_projection(softmax.log_softmax_forward_numpy, x, dy, softmax.log_softmax_backward_numpy(z, dy), rng)
    np.testing.assert_allclose(z, np.log(y), rtol=0, atol=1e-12)


@given(st.lists(dims, min_size=1, max_size=3), seeds)
def test_gelu_twin_matches_finite_differences(shape, seed):
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal(shape) * 3, rng.standard_normal(shape)
    check_projection(gelu.gelu_forward_numpy, x, dy, gelu.gelu_backward_numpy(x, dy), rng)


@given(st.lists(dims, min_size=1, max_size=3), seeds)
def test_layer_norm_twin_matches_finite_differences(shape, seed):
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal(shape), rng.standard_normal(shape)
    weight, bias = rng.standard_normal(shape[-1:]), rng.standard_normal(shape[-1:])
    _, mean, rstd = layer_norm.layer_norm_forward_numpy(x, weight, bias, 1e-5)
    dx, dweight, dbias = layer_norm.layer_norm_backward_numpy(dy, x, weight, mean, rstd)

    def forward(x=x, weight=weight, bias=bias):
        return layer_norm.layer_norm_forward_numpy(x, weight, bias, 1e-5)[0]

    check_projection(lambda t: forward(x=t), x, dy, dx, rng)
    check_projection(lambda t: forward(weight=t), weight, dy, dweight, rng)
    check_projection(lambda t: forward(bias=t), bias, dy, dbias, rng)


@given(dims, st.integers(1, 9), seeds)
def test_cross_entropy_twin_matches_finite_differences(n_rows, n_classes, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n_rows, n_classes)) * 2
    targets = rng.integers(0, n_classes, n_rows)
    targets[rng.random(n_rows) < 0.3] = -1
    _, lse = cross_entropy.cross_entropy_forward_numpy(logits, targets, -1)
    dloss = 0.7
    dlogits = cross_entropy.cross_entropy_backward_numpy(logits, targets, lse, -1, dloss)
    check_projection(lambda t: cross_entropy.cross_entropy_forward_numpy(t, targets, -1)[0],
                     logits, np.array(dloss), dlogits, rng)


@settings(max_examples=15)
@given(st.integers(1, 2), st.integers(1, 2), st.integers(1, 5), st.integers(0, 3), st.integers(1, 4),
       st.booleans(), seeds)
def test_attention_twin_matches_finite_differences(batch, heads, tq, extra_keys, head_size, causal, seed):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((batch, heads, tq, head_size))
    k, v = (rng.standard_normal((batch, heads, tq + extra_keys, head_size)) for _ in range(2))
    dout = rng.standard_normal(q.shape)
    out, lse = attention.attention_forward_numpy(q, k, v, causal)
    dq, dk, dv = attention.attention_backward_numpy(dout, q, k, v, out, lse, causal)
    check_projection(lambda t: attention.attention_forward_numpy(t, k, v, causal)[0], q, dout, dq, rng)
    check_projection(lambda t: attention.attention_forward_numpy(q, t, v, causal)[0], k, dout, dk, rng)
    check_projection(lambda t: attention.attention_forward_numpy(q, k, t, causal)[0], v, dout, dv, rng)


@given(st.lists(dims, min_size=1, max_size=2), dims, dims, seeds)
def test_embedding_twin_matches_finite_differences(ids_shape, n_embeddings, n_cols, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, n_embeddings, ids_shape)
    weight = rng.standard_normal((n_embeddings, n_cols))
    dout = rng.standard_normal(tuple(ids_shape) + (n_cols,))
    dweight = embedding.embedding_backward_numpy(ids, dout, n_embeddings)
    check_projection(lambda w: w[ids], weight, dout, dweight, rng)


# ---- properties, through the public names, on both backends ----

backends = pytest.mark.parametrize("backend", K.BACKENDS)


@backends
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_causal_attention_ignores_later_keys(backend, dtype):
    rng = np.random.default_rng(0)
    batch, heads, tq, tk, head_size = 2, 3, 5, 8, 4
    q = rng.standard_normal((batch, heads, tq, head_size)).astype(dtype)
    k, v = (rng.standard_normal((batch, heads, tk, head_size)).astype(dtype) for _ in range(2))
    with K.use_backend(backend):
        out, _ = K.attention_forward(q, k, v, True)
        for i in range(tq):
            last_visible = i + tk - tq
            k2, v2 = k.copy(), v.copy()
            k2[:, :, last_visible + 1:] = rng.standard_normal(k2[:, :, last_visible + 1:].shape)
            v2[:, :, last_visible + 1:] = 100.0
            out2, _ = K.attention_forward(q, k2, v2, True)
            np.testing.assert_array_equal(out2[:, :, i], out[:, :, i])
            if last_visible + 1 < tk:  # a visible key change must show
                v2[:, :, last_visible] += 1.0
                assert not np.allclose(K.attention_forward(q, k2, v2, True)[0][:, :, i], out[:, :, i])


@backends
def test_short_query_is_bottom_right_aligned(backend):
    """Tq < Tk (a KV-cache step) equals the last Tq rows of full-length causal attention."""
    rng = np.random.default_rng(1)
    k, v = (rng.standard_normal((2, 2, 7, 3)) for _ in range(2))
    q_full = rng.standard_normal((2, 2, 7, 3))
    with K.use_backend(backend):
        full, _ = K.attention_forward(q_full, k, v, True)
        for tq in (1, 3, 7):
            out, _ = K.attention_forward(q_full[:, :, -tq:], k, v, True)
            np.testing.assert_allclose(out, full[:, :, -tq:], rtol=0, atol=1e-14)


@backends
def test_cross_entropy_ignore_index(backend):
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((6, 5))
    targets = np.array([1, -100, 4, -100, 0, 2])
    kept = targets != -100
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -np.mean(log_probs[kept, targets[kept]])
    with K.use_backend(backend):
        loss, saved = K.cross_entropy_forward(logits, targets, -100)
        np.testing.assert_allclose(loss, expected, rtol=1e-13)
        assert loss.shape == () and loss.dtype == logits.dtype
        dlogits = K.cross_entropy_backward(logits, targets, saved, -100, 1.0)
        assert np.all(dlogits[~kept] == 0)
        every_row_ignored = np.full(6, -100)
        loss, saved = K.cross_entropy_forward(logits, every_row_ignored, -100)
        assert loss == 0.0
        assert np.all(K.cross_entropy_backward(logits, every_row_ignored, saved, -100, 1.0) == 0)


@backends
@pytest.mark.parametrize("bad", [5, -2])
def test_cross_entropy_out_of_range_target_names_id_and_row(backend, bad):
    logits = np.zeros((4, 5), np.float32)
    targets = np.array([0, 1, bad, 2])
    with K.use_backend(backend), pytest.raises(ValueError, match=rf"target id {bad} at row 2"):
        K.cross_entropy_forward(logits, targets, -1)


@backends
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adamw_step_matches_hand_written_formula(backend, dtype):
    rng = np.random.default_rng(3)
    lr, beta1, beta2, eps, weight_decay = 3e-3, 0.9, 0.99, 1e-8, 0.1
    param = rng.standard_normal((4, 3)).astype(dtype)
    m, v = np.zeros_like(param), np.zeros_like(param)
    ref_param, ref_m, ref_v = param.astype(np.float64), np.zeros((4, 3)), np.zeros((4, 3))
    with K.use_backend(backend):
        for step in range(1, 4):
            grad = rng.standard_normal((4, 3)).astype(dtype)
            assert K.adamw_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step) is None
            ref_param = ref_param * (1 - lr * weight_decay)
            ref_m = beta1 * ref_m + (1 - beta1) * grad
            ref_v = beta2 * ref_v + (1 - beta2) * grad**2
            ref_param = ref_param - lr * (ref_m / (1 - beta1**step)) / (np.sqrt(ref_v / (1 - beta2**step)) + eps)
    # float32: three steps of a few float32 roundings each on values ~1: well inside 1e-6.
    tolerance = 1e-6 if dtype == np.float32 else 1e-13
    for got, want in ((param, ref_param), (m, ref_m), (v, ref_v)):
        np.testing.assert_allclose(got, want, rtol=0, atol=tolerance)


@backends
def test_adamw_rejects_non_contiguous_state(backend):
    param = np.zeros((4, 6))
    with K.use_backend(backend), pytest.raises(ValueError, match="C-contiguous"):
        K.adamw_step(param[:, ::2], np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((4, 3)),
                     1e-3, 0.9, 0.999, 1e-8, 0.0, 1)


@backends
def test_embedding_backward_adds_repeated_ids(backend):
    ids = np.array([[1, 1, 3], [1, 0, 3]])
    dout = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    expected = np.zeros((5, 4), np.float32)
    for position in np.ndindex(ids.shape):
        expected[ids[position]] += dout[position]
    with K.use_backend(backend):
        np.testing.assert_array_equal(K.embedding_backward(ids, dout, 5), expected)
        with pytest.raises(ValueError, match=r"id 7 at position \(1, 2\)"):
            K.embedding_backward(np.array([[1, 1, 3], [1, 0, 7]]), dout, 5)


def test_use_backend_routes_every_call(monkeypatch):
    calls = []
    monkeypatch.setattr(softmax, "softmax_forward_numba", lambda x: calls.append("numba") or x)
    monkeypatch.setattr(softmax, "softmax_forward_numpy", lambda x: calls.append("numpy") or x)
    x = np.zeros((2, 3), np.float32)
    with K.use_backend("numpy"):
        K.softmax_forward(x)
        assert K.BACKEND == "numpy"
    K.softmax_forward(x)
    K.softmax_forward(x.astype(np.float16))  # numba kernels are compiled for float32/64 only
    assert calls == ["numpy", "numba", "numpy"]
    with pytest.raises(ValueError, match="unknown kernel backend 'cuda'"):
        K.use_backend("cuda")


def test_environment_variable_selects_backend():
    script = "from nanograd import kernels as K; print(K.BACKEND)"
    for value in ("numpy", "numba"):
        result = subprocess.run([sys.executable, "-c", script], env={**os.environ, "NANOGRAD_KERNELS": value},
                                capture_output=True, text=True, check=True)
        assert result.stdout.strip() == value


def test_set_num_threads():
    before = numba.get_num_threads()
    try:
        K.set_num_threads(1)
        assert numba.get_num_threads() == 1
    finally:
        K.set_num_threads(before)
    with pytest.raises(ValueError, match="set_num_threads"):
        K.set_num_threads(0)


@pytest.mark.parametrize("backend", K.BACKENDS)
def test_nan_propagates_instead_of_raising(backend):
    """A diverged model's NaN must flow out of every kernel (for the trainer to see), not crash inside one."""
    nan = np.full((2, 3, 4, 8), np.nan, np.float32)
    rows = nan.reshape(-1, 8)
    targets = np.zeros(len(rows), np.int64)
    weight, bias = np.ones(8, np.float32), np.zeros(8, np.float32)
    with K.use_backend(backend):
        out, lse = K.attention_forward(nan, nan, nan, True)
        results = [out, *K.attention_backward(nan, nan, nan, nan, out, lse, True), K.softmax_forward(rows),
                   K.softmax_backward(rows, rows), K.log_softmax_forward(rows), K.gelu_forward(rows),
                   K.gelu_backward(rows, rows), K.layer_norm_forward(rows, weight, bias, 1e-5)[0]]
        loss, saved = K.cross_entropy_forward(rows, targets, -1)
        results += [loss, K.cross_entropy_backward(rows, targets, saved, -1, 1.0)]
    for result in results:
        assert np.isnan(result).all()
