"""Training runs at equal wall-clock budgets, cached: what examples/lstm_vs_gpt.py and examples/recipe_ablation.py
compare models by.

A budget is seconds of training steps, evaluations not counted. A short calibration run measures a model's
seconds per step on this machine; a run then gets budget / (seconds per step) steps, with the learning-rate
schedule stretched to them (`budget_overrides`). Every run is cached as result.json in its own directory, so
a rerun only reads results. Budgets depend on the machine and its load: calibrate and run with nothing else busy.
"""
import dataclasses
import json
from pathlib import Path

from gpt.train import resume
from gpt.train.log import TrainingLog
from gpt.train.trainer import Trainer

CALIBRATION_STEPS = 12


def seconds_per_step(log_rows, batch_tokens):
    """Training seconds of each logged step, from the tokens/s the trainer logged for it."""
    return [batch_tokens / float(r["tokens_per_s"]) for r in log_rows if r["kind"] == "step"]


def run(base, name, overrides, out_dir):
    """Train `base` (a TrainConfig) with `overrides` once, or read the cached result of an earlier call:
    {'evals': [(training seconds, tokens seen, val loss)], 'val', 'steps', 'seconds', 'median_step_seconds',
    'params', 'overrides'}."""
    result_file = Path(out_dir) / name / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    # Rebuilt from the settings `base` was given, not dataclasses.replace: a recipe's defaults (batch_size, ...)
    # were filled in when `base` was built, and `overrides` may name another recipe.
    given = {setting: getattr(base, setting) for setting in resume.given_by_default(base)}
    config = type(base)(**{**given, **overrides, "out_dir": str(Path(out_dir) / name)})
    trainer = Trainer(config)
    trainer.train()
    rows = TrainingLog.read(Path(config.out_dir) / "log.csv")
    batch_tokens = config.batch_size * config.block_size
    step_seconds = seconds_per_step(rows, batch_tokens)
    elapsed, evals, clock = {0: 0.0}, [], 0.0
    for r, dt in zip([r for r in rows if r["kind"] == "step"], step_seconds):
        clock += dt
        elapsed[int(r["step"])] = clock  # a "step" row carries the step count after that step
    for r in rows:
        if r["kind"] == "eval":
            step = int(r["step"])
            evals.append((elapsed.get(step, clock), step * batch_tokens, float(r["val_loss"])))
    result = dict(evals=evals, val=evals[-1][2], steps=config.max_iters, seconds=clock,
                  median_step_seconds=sorted(step_seconds)[len(step_seconds) // 2],
                  params=trainer.model.num_parameters(), overrides=overrides)
    result_file.write_text(json.dumps(result, indent=1))
    return result


def calibrate(base, overrides, out_dir, name):
    """Median seconds per training step of this model here (cached with the runs)."""
    result = run(dataclasses.replace(base, eval_interval=10**9, eval_iters=1),
                 name, dict(overrides, max_iters=CALIBRATION_STEPS, warmup_iters=1), out_dir)
    return result["median_step_seconds"]


def budget_overrides(overrides, budget, per_step, warmup=100, evals=8):
    """`overrides` with the steps that fit in `budget` seconds at `per_step` seconds each (at least 20), the
    cosine stretched to them, warmup_iters at most a tenth of them and `evals` evaluations on the way."""
    steps = max(int(budget / per_step), 20)
    return dict(overrides, max_iters=steps, lr_decay_iters=steps, warmup_iters=min(warmup, steps // 10),
                eval_interval=max(steps // evals, 1))
