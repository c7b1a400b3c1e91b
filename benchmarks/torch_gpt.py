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


def rotary(x, start):
    """RoPE on x (B, nh, T, hs) at positions start..start+T-1, in the half-split pairing of our F.rotary."""
    hs, T = x.shape[-1], x.shape[-2]
    inv_freq = 10000.0 ** (-torch.arange(0, hs, 2, dtype=torch.float64) / hs)
    angles = torch.outer(torch.arange(start, start + T, dtype=torch.float64), inv_freq)  # (T, hs/2)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)
    x1, x2 = x[..., : hs // 2], x[..., hs // 2:]
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)


class CausalSelfAttention(nn.Module):
    def __init__(self, config):
        super().__init__()
        self.n_head, self.config = config.n_head, config
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd, bias=config.bias)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd, bias=config.bias)

    def forward(self, x, cache=None, start=0):
        """x (B, T, C) at positions start..; with a cache (a dict holding this layer's "k" and "v"), x follows the
        cached positions."""
        B, T, C = x.shape
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (a.view(B, T, self.n_head, C // self.n_head).transpose(1, 2) for a in (q, k, v))
        if self.config.qk_norm:
            q, k = F.rms_norm(q, (q.shape[-1],), eps=1e-6), F.rms_norm(k, (k.shape[-1],), eps=1e-6)
        if self.config.positions == "rotary":
            q, k = rotary(q, start), rotary(k, start)
        if cache is not None:
            if "k" in cache:
                k, v = torch.cat([cache["k"], k], dim=2), torch.cat([cache["v"], v], dim=2)
                # rotary: a sliding window (the oldest position goes; keys keep their turn), as gpt/generate.py
                k, v = k[:, :, -self.config.block_size:], v[:, :, -self.config.block_size:]
            cache["k"], cache["v"] = k, v
        if q.shape[2] == k.shape[2]:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # one new query sees every cached key
            y = F.scaled_dot_product_attention(q, k, v, is_causal=False)
        return self.c_proj(y.transpose(1, 2).reshape(B, T, C))


def norm(config):
    if config.norm == "rms":
        return nn.RMSNorm(config.n_embd, eps=1e-6)
    return nn.LayerNorm(config.n_embd, bias=config.bias)


class Block(nn.Module):
    def __init__(self, config):
        super().__init__()
        n_embd, self.relu2 = config.n_embd, config.mlp == "relu2"
        self.ln_1 = norm(config)
        self.attn = CausalSelfAttention(config)
        self.ln_2 = norm(config)
        self.mlp = nn.ModuleDict(dict(c_fc=nn.Linear(n_embd, 4 * n_embd, bias=config.bias),
                                      c_proj=nn.Linear(4 * n_embd, n_embd, bias=config.bias)))

    def forward(self, x, cache=None, start=0):
        x = x + self.attn(self.ln_1(x), cache, start)
        h = self.mlp.c_fc(self.ln_2(x))
        return x + self.mlp.c_proj(F.relu(h).square() if self.relu2 else F.gelu(h, approximate="tanh"))


class TorchGPT(nn.Module):
    """Either recipe of gpt.GPT, chosen by the parts of its config (gpt.model.RECIPES)."""

    def __init__(self, config):
        super().__init__()
        self.config = config
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(config.vocab_size, config.n_embd),
            h=nn.ModuleList([Block(config) for _ in range(config.n_layer)]),
            ln_f=norm(config),
        ))
        if config.positions == "learned":
            self.transformer.wpe = nn.Embedding(config.block_size, config.n_embd)
        self.lm_head = nn.Linear(config.n_embd, config.vocab_size, bias=False)
        if config.tie_weights:
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
        x = self.transformer.wte(idx)
        if self.config.positions == "learned":
            x = x + self.transformer.wpe(torch.arange(start, start + T))
        for i, block in enumerate(self.transformer.h):
            x = block(x, None if cache is None else cache.setdefault(i, {}), start)
        logits = self.lm_head(self.transformer.ln_f(x))
        loss = None if targets is None else F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1),
                                                            ignore_index=-1)
        return logits, loss

    def configure_optimizers(self, weight_decay, learning_rate, betas, muon_lr=0.01):  # gpt.model.MUON_LR
        """As gpt.GPT.configure_optimizers: AdamW, or Muon for the blocks' matrices and AdamW for the rest."""
        if getattr(self.config, "optimizer", "adamw") == "muon":
            return TorchMuonWithAdamW(self, weight_decay, learning_rate, betas, muon_lr)
        params = list(self.parameters())
        groups = [{"params": [p for p in params if p.dim() >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0}]
        # foreach=True is PyTorch's fastest CPU AdamW path: the peer at its best.
        return torch.optim.AdamW(groups, lr=learning_rate, betas=betas, foreach=True)

    @torch.no_grad()
    def generate(self, idx, max_new_tokens, temperature=1.0, top_k=None):
        """Sampling with a KV cache: nanoGPT's crop at block_size, or with rotary positions a sliding window."""
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
            if start >= self.config.block_size and self.config.positions == "learned":  # full: re-prefill
                cache, start = {}, 0
                logits, _ = self(idx[:, -self.config.block_size:], cache=cache)
                start = self.config.block_size
            else:
                logits, _ = self(next_id, cache=cache, start=start)
                start += 1
        return idx


class TorchMuonWithAdamW:
    """Our Muon (nanograd/optim.py) in PyTorch: Nesterov momentum and Newton-Schulz in float32 for the blocks'
    matrices, torch's foreach AdamW for the rest. torch.optim.Muon computes the same update (its momentum is an
    average, which the normalisation in Newton-Schulz cancels) but in bfloat16, which would not give our
    float32 losses step for step. `param_groups` take the rate a schedule sets, Muon's through lr_scale."""

    def __init__(self, model, weight_decay, learning_rate, betas, muon_lr, momentum=0.95):
        hidden = [p for p in model.transformer.h.parameters() if p.dim() == 2]
        chosen = {id(p) for p in hidden}
        others = [p for p in model.parameters() if id(p) not in chosen]
        self.adamw = torch.optim.AdamW([{"params": [p for p in others if p.dim() >= 2], "weight_decay": weight_decay},
                                        {"params": [p for p in others if p.dim() < 2], "weight_decay": 0.0}],
                                       lr=learning_rate, betas=betas, foreach=True)
        self.muon_group = {"params": hidden, "lr": muon_lr, "lr_scale": muon_lr / learning_rate, "momentum": momentum}
        self.param_groups = [self.muon_group] + self.adamw.param_groups
        self.buffers = [torch.zeros_like(p) for p in hidden]

    def zero_grad(self, set_to_none=True):
        self.adamw.zero_grad(set_to_none=set_to_none)
        for p in self.muon_group["params"]:
            p.grad = None

    @torch.no_grad()
    def step(self):
        self.adamw.step()
        group = self.muon_group
        for p, buf in zip(group["params"], self.buffers):
            buf.mul_(group["momentum"]).add_(p.grad)
            update = newton_schulz(p.grad + group["momentum"] * buf)
            p.sub_(update, alpha=group["lr"] * max(1.0, p.shape[0] / p.shape[1]) ** 0.5)


def newton_schulz(grad, steps=5):
    a, b, c = 3.4445, -4.7750, 2.0315
    x = grad.T if grad.shape[0] > grad.shape[1] else grad
    x = x / (x.norm() + 1e-7)
    for _ in range(steps):
        A = x @ x.T
        x = a * x + (b * A + c * (A @ A)) @ x
    return x.T if grad.shape[0] > grad.shape[1] else x


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

    gpt2_parts = dict(bias=True, positions="learned", norm="layer", mlp="gelu", qk_norm=False, tie_weights=True)
    config = types.SimpleNamespace(**CONFIGS[name]["config"], **gpt2_parts)  # gpt.model.RECIPES["gpt2"]
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
