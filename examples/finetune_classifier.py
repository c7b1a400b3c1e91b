"""Fine-tune a pretrained GPT to classify passages of the plays, and compare it with the same network trained
from scratch on the same few labels. Two tasks: the genre of a passage (comedy, tragedy or history; the
default) and which of 8 major characters speaks it (--task speaker).

    python examples/finetune_classifier.py                              # pretrains a small model first (cached)
    python examples/finetune_classifier.py --ckpt out/shakespeare/ckpt   # a model from train_shakespeare.py
    python examples/finetune_classifier.py --pretrained path/to/gpt2    # a Hugging Face GPT-2 folder (slow)
    python examples/finetune_classifier.py --curve                      # accuracy against labels (long, cached)
    python examples/finetune_classifier.py --task speaker --curve       # the same for the speaker task
    python examples/finetune_classifier.py --tiny                       # a seconds-long smoke run

Genre (gpt/experiments/transfer.py): passages of 128 tokens labelled with their play's genre, cross-validated by play,
pretraining only on the problem plays and romances (which no fold labels), so pretraining never reads a play
that is later labelled or tested, and one pretrained model serves every fold. Each fold in turn is the test
set; --train-passages labelled passages (balanced over the genres) are drawn from the other folds' plays.

Speaker (gpt/experiments/speaker_task.py): passages of 64 tokens of one character's words in one scene, split by scene:
the test passages come from a fifth of each play's scenes, the labelled ones from the rest, and pretraining
reads the rest too, without speaker names. One fold; intervals from a bootstrap over test scenes.

In both, a fifth of the labelled passages is kept aside for validation, and two classifiers of the same
architecture (GPTClassifier: the hidden states averaged over the passage -> linear -> a class) train for the
same steps on the same batches, each keeping its weights from its best evaluation on the validation passages
(early stopping; the test passages take no part in any choice):

- fine-tuned: the pretrained trunk; the head alone at first, one more layer group unfrozen every
  --unfreeze-every steps, each lower group learning --lr-decay times more slowly (ULMFiT);
- from scratch: a freshly initialised trunk, everything trained from the first step at --scratch-lr.

The report: each classifier's accuracy per fold, then over all folds its accuracy, per-class recall and
confusion matrix, and the fine-tuned minus from-scratch accuracy with a 95% confidence interval from a
bootstrap over the test plays or scenes (passages of one are not independent evidence). The mean held-out
accuracy at each evaluation goes to learning_curves.png in --out-dir.

--curve (gpt/experiments/label_curve.py) trains both classifiers at every --label-counts for every --curve-seeds and fold,
on nested subsets of one labelled pool and always the same test passages, and writes a table, label_curve.csv
and label_curve.png (log x): accuracy and the gain over from-scratch with bootstrap intervals, and k, how many
times more labels from-scratch needs to match fine-tuning. --also-pretrain adds models pretrained for other
step counts on the same text; for genre, --more-pretraining N adds, per fold, the pretrained model trained N
steps more on the unlabelled plays and that fold's training plays. The language-model loss of each budget on
the test text is reported beside the curve. Every trained classifier is cached.

Measured figures, with the commands that give them, are in docs/finetuning.md.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from gpt.storage.checkpoint import load_checkpoint, save_checkpoint  # noqa: E402  (after the path set-up)
from gpt.train.corpus import cache_dir, text_digest  # noqa: E402
from gpt.experiments.label_curve import (FINE_TUNED, SCRATCH, FitSettings, curve_records, format_curve_table,  # noqa: E402
                             heldout_lm_loss, plot_label_curve, train_method, write_curve_csv)
from gpt.experiments.pretrain_cache import pretrain_key, train_cached  # noqa: E402
from gpt.storage.gpt2_folders import load_pretrained  # noqa: E402
from gpt.storage import pyplot, save_png  # noqa: E402
from gpt import load_model  # noqa: E402
from gpt.experiments import genre_runs  # noqa: E402
from gpt.experiments.genre_runs import parse_with_tiny  # noqa: E402
from gpt.experiments.speaker_task import N_CHARACTERS, PASSAGE_TOKENS, SpeakerTask, class_counts, labelled_pool  # noqa: E402
from gpt.experiments.transfer import (CLASSES, PlayTokens, bootstrap_by_group, curve_passages, encodable,  # noqa: E402
                          make_folds, play_text, sample_passages, split_validation, summarise_curve,
                          training_plays)
import nanograd  # noqa: E402
from tokenizer.progress import add_progress_flag  # noqa: E402

METHODS = (FINE_TUNED, SCRATCH)
# Settings of --tiny: every size shrunk so the whole run takes seconds (the CI smoke test); 3 characters, so
# that the speaker task's 6 labels hold two per class.
TINY = dict(pretrain_iters=20, pretrain_chars=200_000, tokenizer="char", n_layer=1, n_head=2, n_embd=32,
            block_size=32, passage_tokens=32, folds=2, train_passages=30, test_passages=30, steps=12, batch_size=8,
            eval_every=6, unfreeze_every=3, label_counts=[6, 12], curve_seeds=[0], characters=3)


def pretrain_config(args, iters):
    """The TrainConfig of pretraining (gpt/experiments/genre_runs.py) with this run's sizes; out_dir, data and resume are
    filled in where it runs."""
    return genre_runs.pretrain_config(iters, args.seed, args.progress, tokenizer=args.tokenizer,
                                         vocab_size=args.vocab_size, n_layer=args.n_layer, n_head=args.n_head,
                                         n_embd=args.n_embd, block_size=args.block_size)


def pretrain(args, task=None):
    """Train a small GPT on text no test passage comes from; returns its checkpoint directory. Genre (task
    None): the plays no fold labels (problem plays and romances); speaker: every scene but the test scenes,
    without speaker names (gpt/experiments/speaker_task.py). Cached under its key (pretrain_key): a second run starts at once."""
    config = pretrain_config(args, args.pretrain_iters)
    if task is None:
        return genre_runs.pretrain_on_unlabelled(config, args.pretrain_chars)
    text = task.pretraining_text()[: args.pretrain_chars]
    out = cache_dir() / f"speaker-pretrain-{pretrain_key(text, config)}"
    return train_cached(out, text, config, f"pretrained {args.pretrain_iters} steps on {len(text):,} characters "
                                              "of the non-test scenes")


def pretrain_more(args, base_ckpt, test_plays):
    """The pretrained model trained --more-pretraining steps further on all the text one fold allows: the
    unlabelled plays and this fold's training plays (whose labels the fold uses anyway), never its test plays.
    It keeps the base model's tokenizer, so its passages are the same ids as every other method's."""
    train_plays = [play for plays in training_plays(test_plays).values() for play in plays]
    text = genre_runs.unlabelled_text(args.pretrain_chars) + "".join(play_text(play) for play in train_plays)
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


def run_fold(k, labelled, test, rng, pretrained_trunk, classes, args):
    """Train both classifiers on one fold's labelled Passages (a fifth kept for validation, drawn by rng);
    returns ({method: predictions on test}, test, {method: test curve})."""
    train, val = split_validation(labelled, rng, len(classes))
    predictions, curves = {}, {}
    for method in METHODS:
        curve = curves[method] = []

        def record_test_accuracy(clf, step, curve=curve):  # for the plot only; no choice depends on it
            curve.append((step, float(np.mean(clf.predict(test.ids) == test.labels))))

        batches = np.random.default_rng([args.seed, k, 1])  # the same batches for both methods
        clf, result = train_method(method, pretrained_trunk, train, val, FitSettings.from_args(args), len(classes),
                                   args.seed + k, batches, record_test_accuracy)
        predictions[method] = clf.predict(test.ids)
        print(f"  {method:>12}: test accuracy {np.mean(predictions[method] == test.labels):.3f}, "
              f"kept step {result.best_step} (validation accuracy {result.best_val_accuracy:.3f})")
    return predictions, test, curves


def genre_folds(trunk, tok, args, rng):
    """run_fold on every fold of the genre task (dealt by rng): passages drawn from its training and test plays."""
    play_tokens = PlayTokens(tok)
    results = []
    for k, test_plays in enumerate(make_folds(args.folds, rng)):
        fold_rng = np.random.default_rng([args.seed, k])
        labelled = sample_passages(training_plays(test_plays), args.train_passages, args.passage_tokens, play_tokens,
                                   fold_rng)
        test = sample_passages(test_plays, args.test_passages, args.passage_tokens, play_tokens, fold_rng)
        print(f"\nfold {k + 1}/{args.folds}: test plays "
              + "; ".join(f"{genre} {', '.join(p.stem for p in test_plays[genre])}" for genre in CLASSES))
        results.append(run_fold(k, labelled, test, fold_rng, trunk, CLASSES, args))
    return results


def speaker_passages(task, tok, args):
    """(seen, test) Passages of the speaker task, after printing how many there are of each class."""
    seen, test = task.passages(tok, args.passage_tokens)
    counts = zip(task.classes, class_counts(seen, len(task.classes)), class_counts(test, len(task.classes)))
    print(f"{args.passage_tokens}-token passages per character (outside / inside the {len(set(test.groups))} test "
          f"scenes): " + ", ".join(f"{name} {n_seen} / {n_test}" for name, n_seen, n_test in counts))
    return seen, test


def chance_levels(labels, n_classes):
    """{name: accuracy} of guessing on test passages with these labels: a class at random, and, when the
    classes are unbalanced (the speaker task's test scenes), always the most frequent one."""
    levels = {"chance": 1 / n_classes}
    majority = np.bincount(labels, minlength=n_classes).max() / len(labels)
    if not np.isclose(majority, levels["chance"]):
        levels["most frequent class"] = majority
    return levels


def format_levels(levels):
    return ", ".join(f"{name} {value:.3f}" for name, value in levels.items())


def confusion_matrix(labels, predicted, n_classes):
    """counts[true class, predicted class]."""
    counts = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(counts, (labels, predicted), 1)
    return counts


def format_confusion(counts, classes):
    """The confusion matrix as a table: a row per true class, a column per predicted class."""
    corner = "true \\ predicted"
    width = max(map(len, classes)) + 2
    lines = [corner + "".join(c.rjust(width) for c in classes)]
    lines += [name.rjust(len(corner)) + "".join(str(v).rjust(width) for v in row) for name, row in zip(classes, counts)]
    return "\n".join(lines)


def report(results, classes, unit, rng):
    """Print the accuracy over every fold's test passages, per-class recall, and the paired difference."""
    labels = np.concatenate([test.labels for _, test, _ in results])
    groups = np.concatenate([test.groups for _, test, _ in results])
    correct = {m: np.concatenate([pred[m] for pred, _, _ in results]) == labels for m in METHODS}
    per_fold = {m: [np.mean(pred[m] == test.labels) for pred, test, _ in results] for m in METHODS}
    print(f"\nover all {len(results)} folds: {len(labels)} test passages from {len(set(groups))} {unit}s "
          f"({format_levels(chance_levels(labels, len(classes)))})")
    for m in METHODS:
        low, high = bootstrap_by_group(groups, correct[m].astype(float), rng)
        predicted = np.concatenate([pred[m] for pred, _, _ in results])
        recall = ", ".join(f"{c} {np.mean(predicted[labels == i] == i):.2f}" for i, c in enumerate(classes))
        print(f"\n{m}: held-out accuracy {np.mean(correct[m]):.3f} (95% CI {low:.3f}-{high:.3f}; per fold "
              f"{np.mean(per_fold[m]):.3f} +- {np.std(per_fold[m]):.3f}); recall: {recall}")
        print(format_confusion(confusion_matrix(labels, predicted, len(classes)), classes))
    gain = correct[FINE_TUNED].astype(float) - correct[SCRATCH]
    low, high = bootstrap_by_group(groups, gain, rng)
    folds_won = sum(f > s for f, s in zip(per_fold[FINE_TUNED], per_fold[SCRATCH]))
    print(f"\nfine-tuned minus from scratch: {np.mean(gain):+.3f} accuracy (95% CI {low:+.3f} to {high:+.3f}, "
          f"bootstrap over test {unit}s); fine-tuned ahead in {folds_won} of {len(results)} folds")


def plot_curves(curves, levels, path):
    """Held-out accuracy against the step, averaged over the folds, one line per classifier."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    for method in METHODS:
        steps = [step for step, _ in curves[0][method]]
        accuracy = np.mean([[acc for _, acc in fold[method]] for fold in curves], axis=0)
        ax.plot(steps, accuracy, "o-", label=method)
    for (name, level), style in zip(levels.items(), ("--", ":")):
        ax.axhline(level, color="grey", ls=style, lw=0.8, label=name)
    ax.set(xlabel="step", ylabel=f"held-out accuracy (mean of {len(curves)} folds)", ylim=(0, 1))
    ax.grid(alpha=0.3)
    ax.legend()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path)


def run_curve(args, base_ckpt, task):
    """Every (seed, fold, label count) point of the curve for from-scratch and each pretraining budget, then
    the table, label_curve.csv and label_curve.png; returns the table's rows."""
    base_trunk, tok = load_model(base_ckpt)
    budgets = {f"fine-tuned, {args.pretrain_iters} steps": lambda k: base_trunk}
    for iters in args.also_pretrain:  # the same text, hence the same tokenizer and passages
        other = argparse.Namespace(**{**vars(args), "pretrain_iters": iters})
        trunk = load_model(pretrain(other, task))[0]
        budgets[f"fine-tuned, {iters} steps"] = lambda k, trunk=trunk: trunk
    largest = max(args.label_counts)
    if task is None:
        play_tokens = PlayTokens(tok)
        folds = make_folds(args.folds, np.random.default_rng(args.seed))  # one split of the plays for every seed
        if args.more_pretraining:
            more = {k: load_model(pretrain_more(args, base_ckpt, fold))[0] for k, fold in enumerate(folds)}
            budgets[f"fine-tuned, +{args.more_pretraining} steps on the training folds"] = more.__getitem__
        heldout = [[play_tokens(play) for plays in fold.values() for play in plays] for fold in folds]
        classes, cache_name, n_folds, levels = CLASSES, "finetune-curve", args.folds, {"chance": 1 / len(CLASSES)}

        def fold_passages(seed):
            return [curve_passages(fold, largest, args.test_passages, args.passage_tokens, play_tokens, seed, k)
                    for k, fold in enumerate(folds)]
    else:
        seen, test = speaker_passages(task, tok, args)
        heldout = [task.test_streams(tok)]
        classes, cache_name, n_folds = task.classes, "speaker-curve", 1
        levels = chance_levels(test.labels, len(classes))

        def fold_passages(seed):  # one fold: the scene split; each seed draws its own labelled pool
            return [(labelled_pool(seen, len(classes), largest, np.random.default_rng([seed, 3])), test)]
    lm_loss = {name: float(np.mean([heldout_lm_loss(trunk_of(k), heldout[k]) for k in range(n_folds)]))
               for name, trunk_of in budgets.items()}
    records = curve_records(fold_passages, args.label_counts, args.curve_seeds, budgets, base_trunk,
                            FitSettings.from_args(args), len(classes), cache_name)
    rows = summarise_curve(records, args.label_counts, SCRATCH, np.random.default_rng(args.seed))
    unit = "scene" if task else "play"
    print(f"\nheld-out accuracy against labelled passages per fold ({len(args.curve_seeds)} seeds x {n_folds} "
          f"folds, {rows[0]['test_passages'] // len(args.curve_seeds)} test passages; {format_levels(levels)}; 95% "
          f"intervals from a bootstrap over test {unit}s)")
    print(format_curve_table(rows))
    for name, loss in lm_loss.items():
        print(f"{name}: language-model loss on the test {unit}s {loss:.3f} nats/token (mean over folds)")
    out_dir = Path(args.out_dir)
    write_curve_csv(rows, out_dir / "label_curve.csv")
    title = (f"Which of {len(classes)} characters speaks, split by scene (95% bootstrap over scenes)" if task else
             "Genre of a passage, cross-validated by play (95% bootstrap over plays)")
    plot_label_curve(rows, lm_loss, levels, title, f"held-out accuracy ({len(args.curve_seeds)} seeds x {n_folds} "
                     "folds)", out_dir / "label_curve.png")
    print(f"\nlabel curve: {out_dir / 'label_curve.png'}, {out_dir / 'label_curve.csv'}")
    return rows


def build_arg_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--ckpt", help="checkpoint directory written by train_shakespeare.py / gpt.train")
    source.add_argument("--pretrained", help="Hugging Face style GPT-2 folder (config.json, model.safetensors)")
    p.add_argument("--task", choices=("genre", "speaker"), default="genre",
                   help="genre of a passage (default), or which of --characters characters speaks it")
    p.add_argument("--out-dir", default=None, help="where the plots go (default out/finetune or out/finetune-speaker)")
    p.add_argument("--tiny", action="store_true", help="shrink everything to a seconds-long run (smoke test)")
    p.add_argument("--seed", type=int, default=0, help="seed for pretraining, the folds, the passages and the batches")
    p.add_argument("--threads", type=int, default=min(2, nanograd.usable_cores()),
                   help="kernel and BLAS threads")
    add_progress_flag(p)
    g = p.add_argument_group("pretraining (when neither --ckpt nor --pretrained is given)")
    genre_runs.add_pretraining_flags(g, iters=1500)
    g = p.add_argument_group("the task and fine-tuning")
    g.add_argument("--folds", type=int, default=4, help="genre: folds of the labelled plays; each is the test set once")
    g.add_argument("--characters", type=int, default=N_CHARACTERS, help="speaker: the characters to tell apart")
    g.add_argument("--passage-tokens", type=int, default=None,
                   help=f"tokens per passage (default: the model's block_size, at most 128 for genre and "
                        f"{PASSAGE_TOKENS} for speaker)")
    g.add_argument("--train-passages", type=int, default=200, help="labelled passages per fold (validation included)")
    g.add_argument("--test-passages", type=int, default=240,
                   help="genre: test passages per fold (speaker tests on every passage of its test scenes)")
    g.add_argument("--pool", choices=("mean", "last"), default="mean",
                   help="the head reads the hidden states averaged over the passage, or the last one's")
    genre_runs.add_classifier_flags(g)
    g = p.add_argument_group("the label-count curve (--curve; every trained classifier is cached)")
    g.add_argument("--curve", action="store_true", help="accuracy against the number of labelled passages")
    g.add_argument("--label-counts", type=_counts, default=None,
                   help="labelled passages per fold, comma-separated (default 10,30,100,300,1000 for genre; "
                        "16,32,100,300,1000 for speaker, whose 8 classes need 2 labels each at the least)")
    g.add_argument("--curve-seeds", type=_counts, default=[0, 1],
                   help="seeds of the passages, batches and initialisations (the pretrained model and the folds come "
                        "from --seed)")
    g.add_argument("--also-pretrain", type=_counts, default=[],
                   help="also fine-tune models pretrained this many steps (comma-separated) on the same text")
    g.add_argument("--more-pretraining", type=int, default=0,
                   help="genre: also fine-tune a model pretrained this many steps more, per fold, on the unlabelled "
                        "and the fold's training plays (0: only the default pretraining)")
    return p


def _counts(text):
    try:
        return sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}") from None


