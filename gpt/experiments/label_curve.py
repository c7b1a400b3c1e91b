"""The label-count curve (ULMFiT's Fig. 3), for any task: held-out accuracy against the number of labelled
passages, a pretrained trunk fine-tuned against the same network trained from scratch, every classifier cached.

A task hands over, per seed, one (labelled pool, test passages) pair per fold (gpt/experiments/transfer.py for genre,
gpt/experiments/speaker_task.py for the speaker). At each label count n both methods train on the pool's first n
passages (nested: 10 labels are a subset of 100), a fifth kept aside for early stopping, on the same batches,
and are tested on the same passages. `curve_records` gives one record per classifier; summarise_curve
(gpt/experiments/transfer.py) turns them into rows with intervals and k; the rest here prints, saves and draws the rows.
"""
import csv
import hashlib
import io
import json
import time
from dataclasses import asdict, dataclass

import numpy as np

from gpt.train.corpus import cache_dir, text_digest
from gpt.storage.atomic import write_atomic
from gpt.finetune.classifier import GPTClassifier, fit
from gpt.model import GPT
from gpt.storage.figures import pyplot, save_png
from gpt.experiments.transfer import split_validation

CURVE_FORMAT_VERSION = 1  # bump when a change to fit() or the classifier changes what a cached result would be
SCRATCH = "from scratch"
FINE_TUNED = "fine-tuned"


@dataclass(frozen=True)
class FitSettings:
    """How every classifier of a run is trained (see `fit` in gpt/finetune/classifier.py): part of each cached
    result's key."""
    steps: int
    batch_size: int
    lr: float  # of the head; each lower layer group of a fine-tuned trunk learns lr_decay times more slowly
    lr_decay: float
    unfreeze_every: int  # steps between unfreezing the next layer group of a fine-tuned trunk
    scratch_lr: float  # of every parameter of a from-scratch classifier
    eval_every: int
    pool: str  # "mean" or "last": what the head reads

    @classmethod
    def from_args(cls, args):
        return cls(**{name: getattr(args, name) for name in cls.__dataclass_fields__})


def train_method(method, pretrained_trunk, train, val, settings, n_classes, init_seed, batches, on_eval=None):
    """Train one classifier of `method` on (train, val) Passages; returns (classifier, FitResult).
    on_eval(classifier, step), if given, runs at every evaluation.

    FINE_TUNED: a copy of the pretrained trunk, gradual unfreezing and discriminative rates (ULMFiT);
    SCRATCH: a trunk of the same shape initialised from `init_seed`, everything trained from step 1."""
    s = settings
    if method == FINE_TUNED:
        trunk = GPT(pretrained_trunk.config)
        trunk.load_state_dict(pretrained_trunk.state_dict())  # every classifier starts from the same weights
        lr, lr_decay, unfreeze_every = s.lr, s.lr_decay, s.unfreeze_every
    else:
        trunk = GPT(pretrained_trunk.config, seed=init_seed)
        lr, lr_decay, unfreeze_every = s.scratch_lr, 1.0, None
    clf = GPTClassifier(trunk, n_classes, seed=init_seed, pool=s.pool)
    result = fit(clf, clf.configure_optimizer(lr, lr_decay), (train.ids, train.labels), (val.ids, val.labels),
                 s.steps, s.batch_size, s.eval_every, batches, unfreeze_every,
                 None if on_eval is None else lambda step: on_eval(clf, step))
    return clf, result


def weights_digest(model):
    """A fingerprint of a model's weights: what a cached classifier result started from."""
    h = hashlib.sha256()
    for name, array in sorted(model.state_dict().items()):
        h.update(name.encode() + np.ascontiguousarray(array).tobytes())
    return h.hexdigest()[:16]


def passages_digest(*passage_sets):
    h = hashlib.sha256()
    for passages in passage_sets:
        h.update(passages.ids.astype(np.int64).tobytes() + passages.labels.astype(np.int64).tobytes())
    return h.hexdigest()[:16]


def curve_point(method, trunk, train, val, test, settings, n_classes, seed, fold, cache_name):
    """Predictions of one classifier (method: SCRATCH or a pretraining budget's name) on one fold's test
    passages, cached in cache_dir()/cache_name (one folder per task, whose labels fix the classes) under
    everything that decides them: the starting weights, the passages, the settings."""
    n = len(train) + len(val)
    init_seed = seed * 1000 + fold
    start = trunk if method != SCRATCH else GPT(trunk.config, seed=init_seed)
    key = text_digest(json.dumps({"version": CURVE_FORMAT_VERSION, "scratch": method == SCRATCH,
                                  "weights": weights_digest(start), "passages": passages_digest(train, val, test),
                                  "init_seed": init_seed, "fit": asdict(settings)}, sort_keys=True))
    path = cache_dir() / cache_name / f"{key}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    began = time.perf_counter()
    batches = np.random.default_rng([seed, fold, 1, n])  # the same batches for every method at this n
    clf, result = train_method(FINE_TUNED if method != SCRATCH else SCRATCH, trunk, train, val, settings, n_classes,
                               init_seed, batches)
    point = {"predicted": clf.predict(test.ids).tolist(), "best_step": result.best_step,
             "seconds": round(time.perf_counter() - began, 1)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(point).encode("utf-8"))
    return point


