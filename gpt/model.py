"""GPT on nanograd, in two recipes that share this file and differ line by line where they differ.

recipe="gpt2" is GPT-2 (2019) as nanoGPT trains it: token and position embeddings, pre-LayerNorm blocks
(causal self-attention, then a 4x MLP with GELU), a final LayerNorm, an output head tied to the token
embedding, AdamW. Parameter names match GPT-2 / nanoGPT, so `state_dict()` keys line up with theirs.
recipe="modern" swaps in what today's LLMs use (docs/recipes.md measures what each part is worth here):
rotary position embeddings instead of learned ones (Llama; RoPE), RMSNorm instead of LayerNorm and no biases
(Llama), QK-norm (queries and keys RMS-normalised per head), a squared-ReLU MLP instead of GELU, an untied
output head, the projections into the residual stream started at zero (modded-nanogpt), and Muon for the
blocks' matrices (nanograd/optim.py). Each part is also a field of GPTConfig, for taking them one at a time.

Training and generation run this one forward. Generation (gpt/generate.py) runs it under
`nanograd.no_grad()` with a KV cache, so each new token costs the work of one position.
"""
import math
from dataclasses import dataclass

import numpy as np

import gpt.generate
import nanograd.functional as F
from gpt.checks import check_ids, check_settings, check_targets
from nanograd import nn
from nanograd.flat_adamw import FlatAdamW
from nanograd.optim import Muon


# The parts of each recipe. Any part a GPTConfig is given overrides its recipe's. The rest are filled in when the
# config is built, so change recipes with a new GPTConfig(recipe=...): dataclasses.replace keeps the filled parts.
RECIPES = {
    "gpt2": dict(bias=True, positions="learned", norm="layer", mlp="gelu", qk_norm=False, tie_weights=True,
                 zero_init=False, optimizer="adamw"),
    "modern": dict(bias=False, positions="rotary", norm="rms", mlp="relu2", qk_norm=True, tie_weights=False,
                   zero_init=True, optimizer="muon"),
}
CHOICES = {"positions": ("learned", "rotary"), "norm": ("layer", "rms"), "mlp": ("gelu", "relu2"),
           "optimizer": ("adamw", "muon")}
MUON_LR = 0.01  # Muon's peak rate: 0.01 beat 0.02, 0.03 and 0.05 on the main job's model (docs/recipes.md)


@dataclass
class GPTConfig:
    block_size: int = 64  # longest context the model sees at once (learned positions: how many it has)
    vocab_size: int = 65
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = None  # biases in Linear and LayerNorm layers. This and every field below: None = the recipe's
    recipe: str = "gpt2"  # "gpt2" or "modern" (RECIPES above)
    positions: str = None  # "learned": a vector per position added to the input; "rotary": q and k turned by it
    norm: str = None  # "layer" (LayerNorm) or "rms" (RMSNorm)
    mlp: str = None  # the MLP's activation: "gelu" or "relu2" (max(x, 0)^2)
    qk_norm: bool = None  # RMS-normalise each head's queries and keys before their dot products
    tie_weights: bool = None  # the output head is the token embedding
    zero_init: bool = None  # the projections into the residual stream (and an untied head) start at zero
    optimizer: str = None  # configure_optimizers: "adamw", or "muon" for the blocks' matrices and AdamW for the rest

    def __post_init__(self):
        check_settings(self, counts=("block_size", "vocab_size", "n_layer", "n_head", "n_embd"),
                       fractions=("dropout",), label="GPTConfig.")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if self.recipe not in RECIPES:
            raise ValueError(f"GPTConfig: unknown recipe {self.recipe!r}; choose one of {sorted(RECIPES)}")
        for part, value in RECIPES[self.recipe].items():
            if getattr(self, part) is None:
                setattr(self, part, value)
        for part, allowed in CHOICES.items():
            if getattr(self, part) not in allowed:
                raise ValueError(f"GPTConfig: {part} must be one of {allowed}, got {getattr(self, part)!r}")
        if self.positions == "rotary" and (self.n_embd // self.n_head) % 2:
            raise ValueError(f"GPTConfig: rotary positions turn pairs, so the head size "
                             f"{self.n_embd // self.n_head} must be even")

    def weight_shapes(self):
        """(name, shape) of each weight that fixes this model's size, one at a time (a forged n_layer of 10**12
        costs nothing before the first missing block stops the check): what a stored config is checked against
        (gpt/storage/safetensors_header.py) before a model is built from it; names without
        GPT-2's optional "transformer." prefix."""
        C = self.n_embd
        yield "wte.weight", (self.vocab_size, C)
        if self.positions == "learned":
            yield "wpe.weight", (self.block_size, C)
        yield from ((f"h.{i}.ln_1.weight", (C,)) for i in range(self.n_layer))


def _norm(config):
    """The recipe's normalisation over the last axis of (B, T, C)."""
    if config.norm == "rms":
        return nn.RMSNorm(config.n_embd)
    return nn.LayerNorm(config.n_embd, bias=config.bias)


class CausalSelfAttention(nn.Module):
    def __init__(self, config, rng):
        self.n_head = config.n_head
        self.dropout = config.dropout
        self.rotary, self.qk_norm = config.positions == "rotary", config.qk_norm
        # One projection makes queries, keys and values: (B, T, C) -> (B, T, 3C), laid out [q | k | v].
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias, rng=rng)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias, rng=rng)
        # True: one fused op (fast, the default). False: the same attention written out in Tensor ops below,
        # which also keeps its attention weights in `self.att` (for drawing them; see gpt/attention_maps.py).
        self.fused = True
        self.att = None

    def forward(self, x, angles=None, cache=None):
        """x (B, T, C) -> (B, T, C). angles: with rotary positions, (cos, sin) (T, hs/2) of x's rows' positions
        (F.rotary_angles). `cache` (generation only): this layer's keys and values of earlier positions."""
        B, T, C = x.shape
        nh, hs = self.n_head, C // self.n_head
        qkv = self.c_attn(x).reshape(B, T, 3, nh, hs)  # (B, T, 3, nh, hs): q, k and v, each cut into nh heads
        q, k, v = qkv.transpose(2, 0, 3, 1, 4).unbind(0)  # each (B, nh, T, hs): a head's positions side by side
        if self.qk_norm:
            q, k = F.rms_norm(q), F.rms_norm(k)  # (B, nh, T, hs), each vector of RMS 1: no score can blow up
        if self.rotary:
            q, k = F.rotary(q, *angles), F.rotary(k, *angles)  # turned by position: q.k sees only distance
        if cache is not None:
            k, v = cache.append(k, v)  # (B, nh, S, hs): the positions so far (a sliding cache: the last block_size)
        if self.fused:
            y = F.scaled_dot_product_attention(q, k, v, causal=True)  # (B, nh, T, hs)
        else:
            S = k.shape[2]
            att = (q @ k.transpose(0, 1, 3, 2)) * (1.0 / math.sqrt(hs))  # (B, nh, T, S): how well q_i matches k_j
            att = att.masked_fill(F.causal_mask(T, S), -np.inf)  # no position looks at a later one
            att = F.softmax(att, axis=-1)  # (B, nh, T, S): each row sums to 1
            self.att = att.data
            y = att @ v  # (B, nh, T, hs): a weighted sum of the values
        y = y.transpose(0, 2, 1, 3).reshape(B, T, C)  # (B, T, C): the heads side by side again
        return F.dropout(self.c_proj(y), self.dropout, self.training)


