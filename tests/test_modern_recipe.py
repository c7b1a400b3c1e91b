"""The GPT's modern recipe (gpt/model.py): its parts, gradients, optimizer groups, checkpoints, the sliding KV
cache, and the GPT-2 recipe left as it was."""
import dataclasses

import numpy as np
import pytest

import nanograd
from gpt import GPT, GPTConfig, load_checkpoint
from gpt.finetune.instruction_data import grow_token_embeddings
from gpt.generate import next_logits
import gpt.model as gpt_model
from gpt.model import RECIPES
from gpt.storage.checkpoint import Checkpoint, save_checkpoint
from gpt.train.loop import optimizer_step
from nanograd import no_grad

MODERN = GPTConfig(recipe="modern", block_size=8, vocab_size=11, n_layer=2, n_head=2, n_embd=8)


def _ids(shape, seed=0):
    return np.random.default_rng(seed).integers(0, 11, shape)


def test_each_recipe_fills_its_parts_and_a_given_part_wins():
    assert {k: getattr(GPTConfig(), k) for k in RECIPES["gpt2"]} == RECIPES["gpt2"]
    assert {k: getattr(MODERN, k) for k in RECIPES["modern"]} == RECIPES["modern"]
    assert GPTConfig(positions="rotary").norm == "layer"  # GPT-2 with RoPE only
    with pytest.raises(ValueError, match="unknown recipe 'llama'"):
        GPTConfig(recipe="llama")
    with pytest.raises(ValueError, match="norm must be one of"):
        GPTConfig(norm="batch")
    with pytest.raises(ValueError, match="head size 3 must be even"):
        GPTConfig(recipe="modern", n_embd=6, n_head=2)


def test_modern_weights_have_no_positions_no_biases_and_an_untied_zero_head():
    model = GPT(MODERN)
    names = list(model.state_dict())
    assert "transformer.wpe.weight" not in names and not any(n.endswith(".bias") for n in names)
    assert "lm_head.weight" in names and model.lm_head.weight is not model.transformer.wte.weight
    for name, p in model.named_parameters():
        if name.endswith("c_proj.weight") or name == "lm_head.weight":
            assert not p.data.any(), name  # zero_init: every block starts as the identity
    assert model.num_parameters() == sum(p.data.size for p in model.parameters())


def test_whole_model_gradcheck_float64():
    model = GPT(MODERN).to(np.float64)
    for _, p in model.named_parameters():  # off zero, so every path carries a gradient
        p.data += 0.1 * np.random.default_rng(p.data.size).standard_normal(p.shape)
    idx, targets = _ids((2, 8), 3), _ids((2, 8), 4)
    assert nanograd.gradcheck(lambda *_: model(idx, targets)[1], model.parameters(), projections=4)


def test_muon_takes_the_blocks_matrices_and_adamw_the_rest():
    model = GPT(MODERN)
    optimizer = model.configure_optimizers(0.1, 1e-3, (0.9, 0.99), muon_lr=0.05)
    muon, matrices, gains = optimizer.param_groups
    assert muon["use_muon"] and {id(p) for p in muon["params"]} == {
        id(p) for p in model.transformer.h.parameters() if p.ndim == 2}
    assert {id(p) for p in matrices["params"]} == {id(model.transformer.wte.weight), id(model.lm_head.weight)}
    assert matrices["weight_decay"] == 0.1 and gains["weight_decay"] == 0.0
    optimizer_step(model, optimizer, 5e-4, lambda: model(_ids((2, 8)), _ids((2, 8), 1))[1])
    assert muon["lr"] == pytest.approx(0.025) and matrices["lr"] == 5e-4  # Muon's rate follows the schedule


def test_a_tiny_modern_model_learns_one_batch():
    model = GPT(MODERN, seed=1)
    optimizer = model.configure_optimizers(0.0, 1e-2, (0.9, 0.99), muon_lr=0.05)
    idx, targets = _ids((4, 8), 5), _ids((4, 8), 6)
    losses = [optimizer_step(model, optimizer, 1e-2, lambda: model(idx, targets)[1])[0] for _ in range(60)]
    assert losses[-1] < 0.5 * losses[0], losses[::10]


def _perturbed(config, seed):
    model = GPT(config, seed=seed).to(np.float64)
    for _, p in model.named_parameters():  # off the zero init, so every block does something
        p.data += 0.3 * np.random.default_rng(p.data.size).standard_normal(p.shape)
    return model


def _sliding_cache_logits(model, tokens, prefill):
    """Logits (B, T - prefill + 1, V) of every next token after the first `prefill`, one position at a time."""
    cache = model.new_cache(len(tokens))
    logits = [next_logits(model, tokens[:, :prefill], cache)]
    logits += [next_logits(model, tokens[:, end:end + 1], cache) for end in range(prefill, tokens.shape[1])]
    assert cache.length == tokens.shape[1] and not cache.full
    return np.stack(logits, axis=1)


