"""Progress suits where the output goes (tokenizer/progress.py): a bar on a terminal, plain lines elsewhere.

Planted regressions, each seen to fail here: progress() always returning the tqdm bar (the redirected runs
find '\\r'); ProgressLines printing on every update (the line count below); the front door not passing
--progress to its ranks (the two-rank terminal run shows no bar).
"""
import fcntl
import os
import pty
import re
import select
import struct
import subprocess
import sys
import termios
import time
from pathlib import Path

import pytest
from tqdm import tqdm

from gpt.train import distributed, launch
from tokenizer.__main__ import main as tokenizer_main
from tokenizer.progress import ProgressLines, progress

REPO = Path(__file__).resolve().parent.parent
TINY = ["--max-iters", "4", "--n-layer", "1", "--n-head", "2", "--n-embd", "16", "--block-size", "16",
        "--batch-size", "4", "--eval-interval", "2", "--eval-iters", "1", "--sample-tokens", "0", "--threads", "1"]
TIMING = r"[\d,.]+ (step/s|s/step), \d\d:\d\d elapsed, \d\d:\d\d left$"


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_lines_come_after_the_first_step_then_every_interval_and_at_the_end(capsys):
    clock = FakeClock()
    bar = ProgressLines(total=100, every=10.0, clock=clock)
    for step in range(1, 101):
        clock.now = step * 0.5  # 2 steps a second: 50 s in all
        bar.set_postfix(loss=f"{1 / step:.4f}", tok_s=f"{1000 * step:,}")
        bar.update()
        if step == 40:
            bar.write("step 40: val loss 1.0")
    bar.close()
    out, err = capsys.readouterr()
    lines = err.splitlines()
    # Step 1 (t=0.5), then t >= 10.5, 20.5, 30.5, 40.5 (steps 21, 41, 61, 81), then step 100.
    assert [line.split()[1] for line in lines] == ["1/100", "21/100", "41/100", "61/100", "81/100", "100/100"]
    assert lines[1] == "step 21/100 (21%)  loss 0.0476  tok_s 21,000 | 2.0 step/s, 00:10 elapsed, 00:39 left"
    assert all(re.search(TIMING, line) for line in lines) and "\r" not in err
    assert out == "step 40: val loss 1.0\n"  # write(): once, on stdout


def test_an_early_stop_says_where_and_slow_steps_read_in_seconds(capsys):
    clock = FakeClock()
    with ProgressLines(total=10, desc="merges", unit="merge", every=10.0, clock=clock) as bar:
        for n in range(1, 4):
            clock.now = 4.0 * n
            bar.update()
    first, last = capsys.readouterr().err.splitlines()
    assert first.startswith("merges 1/10 (10%) | 4.0 s/merge, 00:04 elapsed, 00:36 left")
    assert last.startswith("merges 3/10 (30%) | 4.0 s/merge, 00:12 elapsed, 00:28 left")  # at close


def test_the_flag_picks_bar_lines_or_nothing(capsys):
    assert isinstance(progress(5), ProgressLines)  # captured stderr is no terminal
    forced = progress(5, show=True)
    assert isinstance(forced, tqdm) and not forced.disable
    forced.close()
    assert "0/5" in capsys.readouterr().err
    silent = progress(5, show=False)
    silent.update()
    silent.write("eval")  # what a loop writes (its evaluations) still shows
    silent.close()
    assert capsys.readouterr() == ("eval\n", "")


def test_the_tokenizer_cli_prints_merge_lines_when_not_on_a_terminal(tmp_path, capsys):
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("low lower lowest newer newest wider " * 50, encoding="utf-8")
    tokenizer_main(["train", "--input", str(corpus), "--vocab-size", "270", "--out", str(tmp_path / "tok")])
    err = capsys.readouterr().err
    assert "\r" not in err and re.search(r"^merges 14/14 \(100%\) \| [\d,.]+ (merge/s|s/merge)", err, re.M)


def _corpus(tmp_path):
    path = tmp_path / "corpus.txt"
    path.write_text("To be, or not to be, that is the question.\n" * 300, encoding="utf-8")
    return path


def _command(tmp_path, *extra):
    return [sys.executable, "-m", "gpt.train", "--data", str(_corpus(tmp_path)), "--out-dir", str(tmp_path / "out"),
            "--cache-dir", str(tmp_path / "cache"), *TINY, *extra]


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO), "COLUMNS": "100"}


def test_redirected_training_prints_lines_without_carriage_returns(tmp_path):
    """stdout and stderr into one file, as `python -m gpt.train > log 2>&1`, nohup or CI do."""
    log = tmp_path / "log"
    with open(log, "w") as f:
        run = subprocess.run(_command(tmp_path, "--tokenizer", "bpe", "--vocab-size", "260"), stdout=f, stderr=f,
                             env=_env(), cwd=REPO, timeout=300)
    text = log.read_text()
    assert run.returncode == 0, text
    assert "\r" not in text
    steps = [line for line in text.splitlines() if re.match(r"step \d/4 ", line)]
    assert [line.split()[1] for line in steps] == ["1/4", "4/4"]  # a tiny run: the first step and the last
    assert all(re.match(r"step \d/4 \(\d+%\)  loss [\d.]+  lr [\d.e+-]+  tok_s [\d,]+ \| " + TIMING, line)
               for line in steps), steps
    assert re.search(r"^merges 4/4 \(100%\) \| ", text, re.M)  # the BPE tokenizer's merges
    for step in (0, 2, 4):  # the evaluations, once each
        assert len(re.findall(rf"^step {step}: train loss [\d.]+, val loss [\d.]+$", text, re.M)) == 1


def _run_on_terminal(command, timeout=300):
    """Run `command` with stdout and stderr on a 100-column pseudo-terminal; (exit status, all it wrote)."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # tqdm draws nothing 0 wide
    proc = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=slave, stderr=slave, env=_env(), cwd=REPO)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 1.0)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every process holding the terminal has closed it
                    break
                if not chunk:
                    break
                chunks.append(chunk)
        status = proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return status, b"".join(chunks).decode("utf-8", "replace")


def _check_bar(status, text):
    assert status == 0, text
    assert re.search(r"\r *\d+%\|.*\| \d/4 \[", text), text  # tqdm's frames: percent, bar, count
    for step in (0, 2, 4):  # the evaluations, once each, between frames
        assert len(re.findall(rf"step {step}: train loss [\d.]+, val loss [\d.]+\r\n", text)) == 1, text
    assert not re.search(r"^step \d/4 ", text, re.M)  # no plain progress lines


def test_on_a_terminal_training_draws_the_bar(tmp_path):
    _check_bar(*_run_on_terminal(_command(tmp_path)))


def test_on_a_terminal_two_ranks_draw_the_bar(tmp_path):
    """Ranks write through the launcher's pipes, so the front door tells them that a terminal reads them."""
    pytest.importorskip("mpi4py", reason="two ranks need mpi4py (pip install -e '.[mpi]')")
    if launch.find_launcher() is None:
        pytest.skip("two ranks need mpirun or mpiexec on PATH (pip install mpich)")
    _check_bar(*_run_on_terminal(_command(tmp_path, "--ranks", "2")))