class MLP(nn.Module):
    def __init__(self, config, rng):
        self.dropout = config.dropout
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias, rng=rng)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias, rng=rng)
        self.activation = F.relu_squared if config.mlp == "relu2" else F.gelu

    def forward(self, x):
        """x (B, T, C) -> (B, T, C), through 4C hidden units."""
        return F.dropout(self.c_proj(self.activation(self.c_fc(x))), self.dropout, self.training)


class Block(nn.Module):
    """A pre-norm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x)) (ln_*: LayerNorm or RMSNorm)."""

    def __init__(self, config, rng):
        self.ln_1 = _norm(config)
        self.attn = CausalSelfAttention(config, rng)
        self.ln_2 = _norm(config)
        self.mlp = MLP(config, rng)

    def forward(self, x, angles=None, cache=None):
        x = x + self.attn(self.ln_1(x), angles, cache)
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config, seed=0):
        """A GPT with GPT-2's initialisation, drawn from np.random.default_rng(seed)."""
        self.config = config
        rng = np.random.default_rng(seed)
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(config.vocab_size, config.n_embd, rng=rng)
        if config.positions == "learned":
            self.transformer.wpe = nn.Embedding(config.block_size, config.n_embd, rng=rng)
        self.transformer.h = nn.ModuleList([Block(config, rng) for _ in range(config.n_layer)])
        self.transformer.ln_f = _norm(config)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False, rng=rng)
        if config.tie_weights:  # the output head reads logits against the token embeddings themselves
            self.lm_head.weight = self.transformer.wte.weight
        self._init_weights(rng)

    def _init_weights(self, rng):
        """GPT-2: weights N(0, 0.02), biases 0, norm gains 1; the projections that write into the residual
        stream (`c_proj`) are scaled by 1/sqrt(2 n_layer), as each block adds two of them. With zero_init
        they (and an untied head) start at 0 instead: each block starts as the identity, and learns its way in."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, param in self.named_parameters():
            if param.ndim == 2:
                # Drawn in the parameter's own dtype, in place: a float64 draw would be a temporary twice the
                # size of the parameter (for GPT-2 small's embedding, 300 MB), setting the peak memory.
                rng.standard_normal(param.shape, dtype=param.dtype, out=param.data)
                param.data *= residual_std if name.endswith("c_proj.weight") else 0.02
                if self.config.zero_init and (name.endswith("c_proj.weight") or name == "lm_head.weight"):
                    param.data[...] = 0.0
            elif ".ln_" in name and name.endswith(".weight"):
                param.data[...] = 1.0
            else:
                param.data[...] = 0.0

    def num_parameters(self, non_embedding=True):
        """Parameter count; by default without the position embeddings (as nanoGPT reports it; the token
        embedding is counted because it doubles as the output head)."""
        n = sum(p.data.size for p in self.parameters())
        learned = self.config.positions == "learned"
        return n - self.transformer.wpe.weight.data.size if non_embedding and learned else n

    def _check_ids(self, idx, name="idx"):
        return check_ids(idx, self.config.vocab_size, name)

    def _check_length(self, length):
        if length > self.config.block_size:
            raise ValueError(
                f"sequence of length {length} is longer than block_size {self.config.block_size}; "
                f"crop the context to its last {self.config.block_size} tokens"
            )

    def _hidden(self, idx, cache=None):
        """Final hidden states (B, T, C) for ids idx (B, T), which follow the cache's positions if one is given."""
        start = 0 if cache is None else cache.length
        T = idx.shape[1]
        # Learned positions end at block_size. Rotary ones do not, and a sliding cache holds the last block_size.
        self._check_length(T if self.config.positions == "rotary" else start + T)
        positions = np.arange(start, start + T)  # (T,)
        x = F.embedding(idx, self.transformer.wte.weight)  # (B, T, C)
        angles = None
        if self.config.positions == "learned":
            x = x + F.embedding(positions, self.transformer.wpe.weight)  # (B, T, C) + (T, C)
        else:  # rotary: each position's (cos, sin) (T, hs/2), once for q and k of every layer
            angles = F.rotary_angles(positions, self.config.n_embd // self.config.n_head, x.dtype)
        x = F.dropout(x, self.config.dropout, self.training)
        for i, block in enumerate(self.transformer.h):
            x = block(x, angles, None if cache is None else cache.layers[i])
        return self.transformer.ln_f(x)

    def forward(self, idx, targets=None, cache=None):
        """idx (B, T) int ids -> (logits (B, T, vocab_size), mean cross-entropy loss or None).

        Targets (B, T) are the next ids; -1 marks positions to ignore. `cache` (a gpt.generate.KVCache, for
        generation under no_grad) holds the keys and values of earlier positions; idx continues them, and
        only the last position's logits (B, 1, vocab_size) are computed: generation needs no others."""
        idx = self._check_ids(idx)
        x = self._hidden(idx, cache)  # (B, T, C)
        if cache is not None:
            x = x[:, -1:]  # (B, 1, C): the output head is a vocab_size-wide product per position (as nanoGPT)
        logits = self.lm_head(x)  # (B, T, vocab_size), or (B, 1, vocab_size) with a cache
        if targets is None:
            return logits, None
        targets = check_targets(targets, idx, self.config.vocab_size)
        return logits, F.cross_entropy(logits, targets, ignore_index=-1)

    def hidden_states(self, idx):
        """Final hidden states (B, T, n_embd) for ids idx (B, T): the trunk without lm_head (for heads on top)."""
        return self._hidden(self._check_ids(idx))

    def configure_optimizers(self, weight_decay, learning_rate, betas, eps=1e-8, muon_lr=MUON_LR):
        """The optimizer of this model's training: configure_adamw below, or with optimizer="muon", Muon for the
        blocks' matrices at muon_lr (scaled with learning_rate's schedule) and AdamW for the rest."""
        if self.config.optimizer == "adamw":
            return configure_adamw(self.parameters(), weight_decay, learning_rate, betas, eps)
        hidden = [p for p in self.transformer.h.parameters() if p.ndim == 2]
        chosen = {id(p) for p in hidden}
        others = [p for p in self.parameters() if id(p) not in chosen]
        groups = [
            {"params": hidden, "use_muon": True, "lr": muon_lr, "lr_scale": muon_lr / learning_rate if learning_rate
             else 0.0},
            {"params": [p for p in others if p.ndim >= 2], "use_muon": False, "weight_decay": weight_decay},
            {"params": [p for p in others if p.ndim < 2], "use_muon": False, "weight_decay": 0.0},
        ]
        return Muon([g for g in groups if g["params"]], lr=learning_rate, betas=betas, eps=eps)

    def new_cache(self, batch_size):
        """An empty KV cache for generating batch_size sequences (see gpt/generate.py)."""
        return gpt.generate.KVCache(self.config, batch_size, self.transformer.wte.weight.dtype)

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=None):
        """idx (B, T) -> (B, T + max_new_tokens): idx followed by sampled ids (see gpt/generate.py)."""
        return gpt.generate.generate(self, idx, max_new_tokens, temperature, top_k, top_p, seed)


def configure_adamw(params, weight_decay, learning_rate, betas, eps=1e-8):
    """AdamW that decays the 2-D weights (matmuls, embeddings) but not biases or LayerNorm gains, as a FlatAdamW
    (nanograd/flat_adamw.py): building it moves each group's parameters into one array (their .data become
    views), so each step is one update per group. Shared by the GPT and the LSTM."""
    groups = [
        {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
        {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
    ]
    return FlatAdamW(groups, lr=learning_rate, betas=betas, eps=eps)
