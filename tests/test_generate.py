"""gpt/generate.py: the training forward run with a KV cache, one new position at a time, against the same
forward recomputed over the whole (cropped) context at every step."""
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import nanograd.kernels as K
from gpt import GPT, GPTConfig
from gpt.generate import KVCache, generate, generate_stream, next_logits, sample_next_token
from nanograd import no_grad


def _full_logits(model, idx):
    """The forward without a cache: logits of the last position of idx, cropped to the window as nanoGPT does."""
    with no_grad():
        return model(idx[:, -model.config.block_size :])[0].data[:, -1]


def _randomise_norms_and_biases(model, seed):
    """Random LayerNorm gains and biases, so a path that skipped one would show (init sets them to 1 and 0)."""
    rng = np.random.default_rng(seed)
    for param in model.parameters():
        if param.ndim == 1:
            param.data[...] = rng.normal(1.0, 0.5, param.shape)


def _unfuse(model):
    for block in model.transformer.h:
        block.attn.fused = False
    return model


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


# float64: the cached and full passes run the same float64 ops, in other summation orders only (attention
# over a cache, BLAS on one row instead of a batch), so ~1e-16 relative on logits of size ~1; 1e-12 leaves
# room for that and would catch any wrong term. float32: the same reorderings; the logits here are below ~3,
# and 2e-5 is ~100 float32 ulps of that.
@pytest.mark.parametrize("fused", [True, False], ids=["fused", "written_out"])
@pytest.mark.parametrize("dtype, tol", [(np.float64, 1e-12), (np.float32, 2e-5)])
@settings(max_examples=20)
@given(case=cases())
def test_each_cached_position_has_the_full_forwards_logits(dtype, tol, fused, case):
    """Prefill, one-position steps while the window has room, and the rebuilt window once the cache is full
    (what generate_stream does), each against the forward recomputed over the cropped context."""
    config, seed, ids, prompt_length = case
    model = GPT(config, seed=seed).to(dtype)
    _randomise_norms_and_biases(model, seed)
    if not fused:
        _unfuse(model)
    block_size, batch = config.block_size, ids.shape[0]
    cache = KVCache(config, batch, dtype)
    logits = next_logits(model, ids[:, :prompt_length][:, -block_size:], cache)
    for end in range(prompt_length, ids.shape[1] + 1):
        assert cache.length == min(end, block_size)
        assert logits.dtype == dtype and logits.shape == (batch, config.vocab_size)
        np.testing.assert_allclose(logits, _full_logits(model, ids[:, :end]), atol=tol, rtol=0)
        if end == ids.shape[1]:
            break
        if cache.length < block_size:
            logits = next_logits(model, ids[:, end : end + 1], cache)  # one position
        else:  # full: the window slides, every position embedding shifts, so the cache is rebuilt
            cache.clear()
            assert cache.length == 0
            logits = next_logits(model, ids[:, end + 1 - block_size : end + 1], cache)


