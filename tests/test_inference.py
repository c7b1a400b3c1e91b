"""gpt/inference.py, generation's forward on plain arrays, against the training forward (Tensors, autograd)."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import nanograd.kernels as K
from gpt import GPT, GPTConfig, inference
from gpt.sampling import sample_next_token
from nanograd import no_grad


def _full_logits(model, idx):
    """The training forward's logits of the last position of idx, cropped to the window as nanoGPT does."""
    with no_grad():
        return model(idx[:, -model.config.block_size :])[0].data[:, -1]


@st.composite
def cases(draw):
    """A small random GPT (with or without biases), a prompt, and a continuation long enough to slide the
    window past block_size."""
    n_head = draw(st.integers(1, 3))
    config = GPTConfig(block_size=draw(st.integers(2, 8)), vocab_size=draw(st.integers(2, 12)),
                       n_layer=draw(st.integers(1, 2)), n_head=n_head, n_embd=n_head * draw(st.integers(1, 4)),
                       bias=draw(st.booleans()))
    batch = draw(st.integers(1, 3))
    prompt_length = draw(st.integers(1, config.block_size))
    n_new = draw(st.integers(1, 2 * config.block_size + 1))
    seed = draw(st.integers(0, 2**16))
    ids = np.random.default_rng(seed).integers(0, config.vocab_size, (batch, prompt_length + n_new))
    return config, seed, ids, prompt_length


# float64: both paths run the same float64 kernels, in other summation orders only, so ~1e-16 relative on
# logits of size ~1; 1e-12 leaves room for that and would catch any wrong term. float32: attention over a
# cache and BLAS on rows instead of batches also sum in other orders; the logits here are below ~3, and 2e-5
# is ~100 float32 ulps of that.
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@settings(max_examples=20)
@given(case=cases())
def test_each_decoded_position_has_the_training_forwards_logits(dtype, tol, case):
    config, seed, ids, prompt_length = case
    model = GPT(config, seed=seed).to(dtype)
    # Random LayerNorm gains and biases, so a path that skipped one would show (init sets them to 1 and 0).
    rng = np.random.default_rng(seed)
    for param in model.parameters():
        if param.ndim == 1:
            param.data[...] = rng.normal(1.0, 0.5, param.shape)
    cache = model.new_kv_cache(ids.shape[0])
    logits = model.decode(ids[:, :prompt_length][:, -config.block_size :], cache)
    for end in range(prompt_length, ids.shape[1] + 1):
        assert logits.dtype == dtype and logits.shape == (ids.shape[0], config.vocab_size)
        np.testing.assert_allclose(logits, _full_logits(model, ids[:, :end]), atol=tol, rtol=0)
        if end < ids.shape[1]:
            logits = model.decode_next(ids[:, : end + 1], cache)


@settings(max_examples=15)
@given(case=cases())
def test_greedy_generation_is_the_argmax_of_the_full_forward_rerun_each_step(case):
    config, seed, ids, prompt_length = case
    model = GPT(config, seed=seed).to(np.float64)  # float64: no near-ties flipped by float32 rounding
    n_new = ids.shape[1] - prompt_length
    generated = model.generate(ids[:, :prompt_length], n_new, temperature=0.0)
    expected = ids[:, :prompt_length]
    for _ in range(n_new):
        expected = np.concatenate([expected, _full_logits(model, expected).argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(generated, expected)


def test_sampling_is_seeded_and_matches_the_full_forward_for_a_batch():
    model = GPT(GPTConfig(block_size=6, vocab_size=9, n_layer=2, n_head=2, n_embd=8), seed=1).to(np.float64)
    prompt = np.array([[1, 2], [3, 4], [5, 6]])
    options = dict(temperature=1.3, top_k=5, top_p=0.9)
    a = model.generate(prompt, 15, seed=7, **options)
    np.testing.assert_array_equal(a, model.generate(prompt, 15, seed=7, **options))
    assert not np.array_equal(a, model.generate(prompt, 15, seed=8, **options))
    rng, expected = np.random.default_rng(7), prompt
    for _ in range(15):
        token = sample_next_token(_full_logits(model, expected), rng, **options)
        expected = np.concatenate([expected, token[:, None]], axis=1)
    np.testing.assert_array_equal(a, expected)


def test_parameters_are_read_by_reference():
    model = GPT(GPTConfig(block_size=4, vocab_size=7, n_layer=1, n_head=1, n_embd=4), seed=0)
    prompt = np.array([[1, 2, 3]])
    before = model.decode(prompt, model.new_kv_cache(1))
    model.transformer.h[0].mlp.c_fc.weight.data *= 3.0  # in place, as an optimizer step updates it
    after = model.decode(prompt, model.new_kv_cache(1))
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, _full_logits(model, prompt), atol=2e-5, rtol=0)
    model.to(np.float64)  # replaces every parameter's array
    assert model.decode(prompt, model.new_kv_cache(1)).dtype == np.float64


def test_a_one_position_step_runs_the_numpy_kernels_and_restores_the_backend(monkeypatch):
    model = GPT(GPTConfig(block_size=4, vocab_size=7, n_layer=1, n_head=1, n_embd=4), seed=0)
    cache = model.new_kv_cache(1)
    seen = []
    layer_norm = inference._layer_norm

    def recording_layer_norm(x, norm):
        seen.append((x.shape[:-1], K.BACKEND))
        return layer_norm(x, norm)

    monkeypatch.setattr(inference, "_layer_norm", recording_layer_norm)
    backend = K.BACKEND
    model.decode(np.array([[1, 2]]), cache)  # two positions: the configured kernels
    model.decode(np.array([[3]]), cache)
    # The only block is the last: ln_1 on both positions, ln_2 and ln_f on the last one only.
    assert seen == [((1, 2), backend), ((1, 1), backend), ((1,), backend),
                    ((1, 1), "numpy"), ((1, 1), "numpy"), ((1,), "numpy")]
    assert K.BACKEND == backend
    monkeypatch.setattr(inference, "_layer_norm", lambda x, norm: 1 / 0)
    with pytest.raises(ZeroDivisionError):
        model.decode(np.array([[4]]), cache)
    assert K.BACKEND == backend


def test_decode_rejects_bad_ids_and_a_full_window():
    model = GPT(GPTConfig(block_size=4, vocab_size=7, n_layer=1, n_head=1, n_embd=4), seed=0)
    cache = model.new_kv_cache(1)
    with pytest.raises(ValueError, match=r"idx\[\(0, 1\)\] = 7 is outside the vocabulary"):
        model.decode(np.array([[1, 7]]), cache)
    model.decode(np.array([[1, 2, 3]]), cache)
    with pytest.raises(ValueError, match="length 5 is longer than block_size 4"):
        model.decode(np.array([[1, 2]]), cache)


def test_numpy_kernels_give_the_same_logits():
    model = GPT(GPTConfig(block_size=6, vocab_size=9, n_layer=2, n_head=2, n_embd=8), seed=3).to(np.float64)
    prompt = np.array([[1, 2, 3, 4]])
    with K.use_backend("numpy"):
        reference = model.decode(prompt, model.new_kv_cache(1))
    np.testing.assert_allclose(model.decode(prompt, model.new_kv_cache(1)), reference, atol=1e-12, rtol=0)
