"""What survives what, proven by doing it: SIGKILL at random moments of real training runs, a crash at every
step of a save, two trainers on one out dir, a full disk.

The kill loop runs NANOGRAD_GPT_KILL_TRIALS kills (3 by default, which CI runs: 12-26 s here, under shared
load) with the kill moments drawn from NANOGRAD_GPT_KILL_SEED (0 under CI, else random; every failure message
prints it). More, with a summary of how many kills fell inside a save:

    NANOGRAD_GPT_KILL_TRIALS=200 python -m pytest -s tests/test_crash_safety.py -k sigkill
"""
import errno
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gpt.storage import checkpoint

from gpt.storage import atomic
from gpt.storage.checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint
from gpt.train.outdir_lock import OutDirBusy, OutDirLock
from gpt.train.log import TrainingLog
from gpt.train import TrainConfig, Trainer
from test_gpt_train import text_file  # noqa: F401  (the fixture: a small corpus of Shakespearean words)

REPO = Path(__file__).resolve().parent.parent
MAX_ITERS = 20
FLAGS = ["--n-layer", "1", "--n-head", "2", "--n-embd", "32", "--block-size", "16", "--batch-size", "4",
         "--max-iters", str(MAX_ITERS), "--warmup-iters", "2", "--dropout", "0.1", "--eval-interval", "1",
         "--eval-iters", "1", "--sample-tokens", "0", "--no-progress", "--threads", "1"]

# Trains through gpt.train.main, as the command line does, and keeps a copy of the weights at every save.
RECORDING_DRIVER = """
import sys
import numpy as np
from gpt import train
from gpt.train import distributed

states, save = {}, train.Trainer.save
def save_and_record(self):
    save(self)
    states.update({f"{self.step}:{name}": a.copy() for name, a in self.model.state_dict().items()})
train.Trainer.save = save_and_record
train.main(sys.argv[2:])
if distributed.world().is_main:  # under mpiexec, rank 0 writes (all ranks hold the same weights)
    np.savez(sys.argv[1], **states)
"""


def _env(tmp_path):
    # NumPy references only: what is tested is the files a kill leaves, and a run that compiles numba kernels
    # (on a fresh machine, before their cache exists) would spend its first seconds compiling, again after
    # every kill that lands before the cache is written.
    return dict(os.environ, PYTHONPATH=str(REPO), NANOGRAD_GPT_CACHE=str(tmp_path / "cache"),
                NANOGRAD_KERNELS="numpy")


def _train_command(out_dir, text_file, tmp_path, resume):
    return [sys.executable, "-m", "gpt.train", "--out-dir", str(out_dir), "--data", str(text_file),
            "--cache-dir", str(tmp_path / "cache"), *FLAGS, *(["--resume"] if resume else [])]


def _check_what_a_kill_left(out_dir, reference, context, max_iters=MAX_ITERS):
    """The out dir holds no checkpoint (killed before the first save) or one that loads, passes its manifest,
    and holds exactly the weights the uninterrupted run had at its step: never files of two checkpoints."""
    ckpt_dir = out_dir / "ckpt"
    if not (ckpt_dir.exists() or atomic.previous_dir(ckpt_dir).exists()):
        with pytest.raises(CheckpointError, match="no checkpoint"):
            load_checkpoint(ckpt_dir)
        return None
    try:
        ckpt = load_checkpoint(ckpt_dir)
    except CheckpointError as e:
        pytest.fail(f"{context}: the checkpoint left behind does not load: {e}")
    assert 0 <= ckpt.step <= max_iters, context
    for name, array in ckpt.model.items():
        np.testing.assert_array_equal(array, reference[f"{ckpt.step}:{name}"], err_msg=f"{context}: {name}")
    return ckpt.step


def _save_leftovers(out_dir):
    return set(out_dir.glob(".ckpt.*.tmp")) | set(out_dir.glob("ckpt.old"))


