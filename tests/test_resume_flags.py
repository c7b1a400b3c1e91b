"""--resume says what it does with flags that differ from the checkpoint's run, and impossible training
settings are refused naming the flag."""
import dataclasses
import re
import shutil

import pytest

from gpt import train
from gpt.storage.checkpoint import load_checkpoint
from gpt.train.resume import ResumeConflict
from gpt.train import TrainConfig, Trainer
from test_gpt_train import text_file  # noqa: F401  (the fixture: a small corpus of Shakespearean words)


@pytest.fixture
def run(tmp_path, text_file):
    """A finished 4-step run; returns the command-line flags that made it."""
    flags = ["--out-dir", str(tmp_path / "out"), "--data", str(text_file), "--cache-dir", str(tmp_path / "cache"),
             "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16", "--batch-size", "4",
             "--max-iters", "4", "--eval-interval", "2", "--eval-iters", "1", "--sample-tokens", "0", "--no-progress"]
    train.main(flags)
    return flags


def _main_error(argv):
    with pytest.raises(SystemExit) as exit:
        train.main(argv)
    return str(exit.value.code)


def test_resume_without_flags_takes_every_setting_from_the_checkpoint(tmp_path, run, capsys):
    capsys.readouterr()
    result = train.main(["--out-dir", str(tmp_path / "out"), "--resume", "--max-iters", "6", "--no-progress"])
    assert result.step == 6  # the 1-layer, 16-wide model of the checkpoint, on its data, though no flag says so
    err = capsys.readouterr().err
    assert f"resuming from step 4 of {tmp_path / 'out' / 'ckpt'}; changed from the checkpoint's run: " \
           "--max-iters 4 -> 6" in err


def test_resume_refuses_architecture_tokenizer_and_seed_flags_naming_each(tmp_path, run):
    message = _main_error([*run, "--resume", "--n-layer", "2", "--tokenizer", "bpe", "--seed", "1"])
    assert message.startswith(f"error: cannot resume {tmp_path / 'out' / 'ckpt'} with ")
    for part in ("--n-layer 2 (the checkpoint has 1)", "--tokenizer bpe (the checkpoint has char)",
                 "--seed 1 (the checkpoint has 1337)"):
        assert part in message
    # A flag given with the default value still counts as given: --n-layer 4 is not the checkpoint's 1.
    assert "--n-layer 4 (the checkpoint has 1)" in _main_error([*run, "--resume", "--n-layer", "4"])
    assert load_checkpoint(tmp_path / "out" / "ckpt").step == 4  # untouched


def test_resume_refuses_other_data_but_follows_a_moved_file(tmp_path, run, capsys):
    other = tmp_path / "other.txt"
    other.write_text("a different text " * 500, encoding="utf-8")
    message = _main_error([*run, "--resume", "--data", str(other)])
    assert f"with --data {other}: its text differs" in message
    moved = tmp_path / "moved.txt"
    shutil.copyfile(tmp_path / "corpus.txt", moved)
    capsys.readouterr()
    train.main([*run, "--resume", "--data", str(moved), "--max-iters", "5"])
    assert f"--data {tmp_path / 'corpus.txt'} -> {moved}" in capsys.readouterr().err


def test_resume_applies_and_reports_training_settings(tmp_path, run, capsys):
    capsys.readouterr()
    argv = [*run, "--resume", "--max-iters", "6", "--beta2", "0.95", "--weight-decay", "0.0", "--dropout", "0.2"]
    train.main(argv)
    err = capsys.readouterr().err
    for change in ("--max-iters 4 -> 6", "--beta2 0.99 -> 0.95", "--weight-decay 0.1 -> 0.0", "--dropout 0.0 -> 0.2"):
        assert change in err
    ckpt = load_checkpoint(tmp_path / "out" / "ckpt")
    assert ckpt.step == 6 and ckpt.config["dropout"] == 0.2
    groups = ckpt.optimizer["param_groups"]
    # Applied, not overwritten by the saved ones, in every group (Muon's for the matrices, AdamW's for the rest).
    assert len(groups) >= 2 and {g["betas"] for g in groups} == {(0.9, 0.95)}
    assert {g["weight_decay"] for g in groups} == {0.0}


def test_resume_from_code_counts_settings_that_differ_from_the_defaults_as_given(tmp_path, run):
    config = TrainConfig(out_dir=str(tmp_path / "out"), resume=True, n_embd=32, progress=False)
    with pytest.raises(ResumeConflict, match="--n-embd 32 \\(the checkpoint has 16\\)"):
        Trainer(config)
    trainer = Trainer(dataclasses.replace(config, n_embd=TrainConfig.n_embd))  # the default: from the checkpoint
    assert trainer.model.config.n_embd == 16 and trainer.config.n_layer == 1


@pytest.mark.parametrize("flag, value, message", [
    ("--learning-rate", "-1e-3", "learning_rate must be >= 0, got -0.001"),
    ("--learning-rate", "nan", "learning_rate must be >= 0, got nan"),
    ("--min-lr", "-1", "min_lr must be >= 0"),
    ("--weight-decay", "-0.1", "weight_decay must be >= 0"),
    ("--beta1", "1.0", r"beta1 must be in \[0, 1\), got 1.0"),
    ("--beta2", "-0.5", r"beta2 must be in \[0, 1\), got -0.5"),
    ("--grad-clip", "-1", "grad_clip must be >= 0"),
    ("--dropout", "1.5", r"dropout must be in \[0, 1\)"),
])
def test_impossible_training_settings_are_refused_naming_the_setting(tmp_path, flag, value, message):
    error = _main_error(["--out-dir", str(tmp_path / "out"), f"{flag}={value}"])
    assert error.startswith("error: ") and re.search(message, error), error
    assert not (tmp_path / "out").exists()  # refused before anything is written
