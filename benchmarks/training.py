"""Training-step, sampling, memory and under-load rows: our GPT against its PyTorch twin on the same weights.

Ours runs in this process; the peer runs back to back in a child process with its own defaults
(see benchmarks/torch_gpt.py for why), on the same weights (both sides build GPT(config, seed=0))
and the same batch, with the same thread count. The first training losses must agree before
anything is timed. Each row reports medians over rounds and the ratio (above 1: we are faster,
or for memory, smaller; under load, steadier). Peak memory is measured in a fresh process for each side.
"""
import contextlib
import json
import os
import subprocess
import sys

import numpy as np

from benchmarks.configs import CONFIGS, SAMPLE_TOKENS, make_batch, median_seconds, peak_rss_mib, rounds_for
from gpt import GPT, GPTConfig
from nanograd import optim

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


def run_peer(kind: str, name: str, threads: int, rounds: int = 1, per_round: int = 1, batch: int = 1) -> dict | None:
    """The PyTorch side of a row, in a child process; None when torch is not installed."""
    if not torch_available():
        return None
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # the peer's own default
    out = subprocess.run([sys.executable, "-m", "benchmarks.torch_gpt", kind, name, str(threads), str(rounds),
                          str(per_round), str(batch)], capture_output=True, text=True, cwd=ROOT, env=env)
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
    row = {"name": f"train step, config {name}", "config": name, "unit": "tokens/s", "ours": tokens / seconds,
           "ours_ms": 1e3 * seconds, "gflops": flops_per_token(model) * tokens / seconds / 1e9}
    peer = run_peer("train", name, threads, rounds, per_round)
    if peer is not None:
        # Same weights, same batch: the first losses must agree (float32 sums in different orders).
        if abs(first_loss - peer["first_loss"]) > 1e-4 * abs(peer["first_loss"]):
            raise AssertionError(f"config {name}: our loss {first_loss} != PyTorch's {peer['first_loss']}")
        row.update(peer=tokens / peer["seconds"], peer_ms=1e3 * peer["seconds"], ratio=peer["seconds"] / seconds,
                   peer_gflops=flops_per_token(model) * tokens / peer["seconds"] / 1e9)
    return row


def blas_gflops(n: int = 1024) -> float:
    """What BLAS reaches here, with this process's threads, on one large float32 product (n x n) @ (n x n):
    the practical ceiling for the arithmetic of a training step on this machine."""
    a, b = (np.random.default_rng(seed).standard_normal((n, n)).astype(np.float32) for seed in (0, 1))
    a @ b  # warm-up: BLAS starts its threads
    return 2 * n**3 / min(median_seconds(lambda: a @ b, 1, 1) for _ in range(10)) / 1e9


def compute_rate_row(train: dict, ceiling: float) -> dict:
    """A train row's arithmetic rate by nanoGPT's FLOP estimate, ours and the peer's, beside `ceiling`, the
    GFLOP/s BLAS reaches on a large product in this run: how much faster either side could still go."""
    row = {"name": f"  the same in GFLOP/s (a 1024^3 BLAS product here: {ceiling:.0f})", "unit": "GFLOP/s",
           "ours": train["gflops"]}
    if "peer_gflops" in train:
        row.update(peer=train["peer_gflops"], ratio=train["gflops"] / train["peer_gflops"])
    return row


def sample_row(name: str, threads: int, quick: bool, batch: int = 1) -> dict:
    """`batch` prompts of one token each, continued by SAMPLE_TOKENS tokens; tokens/s counts every row's."""
    model = GPT(GPTConfig(**CONFIGS[name]["config"]), seed=0)
    prompt = [[0]] * batch
    model.generate(prompt, max_new_tokens=SAMPLE_TOKENS, seed=0)  # warm-up
    rounds = 2 if quick else 3
    seconds = median_seconds(lambda: model.generate(prompt, max_new_tokens=SAMPLE_TOKENS, seed=0), rounds, 1)
    tokens = batch * SAMPLE_TOKENS
    cache = "sliding KV cache" if model.config.positions == "rotary" else "KV cache"
    row = {"name": f"sample {SAMPLE_TOKENS} tokens, config {name}, batch {batch}, {cache}", "unit": "tokens/s",
           "ours": tokens / seconds}
    peer = run_peer("sample", name, threads, rounds, batch=batch)
    if peer is not None:
        row.update(peer=tokens / peer["seconds"], ratio=peer["seconds"] / seconds)
    return row


