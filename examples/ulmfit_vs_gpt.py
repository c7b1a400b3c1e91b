"""ULMFiT's classifier on a pretrained LSTM against the GPT classifier, on the genre task of
examples/finetune_classifier.py: does either family's pretraining transfer better?

    python examples/ulmfit_vs_gpt.py --threads 1               # pretrains both language models first (cached)
    python examples/ulmfit_vs_gpt.py --threads 1 --seeds 0 1   # two pretrainings of each, every fold, pooled
    python examples/ulmfit_vs_gpt.py --tiny                    # a seconds-long smoke run

Both language models are pretrained by the same trainer on the same unlabelled plays (the problem plays and
romances), with the same BPE tokenizer settings, hence the same token ids: the GPT of finetune_classifier.py
(4 layers, 128 wide; the very model it caches) and a 2-layer LSTM with embedding 128, its output tied to the
embedding as AWD-LSTM ties it, its hidden width chosen so that its parameter count (every parameter, a tied
one once) comes closest to the GPT's. On every fold of the protocol (gpt/experiments/transfer.py; the folds, passages,
validation split, batches, steps and initialisation seeds of finetune_classifier.py's default run) four
classifiers train on the same batches, and each keeps its weights from its best validation accuracy:

- GPT fine-tuned and GPT from scratch: exactly finetune_classifier.py's two (mean pooling, a linear head;
  gradual unfreezing and discriminative rates for the fine-tuned one, constant learning rates);
- LSTM fine-tuned, ULMFiT's recipe: concat pooling and the two-layer head (gpt/finetune/lstm_classifier.py), gradual
  unfreezing, discriminative rates, the slanted triangular schedule;
- LSTM from scratch: the same network freshly initialised, every parameter trained from step 1 at one rate,
  on the same schedule (the schedule and the head are the recipe; only the pretrained weights are taken away).

A seed decides the pretrainings, the folds, the passages, the batches and the initialisations; with several
--seeds the report pools every seed's folds. The report: each method's held-out accuracy with a 95% interval
from a bootstrap over the test plays, and per family the fine-tuned minus from-scratch gain (paired on the same
test passages) with its interval; the plot ulmfit_vs_gpt.png in --out-dir shows the accuracies and the
per-fold values.
"""
import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import nanograd  # noqa: E402  (after the path set-up above)
from gpt.finetune.classifier import GPTClassifier, fit, slanted_triangular  # noqa: E402
from gpt.lstm import hidden_matching  # noqa: E402
from gpt.finetune.lstm_classifier import LSTMClassifier  # noqa: E402
from gpt.families import build  # noqa: E402
from gpt.storage import pyplot, save_png  # noqa: E402
from gpt import load_model  # noqa: E402
from gpt.experiments.transfer import CLASSES, PlayTokens, bootstrap_by_group, make_folds  # noqa: E402
from gpt.experiments.genre_runs import (add_classifier_flags, add_pretraining_flags, fold_passages, pretrain_config,  # noqa: E402
                               parse_with_tiny, pretrain_on_unlabelled, unlabelled_text)
from tokenizer.progress import add_progress_flag  # noqa: E402

METHODS = ("GPT fine-tuned", "GPT from scratch", "LSTM fine-tuned", "LSTM from scratch")
# Settings of --tiny: every size shrunk so the whole run takes seconds (the CI smoke test).
TINY = dict(pretrain_iters=20, pretrain_chars=200_000, tokenizer="char", n_embd=32, gpt_layers=1, gpt_heads=2,
            block_size=32, passage_tokens=32, folds=2, train_passages=30, test_passages=30, steps=12, batch_size=8,
            eval_every=6, unfreeze_every=3)


def pretrain_both(args, seed):
    """(GPT, LSTM, tokenizer): both language models pretrained on the unlabelled plays (cached by their keys)."""
    sizes = dict(tokenizer=args.tokenizer, n_embd=args.n_embd, block_size=args.block_size)
    gpt_config = pretrain_config(args.pretrain_iters, seed, args.progress, n_layer=args.gpt_layers,
                                 n_head=args.gpt_heads, **sizes)
    gpt, tok = load_model(pretrain_on_unlabelled(gpt_config, args.pretrain_chars))
    n_hidden = hidden_matching(gpt.num_parameters(), args.n_embd, tok.vocab_size, args.lstm_layers, tie_weights=True)
    lstm_config = dataclasses.replace(gpt_config, model="lstm", n_layer=args.lstm_layers, n_hidden=n_hidden,
                                      tie_weights=True)
    lstm, lstm_tok = load_model(pretrain_on_unlabelled(lstm_config, args.pretrain_chars))
    sample = unlabelled_text(20_000)
    if lstm_tok.encode(sample) != tok.encode(sample):  # the same text and settings make the same tokenizer
        raise RuntimeError("the two language models' tokenizers differ, so their passages would differ")
    print(f"GPT {gpt.config.n_layer} layers x {gpt.config.n_embd}: {gpt.num_parameters():,} parameters; LSTM "
          f"{lstm.config.n_layer} layers, embedding {lstm.config.n_embd}, hidden {n_hidden}, tied: "
          f"{lstm.num_parameters():,} parameters; vocabulary {tok.vocab_size}")
    return gpt, lstm, tok


