"""nanograd.functional: each fused op against the same math composed from Tensor ops, and its
gradients against finite differences (float64; tolerances as in test_tensor_grad.py)."""
import math

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra import numpy as hnp

import nanograd
import nanograd.functional as F
from nanograd import Tensor, gradcheck

shapes = hnp.array_shapes(min_dims=1, max_dims=3, max_side=5)


def arrays(shape, low=-3.0, high=3.0):
    return hnp.arrays(np.float64, shape, elements=st.floats(low, high, allow_nan=False))


def leaf(a):
    return Tensor(np.array(a, dtype=np.float64), requires_grad=True)


@given(arrays(shapes), st.integers(-1, 2))
def test_softmax_and_log_softmax(a, axis):
    axis = axis % a.ndim
    x = leaf(a)
    probs = F.softmax(x, axis=axis)
    assert np.allclose(probs.data.sum(axis=axis), 1.0)
    assert np.allclose(F.log_softmax(x, axis=axis).data, np.log(probs.data))
    assert gradcheck(lambda t: F.softmax(t, axis=axis), [x])
    assert gradcheck(lambda t: F.log_softmax(t, axis=axis), [x])


@given(arrays(shapes))
def test_gradient_of_summed_softmax_vanishes(a):
    # sum(softmax(x)) == 1 for every x, so its gradient is zero everywhere.
    x = leaf(a)
    F.softmax(x).sum().backward()
    assert np.allclose(x.grad, 0.0, atol=1e-12)


@st.composite
def logits_and_targets(draw):
    lead = draw(hnp.array_shapes(min_dims=1, max_dims=2, max_side=4))
    n_classes = draw(st.integers(1, 6))
    logits = draw(arrays(lead + (n_classes,), -5.0, 5.0))
    targets = draw(hnp.arrays(np.int64, lead, elements=st.integers(-1, n_classes - 1)))
    return logits, targets


@given(logits_and_targets())
def test_cross_entropy_is_mean_negative_log_likelihood(case):
    logits, targets = case
    x = leaf(logits)
    loss = F.cross_entropy(x, targets, ignore_index=-1)
    kept = targets != -1
    log_probs = F.log_softmax(Tensor(logits)).data
    picked = np.take_along_axis(log_probs, np.where(kept, targets, 0)[..., None], -1)[..., 0]
    expected = -picked[kept].mean() if kept.any() else 0.0
    assert np.isclose(loss.item(), expected)
    assert gradcheck(lambda t: F.cross_entropy(t, targets, ignore_index=-1), [x])


def test_cross_entropy_errors():
    with pytest.raises(ValueError, match=r"targets of shape \(3,\).*logits of shape \(2, 5\)"):
        F.cross_entropy(Tensor(np.zeros((2, 5))), np.zeros(3, np.int64))
    with pytest.raises(TypeError, match="integer"):
        F.cross_entropy(Tensor(np.zeros((2, 5))), np.zeros(2))
    with pytest.raises(ValueError, match=r"target id 7 at row 1 is outside \[0, 5\) and is not ignore_index=-1"):
        F.cross_entropy(Tensor(np.zeros((2, 5))), np.array([0, 7]))
    with pytest.raises(ValueError, match=r"target id -3 at row 0"):
        F.cross_entropy(Tensor(np.zeros((2, 5))), np.array([-3, -100]), ignore_index=-100)
    assert F.cross_entropy(Tensor(np.zeros((2, 5))), np.array([-100, 4]), ignore_index=-100).item() == pytest.approx(
        math.log(5))  # ignore_index itself is no bad id


def gelu_composite(x):
    return 0.5 * x * ((x + 0.044715 * x ** 3) * math.sqrt(2 / math.pi)).tanh() + 0.5 * x


@given(arrays(shapes, -5.0, 5.0))
def test_gelu(a):
    x = leaf(a)
    assert np.allclose(F.gelu(x).data, gelu_composite(Tensor(a)).data, rtol=1e-12, atol=1e-12)
    assert gradcheck(F.gelu, [x])


