"""The record of a training run: a CSV log (one row per step, one per evaluation) and a loss-curve PNG."""
import csv
import io
from pathlib import Path

from gpt.storage.atomic import write_atomic
from gpt.storage.figures import pyplot, save_png

COLUMNS = ("kind", "step", "lr", "loss", "val_loss", "tokens_per_s")


class TrainingLog:
    """Appends rows to a CSV file as training goes.

    kind "step": `loss` is that step's training loss, with `lr` and `tokens_per_s`.
    kind "eval": `loss` and `val_loss` are the mean losses on the fixed train and val evaluation batches.
    Opening the log of a resumed run drops the rows written after the checkpoint it resumes from, and a last
    row cut short by a crash (it lacks its newline: "step,12" cut to "step,1" would read as step 1).
    """

    def __init__(self, path, resume_step=None):
        self.path = Path(path)
        rows = []
        if resume_step is not None and self.path.exists():
            text = self.path.read_text(encoding="utf-8", errors="replace")
            text = text[: text.rfind("\n") + 1]  # whole lines only
            rows = [r for r in csv.DictReader(io.StringIO(text)) if int(r["step"]) <= resume_step]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
        write_atomic(self.path, buffer.getvalue().encode("utf-8"))

    def write(self, kind, step, **values):
        with open(self.path, "a", newline="", encoding="utf-8") as f:
            csv.DictWriter(f, COLUMNS).writerow({"kind": kind, "step": step, **values})

    @staticmethod
    def read(path):
        with open(path, newline="", encoding="utf-8") as f:
            return list(csv.DictReader(f))


def plot_losses(csv_path, png_path):
    """Draw the per-step training loss and the evaluated train/val losses against the step."""
    plt = pyplot()
    rows = TrainingLog.read(csv_path)
    steps = [(int(r["step"]), float(r["loss"])) for r in rows if r["kind"] == "step"]
    evals = [(int(r["step"]), float(r["loss"]), float(r["val_loss"])) for r in rows if r["kind"] == "eval"]
    fig, ax = plt.subplots(figsize=(8, 5))
    if steps:
        ax.plot(*zip(*steps), lw=0.6, alpha=0.5, color="tab:blue", label="train (batch)")
    if evals:
        at, train, val = zip(*evals)
        ax.plot(at, train, "o-", color="tab:blue", label="train (eval)")
        ax.plot(at, val, "o-", color="tab:orange", label="val (eval)")
    ax.set_xlabel("step")
    ax.set_ylabel("cross-entropy loss (nats/token)")
    ax.grid(alpha=0.3)
    ax.legend()
    save_png(fig, png_path)
