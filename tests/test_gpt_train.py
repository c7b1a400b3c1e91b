"""The trainer: bit-exact resume, gradient accumulation, divergence and Ctrl-C handling, its outputs, and a
smoke run of examples/train_shakespeare.py and the sampling command line."""
import dataclasses
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpt import train

from gpt.train import distributed, launch
from gpt.train import trainer as trainer_module
from gpt.train.log import TrainingLog
from gpt.storage.checkpoint import load_checkpoint
from gpt.train import TrainConfig, Trainer, TrainingDiverged

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture
def text_file(tmp_path):
    rng = np.random.default_rng(0)
    words = ["thou", "art", "the", "king", "of", "night", "and", "day", "ROMEO:", "JULIET:", "\n"]
    path = tmp_path / "corpus.txt"
    path.write_text(" ".join(rng.choice(words, 3000)), encoding="utf-8")
    return path


def _config(tmp_path, text_file, **overrides):
    base = TrainConfig(
        out_dir=str(tmp_path / "out"), data=str(text_file), cache_dir=str(tmp_path / "cache"),
        n_layer=1, n_head=2, n_embd=16, block_size=16, dropout=0.1, batch_size=4, max_iters=20,
        lr_decay_iters=20, warmup_iters=4, eval_interval=5, eval_iters=2, sample_tokens=0, progress=False,
    )
    return dataclasses.replace(base, **overrides)


def _model_arrays(out_dir):
    ckpt = load_checkpoint(Path(out_dir) / "ckpt")
    return ckpt.step, ckpt.model, ckpt.optimizer


@pytest.mark.parametrize("recipe", ["gpt2", "modern"])
def test_resume_is_bit_exact(tmp_path, text_file, recipe):
    straight = _config(tmp_path / "a", text_file, recipe=recipe)
    Trainer(straight).train()
    first_half = _config(tmp_path / "b", text_file, max_iters=10, recipe=recipe)
    Trainer(first_half).train()
    Trainer(dataclasses.replace(first_half, max_iters=20, resume=True)).train()

    step_a, model_a, opt_a = _model_arrays(straight.out_dir)
    step_b, model_b, opt_b = _model_arrays(first_half.out_dir)
    assert step_a == step_b == 20
    for name in model_a:
        np.testing.assert_array_equal(model_a[name], model_b[name], err_msg=name)
    assert opt_a["state"].keys() == opt_b["state"].keys()
    for index, state in opt_a["state"].items():
        for key, value in state.items():  # AdamW's moments; Muon's momentum buffers
            np.testing.assert_array_equal(value, opt_b["state"][index][key], err_msg=f"{index} {key}")
    log_a = TrainingLog.read(Path(straight.out_dir) / "log.csv")
    log_b = TrainingLog.read(Path(first_half.out_dir) / "log.csv")
    assert [(r["kind"], r["step"], r["loss"]) for r in log_a] == [(r["kind"], r["step"], r["loss"]) for r in log_b]


def test_gradient_accumulation_equals_one_big_batch(tmp_path, text_file, monkeypatch):
    rng = np.random.default_rng(1)
    x, y = rng.integers(0, 10, (4, 16)), rng.integers(0, 10, (4, 16))

    def gradients(out, batch_size, grad_accum):
        trainer = Trainer(_config(tmp_path / out, text_file, batch_size=batch_size, grad_accum=grad_accum,
                                  dropout=0.0, grad_clip=0.0))
        halves = iter([(x[:2], y[:2]), (x[2:], y[2:])] if grad_accum == 2 else [(x, y)])
        with monkeypatch.context() as patch:
            patch.setattr(trainer_module.data, "get_batch", lambda *args: next(halves))
            trainer.train_step()  # gradients stay on the parameters until the next step zeroes them
        return {name: p.grad for name, p in trainer.model.named_parameters()}

    one, accumulated = gradients("one", 4, 1), gradients("two", 2, 2)
    for name in one:
        # Equal up to float32 rounding of the two summation orders. Compared as gradients, not as weights:
        # AdamW's update hardly changes if the gradient is doubled, so weights would hide a missing division.
        np.testing.assert_allclose(accumulated[name], one[name], rtol=1e-4, atol=1e-7, err_msg=name)


def test_outputs_log_plot_sample_checkpoint(tmp_path, text_file):
    config = _config(tmp_path, text_file, max_iters=10, sample_tokens=40)
    result = Trainer(config).train()
    out = Path(config.out_dir)
    rows = TrainingLog.read(out / "log.csv")
    assert [int(r["step"]) for r in rows if r["kind"] == "step"] == list(range(1, 11))
    assert [int(r["step"]) for r in rows if r["kind"] == "eval"] == [0, 5, 10]
    assert all(float(r["tokens_per_s"]) > 0 for r in rows if r["kind"] == "step")
    assert (out / "loss.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(result.sample) == 40 and (out / "sample.txt").read_text(encoding="utf-8") == result.sample
    assert result.val_loss < np.log(result_vocab := len(set(text_file.read_text(encoding="utf-8"))))
    assert load_checkpoint(out / "ckpt").config["vocab_size"] == result_vocab


@pytest.mark.filterwarnings("ignore:invalid value encountered:RuntimeWarning")  # inf * 0, on purpose
@pytest.mark.parametrize("blow_up", [
    lambda model: model.transformer.ln_f.weight.data.fill(np.inf),  # infinite logits
    lambda model: model.transformer.h[0].attn.c_attn.weight.data.fill(np.nan),  # NaN through attention
], ids=["inf-logits", "nan-attention"])
def test_nan_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, text_file, blow_up):
    trainer = Trainer(_config(tmp_path, text_file, max_iters=10))
    trainer.train()
    blow_up(trainer.model)
    trainer.config.max_iters = 20
    with pytest.raises(TrainingDiverged, match="loss is nan at step 10.*last good checkpoint"):
        trainer.train()
    ckpt = load_checkpoint(Path(trainer.config.out_dir) / "ckpt")
    assert ckpt.step == 10 and all(np.isfinite(w).all() for w in ckpt.model.values())


