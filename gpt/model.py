"""GPT-2, written on nanograd: token and position embeddings, pre-LayerNorm transformer blocks
(causal self-attention, then a 4x MLP with GELU), a final LayerNorm, and an output head tied to the
token embedding. Parameter names match GPT-2 / nanoGPT, so `state_dict()` keys line up with theirs.

Generation runs the same model without autograd and with a KV cache (gpt/inference.py), so each new
token costs the work of one position instead of a pass over the whole context.
"""
import math
from dataclasses import dataclass

import numpy as np

import nanograd.functional as F
from nanograd import nn, optim
from gpt import inference
from gpt.sampling import sample_next_token


@dataclass
class GPTConfig:
    block_size: int = 64  # longest context the model sees (number of position embeddings)
    vocab_size: int = 65
    n_layer: int = 4
    n_head: int = 4
    n_embd: int = 128
    dropout: float = 0.0
    bias: bool = True  # biases in Linear and LayerNorm layers, as in GPT-2

    def __post_init__(self):
        for name in ("block_size", "vocab_size", "n_layer", "n_head", "n_embd"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"GPTConfig.{name} must be a positive integer, got {value!r}")
        if self.n_embd % self.n_head:
            raise ValueError(f"GPTConfig: n_embd {self.n_embd} is not divisible by n_head {self.n_head}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"GPTConfig.dropout must be in [0, 1), got {self.dropout}")


class CausalSelfAttention(nn.Module):
    def __init__(self, config, rng):
        self.n_head = config.n_head
        self.dropout = config.dropout
        # One projection makes queries, keys and values: (B, T, C) -> (B, T, 3C), laid out [q | k | v].
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias, rng=rng)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias, rng=rng)

    def forward(self, x):
        """x (B, T, C) -> (B, T, C)."""
        # Each position's query meets the keys of positions up to its own, in n_head heads of C // n_head
        # channels; the heads are read in place from the [q | k | v] layout (see F.causal_self_attention).
        y = F.causal_self_attention(self.c_attn(x), self.n_head)  # (B, T, C)
        return F.dropout(self.c_proj(y), self.dropout, self.training)


class MLP(nn.Module):
    def __init__(self, config, rng):
        self.dropout = config.dropout
        self.c_fc = nn.Linear(config.n_embd, 4 * config.n_embd, bias=config.bias, rng=rng)
        self.c_proj = nn.Linear(4 * config.n_embd, config.n_embd, bias=config.bias, rng=rng)

    def forward(self, x):
        return F.dropout(self.c_proj(F.gelu(self.c_fc(x))), self.dropout, self.training)


class Block(nn.Module):
    """A pre-LayerNorm transformer block: x + attn(ln_1(x)), then x + mlp(ln_2(x))."""

    def __init__(self, config, rng):
        self.ln_1 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.attn = CausalSelfAttention(config, rng)
        self.ln_2 = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.mlp = MLP(config, rng)

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp(self.ln_2(x))


