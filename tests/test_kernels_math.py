"""The NumPy references are right: backward against central finite differences of forward (float64),
plus the properties the engine relies on (causal masking, KV-cache alignment, ignore_index, AdamW's
formula, repeated embedding ids, NaN propagation) checked on both sides of each @fast_kernel function
(`f.kernel` and `f.reference`), and the dispatch rule that picks between them.
"""
import os
import subprocess
import sys

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import nanograd.functional as F
from nanograd import Tensor
from nanograd import kernels as K
from nanograd.optim import adamw_step
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
def test_softmax_reference_matches_finite_differences(shape, seed):
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal(shape) * 2, rng.standard_normal(shape)
    y = F.softmax_forward.reference(x)
    check_projection(F.softmax_forward.reference, x, dy, F.softmax_backward.reference(y, dy), rng)
    z = F.log_softmax_forward.reference(x)
    check_projection(F.log_softmax_forward.reference, x, dy, F.log_softmax_backward.reference(z, dy), rng)
    np.testing.assert_allclose(z, np.log(y), rtol=0, atol=1e-12)


@given(st.lists(dims, min_size=1, max_size=3), seeds)
def test_gelu_reference_matches_finite_differences(shape, seed):
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal(shape) * 3, rng.standard_normal(shape)
    check_projection(F.gelu_forward.reference, x, dy, F.gelu_backward.reference(x, dy), rng)


@given(st.lists(dims, min_size=1, max_size=3), seeds)
def test_layer_norm_reference_matches_finite_differences(shape, seed):
    rng = np.random.default_rng(seed)
    x, dy = rng.standard_normal(shape), rng.standard_normal(shape)
    weight, bias = rng.standard_normal(shape[-1:]), rng.standard_normal(shape[-1:])
    _, mean, rstd = F.layer_norm_forward.reference(x, weight, bias, 1e-5)
    dx, dweight, dbias = F.layer_norm_backward.reference(dy, x, weight, mean, rstd)

    def forward(x=x, weight=weight, bias=bias):
        return F.layer_norm_forward.reference(x, weight, bias, 1e-5)[0]

    check_projection(lambda t: forward(x=t), x, dy, dx, rng)
    check_projection(lambda t: forward(weight=t), weight, dy, dweight, rng)
    check_projection(lambda t: forward(bias=t), bias, dy, dbias, rng)


@given(dims, st.integers(1, 9), seeds)
def test_cross_entropy_reference_matches_finite_differences(n_rows, n_classes, seed):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((n_rows, n_classes)) * 2
    targets = rng.integers(0, n_classes, n_rows)
    targets[rng.random(n_rows) < 0.3] = -1
    _, lse = F.cross_entropy_forward.reference(logits, targets, -1)
    dloss = 0.7
    dlogits = F.cross_entropy_backward.reference(logits, targets, lse, -1, dloss)
    check_projection(lambda t: F.cross_entropy_forward.reference(t, targets, -1)[0],
                     logits, np.array(dloss), dlogits, rng)


@settings(max_examples=15)
@given(st.integers(1, 2), st.integers(1, 2), st.integers(1, 5), st.integers(0, 3), st.integers(1, 4),
       st.booleans(), seeds)
def test_attention_reference_matches_finite_differences(batch, heads, tq, extra_keys, head_size, causal, seed):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((batch, heads, tq, head_size))
    k, v = (rng.standard_normal((batch, heads, tq + extra_keys, head_size)) for _ in range(2))
    dout = rng.standard_normal(q.shape)
    out, lse = F.attention_forward.reference(q, k, v, causal)
    dq, dk, dv = F.attention_backward.reference(dout, q, k, v, out, lse, causal)
    check_projection(lambda t: F.attention_forward.reference(t, k, v, causal)[0], q, dout, dq, rng)
    check_projection(lambda t: F.attention_forward.reference(q, t, v, causal)[0], k, dout, dk, rng)
    check_projection(lambda t: F.attention_forward.reference(q, k, t, causal)[0], v, dout, dv, rng)


