"""Which parts of the modern recipe earn their place: the main job's model (4 layers, 4 heads, 128 wide, context
64) trained with each change of gpt/model.py's "modern" recipe added in turn, each for the same wall-clock time.

    python examples/recipe_ablation.py --data tinyshakespeare    # ~15-20 min on 2 cores; runs are cached
    python examples/recipe_ablation.py --tiny                    # a seconds-long smoke run

The budget is what the GPT-2 recipe's 2000 steps of batch 12 take here (seconds of training steps, evaluations not
counted; gpt/experiments/timed_runs.py calibrates each model's seconds per step and gives it the steps that fit).
Then, one change at a time: rotary positions; RMSNorm without biases; the squared-ReLU MLP; QK-norm with an untied
head and zero-initialised projections; Muon for the blocks' matrices; the modern recipe's own batch (24) and
schedule. The LSTM (gpt/lstm.py, 0.79 M parameters) gets the same budget, and the modern recipe twice and four
times it. All train in this process on --threads threads (the front door's two MPI ranks are faster still, for
every row alike).

Prints a table (val loss, steps, tokens seen, tokens/s, the change each part made) and draws val loss against
training seconds for the GPT-2 recipe, the modern recipe and the LSTM to recipe_ablation.png in --out-dir.
Measured results: docs/recipes.md.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import nanograd  # noqa: E402  (after the path set-up above)
from gpt.experiments.genre_runs import parse_with_tiny  # noqa: E402
from gpt.experiments.timed_runs import budget_overrides, calibrate, run  # noqa: E402
from gpt.storage import pyplot, save_png  # noqa: E402
from gpt.train import TrainConfig  # noqa: E402
from gpt.train.trainer import RECIPE_TRAINING  # noqa: E402
from tokenizer.progress import add_progress_flag  # noqa: E402

GPT2_STEPS = RECIPE_TRAINING["gpt2"]["max_iters"]
# (name, what changed, TrainConfig overrides); each GPT stage keeps the parts of the stages above it.
PARTS = [dict(positions="rotary"), dict(norm="rms", bias=False), dict(mlp="relu2"),
         dict(qk_norm=True, tie_weights=False, zero_init=True)]
STAGES = [("gpt2", "GPT-2 as nanoGPT trains it", dict(recipe="gpt2"))]
WHAT = ("+ rotary positions", "+ RMSNorm, no biases", "+ squared-ReLU MLP",
        "+ QK-norm, untied head, zero-init projections")
for part, name, what in zip(PARTS, ("rotary", "rmsnorm", "relu2", "qknorm"), WHAT):
    STAGES.append((name, what, {**STAGES[-1][2], **part}))
STAGES += [("muon", "+ Muon for the blocks' matrices (batch 12)", dict(recipe="modern", **{
               k: RECIPE_TRAINING["gpt2"][k] for k in ("batch_size", "learning_rate", "warmup_iters", "eval_iters")})),
           ("modern", "+ batch 24, the modern recipe's schedule", dict(recipe="modern")),
           ("lstm", "the LSTM, for comparison", dict(model="lstm", n_layer=2))]
TINY = dict(n_layer=1, n_embd=16, lstm_hidden=16, block_size=16, budget_scale=0.002, multiples=[2], eval_iters=2)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="shakespeare", help="'shakespeare' (offline), 'tinyshakespeare' or a file")
    parser.add_argument("--multiples", type=float, nargs="*", default=[2, 4],
                        help="longer budgets for the modern recipe, as multiples of the GPT-2 recipe's")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--threads", type=int, default=None, help="threads for every run alike (default 2)")
    parser.add_argument("--out-dir", default="out/recipe_ablation", help="runs (the cache), plot")
    parser.add_argument("--tiny", action="store_true", help="a tiny model and budget: a smoke run of seconds")
    add_progress_flag(parser)
    # eval_iters None: each recipe's, so that every stage is scored on the same 240 windows of validation text
    parser.set_defaults(n_layer=4, n_embd=128, lstm_hidden=232, block_size=64, budget_scale=1.0, eval_iters=None)
    args = parse_with_tiny(parser, argv, TINY, [])
    nanograd.set_num_threads(args.threads or min(2, nanograd.usable_cores()))
    out_dir = Path(args.out_dir)
    base = TrainConfig(data=args.data, seed=args.seed, sample_tokens=0, progress=args.progress, eval_iters=args.eval_iters)
    tag = f"{args.n_layer}x{args.n_embd}x{args.block_size}-seed{args.seed}"

    def sized(overrides):
        """The stage's overrides at this run's size: the main job's GPT, or the LSTM of about its parameters."""
        if overrides.get("model") == "lstm":
            return dict(overrides, n_embd=args.n_embd, n_hidden=args.lstm_hidden, block_size=args.block_size)
        return dict(overrides, n_layer=args.n_layer, n_embd=args.n_embd, block_size=args.block_size)

    stages = {name: sized(overrides) for name, _, overrides in STAGES}
    per_step = calibrate(base, stages, out_dir, f"calibrate-{tag}")  # the stages alternating, so load hits each alike
    budget = per_step["gpt2"] * GPT2_STEPS * args.budget_scale
    print(f"budget: {budget:.0f} s of training, what {GPT2_STEPS} GPT-2 steps take here\n", flush=True)

    def timed(name, budget):
        """The stage's run at `budget` seconds of training (cached)."""
        warmup = TrainConfig(**stages[name]).warmup_iters  # the recipe's
        settings = budget_overrides(stages[name], budget, per_step[name], warmup=warmup)
        print(f"{name}: {settings['max_iters']} steps ({per_step[name] * 1e3:.0f} ms/step calibrated)", flush=True)
        return run(base, f"{name}-{budget:.4g}s-{tag}", settings, out_dir, per_step[name])

    rows = [(what, timed(name, budget)) for name, what, _ in STAGES]
    rows += [(f"the modern recipe, {m:g}x the time", timed("modern", m * budget)) for m in args.multiples]
    report(rows, out_dir)


