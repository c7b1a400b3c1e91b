"""The PyTorch twin of the main job: `examples/train_shakespeare.py`'s default run, step for step.

    python -m benchmarks.torch_shakespeare PATH [THREADS] [gpt2|modern|lstm]   # PATH: e.g. tinyshakespeare.txt

THREADS: 2 by default. `gpt2` or `modern`: the twin of `--recipe gpt2` or `--recipe modern` (default: the front
door's recipe); `lstm`: of `--model lstm` (benchmarks.torch_lstm.TorchLSTMLM, from our LSTMLM with seed 1337).

Same character tokenizer and splits (gpt.train.data), the same initial weights (our GPT with seed 1337, copied into
benchmarks.torch_gpt.TorchGPT), the same batches and evaluation batches from the same generators, the same
schedule, clipping and optimizer settings (the recipe's: TrainConfig(recipe=...)). Prints the final train/val loss
and the wall time from data loading to the last evaluation, to compare with ours
(`time python examples/train_shakespeare.py --data PATH`).
PyTorch keeps its own OpenMP settings; it shares our malloc setting (nanograd.kernels.runtime.keep_freed_memory).
"""
import sys
import time

import torch  # first: its OpenMP runtime reads the environment before anything of ours loads

import numpy as np

from benchmarks.torch_gpt import TorchGPT, torch_step
from benchmarks.torch_lstm import TorchLSTMLM


def main(path, threads=2, family=None):
    torch.set_num_threads(threads)
    from gpt import GPT, GPTConfig, train
    from gpt.train import data
    from nanograd import optim
    from nanograd.kernels.runtime import keep_freed_memory

    keep_freed_memory()

    family = family or train.TrainConfig().recipe
    c = train.TrainConfig(**({"model": "lstm"} if family == "lstm" else {"recipe": family}))
    start = time.perf_counter()
    tokens = data.prepare(path, c.tokenizer)
    if family == "lstm":
        from gpt.lstm import LSTMConfig, LSTMLM

        config = LSTMConfig(block_size=c.block_size, vocab_size=tokens.tokenizer.vocab_size)
        model = TorchLSTMLM.from_ours(LSTMLM(config, seed=c.seed))
    else:
        config = GPTConfig(block_size=c.block_size, vocab_size=tokens.tokenizer.vocab_size, n_layer=c.n_layer,
                           n_head=c.n_head, n_embd=c.n_embd, recipe=c.recipe)
        model = TorchGPT.from_ours(GPT(config, seed=c.seed))
    opt = model.configure_optimizers(c.weight_decay, c.learning_rate, (c.beta1, c.beta2), **(
        {} if family == "lstm" else {"muon_lr": c.muon_lr}))
    step = torch_step(model, opt)
    rng, eval_rng = np.random.default_rng(c.seed), np.random.default_rng([c.seed, 1])
    eval_batches = {split: [data.get_batch(ids, c.batch_size, c.block_size, eval_rng) for _ in range(c.eval_iters)]
                    for split, ids in (("train", tokens.train), ("val", tokens.val))}

    def evaluate():
        model.eval()
        with torch.no_grad():
            losses = {split: float(np.mean([model(torch.from_numpy(x), torch.from_numpy(y))[1].item()
                                            for x, y in batches])) for split, batches in eval_batches.items()}
        model.train()
        return losses

    for it in range(c.max_iters):
        if it % c.eval_interval == 0:
            evaluate()
        lr = optim.cosine_lr(it, c.learning_rate, c.min_lr, c.warmup_iters, c.max_iters)
        for group in opt.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)  # Muon's group runs at its multiple of the rate
        step(*data.get_batch(tokens.train, c.batch_size, c.block_size, rng))
    losses = evaluate()
    print(f"PyTorch twin ({family}): step {c.max_iters}: train loss {losses['train']:.4f}, "
          f"val loss {losses['val']:.4f}; {time.perf_counter() - start:.1f} s from data loading to the last evaluation")


if __name__ == "__main__":
    if len(sys.argv) not in (2, 3, 4) or sys.argv[3:] not in ([], ["gpt2"], ["modern"], ["lstm"]):
        raise SystemExit(__doc__)
    main(sys.argv[1], int(sys.argv[2]) if len(sys.argv) >= 3 else 2, *sys.argv[3:])
