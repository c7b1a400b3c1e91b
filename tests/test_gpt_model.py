"""The GPT model: names, initial loss, causality, gradients, fused and written-out attention, overfitting,
KV-cache generation, errors."""
import dataclasses
import math

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import gpt.generate
import nanograd
from nanograd import no_grad
from gpt import GPT, GPTConfig
from gpt.storage.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from gpt.generate import KVCache, generate_stream, next_logits, sample_next_token

TINY = GPTConfig(block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=8)


def _ids(shape, vocab, seed=0):
    return np.random.default_rng(seed).integers(0, vocab, shape)


def _logits(model, idx):
    with no_grad():
        return model(idx)[0].data


def test_parameter_names_follow_gpt2():
    names = [name for name, _ in GPT(dataclasses.replace(TINY, n_layer=1)).state_dict().items()]
    per_layer = [
        f"transformer.h.0.{n}"
        for n in ("ln_1.weight", "ln_1.bias", "attn.c_attn.weight", "attn.c_attn.bias", "attn.c_proj.weight",
                  "attn.c_proj.bias", "ln_2.weight", "ln_2.bias", "mlp.c_fc.weight", "mlp.c_fc.bias",
                  "mlp.c_proj.weight", "mlp.c_proj.bias")
    ]
    assert names == ["transformer.wte.weight", "transformer.wpe.weight", *per_layer,
                     "transformer.ln_f.weight", "transformer.ln_f.bias", "lm_head.weight"]


def test_lm_head_is_tied_and_linear_weights_are_out_by_in():
    model = GPT(TINY)
    assert model.lm_head.weight is model.transformer.wte.weight
    assert model.transformer.h[0].attn.c_attn.weight.shape == (3 * TINY.n_embd, TINY.n_embd)
    assert model.transformer.h[0].mlp.c_fc.weight.shape == (4 * TINY.n_embd, TINY.n_embd)
    assert "lm_head.weight" not in dict(model.named_parameters())  # counted once


def test_gpt2_initialisation_statistics():
    config = GPTConfig(block_size=64, vocab_size=65, n_layer=4, n_head=4, n_embd=128)
    params = dict(GPT(config).named_parameters())
    # Thousands of draws per tensor: the sample std is within a few percent of the target.
    assert params["transformer.h.0.mlp.c_fc.weight"].data.std() == pytest.approx(0.02, rel=0.05)
    assert params["transformer.h.0.mlp.c_proj.weight"].data.std() == pytest.approx(0.02 / math.sqrt(8), rel=0.05)
    assert np.all(params["transformer.h.0.ln_1.weight"].data == 1.0)
    assert np.all(params["transformer.h.0.attn.c_attn.bias"].data == 0.0)


def test_loss_at_init_is_near_ln_vocab():
    config = GPTConfig(block_size=32, vocab_size=65, n_layer=2, n_head=4, n_embd=64)
    model = GPT(config)
    _, loss = model(_ids((4, 32), 65, 1), _ids((4, 32), 65, 2))
    # Initial logits have std ~0.02 * sqrt(n_embd) = 0.16, which adds ~var/2 = 0.013 to ln(65) = 4.17.
    assert abs(loss.item() - math.log(65)) < 0.1


@settings(max_examples=15)
@given(data=st.data())
def test_causality_later_tokens_never_change_earlier_logits(data):
    model = GPT(TINY)
    T = data.draw(st.integers(2, TINY.block_size), label="T")
    j = data.draw(st.integers(1, T - 1), label="changed position")
    idx = np.array([data.draw(st.lists(st.integers(0, 10), min_size=T, max_size=T), label="tokens")])
    changed = idx.copy()
    changed[0, j] = (idx[0, j] + data.draw(st.integers(1, 10), label="shift")) % 11
    before, after = _logits(model, idx), _logits(model, changed)
    # Positions < j never see position j, so their logits are computed from identical numbers.
    np.testing.assert_array_equal(before[:, :j], after[:, :j])
    assert not np.allclose(before[:, j], after[:, j])  # the change is visible where it may be


def test_whole_model_gradcheck_float64():
    config = dataclasses.replace(TINY, dropout=0.0)
    model = GPT(config).to(np.float64)
    idx, targets = _ids((2, 8), 11, 3), _ids((2, 8), 11, 4)
    params = model.parameters()
    # Random-projection checks cover every parameter at once; float64 central differences are exact to
    # ~1e-9 relative, far inside the default tolerances.
    assert nanograd.gradcheck(lambda *_: model(idx, targets)[1], params, projections=4)
    assert nanograd.gradcheck(lambda *_: model(idx)[0], params, projections=4, seed=1)