def test_one_layer_with_a_sliding_cache_gives_the_logits_of_a_full_forward_over_the_same_window():
    model = _perturbed(dataclasses.replace(MODERN, n_layer=1), seed=3)
    tokens = _ids((2, 30), 7)
    cached = _sliding_cache_logits(model, tokens, prefill=5)
    for end in range(5, 31):  # up to 22 positions past the 8-position window
        with no_grad():
            full = model(tokens[:, max(0, end - 8):end])[0].data[:, -1]  # positions 0..7; the cache's end-8..end-1
        # float64: only rounding differs (the angles of other absolute positions, keys summed in another order).
        np.testing.assert_allclose(cached[:, end - 5], full, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("fused", [True, False])
def test_a_sliding_cache_is_sliding_window_attention_at_every_layer(monkeypatch, fused):
    """With two or more layers, a cached key of layer 2 was computed when its position saw its own window, so
    what reaches the newest token comes from further back than the window: the cache equals attention with a
    band of block_size positions, over the whole sequence at once (as Mistral's sliding window), not a rerun
    of the last block_size tokens alone."""
    model = _perturbed(MODERN, seed=3)
    for block in model.transformer.h:
        block.attn.fused = fused
    tokens = _ids((2, 30), 7)
    cached = _sliding_cache_logits(model, tokens, prefill=5)
    whole = GPT.__new__(GPT)  # the same weights; rotary positions fix no length, so it may read all 30 at once
    whole.__dict__.update(model.__dict__, config=dataclasses.replace(MODERN, block_size=30))
    for block in whole.transformer.h:
        block.attn.fused = False

    def band(tq, tk):  # True where query i must not see key j: later keys, and keys 8 or more behind
        i, j = np.arange(tq)[:, None] + tk - tq, np.arange(tk)[None, :]
        return (j > i) | (j <= i - 8)

    monkeypatch.setattr(gpt_model.F, "causal_mask", band)
    with no_grad():
        full = whole(tokens)[0].data[:, 4:]  # (B, 26, V): the logits after 5, 6, ..., 30 tokens
    np.testing.assert_allclose(cached, full, rtol=1e-10, atol=1e-10)


def test_generation_runs_past_the_window_one_position_per_token(monkeypatch):
    model = GPT(MODERN, seed=2)
    lengths = []
    original = GPT.forward
    monkeypatch.setattr(GPT, "forward", lambda self, idx, *a, **k: (lengths.append(idx.shape[1]),
                                                                     original(self, idx, *a, **k))[1])
    out = model.generate(_ids((1, 3)), 20, temperature=0)
    assert out.shape == (1, 23) and lengths == [3] + [1] * 19


def test_checkpoints_keep_the_recipe(tmp_path):
    model = GPT(dataclasses.replace(MODERN, mlp="gelu"), seed=4)
    for _, p in model.named_parameters():
        p.data += 0.1
    save_checkpoint(tmp_path / "ckpt", Checkpoint(model=model.state_dict(), config=dataclasses.asdict(model.config)))
    loaded = load_checkpoint(tmp_path / "ckpt").build_model()
    assert loaded.config == model.config and loaded.config.mlp == "gelu"
    with no_grad():
        np.testing.assert_array_equal(loaded(_ids((1, 8)))[0].data, model(_ids((1, 8)))[0].data)


def test_an_old_checkpoints_config_is_the_gpt2_recipe():
    old = {"block_size": 8, "vocab_size": 11, "n_layer": 1, "n_head": 2, "n_embd": 8, "dropout": 0.0, "bias": True}
    config = GPTConfig(**old)
    assert config.recipe == "gpt2" and config.positions == "learned" and config.tie_weights


def test_an_untied_head_grows_with_the_vocabulary():
    model = GPT(MODERN)
    model.lm_head.weight.data[...] = np.arange(11)[:, None]
    grow_token_embeddings(model, 13)
    assert model.lm_head.weight.shape == (13, 8) and model.transformer.wte.weight.shape == (13, 8)
    assert model.lm_head.weight is not model.transformer.wte.weight
    np.testing.assert_array_equal(model.lm_head.weight.data[11:], 5.0)  # the mean row
    assert model(_ids((1, 4)))[0].shape == (1, 4, 13)


@pytest.mark.parametrize("recipe", ["gpt2", "modern"])
def test_a_classifier_on_either_trunk_groups_every_weight_it_trains_once(recipe):
    from gpt.finetune.classifier import GPTClassifier

    trunk = GPT(dataclasses.replace(MODERN, recipe=recipe, positions=None, norm=None, mlp=None, qk_norm=None,
                                    tie_weights=None, zero_init=None, optimizer=None, bias=None))
    classifier = GPTClassifier(trunk, n_classes=3)
    grouped = [id(p) for group in classifier.layer_groups() for p in group]
    unused = {id(trunk.lm_head.weight)} - {id(trunk.transformer.wte.weight)}  # an untied head reads no passage
    assert len(grouped) == len(set(grouped))
    assert set(grouped) == {id(p) for p in classifier.parameters()} - unused
