"""Training: the Trainer and its settings (trainer.py), the step and the evaluation bookkeeping that every
training loop here shares (loop.py), what it trains on (corpus.py, data.py), what keeps a run safe
(outdir_lock.py, interrupt.py, resume.py, preflight.py), its record (log.py), data parallelism
(distributed.py, launch.py), and the command line `python -m gpt.train` (cli.py)."""
from gpt.train.cli import main
from gpt.train.trainer import TrainConfig, Trainer, TrainingDiverged, TrainResult

__all__ = ["TrainConfig", "Trainer", "TrainResult", "TrainingDiverged", "main"]