def _log_rows(out_dir):
    return [(r["kind"], r["step"], r["loss"], r["val_loss"]) for r in TrainingLog.read(out_dir / "log.csv")]


def test_sigkill_at_random_moments_then_resume_gives_the_uninterrupted_run(tmp_path, text_file):
    trials = int(os.environ.get("NANOGRAD_GPT_KILL_TRIALS", "3"))
    seed = int(os.environ.get("NANOGRAD_GPT_KILL_SEED", "0" if os.environ.get("CI") else random.randrange(10**6)))
    rng = random.Random(seed)
    env = _env(tmp_path)

    driver = tmp_path / "driver.py"
    driver.write_text(RECORDING_DRIVER, encoding="utf-8")
    start = time.perf_counter()
    ref_dir = tmp_path / "reference"
    command = _train_command(ref_dir, text_file, tmp_path, resume=False)
    run = subprocess.run([sys.executable, str(driver), str(tmp_path / "ref.npz"), *command[3:]],
                         env=env, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr
    duration = time.perf_counter() - start  # kill moments are spread over a whole run, start-up included
    reference = dict(np.load(tmp_path / "ref.npz"))

    chains, kills, events = 0, 0, []
    out_dir = tmp_path / "run0"
    while True:
        context = f"kill seed {seed} (NANOGRAD_GPT_KILL_SEED), events so far {events}"
        resume = _check_what_a_kill_left(out_dir, reference, context) is not None
        lock = out_dir / ".lock"
        owner_before = lock.read_text(encoding="utf-8").strip() if lock.exists() else ""
        leftovers_before = _save_leftovers(out_dir)
        proc = subprocess.Popen(_train_command(out_dir, text_file, tmp_path, resume), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        delay = rng.uniform(0, duration) if kills < trials else 600.0
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        stderr = proc.communicate()[1]
        # A save was under way if it left a new temporary folder, or the previous checkpoint set aside.
        in_save = bool(_save_leftovers(out_dir) - leftovers_before)
        events.append((f"{'resume' if resume else 'start'}", f"{delay:.2f}s", proc.returncode, in_save))
        owner_after = lock.read_text(encoding="utf-8").strip() if lock.exists() else ""
        if owner_before and owner_after != owner_before:  # this process took the dead one's lock over
            assert f"taking over the lock left by {owner_before}" in stderr, f"{context}\n{stderr}"
        if proc.returncode == -signal.SIGKILL:
            continue
        assert proc.returncode == 0, f"{context}\n{stderr}"
        assert _check_what_a_kill_left(out_dir, reference, context) == MAX_ITERS
        assert _log_rows(out_dir) == _log_rows(ref_dir), context
        assert not list(out_dir.glob(".*.tmp")) and not (out_dir / "ckpt.old").exists(), context
        assert owner_after == "", f"{context}: a finished run leaves its lock released"
        chains += 1
        if kills >= trials:
            break
        out_dir = tmp_path / f"run{chains}"
    assert kills == trials
    inside = sum(1 for *_, code, in_save in events if code == -signal.SIGKILL and in_save)
    print(f"{kills} kills (seed {seed}), {inside} of them inside a save; {chains} runs completed")


# --- a crash at every step of a save ------------------------------------------------------------------------

def _checkpoint(value, step):
    model = {"transformer.wte.weight": np.full((5, 4), value, np.float32)}
    optimizer = {"state": {0: {"step": step, "exp_avg": np.full((5, 4), -value, np.float32)}}, "param_groups": []}
    return Checkpoint(model=model, config={"n_layer": 0}, step=step, optimizer=optimizer, extra={"v": value})


def _file_operations():
    """The calls a save is made of, by (owner, name): each one a point a crash can fall before."""
    return [(os, "replace"), (os, "fsync"), (os, "mkdir"), (shutil, "rmtree"), (shutil, "copyfile"),
            (checkpoint, "save_file"), (checkpoint, "_write_json")]


def _count_then_exit_at(crash_at):
    """Patch every file operation to count itself and, at call number `crash_at`, end the process on the spot
    (os._exit runs no cleanup, no `finally`: what a SIGKILL or a power cut leaves)."""
    calls = [0]
    for owner, name in _file_operations():
        original = getattr(owner, name)

        def counted(*args, _original=original, **kwargs):
            calls[0] += 1
            if calls[0] == crash_at:
                os._exit(9)
            return _original(*args, **kwargs)

        setattr(owner, name, counted)
    return calls


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs os.fork")
def test_a_crash_before_any_file_operation_of_a_save_leaves_one_whole_checkpoint(tmp_path):
    """Every file operation of save_checkpoint, in turn, is where the process dies (in a forked child). What
    is left always loads as the old checkpoint or the new one, whole, and the next save succeeds."""
    tokenizer = tmp_path / "tok.model"
    tokenizer.write_text("a tokenizer", encoding="utf-8")
    old, new = _checkpoint(1.0, 10), _checkpoint(2.0, 20)
    crash_at, outcomes = 1, set()
    while True:
        out = tmp_path / f"crash{crash_at}"
        save_checkpoint(out / "ckpt", old, tokenizer)
        pid = os.fork()
        if pid == 0:  # the child: save over the old checkpoint, dying at operation number crash_at
            calls = _count_then_exit_at(crash_at)
            save_checkpoint(out / "ckpt", new, tokenizer)
            os._exit(0 if calls[0] < crash_at else 3)  # 0: the save finished before reaching crash_at
        status = os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1])
        assert status in (0, 9), f"crash at file operation {crash_at}: child exited {status}"
        loaded = load_checkpoint(out / "ckpt")
        assert loaded.step in (10, 20), crash_at
        expected = old if loaded.step == 10 else new
        np.testing.assert_array_equal(loaded.model["transformer.wte.weight"], expected.model["transformer.wte.weight"])
        np.testing.assert_array_equal(loaded.optimizer["state"][0]["exp_avg"],
                                      expected.optimizer["state"][0]["exp_avg"])
        outcomes.add(loaded.step)
        save_checkpoint(out / "ckpt", _checkpoint(3.0, 30), tokenizer)  # the next save after the crash
        assert load_checkpoint(out / "ckpt").step == 30 and not (out / "ckpt.old").exists()
        if status == 0:
            break
        crash_at += 1
    assert outcomes == {10, 20} and crash_at > 10  # the crash points covered the whole save, both outcomes


