"""ULMFiT's classifier (Howard & Ruder, 2018) on a pretrained LSTM language model (gpt/lstm.py).

    ids (B, T) -> embedding -> LSTM layers -> outputs of the top layer (B, T, H)
               -> concat pooling [h_T, max_t h_t, mean_t h_t] (B, 3H)
               -> dropout -> linear (3H -> 50) -> ReLU -> dropout -> linear (50 -> n_classes)

Concat pooling: the last state h_T has read the whole passage but is shaped to predict the next token; the
max over time keeps the strongest evidence for each feature wherever it occurs; the mean keeps what the whole
passage shares. ULMFiT found the three together better than h_T alone.

The head is ULMFiT's two blocks without their BatchNorm layers (nanograd has none; the pooled LSTM outputs lie in
(-1, 1) already, so there is little scale to normalise). The language model's decoder is dropped, as in ULMFiT:
a classifier never predicts tokens. Freezing, discriminative rates and evaluation come from
gpt/finetune/classifier.py.
"""
import copy

import numpy as np

import nanograd.functional as F
from gpt.finetune.classifier import Classifier
from nanograd import cat, nn

HEAD_WIDTH = 50  # ULMFiT's hidden width of the classifier head
HEAD_DROPOUT = (0.4, 0.1)  # ULMFiT's dropout on the pooled features, then on the head's hidden layer


def concat_pool(hidden):
    """hidden (B, T, H) -> (B, 3H): the last time step, the maximum over time and the mean over time."""
    return cat([hidden[:, -1], hidden.max(axis=1), hidden.mean(axis=1)], axis=-1)


class LSTMClassifier(Classifier):
    """An LSTM language model's embedding and LSTM layers (its weights shared, not copied), concat pooling and
    ULMFiT's two-layer head. Layer groups, top down: the head; each LSTM layer from the top; the embedding."""

    def __init__(self, lm, n_classes, seed=0, head_width=HEAD_WIDTH, head_dropout=HEAD_DROPOUT):
        if n_classes < 2:
            raise ValueError(f"a classifier needs at least 2 classes, got {n_classes}")
        if len(head_dropout) != 2 or not all(0.0 <= p < 1.0 for p in head_dropout):
            raise ValueError(f"head_dropout must be two probabilities in [0, 1), got {head_dropout}")
        # A shallow copy without the decoder (and the projection feeding it): the same embedding and LSTM
        # Parameters as `lm`, so parameters() and the layer groups hold only what the classifier uses.
        self.trunk = copy.copy(lm)
        for unused in ("decoder", "proj"):
            vars(self.trunk).pop(unused, None)
        self.n_classes = n_classes
        self.head_dropout = tuple(head_dropout)
        rng = np.random.default_rng(seed)
        dtype = lm.encoder.weight.dtype
        self.head_hidden = nn.Linear(3 * lm.config.n_hidden, head_width, dtype=dtype, rng=rng)
        self.head_out = nn.Linear(head_width, n_classes, dtype=dtype, rng=rng)

    def logits(self, idx):
        """Class logits (B, n_classes) for idx (B, T)."""
        features = concat_pool(self.trunk.hidden_states(idx))  # (B, 3H)
        x = self.head_hidden(F.dropout(features, self.head_dropout[0], self.training)).relu()  # (B, head_width)
        return self.head_out(F.dropout(x, self.head_dropout[1], self.training))  # (B, n_classes)

    def layer_groups(self):
        """The parameters in groups from the top of the network down: the head; each LSTM layer from the top;
        the embedding."""
        groups = [self.head_hidden.parameters() + self.head_out.parameters()]
        groups += [rnn.parameters() for rnn in reversed(self.trunk.rnns)]
        groups.append(self.trunk.encoder.parameters())
        return groups
