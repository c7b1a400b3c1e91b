"""An LSTM language model (AWD-LSTM style, as ULMFiT pretrains), trained, evaluated, checkpointed and sampled
by the same code as the GPT: it has the GPT's interface (forward(idx, targets) -> (logits, loss), hidden_states,
configure_optimizers, generate, new_cache).

    ids (B, T) -> embedding (B, T, n_embd) -> n_layer LSTM layers (B, T, n_hidden) -> [projection to n_embd,
    when the output is tied to the embedding] -> decoder -> logits (B, T, vocab_size)

Every regulariser of AWD-LSTM (Merity et al. 2017) is a setting, all off by default: embed_drop drops whole
tokens from the embedding table, input_drop / hidden_drop / output_drop are locked (variational) dropout on
the embeddings, between layers and on the last layer's output, weight_drop is DropConnect on each W_hh, and
tie_weights makes the decoder read the embedding table itself. Without them, it is the plain stack
`nn.Embedding -> nn.LSTM -> nn.Linear` with PyTorch's initialisation.

Generation carries each layer's (h, c) from token to token (`LSTMState`), so a new token costs one step;
unlike the GPT, nothing limits how far back the state remembers.
"""
from dataclasses import dataclass

import numpy as np

import gpt.generate
import nanograd.functional as F
from gpt.checks import check_ids, check_settings, check_targets
from gpt.model import configure_adamw
from nanograd import nn
from nanograd.recurrent import embedding_dropout, locked_dropout


@dataclass
class LSTMConfig:
    block_size: int = 64  # tokens per training sequence (backpropagation through time stops at its start)
    vocab_size: int = 65
    n_layer: int = 2
    n_embd: int = 128  # embedding width
    n_hidden: int = 232  # LSTM state width (h and c)
    embed_drop: float = 0.0  # AWD-LSTM's dropoute: whole tokens of the embedding table
    input_drop: float = 0.0  # dropouti: locked dropout on the embeddings
    hidden_drop: float = 0.0  # dropouth: locked dropout between LSTM layers
    output_drop: float = 0.0  # dropout: locked dropout on the last layer's output
    weight_drop: float = 0.0  # wdrop: DropConnect on every W_hh
    tie_weights: bool = False  # the decoder reads the embedding table (through a projection if n_hidden != n_embd)

    def __post_init__(self):
        check_settings(self, counts=("block_size", "vocab_size", "n_layer", "n_embd", "n_hidden"),
                       fractions=("embed_drop", "input_drop", "hidden_drop", "output_drop", "weight_drop"),
                       label="LSTMConfig.")

    def weight_shapes(self):
        """(name, shape) of each weight that fixes this model's size (the embedding, each layer's W_hh), one at
        a time (see GPTConfig's)."""
        H = self.n_hidden
        yield "encoder.weight", (self.vocab_size, self.n_embd)
        yield from ((f"rnns.{k}.weight_hh_l0", (4 * H, H)) for k in range(self.n_layer))


def hidden_matching(n_params, n_embd, vocab_size, n_layer=2, tie_weights=False):
    """The LSTM hidden width (a multiple of 4) whose model's parameter count comes closest to n_params."""
    def count(hidden):
        config = LSTMConfig(vocab_size=vocab_size, n_layer=n_layer, n_embd=n_embd, n_hidden=hidden,
                            tie_weights=tie_weights)
        return LSTMLM(config).num_parameters()
    best = None
    for hidden in range(16, 1025, 4):  # the count grows with the width: stop at the first one past n_params
        n = count(hidden)
        if best is None or abs(n - n_params) < abs(best[1] - n_params):
            best = (hidden, n)
        if n > n_params:
            break
    return best[0]


class LSTMState:
    """Generation's memory: each layer's (h, c), each (1, B, n_hidden), after the tokens seen so far."""

    full = False  # the GPT's window can fill up; an LSTM's state never does

    def __init__(self, n_layer):
        self.layers = [None] * n_layer
        self.length = 0

    def clear(self):
        self.layers = [None] * len(self.layers)
        self.length = 0