@settings(max_examples=15)
@given(case=cases(), fused=st.booleans())
def test_greedy_generation_is_the_argmax_of_the_full_forward_rerun_each_step(case, fused):
    config, seed, ids, prompt_length = case
    model = GPT(config, seed=seed).to(np.float64)  # float64: no near-ties flipped by float32 rounding
    if not fused:
        _unfuse(model)
    n_new = ids.shape[1] - prompt_length
    generated = model.generate(ids[:, :prompt_length], n_new, temperature=0.0)
    expected = ids[:, :prompt_length]
    for _ in range(n_new):
        expected = np.concatenate([expected, _full_logits(model, expected).argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(generated, expected)
    assert generated.dtype == ids.dtype
    # GPT.generate is only a delegate to gpt.generate.generate.
    np.testing.assert_array_equal(generate(model, ids[:, :prompt_length], n_new, temperature=0.0), generated)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_sampling_is_seeded_and_matches_the_full_forward_for_a_batch(dtype):
    # float64 and float32 draw the same tokens here: the cached and full logits differ by rounding only, and
    # no uniform draw falls that close to a boundary of the cumulative probabilities.
    model = GPT(GPTConfig(block_size=6, vocab_size=9, n_layer=2, n_head=2, n_embd=8), seed=1).to(dtype)
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
    stream = list(generate_stream(model, prompt, 15, seed=7, **options))
    np.testing.assert_array_equal(np.stack(stream, axis=1), a[:, 2:])


def test_parameters_are_read_by_reference():
    config = GPTConfig(block_size=4, vocab_size=7, n_layer=1, n_head=1, n_embd=4)
    model = GPT(config, seed=0)
    prompt = np.array([[1, 2, 3]])
    before = next_logits(model, prompt, KVCache(config, 1))
    greedy_before = model.generate(prompt, 6, temperature=0)
    model.transformer.h[0].mlp.c_fc.weight.data *= 30.0  # in place, as an optimizer step updates it
    model.transformer.wte.weight.data[:] = model.transformer.wte.weight.data[::-1]  # and the tied head
    after = next_logits(model, prompt, KVCache(config, 1))
    assert not np.allclose(before, after)
    np.testing.assert_allclose(after, _full_logits(model, prompt), atol=2e-5, rtol=0)
    greedy_after = model.generate(prompt, 6, temperature=0)
    assert not np.array_equal(greedy_before, greedy_after)
    expected = prompt
    for _ in range(6):
        expected = np.concatenate([expected, _full_logits(model, expected).argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(greedy_after, expected)


def test_logits_and_the_cache_follow_the_models_dtype():
    config = GPTConfig(block_size=4, vocab_size=7, n_layer=1, n_head=1, n_embd=4)
    model = GPT(config, seed=0)
    prompt = np.array([[1, 2, 3]])
    assert next_logits(model, prompt, KVCache(config, 1, np.float32)).dtype == np.float32
    model.to(np.float64)  # replaces every parameter's array
    cache = KVCache(config, 1, np.float64)
    assert next_logits(model, prompt, cache).dtype == np.float64
    assert all(layer.k.dtype == layer.v.dtype == np.float64 for layer in cache.layers)
    # generate builds its cache in the model's dtype: its float64 greedy tokens are the full forward's.
    expected = prompt
    for _ in range(5):
        expected = np.concatenate([expected, _full_logits(model, expected).argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(model.generate(prompt, 5, temperature=0), expected)


def test_a_one_token_step_runs_the_numpy_references(monkeypatch):
    """A step of one token is too small for the numba kernels (waking their thread pool costs more than the
    work): every fused op runs its NumPy reference, and the logits are those of the numpy backend."""
    config = GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=32)
    batch = 4
    # The largest activation of one token's step is the MLP's hidden layer, (B, 1, 4 n_embd).
    assert K.MIN_KERNEL_SIZE > batch * max(4 * config.n_embd, config.vocab_size)
    model = GPT(config, seed=3).to(np.float64)
    prompt = np.random.default_rng(0).integers(0, config.vocab_size, (batch, 8))
    decisions = []
    worth_a_kernel = K._worth_a_kernel  # what fast_kernel asks, at every call, to choose kernel or reference

    def recording(args):
        decisions.append(worth_a_kernel(args))
        return decisions[-1]

    monkeypatch.setattr(K, "_worth_a_kernel", recording)
    with K.use_backend("numba"):  # the default, unless NANOGRAD_KERNELS says otherwise
        cache = KVCache(config, batch, np.float64)
        prefill = next_logits(model, prompt[:, :7], cache)
        assert any(decisions)  # the recorder sees the choice: the prefill's (4, 7, 128) GELU input takes the kernel
        decisions.clear()
        step = next_logits(model, prompt[:, 7:], cache)
        assert decisions and not any(decisions)
    with K.use_backend("numpy"):
        reference_cache = KVCache(config, batch, np.float64)
        reference_prefill = next_logits(model, prompt[:, :7], reference_cache)
        reference_step = next_logits(model, prompt[:, 7:], reference_cache)
    # float64: the kernels and the references differ in summation order only (~1e-16 relative).
    np.testing.assert_allclose(prefill, reference_prefill, atol=1e-12, rtol=0)
    np.testing.assert_allclose(step, reference_step, atol=1e-12, rtol=0)


def test_bad_ids_and_a_full_window_are_rejected_without_touching_the_cache():
    config = GPTConfig(block_size=4, vocab_size=7, n_layer=1, n_head=1, n_embd=4)
    model = GPT(config, seed=0)
    cache = KVCache(config, 1)
    with pytest.raises(ValueError, match=r"idx\[\(0, 1\)\] = 7 is outside the vocabulary"):
        next_logits(model, np.array([[1, 7]]), cache)
    assert cache.length == 0
    next_logits(model, np.array([[1, 2, 3]]), cache)
    with pytest.raises(ValueError, match="length 5 is longer than block_size 4"):
        next_logits(model, np.array([[1, 2]]), cache)
    assert cache.length == 3
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model.generate(np.array([[1, -1]]), 3)
    with pytest.raises(ValueError, match="2-D integer array"):
        model.generate(np.array([1, 2]), 3)
    with pytest.raises(ValueError, match="at least one token"):
        model.generate(np.zeros((1, 0), np.int64), 3)


def test_a_prompt_longer_than_the_window_is_cropped():
    config = GPTConfig(block_size=4, vocab_size=7, n_layer=1, n_head=1, n_embd=8)
    model = GPT(config, seed=2).to(np.float64)
    prompt = np.array([[1, 2, 3, 4, 5, 6, 0, 1, 2]])
    out = model.generate(prompt, 5, temperature=0)
    assert out.shape == (1, 14) and np.array_equal(out[:, :9], prompt)
    expected = prompt
    for _ in range(5):
        expected = np.concatenate([expected, _full_logits(model, expected).argmax(-1)[:, None]], axis=1)
    np.testing.assert_array_equal(out, expected)
