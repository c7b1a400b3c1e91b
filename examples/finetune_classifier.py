"""Fine-tune a pretrained GPT to tell comedy, tragedy and history apart, and compare it with the same network
trained from scratch on the same few labels.

    python examples/finetune_classifier.py                              # pretrains a small model first (cached)
    python examples/finetune_classifier.py --ckpt out/shakespeare/ckpt   # a model from train_shakespeare.py
    python examples/finetune_classifier.py --pretrained path/to/gpt2    # a Hugging Face GPT-2 folder (slow)
    python examples/finetune_classifier.py --curve                      # accuracy against labels (long, cached)
    python examples/finetune_classifier.py --tiny                       # a seconds-long smoke run

The task and its protocol are in gpt/transfer.py: passages of 128 tokens labelled with their play's genre,
cross-validated by play, pretraining only on the problem plays and romances (which no fold labels), so
pretraining never reads a play that is later labelled or tested, and one pretrained model serves every fold.

Each fold in turn is the test set; --train-passages labelled passages (balanced over the genres) are drawn
from the other folds' plays, a fifth of them kept aside for validation. Per fold, two classifiers of the same
architecture (GPTClassifier: the hidden states averaged over the passage -> linear -> 3 classes) train for
the same steps on the same batches, and each keeps its weights from its best evaluation on the validation
passages (early stopping; the test passages take no part in any choice):

- fine-tuned: the pretrained trunk; the head alone at first, one more layer group unfrozen every
  --unfreeze-every steps, each lower group learning --lr-decay times more slowly (ULMFiT);
- from scratch: a freshly initialised trunk, everything trained from the first step at --scratch-lr.

The report: each classifier's accuracy per fold, then over all folds its accuracy, per-genre recall and
confusion matrix, and the fine-tuned minus from-scratch accuracy with a 95% confidence interval from a
bootstrap over the test plays (passages of one play are not independent evidence; plays are). The mean
held-out accuracy at each evaluation goes to learning_curves.png in --out-dir.

--curve trains both classifiers at every --label-counts for every --curve-seeds and fold, on nested subsets of
one labelled pool and always the same test passages, and writes a table, label_curve.csv and label_curve.png
(log x): accuracy and the gain over from-scratch with bootstrap intervals, and k, how many times more labels
from-scratch needs to match fine-tuning. --more-pretraining N adds a second pretraining budget: per fold, the
pretrained model trained N steps more on the unlabelled plays and that fold's training plays; --also-pretrain
adds models pretrained for other step counts on the unlabelled plays. The language-model loss of each
budget on the test plays is reported beside the curve. Every trained classifier is cached.

Measured figures, with the commands that give them, are in README.md ("Pretrained weights and fine-tuning").
"""
import argparse
import csv
import hashlib
import io
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from gpt.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402  (after the path set-up)
from gpt.corpus import cache_dir, text_digest  # noqa: E402
from gpt.files import write_atomic  # noqa: E402
from gpt.finetune import GPTClassifier, fit  # noqa: E402
from gpt.model import GPT  # noqa: E402
from gpt.pretrain_cache import pretrain_key, train_cached  # noqa: E402
from gpt.pretrained import load_pretrained  # noqa: E402
from gpt.report import pyplot  # noqa: E402
from gpt.sample import load_model  # noqa: E402
from gpt.train import TrainConfig  # noqa: E402
from gpt.transfer import (CLASSES, PlayTokens, bootstrap_by_play, curve_passages, encodable,  # noqa: E402
                          make_folds, play_text, sample_passages, split_validation, summarise_curve,
                          training_plays, unlabelled_plays)
import nanograd  # noqa: E402

METHODS = ("fine-tuned", "from scratch")
# Settings of --tiny: every size shrunk so the whole run takes seconds (the CI smoke test).
TINY = dict(pretrain_iters=20, pretrain_chars=200_000, tokenizer="char", n_layer=1, n_head=2, n_embd=32,
            block_size=32, passage_tokens=32, folds=2, train_passages=30, test_passages=30, steps=12, batch_size=8,
            eval_every=6, unfreeze_every=3, label_counts=[6, 12], curve_seeds=[0])


