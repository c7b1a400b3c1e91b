"""Choosing the next token: greedy, temperature, top-k, top-p, reproducibility, and text streaming."""
import numpy as np
import pytest

from gpt import GPT, GPTConfig
from gpt.generate import generate_stream, sample_next_token, stream_text
from tokenizer import CharTokenizer

PROBS = np.array([0.5, 0.3, 0.15, 0.05])


def _draws(n, seed=0, **options):
    logits = np.tile(np.log(PROBS), (n, 1))
    return sample_next_token(logits, np.random.default_rng(seed), **options)


def test_frequencies_follow_the_softmax():
    counts = np.bincount(_draws(20_000), minlength=4) / 20_000
    # Binomial std at n = 20000 is at most 0.0036; 0.015 is four of them.
    np.testing.assert_allclose(counts, PROBS, atol=0.015)


def test_temperature_zero_is_argmax_and_low_temperature_sharpens():
    logits = np.array([[0.0, 3.0, 1.0], [5.0, 0.0, 4.9]])
    np.testing.assert_array_equal(sample_next_token(logits, np.random.default_rng(0), temperature=0), [1, 0])
    assert np.all(_draws(2000, temperature=0.05) == 0)
    assert np.bincount(_draws(4000, temperature=3.0), minlength=4)[3] > 0.05 * 4000  # flattened: rare token often


def test_top_k_keeps_only_the_k_most_likely():
    assert set(_draws(4000, top_k=2).tolist()) == {0, 1}
    np.testing.assert_array_equal(_draws(50, top_k=1), 0)


def test_top_p_keeps_the_smallest_set_reaching_p():
    assert set(_draws(4000, top_p=0.75).tolist()) == {0, 1}  # 0.5 < 0.75 <= 0.5 + 0.3
    assert set(_draws(4000, top_p=0.9).tolist()) == {0, 1, 2}
    np.testing.assert_array_equal(_draws(50, top_p=0.01), 0)  # the top token always stays


def test_same_seed_same_tokens():
    np.testing.assert_array_equal(_draws(100, seed=4, top_k=3), _draws(100, seed=4, top_k=3))
    assert not np.array_equal(_draws(100, seed=4), _draws(100, seed=5))


@pytest.mark.parametrize("options", [dict(temperature=-1), dict(top_k=0), dict(top_p=0.0), dict(top_p=1.5)])
def test_bad_options_are_rejected(options):
    with pytest.raises(ValueError):
        sample_next_token(np.zeros((1, 4)), np.random.default_rng(0), **options)


def test_stream_text_decodes_each_generated_token():
    tok = CharTokenizer().train("abcdefgh\n")
    model = GPT(GPTConfig(block_size=8, vocab_size=tok.vocab_size, n_layer=1, n_head=2, n_embd=8))
    pieces = list(stream_text(model, tok, "abc", 20, temperature=1.0, seed=0))
    assert len(pieces) == 20 and all(len(p) == 1 for p in pieces)
    expected = model.generate(np.array([tok.encode("abc")]), 20, temperature=1.0, seed=0)[0, 3:]
    assert "".join(pieces) == tok.decode(expected.tolist())


def test_generation_runs_without_dropout_and_leaves_the_mode_alone():
    model = GPT(GPTConfig(block_size=8, vocab_size=5, n_layer=1, n_head=1, n_embd=8, dropout=0.5))
    prompt = np.zeros((1, 1), np.int64)
    in_training_mode = model.generate(prompt, max_new_tokens=12, seed=0)
    assert model.training and all(m.training for _, m in model.named_modules())
    # Dropout at p = 0.5 in training mode would change these logits (and so the tokens) if it ran.
    np.testing.assert_array_equal(model.eval().generate(prompt, max_new_tokens=12, seed=0), in_training_mode)
    assert not any(m.training for _, m in model.named_modules())


def test_a_stream_stopped_early_or_failing_restores_the_mode():
    model = GPT(GPTConfig(block_size=8, vocab_size=5, n_layer=1, n_head=1, n_embd=8, dropout=0.5))
    stream = generate_stream(model, np.zeros((1, 1), np.int64), 10, seed=0)
    next(stream)
    assert not model.training  # dropout is off while the stream runs
    stream.close()  # the consumer stops early (as a reader of stream_text may)
    assert model.training and all(m.training for _, m in model.named_modules())
    stream = generate_stream(model, np.zeros((1, 1), np.int64), 10, top_k=0)
    with pytest.raises(ValueError, match="top_k"):
        next(stream)
    assert model.training
