"""A second transfer task, with plentiful labels: which of N major characters speaks a passage?

The genre task (gpt/experiments/transfer.py) has 29 labelled plays, so its test set holds few independent units however
many passages it draws. Here the labels are speakers, and the test unit is the scene.

Classes: the N characters with the most words over all the plays (of those who speak in two test scenes or
more), where a character is a name within one play (FALSTAFF of Henry IV Part 2 is not FALSTAFF of Part 1,
and GLOUCESTER names three different men). Across plays, not within one: in one play only the lead has text
for hundreds of passages, while the N biggest parts of the canon each do. The price is that characters of
different plays differ by their play's names and subject as well as by their voice, so the task is partly
"which play" (two characters of one play, such as Othello and Iago, differ by voice alone).

Passages: a character's words in one scene (their speeches in order, verse only, no speaker names), encoded
and cut into consecutive chunks of `passage_tokens` tokens, the remainder dropped. Chunks never overlap, so n
labelled passages are n different stretches of text.

Split by scene (gpt/play_tasks.split_scenes, 20% of each play's scenes for test): the test passages are every
chunk of the test scenes; the labelled pool is drawn from the other scenes, balanced over the characters and
nested (its first n passages for n labels). Pretraining reads those other scenes of every play, as unlabelled
text: the speeches without the speakers' names (with them, pretraining would read the label of every passage
it could be given), and never a test scene (the trainer keeps the last tenth of this text, which lies within
the val scenes of play_tasks' split, for its validation loss). Passages of one scene share a subject and the
people addressed, so intervals come from a bootstrap over test scenes.
"""
from collections import Counter

import numpy as np

from gpt.experiments.play_instructions import load_scenes, split_scenes
from gpt.experiments.transfer import Passages, encodable

N_CHARACTERS = 8
PASSAGE_TOKENS = 64  # short enough for a balanced pool of 1000 labels from 8 characters (125 chunks each)
MIN_TEST_SCENES = 2


def scene_id(scene):
    return f"{scene.play}#{scene.section}"


def verse(speeches):
    """Speeches as unlabelled text: each speech's lines, a blank line between speeches, no speaker names."""
    return "".join("\n".join(lines) + "\n\n" for _, lines in speeches)


def major_characters(scenes, test_scenes, n):
    """[(play, speaker)] of the n characters with the most characters of verse over `scenes`, most first, among
    those who speak in at least MIN_TEST_SCENES of `test_scenes` (a class tested on one scene would be tested
    on one conversation)."""
    if n < 2:
        raise ValueError(f"the speaker task needs at least 2 characters, got {n}")
    volume, tested = Counter(), Counter()
    for scene in scenes:
        for speaker, lines in scene.speeches:
            volume[scene.play, speaker] += len(verse([(speaker, lines)]))
    for scene in test_scenes:
        tested.update({(scene.play, speaker) for speaker, _ in scene.speeches})
    chosen = [character for character, _ in volume.most_common() if tested[character] >= MIN_TEST_SCENES][:n]
    if len(chosen) < n:
        raise ValueError(f"only {len(chosen)} characters speak in {MIN_TEST_SCENES} test scenes or more; asked for {n}")
    return chosen


class SpeakerTask:
    """The scenes split for test (by `split_seed`), the N characters, and their passages."""

    def __init__(self, n_characters=N_CHARACTERS, split_seed=0):
        scenes = load_scenes()
        splits = split_scenes(scenes, split_seed)
        self.test_scenes = splits["test"]
        self.seen_scenes = splits["train"] + splits["val"]  # what pretraining and the labelled pool may read
        self.characters = major_characters(scenes, self.test_scenes, n_characters)
        names = Counter(speaker for _, speaker in self.characters)  # a name shared by two plays gets its play
        self.classes = tuple(speaker if names[speaker] == 1 else f"{speaker} ({play})"
                             for play, speaker in self.characters)

    def pretraining_text(self):
        """Every scene but the test scenes, without speaker names."""
        return "".join(verse(scene.speeches) for scene in self.seen_scenes)

    def test_streams(self, tok):
        """Token ids of each test scene's unlabelled text (for the held-out language-model loss)."""
        return [np.asarray(tok.encode(encodable(verse(scene.speeches), tok)), dtype=np.int64)
                for scene in self.test_scenes]

    def chunks(self, scenes, tok, passage_tokens):
        """Passages: every character's words in each scene, cut into chunks of passage_tokens tokens; groups
        are the scenes ("play#section")."""
        ids, labels, groups = [], [], []
        for scene in scenes:
            for label, (play, character) in enumerate(self.characters):
                own = [(speaker, lines) for speaker, lines in scene.speeches if speaker == character]
                if scene.play != play or not own:
                    continue
                tokens = tok.encode(encodable(verse(own), tok))
                for start in range(0, len(tokens) - passage_tokens + 1, passage_tokens):
                    ids.append(tokens[start : start + passage_tokens])
                    labels.append(label)
                    groups.append(scene_id(scene))
        return Passages(np.asarray(ids, dtype=np.int64).reshape(-1, passage_tokens), np.asarray(labels, dtype=np.int64),
                        np.asarray(groups))

    def passages(self, tok, passage_tokens):
        """(seen, test) Passages: the chunks of the scenes pretraining reads (the labelled pool comes from
        these) and of the test scenes."""
        return self.chunks(self.seen_scenes, tok, passage_tokens), self.chunks(self.test_scenes, tok, passage_tokens)


def labelled_pool(seen, n_classes, size, rng):
    """`size` distinct passages of `seen`, the classes taking turns (each its own passages in a random
    order), so any first n of them are as balanced as n allows and a smaller pool is a prefix of a larger."""
    per_class = [rng.permutation(np.flatnonzero(seen.labels == c)) for c in range(n_classes)]
    fewest = min(len(indices) for indices in per_class)
    if size > n_classes * fewest:
        raise ValueError(f"a balanced pool of {size} labelled passages needs {-(-size // n_classes)} per character; "
                         f"the scarcest has {fewest} (use fewer labels, characters or tokens per passage)")
    order = [per_class[k % n_classes][k // n_classes] for k in range(size)]
    return seen[np.asarray(order, dtype=np.int64)]


def class_counts(passages, n_classes):
    """Passages per class, (n_classes,) ints."""
    return np.bincount(passages.labels, minlength=n_classes)
