"""Progress of a long loop, shown to suit where the output goes: a tqdm bar on stderr when stderr is a
terminal; a plain line every so often when it is not (a file, a pipe, CI, nohup, a scheduler), where a bar's
carriage-return frames would pile up into a wall of text.

    with progress(total=2000, show=None) as bar:
        for step in range(2000):
            ...
            bar.set_postfix(loss=f"{loss:.4f}")
            bar.update()
            if step % 250 == 0:
                bar.write(f"step {step}: val loss {val:.4f}")  # stdout, once, whatever is shown

`show` is what a program's --progress/--no-progress flag gives: None (no flag) picks by the terminal, True
always draws the bar, False shows neither (write() still prints). Away from a terminal the lines read

    step 120/2000 (6%)  loss 2.3456  lr 1.00e-03  tok_s 12,345 | 4.1 step/s, 00:29 elapsed, 07:38 left

one after the first step (so a log shows at once that the run started, and how fast), then one every
LINE_EVERY_S seconds, and one at the last step. A notebook's stderr is no terminal: pass show=True there for
the bar.

Why this lives in tokenizer/: both the tokenizer (training merges) and gpt (the trainers) show progress, gpt
imports the tokenizer, and the tokenizer stands alone, importing nothing of gpt. The engine, nanograd, is
about tensors, not consoles. So the rule lives in the lower of the two packages that need it.
"""
import argparse
import sys
import time

from tqdm import tqdm

LINE_EVERY_S = 10.0
FLAG_HELP = (f"progress: a bar when stderr is a terminal, else a line every {LINE_EVERY_S:.0f} s "
             "(--progress: the bar always; --no-progress: neither)")


def add_progress_flag(parser):
    """--progress/--no-progress on an argparse parser; the value (None without the flag) is progress()'s `show`."""
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None, help=FLAG_HELP)


def is_terminal(stream):
    """Whether `stream` (sys.stderr, say) is a terminal; False for a missing, closed or file-less stream."""
    try:
        return stream is not None and stream.isatty()
    except (AttributeError, ValueError):  # no isatty (some replacement object), or closed
        return False


def draws_bar(show):
    """Whether progress(show=show) draws a tqdm bar: show=True, or None with stderr a terminal."""
    return show is True or (show is None and is_terminal(sys.stderr))


def progress(total, show=None, desc=None, unit="step", initial=0, leave=True):
    """An object with tqdm's update(n), set_postfix(**fields), write(text), close() and `with`: a tqdm bar
    (show=True, or None on a terminal), plain lines on stderr (None elsewhere), or nothing (False). `total`
    steps in all, `initial` of them already done (a resumed run); `desc` names the count (default: `unit`);
    leave=False clears the bar when done (lines stay: a log keeps what it was told)."""
    if show is None and not draws_bar(show):
        return ProgressLines(total, desc, unit, initial)
    return tqdm(total=total, initial=initial, desc=desc, unit=unit, disable=show is False, leave=leave,
                dynamic_ncols=True)


class ProgressLines:
    """tqdm's interface, printing a line on stderr after the first update, then at most every `every` seconds,
    and when the count reaches `total` or the loop ends; no carriage returns. `clock` is for tests."""

    def __init__(self, total, desc=None, unit="step", initial=0, every=LINE_EVERY_S, clock=time.monotonic):
        self.total, self.label, self.unit, self.every, self.clock = total, desc or unit, unit, every, clock
        self.n = self.shown_n = initial
        self.start = self.shown_at = clock()
        self.fields, self.shown_any = {}, False

    def set_postfix(self, ordered_dict=None, refresh=True, **fields):
        """Fields shown after the count on the next line, as tqdm's set_postfix takes them."""
        self.fields = {**(ordered_dict or {}), **fields}

    def update(self, n=1):
        self.n += n
        now = self.clock()
        done = self.total is not None and self.n >= self.total
        if not self.shown_any or now - self.shown_at >= self.every or done:
            self._show(now)

    @staticmethod
    def write(text, file=None, end="\n"):
        """Print `text` on stdout (or `file`), as tqdm.write does."""
        print(text, file=file or sys.stdout, end=end, flush=True)

    def close(self):
        if self.n != self.shown_n:  # stopped early (Ctrl-C, early stopping): say where
            self._show(self.clock())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def _show(self, now):
        count = f"{self.label} {self.n}"
        if self.total:
            count += f"/{self.total} ({100 * self.n // self.total}%)"
        parts = [count, *(f"{k} {v if isinstance(v, str) else tqdm.format_num(v)}" for k, v in self.fields.items())]
        timing = []
        # The rate since the last line follows a run that speeds up (compilation done) or slows down.
        rate = (self.n - self.shown_n) / (now - self.shown_at) if now > self.shown_at else 0.0
        if rate > 0:
            timing.append(f"{rate:,.1f} {self.unit}/s" if rate >= 1 else f"{1 / rate:,.1f} s/{self.unit}")
        timing.append(f"{tqdm.format_interval(now - self.start)} elapsed")
        if rate > 0 and self.total is not None:
            timing.append(f"{tqdm.format_interval(max(self.total - self.n, 0) / rate)} left")
        sys.stdout.flush()  # what the program printed before comes first in a log that holds both streams
        print("  ".join(parts) + " | " + ", ".join(timing), file=sys.stderr, flush=True)
        self.shown_n, self.shown_at, self.shown_any = self.n, now, True
