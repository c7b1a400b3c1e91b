"""Can a language model copy? The induction probe: read a text twice in one context and compare the loss on
the second reading with the loss on the first.

A model with induction heads (an attention head that finds where the current token occurred before and
predicts the token that followed it) predicts a repeat almost perfectly, so its loss on the second copy falls
far below that on the first; a model without them reads the second copy as if it were new. Copying is what
the reading questions of gpt/experiments/play_instructions.py need (a speaker's name, a speech's first word
are in the passage), so the probe says how much of that skill a fine-tune starts with.
"""
import numpy as np


def _token_nll(model, ids):
    """float (T-1,): -log p(ids[t+1] | ids[:t+1]) under `model`, for one id sequence of at most block_size."""
    logits = model(np.asarray([ids], dtype=np.int64))[0].data[0]  # (T, vocab)
    logits = logits - logits.max(axis=-1, keepdims=True)
    log_probs = logits - np.log(np.exp(logits).sum(axis=-1, keepdims=True))
    return -log_probs[np.arange(len(ids) - 1), np.asarray(ids[1:])]


def copy_probe(model, id_sequences):
    """(first, second): the mean loss per token (nats) on the first and on the second reading of each id
    sequence, each fed twice in a row (cut to half the model's context). The second reading's first token
    is not counted: nothing marks where the repeat starts."""
    half = model.config.block_size // 2
    first, second = [], []
    with model.evaluating():
        for ids in id_sequences:
            ids = list(ids)[:half]
            nll = _token_nll(model, ids + ids)
            n = len(ids)
            first.append(nll[: n - 1].mean())
            second.append(nll[n:].mean())
    return float(np.mean(first)), float(np.mean(second))