class GPT(nn.Module):
    def __init__(self, config, seed=0):
        """A GPT with GPT-2's initialisation, drawn from np.random.default_rng(seed)."""
        self.config = config
        rng = np.random.default_rng(seed)
        self.transformer = nn.Module()
        self.transformer.wte = nn.Embedding(config.vocab_size, config.n_embd, rng=rng)
        self.transformer.wpe = nn.Embedding(config.block_size, config.n_embd, rng=rng)
        self.transformer.h = nn.ModuleList([Block(config, rng) for _ in range(config.n_layer)])
        self.transformer.ln_f = nn.LayerNorm(config.n_embd, bias=config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False, rng=rng)
        # Weight tying: the output head reads logits against the token embeddings themselves.
        self.lm_head.weight = self.transformer.wte.weight
        self._init_weights(rng)

    def _init_weights(self, rng):
        """GPT-2: weights N(0, 0.02), biases 0, LayerNorm gains 1; the projections that write into the
        residual stream (`c_proj`) are scaled by 1/sqrt(2 n_layer), as each block adds two of them."""
        residual_std = 0.02 / math.sqrt(2 * self.config.n_layer)
        for name, param in self.named_parameters():
            if param.ndim == 2:
                # Drawn in the parameter's own dtype, in place: a float64 draw would be a temporary twice the
                # size of the parameter (for GPT-2 small's embedding, 300 MB), setting the peak memory.
                rng.standard_normal(param.shape, dtype=param.dtype, out=param.data)
                param.data *= residual_std if name.endswith("c_proj.weight") else 0.02
            elif ".ln_" in name and name.endswith(".weight"):
                param.data[...] = 1.0
            else:
                param.data[...] = 0.0

    def num_parameters(self, non_embedding=True):
        """Parameter count; by default without the position embeddings (as nanoGPT reports it; the token
        embedding is counted because it doubles as the output head)."""
        n = sum(p.data.size for p in self.parameters())
        return n - self.transformer.wpe.weight.data.size if non_embedding else n

    def _check_ids(self, idx, name="idx"):
        idx = np.asarray(idx)
        if idx.ndim != 2 or not np.issubdtype(idx.dtype, np.integer):
            raise ValueError(f"{name} must be a 2-D integer array (B, T), got {idx.dtype} of shape {idx.shape}")
        bad = np.argwhere((idx < 0) | (idx >= self.config.vocab_size))
        if len(bad):
            where = tuple(int(i) for i in bad[0])
            raise ValueError(
                f"{name}[{where}] = {int(idx[where])} is outside the vocabulary [0, {self.config.vocab_size})"
            )
        return idx

    def _check_length(self, length):
        if length > self.config.block_size:
            raise ValueError(
                f"sequence of length {length} is longer than block_size {self.config.block_size}; "
                f"crop the context to its last {self.config.block_size} tokens"
            )

    def _hidden(self, idx):
        """Final hidden states (B, T, C) for ids idx (B, T)."""
        T = idx.shape[1]
        self._check_length(T)
        tok = F.embedding(idx, self.transformer.wte.weight)  # (B, T, C)
        pos = F.embedding(np.arange(T), self.transformer.wpe.weight)  # (T, C)
        x = F.dropout(tok + pos, self.config.dropout, self.training)
        for block in self.transformer.h:
            x = block(x)
        return self.transformer.ln_f(x)

    def forward(self, idx, targets=None):
        """idx (B, T) int ids -> (logits (B, T, vocab_size), mean cross-entropy loss or None).

        Targets (B, T) are the next ids; -1 marks positions to ignore."""
        idx = self._check_ids(idx)
        logits = self.lm_head(self._hidden(idx))
        if targets is None:
            return logits, None
        targets = np.asarray(targets)
        if targets.shape != idx.shape:
            raise ValueError(f"targets shape {targets.shape} does not match idx shape {idx.shape}")
        if targets.size and (targets.min() < -1 or targets.max() >= self.config.vocab_size):
            raise ValueError(f"targets must be ids in [0, {self.config.vocab_size}) or -1 (ignored)")
        return logits, F.cross_entropy(logits, targets, ignore_index=-1)

    def hidden_states(self, idx):
        """Final hidden states (B, T, n_embd) for ids idx (B, T): the trunk without lm_head (for heads on top)."""
        return self._hidden(self._check_ids(idx))

    @classmethod
    def from_pretrained(cls, path):
        """A GPT with the weights of a Hugging Face style GPT-2 folder (config.json + model.safetensors)."""
        from gpt.pretrained import load_pretrained_model  # here, since gpt.pretrained imports this module

        return load_pretrained_model(path)

    def save_pretrained(self, path, tokenizer=None):
        """Write a Hugging Face style GPT-2 folder that from_pretrained (and other tools) can open."""
        from gpt.pretrained import save_pretrained

        save_pretrained(self, path, tokenizer)

    def configure_optimizers(self, weight_decay, learning_rate, betas, eps=1e-8):
        """AdamW that decays the 2-D weights (matmuls, embeddings) but not biases or LayerNorm gains."""
        params = self.parameters()
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        return optim.AdamW(groups, lr=learning_rate, betas=betas, eps=eps)

    def new_kv_cache(self, batch_size):
        return inference.KVCache(self.config, batch_size, self.transformer.wte.weight.dtype)

    def decode(self, idx, cache):
        """Feed idx (B, T) after the cached positions, without dropout or a graph; returns the logits of
        the last position (B, vocab_size) as an ndarray (see gpt/inference.py)."""
        idx = self._check_ids(idx)
        self._check_length(cache.length + idx.shape[1])
        return inference.forward(self, idx, cache)

    def decode_next(self, context, cache):
        """Logits (B, vocab_size) of the token after `context` (B, T), whose last token is the only one the
        cache lacks. While the window has room this costs one position. Once the cache holds block_size
        positions the window slides, every position embedding shifts, and the cache is rebuilt from the
        last block_size tokens (the same result as cropping the context, as nanoGPT does)."""
        if cache.length < self.config.block_size:
            return self.decode(context[:, -1:], cache)
        cache.length = 0
        return self.decode(context[:, -self.config.block_size :], cache)

    def generate_stream(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=None):
        """Yield max_new_tokens new ids (B,), one step at a time, continuing idx (B, T); each step conditions
        on the last block_size tokens. See sampling.sample_next_token for the sampling options."""
        context = self._check_ids(idx)
        if context.shape[1] == 0:
            raise ValueError("generate needs at least one token of context")
        rng = np.random.default_rng(seed)
        cache = self.new_kv_cache(context.shape[0])
        logits = self.decode(context[:, -self.config.block_size :], cache)
        for step in range(max_new_tokens):
            token = sample_next_token(logits, rng, temperature, top_k, top_p)
            yield token
            if step + 1 < max_new_tokens:
                context = np.concatenate([context[:, -self.config.block_size :], token[:, None]], axis=1)
                logits = self.decode_next(context, cache)

    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None, top_p=None, seed=None):
        """idx (B, T) -> (B, T + max_new_tokens): idx followed by sampled ids. See generate_stream."""
        idx = self._check_ids(idx)
        new = list(self.generate_stream(idx, max_new_tokens, temperature, top_k, top_p, seed))
        return np.concatenate([idx] + [token[:, None] for token in new], axis=1).astype(idx.dtype)
