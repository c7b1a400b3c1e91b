"""What `--resume` does with settings that differ from the checkpoint's run: nothing is silently ignored.

A checkpoint records every setting of the run that wrote it. A resumed run takes each setting you did not
give from there; each one you gave that differs is either
- refused, if it would change what the checkpoint is: the model family and its architecture, the tokenizer,
  the data, the seed (the saved weights, ids and random streams only mean something under them), or
- applied and reported, if it only changes how training goes on: steps, schedule, optimizer, batch,
  evaluation, dropout, sampling.

    resuming from step 500 of out/shakespeare/ckpt; changed from the checkpoint's run: --max-iters 500 -> 1000
"""
import dataclasses

from gpt.train import corpus

# Settings a resumed run cannot change.
# The data is fixed too, but by its text, not its path (check_same_data): a moved file may be given.
FIXED = ("model", "n_layer", "n_head", "n_embd", "n_hidden", "tie_weights", "block_size", "bias", "tokenizer",
         "vocab_size", "seed")
# Where this run writes and whether it shows progress: never compared.
LOCAL = ("out_dir", "resume", "progress")


class ResumeConflict(ValueError):
    """A setting given on resume contradicts the checkpoint's."""


def flag(name):
    return "--" + name.replace("_", "-")


def resume_config(config, saved, given, ckpt_dir):
    """(config of the resumed run, [(setting, checkpoint's value, new value)] applied) from `config`, the
    checkpoint's `saved` settings (a dict) and the names of the settings the user `given` explicitly.
    Raises ResumeConflict naming every refused flag. `data` is compared by content, see check_same_data."""
    taken, changed, refused = {}, [], []
    for name in (f.name for f in dataclasses.fields(config)):
        if name in LOCAL or name not in saved:
            continue
        new, old = getattr(config, name), saved[name]
        if name not in given:
            taken[name] = old
        elif new != old:
            (refused if name in FIXED else changed).append((name, old, new))
    if refused:
        listed = ", ".join(f"{flag(n)} {new} (the checkpoint has {old})" for n, old, new in refused)
        raise ResumeConflict(f"cannot resume {ckpt_dir} with {listed}: these settings fix what the checkpoint "
                             "holds; drop them, or start a new run in another --out-dir")
    return dataclasses.replace(config, **taken), changed


def load_same_text(ckpt, data, cache, ckpt_dir):
    """The text of `data` (see gpt/train/corpus.py), refused before it is tokenized if it is not the text the
    checkpoint trained on (their digests differ)."""
    text = corpus.load_text(data, cache)
    saved = ckpt.extra.get("data_digest")
    if saved is not None and saved != corpus.text_digest(text):
        raise ResumeConflict(f"cannot resume {ckpt_dir} with --data {data}: its text differs from the text the "
                             "checkpoint was trained on (another file, or the file changed)")
    return text


def describe(step, ckpt_dir, changed):
    """The line a resumed run prints."""
    line = f"resuming from step {step} of {ckpt_dir}"
    if changed:
        line += "; changed from the checkpoint's run: " + ", ".join(f"{flag(n)} {old} -> {new}"
                                                                   for n, old, new in changed)
    return line


def given_flags(parser, argv, names):
    """The settings among `names` that the command line `argv` sets explicitly (even to their default)."""
    unset = object()
    parser.set_defaults(**{name: unset for name in names})
    args = parser.parse_args(argv)
    return {name for name in names if getattr(args, name) is not unset}


def given_by_default(config):
    """For runs built in code: the settings that differ from TrainConfig's defaults (for the same model family
    and recipe, whose defaults differ: n_layer, batch_size, ...) count as given."""
    defaults = type(config)(model=config.model, recipe=config.recipe)
    return {f.name for f in dataclasses.fields(config) if getattr(config, f.name) != getattr(defaults, f.name)}