def layer_norm_composite(x, weight, bias, eps):
    centred = x - x.mean(axis=-1, keepdims=True)
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / (variance + eps).sqrt() * weight + bias


@given(arrays(hnp.array_shapes(min_dims=1, max_dims=3, min_side=2, max_side=5)), st.booleans())
def test_layer_norm(a, affine):
    n_features = a.shape[-1]
    rng = np.random.default_rng(0)
    weight = leaf(rng.standard_normal(n_features)) if affine else None
    bias = leaf(rng.standard_normal(n_features)) if affine else None
    x = leaf(a + rng.standard_normal(a.shape))  # generated rows may be constant; keep variance away from 0
    expected = layer_norm_composite(x, weight if affine else 1.0, bias if affine else 0.0, 1e-5)
    assert np.allclose(F.layer_norm(x, weight, bias).data, expected.data, atol=1e-10)
    inputs = [x, weight, bias] if affine else [x]
    assert gradcheck(lambda *t: F.layer_norm(t[0], *(t[1:] if affine else (None, None))), inputs)


def test_layer_norm_shape_error():
    with pytest.raises(ValueError, match=r"weight of shape \(3,\).*\(2, 4\)"):
        F.layer_norm(Tensor(np.zeros((2, 4))), Tensor(np.ones(3)), None)


def attention_composite(q, k, v, causal):
    """softmax(q k^T / sqrt(hs), masked) v written out in Tensor ops, as gpt/model.py can do it."""
    scores = q @ k.transpose(0, 1, 3, 2) * (1.0 / math.sqrt(q.shape[-1]))
    if causal:
        scores = scores.masked_fill(F.causal_mask(q.shape[2], k.shape[2]), -np.inf)
    return F.softmax(scores) @ v


@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 5), st.integers(0, 3), st.integers(1, 4), st.booleans())
def test_scaled_dot_product_attention(batch, n_head, n_queries, extra_keys, head_size, causal):
    rng = np.random.default_rng(n_queries * 10 + extra_keys)
    n_keys = n_queries + extra_keys
    q = leaf(rng.standard_normal((batch, n_head, n_queries, head_size)))
    k = leaf(rng.standard_normal((batch, n_head, n_keys, head_size)))
    v = leaf(rng.standard_normal((batch, n_head, n_keys, head_size)))
    out = F.scaled_dot_product_attention(q, k, v, causal=causal)
    assert np.allclose(out.data, attention_composite(q, k, v, causal).data, atol=1e-12)
    assert gradcheck(lambda *t: F.scaled_dot_product_attention(*t, causal=causal), [q, k, v])


def test_attention_shape_errors():
    q = Tensor(np.zeros((1, 2, 4, 3)))
    with pytest.raises(ValueError, match="no more queries than keys"):
        F.scaled_dot_product_attention(q, Tensor(np.zeros((1, 2, 2, 3))), Tensor(np.zeros((1, 2, 2, 3))))
    with pytest.raises(ValueError, match="4-D"):
        F.scaled_dot_product_attention(Tensor(np.zeros((2, 4, 3))), q, q)


@given(st.integers(1, 2), st.integers(1, 3), st.integers(1, 6), st.integers(1, 4), st.integers(0, 9))
def test_attention_on_head_views_of_qkv(batch, n_head, seq_len, head_size, seed):
    """As gpt/model.py calls it: q, k, v and their heads cut from one (B, T, 3C) tensor by one reshape and one
    transpose, then unbound (views all the way). The fused op equals the written-out composite (scores,
    causal mask by masked_fill, softmax, @ v), in value and in gradient (float64)."""
    rng = np.random.default_rng(seed)
    width = n_head * head_size
    qkv = leaf(rng.standard_normal((batch, seq_len, 3 * width)))

    def heads(t):
        """q, k, v, each (B, nh, T, hs)."""
        return t.reshape(batch, seq_len, 3, n_head, head_size).transpose(2, 0, 3, 1, 4).unbind(0)

    def attend(t, attention):
        return attention(*heads(t)).transpose(0, 2, 1, 3).reshape(batch, seq_len, width)

    def fused(t):
        return attend(t, lambda q, k, v: F.scaled_dot_product_attention(q, k, v, causal=True))

    def composite(t):
        return attend(t, lambda q, k, v: attention_composite(q, k, v, causal=True))

    q, k, v = heads(qkv)
    assert all(np.shares_memory(part.data, qkv.data) for part in (q, k, v))
    assert all(np.array_equal(part.data, qkv.data[..., i * width:(i + 1) * width].reshape(
        batch, seq_len, n_head, head_size).transpose(0, 2, 1, 3)) for i, part in enumerate((q, k, v)))
    assert np.allclose(fused(qkv).data, composite(qkv).data, atol=1e-12)
    assert gradcheck(fused, [qkv])
    assert gradcheck(composite, [qkv])


