"""Fine-tuning a pretrained language model for classification, the ULMFiT way: the classifier base, the GPT's
classifier, the slanted triangular schedule and `fit` (the LSTM's classifier is gpt/finetune/lstm_classifier.py).

A language model pretrained on unlabelled text already computes useful features of a passage; a small
labelled set then only has to teach a linear head to read them, and nudge the trunk. Three habits from
ULMFiT (Howard & Ruder, 2018) keep the nudging from erasing what pretraining learned:

- freeze the trunk at first, so the randomly initialised head does not push large gradients into it;
- unfreeze gradually from the top, one layer group at a time (the top layers are the most task-specific);
- discriminative learning rates: each group lower down learns `lr_decay` times more slowly (ULMFiT: 2.6);
- optionally, a slanted triangular learning rate (`slanted_triangular`): a short rise, then a long decay.

Frozen parameters get `requires_grad = False`, so no graph is built through them (a frozen trunk costs a
forward pass only) and the optimizer, which skips parameters without a gradient, leaves them untouched.

`fit` trains a classifier that way and keeps the weights of its best evaluation on a validation split
(early stopping), so the number of steps is chosen on labelled data, never on a test set.
"""
from dataclasses import dataclass, field

import numpy as np

import nanograd.functional as F
from gpt.train.loop import EarlyStopping, optimizer_step
from nanograd import Tensor, nn
from nanograd.flat_adamw import FlatAdamW

ULMFIT_LR_DECAY = 2.6
POOLING = ("mean", "last")


class Classifier(nn.Module):
    """What every classifier here shares: the loss, evaluation, freezing by layer groups and discriminative
    rates. A subclass sets self.n_classes and defines logits(idx) -> (B, n_classes) and layer_groups()."""

    def forward(self, idx, labels=None):
        """idx (B, T) int ids -> (logits (B, n_classes), mean cross-entropy or None); labels (B,) ints."""
        idx = np.asarray(idx)
        logits = self.logits(idx)  # (B, n_classes)
        if labels is None:
            return logits, None
        labels = np.asarray(labels)
        if labels.shape != (idx.shape[0],):
            raise ValueError(f"labels must have shape ({idx.shape[0]},), one per passage, got {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= self.n_classes):
            raise ValueError(f"labels must be class ids in [0, {self.n_classes})")
        return logits, F.cross_entropy(logits, labels)

    def evaluate(self, idx, labels, batch_size=64):
        """(predicted class ids (B,), mean cross-entropy) for passages idx (B, T), in eval mode without a graph."""
        with self.evaluating():
            logits = np.concatenate([self(idx[i : i + batch_size])[0].data for i in range(0, len(idx), batch_size)])
        return logits.argmax(axis=-1), F.cross_entropy(Tensor(logits), np.asarray(labels)).item()

    def predict(self, idx, batch_size=64):
        """Class ids (B,) for passages idx (B, T), in eval mode without a graph."""
        return self.evaluate(idx, np.zeros(len(idx), np.int64), batch_size)[0]

    def set_trainable(self, n_groups):
        """Train the top `n_groups` layer groups and freeze the rest: 1 trains the head alone (a frozen
        trunk), len(layer_groups()) trains everything."""
        groups = self.layer_groups()
        if not 1 <= n_groups <= len(groups):
            raise ValueError(f"n_groups must be in [1, {len(groups)}], got {n_groups}")
        for depth, params in enumerate(groups):
            for param in params:
                param.requires_grad = depth < n_groups
                param.grad = None

    def configure_optimizer(self, lr, lr_decay=ULMFIT_LR_DECAY, weight_decay=0.01, betas=(0.9, 0.99)):
        """FlatAdamW with one parameter group per layer group: the head learns at `lr`, each group below at
        `lr_decay` times less (lr_decay=1 gives every parameter the same rate)."""
        groups = [
            {"params": params, "lr": lr / lr_decay**depth}
            for depth, params in enumerate(self.layer_groups())
        ]
        return FlatAdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay)


