"""Pretrained models cached by what decides their weights, so a second run of an experiment starts at once.

The key of a model is a digest of a format version, the text it is trained on, every training setting that
changes the weights, and the key of the model it continues from (if any). Where files go and how progress
is shown are not in it. A cached checkpoint whose step falls short of the run's (an interrupted run) is
resumed, not restarted.
"""
import dataclasses
import json

from gpt.storage.checkpoint import CheckpointError, load_checkpoint
from gpt.train.corpus import text_digest
from gpt.storage.atomic import write_atomic
from gpt.train import Trainer

# Part of every cache key of a pretrained model (and of the curve's results, which depend on it). Bump it when a
# change to the code makes the same settings produce different weights: the model, its initialisation, the
# trainer, the tokenizer or the text conversion. Version 1 keys missed that: the first published figures came
# from a model pretrained before the initialisation was redrawn in float32, and later runs reused it.
PRETRAIN_FORMAT_VERSION = 2
# TrainConfig fields that do not change the trained weights: where things go, and how progress is shown.
NOT_IN_KEY = ("out_dir", "data", "cache_dir", "resume", "progress")


def pretrain_key(text, config, base=None):
    """The cache key of a pretrained model: the format version, the text, every TrainConfig setting that
    changes the weights, and the key of the model it continues from (if any)."""
    settings = {name: value for name, value in dataclasses.asdict(config).items() if name not in NOT_IN_KEY}
    return text_digest(json.dumps({"version": PRETRAIN_FORMAT_VERSION, "settings": settings, "base": base,
                                   "text": text_digest(text)}, sort_keys=True))


def train_cached(out, text, config, done_message):
    """Train `config` on `text` in `out`, or return the checkpoint a run with the same key left there."""
    try:
        if load_checkpoint(out / "ckpt").step == config.max_iters:
            print(f"pretrained model: {out / 'ckpt'} (cached)")
            return out / "ckpt"
        resume = True  # an interrupted pretraining continues where it stopped
    except CheckpointError:
        resume = False
    out.mkdir(parents=True, exist_ok=True)
    data_file = out / "pretraining-text.txt"
    write_atomic(data_file, text.encode("utf-8"))
    result = Trainer(dataclasses.replace(config, out_dir=str(out), data=str(data_file), resume=resume)).train()
    if result.interrupted:
        raise RuntimeError("pretraining was interrupted; run again to continue it")
    print(f"{done_message}: val loss {result.val_loss:.3f} (cached in {out})")
    return out / "ckpt"
