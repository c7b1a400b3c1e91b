"""Fine-tuning a pretrained GPT for classification, the ULMFiT way.

A language model pretrained on unlabelled text already computes useful features of a passage; a small
labelled set then only has to teach a linear head to read them, and nudge the trunk. Three habits from
ULMFiT (Howard & Ruder, 2018) keep the nudging from erasing what pretraining learned:

- freeze the trunk at first, so the randomly initialised head does not push large gradients into it;
- unfreeze gradually from the top, one layer group at a time (the top layers are the most task-specific);
- discriminative learning rates: each group lower down learns `lr_decay` times more slowly (ULMFiT: 2.6).

Frozen parameters get `requires_grad = False`, so no graph is built through them (a frozen trunk costs a
forward pass only) and the optimizer, which skips parameters without a gradient, leaves them untouched.
"""
import numpy as np

import nanograd.functional as F
from nanograd import nn, no_grad, optim

ULMFIT_LR_DECAY = 2.6


class GPTClassifier(nn.Module):
    """A GPT trunk and a linear head: the final hidden state of the last position -> class logits.

    In a causal model only the last position has attended to the whole passage, so its hidden state (after
    the final LayerNorm) summarises it. The trunk's output head (lm_head) is not used.
    """

    def __init__(self, trunk, n_classes, seed=0):
        if n_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
        self.trunk = trunk
        rng = np.random.default_rng(seed)
        self.head = nn.Linear(trunk.config.n_embd, n_classes, dtype=trunk.transformer.wte.weight.dtype, rng=rng)
        # GPT-2's initialisation, as for every other Linear of the trunk.
        self.head.weight.data[...] = rng.normal(0.0, 0.02, self.head.weight.shape)
        self.head.bias.data[...] = 0.0

    def forward(self, idx, labels=None):
        """idx (B, T) int ids -> (logits (B, n_classes), mean cross-entropy or None); labels (B,) ints."""
        hidden = self.trunk.hidden_states(idx)  # (B, T, C), the trunk without its lm_head
        logits = self.head(hidden[:, -1])  # (B, n_classes)
        if labels is None:
            return logits, None
        labels = np.asarray(labels)
        if labels.shape != (idx.shape[0],):
            raise ValueError(f"labels must have shape ({idx.shape[0]},), one per passage, got {labels.shape}")
        if labels.size and (labels.min() < 0 or labels.max() >= self.head.weight.shape[0]):
            raise ValueError(f"labels must be class ids in [0, {self.head.weight.shape[0]})")
        return logits, F.cross_entropy(logits, labels)

    def predict(self, idx, batch_size=64):
        """Class ids (B,) for passages idx (B, T), in eval mode without a graph."""
        was_training = self.training
        self.eval()
        try:
            with no_grad():
                return np.concatenate([
                    self(idx[i : i + batch_size])[0].data.argmax(axis=-1) for i in range(0, len(idx), batch_size)
                ])
        finally:
            self.train(was_training)

    def layer_groups(self):
        """The parameters in groups from the top of the network down: the head; the last block with the final
        LayerNorm; each block below it; the token and position embeddings."""
        t = self.trunk.transformer
        groups = [self.head.parameters(), t.ln_f.parameters() + t.h[-1].parameters()]
        groups += [block.parameters() for block in reversed(t.h[:-1])]
        groups.append(t.wte.parameters() + t.wpe.parameters())
        return groups

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
        """AdamW with one parameter group per layer group: the head learns at `lr`, each group below at
        `lr_decay` times less (lr_decay=1 gives every parameter the same rate)."""
        groups = [
            {"params": params, "lr": lr / lr_decay**depth}
            for depth, params in enumerate(self.layer_groups())
        ]
        return optim.AdamW(groups, lr=lr, betas=betas, weight_decay=weight_decay)
