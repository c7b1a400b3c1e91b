"""The instruction fine-tuning example (examples/finetune_instructions.py): its pieces and a smoke run."""
import csv
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpt.finetune.instruction_data import InstructVocab
from gpt.experiments.play_instructions import FAMILIES, make_records
from tokenizer import CharTokenizer

REPO = Path(__file__).resolve().parent.parent
EXAMPLE = REPO / "examples" / "finetune_instructions.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("finetune_instructions", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _load_example()


def test_the_bootstrap_resamples_scenes_not_records():
    rng = np.random.default_rng(0)
    scenes = np.repeat(["a", "b"], 50)  # one scene all right, one all wrong: only two pieces of evidence
    assert example.bootstrap(scenes, np.repeat([1.0, 0.0], 50), rng) == (0.0, 1.0)
    many = np.repeat([f"s{i}" for i in range(30)], 2)
    assert example.bootstrap(many, np.tile([1.0, 0.0], 30), rng) == (0.5, 0.5)


def test_records_too_long_for_the_model_are_refused_by_name():
    records = make_records({"test": 2}, seed=0)["test"]
    tok = CharTokenizer().train("".join(r.instruction + r.input + r.output for r in records))
    vocab = InstructVocab.for_texts(tok, tok.vocab_size, [])
    with pytest.raises(ValueError, match="fit in the model's block_size 64"):
        example.encode_split(vocab, records, 64, "test")
    encoded, kept = example.encode_split(vocab, records, 1000, "test")
    assert len(encoded) == len(kept) == len(records)


def test_example_smoke_run(tmp_path):
    """End to end with a tiny char-level model: pretraining, three fine-tunes, four evaluations, the report."""
    env = {**os.environ, "NANOGRAD_GPT_CACHE": str(tmp_path / "cache"), "PYTHONPATH": str(REPO)}
    command = [sys.executable, str(EXAMPLE), "--tiny", "--out-dir", str(tmp_path)]
    run = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300)
    assert run.returncode == 0, run.stderr
    # No terminal: pretraining's and each arm's progress as plain lines (tests/test_progress.py), labelled by arm
    # (side by side, in processes of their own, their lines interleave).
    assert "step 20/20 (100%)" in run.stderr
    for arm in ("fine-tuned", "fine-tuned, unmasked", "from scratch"):
        assert run.stderr.count(f"\n{arm} 8/8 (100%)  loss ") == 1, arm
    assert "\r" not in run.stdout + run.stderr
    assert "'#'" in run.stdout.split("added tokens:")[1].splitlines()[0]  # the char vocabulary grew
    with open(tmp_path / "accuracy.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    methods = {r["method"] for r in rows}
    assert set(example.METHODS) <= methods and "fine-tuned - from scratch" in methods
    assert {r["row"] for r in rows} == set(FAMILIES) | {"reading (all)", "knowledge (all)", "all"}
    assert all(0 <= float(r["low"]) <= float(r["accuracy"]) <= float(r["high"]) <= 1 for r in rows
               if r["method"] in example.METHODS)
    assert (tmp_path / "accuracy.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "expected:" in run.stdout and "answered:" in run.stdout
    chat = subprocess.run([sys.executable, "-m", "gpt.chat", "--ckpt", str(tmp_path / "ckpt"), "--max-new-tokens",
                           "5"], input="Who speaks next?\n\n", capture_output=True, text=True, env=env, timeout=120)
    assert chat.returncode == 0 and chat.stdout.startswith("### Response:\n"), chat.stderr
