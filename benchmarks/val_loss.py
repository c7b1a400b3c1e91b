"""A checkpoint's loss on its corpus's whole validation split: every token, in windows of block_size, the same
text whatever the run's batch size (the trainer's own evaluations read eval_iters random batches of its
batch_size, so two runs of other batch sizes are scored on other text).

    python -m benchmarks.val_loss --ckpt out/shakespeare/ckpt --data tinyshakespeare.txt

Each window of block_size + 1 tokens starts where the last one ended, so each token is predicted once, from
between 1 and block_size tokens of context (on average block_size / 2, as in training).
"""
import argparse

import numpy as np

from gpt import load_checkpoint
from gpt.train import data
from nanograd import no_grad


def whole_split_loss(model, ids, batch_size=64):
    """Mean next-token loss over ids (N,), in consecutive windows of block_size predictions."""
    T = model.config.block_size
    n = (len(ids) - 1) // T
    x = np.stack([ids[i * T : (i + 1) * T] for i in range(n)])  # (n, T)
    y = np.stack([ids[i * T + 1 : (i + 1) * T + 1] for i in range(n)])
    total = 0.0
    with no_grad(), model.evaluating():
        for start in range(0, n, batch_size):
            rows = slice(start, start + batch_size)
            total += model(x[rows], y[rows])[1].item() * len(x[rows])
    return total / n


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", nargs="+", required=True, help="checkpoint directories")
    parser.add_argument("--data", default="shakespeare", help="the corpus they were trained on")
    args = parser.parse_args(argv)
    for path in args.ckpt:
        ckpt = load_checkpoint(path)
        val = data.prepare(args.data, tokenizer_path=ckpt.tokenizer_path).val
        model = ckpt.build_model()
        print(f"{path}: step {ckpt.step}, whole-val loss {whole_split_loss(model, val):.4f} ({len(val):,} tokens)")


if __name__ == "__main__":
    main()