def curve_records(fold_passages, counts, seeds, budgets, base_trunk, settings, n_classes, cache_name):
    """Every (seed, label count, fold) point of the curve, from scratch and for each pretraining budget.

    fold_passages(seed) -> [(labelled pool, test Passages)], one per fold; budgets: {name: fold -> trunk}.
    Returns records {"method", "n", "seed", "fold", "groups", "correct"} for summarise_curve."""
    records = []
    for seed in seeds:
        passages = fold_passages(seed)
        for n in counts:  # the fewest labels first: an interrupted run has the low end of the curve
            for k, (pool, test) in enumerate(passages):
                train, val = split_validation(pool[:n], np.random.default_rng([seed, k, 4, n]), n_classes)
                for method, trunk_of in [(SCRATCH, lambda k: base_trunk), *budgets.items()]:
                    point = curve_point(method, trunk_of(k), train, val, test, settings, n_classes, seed, k,
                                        cache_name)
                    correct = np.asarray(point["predicted"]) == test.labels
                    records.append({"method": method, "n": n, "seed": seed, "fold": k, "groups": test.groups,
                                    "correct": correct})
                    print(f"seed {seed} fold {k + 1} n {n:>4} {method:>52}: accuracy {correct.mean():.3f} "
                          f"({point['seconds']} s to train)", flush=True)
    return records


def heldout_lm_loss(trunk, streams, windows=32):
    """The language-model loss (nats/token) of a trunk on random windows of held-out token streams (test
    plays or test scenes, which no pretraining reads): how well it knows text like the test passages."""
    rng = np.random.default_rng(0)
    streams = [s for s in streams if len(s) > trunk.config.block_size + 1]
    block = trunk.config.block_size
    x, y = [], []
    for _ in range(windows):
        tokens = streams[rng.integers(len(streams))]
        start = rng.integers(0, len(tokens) - block - 1)
        x.append(tokens[start : start + block])
        y.append(tokens[start + 1 : start + block + 1])
    with trunk.evaluating():
        return trunk(np.stack(x), np.stack(y))[1].item()


def format_curve_table(rows):
    lines = [f"{'method':>52} {'labels':>6} {'accuracy (95% CI)':>20} {'gain over scratch (95% CI)':>28}  k"]
    for r in rows:
        line = f"{r['method']:>52} {r['n']:>6} {r['accuracy']:>7.3f} ({r['ci_low']:.3f}-{r['ci_high']:.3f})"
        if "gain" in r:
            line += f" {r['gain']:>+10.3f} ({r['gain_low']:+.3f} to {r['gain_high']:+.3f})  {r['k_bound']}{r['k']:.1f}"
        lines.append(line)
    return "\n".join(lines)


def write_curve_csv(rows, path):
    columns = ("method", "n", "test_passages", "accuracy", "ci_low", "ci_high", "gain", "gain_low", "gain_high",
               "k_bound", "k")
    text = io.StringIO()
    writer = csv.writer(text, lineterminator="\n")  # quotes the method names, which hold commas
    writer.writerow(columns)
    for r in rows:
        writer.writerow([f"{r[c]:.4f}" if isinstance(r.get(c), float) else r.get(c, "") for c in columns])
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, text.getvalue().encode("utf-8"))


def plot_label_curve(rows, lm_loss, levels, title, ylabel, path):
    """Accuracy against labelled passages per fold (log x), a line and a 95% band per method; lm_loss holds
    each pretraining budget's held-out language-model loss, for its legend; levels {name: accuracy} are the
    guessing baselines (chance; the most frequent class), drawn as grey lines."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        n = [r["n"] for r in mine]
        label = method if method == SCRATCH else f"{method} (held-out LM loss {lm_loss[method]:.2f})"
        line, = ax.plot(n, [r["accuracy"] for r in mine], "o-", label=label)
        ax.fill_between(n, [r["ci_low"] for r in mine], [r["ci_high"] for r in mine], color=line.get_color(),
                        alpha=0.15)
    for (name, level), style in zip(levels.items(), ("--", ":")):
        ax.axhline(level, color="grey", ls=style, lw=0.8, label=name)
    ax.set_xscale("log")
    ax.set(xlabel="labelled passages per fold (a fifth of them for validation)", ylabel=ylabel, title=title)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path)
