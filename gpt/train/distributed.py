"""Data-parallel training over MPI: the one module that knows about it.

    mpirun -n 2 python examples/train_shakespeare.py          # two processes ("ranks") train one model
    python examples/train_shakespeare.py --ranks 2            # the same, started by gpt/train/launch.py

Every rank holds the whole model and draws the same global batch from the same generator; each trains on
its own equal slice of it, then one allreduce averages the gradients, so every rank takes the same AdamW
step and all end with identical weights (checked at every checkpoint). With equal slices the mean of the
ranks' mean losses is the global batch's mean loss, so the run computes what one process with the same
global batch would, up to float32 rounding. Rank 0 alone writes the log, checkpoints, plot and sample.

Without an MPI launcher, or without mpi4py installed, `world()` is a world of one process and nothing here
touches MPI: mpi4py (whose import initialises MPI) is imported only when the environment shows a launcher.
"""
import contextlib
import functools
import hashlib
import os
import sys

import numpy as np

from nanograd import usable_cores

# Variables a launcher sets in every process it starts: MPICH and Intel MPI (PMI), Open MPI, PMIx.
_SIZE_VARIABLES = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE")
_RANK_VARIABLES = ("PMI_RANK", "OMPI_COMM_WORLD_RANK", "PMIX_RANK")


def launched_size(environ=os.environ):
    """How many processes an MPI launcher says it started: None when no launcher started this one, 0 when
    one did without saying how many."""
    for name in _SIZE_VARIABLES:
        if name in environ:
            return int(environ[name])
    return 0 if any(name in environ for name in _RANK_VARIABLES) else None


def batch_slice(batch_size, rank, size):
    """The rows of a global batch of `batch_size` that rank `rank` of `size` trains on."""
    if batch_size % size:
        raise ValueError(f"batch_size {batch_size} does not split evenly over {size} MPI processes; "
                         f"use a multiple of {size}")
    rows = batch_size // size
    return slice(rank * rows, (rank + 1) * rows)


