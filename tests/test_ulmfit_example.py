"""examples/ulmfit_vs_gpt.py end to end on tiny settings, and its GPT classifiers against finetune_classifier.py's."""
import importlib.util
from pathlib import Path

import numpy as np
import pytest

from gpt.experiments.transfer import PlayTokens, make_folds

REPO = Path(__file__).resolve().parent.parent


def _load(name):
    spec = importlib.util.spec_from_file_location(name, REPO / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _load("ulmfit_vs_gpt")


@pytest.fixture
def tiny_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("NANOGRAD_GPT_CACHE", str(tmp_path / "cache"))
    return tmp_path


def test_smoke_run_reports_four_methods_and_their_differences(tiny_cache, capsys):
    summary = example.main(["--tiny", "--no-progress", "--threads", "1", "--out-dir", str(tiny_cache)])
    methods = summary["methods"]
    assert list(methods) == list(example.METHODS)
    for r in methods.values():
        assert len(r["per_fold"]) == 2 and r["low"] <= r["accuracy"] <= r["high"]
    lstm_gain = summary["gains"]["LSTM: fine-tuned - from scratch"]["gain"]
    assert lstm_gain == pytest.approx(methods["LSTM fine-tuned"]["accuracy"] - methods["LSTM from scratch"]["accuracy"])
    assert (tiny_cache / "ulmfit_vs_gpt.png").stat().st_size > 0 and (tiny_cache / "summary.json").is_file()
    out = capsys.readouterr().out
    assert "| LSTM fine-tuned - GPT fine-tuned |" in out
    # Both models were pretrained (and cached) on the same text with the same tokenizer.
    assert out.count("characters of unlabelled plays") == 2
    example.pretrain_both(example.parse_args(["--tiny", "--no-progress"]), seed=0)  # a second time: from the cache
    assert capsys.readouterr().out.count("(cached)") == 2


def test_the_gpt_classifiers_are_finetune_classifiers_own(tiny_cache):
    """The same pretrained GPT, passages, batches and seeds: fold 1's test predictions are identical."""
    finetune_classifier = _load("finetune_classifier")
    theirs = finetune_classifier.main(["--tiny", "--no-progress", "--threads", "1", "--out-dir", str(tiny_cache)])
    args = example.parse_args(["--tiny", "--no-progress", "--threads", "1"])
    gpt, lstm, tok = example.pretrain_both(args, seed=0)
    fold = make_folds(args.folds, np.random.default_rng(0))[0]
    ours, test = example.run_fold(0, fold, {"GPT": gpt, "LSTM": lstm}, PlayTokens(tok), args, seed=0)
    their_predictions, their_test, _ = theirs[0]
    np.testing.assert_array_equal(test.ids, their_test.ids)
    np.testing.assert_array_equal(ours["GPT fine-tuned"], their_predictions["fine-tuned"])
    np.testing.assert_array_equal(ours["GPT from scratch"], their_predictions["from scratch"])


def test_bad_settings_are_named(capsys):
    for argv, message in ((["--passage-tokens", "200"], "--passage-tokens must be in [1, --block-size 128]"),
                          (["--train-passages", "5"], "--train-passages must be at least 6"),
                          (["--steps", "0"], "--steps must be at least 1")):
        with pytest.raises(SystemExit):
            example.parse_args(argv)
        assert message in capsys.readouterr().err
