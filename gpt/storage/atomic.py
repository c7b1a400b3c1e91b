"""Atomic writes, for durability: a crash never leaves a half-written file or checkpoint behind.

Everything is written under a temporary name in the destination's folder, flushed to disk, then renamed
into place with os.replace, which is atomic within one file system: a reader finds the old version or the
whole new one, never a mix. The folder is fsynced after the rename, so that the rename itself survives a
power loss (a rename lives in the folder's entries, which the file's fsync does not write). A process killed
mid-write leaves its temporary `.<name>.<random>.tmp` behind; gpt/train/outdir_lock.py clears them.
"""
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path


def write_atomic(path, data):
    """Write the bytes `data` to `path`: through a temporary file, fsynced, then os.replace."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def fsync_dir(path):
    """Flush a folder's entries (creations, renames, deletions) to disk. POSIX only: Windows cannot open a
    folder, and its renames are durable once they return."""
    if os.name != "posix":
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def previous_dir(path):
    """`<path>.old`: where replace_dir_atomic keeps the old directory until the new one is in place."""
    path = Path(path)
    return path.with_name(path.name + ".old")


@contextmanager
def replace_dir_atomic(path):
    """Build a directory under a temporary name; only once it is complete does it become `path`.

        with replace_dir_atomic(path) as tmp:
            ...write the files into tmp...

    On a clean exit every file is fsynced and the directory renamed into place. Replacing an existing
    `path` takes two renames (old -> previous_dir(path), new -> path): a crash between them leaves the
    complete old directory at previous_dir(path). On an error the temporary directory is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp"))
    try:
        yield tmp
        for file in tmp.iterdir():  # on disk before the rename publishes them
            with open(file, "rb") as f:
                os.fsync(f.fileno())
        fsync_dir(tmp)
        old = previous_dir(path)
        if old.exists() and path.exists():
            shutil.rmtree(old)  # a stale leftover; `path` is complete
        if path.exists():
            os.replace(path, old)
        os.replace(tmp, path)
        fsync_dir(path.parent)  # the new directory is in place on disk before the old one goes
        shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
