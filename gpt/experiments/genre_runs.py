"""The genre experiment's default run, as pieces any model family can use: the pretraining on the unlabelled
plays and the passages of each fold (the protocol itself is gpt/experiments/transfer.py).

examples/finetune_classifier.py pretrains its GPT and draws its passages with these very settings and
generators, so a model pretrained here is the same cached model, and a classifier trained on these passages
sees what the GPT classifiers of that example see.
"""
import dataclasses

import numpy as np

from gpt.train.corpus import cache_dir
from gpt.experiments.pretrain_cache import pretrain_key, train_cached
from gpt.model import RECIPES
from gpt.train import TrainConfig
from gpt.experiments.transfer import play_text, sample_passages, split_validation, training_plays, unlabelled_plays

# examples/finetune_classifier.py's default pretraining: a 4-layer, 128-wide GPT on a 1024-token BPE.
# GPT-2's recipe, which the fine-tuning figures in docs/ were measured with.
GENRE_PRETRAINING = dict(tokenizer="bpe", vocab_size=1024, n_layer=4, n_head=4, n_embd=128, block_size=128,
                         recipe="gpt2")


def pretrain_config(iters, seed, progress=None, **settings):
    """The TrainConfig of a pretraining of `iters` steps: GENRE_PRETRAINING, overridden by `settings` (another
    family, another size); out_dir, data and resume are filled in where it runs."""
    return TrainConfig(**{**GENRE_PRETRAINING, **settings}, max_iters=iters, warmup_iters=min(100, iters // 10),
                       eval_interval=max(1, iters // 4), eval_iters=10, sample_tokens=0, seed=seed, progress=progress)


def unlabelled_text(chars=None):
    """The text of the plays no fold labels (problem plays and romances), its first `chars` characters."""
    return "".join(play_text(play) for play in unlabelled_plays())[:chars]


def pretrain_on_unlabelled(config, chars=None):
    """Train `config` on the unlabelled plays, or find the run cached under its key; returns its checkpoint
    directory. The tokenizer is trained on the same text with the same settings, so two families pretrained
    with equal tokenizer settings read the same token ids."""
    text = unlabelled_text(chars)
    out = cache_dir() / f"finetune-pretrain-{pretrain_key(text, config)}"
    return train_cached(out, text, config, f"pretrained {config.max_iters} steps ({config.model}) on {len(text):,} "
                                              "characters of unlabelled plays")


@dataclasses.dataclass
class FoldPassages:
    train: object  # Passages the classifier learns from
    val: object  # Passages that choose its stopping step
    test: object  # Passages of the fold's test plays, which nothing else reads


def fold_passages(test_plays, k, seed, n_labelled, n_test, passage_tokens, play_tokens):
    """Fold k's passages, drawn from the generators examples/finetune_classifier.py draws them from: n_labelled
    from the training plays (a fifth kept for validation), n_test from the fold's test plays."""
    rng = np.random.default_rng([seed, k])
    labelled = sample_passages(training_plays(test_plays), n_labelled, passage_tokens, play_tokens, rng)
    test = sample_passages(test_plays, n_test, passage_tokens, play_tokens, rng)
    train, val = split_validation(labelled, rng)
    return FoldPassages(train, val, test)


def add_pretraining_flags(group, iters, sizes=True, recipe=None):
    """The pretraining flags the fine-tuning examples share, on an argparse group: --pretrain-iters (default
    `iters`), --pretrain-chars, --tokenizer, with `sizes` --vocab-size and the GPT's --n-layer, --n-head,
    --n-embd, --block-size (GENRE_PRETRAINING's values as defaults), and with a `recipe` --recipe (that
    default; gpt/model.py's RECIPES)."""
    group.add_argument("--pretrain-iters", type=int, default=iters, help="optimizer steps of pretraining")
    if recipe is not None:
        group.add_argument("--recipe", choices=sorted(RECIPES), default=recipe,
                           help="the GPT's recipe: parts, optimizer and training defaults (default %(default)s)")
    group.add_argument("--pretrain-chars", type=int, default=None, help="use only this many characters of text")
    group.add_argument("--tokenizer", choices=("char", "bpe"), default="bpe", help="tokenizer to train (default bpe)")
    if sizes:
        group.add_argument("--vocab-size", type=int, default=GENRE_PRETRAINING["vocab_size"],
                           help="vocabulary of the bpe tokenizer (default %(default)s)")
        for name in ("n_layer", "n_head", "n_embd", "block_size"):
            group.add_argument(f"--{name.replace('_', '-')}", type=int, default=GENRE_PRETRAINING[name],
                               help=f"{name} of the model (default %(default)s)")


def add_classifier_flags(group):
    """The classifier-training flags of the genre protocol (ULMFiT's fine-tuning against training from
    scratch), on an argparse group."""
    group.add_argument("--steps", type=int, default=150, help="optimizer steps for each classifier")
    group.add_argument("--batch-size", type=int, default=16, help="passages per step")
    group.add_argument("--lr", type=float, default=1e-3, help="(peak) learning rate of a fine-tuned model's head")
    group.add_argument("--lr-decay", type=float, default=2.6, help="each lower group's rate is this times smaller")
    group.add_argument("--unfreeze-every", type=int, default=20, help="steps between unfreezing the next group")
    group.add_argument("--scratch-lr", type=float, default=1e-3, help="(peak) learning rate of a from-scratch model")
    group.add_argument("--eval-every", type=int, default=25, help="steps between evaluations")


def parse_with_tiny(parser, argv, tiny, counts):
    """The examples' flags: parse `argv`; under --tiny, the settings `tiny` ({dest: value}) become the defaults
    and explicit flags still win over them; then each flag in `counts` must be at least 1 (a usage error
    naming it). `parser` has a --tiny flag of its own.

        args = parse_with_tiny(parser, ["--tiny", "--steps", "5"], dict(steps=2, n_embd=32), ["steps"])
        # args.steps == 5, args.n_embd == 32
    """
    args = parser.parse_args(argv)
    if args.tiny:
        parser.set_defaults(**tiny)
        args = parser.parse_args(argv)
    for name in counts:
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")
    return args
