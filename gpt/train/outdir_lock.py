"""One trainer per out dir: a lock file that the operating system releases when its owner dies.

A trainer holds an exclusive `flock` on `<out_dir>/.lock` while it runs, and writes into it who it is
(process id, host, start time). A second trainer started on the same out dir finds the lock taken and stops
at once with an error naming the first. The kernel drops a flock when its process ends in any way (exit,
crash, SIGKILL), so a lock never stays stuck: a lock file that still names an owner but is not locked was
left by a process that died, and the next trainer takes it over, says so, and removes the temporary files
the dead one left half-written (`.<name>.<random>.tmp`, see gpt/storage/atomic.py). A clean release empties the file.

The lock keeps other processes out, not other Trainers of the same process: those share it (a notebook that
builds a new Trainer while the old one is still referenced must not lock itself out).

flock is POSIX (Linux, macOS); where it is missing (Windows) out dirs are not locked. On network file
systems flock is only as good as the server's support for it.
"""
import datetime
import os
import shutil
import socket
import sys
from pathlib import Path

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_FILE = ".lock"
_held = {}  # this process's locks: resolved lock path -> [open locked file, number of holders]


class OutDirBusy(RuntimeError):
    """Another live process is training into this out dir."""


class OutDirLock:
    """`acquire()` (raises OutDirBusy) ... `release()`, or `with lock:`; acquiring while held does nothing.
    An inactive lock (`active=False`: the MPI ranks that write nothing) never locks."""

    def __init__(self, out_dir, active=True):
        self.out_dir = Path(out_dir)
        self.path = self.out_dir / LOCK_FILE
        self.active = active
        self._key = None  # set while held

    def __enter__(self):
        self.acquire()
        return self

    def __exit__(self, *exc):
        self.release()

    @property
    def held(self):
        return self._key is not None

    def acquire(self):
        if self.held or not self.active or fcntl is None:
            return
        self.out_dir.mkdir(parents=True, exist_ok=True)
        key = str(self.path.resolve())
        if key in _held:  # another Trainer of this process holds it
            _held[key][1] += 1
            self._key = key
            return
        f = open(self.path, "a+", encoding="utf-8")  # "a+" creates the file but never truncates an owner's
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # EWOULDBLOCK: someone holds it
            f.seek(0)
            owner = f.read().strip() or "another process (starting up)"
            f.close()
            raise OutDirBusy(f"{self.out_dir} is in use by {owner}, which is training into it; wait for it to "
                             f"finish, stop it, or choose another --out-dir") from None
        f.seek(0)
        previous = f.read().strip()
        leftovers = remove_leftovers(self.out_dir)
        if previous:  # said before the file changes: whoever sees the new owner has seen this line
            print(f"{self.out_dir}: taking over the lock left by {previous}, which stopped without releasing "
                  f"it (killed or crashed)" + (f"; removed {leftovers} unfinished temporary files" if leftovers
                                               else ""), file=sys.stderr)
        f.seek(0)
        f.truncate()
        started = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
        f.write(f"process {os.getpid()} on {socket.gethostname()} (started {started})\n")
        f.flush()
        _held[key], self._key = [f, 1], key

    def release(self):
        if not self.held:
            return
        key, self._key = self._key, None
        _held[key][1] -= 1
        if _held[key][1] > 0:
            return
        f = _held.pop(key)[0]
        f.seek(0)
        f.truncate()  # an empty lock file: released cleanly
        f.flush()
        fcntl.flock(f, fcntl.LOCK_UN)
        f.close()


def remove_leftovers(folder):
    """Delete the temporary files and folders of atomic writes in `folder` that never finished (a process
    was killed while writing them); returns how many. Only safe while no one else writes there."""
    leftovers = list(Path(folder).glob(".*.tmp"))
    for path in leftovers:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
    return len(leftovers)
