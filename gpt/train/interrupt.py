"""Ctrl-C (SIGINT) and SIGTERM during training: the first asks the loop to stop after the current step (and
save); a second Ctrl-C stops at once.

    with deferred_stop() as stop:
        while ... and not stop.is_set():
            train_step()

SIGTERM is what `kill PID`, `timeout`, Slurm (before its SIGKILL), `docker stop` and systemd send; it is treated
as Ctrl-C is, so a run stopped by any of them keeps the step it was on. A run stopped this way exits with
status 128 + the signal's number (130 for Ctrl-C, 143 for SIGTERM), as a shell reports a process the signal
killed: a script that goes on after training can tell the run did not finish.

A second SIGTERM is not a second request: Slurm (scancel, its time limit) and systemd send SIGTERM to every
process of a job, and mpiexec forwards the one it gets too, so a rank often receives it twice within
milliseconds; they follow it with SIGKILL, not a second SIGTERM, and a SIGKILL loses nothing either (a
checkpoint is replaced atomically: gpt/storage/atomic.py). A second Ctrl-C is a person asking again.

An MPI rank starts with both signals blocked (distributed.RANK_STARTER), so that one arriving while it still
imports waits instead of killing it (mpiexec reports a killed rank as a crash); `deferred_stop` unblocks
them once its handler is there to take them.
"""
import contextlib
import signal
import sys
import threading

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_MASKS = hasattr(signal, "pthread_sigmask")  # POSIX; Windows has no signal masks (nor ranks started blocked)
NAMES = {signal.SIGINT: "Ctrl-C", signal.SIGTERM: "SIGTERM"}


class StopRequest:
    """The first stop signal received (a signal.Signals), or None while there has been none."""

    def __init__(self):
        self.signal = None

    def is_set(self):
        return self.signal is not None


class StopNow(KeyboardInterrupt):
    """Stop at once: a second Ctrl-C, or SIGTERM outside the training loop. `signal` is the one that came
    first."""

    def __init__(self, signum):
        super().__init__(NAMES[signum])
        self.signal = signum


def exit_status(signum):
    """The exit status of a run that `signum` stopped: 128 + its number, what a shell shows for it."""
    return 128 + int(signum)


@contextlib.contextmanager
def deferred_stop(announce=True):
    """Turn the first SIGINT or SIGTERM into a StopRequest the loop checks between steps, so a checkpoint is
    never taken in the middle of an update; a Ctrl-C after it raises StopNow (a KeyboardInterrupt) wherever
    the program is, a SIGTERM after it changes nothing.
    Only the main thread can own signals. mpiexec passes both signals to every rank; only one (`announce`)
    echoes a Ctrl-C at once (a SIGTERM is said once, by the loop, when the checkpoint is saved)."""
    request = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield request
        return

    def handler(signum, frame):
        if request.is_set():
            if signum == signal.SIGINT:
                raise StopNow(request.signal)
            return
        request.signal = signal.Signals(signum)
        if announce and signum == signal.SIGINT:
            print("\nCtrl-C: finishing this step and saving a checkpoint (press again to abort)", file=sys.stderr)

    previous = {signum: signal.signal(signum, handler) for signum in STOP_SIGNALS}
    # A signal that waited (blocked) arrives now, in the handler just installed.
    mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, STOP_SIGNALS) if _MASKS else None
    try:
        yield request
    finally:
        if _MASKS:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        for signum, previous_handler in previous.items():
            signal.signal(signum, previous_handler)


@contextlib.contextmanager
def sigterm_as_ctrl_c():
    """SIGTERM raises StopNow wherever the program is, as Ctrl-C raises KeyboardInterrupt: for the parts of a
    run outside deferred_stop (its setup, what main() prints at the end), so that a SIGTERM there still
    unwinds, releasing the out dir, and exits with 143 as Ctrl-C exits with 130, instead of killing the
    process mid-way."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum, frame):
        raise StopNow(signal.SIGTERM)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