@given(hnp.arrays(np.int64, hnp.array_shapes(max_dims=2, max_side=5), elements=st.integers(0, 3)))
def test_embedding(ids):
    weight = leaf(np.random.default_rng(1).standard_normal((4, 3)))
    assert np.array_equal(F.embedding(ids, weight).data, weight.data[ids])
    assert gradcheck(lambda w: F.embedding(ids, w), [weight])


def test_embedding_bad_id_is_named():
    with pytest.raises(IndexError, match="embedding id 9 is out of range for a table of 4 rows"):
        F.embedding(np.array([1, 9]), Tensor(np.zeros((4, 2))))
    with pytest.raises(IndexError, match="embedding id -1 is out of range"):
        F.embedding(np.array([[0, 1], [-1, 2]]), Tensor(np.zeros((4, 2)), requires_grad=True))
    with pytest.raises(TypeError, match="embedding ids must be an integer array"):
        F.embedding(np.array([0.0, 1.0]), Tensor(np.zeros((4, 2))))


@given(st.sampled_from([(4,), (3, 4), (2, 3, 4), (1, 2, 1, 4)]), st.booleans(), st.booleans(), st.integers(0, 9))
def test_linear_matches_composite_and_gradcheck(shape, with_bias, strided, seed):
    """The fused node equals x @ W.T + b for any leading shape, with or without bias, on strided inputs."""
    rng = np.random.default_rng(seed)
    data = rng.standard_normal(shape[:-1] + (2 * shape[-1],))
    x = leaf(data[..., ::2] if strided else data[..., : shape[-1]])
    weight, bias = leaf(rng.standard_normal((5, 4))), leaf(rng.standard_normal(5)) if with_bias else None
    expected = x.data @ weight.data.T + (bias.data if with_bias else 0)
    assert np.allclose(F.linear(x, weight, bias).data, expected, rtol=1e-12, atol=1e-12)
    inputs = [x, weight] + ([bias] if with_bias else [])
    assert gradcheck(lambda *t: F.linear(t[0], t[1], t[2] if with_bias else None), inputs)


def test_linear_names_mismatched_shapes():
    with pytest.raises(ValueError, match=r"input of shape \(2, 3\) does not match weight of shape \(5, 4\)"):
        F.linear(Tensor(np.zeros((2, 3))), Tensor(np.zeros((5, 4))))
    with pytest.raises(ValueError, match=r"bias of shape \(4,\)"):
        F.linear(Tensor(np.zeros((2, 4))), Tensor(np.zeros((5, 4))), Tensor(np.zeros(4)))


def test_dropout_scales_kept_elements_and_is_identity_in_eval():
    nanograd.manual_seed(0)
    x = Tensor(np.ones((200, 50)))
    out = F.dropout(x, 0.25, training=True).data
    assert set(np.unique(out)) == {0.0, 1.0 / 0.75}
    assert abs((out == 0).mean() - 0.25) < 0.02  # 10,000 draws: standard error 0.004
    assert F.dropout(x, 0.25, training=False) is x


def test_dropout_is_reproducible_from_the_rng_state():
    nanograd.manual_seed(3)
    state = nanograd.get_rng_state()
    first = F.dropout(Tensor(np.ones(100)), 0.5, True).data
    nanograd.set_rng_state(state)
    assert np.array_equal(F.dropout(Tensor(np.ones(100)), 0.5, True).data, first)
