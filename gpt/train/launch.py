"""Starting the ranks of a data-parallel run: `--ranks N` makes this process `mpiexec -n N` running the same
command, and the front door picks two ranks by itself where that is faster (auto_ranks). What the ranks do
once started is gpt/train/distributed.py.
"""
import importlib.util
import os
import shutil
import subprocess
import sys

from gpt.train.distributed import batch_slice, launched_size
from nanograd import usable_cores

# What mpiexec runs in each rank before the command: a bare Python (-I -S: a few milliseconds) that blocks
# SIGINT and SIGTERM, then execs the command, which inherits the mask. mpiexec passes both signals on to every
# rank, and a rank still importing (a second or so) would die of one, which mpiexec reports as a crash with
# its "BAD TERMINATION" banner; blocked, the signal waits until the trainer's handler takes it
# (gpt/train/interrupt.py), and the run stops where its training loop begins, saved. What remains unguarded is the
# starter's own start-up, a few milliseconds.
RANK_STARTER = [sys.executable, "-I", "-S", "-c", "import os, signal, sys; "
                "hasattr(signal, 'pthread_sigmask') and "  # POSIX only
                "signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM}); "
                "os.execv(sys.argv[1], sys.argv[1:])"]


def auto_ranks(batch_size, environ=os.environ):
    """How many processes the front door trains with when no --ranks is given: 2 when this process has two
    or more cores, no MPI launcher started it, the batch splits in two, mpi4py and mpiexec are installed and
    mpiexec starts processes here; else None (this process alone). On two cores, two processes of one
    thread each run the default model's steps faster than one process of two threads: each thread works on
    its own half of the batch, and no thread waits for another inside every product (docs/training.md;
    benchmarks/scaleout.py). Says so when it picks 2."""
    if launched_size(environ) is not None or usable_cores() < 2 or batch_size % 2:
        return None
    launcher = find_launcher()
    if importlib.util.find_spec("mpi4py") is None or launcher is None or not launcher_starts(launcher):
        return None
    print("training as 2 data-parallel processes (--ranks 1: this process alone)", flush=True)
    return 2


def launcher_starts(launcher):
    """Whether `launcher` can start two processes here. An MPI installed where it cannot (a host name it
    cannot resolve, say) must cost the front door its second process, not the run: so it is tried first,
    with two processes that do nothing, and what went wrong is said before training in one process."""
    try:
        subprocess.run([launcher, "-n", "2", sys.executable, "-c", ""], capture_output=True, text=True,
                       timeout=60, check=True)
        return True
    except subprocess.CalledProcessError as e:  # the launcher's own last words say why
        reason = (e.stderr.strip().splitlines() or [f"exit status {e.returncode}"])[-1]
    except (OSError, subprocess.TimeoutExpired) as e:
        reason = str(e)
    print(f"{launcher} could not start two processes here ({reason}); training in this process",
          file=sys.stderr, flush=True)
    return False


def find_launcher():
    """The path of `mpiexec`, preferring the one beside this interpreter (where `pip install mpich` puts
    it, the MPI that mpi4py uses there), else the first on PATH; None when there is none."""
    for path in (os.path.dirname(sys.executable), None):
        for name in ("mpiexec", "mpirun"):
            found = shutil.which(name, path=path)
            if found:
                return found
    return None


def launch_ranks(ranks, command, batch_size, environ=os.environ):
    """Make this a run of `ranks` processes (a `--ranks N` flag): unless an MPI launcher started this process,
    replace it by `mpiexec -n ranks python command...` (each rank through RANK_STARTER), the same command run
    as `ranks` processes. The launcher forwards Ctrl-C and SIGTERM to every rank and exits with their status,
    so to the user it behaves as the process it replaces (and its SIGKILL ends the ranks too). Under a
    launcher, only checks that it started `ranks` processes. None or 1 outside a launcher: nothing to do. A
    global batch of `batch_size` that does not split over the ranks is refused before any process starts."""
    launched = launched_size(environ)
    if ranks is None or (ranks == 1 and launched is None):
        return
    if ranks < 1:
        raise ValueError(f"--ranks must be at least 1, got {ranks}")
    batch_slice(batch_size, 0, ranks)
    if launched is not None:
        if launched not in (0, ranks):
            raise ValueError(f"--ranks {ranks}, but the MPI launcher started {launched} processes: "
                             f"give one or the other")
        return
    has_mpi4py = importlib.util.find_spec("mpi4py") is not None  # looked up, not imported: MPI stays asleep
    launcher = find_launcher()
    if not has_mpi4py or launcher is None:
        missing = "mpi4py" if not has_mpi4py else "an MPI launcher (mpiexec)"
        raise RuntimeError(f"--ranks {ranks} needs {missing}: pip install -e '.[mpi]' (mpi4py and MPICH), "
                           f"or leave out --ranks to train in one process")
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(launcher, [launcher, "-n", str(ranks), *RANK_STARTER, sys.executable, *command])
