"""The speaker task (gpt/experiments/speaker_task.py) and its runs in examples/finetune_classifier.py --task speaker: the
split by scene is honest, the passages are what they claim, the pool is balanced and nested, and a tiny
curve writes its table."""
import csv
import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np
import pytest

from gpt.experiments import label_curve

from gpt.experiments import speaker_task
from gpt.experiments.play_instructions import count_lines, load_scenes
from gpt.experiments.speaker_task import SpeakerTask, class_counts, labelled_pool, scene_id, verse
from tokenizer import CharTokenizer

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "finetune_classifier.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("finetune_classifier", EXAMPLE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


example = _load_example()


@lru_cache(maxsize=None)
def _task():
    return SpeakerTask()


@lru_cache(maxsize=None)
def _char_tokenizer():
    """A character tokenizer of the whole corpus, so decoding a passage gives back its exact text."""
    return CharTokenizer().train("".join(verse(scene.speeches) for scene in load_scenes()))


def test_no_scene_is_both_seen_and_tested_and_every_character_is_tested():
    task = _task()
    seen = {scene_id(s) for s in task.seen_scenes}
    tested = {scene_id(s) for s in task.test_scenes}
    assert not seen & tested and len(seen) + len(tested) == len(load_scenes())
    assert len(task.characters) == len(task.classes) == speaker_task.N_CHARACTERS
    for play, character in task.characters:  # each class is tested in at least two scenes
        scenes = [s for s in task.test_scenes if s.play == play and any(sp == character for sp, _ in s.speeches)]
        assert len(scenes) >= speaker_task.MIN_TEST_SCENES


def test_pretraining_reads_no_test_scene_and_no_speaker_name():
    task = _task()
    text = task.pretraining_text()
    counts = count_lines(load_scenes())

    def unique_lines(scenes):  # lines that occur once in all the plays: a line seen anywhere else is not evidence
        return [line for s in scenes for _, lines in s.speeches for line in lines
                if counts[line] == 1 and len(line.split()) >= 6]

    read = set(text.split("\n"))  # whole lines: a test line may quote part of another play's line
    tested, seen = unique_lines(task.test_scenes), unique_lines(task.seen_scenes)
    assert len(tested) > 1000 and not read & set(tested)
    assert set(seen) <= read  # the other scenes are all there
    assert not any(f"{character}:\n" in text for _, character in task.characters)


def test_passages_are_one_characters_words_in_one_scene():
    task, tok = _task(), _char_tokenizer()
    seen, test = task.passages(tok, 40)
    assert seen.ids.shape == (len(seen), 40) and test.ids.shape == (len(test), 40)
    assert set(test.groups) <= {scene_id(s) for s in task.test_scenes}
    assert not set(seen.groups) & set(test.groups)
    assert (class_counts(seen, 8) > 100).all() and (class_counts(test, 8) > 0).all()
    scenes = {scene_id(s): s for s in load_scenes()}
    for i in range(0, len(test), 97):
        play, character = task.characters[test.labels[i]]
        scene = scenes[test.groups[i]]
        own = verse([(sp, lines) for sp, lines in scene.speeches if sp == character])
        assert scene.play == play and tok.decode(test.ids[i].tolist()) in own


def test_the_labelled_pool_is_balanced_nested_and_distinct():
    task = _task()
    seen = task.chunks(task.seen_scenes, _char_tokenizer(), 40)
    pool = labelled_pool(seen, 8, 160, np.random.default_rng([0, 3]))
    for n in (16, 32, 160):
        assert class_counts(pool[:n], 8).tolist() == [n // 8] * 8
    assert len({row.tobytes() for row in pool.ids}) == 160  # no passage twice
    again = labelled_pool(seen, 8, 32, np.random.default_rng([0, 3]))
    assert np.array_equal(again.ids, pool[:32].ids)  # a smaller pool is the same first passages
    with pytest.raises(ValueError, match="needs .* per character"):
        labelled_pool(seen, 8, 8 * (class_counts(seen, 8).min() + 1), np.random.default_rng(0))


def test_the_speaker_pretraining_is_its_own_cached_model(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("NANOGRAD_GPT_CACHE", str(tmp_path))
    args = example.parse_args(["--tiny", "--task", "speaker", "--no-progress", "--pretrain-iters", "2"])
    speaker, genre = example.pretrain(args, _task()), example.pretrain(args)
    key = lambda ckpt: ckpt.parent.name.rsplit("-", 1)[1]  # noqa: E731  (the folder is <task>-pretrain-<key>)
    assert key(speaker) != key(genre)  # another text, another key
    written = (speaker.parent / "pretraining-text.txt").read_text(encoding="utf-8")
    assert written == _task().pretraining_text()[: args.pretrain_chars]
    assert example.pretrain(args, _task()) == speaker and "(cached)" in capsys.readouterr().out


def test_speaker_flags_are_checked_by_name():
    with pytest.raises(SystemExit):
        example.parse_args(["--task", "speaker", "--label-counts", "10,100"])  # 8 characters need 16 at the least
    with pytest.raises(SystemExit):
        example.parse_args(["--task", "speaker", "--more-pretraining", "5"])
    args = example.parse_args(["--task", "speaker"])
    assert args.label_counts == [16, 32, 100, 300, 1000] and args.out_dir == "out/finetune-speaker"


def test_tiny_speaker_curve_and_single_run(tmp_path, monkeypatch):
    """--task speaker --curve --tiny end to end: a row per method and label count, the CSV and the PNG; then a
    single-count run with its report."""
    monkeypatch.setenv("NANOGRAD_GPT_CACHE", str(tmp_path / "cache"))
    argv = ["--tiny", "--task", "speaker", "--no-progress", "--threads", "1", "--out-dir", str(tmp_path)]
    rows = example.run(example.parse_args(argv + ["--curve"]))
    assert [(r["method"], r["n"]) for r in rows] == [(m, n) for m in (label_curve.SCRATCH, "fine-tuned, 20 steps")
                                                     for n in (6, 12)]
    assert all(0 <= r["ci_low"] <= r["accuracy"] <= r["ci_high"] <= 1 for r in rows)
    with open(tmp_path / "label_curve.csv", newline="") as f:
        assert [(r["method"], int(r["n"])) for r in csv.DictReader(f)] == [(r["method"], r["n"]) for r in rows]
    assert (tmp_path / "label_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "cache" / "speaker-curve").is_dir()  # the speaker's classifiers, apart from genre's
    [(predictions, test, _)] = example.run(example.parse_args(argv))
    assert set(predictions) == set(example.METHODS) and len(test) == rows[0]["test_passages"]
    assert (tmp_path / "learning_curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