class GPTClassifier(Classifier):
    """A GPT trunk and a linear head: the trunk's final hidden states (B, T, C), pooled to (B, C) -> class logits.

    pool="last" reads the last position, the only one that has attended to the whole passage in a causal
    model; but a language model shapes that state to predict the *next* token, so it mostly describes the
    passage's last few words. pool="mean" averages every position's state, so each word of the passage
    speaks, and what many of them share (the genre, the subject) adds up while the word-level detail averages
    out. Measured on the genre task of examples/finetune_classifier.py (a frozen pretrained trunk, a linear
    classifier fitted on 160 passages of 128 tokens, 4 folds of held-out plays): the mean gave 0.45 accuracy,
    the last position 0.35, chance 0.33; hence the default. The trunk's output head (lm_head) is not used.
    """

    def __init__(self, trunk, n_classes, seed=0, pool="mean"):
        if n_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
        if pool not in POOLING:
            raise ValueError(f"pool must be one of {', '.join(POOLING)}, got {pool!r}")
        self.trunk = trunk
        self.pool = pool
        self.n_classes = n_classes
        rng = np.random.default_rng(seed)
        self.head = nn.Linear(trunk.config.n_embd, n_classes, dtype=trunk.transformer.wte.weight.dtype, rng=rng)
        # GPT-2's initialisation, as for every other Linear of the trunk.
        self.head.weight.data[...] = rng.normal(0.0, 0.02, self.head.weight.shape)
        self.head.bias.data[...] = 0.0

    def logits(self, idx):
        """Class logits (B, n_classes) for idx (B, T). A passage longer than the trunk's block_size is read as
        consecutive windows of block_size tokens, each on its own (T must then be a multiple of block_size),
        and pooled over all its positions."""
        hidden = self._hidden_states(idx)  # (B, T, C)
        features = hidden.mean(axis=1) if self.pool == "mean" else hidden[:, -1]  # (B, C)
        return self.head(features)  # (B, n_classes)

    def _hidden_states(self, idx):
        """The trunk's final hidden states (B, T, C) for idx (B, T), in windows of block_size if T is longer."""
        window = self.trunk.config.block_size
        if idx.ndim != 2 or idx.shape[1] <= window:
            return self.trunk.hidden_states(idx)  # the trunk checks the ids and names what is wrong
        B, T = idx.shape
        if T % window:
            raise ValueError(f"a passage of {T} tokens is longer than block_size {window}, so it is read in "
                             f"windows of {window}: its length must be a multiple of {window}")
        windows = self.trunk.hidden_states(idx.reshape(B * T // window, window))  # (B * T/window, window, C)
        return windows.reshape(B, T, windows.shape[-1])

    def layer_groups(self):
        """The parameters in groups from the top of the network down: the head; the last block with the final
        norm; each block below it; the token and (learned) position embeddings."""
        t = self.trunk.transformer
        groups = [self.head.parameters(), t.ln_f.parameters() + t.h[-1].parameters()]
        groups += [block.parameters() for block in reversed(t.h[:-1])]
        learned = self.trunk.config.positions == "learned"
        groups.append(t.wte.parameters() + (t.wpe.parameters() if learned else []))
        return groups


def slanted_triangular(t, total, lr_max, cut_frac=0.1, ratio=32):
    """ULMFiT's slanted triangular learning rate (Howard & Ruder 2018, eq. 3) at iteration t of `total`: a short
    linear rise from lr_max / ratio to lr_max over the first cut_frac of the iterations, then a long linear
    decay back to lr_max / ratio at t = total. The quick rise moves the weights to a good region early; the
    long decay then refines them there.

    >>> [round(slanted_triangular(t, 100, 1.0), 3) for t in (0, 5, 10, 55, 100)]
    [0.031, 0.516, 1.0, 0.516, 0.031]
    """
    if not 0 <= t <= total:
        raise ValueError(f"iteration t must be in [0, total={total}], got {t}")
    if not 0.0 < cut_frac < 1.0 or ratio < 1:
        raise ValueError(f"cut_frac must be in (0, 1) and ratio at least 1, got {cut_frac} and {ratio}")
    cut = max(1, int(total * cut_frac))
    # The decay's length is the paper's cut * (1 / cut_frac - 1), which is total - cut when cut is exact.
    p = t / cut if t < cut else 1 - (t - cut) / max(total - cut, 1)
    return lr_max * (1 + p * (ratio - 1)) / ratio


@dataclass
class FitResult:
    best_step: int  # the step whose weights the classifier keeps
    best_val_accuracy: float
    best_val_loss: float
    # One point per evaluation: (step, mean training loss since the last point, validation accuracy).
    curve: list = field(default_factory=list)


def fit(clf, optimizer, train, val, steps, batch_size, eval_every, rng, unfreeze_every=None, on_eval=None,
        schedule=None):
    """Train `clf` for `steps` steps on (ids (N, T), labels (N,)) pairs and keep its weights from the
    evaluation with the best validation accuracy, the lower validation loss breaking ties (accuracy first:
    a classifier growing confident grows its loss on the passages it still gets wrong while it gets more
    of them right, so the loss alone stops too early). Returns a FitResult.

    unfreeze_every=None trains every parameter from the start; an integer k trains the head alone for the
    first k steps, then unfreezes one more layer group every k steps (ULMFiT's gradual unfreezing).
    on_eval(step), if given, runs at every evaluation (to record a test curve that takes no part in the
    choice). Batches come from `rng`, so two classifiers given equal generators see the same batches.
    schedule(t), if given, scales every group's learning rate (its rate in `optimizer` at the start) at
    training iteration t = 0 .. steps - 1, e.g. `lambda t: slanted_triangular(t, steps, 1.0)`; without it the
    rates stay constant.
    """
    train_ids, train_labels = train
    n_groups = len(clf.layer_groups())
    clf.set_trainable(1 if unfreeze_every else n_groups)
    clf.train()
    start_rates = [group["lr"] for group in optimizer.param_groups]
    stopper = EarlyStopping(clf, steps, eval_every)

    def batch_loss():
        batch = rng.choice(len(train_labels), size=min(batch_size, len(train_labels)), replace=False)
        return clf(train_ids[batch], train_labels[batch])[1]

    def evaluate(step):
        predicted, val_loss = clf.evaluate(*val)
        val_accuracy = float(np.mean(predicted == val[1]))
        if on_eval is not None:
            on_eval(step)
        stopper.record(step, (val_accuracy, -val_loss), val_accuracy)

    evaluate(0)
    for step in range(1, steps + 1):
        if unfreeze_every and (step - 1) % unfreeze_every == 0:
            clf.set_trainable(min(1 + (step - 1) // unfreeze_every, n_groups))
        scale = 1.0 if schedule is None else schedule(step - 1)
        loss, _ = optimizer_step(clf, optimizer, [rate * scale for rate in start_rates], batch_loss)
        stopper.train_losses.append(loss)
        if stopper.due(step):
            evaluate(step)
    stopper.restore()
    clf.set_trainable(n_groups)
    best_val_accuracy, best_neg_loss = stopper.best_score
    return FitResult(stopper.best_step, best_val_accuracy, -best_neg_loss, stopper.curve)
