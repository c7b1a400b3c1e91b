"""Ctrl-C during training: the first press asks the loop to stop after the current step (and save), the
second stops at once.

    with deferred_ctrl_c() as ctrl_c:
        while ... and not ctrl_c.is_set():
            train_step()
"""
import contextlib
import signal
import sys
import threading


@contextlib.contextmanager
def deferred_ctrl_c(announce=True):
    """Turn the first Ctrl-C into a flag the loop checks between steps, so a checkpoint is never taken in the
    middle of an update; a second Ctrl-C interrupts at once. Only the main thread can own signals. mpirun
    passes Ctrl-C to every rank; only one (`announce`) says so."""
    flag = threading.Event()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return

    def handler(signum, frame):
        if flag.is_set():
            raise KeyboardInterrupt
        flag.set()
        if announce:
            print("\nCtrl-C: finishing this step and saving a checkpoint (press again to abort)", file=sys.stderr)

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)
