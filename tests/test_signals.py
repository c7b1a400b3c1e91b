"""SIGTERM (what `kill`, `timeout`, Slurm, `docker stop` and systemd send) stops a run as Ctrl-C does, in one
process and in two ranks; SIGKILL of the launcher leaves no rank behind; bad input is refused before any
rank starts, and an error one rank finds ends them all without MPI's abort banner.

The SIGTERM loops, as the SIGKILL loop of tests/test_crash_safety.py, draw their moments from
NANOGRAD_GPT_KILL_SEED (0 under CI, else random; printed on failure) and send NANOGRAD_GPT_KILL_TRIALS signals
(3 by default); after the first, which falls inside training, about half are followed by a second SIGTERM
a moment later (which changes nothing: only a second Ctrl-C stops at once).

Each test was checked against the regression it guards against, planted and seen to fail: SIGTERM left out
of gpt/train/interrupt.py's STOP_SIGNALS (one process: the SIGTERM inside training kills it, -15; two ranks: the
signal stays blocked and the run trains on to the end); ranks started without RANK_STARTER (mpiexec's BAD
TERMINATION banner when SIGTERM comes while they start); World.fail calling MPI_Abort ('Abort(1) on node 0');
gpt/train/preflight.py's check left out (the errors came from the ranks, after auto_ranks and launch_ranks);
the front door spawning mpiexec as a child instead of becoming it (the ranks ran on after its SIGKILL).
"""
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gpt.storage.checkpoint import CheckpointError, load_checkpoint
from test_crash_safety import RECORDING_DRIVER, _check_what_a_kill_left, _env, _log_rows, _train_command
from test_distributed import LAUNCHER_VARIABLES, _mpirun
from test_gpt_train import text_file  # noqa: F401  (the fixture: a small corpus of Shakespearean words)

REPO = Path(__file__).resolve().parent.parent
FRONT_DOOR = str(REPO / "examples" / "train_shakespeare.py")
MPI_BANNERS = ("BAD TERMINATION", "Abort(", "MPI_Abort", "YOUR APPLICATION TERMINATED")
SAVED = re.compile(r"^SIGTERM: saved a checkpoint at step (\d+) in .*ckpt; continue with --resume$", re.M)


def _clean_env(tmp_path):
    return {k: v for k, v in _env(tmp_path).items() if k not in LAUNCHER_VARIABLES}


def _seed():
    return int(os.environ.get("NANOGRAD_GPT_KILL_SEED", "0" if os.environ.get("CI") else random.randrange(10**6)))


STEPS = 60  # more than the SIGKILL loop's 20, so that training, not start-up, fills most of a run


