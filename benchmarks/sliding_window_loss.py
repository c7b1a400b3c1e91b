"""What the sliding KV cache costs in quality: a rotary checkpoint's next-token loss on validation text, far past its
context, with the cache sliding (one position per token) against nanoGPT's way (the last block_size tokens run
afresh for every token).

    python -m benchmarks.sliding_window_loss --ckpt out/shakespeare/ckpt --data tinyshakespeare.txt

The two differ because a sliding cache keeps keys that deeper layers computed while their positions still saw
tokens now out of the window (tests/test_modern_recipe.py): what the newest token reads reaches further back
than block_size. Prints the mean loss of each over every position from block_size to --length, and by span.
"""
import argparse

import numpy as np

from gpt import load_checkpoint
from gpt.generate import next_logits
from gpt.train import data
from nanograd import no_grad


def token_losses(logits, targets):
    """-log softmax(logits)[target] per row: logits (B, V), targets (B,)."""
    shifted = logits - logits.max(axis=-1, keepdims=True)
    log_probs = shifted - np.log(np.exp(shifted).sum(axis=-1, keepdims=True))
    return -log_probs[np.arange(len(targets)), targets]


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", required=True, help="a checkpoint of a model with rotary positions")
    parser.add_argument("--data", default="shakespeare", help="the corpus it was trained on (its val split is read)")
    parser.add_argument("--sequences", type=int, default=64, help="passages read side by side")
    parser.add_argument("--length", type=int, default=600, help="tokens per passage")
    args = parser.parse_args(argv)
    ckpt = load_checkpoint(args.ckpt)
    model = ckpt.build_model()
    model.eval()
    if not model.new_cache(1).slides:
        parser.error(f"{args.ckpt}: a model with learned positions has no sliding cache")
    W = model.config.block_size
    val = data.prepare(args.data, tokenizer_path=ckpt.tokenizer_path).val
    starts = np.random.default_rng(0).integers(0, len(val) - args.length - 1, args.sequences)
    ids = np.stack([val[s : s + args.length + 1] for s in starts])  # (B, length + 1)
    sliding, rerun = [], []
    cache = model.new_cache(args.sequences)
    logits = next_logits(model, ids[:, :1], cache)
    for t in range(1, args.length + 1):  # logits hold the prediction of ids[:, t]
        if t >= W:
            sliding.append(token_losses(logits, ids[:, t]))
            with no_grad():
                rerun.append(token_losses(model(ids[:, t - W : t])[0].data[:, -1], ids[:, t]))
        logits = next_logits(model, ids[:, t : t + 1], cache)
    sliding, rerun = np.array(sliding), np.array(rerun)  # (positions, B)
    print(f"{args.sequences} passages, positions {W} to {args.length}: sliding cache {sliding.mean():.4f}, "
          f"window run afresh {rerun.mean():.4f}, difference {sliding.mean() - rerun.mean():+.4f} nats/token")
    for a, b in ((W, 2 * W), (2 * W, 4 * W), (4 * W, args.length)):
        span = slice(a - W, b - W)
        if a < args.length:
            print(f"  positions {a}-{min(b, args.length)}: {sliding[span].mean():.4f} against {rerun[span].mean():.4f}")


if __name__ == "__main__":
    main()