@given(st.lists(dims, min_size=1, max_size=2), dims, dims, seeds)
def test_embedding_reference_matches_finite_differences(ids_shape, n_embeddings, n_cols, seed):
    rng = np.random.default_rng(seed)
    ids = rng.integers(0, n_embeddings, ids_shape)
    weight = rng.standard_normal((n_embeddings, n_cols))
    dout = rng.standard_normal(tuple(ids_shape) + (n_cols,))
    dweight = F.embedding_backward.reference(ids, dout, n_embeddings)
    check_projection(lambda w: w[ids], weight, dout, dweight, rng)


# ---- properties, on both sides of each @fast_kernel function ----

SIDES = ("kernel", "reference")
sides = pytest.mark.parametrize("side", SIDES)


@sides
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_causal_attention_ignores_later_keys(side, dtype):
    forward = getattr(F.attention_forward, side)
    rng = np.random.default_rng(0)
    batch, heads, tq, tk, head_size = 2, 3, 5, 8, 4
    q = rng.standard_normal((batch, heads, tq, head_size)).astype(dtype)
    k, v = (rng.standard_normal((batch, heads, tk, head_size)).astype(dtype) for _ in range(2))
    out, _ = forward(q, k, v, True)
    for i in range(tq):
        last_visible = i + tk - tq
        k2, v2 = k.copy(), v.copy()
        k2[:, :, last_visible + 1:] = rng.standard_normal(k2[:, :, last_visible + 1:].shape)
        v2[:, :, last_visible + 1:] = 100.0
        out2, _ = forward(q, k2, v2, True)
        np.testing.assert_array_equal(out2[:, :, i], out[:, :, i])
        if last_visible + 1 < tk:  # a visible key change must show
            v2[:, :, last_visible] += 1.0
            assert not np.allclose(forward(q, k2, v2, True)[0][:, :, i], out[:, :, i])


def test_causal_mask_is_bottom_right_aligned():
    np.testing.assert_array_equal(F.causal_mask(3, 3), np.triu(np.ones((3, 3), bool), k=1))
    np.testing.assert_array_equal(F.causal_mask(2, 4), [[False, False, False, True], [False, False, False, False]])
    assert not F.causal_mask(1, 5).any()  # one query at the end of a KV cache sees every key


@sides
def test_short_query_is_bottom_right_aligned(side):
    """Tq < Tk (a KV-cache step) equals the last Tq rows of full-length causal attention."""
    forward = getattr(F.attention_forward, side)
    rng = np.random.default_rng(1)
    k, v = (rng.standard_normal((2, 2, 7, 3)) for _ in range(2))
    q_full = rng.standard_normal((2, 2, 7, 3))
    full, _ = forward(q_full, k, v, True)
    for tq in (1, 3, 7):
        out, _ = forward(q_full[:, :, -tq:], k, v, True)
        np.testing.assert_allclose(out, full[:, :, -tq:], rtol=0, atol=1e-14)


@sides
def test_cross_entropy_ignore_index(side):
    forward, backward = getattr(F.cross_entropy_forward, side), getattr(F.cross_entropy_backward, side)
    rng = np.random.default_rng(2)
    logits = rng.standard_normal((6, 5))
    targets = np.array([1, -100, 4, -100, 0, 2])
    kept = targets != -100
    log_probs = logits - np.log(np.exp(logits).sum(axis=1, keepdims=True))
    expected = -np.mean(log_probs[kept, targets[kept]])
    loss, saved = forward(logits, targets, -100)
    np.testing.assert_allclose(loss, expected, rtol=1e-13)
    assert loss.shape == () and loss.dtype == logits.dtype
    dlogits = backward(logits, targets, saved, -100, 1.0)
    assert np.all(dlogits[~kept] == 0)
    every_row_ignored = np.full(6, -100)
    loss, saved = forward(logits, every_row_ignored, -100)
    assert loss == 0.0
    assert np.all(backward(logits, every_row_ignored, saved, -100, 1.0) == 0)


