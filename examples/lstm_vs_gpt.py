"""Which was the first LLM, ULMFiT's LSTM or GPT-1's transformer? Train both on the same data and see.

    python examples/lstm_vs_gpt.py --data tinyshakespeare          # or a text file; default: the offline plays
    python examples/lstm_vs_gpt.py --budgets 30 120 --sizes small   # fewer runs

Both families are trained by the same trainer (gpt/train/trainer.py) on the same characters, batches (batch 12,
context 64), AdamW schedule (lr 1e-3, 100 warmup steps, cosine to 1e-4, clip 1.0) and seed, at matched
parameter counts: "small" is the main job's GPT (4 layers, 128 wide, 0.80 M) against a 2-layer LSTM
(embedding 128, hidden 232, 0.79 M); "large" a 6-layer, 192-wide GPT against a 2-layer LSTM of embedding 192
whose hidden width is chosen to match its count. Each pair trains for equal wall-clock budgets (seconds of
training steps, evaluations not counted): a calibration measures each model's seconds per step on this
machine, the models alternating, and the run gets budget / (seconds per step) steps, with the learning-rate
schedule stretched to them (gpt/experiments/timed_runs.py). Every run is cached under --out-dir, so a rerun only draws the plot and
the table.

Prints a table (final validation loss per model and budget, the steps and tokens each got) and says where,
if anywhere, the transformer overtakes the LSTM; draws validation loss against training seconds and against
tokens seen to lstm_vs_gpt.png. Wall-clock budgets depend on the machine and on its load at the time:
calibrate and run with nothing else busy, and read the tokens-seen panel for what does not.
"""
import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run from a checkout without installing

import nanograd  # noqa: E402  (after the path set-up above)
from gpt.train import data  # noqa: E402
from gpt.lstm import hidden_matching  # noqa: E402
from gpt.model import GPT, GPTConfig  # noqa: E402
from gpt.storage import pyplot, save_png  # noqa: E402
from gpt.experiments.timed_runs import budget_overrides, calibrate, run  # noqa: E402
from gpt.train import TrainConfig  # noqa: E402

GPT_SIZES = {"small": dict(n_layer=4, n_head=4, n_embd=128), "large": dict(n_layer=6, n_head=6, n_embd=192)}
LSTM_EMBED = {"small": 128, "large": 192}


def settings(family, size, vocab_size):
    """TrainConfig overrides that build this family at this size (the LSTM's hidden width matched to the GPT)."""
    if family == "gpt":
        return dict(model="gpt", recipe="gpt2", **GPT_SIZES[size])  # GPT-2's: the schedule the LSTM trains with
    if size == "small":
        return dict(model="lstm", n_layer=2, n_embd=128, n_hidden=232)  # the PyTorch anchor's shape
    gpt_params = GPT(GPTConfig(vocab_size=vocab_size, **GPT_SIZES[size])).num_parameters()  # as the trainer counts
    return dict(model="lstm", n_layer=2, n_embd=LSTM_EMBED[size],
                n_hidden=hidden_matching(gpt_params, LSTM_EMBED[size], vocab_size))


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", default="shakespeare", help="'shakespeare' (offline), 'tinyshakespeare' or a file")
    parser.add_argument("--budgets", type=float, nargs="+", default=[30, 120, 480], help="seconds of training")
    parser.add_argument("--sizes", nargs="+", choices=sorted(GPT_SIZES), default=["small", "large"])
    parser.add_argument("--large-budgets", type=float, nargs="+", default=[30, 120],
                        help="budgets for the large pair (it is ~3x slower per step)")
    parser.add_argument("--seed", type=int, default=1337)
    parser.add_argument("--threads", type=int, default=None, help="threads for both families alike (default 2)")
    parser.add_argument("--out-dir", default="out/lstm_vs_gpt", help="runs, cache, plot")
    args = parser.parse_args()
    nanograd.set_num_threads(args.threads or min(2, nanograd.usable_cores()))
    out_dir = Path(args.out_dir)
    base = TrainConfig(data=args.data, seed=args.seed, sample_tokens=0, progress=False, eval_iters=20)
    vocab = data.prepare(args.data, "char").tokenizer.vocab_size
    models = {f"{size}-{family}": settings(family, size, vocab) for size in args.sizes for family in ("lstm", "gpt")}
    per_step = calibrate(base, models, out_dir, f"calibrate-{'-'.join(args.sizes)}-seed{args.seed}")
    table, curves = [], {}
    for size in args.sizes:
        budgets = args.budgets if size == "small" else args.large_budgets
        for family in ("lstm", "gpt"):
            seconds = per_step[f"{size}-{family}"]
            for budget in budgets:
                run_overrides = budget_overrides(models[f"{size}-{family}"], budget, seconds)
                name = f"{size}-{family}-{budget:g}s-seed{args.seed}"
                print(f"{name}: {run_overrides['max_iters']} steps ({seconds * 1e3:.0f} ms/step calibrated)",
                      flush=True)
                result = run(base, name, run_overrides, out_dir, seconds)
                table.append((size, family, budget, result))
                curves[(size, family, budget)] = result["evals"]
    report(table, curves, out_dir)


