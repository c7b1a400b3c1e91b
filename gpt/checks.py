"""What the models and the trainer refuse, checked once where a setting or an input arrives, with an error
that names it: settings out of range, token ids outside the vocabulary, targets that do not fit their inputs."""
import numbers

import numpy as np


def check_settings(config, counts=(), non_negative=(), fractions=(), label=""):
    """Raise ValueError naming the first field of `config` (a dataclass) out of its range: each of `counts`
    an integer >= 1, each of `non_negative` a number >= 0, each of `fractions` a number in [0, 1). `label`
    prefixes the field's name in the message. NaN is refused everywhere.

        check_settings(GPTConfig(), counts=["n_layer"], label="GPTConfig.")   # passes: n_layer = 4
        check_settings(cfg, counts=["n_layer"])   # n_layer = 0 -> "n_layer must be at least 1, got 0"
    """
    for name in counts:
        value = getattr(config, name)
        if not isinstance(value, numbers.Integral) or isinstance(value, bool):
            raise ValueError(f"{label}{name} must be an integer, got {value!r}")
        if value < 1:
            raise ValueError(f"{label}{name} must be at least 1, got {value!r}")
    for name in non_negative:
        if not getattr(config, name) >= 0:  # `not >=` also refuses NaN
            raise ValueError(f"{label}{name} must be >= 0, got {getattr(config, name)}")
    for name in fractions:
        if not 0 <= getattr(config, name) < 1:
            raise ValueError(f"{label}{name} must be in [0, 1), got {getattr(config, name)}")


def check_ids(idx, vocab_size, name="idx"):
    """idx as a 2-D integer array (B, T) of ids in [0, vocab_size), or a ValueError naming the first bad one.

        check_ids([[0, 5]], vocab_size=5)   # ValueError: idx[(0, 1)] = 5 is outside the vocabulary [0, 5)
    """
    idx = np.asarray(idx)
    if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
        raise ValueError(f"{name} must be a 2-D integer array (B, T), got {idx.dtype} of shape {idx.shape}")
    bad = np.argwhere((idx < 0) | (idx >= vocab_size))
    if len(bad):
        where = tuple(int(i) for i in bad[0])
        raise ValueError(f"{name}[{where}] = {int(idx[where])} is outside the vocabulary [0, {vocab_size})")
    return idx


def check_targets(targets, idx, vocab_size):
    """targets (B, T) as an array: next ids in [0, vocab_size), or -1 where a position is ignored."""
    targets = np.asarray(targets)
    if targets.shape != idx.shape:
        raise ValueError(f"targets shape {targets.shape} does not match idx shape {idx.shape}")
    if targets.size and (targets.min() < -1 or targets.max() >= vocab_size):
        raise ValueError(f"targets must be ids in [0, {vocab_size}) or -1 (ignored)")
    return targets
