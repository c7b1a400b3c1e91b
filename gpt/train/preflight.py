"""What a training run would refuse, found by the process that starts it before it chooses or starts MPI ranks.

A mistake in the flags or the data (`--data` missing, empty or not text, `--batch-size 0`, `--resume` without
a checkpoint, an out dir in use) then gets the answer one process gives: one line, exit status 1, and no
launcher started. The checks are the trainer's own: the functions Trainer calls when it starts, here called
first. What only a running rank can find (a checkpoint whose optimizer state does not fit the model, a full
disk) ends every rank through distributed.World.fail.

    check_run(TrainConfig(data="/nonexistent.txt"), given={"data"})  # FileNotFoundError: data file not found
"""
import dataclasses
from pathlib import Path

from gpt.train import corpus

from gpt.train import data

from gpt import families

from gpt.train import resume
from gpt.storage.checkpoint import load_checkpoint
from gpt.train.outdir_lock import OutDirLock


def check_run(config, given):
    """Raise what Trainer(config, given=given) would raise at its start about the settings, the data, the
    checkpoint to resume and the out dir (ValueError, OSError, RuntimeError and their subclasses), without
    tokenizing the text or building the model. `config` is a TrainConfig, already checked by its constructor."""
    ckpt_dir = Path(config.out_dir) / "ckpt"
    if config.resume:
        ckpt = load_checkpoint(ckpt_dir)
        config, _ = resume.resume_config(config, ckpt.extra.get("train_config", {}), given, ckpt_dir)
        ckpt.model_config()
        resume.load_same_text(ckpt, config.data, config.cache_dir, ckpt_dir)
    else:
        corpus.load_text(config.data, config.cache_dir)
        data.check_tokenizer(config.tokenizer, config.vocab_size)
        # The vocabulary comes from the tokenizer, not yet built: any size lets the rest of the config be checked.
        families.new_config(config.model, dict(dataclasses.asdict(config), vocab_size=1))
    lock = OutDirLock(config.out_dir)  # busy: OutDirBusy; left by a killed run: taken over, said, released
    lock.acquire()
    lock.release()
