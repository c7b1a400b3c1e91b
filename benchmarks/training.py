"""Training-step, sampling and memory rows: our GPT against its PyTorch twin on the same weights.

Ours runs in this process; the peer runs back to back in a child process with its own defaults
(see benchmarks/torch_gpt.py for why), on the same weights (both sides build GPT(config, seed=0))
and the same batch, with the same thread count. The first training losses must agree before
anything is timed. Each row reports medians over rounds and the ratio (above 1: we are faster,
or for memory, smaller). Peak memory is measured in a fresh process for each side.
"""
import json
import os
import subprocess
import sys

from benchmarks.configs import CONFIGS, SAMPLE_TOKENS, make_batch, median_seconds, peak_rss_mib, rounds_for
from gpt import GPT, GPTConfig
from nanograd import optim

FP32_PEAK_GFLOPS = {1: 115.0, 2: 229.0}  # measured on this machine (../shared/notes/cpu-performance.md)
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def flops_per_token(model) -> float:
    """nanoGPT's estimate: 6 N for the matmuls' forward + backward, plus 12 L C T for attention."""
    cfg = model.config
    return 6 * model.num_parameters() + 12 * cfg.n_layer * cfg.n_embd * cfg.block_size


def our_step(model, opt):
    """One training step: forward, backward, clip to 1.0, AdamW; returns the loss."""
    def step(idx, targets):
        _, loss = model(idx, targets)
        opt.zero_grad()
        loss.backward()
        optim.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()
    return step


def torch_available() -> bool:
    try:
        import torch  # noqa: F401  (only asking whether the peer can run)
    except ImportError:
        return False
    return True


def run_peer(kind: str, name: str, threads: int, rounds: int = 1, per_round: int = 1) -> dict | None:
    """The PyTorch side of a row, in a child process; None when torch is not installed."""
    if not torch_available():
        return None
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # the peer's own default
    out = subprocess.run([sys.executable, "-m", "benchmarks.torch_gpt", kind, name, str(threads), str(rounds),
                          str(per_round)], capture_output=True, text=True, cwd=ROOT, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"the PyTorch side of '{kind} {name}' failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def train_row(name: str, threads: int, quick: bool) -> dict:
    model = GPT(GPTConfig(**CONFIGS[name]["config"]), seed=0)
    step = our_step(model, model.configure_optimizers(0.1, 1e-3, (0.9, 0.99)))
    idx, targets = make_batch(name)
    first_loss = step(idx, targets)
    step(idx, targets)  # warm-up: numba compiles, caches fill
    rounds, per_round = rounds_for(name, quick)
    seconds = median_seconds(lambda: step(idx, targets), rounds, per_round)
    tokens = idx.size
    row = {"name": f"train step, config {name}", "unit": "tokens/s", "ours": tokens / seconds,
           "ours_ms": 1e3 * seconds, "gflops": flops_per_token(model) * tokens / seconds / 1e9}
    row["peak_fraction"] = row["gflops"] / FP32_PEAK_GFLOPS.get(threads, FP32_PEAK_GFLOPS[2])
    peer = run_peer("train", name, threads, rounds, per_round)
    if peer is not None:
        # Same weights, same batch: the first losses must agree (float32 sums in different orders).
        if abs(first_loss - peer["first_loss"]) > 1e-4 * abs(peer["first_loss"]):
            raise AssertionError(f"config {name}: our loss {first_loss} != PyTorch's {peer['first_loss']}")
        row.update(peer=tokens / peer["seconds"], peer_ms=1e3 * peer["seconds"], ratio=peer["seconds"] / seconds)
    return row


def sample_row(name: str, threads: int, quick: bool) -> dict:
    model = GPT(GPTConfig(**CONFIGS[name]["config"]), seed=0)
    prompt = [[0]]
    model.generate(prompt, max_new_tokens=SAMPLE_TOKENS, seed=0)  # warm-up
    rounds = 2 if quick else 3
    seconds = median_seconds(lambda: model.generate(prompt, max_new_tokens=SAMPLE_TOKENS, seed=0), rounds, 1)
    row = {"name": f"sample {SAMPLE_TOKENS} tokens, config {name}, batch 1, KV cache", "unit": "tokens/s",
           "ours": SAMPLE_TOKENS / seconds}
    peer = run_peer("sample", name, threads, rounds)
    if peer is not None:
        row.update(peer=SAMPLE_TOKENS / peer["seconds"], ratio=peer["seconds"] / seconds)
    return row


def memory_row(name: str, threads: int, quick: bool) -> dict:
    out = subprocess.run([sys.executable, "-m", "benchmarks.training", "--peak-memory", name, str(threads)],
                         capture_output=True, text=True, check=True, cwd=ROOT)
    ours = json.loads(out.stdout.strip().splitlines()[-1])["peak_mib"]
    row = {"name": f"peak training RSS, config {name}", "unit": "MiB", "ours": ours}
    peer = run_peer("memory", name, threads)
    if peer is not None:
        # For memory, lower is better: the ratio is theirs / ours, so above 1 means we use less.
        row.update(peer=peer["peak_mib"], ratio=peer["peak_mib"] / ours)
    return row


def peak_memory_child(name: str, threads: int) -> None:
    """Run in a fresh process: a few of our training steps, then print peak RSS in MiB."""
    import nanograd
    nanograd.tune_process(threads=threads)
    model = GPT(GPTConfig(**CONFIGS[name]["config"]), seed=0)
    step = our_step(model, model.configure_optimizers(0.1, 1e-3, (0.9, 0.99)))
    idx, targets = make_batch(name)
    for _ in range(3):
        step(idx, targets)
    print(json.dumps({"peak_mib": peak_rss_mib()}))


def run(quick: bool, threads: int) -> list:
    rows = [train_row("a", threads, quick), train_row("bpe", threads, quick), train_row("b", threads, quick)]
    rows += [sample_row("a", threads, quick), sample_row("b", threads, quick)]
    rows.append(memory_row("a", threads, quick))
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["--peak-memory"]:
        peak_memory_child(sys.argv[2], int(sys.argv[3]))
