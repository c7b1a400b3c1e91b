"""Instruction fine-tuning, measured: teach a pretrained GPT to answer questions about the plays, and check
every answer by exact match on scenes no training record touches.

    python examples/finetune_instructions.py                              # pretrains a small model first (cached)
    python examples/finetune_instructions.py --ckpt PATH    # a checkpoint of gpt.train with a long enough context
    python examples/finetune_instructions.py --tiny                       # a seconds-long smoke run

The records come from gpt/experiments/play_instructions.py: seven task families, four answerable by reading the input passage
and three that need memory of the plays (which play a line is from, who speaks next, the next line). Each
play's scenes are dealt into train, val and test, so the test questions quote scenes that no training or
validation record quotes; pretraining (on all the plays) has read them, as plain text. A record must fit the
model's context: the default model reads 128 BPE tokens (about 450 characters); the 64-character context of
train_shakespeare.py's model holds almost none, and is refused by name.

Three models answer the same test records, greedily, through the same template (gpt/finetune/instruction_data.py):
- untuned: the pretrained model as it is, prompted with the template (its end marker is untrained);
- fine-tuned: the pretrained model fine-tuned on the training records, the loss on the responses only;
- from scratch: the same network, randomly initialised, trained on the same records and batches;
and with --arms scratch unmasked a fourth, fine-tuned with the loss also on the prompt tokens. With --threads
2 or more the arms train side by side, a process of one thread each (gpt/experiments/instruct_arms.py). The
training records include 10,000 that ask to repeat a passage, never scored: the pretrained model cannot copy
(the probe below), and those records teach it to, for the reading questions. The report: exact-match accuracy per family with a 95%
interval from a bootstrap over the test scenes (the questions of one scene are not independent evidence), the
paired differences fine-tuned minus untuned and minus from scratch, a CSV and a bar chart in --out-dir, and a
few fine-tuned answers, right and wrong, generated token by token. First, probes of the pretrained model in
its own format: how many next speakers and next lines it gets right continuing the text, and whether it reads
a passage better the second time (gpt/experiments/copy_probe.py).

Measured with the defaults (docs/instruction-tuning.md has the table and what each setting was worth): exact
match over 660 test records, untuned 0.000, fine-tuned 0.485 (reading 0.878: who says 0.62, speakers in order
0.96, how many 1.00, first word 0.93), from scratch 0.289; fine-tuned minus from scratch +0.195 (95% interval
+0.16 to +0.23). Knowledge families 0.00-0.04. 12 minutes from an empty cache on an idle 2-core machine,
pretraining included.
"""
import argparse
import csv
import io
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from gpt.storage.checkpoint import load_checkpoint  # noqa: E402  (after the path set-up above)
from gpt.train.corpus import cache_dir, shakespeare  # noqa: E402
from gpt.storage.atomic import write_atomic  # noqa: E402
from gpt.generate import stream_text  # noqa: E402
from gpt.finetune.instruction_data import (InstructVocab, encode_record, format_prompt, greedy_correct,  # noqa: E402
                          grow_token_embeddings)
from gpt.finetune.instruction_tuning import save_instruct_checkpoint  # noqa: E402
from gpt.experiments.instruct_arms import Arm, train_arms  # noqa: E402
from gpt.model import GPT, GPTConfig  # noqa: E402
from gpt.experiments.play_instructions import (AUXILIARY, FAMILIES, KNOWLEDGE, READING, family_sizes,  # noqa: E402
                                               make_records)
from gpt.experiments.pretrain_cache import pretrain_key, train_cached  # noqa: E402
from gpt.experiments.copy_probe import copy_probe  # noqa: E402
from gpt.storage import pyplot, save_png  # noqa: E402
from gpt import load_model  # noqa: E402
from gpt.experiments.genre_runs import add_pretraining_flags, parse_with_tiny, pretrain_config  # noqa: E402
import nanograd  # noqa: E402
from tokenizer.progress import add_progress_flag  # noqa: E402