# --- a full disk ----------------------------------------------------------------------------------------------

@pytest.mark.parametrize("failing", [(checkpoint, "save_file"), (checkpoint, "_write_json"), (shutil, "copyfile"),
                                     (os, "fsync"), (os, "replace")], ids=lambda f: f[1])
def test_a_full_disk_during_a_save_keeps_the_previous_checkpoint_and_the_training_state(
        tmp_path, text_file, monkeypatch, failing):
    def config(out, max_iters):
        return TrainConfig(out_dir=str(tmp_path / out), data=str(text_file), cache_dir=str(tmp_path / "cache"),
                           n_layer=1, n_head=2, n_embd=16, block_size=16, batch_size=4, max_iters=max_iters,
                           lr_decay_iters=6, warmup_iters=2, eval_interval=2, eval_iters=1, sample_tokens=0,
                           dropout=0.1, progress=False)

    straight = Trainer(config("straight", 6))
    straight.train()
    trainer = Trainer(config("full", 6))
    owner, name = failing
    real = getattr(owner, name)

    def no_space(*args, **kwargs):
        if trainer.step == 4:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, no_space)
    with pytest.raises(CheckpointError, match=r"could not save the checkpoint at step 4 to .*ckpt \(\[Errno 28\] "
                                              r"No space left on device\); the previous checkpoint .* is intact"):
        trainer.train()
    out = Path(trainer.config.out_dir)
    assert load_checkpoint(out / "ckpt").step == 2  # the previous checkpoint, whole
    assert not list(out.glob(".*.tmp"))  # the failed save cleaned up after itself

    monkeypatch.setattr(owner, name, real)  # space freed: the same trainer saves and trains on
    trainer.save()
    trainer.train()
    mine, theirs = load_checkpoint(out / "ckpt"), load_checkpoint(Path(straight.config.out_dir) / "ckpt")
    assert mine.step == theirs.step == 6
    for key in theirs.model:
        np.testing.assert_array_equal(mine.model[key], theirs.model[key], err_msg=key)