def new_classifier(method, pretrained, init_seed):
    """The classifier of `method` on a copy of the pretrained language model, or on a fresh one of its shape."""
    fine_tuned = method.endswith("fine-tuned")
    if fine_tuned:
        trunk = build(pretrained.config)
        trunk.load_state_dict(pretrained.state_dict())  # every classifier starts from the same weights
    else:
        trunk = build(pretrained.config, seed=init_seed)
    if method.startswith("GPT"):
        return GPTClassifier(trunk, len(CLASSES), seed=init_seed, pool="mean")
    return LSTMClassifier(trunk, len(CLASSES), seed=init_seed)


def train_method(method, pretrained, fold, args, init_seed, batches):
    """Train one classifier of `method` on the fold's passages; returns (classifier, FitResult)."""
    clf = new_classifier(method, pretrained, init_seed)
    if method.endswith("fine-tuned"):
        lr, lr_decay, unfreeze_every = args.lr, args.lr_decay, args.unfreeze_every
    else:
        lr, lr_decay, unfreeze_every = args.scratch_lr, 1.0, None
    schedule = None
    if method.startswith("LSTM"):
        schedule = lambda t: slanted_triangular(t, args.steps, 1.0)  # noqa: E731
        nanograd.manual_seed(init_seed)  # the head's dropout masks, the same whatever ran before
    result = fit(clf, clf.configure_optimizer(lr, lr_decay), (fold.train.ids, fold.train.labels),
                 (fold.val.ids, fold.val.labels), args.steps, args.batch_size, args.eval_every, batches,
                 unfreeze_every, schedule=schedule)
    return clf, result


def run_fold(k, test_plays, models, play_tokens, args, seed):
    """Train the four classifiers on fold k of `seed`; returns ({method: test predictions}, test Passages)."""
    fold = fold_passages(test_plays, k, seed, args.train_passages, args.test_passages, args.passage_tokens,
                         play_tokens)
    print(f"\nseed {seed}, fold {k + 1}/{args.folds}: test plays "
          + "; ".join(f"{genre} {', '.join(p.stem for p in test_plays[genre])}" for genre in CLASSES), flush=True)
    predictions = {}
    for method in METHODS:
        began = time.perf_counter()
        batches = np.random.default_rng([seed, k, 1])  # the same batches for every method
        clf, result = train_method(method, models[method.split()[0]], fold, args, seed + k, batches)
        predictions[method] = clf.predict(fold.test.ids)
        print(f"  {method:>17}: test accuracy {np.mean(predictions[method] == fold.test.labels):.3f}, kept step "
              f"{result.best_step} (validation accuracy {result.best_val_accuracy:.3f}), "
              f"{time.perf_counter() - began:.0f} s", flush=True)
    return predictions, fold.test


def summarise(results, rng):
    """{"methods": {method: accuracy, interval, per fold}, "gains": {family: gain, interval}} over every fold."""
    labels = np.concatenate([test.labels for _, test in results])
    plays = np.concatenate([test.groups for _, test in results])
    correct = {m: (np.concatenate([pred[m] for pred, _ in results]) == labels).astype(float) for m in METHODS}
    summary = {"test_passages": len(labels), "test_plays": len(set(plays)), "methods": {}, "gains": {}}
    for m in METHODS:
        low, high = bootstrap_by_group(plays, correct[m], rng)
        per_fold = [float(np.mean(pred[m] == test.labels)) for pred, test in results]
        summary["methods"][m] = dict(accuracy=correct[m].mean(), low=low, high=high, per_fold=per_fold)
    comparisons = {"GPT: fine-tuned - from scratch": ("GPT fine-tuned", "GPT from scratch"),
                   "LSTM: fine-tuned - from scratch": ("LSTM fine-tuned", "LSTM from scratch"),
                   "LSTM fine-tuned - GPT fine-tuned": ("LSTM fine-tuned", "GPT fine-tuned")}
    for name, (a, b) in comparisons.items():
        gain = correct[a] - correct[b]  # the same test passages, in the same order
        low, high = bootstrap_by_group(plays, gain, rng)
        folds_won = sum(x > y for x, y in zip(summary["methods"][a]["per_fold"], summary["methods"][b]["per_fold"]))
        summary["gains"][name] = dict(gain=gain.mean(), low=low, high=high, folds_won=folds_won)
    return summary