METHODS = ("untuned", "fine-tuned", "fine-tuned, unmasked", "from scratch")
BOOTSTRAP_DRAWS = 2000
TINY = dict(pretrain_iters=20, pretrain_chars=200_000, tokenizer="char", n_layer=1, n_head=2, n_embd=32,
            block_size=224, max_passage_chars=100, train_records=24, knowledge_records=24, val_records=4,
            test_records=8, steps=8, batch_size=8, eval_every=4, examples=1, repeat_records=8,
            arms=["scratch", "unmasked"])


def pretrain(args):
    """Train a GPT on all the plays (the first --pretrain-chars characters, if given); returns its checkpoint
    directory, cached under a key of the text and every setting (gpt/experiments/pretrain_cache.py)."""
    text = shakespeare()[: args.pretrain_chars]
    config = pretrain_config(args.pretrain_iters, args.seed, args.progress, tokenizer=args.tokenizer,
                             vocab_size=args.vocab_size, n_layer=args.n_layer, n_head=args.n_head,
                             n_embd=args.n_embd, block_size=args.block_size, recipe=args.recipe)
    out = cache_dir() / f"instruct-pretrain-{pretrain_key(text, config)}"
    return train_cached(out, text, config, f"pretrained {args.pretrain_iters} steps on {len(text):,} characters "
                                              "of the plays")


def encode_split(vocab, records, block_size, split):
    """[(ids, n_prompt)] of the records that fit in block_size + 1 tokens (inputs and targets are shifted by
    one), and those records; refuses if a quarter or more do not fit."""
    encoded = [encode_record(vocab, r) for r in records]
    fits = [len(ids) <= block_size + 1 for ids, _ in encoded]
    if sum(fits) < 0.75 * len(records):
        raise ValueError(f"only {sum(fits)} of {len(records)} {split} records fit in the model's block_size "
                         f"{block_size}; use a model with a longer context or a smaller --max-passage-chars")
    if not all(fits):
        print(f"{split}: {len(fits) - sum(fits)} of {len(fits)} records are longer than block_size and left out")
    return [e for e, f in zip(encoded, fits) if f], [r for r, f in zip(records, fits) if f]


def bootstrap(groups, values, rng, draws=BOOTSTRAP_DRAWS):
    """95% interval of the mean of `values` when whole groups (test scenes) are resampled with replacement."""
    names, group_of = np.unique(groups, return_inverse=True)
    sums = np.bincount(group_of, weights=values, minlength=len(names))
    counts = np.bincount(group_of, minlength=len(names))
    picks = rng.integers(0, len(names), size=(draws, len(names)))
    means = sums[picks].sum(axis=1) / np.maximum(counts[picks].sum(axis=1), 1)
    return tuple(np.percentile(means, [2.5, 97.5]))


def report(correct, test, rng):
    """Print the accuracy table and the paired differences of the methods that ran; returns the CSV rows."""
    methods = [m for m in METHODS if m in correct]
    families = [f for f in FAMILIES if any(r.family == f for r in test)]
    groups = [("reading (all)", READING), ("knowledge (all)", KNOWLEDGE), ("all", FAMILIES)]
    selections = [(f, np.asarray([r.family == f for r in test])) for f in families]
    selections += [(name, np.asarray([r.family in members for r in test])) for name, members in groups]
    scenes = np.asarray([f"{r.play}/{r.scene}" for r in test])
    comparisons = {"fine-tuned - untuned": ("fine-tuned", "untuned"),
                   "fine-tuned - from scratch": ("fine-tuned", "from scratch"),
                   "masked - unmasked": ("fine-tuned", "fine-tuned, unmasked")}
    comparisons = {name: pair for name, pair in comparisons.items() if set(pair) <= set(methods)}
    rows = []
    print(f"\nexact-match accuracy on {len(test)} held-out records (95% interval, bootstrap over test scenes):")
    print(f"{'family':20s}{'n':>5s}  " + "".join(f"{m:>24s}" for m in methods))
    for name, sel in selections:
        cells = []
        for method in methods:
            values = correct[method][sel].astype(float)
            low, high = bootstrap(scenes[sel], values, rng)
            rows.append(dict(row=name, n=int(sel.sum()), method=method, accuracy=values.mean(), low=low, high=high))
            cells.append(f"{values.mean():.3f} [{low:.2f}, {high:.2f}]")
        print(f"{name:20s}{int(sel.sum()):5d}  " + "".join(f"{c:>24s}" for c in cells))
    print("\npaired differences (95% interval):")
    print(f"{'family':20s}" + "".join(f"{c:>30s}" for c in comparisons))
    for name, sel in selections:
        cells = []
        for comparison, (a, b) in comparisons.items():
            diff = correct[a][sel].astype(float) - correct[b][sel]
            low, high = bootstrap(scenes[sel], diff, rng)
            rows.append(dict(row=name, n=int(sel.sum()), method=comparison, accuracy=diff.mean(), low=low, high=high))
            cells.append(f"{diff.mean():+.3f} [{low:+.2f}, {high:+.2f}]")
        print(f"{name:20s}" + "".join(f"{c:>30s}" for c in cells))
    return rows


