"""The LSTM language model (gpt/lstm.py) through the GPT's trainer: bit-exact resume with every AWD-LSTM
regulariser on, tied weights, stateful generation equal to full forwards, and sampling from its checkpoint."""
import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nanograd
from gpt import families
from gpt.storage.checkpoint import load_checkpoint
from gpt.generate import generate_stream, next_logits
from gpt.lstm import LSTMConfig, LSTMLM
from gpt.train import TrainConfig, Trainer
from test_gpt_train import text_file  # noqa: F401  (the fixture: a small corpus of Shakespearean words)

REPO = Path(__file__).resolve().parent.parent
AWD = dict(embed_drop=0.1, input_drop=0.2, hidden_drop=0.2, output_drop=0.3, weight_drop=0.3)


def _config(tmp_path, text_file, **overrides):
    base = TrainConfig(
        out_dir=str(tmp_path / "out"), data=str(text_file), cache_dir=str(tmp_path / "cache"), model="lstm",
        n_embd=12, n_hidden=16, block_size=16, batch_size=4, max_iters=12, lr_decay_iters=12, warmup_iters=2,
        eval_interval=4, eval_iters=2, sample_tokens=0, progress=False, **AWD)
    return dataclasses.replace(base, **overrides)


def test_lstm_resume_is_bit_exact_with_every_regulariser(tmp_path, text_file):
    straight = _config(tmp_path / "a", text_file)
    result = Trainer(straight).train()
    assert np.isfinite(result.val_loss)
    first_half = _config(tmp_path / "b", text_file, max_iters=6)
    Trainer(first_half).train()
    Trainer(dataclasses.replace(first_half, max_iters=12, resume=True)).train()
    a, b = load_checkpoint(Path(straight.out_dir) / "ckpt"), load_checkpoint(Path(first_half.out_dir) / "ckpt")
    assert a.step == b.step == 12 and a.config["model"] == "lstm" and a.config["n_layer"] == 2
    assert {"encoder.weight", "rnns.1.weight_hh_l0", "decoder.weight"} <= set(a.model)
    for name in a.model:
        np.testing.assert_array_equal(a.model[name], b.model[name], err_msg=name)


def test_tied_weights_share_the_embedding_through_a_projection():
    model = LSTMLM(LSTMConfig(vocab_size=11, n_embd=6, n_hidden=9, n_layer=1, tie_weights=True))
    assert model.decoder.weight is model.encoder.weight and model.proj.weight.shape == (6, 9)
    names = [name for name, _ in model.named_parameters()]
    assert "decoder.weight" not in names and "decoder.bias" in names  # counted once, under the embedding's name
    logits, loss = model(np.zeros((2, 5), np.int64), np.ones((2, 5), np.int64))
    loss.backward()
    assert logits.shape == (2, 5, 11) and model.encoder.weight.grad is not None
    same = LSTMLM(LSTMConfig(vocab_size=11, n_embd=9, n_hidden=9, n_layer=1, tie_weights=True))
    assert not hasattr(same, "proj")


def test_stateful_generation_equals_full_forwards():
    """Each new token costs one step from the carried (h, c); the logits equal a full forward over all tokens,
    also past block_size, where an LSTM (unlike the GPT) keeps its whole history."""
    model = LSTMLM(LSTMConfig(vocab_size=13, block_size=4, n_embd=8, n_hidden=10, n_layer=2, **AWD), seed=3).eval()
    ids = np.random.default_rng(0).integers(0, 13, (2, 9))
    cache = model.new_cache(2)
    steps = [next_logits(model, ids[:, :3], cache)] + [next_logits(model, ids[:, t:t + 1], cache) for t in range(3, 9)]
    with nanograd.no_grad():
        full = model(ids)[0].data
    np.testing.assert_allclose(np.stack(steps, axis=1), full[:, 2:], rtol=1e-5, atol=1e-6)
    assert cache.length == 9 and not cache.full
    out = model.generate(ids[:, :3], 20, temperature=0.8, top_k=5, seed=0)
    assert out.shape == (2, 23) and (out[:, :3] == ids[:, :3]).all()
    assert len(list(generate_stream(model, ids[:, :3], 5, seed=0))) == 5


def test_model_factory_and_errors():
    config = families.new_config("lstm", dict(vocab_size=7, n_layer=1, n_head=4, n_hidden=5))
    assert config == LSTMConfig(vocab_size=7, n_layer=1, n_hidden=5)
    model = families.build(families.config_from_dict(families.config_to_dict(config)))
    assert isinstance(model, LSTMLM) and model.config == config
    assert "model" not in families.config_to_dict(families.new_config("gpt", dict(vocab_size=7)))  # GPT format unchanged
    with pytest.raises(ValueError, match="unknown model 'rnn'"):
        families.new_config("rnn", {})
    with pytest.raises(ValueError, match="weight_drop"):
        LSTMConfig(weight_drop=1.5)
    with pytest.raises(ValueError, match="outside the vocabulary"):
        LSTMLM(LSTMConfig(vocab_size=7))(np.full((1, 3), 7))


def test_train_shakespeare_lstm_and_sample_cli(tmp_path):
    """`--model lstm` through the front door, then the sampling command line on its checkpoint."""
    out = tmp_path / "out"
    args = ["--model", "lstm", "--max-iters", "3", "--n-embd", "8", "--n-hidden", "12", "--batch-size", "4",
            "--eval-interval", "3", "--eval-iters", "1", "--sample-tokens", "20", "--out-dir", str(out),
            "--no-progress", "--threads", "1", "--cache-dir", str(tmp_path / "cache")]
    run = subprocess.run([sys.executable, str(REPO / "examples" / "train_shakespeare.py"), *args],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    assert "step 3: train loss" in run.stdout and len((out / "sample.txt").read_text(encoding="utf-8")) == 20
    sample = subprocess.run([sys.executable, "-m", "gpt.sample", "--ckpt", str(out / "ckpt"), "--prompt", "ROMEO:",
                             "--max-new-tokens", "15", "--seed", "0"], capture_output=True, text=True, cwd=REPO,
                            timeout=300)
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.startswith("ROMEO:") and len(sample.stdout) == len("ROMEO:") + 15 + 1
