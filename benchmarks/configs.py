"""Model shapes, timing and memory helpers shared by our side and the PyTorch side of the benchmarks.

Imports neither nanograd nor torch, so a peer process can use it without loading our runtime.
"""
import time

import numpy as np

CONFIGS = {
    "a": dict(config=dict(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65), batch_size=12),
    "b": dict(config=dict(n_layer=6, n_head=6, n_embd=384, block_size=256, vocab_size=65), batch_size=64),
    "bpe": dict(config=dict(n_layer=4, n_head=4, n_embd=128, block_size=128, vocab_size=1024), batch_size=16),
    # config a in the modern recipe (gpt/model.py): the same size, batch and context; Muon; a sliding KV cache
    "a-modern": dict(config=dict(n_layer=4, n_head=4, n_embd=128, block_size=64, vocab_size=65, recipe="modern"),
                     batch_size=12),
}
# The LSTM rows: the PyTorch anchor of the LSTM-vs-GPT comparison (2 layers, embedding 128, hidden 232;
# 0.79 M parameters, as config a's GPT), trained at config a's batch and context.
LSTM_CONFIG = dict(config=dict(n_layer=2, n_embd=128, n_hidden=232, block_size=64, vocab_size=65), batch_size=12)
SAMPLE_TOKENS = 200


def make_batch(name, seed=0):
    """A fixed (idx, targets) batch of random ids for config `name` ("lstm": LSTM_CONFIG), each (batch_size,
    block_size)."""
    spec = LSTM_CONFIG if name == "lstm" else CONFIGS[name]
    config, batch_size = spec["config"], spec["batch_size"]
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, config["vocab_size"], (batch_size, config["block_size"]))
    return idx, np.roll(idx, -1, axis=1)


def rounds_for(name, quick):
    """(rounds, calls per round): config b's steps take seconds, so it gets few."""
    return (2, 1) if quick or name == "b" else (5, 4)


def median_seconds(fn, rounds, per_round):
    """Median over rounds of the mean seconds per call of fn()."""
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        for _ in range(per_round):
            fn()
        times.append((time.perf_counter() - start) / per_round)
    return float(np.median(times))


def peak_rss_mib() -> float:
    """This process's peak resident memory. Not getrusage's ru_maxrss: Linux keeps that across exec, so a
    child started by a big benchmark process would report its parent's peak. VmHWM starts afresh at exec."""
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc/self/status: peak memory needs Linux")