def report(summary, seeds, n_folds):
    n = len(seeds) * n_folds
    print(f"\nover seeds {', '.join(map(str, seeds))} x {n_folds} folds: {summary['test_passages']} test passages from "
          f"{summary['test_plays']} plays (chance {1 / len(CLASSES):.3f})\n")
    print("| method | held-out accuracy | 95% interval | per fold (seed by seed) |\n|---|---:|---:|---|")
    for m, r in summary["methods"].items():
        print(f"| {m} | {r['accuracy']:.3f} | {r['low']:.3f}-{r['high']:.3f} | "
              f"{', '.join(f'{a:.3f}' for a in r['per_fold'])} |")
    print("\n| difference | accuracy | 95% interval | folds ahead |\n|---|---:|---:|---:|")
    for name, g in summary["gains"].items():
        print(f"| {name} | {g['gain']:+.3f} | {g['low']:+.3f} to {g['high']:+.3f} | {g['folds_won']} of {n} |")


def plot(summary, path):
    """Held-out accuracy per method with its 95% interval, and each fold's accuracy as a dot."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (m, r) in enumerate(summary["methods"].items()):
        color = "tab:blue" if m.startswith("GPT") else "tab:orange"
        ax.errorbar(i, r["accuracy"], yerr=[[r["accuracy"] - r["low"]], [r["high"] - r["accuracy"]]], fmt="o",
                    color=color, capsize=6, ms=9, mfc=color if m.endswith("fine-tuned") else "white")
        ax.plot(np.full(len(r["per_fold"]), i + 0.15), r["per_fold"], ".", color="grey")
    ax.axhline(1 / len(CLASSES), color="grey", ls="--", lw=0.8, label="chance")
    ax.set_xticks(range(len(METHODS)), [m.replace(" ", "\n", 1) for m in METHODS])
    ax.set(ylabel="held-out accuracy", ylim=(0, 1),
           title="Genre of a passage: 95% bootstrap over test plays; grey dots: folds")
    ax.grid(alpha=0.3, axis="y")
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, path)


def build_arg_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", default="out/ulmfit_vs_gpt", help="where the plot and summary.json go")
    p.add_argument("--tiny", action="store_true", help="shrink everything to a seconds-long run (smoke test)")
    p.add_argument("--seeds", type=int, nargs="+", default=[0],
                   help="seeds of the pretrainings, the folds, the passages and the batches; the report pools them")
    p.add_argument("--threads", type=int, default=min(2, nanograd.usable_cores()),
                   help="kernel and BLAS threads")
    add_progress_flag(p)
    g = p.add_argument_group("pretraining (finetune_classifier.py's defaults)")
    add_pretraining_flags(g, iters=1500, sizes=False)
    for name, default in (("n-embd", 128), ("gpt-layers", 4), ("gpt-heads", 4), ("lstm-layers", 2),
                          ("block-size", 128)):
        g.add_argument(f"--{name}", type=int, default=default, help=f"(default {default})")
    g = p.add_argument_group("the task and fine-tuning (finetune_classifier.py's defaults)")
    g.add_argument("--folds", type=int, default=4, help="folds of the labelled plays; each is the test set once")
    g.add_argument("--passage-tokens", type=int, default=128, help="tokens per passage (at most --block-size)")
    g.add_argument("--train-passages", type=int, default=200, help="labelled passages per fold (validation included)")
    g.add_argument("--test-passages", type=int, default=240, help="test passages per fold")
    add_classifier_flags(g)
    return p


def parse_args(argv=None):
    parser = build_arg_parser()
    args = parse_with_tiny(parser, argv, TINY, ("pretrain_iters", "steps", "batch_size", "eval_every",
                                                "unfreeze_every", "test_passages"))
    if args.train_passages < 2 * len(CLASSES):
        parser.error(f"--train-passages must be at least {2 * len(CLASSES)}: a few to train on, a few to validate")
    if not 1 <= args.passage_tokens <= args.block_size:
        parser.error(f"--passage-tokens must be in [1, --block-size {args.block_size}]")
    return args


def main(argv=None):
    args = parse_args(argv)
    nanograd.set_num_threads(args.threads)
    began = time.perf_counter()
    try:
        results, rng = [], None
        for seed in args.seeds:
            gpt, lstm, tok = pretrain_both(args, seed)
            fold_rng = np.random.default_rng(seed)  # the folds, then (the first seed's) the bootstrap, as in
            rng = rng or fold_rng  # finetune_classifier.py, so that one seed's report is that example's
            play_tokens = PlayTokens(tok)
            results += [run_fold(k, fold, {"GPT": gpt, "LSTM": lstm}, play_tokens, args, seed)
                        for k, fold in enumerate(make_folds(args.folds, fold_rng))]
    except (OSError, ValueError, RuntimeError) as e:  # a bad cache entry, a passage too long
        sys.exit(f"error: {e}")
    summary = summarise(results, rng)
    report(summary, args.seeds, args.folds)
    out_dir = Path(args.out_dir)
    plot(summary, out_dir / "ulmfit_vs_gpt.png")
    (out_dir / "summary.json").write_text(json.dumps(summary, indent=1, default=float))
    print(f"\nplot: {out_dir / 'ulmfit_vs_gpt.png'}; summary: {out_dir / 'summary.json'}; "
          f"{(time.perf_counter() - began) / 60:.1f} min in all")
    return summary


if __name__ == "__main__":
    main()