def test_tiny_model_overfits_one_batch():
    config = GPTConfig(block_size=16, vocab_size=20, n_layer=1, n_head=2, n_embd=32)
    model = GPT(config)
    opt = model.configure_optimizers(weight_decay=0.0, learning_rate=1e-2, betas=(0.9, 0.99))
    idx, targets = _ids((4, 16), 20, 5), _ids((4, 16), 20, 6)  # random targets: only memory can fit them
    for _ in range(100):
        opt.zero_grad()
        _, loss = model(idx, targets)
        loss.backward()
        opt.step()
    assert loss.item() < 0.05  # from ln(20) = 3.0: memorised


def test_configure_optimizers_decays_only_matrices():
    model = GPT(TINY)
    opt = model.configure_optimizers(weight_decay=0.1, learning_rate=1e-3, betas=(0.9, 0.99))
    decay, no_decay = opt.param_groups
    assert decay["weight_decay"] == 0.1 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim == 2 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])
    assert len(decay["params"]) + len(no_decay["params"]) == len(model.parameters())


def test_save_load_gives_identical_logits(tmp_path):
    model = GPT(TINY, seed=7)
    save_checkpoint(tmp_path / "ckpt", Checkpoint(model=model.state_dict(),
                                                  config=dataclasses.asdict(TINY)))
    ckpt = load_checkpoint(tmp_path / "ckpt")
    loaded = GPT(GPTConfig(**ckpt.config), seed=8)
    loaded.load_state_dict(ckpt.model)
    assert loaded.lm_head.weight is loaded.transformer.wte.weight  # loading keeps the tie
    idx = _ids((2, 8), 11)
    np.testing.assert_array_equal(_logits(model, idx), _logits(loaded, idx))


def _generate_by_recomputing(model, idx, n, seed, **sampling):
    """nanoGPT's generation: crop to the last block_size tokens and run the full forward every step."""
    rng = np.random.default_rng(seed)
    all_logits = []
    for _ in range(n):
        logits = _logits(model, idx[:, -model.config.block_size:])[:, -1]
        all_logits.append(logits)
        idx = np.concatenate([idx, sample_next_token(logits, rng, **sampling)[:, None]], axis=1)
    return idx, all_logits


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kv_cache_generation_equals_full_recompute(dtype):
    model = GPT(TINY).to(dtype)
    prompt = _ids((2, 3), 11, 9)
    n = 2 * TINY.block_size  # well past block_size, so the sliding window and cache rebuild are exercised
    sampling = dict(temperature=1.0, top_k=8, top_p=0.95)
    expected, expected_logits = _generate_by_recomputing(model, prompt, n, seed=3, **sampling)
    np.testing.assert_array_equal(model.generate(prompt, n, seed=3, **sampling), expected)
    # Same logits step by step: feed the cached forward the recomputed tokens, one position while the window
    # has room, the last block_size tokens again once it is full (as generate_stream does).
    cache_logits = []
    cache = KVCache(TINY, batch_size=2, dtype=dtype)
    logits = next_logits(model, prompt, cache)
    for step in range(n):
        cache_logits.append(logits)
        context = expected[:, : prompt.shape[1] + step + 1]
        if cache.length < TINY.block_size:
            logits = next_logits(model, context[:, -1:], cache)
        else:
            cache.clear()
            logits = next_logits(model, context[:, -TINY.block_size :], cache)
    # float32: attention over a cache sums in a different order than the full pass; 1e-5 is ~100 ulps of
    # logits of size ~1. float64: rounding only, ~1e-15.
    tol = 1e-5 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(np.array(cache_logits), np.array(expected_logits), atol=tol, rtol=0)


def test_generation_is_seeded_and_greedy_at_zero_temperature():
    model = GPT(TINY)
    prompt = _ids((1, 4), 11)
    a = model.generate(prompt, 12, temperature=1.0, seed=5)
    assert a.shape == (1, 16) and np.array_equal(a[:, :4], prompt)
    np.testing.assert_array_equal(a, model.generate(prompt, 12, temperature=1.0, seed=5))
    greedy, _ = _generate_by_recomputing(model, prompt, 12, seed=0, temperature=0.0)
    np.testing.assert_array_equal(model.generate(prompt, 12, temperature=0.0, seed=123), greedy)


def test_generate_stream_yields_one_token_per_step():
    model = GPT(TINY)
    stream = generate_stream(model, _ids((3, 2), 11), 5, seed=0)
    tokens = list(stream)
    assert len(tokens) == 5 and all(t.shape == (3,) for t in tokens)


def test_clear_errors_for_bad_ids_and_lengths():
    model = GPT(TINY)
    with pytest.raises(ValueError, match=r"idx\[\(0, 2\)\] = 11 is outside the vocabulary \[0, 11\)"):
        model(np.array([[1, 2, 11]]))
    with pytest.raises(ValueError, match="outside the vocabulary"):
        model(np.array([[-1, 2]]))
    with pytest.raises(ValueError, match="length 9 is longer than block_size 8"):
        model(_ids((1, 9), 11))
    with pytest.raises(ValueError, match="targets must be ids in"):
        model(_ids((1, 4), 11), np.array([[0, 1, 2, 99]]))
    with pytest.raises(ValueError, match="2-D integer array"):
        model(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="not divisible by n_head"):
        GPTConfig(n_embd=10, n_head=3)


