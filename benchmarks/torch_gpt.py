"""The PyTorch twin of gpt.GPT: the same architecture and parameter names, loaded with our weights,
so a benchmark compares two implementations of one computation. Benchmark-only: PyTorch is never
a runtime dependency of the project.

Run as a module it is the peer's side of a benchmark row, in a process of its own:

    python -m benchmarks.torch_gpt {train,sample,memory} CONFIG THREADS ROUNDS PER_ROUND [BATCH]

and prints one JSON line. A process of its own, because our numba pool runs with OMP_WAIT_POLICY=PASSIVE
(nanograd/kernels/runtime.py), which slows PyTorch's OpenMP pool (by ~45% at 2 threads on config a, when
measured): the peer runs with its own OpenMP defaults. It does take our malloc setting (freed memory is kept for
reuse, nanograd.kernels.runtime.keep_freed_memory), so both sides run with the same allocator.
"""
import json
import math
import sys
import types

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F


class CausalSelfAttention(nn.Module):
    def __init__(self, n_embd, n_head, bias):
        super().__init__()
        self.n_head = n_head
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)

    def forward(self, x, cache=None):
        """x (B, T, C); with a cache (a dict holding this layer's "k" and "v"), x follows the cached positions."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (a.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for a in (q, k, v))
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
            cache["k"], cache["v"] = k, v
        if q.shape[2] == k.shape[2]:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # one new query sees every cached key
            y = F.scaled_dot_product_attention(q, k, v, is_causal=False)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


class Block(nn.Module):
    def __init__(self, n_embd, n_head, bias):
        super().__init__()
        self.ln_1 = nn.LayerNorm(n_embd, bias=bias)
        self.attn = CausalSelfAttention(n_embd, n_head, bias)
        self.ln_2 = nn.LayerNorm(n_embd, bias=bias)
        self.mlp = nn.ModuleDict(dict(c_fc=nn.Linear(n_embd, 4 * n_embd, bias=bias),
                                      c_proj=nn.Linear(4 * n_embd, n_embd, bias=bias)))

    def forward(self, x, cache=None):
        x = x + self.attn(self.ln_1(x), cache)
        return x + self.mlp.c_proj(F.gelu(self.mlp.c_fc(self.ln_2(x)), approximate="tanh"))


class TorchGPT(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            wpe=nn.Embedding(config.block_size, config.n_embd),
            h=nn.ModuleList([Block(config.n_embd, config.n_head, config.bias) for _ in range(config.n_layer)]),
            ln_f=nn.LayerNorm(config.n_embd, bias=config.bias),
        ))
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        self.lm_head.weight = self.transformer.wte.weight

    @classmethod
    def from_ours(cls, model):
        """A twin of a gpt.GPT holding copies of its weights."""
        twin = cls(model.config)
        own = twin.state_dict()
        twin.load_state_dict({name: torch.from_numpy(np.array(value, dtype=np.float32))
                              for name, value in model.state_dict().items() if name in own})
        return twin

    def forward(self, idx, targets=None, cache=None, start=0):
        T = idx.shape[1]
        pos = torch.arange(start, start + T)
        x = self.transformer.wte(idx) + self.transformer.wpe(pos)
        for i, block in enumerate(self.transformer.h):
            x = block(x, None if cache is None else cache.setdefault(i, {}))
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1),
                                                            ignore_index=-1)
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas):
        params = list(self.parameters())
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        # foreach=True is PyTorch's fastest CPU AdamW path: the peer at its best.
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, foreach=True)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """Sampling with a KV cache, nanoGPT's crop at block_size."""
        cache, start = {}, 0
        logits, _ = self(idx, cache=cache)
        start = idx.shape[1]
        for _ in range(max_new_tokens):
            logits = logits[:, -1, :] / temperature
            if top_k is not None:
                v, _ = torch.topk(logits, min(top_k, logits.size(-1)))
                logits[logits < v[:, [-1]]] = -math.inf
            next_id = torch.multinomial(F.softmax(logits, dim=-1), num_samples=1)
            idx = torch.cat((idx, next_id), dim=1)
            if start >= self.config.block_size:  # the cache is full: re-prefill on the last block_size tokens
                cache, start = {}, 0
                logits, _ = self(idx[:, -self.config.block_size:], cache=cache)
                start = self.config.block_size
            else:
                logits, _ = self(next_id, cache=cache, start=start)
                start += 1
        return idx


def torch_step(model, opt):
    """One training step: forward, backward, clip to 1.0, AdamW; returns the loss."""
    def step(idx, targets):
        _, loss = model(torch.from_numpy(idx), torch.from_numpy(targets))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()
    return step


def main(argv):
    kind, name, threads, rounds, per_round = argv[0], argv[1], int(argv[2]), int(argv[3]), int(argv[4])
    batch = int(argv[5]) if len(argv) > 5 else 1  # prompts sampled at once
    torch.set_num_threads(threads)
    from nanograd.kernels.runtime import keep_freed_memory

    keep_freed_memory()
    from benchmarks.configs import CONFIGS, SAMPLE_TOKENS, make_batch, median_seconds, peak_rss_mib

    config = types.SimpleNamespace(**CONFIGS[name]["config"], bias=True)
    if kind == "memory":
        model = TorchGPT(config)
        step = torch_step(model, model.configure_optimizers(0.1, 1e-3, (0.9, 0.99)))
        idx, targets = make_batch(name)
        for _ in range(3):
            step(idx, targets)
        print(json.dumps({"peak_mib": peak_rss_mib()}))
        return
    from gpt import GPT, GPTConfig  # after torch: its OpenMP runtime has read the environment already

    model = TorchGPT.from_ours(GPT(GPTConfig(**CONFIGS[name]["config"]), seed=0))
    if kind == "train":
        step = torch_step(model, model.configure_optimizers(0.1, 1e-3, (0.9, 0.99)))
        idx, targets = make_batch(name)
        first_loss = step(idx, targets)
        step(idx, targets)  # warm-up
        seconds = median_seconds(lambda: step(idx, targets), rounds, per_round)
        print(json.dumps({"first_loss": first_loss, "seconds": seconds}))
    elif kind == "sample":
        model.eval()
        prompt = torch.zeros((batch, 1), dtype=torch.int64)
        model.generate(prompt, SAMPLE_TOKENS)  # warm-up
        print(json.dumps({"seconds": median_seconds(lambda: model.generate(prompt, SAMPLE_TOKENS), rounds, 1)}))
    else:
        raise SystemExit(f"unknown kind {kind!r}: train, sample or memory")


if __name__ == "__main__":
    main(sys.argv[1:])