@pytest.mark.parametrize("bad", [5, -2])
def test_cross_entropy_out_of_range_target_names_id_and_row(bad):
    """Target ids are checked by the op, before either side of the forward runs."""
    logits = Tensor(np.zeros((2, 2, 5), np.float32))
    targets = np.array([[0, 1], [bad, 2]])
    with pytest.raises(ValueError, match=rf"target id {bad} at row 2 is outside \[0, 5\)"):
        F.cross_entropy(logits, targets, ignore_index=-1)


@sides
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_adamw_step_matches_hand_written_formula(side, dtype):
    step_fn = getattr(adamw_step, side)
    rng = np.random.default_rng(3)
    lr, beta1, beta2, eps, weight_decay = 3e-3, 0.9, 0.99, 1e-8, 0.1
    param = rng.standard_normal((4, 3)).astype(dtype)
    m, v = np.zeros_like(param), np.zeros_like(param)
    ref_param, ref_m, ref_v = param.astype(np.float64), np.zeros((4, 3)), np.zeros((4, 3))
    for step in range(1, 4):
        grad = rng.standard_normal((4, 3)).astype(dtype)
        assert step_fn(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step) is None
        ref_param = ref_param * (1 - lr * weight_decay)
        ref_m = beta1 * ref_m + (1 - beta1) * grad
        ref_v = beta2 * ref_v + (1 - beta2) * grad**2
        ref_param = ref_param - lr * (ref_m / (1 - beta1**step)) / (np.sqrt(ref_v / (1 - beta2**step)) + eps)
    # float32: three steps of a few float32 roundings each on values ~1: well inside 1e-6.
    tolerance = 1e-6 if dtype == np.float32 else 1e-13
    for got, want in ((param, ref_param), (m, ref_m), (v, ref_v)):
        np.testing.assert_allclose(got, want, rtol=0, atol=tolerance)


def test_adamw_kernel_rejects_non_contiguous_state():
    """The kernel updates flat views of param and the moments in place, so it refuses strided ones."""
    param = np.zeros((4, 6))
    with pytest.raises(ValueError, match="C-contiguous"):
        adamw_step.kernel(param[:, ::2], np.zeros((4, 3)), np.zeros((4, 3)), np.zeros((4, 3)),
                          1e-3, 0.9, 0.999, 1e-8, 0.0, 1)


@sides
def test_embedding_backward_adds_repeated_ids(side):
    ids = np.array([[1, 1, 3], [1, 0, 3]])
    dout = np.arange(2 * 3 * 4, dtype=np.float32).reshape(2, 3, 4)
    expected = np.zeros((5, 4), np.float32)
    for position in np.ndindex(ids.shape):
        expected[ids[position]] += dout[position]
    np.testing.assert_array_equal(getattr(F.embedding_backward, side)(ids, dout, 5), expected)


@pytest.mark.parametrize("bad", [7, -1])
def test_embedding_out_of_range_id_is_named(bad):
    """Embedding ids are checked by the op, before the lookup and before either side of the backward."""
    with pytest.raises(IndexError, match=rf"embedding id {bad} is out of range for a table of 5 rows"):
        F.embedding(np.array([[1, 1, 3], [1, 0, bad]]), Tensor(np.zeros((5, 4), np.float32), requires_grad=True))


# ---- which side runs: fast_kernel's rule ----

def toy():
    """A @fast_kernel function whose two sides say which of them ran."""
    return K.fast_kernel(lambda *args: "kernel")(lambda *args: "reference")


