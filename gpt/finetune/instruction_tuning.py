"""Instruction fine-tuning: train a GPT on encoded instruction records (gpt/finetune/instruction_data.py), stop
early on a validation split, and save / load the result as an ordinary checkpoint.

The step is the pretraining step (gpt/train/loop.py) on other batches: a random batch of records padded to its
longest, AdamW (weight decay on 2-D weights only), gradient clipping, a learning rate that warms up and
decays on a cosine, here from a small peak (a fine-tune should adjust the pretrained weights, not
overwrite them). Every `eval_every` steps the mean response loss on the validation records is measured, and
the weights of the best evaluation are kept; `patience` evaluations without a better one end training.

A fine-tuned checkpoint is a trainer checkpoint (gpt/storage/checkpoint.py) whose model has a grown
vocabulary; its `extra["instruct"]` lists the added tokens, so `python -m gpt.chat --ckpt PATH` rebuilds the
vocabulary.
"""
import dataclasses
from dataclasses import dataclass, field

import numpy as np

from gpt.storage.checkpoint import Checkpoint, load_checkpoint, save_checkpoint
from gpt.finetune.instruction_data import IGNORE, InstructVocab, collate, grow_token_embeddings
from gpt.model import GPTConfig
from gpt.train.loop import EarlyStopping, optimizer_step
from nanograd import optim
from tokenizer.progress import progress as progress_bar


@dataclass
class TuneResult:
    best_step: int
    best_val_loss: float
    curve: list = field(default_factory=list)  # (step, mean training loss since the last point, val loss)


def response_loss(model, encoded, batch_size=64):
    """Mean cross-entropy over the response tokens (and end markers) of `encoded`, prompts and padding not
    counted, in eval mode without a graph."""
    total, count = 0.0, 0
    with model.evaluating():
        for start in range(0, len(encoded), batch_size):
            x, y = collate(encoded[start : start + batch_size], pad_id=0, mask_prompt=True)
            n = int((y != IGNORE).sum())
            total += model(x, y)[1].item() * n
            count += n
    return total / max(count, 1)


def length_buckets(lengths, batch_size, rng, pool=8):
    """Endless batches (arrays of indices into `lengths`) of batch_size records each: `pool` batches' worth
    of records drawn at random without replacement, sorted by length, cut into batches, shuffled. A batch is
    padded to its longest record, so records of like length together pad less: with the play records
    (70-130 tokens) a step computes about a quarter fewer positions than on batches drawn whole at random."""
    lengths = np.asarray(lengths)
    batch_size = min(batch_size, len(lengths))
    while True:
        drawn = rng.choice(len(lengths), size=min(pool * batch_size, len(lengths)), replace=False)
        drawn = drawn[np.argsort(lengths[drawn], kind="stable")]
        batches = [drawn[i : i + batch_size] for i in range(0, len(drawn) - batch_size + 1, batch_size)]
        yield from (batches[k] for k in rng.permutation(len(batches)))


def fine_tune(model, vocab, train, val, steps, batch_size, lr, rng, eval_every=50, patience=None,
              mask_prompt=True, weight_decay=0.1, warmup=20, progress=False, bucket_pool=8, desc=None):
    """Train `model` on `train` [(ids, n_prompt)] for up to `steps` steps; keep the weights of the lowest
    validation response loss. mask_prompt=False also trains on the prompt tokens. bucket_pool > 1 batches
    records of like length together (length_buckets); 1 draws every batch at random. `progress` is a
    --progress flag's value (tokenizer/progress.py: None picks by the terminal), `desc` its label. Returns a
    TuneResult."""
    optimizer = model.configure_optimizers(weight_decay, lr, (0.9, 0.99))
    stopper = EarlyStopping(model, steps, eval_every, patience)
    model.train()
    batches = length_buckets([len(ids) for ids, _ in train], batch_size, rng, bucket_pool)

    def batch_loss():
        batch = [train[i] for i in next(batches)]
        return model(*collate(batch, pad_id=vocab.end_id, mask_prompt=mask_prompt))[1]

    def evaluate(step):  # True when training should stop
        val_loss = response_loss(model, val)
        return stopper.record(step, -val_loss, val_loss)

    evaluate(0)
    with progress_bar(steps, progress, desc=desc, leave=False) as bar:
        for step in range(1, steps + 1):
            rate = optim.cosine_lr(step - 1, lr, lr / 10, warmup, steps)
            loss, _ = optimizer_step(model, optimizer, rate, batch_loss)
            stopper.train_losses.append(loss)
            bar.set_postfix(loss=f"{loss:.4f}")
            bar.update()
            if stopper.due(step) and evaluate(step):
                break
    stopper.restore()
    return TuneResult(stopper.best_step, -stopper.best_score, stopper.curve)


def save_instruct_checkpoint(path, model, vocab, tokenizer_file, step, extra=None):
    """Write the fine-tuned model as a checkpoint that gpt.chat (and gpt.sample) can open."""
    extra = dict(extra or {}, instruct={"added_tokens": vocab.added, "base_vocab_size": vocab.base_size})
    ckpt = Checkpoint(model=model.state_dict(), config=dataclasses.asdict(model.config), step=step, extra=extra)
    save_checkpoint(path, ckpt, tokenizer_file=tokenizer_file)


def load_instruct_model(path):
    """(model in eval mode, InstructVocab, instruction-tuned?) from any checkpoint directory. A checkpoint that
    was never instruction-tuned gets the end marker (and any missing template character) added on the fly,
    with mean-initialised embeddings, so its untuned answers can be seen too."""
    ckpt = load_checkpoint(path)
    model, tok = ckpt.build_model(), ckpt.load_tokenizer()
    if not isinstance(model.config, GPTConfig):
        raise ValueError(f"checkpoint {path} holds a {type(model.config).__name__} model; instruction tuning "
                         f"needs a GPT")
    info = ckpt.extra.get("instruct")
    if info is None:
        vocab = InstructVocab.for_texts(tok, model.config.vocab_size, [])
        grow_token_embeddings(model, vocab.size)
    else:
        vocab = InstructVocab(tok, info["base_vocab_size"], info["added_tokens"])
        if vocab.size != model.config.vocab_size:
            raise ValueError(f"checkpoint {path}: {vocab.size} tokens in its vocabulary but "
                             f"{model.config.vocab_size} rows in its embedding")
    return model.eval(), vocab, info is not None