def test_a_non_finite_gradient_stops_before_the_weights_change(tmp_path, text_file, monkeypatch):
    """A finite loss with a NaN gradient (planted after backward): the step is refused before AdamW runs, so
    the weights in memory stay those of the last good step."""
    trainer = Trainer(_config(tmp_path, text_file, max_iters=2))
    trainer.train()
    before = {name: w.copy() for name, w in trainer.model.state_dict().items()}
    average = trainer._average_over_ranks

    def nan_gradient(loss):
        trainer.model.transformer.wte.weight.grad[0, 0] = np.nan
        return average(loss)

    monkeypatch.setattr(trainer, "_average_over_ranks", nan_gradient)
    trainer.config.max_iters = 3
    with pytest.raises(TrainingDiverged, match="gradient norm is nan at step 2"):
        trainer.train()
    assert all(np.array_equal(w, before[name]) for name, w in trainer.model.state_dict().items())


def test_ctrl_c_saves_a_checkpoint_and_returns(tmp_path, text_file, monkeypatch):
    before = signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)  # SIG_IGN under `pytest &`
    trainer = Trainer(_config(tmp_path, text_file, eval_interval=100))
    step = trainer.train_step

    def step_then_ctrl_c():
        result = step()
        if trainer.step == 3:
            os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(trainer, "train_step", step_then_ctrl_c)
    result = trainer.train()
    assert result.interrupted == signal.SIGINT and result.step == 3
    assert load_checkpoint(Path(trainer.config.out_dir) / "ckpt").step == 3
    assert (signal.getsignal(signal.SIGINT), signal.getsignal(signal.SIGTERM)) == before  # handlers restored


def test_sigterm_after_the_last_step_ends_the_sample_not_the_process(tmp_path, text_file, monkeypatch):
    """A SIGTERM while the loss plot is drawn (matplotlib importing, say) or the sample is written is still taken
    between steps' worth of work: the final checkpoint stands, the sample stops early and is not saved, and the
    run says it was stopped. (Raised inside matplotlib's import, it once became an ImportError and a traceback.)"""
    trainer = Trainer(_config(tmp_path, text_file, eval_interval=100, sample_tokens=50))
    plot = trainer_module.plot_losses

    def plot_then_sigterm(*args):
        plot(*args)
        os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(trainer_module, "plot_losses", plot_then_sigterm)
    result = trainer.train()
    assert result.interrupted == signal.SIGTERM and result.step == trainer.config.max_iters
    assert load_checkpoint(Path(trainer.config.out_dir) / "ckpt").step == trainer.config.max_iters
    assert result.sample == "" and not (Path(trainer.config.out_dir) / "sample.txt").exists()


def test_example_smoke_run_and_sample_cli(tmp_path):
    """The front door end to end, offline: default corpus, tiny model, a few steps; then sample from it."""
    env = dict(os.environ, NANOGRAD_GPT_CACHE=str(tmp_path / "cache"))
    out = tmp_path / "out"
    # No --batch-size: the recipe's default decides it, and whether the batch splits over two ranks.
    args = ["--max-iters", "4", "--n-layer", "1", "--n-head", "2", "--n-embd", "16",
            "--eval-interval", "2", "--eval-iters", "1", "--sample-tokens", "30", "--out-dir", str(out),
            "--threads", "1"]
    run = subprocess.run([sys.executable, str(REPO / "examples" / "train_shakespeare.py"), *args],
                         capture_output=True, text=True, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    # No terminal: progress as plain lines (tests/test_progress.py), with no bar's carriage returns.
    assert "step 4/4 (100%)" in run.stderr and "\r" not in run.stdout + run.stderr
    assert "step 4: train loss" in run.stdout and (out / "ckpt" / "model.safetensors").is_file()
    assert (out / "loss.png").is_file() and len((out / "sample.txt").read_text(encoding="utf-8")) == 30
    # Without --ranks the front door trains as two processes where MPI and two cores are there.
    assert ("2 MPI ranks" in run.stdout) == (launch.auto_ranks(TrainConfig().batch_size) == 2)
    sample = subprocess.run([sys.executable, "-m", "gpt.sample", "--ckpt", str(out / "ckpt"), "--prompt", "ROMEO:",
                             "--max-new-tokens", "25", "--seed", "0"],
                            capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert sample.returncode == 0, sample.stderr
    assert sample.stdout.startswith("ROMEO:") and len(sample.stdout) == len("ROMEO:") + 25 + 1
    missing = subprocess.run([sys.executable, "-m", "gpt.sample", "--ckpt", str(tmp_path / "none")],
                             capture_output=True, text=True, env=env, cwd=REPO, timeout=300)
    assert missing.returncode != 0 and "no checkpoint at" in missing.stderr