def _sigterm_chains(tmp_path, text_file, ranks):
    """Train STEPS steps through the front door, sending SIGTERM (sometimes twice) and resuming after each
    stop; every stop leaves the checkpoint of the uninterrupted run at its step, and the last run ends with
    the uninterrupted run's weights and log, bit for bit (same process count and threads). The first SIGTERM
    falls inside training (a moment after the first checkpoint) and must be answered by one line and 143;
    the others fall anywhere in a run, start-up included."""
    trials, seed = int(os.environ.get("NANOGRAD_GPT_KILL_TRIALS", "3")), _seed()
    rng, env = random.Random(seed), _clean_env(tmp_path)
    driver = tmp_path / "driver.py"
    driver.write_text(RECORDING_DRIVER, encoding="utf-8")
    reference_dir = tmp_path / "reference"
    flags = ["--max-iters", str(STEPS), "--ranks", str(ranks)]

    def arguments(out_dir, resume):
        return [*_train_command(out_dir, text_file, tmp_path, resume)[3:], *flags]

    launcher = _mpirun() if ranks == 2 else []  # the reference runs the same two ranks under mpiexec
    start = time.perf_counter()
    run = subprocess.run([*launcher, sys.executable, str(driver), str(tmp_path / "ref.npz"),
                          *arguments(reference_dir, False)], env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    duration = time.perf_counter() - start
    reference = dict(np.load(tmp_path / "ref.npz"))

    out_dir, signals, events = tmp_path / "run0", 0, []
    while True:
        context = f"seed {seed} (NANOGRAD_GPT_KILL_SEED), {ranks} rank(s), events so far {events}"
        resume = _check_what_a_kill_left(out_dir, reference, context, STEPS) is not None
        proc = subprocess.Popen([sys.executable, FRONT_DOOR, *arguments(out_dir, resume)], env=env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        first, first_sent = signals == 0, False
        if first:  # wait for the first checkpoint: training has begun
            while not (out_dir / "ckpt").exists() and proc.poll() is None:
                time.sleep(0.01)
        delay = rng.uniform(0, 0.5 if first else duration) if signals < trials else 600.0
        second = None if first else rng.choice([None, rng.uniform(0, 0.3)])
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGTERM)
            signals += 1
            first_sent = first
            if second is not None:
                time.sleep(second)
                if proc.poll() is None:
                    proc.send_signal(signal.SIGTERM)
        stdout, stderr = proc.communicate(timeout=300)
        events.append((f"{'resume' if resume else 'start'}", f"{delay:.2f}s", second, proc.returncode))
        assert not [b for b in MPI_BANNERS if b in stdout + stderr], f"{context}\n{stdout}\n{stderr}"
        assert proc.returncode == 128 + signal.SIGTERM or not first_sent, f"{context}\n{stderr}"
        if proc.returncode == 0:
            assert _check_what_a_kill_left(out_dir, reference, context, STEPS) == STEPS
            assert _log_rows(out_dir) == _log_rows(reference_dir), context
            if signals >= trials:
                return events
            out_dir = tmp_path / f"run{len(events)}"
            continue
        # Stopped with 143: after a step, saved (one line says where); or at once, outside the training loop
        # (set-up, final sample), saying "interrupted". Or killed by the signal itself
        # (-15) while Python was still starting, before main() could take it: there was nothing to save.
        assert proc.returncode in (128 + signal.SIGTERM, -signal.SIGTERM), f"{context}\n{stderr}"
        step = _check_what_a_kill_left(out_dir, reference, context, STEPS)
        saved = SAVED.findall(stderr)
        assert saved == [str(step)] or not first_sent, f"{context}\n{stderr}"
        assert saved == [str(step)] or stderr.endswith("interrupted\n") or proc.returncode == -signal.SIGTERM, \
            f"{context}\n{stderr}"


def test_sigterm_at_random_moments_in_one_process_then_resume_gives_the_uninterrupted_run(tmp_path, text_file):
    _sigterm_chains(tmp_path, text_file, ranks=1)


def test_sigterm_at_random_moments_in_two_ranks_then_resume_gives_the_uninterrupted_run(tmp_path, text_file):
    _sigterm_chains(tmp_path, text_file, ranks=2)


def _processes_running(marker):
    """Process ids whose command line holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            if entry.name.isdigit() and marker in (entry / "cmdline").read_bytes().decode(errors="replace"):
                found.append(int(entry.name))
        except OSError:  # ended meanwhile
            pass
    return found


def _ranks_started(marker):
    """The ranks (Python running the training command) among the processes whose command line holds `marker`:
    not mpiexec, and past RANK_STARTER's exec."""
    ranks = []
    for pid in _processes_running(marker):
        try:
            argv = (Path("/proc") / str(pid) / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if Path(argv[0].decode()).name.startswith("python") and b"-c" not in argv:
            ranks.append(pid)
    return ranks


needs_proc = pytest.mark.skipif(not Path("/proc/self/cmdline").exists(), reason="lists processes through /proc")


@needs_proc
def test_sigterm_while_the_ranks_start_stops_cleanly_after_their_first_step(tmp_path, text_file):
    """The moment no handler can be there yet: both ranks have just been started (and still import for a
    second or so). RANK_STARTER's blocked signals carry the SIGTERM over to the trainer's handler."""
    _mpirun()
    out_dir = tmp_path / "starting"
    command = [sys.executable, FRONT_DOOR, *_train_command(out_dir, text_file, tmp_path, resume=False)[3:],
               "--ranks", "2"]
    proc = subprocess.Popen(command, env=_clean_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while len(_ranks_started(str(out_dir))) < 2 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.002)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert not [b for b in MPI_BANNERS if b in stdout + stderr], stdout + stderr
    assert proc.returncode == 128 + signal.SIGTERM and SAVED.findall(stderr) == ["0"], stdout + stderr
    assert load_checkpoint(out_dir / "ckpt").step == 0


@needs_proc
def test_sigterm_to_every_process_of_the_job_stops_once_and_saves(tmp_path, text_file):
    """Slurm and systemd send SIGTERM to every process of a job: each rank gets it from them and again from
    mpiexec. A second SIGTERM must not turn into 'stop at once' (planted: the save was lost, 'interrupted')."""
    _mpirun()
    out_dir = tmp_path / "job"
    command = [sys.executable, FRONT_DOOR, *_train_command(out_dir, text_file, tmp_path, resume=False)[3:],
               "--max-iters", "100000", "--ranks", "2"]
    proc = subprocess.Popen(command, env=_clean_env(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)
    deadline = time.monotonic() + 60
    while not (out_dir / "ckpt").exists() and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    for pid in _ranks_started(str(out_dir)):  # the ranks first: mpiexec's copy then comes after theirs was taken
        os.kill(pid, signal.SIGTERM)
    time.sleep(0.02)
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=120)
    assert not [b for b in MPI_BANNERS if b in stdout + stderr], stdout + stderr
    assert proc.returncode == 128 + signal.SIGTERM, stdout + stderr
    assert SAVED.findall(stderr) == [str(load_checkpoint(out_dir / "ckpt").step)], stderr


@needs_proc
def test_sigkill_of_the_launcher_leaves_no_rank_running(tmp_path, text_file):
    _mpirun()
    out_dir = tmp_path / "killed-launcher"
    command = [sys.executable, FRONT_DOOR, *_train_command(out_dir, text_file, tmp_path, resume=False)[3:],
               "--max-iters", "100000", "--ranks", "2"]
    proc = subprocess.Popen(command, env=dict(_clean_env(tmp_path), PYTHONUNBUFFERED="1"), stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert "2 MPI ranks" in proc.stdout.readline()
        assert proc.stdout.readline().startswith("step 0: train loss")  # both ranks are training
        assert len(_processes_running(str(out_dir))) >= 3  # mpiexec (this pid, exec'd) and two ranks
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        deadline = time.monotonic() + 20
        while _processes_running(str(out_dir)) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert not _processes_running(str(out_dir)), "ranks still running after the launcher was SIGKILLed"
    finally:
        for pid in _processes_running(str(out_dir)):
            os.kill(pid, signal.SIGKILL)


# ---- bad input: refused before any rank -------------------------------------------------------------------

# Runs the front door's main with auto_ranks, recording whether it chose or started ranks.
CHOOSING_DRIVER = """
import sys
from gpt import train
from gpt.train import distributed, launch

calls = sys.argv.pop(1)  # the file that records the calls; the rest are the trainer's flags

def record(name, real):
    def recorded(*args, **kwargs):
        with open(calls, "a") as f:
            f.write(name + "\\n")
        return real(*args, **kwargs)
    return recorded

launch.auto_ranks = record("auto_ranks", launch.auto_ranks)
launch.launch_ranks = record("launch_ranks", launch.launch_ranks)
train.main(auto_ranks=True)
"""


@pytest.mark.parametrize("bad, expected", [
    (["--data", "/nonexistent.txt"], "error: data file not found: /nonexistent.txt"),
    (["--data", "{empty}"], "error: data file is empty: "),
    (["--data", "{binary}"], "is not UTF-8 text: byte 0 cannot be decoded"),
    (["--batch-size", "0"], "error: batch_size must be at least 1, got 0"),
    (["--n-head", "3"], "error: GPTConfig: n_embd 32 is not divisible by n_head 3"),
    (["--tokenizer", "bpe", "--vocab-size", "100"], "error: a bpe tokenizer needs vocab_size > 256"),
    (["--resume"], "error: no checkpoint at "),
], ids=["missing", "empty", "binary", "batch-size-0", "heads", "vocab", "resume-without-checkpoint"])
def test_bad_input_is_one_line_before_any_rank_is_chosen_or_started(tmp_path, text_file, bad, expected):
    empty, binary = tmp_path / "empty.txt", tmp_path / "binary.txt"
    empty.write_bytes(b"")
    binary.write_bytes(bytes([0xFF, 0xFE, 0x00, 0x81]) * 100)
    bad = [b.format(empty=empty, binary=binary) for b in bad]
    driver, calls = tmp_path / "driver.py", tmp_path / "calls.txt"
    driver.write_text(CHOOSING_DRIVER, encoding="utf-8")
    command = _train_command(tmp_path / "out", text_file, tmp_path, resume=False)[3:]
    run = subprocess.run([sys.executable, str(driver), str(calls), *command, *bad], env=_clean_env(tmp_path),
                         capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert run.returncode == 1 and run.stdout == "", run.stdout + run.stderr
    assert len(run.stderr.splitlines()) == 1 and expected in run.stderr, run.stderr
    assert not calls.exists(), f"ranks chosen or started before the input was checked: {calls.read_text()}"


def test_the_front_door_refuses_a_missing_data_file_in_one_line(tmp_path):
    run = subprocess.run([sys.executable, FRONT_DOOR, "--data", "/nonexistent.txt", "--out-dir", str(tmp_path)],
                         env=_clean_env(tmp_path), capture_output=True, text=True, timeout=120)
    assert (run.returncode, run.stdout, run.stderr) == (1, "", "error: data file not found: /nonexistent.txt\n")


# An error rank 0 alone meets (a full disk: rank 0 alone writes checkpoints) while rank 1 goes on to wait for it.
FULL_DISK_DRIVER = """
import errno, os, sys
from gpt import train
from gpt.storage import checkpoint

def no_space(*args, **kwargs):
    raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

checkpoint.save_file = no_space
train.main(sys.argv[1:])
"""


def test_an_error_one_rank_meets_ends_every_rank_without_the_mpi_abort_banner(tmp_path, text_file):
    mpirun = _mpirun()
    driver = tmp_path / "driver.py"
    driver.write_text(FULL_DISK_DRIVER, encoding="utf-8")
    command = _train_command(tmp_path / "out", text_file, tmp_path, resume=False)[3:]
    start = time.perf_counter()
    run = subprocess.run([*mpirun, sys.executable, str(driver), *command], env=_clean_env(tmp_path),
                         capture_output=True, text=True, timeout=120)
    assert run.returncode == 1, run.stdout + run.stderr
    assert not [b for b in MPI_BANNERS if b in run.stdout + run.stderr], run.stdout + run.stderr
    errors = [line for line in run.stderr.splitlines() if "error:" in line]
    assert errors == [errors[0]] and errors[0].startswith("error: could not save the checkpoint at step 0"), \
        run.stderr
    assert time.perf_counter() - start < 60  # rank 1 did not wait forever in its next allreduce
    with pytest.raises(CheckpointError, match="no checkpoint"):
        load_checkpoint(tmp_path / "out" / "ckpt")
