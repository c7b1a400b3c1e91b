"""Training-step, sampling and memory rows: our GPT against its PyTorch twin on the same weights.

Both sides run in this process with the same thread count, interleaved in rounds so that noise
from the shared machine falls on both alike; each row reports the median over rounds and the ratio.
Peak memory is measured in fresh child processes (one per side), since a process's peak only grows.
"""
import json
import os
import subprocess
import sys
import time

import numpy as np

from gpt import GPT, GPTConfig
from nanograd import optim

CONFIGS = {
    "a": dict(config=dict(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65), batch_size=12),
    "b": dict(config=dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=65), batch_size=64),
    "bpe": dict(config=dict(n_layer=4, n_head=4, n_embd=128, block_size=128, vocab_size=1024), batch_size=16),
}
FP32_PEAK_GFLOPS = {1: 115.0, 2: 229.0}  # measured on this machine (../shared/notes/cpu-performance.md)


def flops_per_token(model) -> float:
    """nanoGPT's estimate: 6 N for the matmuls' forward + backward, plus 12 L C T for attention."""
    cfg = model.config
    return 6 * model.num_parameters() + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size


def make_batch(config, batch_size, seed=0):
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, config["vocab_size"], (batch_size, config["block_size"]))
    return idx, np.roll(idx, -1, axis=1)


def our_step(model, opt):
    def step(idx, targets):
        _, loss = model(idx, targets)
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()
    return step


def torch_step(model, opt, torch):
    def step(idx, targets):
        _, loss = model(torch.from_numpy(idx), torch.from_numpy(targets))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()
    return step


def time_rounds(steps: dict, args, rounds: int, per_round: int) -> dict:
    """Median seconds per call of each function, interleaved round by round."""
    times = {name: [] for name in steps}
    for _ in range(rounds):
        for name, fn in steps.items():
            start = time.perf_counter()
            for _ in range(per_round):
                fn(*args)
            times[name].append((time.perf_counter() - start) / per_round)
    return {name: float(np.median(t)) for name, t in times.items()}


def load_torch(threads):
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def train_row(name: str, threads: int, quick: bool) -> dict:
    spec = CONFIGS[name]
    config = GPTConfig(**spec["config"], dropout=0.0, bias=True)
    model = GPT(config, seed=0)
    idx, targets = make_batch(spec["config"], spec["batch_size"])
    steps = {"ours": our_step(model, model.configure_optimizers(0.1, 1e-3, (0.9, 0.99)))}
    torch = load_torch(threads)
    if torch is not None:
        from benchmarks.torch_gpt import TorchGPT
        twin = TorchGPT.from_ours(model)
        steps["torch"] = torch_step(twin, twin.configure_optimizers(0.1, 1e-3, (0.9, 0.99)), torch)
        first = {side: fn(idx, targets) for side, fn in steps.items()}
        # Same weights, same batch: the first losses must agree (float32 sums in different orders).
        if abs(first["ours"] - first["torch"]) > 1e-4 * abs(first["torch"]):
            raise AssertionError(f"config {name}: our loss {first['ours']} != PyTorch's {first['torch']}")
    big = name == "b"
    rounds, per_round = (2, 1) if quick or big else (5, 4)
    time_rounds(steps, (idx, targets), 1, 1)  # warm-up: numba compiles, caches fill
    seconds = time_rounds(steps, (idx, targets), rounds, per_round)
    tokens = idx.size
    flops = flops_per_token(model) * tokens
    row = {"name": f"train step, config {name}", "unit": "tokens/s", "ours": tokens / seconds["ours"],
           "ours_ms": 1e3 * seconds["ours"], "gflops": flops / seconds["ours"] / 1e9}
    row["peak_fraction"] = row["gflops"] / FP32_PEAK_GFLOPS.get(threads, FP32_PEAK_GFLOPS[2])
    if "torch" in seconds:
        row.update(peer=tokens / seconds["torch"], peer_ms=1e3 * seconds["torch"], ratio=seconds["torch"] / seconds["ours"])
    return row


def sample_row(name: str, threads: int, quick: bool, n_tokens: int = 200) -> dict:
    config = GPTConfig(**CONFIGS[name]["config"])
    model = GPT(config, seed=0)
    prompt = np.zeros((1, 1), dtype=np.int64)
    steps = {"ours": lambda: model.generate(prompt, max_new_tokens=n_tokens, temperature=1.0, seed=0)}
    torch = load_torch(threads)
    if torch is not None:
        from benchmarks.torch_gpt import TorchGPT
        twin = TorchGPT.from_ours(model).eval()
        steps["torch"] = lambda: twin.generate(torch.from_numpy(prompt), n_tokens)
    time_rounds(steps, (), 1, 1)
    seconds = time_rounds(steps, (), 2 if quick else 3, 1)
    row = {"name": f"sample {n_tokens} tokens, config {name}, batch 1, KV cache", "unit": "tokens/s",
           "ours": n_tokens / seconds["ours"]}
    if "torch" in seconds:
        row.update(peer=n_tokens / seconds["torch"], ratio=seconds["torch"] / seconds["ours"])
    return row


def peak_memory_child(side: str, name: str, threads: int) -> None:
    """Run in a fresh process: a few training steps on one side, then print peak RSS in MiB."""
    spec = CONFIGS[name]
    idx, targets = make_batch(spec["config"], spec["batch_size"])
    if side == "ours":
        model = GPT(GPTConfig(**spec["config"]), seed=0)
        step = our_step(model, model.configure_optimizers(0.1, 1e-3, (0.9, 0.99)))
    else:
        torch = load_torch(threads)
        from benchmarks.torch_gpt import TorchGPT
        model = TorchGPT(GPTConfig(**spec["config"]))
        step = torch_step(model, model.configure_optimizers(0.1, 1e-3, (0.9, 0.99)), torch)
    for _ in range(3):
        step(idx, targets)
    print(json.dumps({"peak_mib": peak_rss_mib()}))


def peak_rss_mib() -> float:
    """This process's peak resident memory. Not getrusage's ru_maxrss: Linux keeps that across exec, so a
    child started by a big benchmark process would report its parent's peak. VmHWM starts afresh at exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status: peak memory needs Linux")


def memory_row(name: str, threads: int, quick: bool) -> dict:
    sides = ["ours"] + (["torch"] if load_torch(threads) is not None else [])
    peaks = {}
    for side in sides:
        out = subprocess.run([sys.executable, "-m", "benchmarks.training", "--peak-memory", side, name,
                              str(threads)], capture_output=True, text=True, check=True,
                             cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        peaks[side] = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
    row = {"name": f"peak training RSS, config {name}", "unit": "MiB", "ours": peaks["ours"]}
    if "torch" in peaks:
        # For memory, lower is better: the ratio is theirs / ours, so above 1 means we use less.
        row.update(peer=peaks["torch"], ratio=peaks["torch"] / peaks["ours"])
    return row


def run(quick: bool, threads: int) -> list:
    rows = [train_row("a", threads, quick), train_row("bpe", threads, quick)]
    rows.append(train_row("b", threads, quick))
    rows += [sample_row("a", threads, quick), sample_row("b", threads, quick)]
    rows.append(memory_row("a", threads, quick))
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["--peak-memory"]:
        peak_memory_child(sys.argv[2], sys.argv[3], int(sys.argv[4]))