def test_a_full_disk_is_one_line_from_the_command_line(tmp_path, text_file, monkeypatch):
    from gpt import train

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(checkpoint, "save_file", no_space)
    with pytest.raises(SystemExit) as exit:
        train.main(["--out-dir", str(tmp_path / "out"), "--data", str(text_file), "--cache-dir",
                    str(tmp_path / "cache"), *FLAGS[:-2]])  # FLAGS without --threads: leave this process's alone
    message = str(exit.value.code)
    assert message.startswith("error: could not save the checkpoint at step 0") and "No space left" in message
    assert "\n" not in message


# --- one trainer per out dir --------------------------------------------------------------------------------

HOLDER = """
import sys, time
from pathlib import Path
from gpt.train.outdir_lock import OutDirLock
OutDirLock(sys.argv[1]).acquire()
(Path(sys.argv[1]) / ".ckpt.half-written.tmp").mkdir()  # what a save cut short leaves
print("locked", flush=True)
time.sleep(60)
"""


def _start_holder(tmp_path, out_dir):
    proc = subprocess.Popen([sys.executable, "-c", HOLDER, str(out_dir)], env=_env(tmp_path),
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_trainer_on_a_busy_out_dir_stops_naming_the_first(tmp_path, text_file):
    out = tmp_path / "out"
    holder = _start_holder(tmp_path, out)
    try:
        with pytest.raises(OutDirBusy, match=f"{out} is in use by process {holder.pid} on .*choose another --out-dir"):
            Trainer(TrainConfig(out_dir=str(out), data=str(text_file), cache_dir=str(tmp_path / "cache")))
        run = subprocess.run(_train_command(out, text_file, tmp_path, resume=False), env=_env(tmp_path),
                             capture_output=True, text=True, timeout=120)
        assert run.returncode == 1 and f"error: {out} is in use by process {holder.pid}" in run.stderr
        assert not (out / "log.csv").exists()  # the second trainer wrote nothing
    finally:
        holder.kill()
        holder.wait()


def test_a_lock_left_by_a_killed_process_is_taken_over(tmp_path, capsys):
    out = tmp_path / "out"
    holder = _start_holder(tmp_path, out)
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    lock = OutDirLock(out)
    lock.acquire()
    message = capsys.readouterr().err
    assert f"taking over the lock left by process {holder.pid} on" in message
    assert "removed 1 unfinished temporary files" in message and not list(out.glob(".*.tmp"))
    lock.release()
    assert (out / ".lock").read_text(encoding="utf-8") == ""  # released cleanly: nothing to take over next time
    OutDirLock(out).acquire()
    assert "taking over" not in capsys.readouterr().err


def test_trainers_of_one_process_share_the_lock(tmp_path, text_file):
    """A notebook that builds a new Trainer while the old one is still referenced must not lock itself out."""
    config = TrainConfig(out_dir=str(tmp_path / "out"), data=str(text_file), cache_dir=str(tmp_path / "cache"),
                         n_layer=1, n_head=2, n_embd=16, block_size=16, max_iters=1, eval_iters=1, sample_tokens=0,
                         progress=False)
    first = Trainer(config)
    second = Trainer(config)
    second.train()
    assert first.lock.held and not second.lock.held
    first.train()
    assert (tmp_path / "out" / ".lock").read_text(encoding="utf-8") == ""
