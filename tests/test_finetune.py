"""GPTClassifier (gpt.finetune) and the fine-tuning example."""
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import nanograd
from gpt.finetune import GPTClassifier
from gpt.model import GPT, GPTConfig

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "finetune_classifier.py"


def tiny_classifier(dtype=np.float32, n_layer=2):
    trunk = GPT(GPTConfig(block_size=8, vocab_size=11, n_layer=n_layer, n_head=2, n_embd=8), seed=0)
    return GPTClassifier(trunk.to(dtype), n_classes=3, seed=1)


def test_head_gradients_pass_gradcheck_in_float64():
    clf = tiny_classifier(np.float64)
    rng = np.random.default_rng(0)
    idx, labels = rng.integers(0, 11, (4, 6)), np.array([0, 2, 1, 2])
    head = [clf.head.weight, clf.head.bias]
    assert nanograd.gradcheck(lambda *_: clf(idx, labels)[1], head)
    assert nanograd.gradcheck(lambda *_: clf(idx)[0], head, seed=1)
    # The trunk's gradients reach through the last position's hidden state too (random directions:
    # checking each of its ~1,600 elements would take two forward passes per element).
    assert nanograd.gradcheck(lambda *_: clf(idx, labels)[1], clf.parameters(), projections=4)


def test_logits_come_from_the_last_position_only():
    clf = tiny_classifier()
    idx = np.array([[1, 2, 3, 4, 5]])
    changed = idx.copy()
    changed[0, 0] = 7  # an earlier token changes the last hidden state through attention...
    assert not np.allclose(clf(idx)[0].data, clf(changed)[0].data)
    shapes = clf(np.zeros((3, 5), np.int64))[0].shape
    assert shapes == (3, 3)


def test_frozen_parameters_stay_bit_identical_after_a_step():
    clf = tiny_classifier()
    groups = clf.layer_groups()
    clf.set_trainable(2)  # the head, and the last block with ln_f
    optimizer = clf.configure_optimizer(lr=1e-2)
    frozen = [p for params in groups[2:] for p in params]
    trained = [p for params in groups[:2] for p in params]
    before = {id(p): p.data.copy() for p in clf.parameters()}
    idx, labels = np.random.default_rng(0).integers(0, 11, (4, 6)), np.array([0, 1, 2, 0])
    optimizer.zero_grad()
    clf(idx, labels)[1].backward()
    optimizer.step()
    assert all(p.grad is None for p in frozen)  # no graph was built through them
    assert all(np.array_equal(p.data, before[id(p)]) for p in frozen)
    assert all(not np.array_equal(p.data, before[id(p)]) for p in trained)


def test_layer_groups_cover_every_parameter_once_and_rates_fall_down_the_stack():
    clf = tiny_classifier(n_layer=3)
    groups = clf.layer_groups()
    assert len(groups) == 1 + 3 + 1  # head; ln_f + top block; two blocks; embeddings
    flat = [id(p) for params in groups for p in params]
    assert sorted(flat) == sorted(id(p) for p in clf.parameters())
    rates = [g["lr"] for g in clf.configure_optimizer(lr=1e-3, lr_decay=2.0).param_groups]
    assert rates == pytest.approx([1e-3 / 2.0**k for k in range(5)])
    with pytest.raises(ValueError, match=r"n_groups must be in \[1, 5\]"):
        clf.set_trainable(6)


def test_bad_labels_are_named():
    clf = tiny_classifier()
    with pytest.raises(ValueError, match=r"class ids in \[0, 3\)"):
        clf(np.zeros((2, 4), np.int64), np.array([0, 3]))
    with pytest.raises(ValueError, match=r"shape \(2,\)"):
        clf(np.zeros((2, 4), np.int64), np.array([0]))


def _load_example():
    spec = importlib.util.spec_from_file_location("finetune_classifier", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_split_is_by_play():
    example = _load_example()
    train, test = example.split_plays(2, np.random.default_rng(0))
    train_plays = {p for plays in train.values() for p in plays}
    test_plays = {p for plays in test.values() for p in plays}
    assert not train_plays & test_plays
    assert all(len(test[genre]) == 2 and train[genre] for genre in example.CLASSES)
    assert {p.parent.name for p in test["tragedy"] + train["tragedy"]} <= {"tragedies", "roman"}


def test_example_smoke_run(tmp_path):
    """The example end to end with a tiny model: pretraining, both classifiers, the plot; offline."""
    env = {**os.environ, "NANOGRAD_GPT_CACHE": str(tmp_path / "cache"), "HF_HUB_OFFLINE": "1"}
    run = subprocess.run([sys.executable, str(EXAMPLE), "--tiny", "--no-progress", "--out-dir", str(tmp_path)],
                         capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120)
    assert run.returncode == 0, run.stderr
    accuracies = [float(line.split("held-out accuracy ")[1].split()[0])
                  for line in run.stdout.splitlines() if "held-out accuracy" in line]
    assert len(accuracies) == 2 and all(0.0 <= a <= 1.0 for a in accuracies)
    assert run.stdout.count("true \\ predicted") == 2  # a confusion matrix per classifier
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "pretrain" / "ckpt" / "model.safetensors").is_file()
