"""The LSTM rows: a training step of our LSTM language model (gpt/lstm.py, the recurrence in
nanograd/kernels/lstm.py) against PyTorch's nn.LSTM on the same weights and batch (benchmarks/torch_lstm.py,
in a process of its own, as the GPT rows' peer). The first losses must agree before anything is timed."""
import json
import os
import subprocess
import sys

from benchmarks.configs import LSTM_CONFIG, make_batch, median_seconds, rounds_for
from benchmarks.training import ROOT, our_step, torch_available
from gpt.lstm import LSTMConfig, LSTMLM


def run_peer(threads: int, rounds: int, per_round: int) -> dict | None:
    if not torch_available():
        return None
    env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"}  # the peer's own default
    out = subprocess.run([sys.executable, "-m", "benchmarks.torch_lstm", "train", str(threads), str(rounds),
                          str(per_round)], capture_output=True, text=True, cwd=ROOT, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"the PyTorch side of the LSTM row failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def train_row(threads: int, quick: bool) -> dict:
    model = LSTMLM(LSTMConfig(**LSTM_CONFIG["config"]), seed=0)
    step = our_step(model, model.configure_optimizers(0.1, 1e-3, (0.9, 0.99)))
    idx, targets = make_batch("lstm")
    first_loss = step(idx, targets)
    step(idx, targets)  # warm-up: numba compiles, caches fill
    rounds, per_round = rounds_for("lstm", quick)
    seconds = median_seconds(lambda: step(idx, targets), rounds, per_round)
    row = {"name": "train step, LSTM LM (2L, emb 128, hidden 232, T=64, B=12)", "unit": "tokens/s",
           "ours": idx.size / seconds, "ours_ms": 1e3 * seconds}
    peer = run_peer(threads, rounds, per_round)
    if peer is not None:
        if abs(first_loss - peer["first_loss"]) > 1e-4 * abs(peer["first_loss"]):
            raise AssertionError(f"LSTM: our loss {first_loss} != PyTorch's {peer['first_loss']}")
        row.update(peer=idx.size / peer["seconds"], peer_ms=1e3 * peer["seconds"], ratio=peer["seconds"] / seconds)
    return row


def run(quick: bool, threads: int) -> list:
    return [train_row(threads, quick)]