def report(rows, out_dir):
    print("\n| recipe | params | steps | tokens seen | training s | tokens/s | val loss | change |")
    print("|---|---|---|---|---|---|---|---|")
    previous = None
    for what, r in rows:
        tokens = r["evals"][-1][1]
        aside = what.startswith(("the LSTM", "the modern"))  # not a stage: no change to report
        change = "" if previous is None or aside else f"{r['val'] - previous:+.3f}"
        print(f"| {what} | {r['params'] / 1e6:.2f}M | {r['steps']} | {tokens / 1e6:.2f}M | {r['seconds']:.0f} "
              f"| {tokens / r['seconds']:,.0f} | {r['val']:.4f} | {change} |")
        if not aside:
            previous = r["val"]
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    drawn = {"GPT-2 as nanoGPT trains it": "tab:blue", "+ batch 24, the modern recipe's schedule": "tab:green",
             "the LSTM, for comparison": "tab:orange"}
    for what, r in rows:
        seconds, _, val = zip(*r["evals"][1:])  # without step 0
        color = drawn.get(what, "tab:green" if what.startswith("the modern") else "lightgray")
        label = {"+ batch 24, the modern recipe's schedule": "modern recipe"}.get(what, what)
        ax.plot(seconds, val, "o-", ms=3, lw=1, color=color, label=label if what in drawn else None,
                alpha=1.0 if what in drawn else 0.6)
    ax.set_xlabel("training seconds (this machine)")
    ax.set_ylabel("validation loss (nats/char)")
    ax.set_xscale("log")
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("GPT-2's recipe, the modern one and the LSTM (gray: the stages between)")
    save_png(fig, out_dir / "recipe_ablation.png")
    print(f"wrote {out_dir / 'recipe_ablation.png'}")


if __name__ == "__main__":
    main()
