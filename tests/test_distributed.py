"""Data-parallel training over MPI (gpt/train/distributed.py): the pieces that need no MPI, then two real ranks
under mpirun checked against one process training on the same global batch."""
import dataclasses
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from gpt.train import distributed, launch
from gpt.storage.checkpoint import load_checkpoint
from gpt.train.log import TrainingLog
from gpt.train import TrainConfig, Trainer
from test_gpt_train import text_file  # noqa: F401  (the fixture: a small corpus of Shakespearean words)

REPO = Path(__file__).resolve().parent.parent
LAUNCHER_VARIABLES = ("PMI_SIZE", "PMI_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


def test_launched_size_reads_the_launchers_variables():
    assert distributed.launched_size({}) is None
    assert distributed.launched_size({"PMI_RANK": "1", "PMI_SIZE": "2"}) == 2
    assert distributed.launched_size({"OMPI_COMM_WORLD_SIZE": "4", "OMPI_COMM_WORLD_RANK": "3"}) == 4
    assert distributed.launched_size({"PMIX_RANK": "0"}) == 0


@pytest.mark.parametrize("batch_size, size", [(12, 1), (12, 2), (12, 3), (8, 4)])
def test_batch_slices_split_the_global_batch_evenly(batch_size, size):
    rows = [list(range(batch_size))[distributed.batch_slice(batch_size, rank, size)] for rank in range(size)]
    assert sum(rows, []) == list(range(batch_size))
    assert {len(r) for r in rows} == {batch_size // size}


def test_batch_size_not_divisible_by_the_ranks_is_refused():
    with pytest.raises(ValueError, match="batch_size 12 does not split evenly over 5 MPI processes"):
        distributed.batch_slice(12, 0, 5)


def test_a_single_process_world_leaves_everything_as_it_is():
    world = distributed.World()
    assert (world.rank, world.size, world.is_main) == (0, 1, True)
    assert world.batch_slice(6) == slice(0, 6)

    class Param:
        data = np.ones(3, np.float32)
        grad = np.arange(3, dtype=np.float32)

    grad = Param.grad
    assert world.average_gradients([Param], 2.5) == 2.5 and Param.grad is grad
    np.testing.assert_array_equal(world.mean([[1.0, 2.0]]), [[1.0, 2.0]])
    assert world.max(15) == 15 and world.max(0) == 0
    assert world.gather("state") == ["state"]
    world.check_identical([np.zeros(2)], "weights")


def test_launched_as_two_ranks_without_mpi4py_is_a_clear_error(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # makes `import mpi4py` raise ImportError
    with pytest.raises(RuntimeError, match="one of 2 processes, but mpi4py is not installed"):
        distributed.connect({"PMI_RANK": "0", "PMI_SIZE": "2"})
    assert distributed.connect({"PMI_RANK": "0", "PMI_SIZE": "1"}).size == 1


def test_ranks_flag_checks_what_a_launcher_started():
    launch.launch_ranks(None, ["x.py"], 12, environ={})  # no flag, no launcher: one process, nothing to do
    launch.launch_ranks(1, ["x.py"], 12, environ={})
    launch.launch_ranks(2, ["x.py"], 12, environ={"PMI_RANK": "1", "PMI_SIZE": "2"})  # already launched
    with pytest.raises(ValueError, match="--ranks 4, but the MPI launcher started 2 processes"):
        launch.launch_ranks(4, ["x.py"], 12, environ={"PMI_RANK": "0", "PMI_SIZE": "2"})
    with pytest.raises(ValueError, match="--ranks must be at least 1, got 0"):
        launch.launch_ranks(0, ["x.py"], 12, environ={})
    with pytest.raises(ValueError, match="batch_size 12 does not split evenly over 5 MPI processes"):
        launch.launch_ranks(5, ["x.py"], 12, environ={})  # refused before launching five processes


def test_ranks_flag_without_mpi_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(launch, "find_launcher", lambda: None)
    with pytest.raises(RuntimeError, match="--ranks 2 needs .*pip install -e '.\\[mpi\\]'"):
        launch.launch_ranks(2, ["x.py"], 12, environ={})


def _environment_without_launcher(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in LAUNCHER_VARIABLES}
    return dict(env, NANOGRAD_GPT_CACHE=str(tmp_path / "cache"))


def test_plain_python_never_initialises_mpi(tmp_path):
    check = ("import sys; from gpt import train; from gpt.train import distributed; "
             "print(distributed.world().size, 'mpi4py' in sys.modules)")
    run = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, cwd=REPO,
                         env=_environment_without_launcher(tmp_path), timeout=120)
    assert run.returncode == 0, run.stderr
    assert run.stdout.split() == ["1", "False"]


def test_front_door_picks_two_ranks_only_where_they_can_run(monkeypatch):
    """launch.auto_ranks: 2 with two cores, MPI installed, no launcher and an even batch; else one process."""
    monkeypatch.setattr(launch, "usable_cores", lambda: 2)
    monkeypatch.setattr(launch, "find_launcher", lambda: "/usr/bin/mpiexec")
    monkeypatch.setattr(launch, "launcher_starts", lambda launcher: True)
    mpi4py_installed = importlib.util.find_spec("mpi4py") is not None
    assert launch.auto_ranks(12, environ={}) == (2 if mpi4py_installed else None)
    assert launch.auto_ranks(7, environ={}) is None  # does not split in two
    assert launch.auto_ranks(12, environ={"PMI_RANK": "0", "PMI_SIZE": "4"}) is None  # mpirun decides
    monkeypatch.setattr(launch, "usable_cores", lambda: 1)
    assert launch.auto_ranks(12, environ={}) is None
    monkeypatch.setattr(launch, "usable_cores", lambda: 2)
    monkeypatch.setattr(launch, "find_launcher", lambda: None)
    assert launch.auto_ranks(12, environ={}) is None


def test_front_door_trains_in_one_process_when_mpi_cannot_start_processes(monkeypatch, tmp_path, capsys):
    """An mpiexec that fails (here a script that prints an error and exits 1) costs the second process, not
    the run, and its error is shown."""
    pytest.importorskip("mpi4py", reason="auto_ranks tries the launcher only when mpi4py is installed")
    broken = tmp_path / "mpiexec"
    broken.write_text("#!/bin/sh\necho 'gethostbyname failed' >&2\nexit 1\n")
    broken.chmod(0o755)
    monkeypatch.setattr(launch, "usable_cores", lambda: 2)
    monkeypatch.setattr(launch, "find_launcher", lambda: str(broken))
    assert launch.auto_ranks(12, environ={}) is None
    assert "could not start two processes here (gethostbyname failed); training in this process" in \
        capsys.readouterr().err
    monkeypatch.setattr(launch, "find_launcher", lambda: str(tmp_path / "missing"))
    assert launch.auto_ranks(12, environ={}) is None


def test_the_installed_launcher_starts_two_processes():
    """What auto_ranks tries before choosing two ranks passes with the MPI the dev extra installs."""
    launcher = _mpirun()[0]
    assert launch.launcher_starts(launcher)


# ---- two ranks under mpirun ----

def _mpirun():
    pytest.importorskip("mpi4py", reason="data-parallel tests need mpi4py (pip install -e '.[mpi]')")
    launcher = launch.find_launcher()
    if launcher is None:
        pytest.skip("data-parallel tests need mpirun or mpiexec on PATH (pip install mpich)")
    return [launcher, "-n", "2"]


@pytest.fixture
def config(tmp_path, text_file):
    # A high learning rate without warmup makes any real difference in the updates large (see below).
    return TrainConfig(
        out_dir=str(tmp_path / "mpi"), data=str(text_file), cache_dir=str(tmp_path / "cache"),
        n_layer=1, n_head=2, n_embd=16, block_size=16, dropout=0.0, batch_size=4, max_iters=8,
        learning_rate=1e-2, warmup_iters=0, lr_decay_iters=8, eval_interval=4, eval_iters=2, sample_tokens=20,
        progress=False,
    )


def _flags(config):
    """The command-line flags that make examples/train_shakespeare.py run `config`."""
    flags = []
    for f in dataclasses.fields(config):
        value, flag = getattr(config, f.name), "--" + f.name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag[2:])
        elif value is not None:
            flags += [flag, str(value)]
    return flags


def test_two_ranks_train_like_one_process_with_the_same_global_batch(tmp_path, config):
    """`mpirun -n 2 examples/train_shakespeare.py`, stopped halfway and resumed, ends with the weights of
    one process trained straight through on the same global batches."""
    mpirun = _mpirun()
    env = _environment_without_launcher(tmp_path)
    example = str(REPO / "examples" / "train_shakespeare.py")
    first = subprocess.run([*mpirun, sys.executable, example, *_flags(dataclasses.replace(config, max_iters=4))],
                           capture_output=True, text=True, env=env, timeout=120)
    assert first.returncode == 0, first.stderr
    # --ranks 2 launches the same two processes itself: the same run, bit for bit.
    by_flag = dataclasses.replace(config, max_iters=4, out_dir=str(tmp_path / "by_flag"))
    launched = subprocess.run([sys.executable, example, *_flags(by_flag), "--ranks", "2"],
                              capture_output=True, text=True, env=env, timeout=120)
    assert launched.returncode == 0, launched.stderr
    assert "2 MPI ranks" in launched.stdout
    flag_ckpt, mpirun_ckpt = (load_checkpoint(Path(c.out_dir) / "ckpt") for c in (by_flag, config))
    assert flag_ckpt.step == mpirun_ckpt.step == 4
    for name, weights in mpirun_ckpt.model.items():
        np.testing.assert_array_equal(flag_ckpt.model[name], weights, err_msg=name)
    resumed = subprocess.run([*mpirun, sys.executable, example, *_flags(config), "--resume"],
                             capture_output=True, text=True, env=env, timeout=120)
    assert resumed.returncode == 0, resumed.stderr
    # Rank 0 alone prints; the trainer also checks at every checkpoint that both ranks hold the same weights.
    assert "2 MPI ranks" in first.stdout and resumed.stdout.count("step 8: train loss") == 2  # eval + summary

    single = dataclasses.replace(config, out_dir=str(tmp_path / "single"))
    Trainer(single, distributed.World()).train()
    mpi_ckpt, single_ckpt = (load_checkpoint(Path(c.out_dir) / "ckpt") for c in (config, single))
    assert mpi_ckpt.step == single_ckpt.step == 8
    rank_streams = mpi_ckpt.rng["nanograd_ranks"]  # each rank's dropout generator, to resume it
    assert len(rank_streams) == 2 and rank_streams[0] == mpi_ckpt.rng["nanograd"] != rank_streams[1]
    for name, expected in single_ckpt.model.items():
        actual = mpi_ckpt.model[name]
        if name.endswith("attn.c_attn.bias"):
            # The key bias shifts every score of a query by the same amount, which softmax ignores: its true
            # gradient is 0 and what is computed is rounding noise, which AdamW normalises into steps of up
            # to the learning rate. Compare the query and value biases only.
            keys = slice(config.n_embd, 2 * config.n_embd)
            actual, expected = np.delete(actual, keys), np.delete(expected, keys)
        # The ranks sum in another order than one process (two half-batch means, then their mean), so the
        # weights differ by float32 rounding: measured <= 1.3e-7 (2 ulps at 1.0) after 8 steps. 1e-6 is far
        # below what a real difference gives: training on half of each batch moves every tensor by > 0.02.
        np.testing.assert_allclose(actual, expected, rtol=0, atol=1e-6, err_msg=name)

    mpi_log, single_log = (TrainingLog.read(Path(c.out_dir) / "log.csv") for c in (config, single))
    assert [(r["kind"], r["step"]) for r in mpi_log] == [(r["kind"], r["step"]) for r in single_log]
    # Losses are means over the global batch; the ranks' are carried in float32 through the allreduce.
    np.testing.assert_allclose([float(r["loss"]) for r in mpi_log], [float(r["loss"]) for r in single_log],
                               rtol=1e-6)
    assert len((Path(config.out_dir) / "sample.txt").read_text(encoding="utf-8")) == 20


def _trained_as_two_ranks_and_as_one(tmp_path, config):
    """(checkpoint of two ranks, checkpoint of one process) after `config` trained both ways."""
    run = subprocess.run([*_mpirun(), sys.executable, str(REPO / "examples" / "train_shakespeare.py"), *_flags(config)],
                         capture_output=True, text=True, env=_environment_without_launcher(tmp_path), timeout=120)
    assert run.returncode == 0, run.stderr
    assert "2 MPI ranks" in run.stdout
    single = dataclasses.replace(config, out_dir=str(tmp_path / "single"))
    Trainer(single, distributed.World()).train()
    return tuple(load_checkpoint(Path(c.out_dir) / "ckpt") for c in (config, single))


def test_two_ranks_train_the_lstm_like_one_process(tmp_path, config):
    """The front door trains as two ranks by default, so `--model lstm` does too: the same weights as one
    process on the same global batches, up to float32 rounding."""
    lstm = dataclasses.replace(config, model="lstm", n_layer=1, n_embd=16, n_hidden=24, max_iters=4)
    mpi_ckpt, single_ckpt = _trained_as_two_ranks_and_as_one(tmp_path, lstm)
    assert mpi_ckpt.step == single_ckpt.step == 4
    for name, expected in single_ckpt.model.items():
        # As for the GPT above: float32 rounding of the ranks' other summation order, measured <= 4.3e-7 here
        # after 4 steps; training on half of each batch instead moves every tensor by >= 0.019.
        np.testing.assert_allclose(mpi_ckpt.model[name], expected, rtol=0, atol=1e-6, err_msg=name)


def test_two_ranks_train_gpt2s_recipe_like_one_process(tmp_path, config):
    """The test above trains the default (modern) recipe, whose Muon splits its Newton-Schulz work between the
    ranks; GPT-2's recipe (AdamW) trains as one process too."""
    gpt2 = TrainConfig(**{**dataclasses.asdict(config), "recipe": "gpt2", "max_iters": 4})
    mpi_ckpt, single_ckpt = _trained_as_two_ranks_and_as_one(tmp_path, gpt2)
    assert mpi_ckpt.step == single_ckpt.step == 4
    for name, expected in single_ckpt.model.items():
        if name.endswith("attn.c_attn.bias"):  # the key bias: rounding noise normalised by AdamW (see above)
            keys = slice(config.n_embd, 2 * config.n_embd)
            mpi, expected = np.delete(mpi_ckpt.model[name], keys), np.delete(expected, keys)
        else:
            mpi = mpi_ckpt.model[name]
        np.testing.assert_allclose(mpi, expected, rtol=0, atol=1e-6, err_msg=name)


DRIVER = """
import json, sys
import numpy as np
from gpt.train import distributed, launch
from gpt.train import TrainConfig, Trainer
from nanograd import kernels

config = TrainConfig(**json.loads(sys.argv[1]))
world = distributed.world()
kernels.set_num_threads(distributed.default_threads(world))
trainer = Trainer(config)
trainer.train_step()
if world.is_main:
    np.savez(sys.argv[2], **{name: p.grad for name, p in trainer.model.named_parameters()})
try:
    world.check_identical([np.full(3, world.rank)], "test arrays")
except RuntimeError as e:
    print(f"rank {world.rank} caught: {e}")
try:
    Trainer(TrainConfig(**{**json.loads(sys.argv[1]), "batch_size": 3}))
except ValueError as e:
    print(f"rank {world.rank} refused: {e}")
# Each rank computes its share (marked with 100 * its rank) and receives the rest: results from ranks 0, 1, 0.
# fn returns a transposed view, as newton_schulz does for a tall matrix: it must arrive whole, not scrambled.
square = np.arange(9, dtype=np.float32).reshape(3, 3)
shared = world.map_shared(lambda a: (a + 100 * world.rank).T, [square] * 3)
print(f"rank {world.rank} shared: {[int(s[0, 1]) for s in shared]}")
print(f"rank {world.rank} of {world.size}, {distributed.default_threads(world)} thread(s)")
"""


def test_two_ranks_average_gradients_and_catch_mistakes(tmp_path, config):
    """The allreduced gradients are the global batch's (AdamW would hide a missing division: its step barely
    changes when a gradient doubles); ranks out of step and an indivisible batch are reported on every rank."""
    mpirun = _mpirun()
    config = dataclasses.replace(config, grad_clip=0.0)
    driver = tmp_path / "driver.py"
    driver.write_text(DRIVER, encoding="utf-8")
    grads_file = tmp_path / "grads.npz"
    run = subprocess.run([*mpirun, sys.executable, str(driver), json.dumps(dataclasses.asdict(config)),
                          str(grads_file)], capture_output=True, text=True, cwd=REPO,
                         env=dict(_environment_without_launcher(tmp_path), PYTHONPATH=str(REPO)), timeout=120)
    assert run.returncode == 0, run.stderr
    for rank in (0, 1):
        assert f"rank {rank} caught: the test arrays of rank(s) [1] differ from rank 0's" in run.stdout
        assert f"rank {rank} refused: batch_size 3 does not split evenly over 2 MPI processes" in run.stdout
        assert f"rank {rank} shared: [3, 103, 3]" in run.stdout  # (square + 100 * root).T[0, 1]
        assert f"rank {rank} of 2, 1 thread(s)" in run.stdout or os.cpu_count() > 2

    single = Trainer(dataclasses.replace(config, out_dir=str(tmp_path / "single")), distributed.World())
    single.train_step()
    with np.load(grads_file) as mpi_grads:
        for name, p in single.model.named_parameters():
            # Equal up to float32 rounding of the two summation orders (as in test_gpt_train's accumulation test).
            np.testing.assert_allclose(mpi_grads[name], p.grad, rtol=1e-4, atol=1e-7, err_msg=name)