def report(table, curves, out_dir):
    print("\n| size | model | params | budget | steps | tokens seen | training s | val loss |")
    print("|---|---|---|---|---|---|---|---|")
    for size, family, budget, r in table:
        tokens = r["evals"][-1][1]
        print(f"| {size} | {family} | {r['params'] / 1e6:.2f}M | {budget:g} s | {r['steps']} | {tokens / 1e6:.2f}M "
              f"| {r['seconds']:.0f} | {r['val']:.4f} |")
    print()
    for size in dict.fromkeys(row[0] for row in table):
        finals = {(f, b): r["val"] for s, f, b, r in table if s == size}
        budgets = sorted({b for _, b in finals})
        lead = [b for b in budgets if ("gpt", b) in finals and ("lstm", b) in finals]
        gaps = ", ".join(f"{b:g} s: {finals[('lstm', b)] - finals[('gpt', b)]:+.3f}" for b in lead)
        ahead = {b: "gpt" if finals[("gpt", b)] < finals[("lstm", b)] else "lstm" for b in lead}
        crossings = [f"the {ahead[b]} takes the lead between {a:g} s and {b:g} s" for a, b in zip(lead, lead[1:])
                     if ahead[a] != ahead[b]]
        verdict = ("; ".join(crossings) or f"the {ahead[lead[0]]} is ahead at every budget tried") if lead else ""
        print(f"{size}: LSTM val minus GPT val per budget ({gaps}); {verdict}")
    plt = pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5))
    colors = {"lstm": "tab:orange", "gpt": "tab:blue"}
    for (size, family, budget), evals in curves.items():
        seconds, tokens, val = zip(*evals[1:])  # without step 0 (x = 0 has no place on a log axis)
        style = "-" if size == "small" else "--"
        label = f"{family} {size}, {budget:g} s"
        for ax, x in ((axes[0], seconds), (axes[1], [t / 1e6 for t in tokens])):
            ax.plot(x, val, style, color=colors[family], alpha=0.6, lw=1, label=label if ax is axes[0] else None)
            ax.plot(x[-1], val[-1], "o" if size == "small" else "s", color=colors[family], ms=6)  # the run's end
    for ax, xlabel in zip(axes, ("training seconds (this machine)", "tokens seen (millions)")):
        ax.set_xlabel(xlabel)
        ax.set_ylabel("validation loss (nats/char)")
        ax.set_xscale("log")
        ax.grid(alpha=0.3)
    axes[0].legend(fontsize=7)
    fig.suptitle("LSTM (ULMFiT's family) vs GPT at equal parameters and wall-clock budgets (marker: end of a run)")
    save_png(fig, out_dir / "lstm_vs_gpt.png")
    print(f"wrote {out_dir / 'lstm_vs_gpt.png'}")


if __name__ == "__main__":
    main()