class World:
    """The processes training one model together: MPI's COMM_WORLD, or this process alone (`comm` None),
    where every collective operation returns its input."""

    def __init__(self, comm=None, local_size=1):
        self.comm = comm
        self.rank = 0 if comm is None else comm.Get_rank()
        self.size = 1 if comm is None else comm.Get_size()
        self.local_size = local_size  # ranks on this machine, sharing its cores
        self._buffer = None  # the flat buffer gradients travel in, reused every step

    @property
    def is_main(self):
        """Rank 0, the one that logs and writes files."""
        return self.rank == 0

    def batch_slice(self, batch_size):
        return batch_slice(batch_size, self.rank, self.size)

    def average_gradients(self, params, loss):
        """Replace each parameter's .grad by its mean over the ranks and return the mean of `loss`.

        One allreduce of one flat buffer carries every gradient and the loss; the means are copied back into
        each parameter's .grad array, which is what the optimizer then reads (AdamW gathers the .grad arrays
        at each step).
        A parameter without a gradient contributes zeros and keeps None: every rank runs the same graph, so
        it has none on any rank.
        """
        if self.comm is None:
            return loss
        from mpi4py import MPI

        dtype = params[0].data.dtype
        if any(p.data.dtype != dtype for p in params):
            dtypes = sorted({str(p.data.dtype) for p in params})
            raise TypeError(f"average_gradients needs parameters of one dtype, got {dtypes}")
        sizes = [p.data.size for p in params]
        buffer = self._flat_buffer(sum(sizes) + 1, dtype)
        offset = 0
        for p, n in zip(params, sizes):
            buffer[offset : offset + n] = 0 if p.grad is None else p.grad.ravel()
            offset += n
        buffer[-1] = loss
        self.comm.Allreduce(MPI.IN_PLACE, buffer, op=MPI.SUM)
        buffer /= self.size
        offset = 0
        for p, n in zip(params, sizes):
            if p.grad is not None:
                p.grad[...] = buffer[offset : offset + n].reshape(p.grad.shape)
            offset += n
        return float(buffer[-1])

    def _flat_buffer(self, n, dtype):
        if self._buffer is None or self._buffer.size != n or self._buffer.dtype != dtype:
            self._buffer = np.empty(n, dtype=dtype)
        return self._buffer

    def mean(self, values):
        """The element-wise mean over the ranks of an array of float64 `values` (the same shape on each)."""
        values = np.array(values, dtype=np.float64)
        if self.comm is None:
            return values
        from mpi4py import MPI

        self.comm.Allreduce(MPI.IN_PLACE, values, op=MPI.SUM)
        return values / self.size

    def max(self, value):
        """The largest of every rank's int `value`, on every rank: how ranks agree to stop after the same step
        (and on the signal that stops them)."""
        if self.comm is None:
            return int(value)
        from mpi4py import MPI

        return int(self.comm.allreduce(int(value), op=MPI.MAX))

    def map_shared(self, fn, arrays):
        """[fn(a) for a in arrays], the same on every rank, each rank computing every size-th result and
        broadcasting it to the others. fn must return an array of its argument's shape and dtype (Muon's
        newton_schulz: nanograd/optim.py), which the other ranks receive into."""
        if self.comm is None:
            return [fn(a) for a in arrays]
        results = []
        for i, a in enumerate(arrays):
            root = i % self.size
            # Contiguous: MPI sends memory as it lies, so a transposed view would arrive scrambled.
            out = np.ascontiguousarray(fn(a)) if root == self.rank else np.empty(a.shape, a.dtype)
            self.comm.Bcast(out, root=root)
            results.append(out)
        return results

    def gather(self, value):
        """The list of every rank's `value` on rank 0 (None on the others)."""
        return [value] if self.comm is None else self.comm.gather(value, root=0)

    def check_identical(self, arrays, what):
        """Raise on every rank unless `arrays` hold the same bytes on all ranks (compared by digest)."""
        if self.comm is None:
            return
        digest = hashlib.sha256()
        for array in arrays:
            digest.update(np.ascontiguousarray(array).data)
        digests = self.comm.allgather(digest.hexdigest())
        differing = [rank for rank, d in enumerate(digests) if d != digests[0]]
        if differing:
            raise RuntimeError(f"the {what} of rank(s) {differing} differ from rank 0's: "
                               f"the data-parallel ranks are out of step")

    def barrier(self):
        if self.comm is not None:
            self.comm.Barrier()

    @contextlib.contextmanager
    def main_first(self):
        """Run the block on rank 0 before the other ranks: for work whose results rank 0 caches on disk
        (a trained tokenizer, token ids) and the others then read instead of redoing."""
        if not self.is_main:
            self.barrier()
        yield
        if self.is_main:
            self.barrier()

    def fail(self, message, status=1):
        """Exit with `message` and exit `status`. Under MPI this rank says it (naming itself unless it is rank
        0) and leaves at once, without MPI_Finalize: MPICH's mpiexec then ends the other ranks, which would
        otherwise wait in their next allreduce forever, quietly and with this status (within a second here).
        MPI_Abort would do the same but print MPICH's abort banner after the message. An error every rank
        meets is said by each that gets to it before mpiexec ends it."""
        if self.comm is None:
            if status == 1:
                sys.exit(message)  # a SystemExit that carries the message, for callers of main() in code
            print(message, file=sys.stderr)
            sys.exit(status)
        print(message if self.is_main else f"rank {self.rank}: {message}", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(status)


def default_threads(world):
    """Threads per process: this machine's cores shared among its ranks, at most 2 (more threads gain
    little on GPT shapes of this size; see benchmarks/scaleout.py), at least 1."""
    return min(2, max(1, usable_cores() // world.local_size))


def connect(environ=os.environ):
    """A World for this process: MPI's COMM_WORLD when an MPI launcher started it, else this process alone."""
    expected = launched_size(environ)
    if expected is None:
        return World()
    try:
        from mpi4py import MPI
    except ImportError:
        if expected <= 1:
            return World()
        raise RuntimeError(f"started by an MPI launcher as one of {expected} processes, but mpi4py is not "
                           f"installed: pip install -e '.[mpi]' (or run without mpirun)") from None
    world_comm = MPI.COMM_WORLD
    if expected > 1 and world_comm.Get_size() != expected:
        raise RuntimeError(f"the launcher started {expected} processes but MPI sees {world_comm.Get_size()}: "
                           f"mpi4py is built against a different MPI than this mpirun; use the mpirun of "
                           f"the MPI that mpi4py uses (pip install mpich puts one on PATH)")
    local = world_comm.Split_type(MPI.COMM_TYPE_SHARED)
    local_size = local.Get_size()
    local.Free()
    return World(world_comm, local_size)


@functools.cache
def world():
    """This process's World, connected on first use."""
    return connect()