class LSTMLM(nn.Module):
    def __init__(self, config, seed=0):
        """Initialised as PyTorch initialises its layers, drawn from np.random.default_rng(seed)."""
        self.config = c = config
        rng = np.random.default_rng(seed)
        self.encoder = nn.Embedding(c.vocab_size, c.n_embd, rng=rng)
        self.rnns = nn.ModuleList([nn.LSTM(c.n_embd if k == 0 else c.n_hidden, c.n_hidden, weight_drop=c.weight_drop,
                                           rng=rng) for k in range(c.n_layer)])
        width = c.n_hidden
        if c.tie_weights and c.n_hidden != c.n_embd:
            self.proj = nn.Linear(c.n_hidden, c.n_embd, bias=False, rng=rng)  # back to the embedding's width
            width = c.n_embd
        self.decoder = nn.Linear(width, c.vocab_size, rng=rng)
        if c.tie_weights:
            self.decoder.weight = self.encoder.weight  # (vocab_size, n_embd): logits read against the embeddings

    def num_parameters(self):
        return sum(p.data.size for p in self.parameters())

    def _check_ids(self, idx, name="idx"):
        return check_ids(idx, self.config.vocab_size, name)

    def forward(self, idx, targets=None, cache=None):
        """idx (B, T) int ids -> (logits (B, T, vocab_size), mean cross-entropy loss or None).

        Targets (B, T) are the next ids, -1 to ignore a position. With `cache` (an LSTMState, for generation
        under no_grad) the layers start from its states and leave theirs in it, and only the last position's
        logits (B, 1, vocab_size) are computed."""
        idx = self._check_ids(idx)
        x = self.hidden_states(idx, cache)  # (B, T, n_hidden)
        if cache is not None:
            cache.length += idx.shape[1]
            x = x[:, -1:]  # (B, 1, n_hidden)
        if hasattr(self, "proj"):
            x = self.proj(x)  # (B, T, n_embd)
        logits = self.decoder(x)  # (B, T, vocab_size)
        if targets is None:
            return logits, None
        return logits, F.cross_entropy(logits, check_targets(targets, idx, self.config.vocab_size), ignore_index=-1)

    def hidden_states(self, idx, cache=None):
        """The last LSTM layer's outputs (B, T, n_hidden) for ids idx (B, T), after its dropout: the trunk
        without the decoder (for heads on top). With `cache`, the layers start from its states and leave theirs."""
        c = self.config
        idx = self._check_ids(idx)
        table = embedding_dropout(self.encoder.weight, c.embed_drop, self.training)  # (vocab_size, n_embd)
        x = locked_dropout(F.embedding(idx, table), c.input_drop, self.training)  # (B, T, n_embd)
        for k, rnn in enumerate(self.rnns):
            x, state = rnn(x, None if cache is None else cache.layers[k])  # (B, T, n_hidden)
            if cache is not None:
                cache.layers[k] = state
            x = locked_dropout(x, c.hidden_drop if k < c.n_layer - 1 else c.output_drop, self.training)
        return x

    def new_cache(self, batch_size):
        return LSTMState(self.config.n_layer)

    def configure_optimizers(self, weight_decay, learning_rate, betas, eps=1e-8, muon_lr=None):
        """AdamW that decays the 2-D weights (matrices, embeddings) but not biases, as the GPT-2 recipe does
        (muon_lr is the GPT's modern recipe's, unused here)."""
        return configure_adamw(self.parameters(), weight_decay, learning_rate, betas, eps)

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=None):
        """idx (B, T) -> (B, T + max_new_tokens): idx followed by sampled ids (see gpt/generate.py)."""
        return gpt.generate.generate(self, idx, max_new_tokens, temperature, top_k, top_p, seed)