def weight_products_row(name: str, quick: bool) -> dict:
    """One token's row times every weight matrix the forward reads (each layer's four and the tied head;
    not wpe, of which a token reads one row), by BLAS alone. When no window is re-run, this is all a token at
    batch 1 must do at least, in float32, so its tokens/s bounds any implementation's sampling, ours or
    the peer's, on this machine."""
    model = GPT(GPTConfig(**CONFIGS[name]["config"]), seed=0)
    weights = [p.data for key, p in model.named_parameters() if p.data.ndim == 2 and not key.endswith("wpe.weight")]
    rows = {w.shape[1]: np.ones((1, w.shape[1]), dtype=w.dtype) for w in weights}  # (1, in)

    def one_token():
        for w in weights:  # (out, in)
            rows[w.shape[1]] @ w.T  # (1, out)

    one_token()  # warm-up
    seconds = median_seconds(one_token, 3 if quick else 7, 20)
    return {"name": f"  config {name}: one row through each weight matrix, BLAS alone", "unit": "tokens/s",
            "ours": 1 / seconds}


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
    nanograd.set_num_threads(threads)
    model = GPT(GPTConfig(**CONFIGS[name]["config"]), seed=0)
    step = our_step(model, model.configure_optimizers(0.1, 1e-3, (0.9, 0.99)))
    idx, targets = make_batch(name)
    for _ in range(3):
        step(idx, targets)
    print(json.dumps({"peak_mib": peak_rss_mib()}))


def own_loop_child(name: str, quick: bool) -> None:
    """Run in a fresh process, as a user's own script would: import, build, loop; no setup call of any kind
    (thread counts come from the environment, as for any program). Prints the median step in seconds."""
    model = GPT(GPTConfig(**CONFIGS[name]["config"]), seed=0)
    step = our_step(model, model.configure_optimizers(0.1, 1e-3, (0.9, 0.99)))
    idx, targets = make_batch(name)
    step(idx, targets), step(idx, targets)  # warm-up, as the row above has
    print(json.dumps({"seconds": median_seconds(lambda: step(idx, targets), *rounds_for(name, quick))}))


def own_loop_row(train: dict, quick: bool) -> dict:
    """A `train` row's step in a user's own loop, in a fresh process with no setup call, against the row's own
    step (the trainer's, run after benchmarks/run.py set the threads): the ratio is trainer time / own time,
    so 1 means a user's loop is as fast as ours."""
    args = [sys.executable, "-m", "benchmarks.training", "--own-loop", train["config"]] + (["--quick"] if quick else [])
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}
    out = subprocess.run(args, capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    seconds = json.loads(out.stdout.strip().splitlines()[-1])["seconds"]
    return {"name": "  own loop, fresh process, no setup call (peer: the step above)", "unit": "tokens/s",
            "ours": train["ours"] * train["ours_ms"] / 1e3 / seconds, "peer": train["ours"],
            "ratio": train["ours_ms"] / 1e3 / seconds}


@contextlib.contextmanager
def one_core_busy():
    """Another program keeping one core busy (a plain Python spin loop) while the block runs: a laptop with
    a browser open, say."""
    spinner = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        yield
    finally:
        spinner.kill()
        spinner.wait()


def under_load_row(idle: dict, threads: int, quick: bool) -> dict:
    """Config a's training step with one core busy, as a multiple of the `idle` row's step time: ours, and
    PyTorch's beside it (lower is steadier; the ratio is theirs / ours, above 1 means we are steadier)."""
    with one_core_busy():
        loaded = train_row(idle["config"], threads, quick)
    row = {"name": f"train step, config {idle['config']}, one core busy: time / idle time", "unit": "x idle",
           "ours": loaded["ours_ms"] / idle["ours_ms"], "ours_ms": loaded["ours_ms"]}
    if "peer_ms" in loaded and "peer_ms" in idle:
        peer = loaded["peer_ms"] / idle["peer_ms"]
        row.update(peer=peer, peer_ms=loaded["peer_ms"], ratio=peer / row["ours"])
    return row


def run(quick: bool, threads: int) -> list:
    trains = [train_row(name, threads, quick) for name in ("a", "bpe", "b", "a-modern")]
    ceiling = blas_gflops()
    rows = [row for train in trains for row in (train, compute_rate_row(train, ceiling))]
    rows.insert(1, own_loop_row(trains[0], quick))
    rows.append(under_load_row(trains[0], threads, quick))
    rows += [sample_row("a", threads, quick), sample_row("a-modern", threads, quick), sample_row("b", threads, quick),
             weight_products_row("b", quick), sample_row("a", threads, quick, 8)]
    rows += [memory_row(name, threads, quick) for name in ("a", "bpe", "b")]
    return rows


if __name__ == "__main__":
    if sys.argv[1:2] == ["--peak-memory"]:
        peak_memory_child(sys.argv[2], int(sys.argv[3]))
    elif sys.argv[1:2] == ["--own-loop"]:
        own_loop_child(sys.argv[2], "--quick" in sys.argv)