def test_cached_generation_feeds_one_position_per_token(monkeypatch):
    model = GPT(TINY)
    lengths = []

    def recording_next_logits(model, idx, cache):
        lengths.append((idx.shape[1], cache.length))
        return next_logits(model, idx, cache)

    monkeypatch.setattr(gpt.generate, "next_logits", recording_next_logits)
    model.generate(_ids((1, 3), 11), 10, seed=0)
    # Prefill the 3-token prompt, one position per token until the 8-position window is full (5 tokens),
    # then the window slides and each step re-reads the last block_size tokens into a cleared cache.
    assert lengths == [(3, 0), (1, 3), (1, 4), (1, 5), (1, 6), (1, 7), (8, 0), (8, 0), (8, 0), (8, 0)]


def _unfused(model):
    for block in model.transformer.h:
        block.attn.fused = False
    return model


def _logits_and_gradients(model, idx, targets):
    model.zero_grad()
    logits, loss = model(idx, targets)
    loss.backward()
    return logits.data, {name: p.grad.copy() for name, p in model.named_parameters()}


@st.composite
def attention_cases(draw):
    """A random GPT config, ids and targets."""
    n_head = draw(st.integers(1, 4))
    config = GPTConfig(block_size=draw(st.integers(1, 16)), vocab_size=draw(st.integers(2, 20)),
                       n_layer=draw(st.integers(1, 2)), n_head=n_head, n_embd=n_head * draw(st.integers(1, 8)),
                       bias=draw(st.booleans()))
    B, T = draw(st.integers(1, 4)), draw(st.integers(1, config.block_size))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    return config, seed, rng.integers(0, config.vocab_size, (B, T)), rng.integers(0, config.vocab_size, (B, T))


def _check_fused_equals_written_out(config, seed, idx, targets):
    model = GPT(config, seed=seed).to(np.float64)
    rng = np.random.default_rng(seed)
    for param in model.parameters():  # larger weights than at init, so attention is far from uniform
        param.data[...] = rng.normal(0.0, 0.5, param.shape)
    fused_logits, fused_grads = _logits_and_gradients(model, idx, targets)
    written_logits, written_grads = _logits_and_gradients(_unfused(model), idx, targets)
    # float64, the same math in another order (the fused op's softmax is exp(s - logsumexp), the written-out
    # one exp(s - max) / sum; the fused backward recomputes P, the written-out one goes through
    # softmax_backward): rounding only. Measured on 200 such configs: <= 6e-15 on logits of size <= ~10,
    # <= 2e-15 on gradients of size <= ~1.5. 1e-12 leaves 150x room and is far below any real difference
    # (a wrong scale, mask or missing term moves them by > 1e-3).
    np.testing.assert_allclose(written_logits, fused_logits, rtol=0, atol=1e-12)
    for name, grad in fused_grads.items():
        np.testing.assert_allclose(written_grads[name], grad, rtol=0, atol=1e-12, err_msg=name)


@settings(max_examples=30)
@given(case=attention_cases())
def test_fused_and_written_out_attention_give_the_same_logits_and_gradients(case):
    _check_fused_equals_written_out(*case)


def test_fused_and_written_out_attention_agree_where_the_numba_kernels_run():
    """Large enough that the fused op and the written-out softmax run their numba kernels (B*T*C >= 2048)."""
    config = GPTConfig(block_size=32, vocab_size=20, n_layer=2, n_head=4, n_embd=32)
    assert 4 * 32 * config.n_embd >= nanograd.kernels.MIN_KERNEL_SIZE
    _check_fused_equals_written_out(config, 5, _ids((4, 32), 20, 1), _ids((4, 32), 20, 2))


@pytest.mark.parametrize("cached", [False, True])
def test_written_out_attention_weights_are_causal_softmax_rows(cached):
    model = _unfused(GPT(TINY, seed=4))
    idx = _ids((3, 7), 11, 5)
    T, S = (2, 7) if cached else (7, 7)  # with a cache, the last 2 positions attend to all 7
    with no_grad():
        if cached:
            cache = KVCache(TINY, batch_size=3)
            model(idx[:, :5], cache=cache)
            model(idx[:, 5:], cache=cache)
        else:
            model(idx)
    for block in model.transformer.h:
        att = block.attn.att
        assert att.shape == (3, TINY.n_head, T, S) and att.dtype == np.float32
        np.testing.assert_allclose(att.sum(axis=-1), 1.0, rtol=1e-6)
        assert np.all(att >= 0)
        # Query i (position S - T + i) sees keys 0 .. S - T + i: exactly zero above that diagonal.
        above = np.triu(np.ones((T, S), dtype=bool), k=S - T + 1)
        assert np.all(att[..., above] == 0) and np.all(att[..., ~above] > 0)