def test_fast_kernel_runs_the_kernel_only_for_big_float32_or_float64_inputs():
    f = toy()
    big, tiny = K.MIN_KERNEL_SIZE, K.MIN_KERNEL_SIZE - 1
    with K.use_backend("numba"):  # the default, unless NANOGRAD_KERNELS says otherwise
        assert f(np.zeros(tiny, np.float32)) == "reference"
        assert f(np.zeros(big, np.float32)) == "kernel"
        assert f(np.zeros((2, big // 2), np.float64), 3, True) == "kernel"
        assert f(np.zeros(big, np.float16)) == "reference"  # the kernels are compiled for float32/64 only
        assert f(np.zeros(big, np.float32), np.zeros(3, np.float16)) == "reference"
        assert f(np.zeros(tiny, np.float32), np.zeros(big, np.float32)) == "reference"  # the first array decides
        assert f(np.zeros(big, np.int64), np.zeros(big, np.float32)) == "kernel"  # integer arrays do not count
        assert f(np.zeros(big, np.int64)) == "reference"
        assert f(1.0, 2) == "reference"
    assert f.kernel(np.zeros(1)) == "kernel" and f.reference(np.zeros(big)) == "reference"


def test_use_backend_numpy_runs_only_references():
    f, big = toy(), np.zeros(K.MIN_KERNEL_SIZE, np.float32)
    with K.use_backend("numba"):
        with K.use_backend("numpy"):
            assert K.BACKEND == "numpy"
            assert f(big) == "reference"
        assert K.BACKEND == "numba"
        assert f(big) == "kernel"
        switched = K.use_backend("numpy")  # also a plain call, switching until switched back
        try:
            assert f(big) == "reference"
        finally:
            switched.__exit__(None, None, None)
        assert f(big) == "kernel"
    with pytest.raises(ValueError, match="unknown kernel backend 'cuda'"):
        K.use_backend("cuda")


def test_ops_dispatch_by_the_same_rule():
    """The real ops: a large input goes to the kernel and a small one to the reference; both agree."""
    rng = np.random.default_rng(4)
    for n_rows in (2, 2 * K.MIN_KERNEL_SIZE // 64):
        x = rng.standard_normal((n_rows, 64)).astype(np.float32)
        np.testing.assert_allclose(F.softmax_forward(x), F.softmax_forward.reference(x), rtol=0, atol=1e-6)
        np.testing.assert_allclose(F.softmax_forward(x), F.softmax_forward.kernel(x), rtol=0, atol=1e-6)


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


@sides
def test_nan_propagates_instead_of_raising(side):
    """A diverged model's NaN must flow out of every kernel and reference (for the trainer to see), not
    crash inside one."""
    def run(f, *args):
        return getattr(f, side)(*args)

    nan = np.full((2, 3, 4, 8), np.nan, np.float32)
    rows = nan.reshape(-1, 8)
    targets = np.zeros(len(rows), np.int64)
    weight, bias = np.ones(8, np.float32), np.zeros(8, np.float32)
    with np.errstate(invalid="ignore"):
        out, lse = run(F.attention_forward, nan, nan, nan, True)
        results = [out, lse, *run(F.attention_backward, nan, nan, nan, nan, out, lse, True),
                   run(F.softmax_forward, rows), run(F.softmax_backward, rows, rows),
                   run(F.log_softmax_forward, rows), run(F.log_softmax_backward, rows, rows),
                   run(F.gelu_forward, rows), run(F.gelu_backward, rows, rows),
                   *run(F.layer_norm_forward, rows, weight, bias, 1e-5),
                   *run(F.layer_norm_backward, rows, rows, weight, rows[:, 0], rows[:, 0])]
        loss, saved = run(F.cross_entropy_forward, rows, targets, -1)
        results += [loss, saved, run(F.cross_entropy_backward, rows, targets, saved, -1, 1.0),
                    run(F.embedding_backward, np.zeros((2, 3), np.int64), np.full((2, 3, 8), np.nan, np.float32), 4)[0]]
        param, moment = np.zeros(8, np.float32), np.zeros(8, np.float32)
        run(adamw_step, param, np.full(8, np.nan, np.float32), moment, np.zeros(8, np.float32),
            1e-3, 0.9, 0.999, 1e-8, 0.0, 1)
        results += [param, moment]
    for result in results:
        assert np.isnan(result).all()