def parse_args(argv=None):
    parser = build_arg_parser()
    args = parse_with_tiny(parser, argv, TINY, ("pretrain_iters", "steps", "batch_size", "eval_every",
                                                "unfreeze_every", "train_passages", "test_passages"))
    speaker = args.task == "speaker"
    args.out_dir = args.out_dir or ("out/finetune-speaker" if speaker else "out/finetune")
    args.label_counts = args.label_counts or ([16, 32, 100, 300, 1000] if speaker else [10, 30, 100, 300, 1000])
    n_classes = args.characters if speaker else len(CLASSES)
    if speaker and args.characters < 2:
        parser.error("--characters must be at least 2")
    if min(args.train_passages, *args.label_counts) < 2 * n_classes:
        parser.error(f"--train-passages and --label-counts must be at least {2 * n_classes} (2 per class): a few to "
                     "train on, a few to validate")
    if args.more_pretraining < 0 or min(args.also_pretrain, default=1) < 1:
        parser.error("--more-pretraining must be >= 0 and --also-pretrain at least 1")
    if speaker and args.more_pretraining:
        parser.error("--more-pretraining belongs to the genre task (it pretrains on each fold's training plays)")
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
    nanograd.set_num_threads(args.threads)
    task = SpeakerTask(args.characters, args.seed) if args.task == "speaker" else None
    if args.pretrained:
        trunk, tok = load_pretrained(args.pretrained)
    else:
        if args.ckpt:
            print("note: a model from train_shakespeare.py has read every play, the test plays and scenes too "
                  "(never their labels); without --ckpt the model is pretrained on text no test passage is from")
        ckpt = args.ckpt or pretrain(args, task)
        trunk, tok = load_model(ckpt)
    args.passage_tokens = args.passage_tokens or min(PASSAGE_TOKENS if task else 128, trunk.config.block_size)
    if args.passage_tokens > trunk.config.block_size and args.passage_tokens % trunk.config.block_size:
        raise ValueError(f"--passage-tokens {args.passage_tokens} exceeds the model's block_size "
                         f"{trunk.config.block_size} and is not a multiple of it (long passages are read in windows)")
    if args.curve:
        return run_curve(args, Path(ckpt), task)
    print(f"{args.train_passages} labelled passages per fold (a fifth for validation), "
          f"{'all the' if task else args.test_passages} test passages, {args.passage_tokens} tokens each; "
          f"{args.pool}-pooled head")
    rng = np.random.default_rng(args.seed)
    if task:
        seen, test = speaker_passages(task, tok, args)
        labelled = labelled_pool(seen, len(task.classes), args.train_passages, rng)
        results = [run_fold(0, labelled, test, rng, trunk, task.classes, args)]
        classes, unit, levels = task.classes, "scene", chance_levels(test.labels, len(task.classes))
    else:
        results = genre_folds(trunk, tok, args, rng)
        classes, unit, levels = CLASSES, "play", {"chance": 1 / len(CLASSES)}
    report(results, classes, unit, rng)
    plot_curves([curves for _, _, curves in results], levels, Path(args.out_dir) / "learning_curves.png")
    print(f"\nlearning curves: {Path(args.out_dir) / 'learning_curves.png'}")
    return results


if __name__ == "__main__":
    main()
