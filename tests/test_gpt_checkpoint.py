"""Checkpoint directories: exact round trips, atomic replacement, clear errors when missing or corrupt."""
import json

import numpy as np
import pytest

from gpt.storage.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint


def _example(step=7):
    rng = np.random.default_rng(step)
    weight = rng.standard_normal((5, 3)).astype(np.float32)
    return Checkpoint(
        model={"wte.weight": weight, "lm_head.weight": weight, "ln.bias": np.zeros(3, np.float32)},
        config={"n_layer": 2, "bias": True},
        step=step,
        optimizer={
            "state": {0: {"step": 3, "exp_avg": rng.standard_normal(4), "exp_avg_sq": rng.random(4)}},
            "param_groups": [{"lr": 1e-3, "betas": (0.9, 0.99), "eps": 1e-8, "params": [0]}],
        },
        rng={"numpy": np.random.default_rng(1).bit_generator.state, "nanograd": {"seed": 3}},
        extra={"best_val_loss": 1.25, "eval_x": np.arange(6, dtype=np.int64).reshape(2, 3)},
    )


def _assert_same(a, b):
    """Equal values of the same types, recursively (tuples stay tuples, int keys stay ints)."""
    assert type(a) is type(b)
    if isinstance(a, dict):
        assert a.keys() == b.keys()
        for k in a:
            _assert_same(a[k], b[k])
    elif isinstance(a, (list, tuple)):
        assert len(a) == len(b)
        for u, v in zip(a, b):
            _assert_same(u, v)
    elif isinstance(a, np.ndarray):
        assert a.dtype == b.dtype and a.shape == b.shape
        np.testing.assert_array_equal(a, b)
    else:
        assert a == b


def test_round_trip_is_exact(tmp_path):
    ckpt = _example()
    tok = tmp_path / "t.model"
    tok.write_text("tokenizer v1\n", encoding="utf-8")
    save_checkpoint(tmp_path / "ckpt", ckpt, tokenizer_file=tok)
    back = load_checkpoint(tmp_path / "ckpt")
    for name in ("model", "config", "step", "optimizer", "rng", "extra"):
        _assert_same(getattr(ckpt, name), getattr(back, name))
    assert back.tokenizer_path.read_text(encoding="utf-8") == "tokenizer v1\n"
    restored = np.random.default_rng()
    restored.bit_generator.state = back.rng["numpy"]
    assert restored.random() == np.random.default_rng(1).random()


def test_overwrite_replaces_and_leaves_no_temporaries(tmp_path):
    save_checkpoint(tmp_path / "ckpt", _example(step=1))
    save_checkpoint(tmp_path / "ckpt", _example(step=2))
    assert load_checkpoint(tmp_path / "ckpt").step == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_interrupted_swap_falls_back_to_previous(tmp_path):
    save_checkpoint(tmp_path / "ckpt", _example(step=4))
    (tmp_path / "ckpt").rename(tmp_path / "ckpt.old")  # a crash between the two renames of a save
    assert load_checkpoint(tmp_path / "ckpt").step == 4


def test_failed_save_keeps_the_previous_checkpoint(tmp_path):
    save_checkpoint(tmp_path / "ckpt", _example(step=5))
    bad = _example(step=6)
    bad.extra = {"unserialisable": object()}
    with pytest.raises(TypeError):
        save_checkpoint(tmp_path / "ckpt", bad)
    assert load_checkpoint(tmp_path / "ckpt").step == 5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]


def test_missing_checkpoint(tmp_path):
    with pytest.raises(CheckpointError, match="no checkpoint at .*nothing"):
        load_checkpoint(tmp_path / "nothing")


@pytest.mark.parametrize("name", ["model.safetensors", "state.safetensors", "state.json", "config.json"])
def test_corrupt_or_missing_file_is_named(tmp_path, name):
    save_checkpoint(tmp_path / "ckpt", _example())
    target = tmp_path / "ckpt" / name
    data = target.read_bytes()
    target.write_bytes(data[: len(data) // 2])  # truncated
    with pytest.raises(CheckpointError, match=f"corrupt.*{name}"):
        load_checkpoint(tmp_path / "ckpt")
    target.unlink()
    with pytest.raises(CheckpointError, match=f"missing: .*{name}"):
        load_checkpoint(tmp_path / "ckpt")


def test_corrupt_manifest_is_named(tmp_path):
    save_checkpoint(tmp_path / "ckpt", _example())
    (tmp_path / "ckpt" / "manifest.json").write_text("{not json", encoding="utf-8")
    with pytest.raises(CheckpointError, match="invalid JSON.*manifest.json"):
        load_checkpoint(tmp_path / "ckpt")
    (tmp_path / "ckpt" / "manifest.json").write_text(json.dumps({"format": "other"}), encoding="utf-8")
    with pytest.raises(CheckpointError, match="manifest.json: not a nanograd-gpt-checkpoint"):
        load_checkpoint(tmp_path / "ckpt")