def write_csv(rows, path):
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, ["row", "n", "method", "accuracy", "low", "high"])
    writer.writeheader()
    writer.writerows({**r, **{k: f"{r[k]:.4f}" for k in ("accuracy", "low", "high")}} for r in rows)
    write_atomic(path, buffer.getvalue().encode("utf-8"))


def plot(rows, path):
    """Grouped bars: accuracy per family and method, with the bootstrap intervals as error bars."""
    plt = pyplot()
    names = list(dict.fromkeys(r["row"] for r in rows))
    methods = [m for m in METHODS if any(r["method"] == m for r in rows)]
    fig, ax = plt.subplots(figsize=(11, 4.5))
    width = 0.8 / len(methods)
    for k, method in enumerate(methods):
        cells = [next(r for r in rows if r["row"] == n and r["method"] == method) for n in names]
        acc = np.asarray([c["accuracy"] for c in cells])
        err = np.asarray([[a - c["low"] for a, c in zip(acc, cells)], [c["high"] - a for a, c in zip(acc, cells)]])
        ax.bar(np.arange(len(names)) + (k - (len(methods) - 1) / 2) * width, acc, width, yerr=err, capsize=2,
               label=method)
    ax.set_xticks(np.arange(len(names)), names, rotation=25, ha="right")
    ax.set(ylabel="exact-match accuracy (held-out scenes)", ylim=(0, 1))
    ax.grid(axis="y", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    save_png(fig, path)


def show_examples(model, vocab, test, correct, n, rng):
    """Generate the fine-tuned model's answers to n test records it gets right and n it gets wrong."""
    for want, label in ((True, "right"), (False, "wrong")):
        chosen = np.flatnonzero(correct == want)
        for i in rng.permutation(chosen)[:n]:
            r = test[i]
            answer = "".join(stream_text(model, vocab, format_prompt(r.instruction, r.input), 60, temperature=0,
                                         stop_id=vocab.end_id))
            print(f"\n[{label}, {r.family}, {r.play}] {r.instruction}")
            if r.input:
                print("    " + r.input.replace("\n", "\n    "))
            print(f"  expected: {r.output!r}\n  answered: {answer!r}")


def probe_pretrained(model, tok, test):
    """Does the pretrained model know the next speaker or line when asked in its own format, continuing the
    text, with no template? If it does not, no fine-tune can draw that knowledge out of it."""
    for family, ending in (("next_speaker", "\n\n"), ("next_line", "\n")):
        records = [r for r in test if r.family == family and set(r.input) <= set(tok.decode(range(tok.vocab_size)))]
        hits = 0
        for r in records:
            text = "".join(stream_text(model, tok, r.input + ending, 40, temperature=0))
            hits += (text.split(":")[0] if family == "next_speaker" else text.split("\n")[0]) == r.output
        print(f"the pretrained model continuing the plays' text itself: {hits} of {len(records)} {family} right")
    passages = [tok.encode(r.input) for r in test if r.family in READING][:50]
    first, second = copy_probe(model, passages)
    print(f"the pretrained model reading {len(passages)} test passages twice: {first:.2f} nats a token the first "
          f"time, {second:.2f} the second (a model that can copy drops far below the first)")


def untuned_first_lines(model, vocab, test):
    """The untuned model never writes the end marker, so it scores 0 by exact match; this reads the first line
    of its greedy continuation of the template as its answer instead, a lenient score for it alone."""
    hits = {}
    for r in test:
        n_tokens = len(vocab.encode(r.output)) + 2  # the answer and the newline that would end it
        text = "".join(stream_text(model, vocab, format_prompt(r.instruction, r.input), n_tokens, temperature=0,
                                   stop_id=vocab.end_id))
        hits.setdefault(r.family, []).append(text.split("\n")[0].strip() == r.output)
    print("untuned, its first line taken as the answer: " + ", ".join(
        f"{family} {sum(h)}/{len(h)}" for family, h in hits.items()))


def build_arg_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ckpt", help="pretrained checkpoint directory (else a model is pretrained here and cached)")
    p.add_argument("--out-dir", default="out/instruct", help="where the table, chart and fine-tuned checkpoint go")
    p.add_argument("--tiny", action="store_true", help="shrink everything to a seconds-long run (smoke test)")
    p.add_argument("--seed", type=int, default=0, help="seed for pretraining, the records and the batches")
    p.add_argument("--threads", type=int, default=min(2, nanograd.usable_cores()),
                   help="cores to use: kernel and BLAS threads, and the fine-tunes side by side in as many "
                        "processes of one thread each")
    add_progress_flag(p)
    g = p.add_argument_group("pretraining (without --ckpt)")
    add_pretraining_flags(g, iters=1000, recipe="modern")
    g = p.add_argument_group("the records and fine-tuning")
    g.add_argument("--train-records", type=int, default=5000, help="training records per reading family")
    g.add_argument("--knowledge-records", type=int, default=700,
                   help="training records per knowledge family (enough to learn the format; more do not teach "
                        "memory, and would take steps from reading)")
    g.add_argument("--val-records", type=int, default=40, help="validation records per family")
    g.add_argument("--test-records", type=int, default=100, help="test records per family")
    g.add_argument("--max-passage-chars", type=int, default=200, help="longest input passage of a reading task")
    g.add_argument("--speaker-list", choices=("lines", "commas"), default="lines",
                   help="answer format of 'speakers in order': one name a line, or 'A, B, A'")
    g.add_argument("--first-word-answer", choices=("tagged", "bare"), default="tagged",
                   help="answer format of 'the first word of a speech': the speech's tag then the word "
                        "('ROMEO:\\nNay'), or the word alone")
    g.add_argument("--steps", type=int, default=2500, help="most optimizer steps of each fine-tune")
    g.add_argument("--batch-size", type=int, default=16, help="records per step")
    g.add_argument("--lr", type=float, default=1e-3, help="peak learning rate of fine-tuning")
    g.add_argument("--scratch-lr", type=float, default=1e-3, help="peak learning rate from scratch")
    g.add_argument("--eval-every", type=int, default=250, help="steps between validation evaluations")
    g.add_argument("--patience", type=int, default=4, help="evaluations without improvement before stopping")
    g.add_argument("--examples", type=int, default=4, help="right and wrong answers to show")
    g.add_argument("--repeat-records", type=int, default=10000,
                   help="training records that ask to repeat a passage (taught, never scored: they teach copying)")
    g.add_argument("--arms", nargs="*", default=["scratch"], choices=("scratch", "unmasked"),
                   help="what else to train besides the fine-tune: from scratch, fine-tuned unmasked (none: quicker)")
    return p


def parse_args(argv=None):
    parser = build_arg_parser()
    return parse_with_tiny(parser, argv, TINY, ("pretrain_iters", "steps", "batch_size", "eval_every", "patience",
                                                "train_records", "knowledge_records", "val_records", "test_records"))


def main(argv=None):
    args = parse_args(argv)
    try:
        return run(args)
    except (OSError, ValueError, RuntimeError) as e:  # a bad checkpoint, records that do not fit
        sys.exit(f"error: {e}")


def run(args):
    """Pretrain (or load), fine-tune three ways, evaluate four models; returns {method: correct (N,)}."""
    nanograd.set_num_threads(args.threads)
    ckpt_dir = args.ckpt or pretrain(args)
    pretrained, tok = load_model(ckpt_dir)
    tokenizer_file = load_checkpoint(ckpt_dir).tokenizer_path
    train_sizes = {**dict.fromkeys(READING, args.train_records), **dict.fromkeys(KNOWLEDGE, args.knowledge_records)}
    sizes = {"train": train_sizes, "val": args.val_records, "test": args.test_records}
    records = make_records(sizes, seed=args.seed, max_passage_chars=args.max_passage_chars,
                           speaker_list=args.speaker_list, first_word_answer=args.first_word_answer)
    records["train"] += make_records({"train": args.repeat_records}, args.seed, AUXILIARY,
                                     args.max_passage_chars)["train"]
    texts = [r.instruction + r.input + r.output for split in records.values() for r in split]
    vocab = InstructVocab.for_texts(tok, pretrained.config.vocab_size, texts)
    print(f"added tokens: {vocab.added}")
    block = pretrained.config.block_size
    (train, train_records), (val, val_records), (test, test_records) = (
        encode_split(vocab, records[split], block, split) for split in ("train", "val", "test"))
    print("records per family (train / val / test): " + ", ".join(
        f"{f} {n}/{family_sizes(val_records).get(f, 0)}/{family_sizes(test_records).get(f, 0)}"
        for f, n in family_sizes(train_records).items())
        + f"; and {sum(r.family in AUXILIARY for r in train_records)} to repeat a passage (training only)")
    probe_pretrained(pretrained, tok, test_records)
    grow_token_embeddings(pretrained, vocab.size)
    base_state = {name: array.copy() for name, array in pretrained.state_dict().items()}
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)

    correct = {"untuned": greedy_correct(pretrained, test)}
    untuned_first_lines(pretrained, vocab, test_records)
    arms = [Arm("fine-tuned", True, True, args.lr)]
    if "unmasked" in args.arms:
        arms.append(Arm("fine-tuned, unmasked", True, False, args.lr))
    if "scratch" in args.arms:
        arms.append(Arm("from scratch", False, True, args.scratch_lr))
    settings = dict(steps=args.steps, batch_size=args.batch_size, eval_every=args.eval_every, patience=args.patience)
    print(f"training {len(arms)} arm{'s' * (len(arms) > 1)}"
          + (" side by side, a process of one thread each" if args.threads > 1 and len(arms) > 1 else ""))
    results = train_arms(arms, pretrained.config, base_state, vocab, (train, val, test), settings, args.seed,
                         workers=args.threads, progress=args.progress)
    models = {}
    for method, arm in results.items():
        correct[method] = arm.correct
        models[method] = GPT(GPTConfig(**vars(pretrained.config)))
        models[method].load_state_dict(arm.state)
        print(f"{method}: best val response loss {arm.result.best_val_loss:.3f} at step {arm.result.best_step} "
              f"(of {arm.result.curve[-1][0]} run); test exact match {arm.correct.mean():.3f}; {arm.seconds:.0f} s")
    save_instruct_checkpoint(out / "ckpt", models["fine-tuned"], vocab, tokenizer_file, args.steps)

    rows = report(correct, test_records, np.random.default_rng(args.seed))
    write_csv(rows, out / "accuracy.csv")
    plot([r for r in rows if r["method"] in METHODS], out / "accuracy.png")
    show_examples(models["fine-tuned"], vocab, test_records, correct["fine-tuned"], args.examples,
                  np.random.default_rng(args.seed))
    print(f"\nwrote {out / 'accuracy.csv'}, {out / 'accuracy.png'}; talk to the fine-tuned model with "
          f"python -m gpt.chat --ckpt {out / 'ckpt'}")
    return correct


if __name__ == "__main__":
    main()