def pretrain_config(args, iters):
    """The TrainConfig of pretraining; out_dir, data and resume are filled in where it runs."""
    return TrainConfig(
        tokenizer=args.tokenizer, vocab_size=args.vocab_size, n_layer=args.n_layer, n_head=args.n_head,
        n_embd=args.n_embd, block_size=args.block_size, max_iters=iters, warmup_iters=min(100, iters // 10),
        eval_interval=max(1, iters // 4), eval_iters=10, sample_tokens=0, seed=args.seed, progress=args.progress,
    )


def unlabelled_text(args):
    return "".join(play_text(play) for play in unlabelled_plays())[: args.pretrain_chars]


def pretrain(args):
    """Train a small GPT on the plays no fold labels (problem plays and romances); returns its checkpoint
    directory. The result is cached under its key (pretrain_key), so a second run starts at once."""
    text = unlabelled_text(args)
    config = pretrain_config(args, args.pretrain_iters)
    out = cache_dir() / f"finetune-pretrain-{pretrain_key(text, config)}"
    return train_cached(out, text, config, f"pretrained {args.pretrain_iters} steps on {len(text):,} characters "
                                              "of unlabelled plays")


def pretrain_more(args, base_ckpt, test_plays):
    """The pretrained model trained --more-pretraining steps further on all the text one fold allows: the
    unlabelled plays and this fold's training plays (whose labels the fold uses anyway), never its test plays.
    It keeps the base model's tokenizer, so its passages are the same ids as every other method's."""
    train_plays = [play for plays in training_plays(test_plays).values() for play in plays]
    text = unlabelled_text(args) + "".join(play_text(play) for play in train_plays)
    text = encodable(text, load_model(base_ckpt)[1])  # the base model's tokenizer must read it all
    config = pretrain_config(args, args.pretrain_iters + args.more_pretraining)
    out = cache_dir() / f"finetune-pretrain-{pretrain_key(text, config, base=base_ckpt.parent.name)}"
    if not (out / "ckpt").exists():  # start from the base model: its weights, optimizer state and step,
        # continued on this text, which the copy records as its data (so the trainer's --resume accepts it)
        ckpt = load_checkpoint(base_ckpt)
        ckpt.extra["data_digest"] = text_digest(text)
        save_checkpoint(out / "ckpt", ckpt, tokenizer_file=ckpt.tokenizer_path)
    return train_cached(out, text, config, f"pretrained {args.more_pretraining} steps more on {len(text):,} "
                                              "characters (unlabelled and this fold's training plays)")


def train_method(method, pretrained_trunk, train, val, args, init_seed, batches, on_eval=None):
    """Train one classifier of `method` on (train, val) Passages; returns (classifier, FitResult).
    on_eval(classifier, step), if given, runs at every evaluation.

    fine-tuned: a copy of the pretrained trunk, gradual unfreezing and discriminative rates (ULMFiT);
    from scratch: a trunk of the same shape initialised from `init_seed`, everything trained from step 1."""
    if method == "fine-tuned":
        trunk = GPT(pretrained_trunk.config)
        trunk.load_state_dict(pretrained_trunk.state_dict())  # every classifier starts from the same weights
        lr, lr_decay, unfreeze_every = args.lr, args.lr_decay, args.unfreeze_every
    else:
        trunk = GPT(pretrained_trunk.config, seed=init_seed)
        lr, lr_decay, unfreeze_every = args.scratch_lr, 1.0, None
    clf = GPTClassifier(trunk, len(CLASSES), seed=init_seed, pool=args.pool)
    result = fit(clf, clf.configure_optimizer(lr, lr_decay), (train.ids, train.labels), (val.ids, val.labels),
                 args.steps, args.batch_size, args.eval_every, batches, unfreeze_every,
                 None if on_eval is None else lambda step: on_eval(clf, step))
    return clf, result


def run_fold(k, test_plays, pretrained_trunk, play_tokens, args):
    """Train both classifiers on fold k; returns ({method: predictions on test}, test, {method: test curve})."""
    rng = np.random.default_rng([args.seed, k])
    labelled = sample_passages(training_plays(test_plays), args.train_passages, args.passage_tokens, play_tokens, rng)
    test = sample_passages(test_plays, args.test_passages, args.passage_tokens, play_tokens, rng)
    train, val = split_validation(labelled, rng)
    print(f"\nfold {k + 1}/{args.folds}: test plays "
          + "; ".join(f"{genre} {', '.join(p.stem for p in test_plays[genre])}" for genre in CLASSES))
    predictions, curves = {}, {}
    for method in METHODS:
        curve = curves[method] = []

        def record_test_accuracy(clf, step, curve=curve):  # for the plot only; no choice depends on it
            curve.append((step, float(np.mean(clf.predict(test.ids) == test.labels))))

        batches = np.random.default_rng([args.seed, k, 1])  # the same batches for both methods
        clf, result = train_method(method, pretrained_trunk, train, val, args, args.seed + k, batches,
                                   record_test_accuracy)
        predictions[method] = clf.predict(test.ids)
        print(f"  {method:>12}: test accuracy {np.mean(predictions[method] == test.labels):.3f}, "
              f"kept step {result.best_step} (validation accuracy {result.best_val_accuracy:.3f})")
    return predictions, test, curves


def confusion_matrix(labels, predicted):
    """counts[true class, predicted class]."""
    counts = np.zeros((len(CLASSES), len(CLASSES)), dtype=np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts


def format_confusion(counts):
    """The confusion matrix as a table: a row per true genre, a column per predicted genre."""
    corner = "true \\ predicted"
    width = max(map(len, CLASSES)) + 2
    lines = [corner + "".join(c.rjust(width) for c in CLASSES)]
    lines += [name.rjust(len(corner)) + "".join(str(v).rjust(width) for v in row) for name, row in zip(CLASSES, counts)]
    return "\n".join(lines)


def report(results, rng):
    """Print the accuracy over every fold's test passages, per-genre recall, and the paired difference."""
    labels = np.concatenate([test.labels for _, test, _ in results])
    plays = np.concatenate([test.plays for _, test, _ in results])
    correct = {m: np.concatenate([pred[m] for pred, _, _ in results]) == labels for m in METHODS}
    per_fold = {m: [np.mean(pred[m] == test.labels) for pred, test, _ in results] for m in METHODS}
    print(f"\nover all {len(results)} folds: {len(labels)} test passages from {len(set(plays))} plays "
          f"(chance {1 / len(CLASSES):.3f})")
    for m in METHODS:
        low, high = bootstrap_by_play(plays, correct[m].astype(float), rng)
        predicted = np.concatenate([pred[m] for pred, _, _ in results])
        recall = ", ".join(f"{c} {np.mean(predicted[labels == i] == i):.2f}" for i, c in enumerate(CLASSES))
        print(f"\n{m}: held-out accuracy {np.mean(correct[m]):.3f} (95% CI {low:.3f}-{high:.3f}; per fold "
              f"{np.mean(per_fold[m]):.3f} +- {np.std(per_fold[m]):.3f}); recall: {recall}")
        print(format_confusion(confusion_matrix(labels, predicted)))
    gain = correct["fine-tuned"].astype(float) - correct["from scratch"]
    low, high = bootstrap_by_play(plays, gain, rng)
    folds_won = sum(f > s for f, s in zip(per_fold["fine-tuned"], per_fold["from scratch"]))
    print(f"\nfine-tuned minus from scratch: {np.mean(gain):+.3f} accuracy (95% CI {low:+.3f} to {high:+.3f}, "
          f"bootstrap over test plays); fine-tuned ahead in {folds_won} of {len(results)} folds")


def plot_curves(curves, path):
    """Held-out accuracy against the step, averaged over the folds, one line per classifier."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for method in METHODS:
        steps = [step for step, _ in curves[0][method]]
        accuracy = np.mean([[acc for _, acc in fold[method]] for fold in curves], axis=0)
        ax.plot(steps, accuracy, "o-", label=method)
    ax.axhline(1 / len(CLASSES), color="grey", ls="--", lw=0.8, label="chance")
    ax.set(xlabel="step", ylabel=f"held-out accuracy (mean of {len(curves)} folds)", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend()
    save_png(fig, path)


def save_png(fig, path):
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    pyplot().close(fig)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, png.getvalue())


# --curve: held-out accuracy against the number of labelled passages (ULMFiT's Fig. 3).
CURVE_FORMAT_VERSION = 1  # bump when a change to fit() or the classifier changes what a cached result would be
SCRATCH = "from scratch"


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


def curve_point(method, trunk, train, val, test, args, seed, fold):
    """Predictions of one classifier (method: SCRATCH or a pretraining budget's name) on one fold's test
    passages, cached under everything that decides them: the starting weights, the passages, the settings."""
    n = len(train) + len(val)
    init_seed = seed * 1000 + fold
    start = trunk if method != SCRATCH else GPT(trunk.config, seed=init_seed)
    fit_settings = {name: getattr(args, name) for name in ("steps", "batch_size", "lr", "lr_decay", "unfreeze_every",
                                                           "scratch_lr", "eval_every", "pool")}
    key = text_digest(json.dumps({"version": CURVE_FORMAT_VERSION, "scratch": method == SCRATCH,
                                  "weights": weights_digest(start), "passages": passages_digest(train, val, test),
                                  "init_seed": init_seed, "fit": fit_settings}, sort_keys=True))
    path = cache_dir() / "finetune-curve" / f"{key}.json"
    if path.exists():
        return json.loads(path.read_text(encoding="utf-8"))
    began = time.perf_counter()
    batches = np.random.default_rng([seed, fold, 1, n])  # the same batches for every method at this n
    clf, result = train_method("fine-tuned" if method != SCRATCH else SCRATCH, trunk, train, val, args, init_seed,
                               batches)
    point = {"predicted": clf.predict(test.ids).tolist(), "best_step": result.best_step,
             "seconds": round(time.perf_counter() - began, 1)}
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(point).encode("utf-8"))
    return point


def heldout_lm_loss(trunk, test_plays, play_tokens, windows=32):
    """The language-model loss (nats/token) of a trunk on windows of one fold's test plays, which no
    pretraining reads: how well each pretrained model knows text like the test passages."""
    rng = np.random.default_rng(0)
    plays = [play for plays in test_plays.values() for play in plays]
    block = trunk.config.block_size
    x, y = [], []
    for _ in range(windows):
        tokens = play_tokens(plays[rng.integers(len(plays))])
        start = rng.integers(0, len(tokens) - block - 1)
        x.append(tokens[start : start + block])
        y.append(tokens[start + 1 : start + block + 1])
    with nanograd.no_grad():
        return trunk.eval()(np.stack(x), np.stack(y))[1].item()


def run_curve(args, base_ckpt):
    """Every (seed, fold, label count) point of the curve for from-scratch and each pretraining budget;
    returns (records, {budget: held-out LM loss averaged over the folds})."""
    base_trunk, tok = load_model(base_ckpt)
    play_tokens = PlayTokens(tok)
    folds = make_folds(args.folds, np.random.default_rng(args.seed))  # one split of the plays for every seed
    budgets = {f"fine-tuned, {args.pretrain_iters} steps": lambda k: base_trunk}
    for iters in args.also_pretrain:  # the same text, hence the same tokenizer and passages
        trunk = load_model(pretrain(argparse.Namespace(**{**vars(args), "pretrain_iters": iters})))[0]
        budgets[f"fine-tuned, {iters} steps"] = lambda k, trunk=trunk: trunk
    if args.more_pretraining:
        more = {k: load_model(pretrain_more(args, base_ckpt, fold))[0] for k, fold in enumerate(folds)}
        budgets[f"fine-tuned, +{args.more_pretraining} steps on the training folds"] = more.__getitem__
    lm_loss = {name: float(np.mean([heldout_lm_loss(trunk_of(k), fold, play_tokens) for k, fold in enumerate(folds)]))
               for name, trunk_of in budgets.items()}
    records = []
    for seed in args.curve_seeds:
        passages = [curve_passages(fold, max(args.label_counts), args.test_passages, args.passage_tokens,
                                   play_tokens, seed, k) for k, fold in enumerate(folds)]
        for n in args.label_counts:  # the fewest labels first: an interrupted run has the low end of the curve
            for k, (pool, test) in enumerate(passages):
                train, val = split_validation(pool[:n], np.random.default_rng([seed, k, 4, n]))
                for method, trunk_of in [(SCRATCH, lambda k: base_trunk), *budgets.items()]:
                    point = curve_point(method, trunk_of(k), train, val, test, args, seed, k)
                    correct = np.asarray(point["predicted"]) == test.labels
                    records.append({"method": method, "n": n, "seed": seed, "fold": k, "plays": test.plays,
                                    "correct": correct})
                    print(f"seed {seed} fold {k + 1} n {n:>4} {method:>52}: accuracy {correct.mean():.3f} "
                          f"({point['seconds']} s to train)", flush=True)
    return records, lm_loss


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


def plot_label_curve(rows, lm_loss, n_seeds, n_folds, path):
    """Accuracy against labelled passages per fold (log x), a line and a 95% band per method."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7.5, 5))
    for method in dict.fromkeys(r["method"] for r in rows):
        mine = [r for r in rows if r["method"] == method]
        n = [r["n"] for r in mine]
        label = method if method == SCRATCH else f"{method} (test-play LM loss {lm_loss[method]:.2f})"
        line, = ax.plot(n, [r["accuracy"] for r in mine], "o-", label=label)
        ax.fill_between(n, [r["ci_low"] for r in mine], [r["ci_high"] for r in mine], color=line.get_color(), alpha=0.15)
    ax.axhline(1 / len(CLASSES), color="grey", ls="--", lw=0.8, label="chance")
    ax.set_xscale("log")
    ax.set(xlabel="labelled passages per fold (a fifth of them for validation)",
           ylabel=f"held-out accuracy ({n_seeds} seeds x {n_folds} folds)",
           title="Genre of a passage, cross-validated by play (95% bootstrap over plays)")
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=8)
    save_png(fig, path)


def build_arg_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--ckpt", help="checkpoint directory written by train_shakespeare.py / gpt.train")
    source.add_argument("--pretrained", help="Hugging Face style GPT-2 folder (config.json, model.safetensors)")
    p.add_argument("--out-dir", default="out/finetune", help="where the plot goes")
    p.add_argument("--tiny", action="store_true", help="shrink everything to a seconds-long run (smoke test)")
    p.add_argument("--seed", type=int, default=0, help="seed for pretraining, the folds, the passages and the batches")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="kernel and BLAS threads")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="pretraining progress bar")
    g = p.add_argument_group("pretraining (when neither --ckpt nor --pretrained is given)")
    g.add_argument("--pretrain-iters", type=int, default=1500, help="optimizer steps of pretraining")
    g.add_argument("--pretrain-chars", type=int, default=None, help="use only this many characters of text")
    g.add_argument("--tokenizer", choices=("char", "bpe"), default="bpe", help="tokenizer to train (default bpe)")
    g.add_argument("--vocab-size", type=int, default=1024, help="vocabulary of the bpe tokenizer (default 1024)")
    for name, default in (("n-layer", 4), ("n-head", 4), ("n-embd", 128), ("block-size", 128)):
        g.add_argument(f"--{name}", type=int, default=default, help=f"{name} of the model (default {default})")
    g = p.add_argument_group("the task and fine-tuning")
    g.add_argument("--folds", type=int, default=4, help="folds of the labelled plays; each is the test set once")
    g.add_argument("--passage-tokens", type=int, default=None,
                   help="tokens per passage (default: the model's block_size, at most 128)")
    g.add_argument("--train-passages", type=int, default=200, help="labelled passages per fold (validation included)")
    g.add_argument("--test-passages", type=int, default=240, help="test passages per fold")
    g.add_argument("--pool", choices=("mean", "last"), default="mean",
                   help="the head reads the hidden states averaged over the passage, or the last one's")
    g.add_argument("--steps", type=int, default=150, help="optimizer steps for each classifier")
    g.add_argument("--batch-size", type=int, default=16, help="passages per step")
    g.add_argument("--lr", type=float, default=1e-3, help="learning rate of the head (top group)")
    g.add_argument("--lr-decay", type=float, default=2.6, help="each lower group's rate is this times smaller")
    g.add_argument("--unfreeze-every", type=int, default=20, help="steps between unfreezing the next group")
    g.add_argument("--scratch-lr", type=float, default=1e-3, help="learning rate of the from-scratch model")
    g.add_argument("--eval-every", type=int, default=25, help="steps between evaluations")
    g = p.add_argument_group("the label-count curve (--curve; every trained classifier is cached)")
    g.add_argument("--curve", action="store_true", help="accuracy against the number of labelled passages")
    g.add_argument("--label-counts", type=_counts, default=[10, 30, 100, 300, 1000],
                   help="labelled passages per fold, comma-separated (default 10,30,100,300,1000)")
    g.add_argument("--curve-seeds", type=_counts, default=[0, 1],
                   help="seeds of the passages, batches and initialisations (the pretrained model and the folds come "
                        "from --seed)")
    g.add_argument("--also-pretrain", type=_counts, default=[],
                   help="also fine-tune models pretrained this many steps (comma-separated) on the unlabelled plays")
    g.add_argument("--more-pretraining", type=int, default=0,
                   help="also fine-tune a model pretrained this many steps more, per fold, on the unlabelled "
                        "and the fold's training plays (0: only the default pretraining)")
    return p


def _counts(text):
    try:
        return sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parse_args(argv=None):
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    if args.tiny:
        parser.set_defaults(**TINY)
        args = parser.parse_args(argv)  # explicit flags still win over the tiny settings
    for name in ("pretrain_iters", "steps", "batch_size", "eval_every", "unfreeze_every", "train_passages",
                 "test_passages"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    if min(args.train_passages, *args.label_counts) < 2 * len(CLASSES):
        parser.error(f"--train-passages and --label-counts must be at least {2 * len(CLASSES)}: a few to train "
                     "on, a few to validate")
    if args.more_pretraining < 0 or min(args.also_pretrain, default=1) < 1:
        parser.error("--more-pretraining must be >= 0 and --also-pretrain at least 1")
    if args.curve and args.pretrained:
        parser.error("--curve needs a model it can pretrain further: the default pretraining or --ckpt")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        return run(args)
    except (OSError, ValueError, RuntimeError) as e:  # a bad checkpoint or folder, a passage too long
        sys.exit(f"error: {e}")


def run(args):
    """Get a pretrained trunk, train both classifiers on every fold (or every point of --curve), report."""
    nanograd.tune_process(threads=args.threads)
    if args.pretrained:
        trunk, tok = load_pretrained(args.pretrained)
    else:
        if args.ckpt:
            print("note: a model from train_shakespeare.py has read every play, the test plays too (never "
                  "their genres); without --ckpt the model is pretrained on unlabelled plays only")
        ckpt = args.ckpt or pretrain(args)
        trunk, tok = load_model(ckpt)
    args.passage_tokens = args.passage_tokens or min(128, trunk.config.block_size)
    if args.passage_tokens > trunk.config.block_size and args.passage_tokens % trunk.config.block_size:
        raise ValueError(f"--passage-tokens {args.passage_tokens} exceeds the model's block_size "
                         f"{trunk.config.block_size} and is not a multiple of it (long passages are read in windows)")
    out_dir = Path(args.out_dir)
    if args.curve:
        records, lm_loss = run_curve(args, Path(ckpt))
        rows = summarise_curve(records, args.label_counts, SCRATCH, np.random.default_rng(args.seed))
        print(f"\nheld-out accuracy against labelled passages per fold ({len(args.curve_seeds)} seeds x "
              f"{args.folds} folds, {args.test_passages} test passages per fold; chance {1 / len(CLASSES):.3f})")
        print(format_curve_table(rows))
        for name, loss in lm_loss.items():
            print(f"{name}: language-model loss on the test plays {loss:.3f} nats/token (mean over folds)")
        write_curve_csv(rows, out_dir / "label_curve.csv")
        plot_label_curve(rows, lm_loss, len(args.curve_seeds), args.folds, out_dir / "label_curve.png")
        print(f"\nlabel curve: {out_dir / 'label_curve.png'}, {out_dir / 'label_curve.csv'}")
        return rows
    print(f"{args.train_passages} labelled passages per fold (a fifth for validation), "
          f"{args.test_passages} test passages, {args.passage_tokens} tokens each; {args.pool}-pooled head")
    rng = np.random.default_rng(args.seed)
    play_tokens = PlayTokens(tok)
    results = [run_fold(k, fold, trunk, play_tokens, args) for k, fold in enumerate(make_folds(args.folds, rng))]
    report(results, rng)
    plot_curves([curves for _, _, curves in results], out_dir / "learning_curves.png")
    print(f"\nlearning curves: {out_dir / 'learning_curves.png'}")
    return results


if __name__ == "__main__":
    main()
