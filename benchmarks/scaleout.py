"""Scale-out rows: data-parallel training on this machine, N MPI ranks x 1 thread against 1 process x N threads,
and against PyTorch.

Both sides run the same data-parallel training step (forward, backward, allreduce of the gradients, clip,
AdamW; see gpt/train/distributed.py) on config a's global batch, which N ranks split into equal slices; in one
process the allreduce is skipped. Each side runs in a fresh child process, back to back in the same run:
`python -m benchmarks.scaleout a N 0` and `mpirun -n N python -m benchmarks.scaleout a 1 0`, three times each
in turn (once with --quick), reporting medians. Tokens/s counts the global batch, timed on rank 0 (the
allreduce keeps the ranks in step). PyTorch's config-a step (one process of N threads, as in the training
group) runs in the same rounds, for the second row: the ranks, which the front door runs by default where MPI
is installed (distributed.auto_ranks), against PyTorch. The third runs both sides once more while another
program keeps one core busy, as the training group's under-load row does. Without mpi4py or mpirun the first
row shows the single process alone.
"""
import json
import os
import shutil
import subprocess
import sys

import numpy as np

from benchmarks.configs import CONFIGS, make_batch, median_seconds, rounds_for
from benchmarks.run import THREAD_VARIABLES
from benchmarks.training import one_core_busy, run_peer

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def data_parallel_step(model, opt, world):
    """One training step of one rank on its slice of the global batch."""
    from nanograd import optim

    params = model.parameters()

    def step(idx, targets):
        _, loss = model(idx, targets)
        opt.zero_grad()
        loss.backward()
        world.average_gradients(params, loss.item())
        optim.clip_grad_norm_(params, 1.0)
        opt.step()
    return step


def time_steps(name, threads, quick):
    """Run in a child (one of the ranks, or the single process): print the median seconds per step."""
    import nanograd
    from gpt import GPT, GPTConfig
    from gpt.train import distributed

    world = distributed.world()
    nanograd.set_num_threads(threads)
    model = GPT(GPTConfig(**CONFIGS[name]["config"]), seed=0)
    step = data_parallel_step(model, model.configure_optimizers(0.1, 1e-3, (0.9, 0.99)), world)
    idx, targets = make_batch(name)
    rows = world.batch_slice(len(idx))
    idx, targets = idx[rows], targets[rows]
    for _ in range(2):  # warm-up: numba compiles or loads its cache, buffers fill
        step(idx, targets)
    seconds = median_seconds(lambda: step(idx, targets), *rounds_for(name, quick))
    if world.is_main:
        print(json.dumps({"seconds": seconds}))


def mpirun():
    """The launcher of the MPI that mpi4py uses (pip install mpich puts it beside the interpreter), or None."""
    try:
        import mpi4py  # noqa: F401  (only asking whether the ranks can talk)
    except ImportError:
        return None
    here = os.path.dirname(sys.executable)
    return shutil.which("mpirun", path=here) or shutil.which("mpirun")


def run_child(launcher, name, threads, quick):
    env = dict(os.environ, **{var: str(threads) for var in THREAD_VARIABLES})
    command = [*launcher, sys.executable, "-m", "benchmarks.scaleout", name, str(threads), str(int(quick))]
    out = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    if out.returncode != 0:
        raise RuntimeError(f"scale-out child {' '.join(command)} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])["seconds"]


def run(quick: bool, threads: int) -> list:
    name = "a"
    tokens = CONFIGS[name]["batch_size"] * CONFIGS[name]["config"]["block_size"]
    launcher = mpirun() if threads > 1 else None
    single, ranks, torch_seconds = [], [], []
    # The sides alternate, so that load from other processes on a shared machine falls on all alike.
    for _ in range(1 if quick else 3):
        single.append(run_child([], name, threads, quick))
        if launcher is not None:
            ranks.append(run_child([launcher, "-n", str(threads)], name, 1, quick))
        peer = run_peer("train", name, threads, *rounds_for(name, quick))
        if peer is not None:
            torch_seconds.append(peer["seconds"])
    row = {"name": f"scale-out config {name}: {threads} ranks x 1 thread vs 1 x {threads} threads",
           "unit": "tokens/s", "ours": None, "peer": tokens / float(np.median(single))}
    rows = [row]
    if ranks:
        row.update(ours=tokens / float(np.median(ranks)), ratio=float(np.median(single) / np.median(ranks)))
        if torch_seconds:  # what the front door runs (distributed.auto_ranks) against PyTorch in one process
            rows.append({"name": f"  {threads} ranks x 1 thread vs PyTorch, 1 x {threads} threads", "unit": "tokens/s",
                         "ours": row["ours"], "peer": tokens / float(np.median(torch_seconds)),
                         "ratio": float(np.median(torch_seconds) / np.median(ranks))})
        # With another program on one core, the rank that shares it is slowed, and the other waits for it at
        # every allreduce: the ranks' step time under that load, as a multiple of their idle one.
        with one_core_busy():
            single_loaded = run_child([], name, threads, quick)
            ranks_loaded = run_child([launcher, "-n", str(threads)], name, 1, quick)
        rows.append({"name": f"  one core busy: time / idle time ({threads} ranks; 1 process)", "unit": "x idle",
                     "ours": ranks_loaded / float(np.median(ranks)), "peer": single_loaded / float(np.median(single)),
                     "ratio": (single_loaded / float(np.median(single))) / (ranks_loaded / float(np.median(ranks)))})
    return rows


if __name__ == "__main__":
    time_steps(sys.argv[1], int(sys.argv[2]), bool(int(sys.argv[3])))
