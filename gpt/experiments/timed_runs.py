"""Training runs at equal wall-clock budgets, cached: what examples/lstm_vs_gpt.py and examples/recipe_ablation.py
compare models by.

A budget is seconds of training steps, evaluations not counted. A calibration measures every model's seconds
per step on this machine, alternating between them (`calibrate`); a run then gets budget / (seconds per step)
steps, with the learning-rate schedule stretched to them (`budget_overrides`). The runs themselves are counted
in steps, so the machine's load while they train changes their time but not their losses. Every run is cached
as result.json in its own directory, so a rerun only reads results. Calibrate with nothing else busy.
"""
import json
import statistics
import time
from pathlib import Path

from gpt.train import resume
from gpt.train.log import TrainingLog
from gpt.train.trainer import Trainer

def _rebuilt(base, overrides, out_dir):
    """`base` with `overrides`, writing to out_dir. Rebuilt from the settings `base` was given, not with
    dataclasses.replace: a recipe's defaults (batch_size, ...) were filled in when `base` was built, and
    `overrides` may name another recipe."""
    given = {setting: getattr(base, setting) for setting in resume.given_by_default(base)}
    return type(base)(**{**given, **overrides, "out_dir": str(out_dir)})


def run(base, name, overrides, out_dir, per_step):
    """Train `base` (a TrainConfig) with `overrides` once, or read the cached result of an earlier call:
    {'evals': [(training seconds, tokens seen, val loss)], 'val', 'steps', 'seconds', 'params', 'overrides'}.
    Seconds are the calibrated `per_step` times the steps taken: what the run costs on an idle machine."""
    result_file = Path(out_dir) / name / "result.json"
    if result_file.is_file():
        return json.loads(result_file.read_text())
    config = _rebuilt(base, overrides, Path(out_dir) / name)
    trainer = Trainer(config)
    trainer.train()
    batch_tokens = config.batch_size * config.block_size
    evals = [(int(r["step"]) * per_step, int(r["step"]) * batch_tokens, float(r["val_loss"]))
             for r in TrainingLog.read(Path(config.out_dir) / "log.csv") if r["kind"] == "eval"]
    result = dict(evals=evals, val=evals[-1][2], steps=config.max_iters, seconds=config.max_iters * per_step,
                  params=trainer.model.num_parameters(), overrides=overrides)
    result_file.write_text(json.dumps(result, indent=1))
    return result


def calibrate(base, stages, out_dir, name, rounds=5, steps=4):
    """Seconds per training step here of each of `stages` ({label: overrides of `base`}), measured together: a
    round times `steps` steps of each in turn, in the reverse order every other round, and each model gets the
    median of its rounds, so a change in the machine's load while calibrating falls on all of them alike.
    Cached in out_dir/name/calibration.json."""
    cached = Path(out_dir) / name / "calibration.json"
    if cached.is_file():
        return json.loads(cached.read_text())
    trainers = {}
    for label, overrides in stages.items():
        config = _rebuilt(base, dict(overrides, max_iters=10**6, eval_interval=10**9, eval_iters=1),
                          Path(out_dir) / name / label)
        trainers[label] = Trainer(config)
        for _ in range(2):  # warm-up: numba compiles, BLAS starts its threads, caches fill
            trainers[label].train_step()
    times = {label: [] for label in stages}
    for round_ in range(rounds):
        for label, trainer in (list(trainers.items()) if round_ % 2 == 0 else reversed(trainers.items())):
            start = time.perf_counter()
            for _ in range(steps):
                trainer.train_step()
            times[label].append((time.perf_counter() - start) / steps)
    for trainer in trainers.values():
        trainer.lock.release()  # held by a trainer until train() ends, which these never call
    per_step = {label: statistics.median(seconds) for label, seconds in times.items()}
    cached.write_text(json.dumps(per_step, indent=1))
    return per_step


def budget_overrides(overrides, budget, per_step, warmup=100, evals=8):
    """`overrides` with the steps that fit in `budget` seconds at `per_step` seconds each (at least 20), the
    cosine stretched to them, warmup_iters at most a tenth of them and `evals` evaluations on the way."""
    steps = max(int(budget / per_step), 20)
    return dict(overrides, max_iters=steps, lr_decay_iters=steps, warmup_iters=min(warmup, steps // 10),
                eval_interval=max(steps // evals, 1))
