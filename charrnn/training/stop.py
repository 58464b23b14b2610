"""How a training run is told to stop and keep its work: Ctrl-C, SIGTERM, SIGHUP.

The loop finishes its step, saves last/ and returns "interrupted"; a closed stdout (the reporter's
reader is gone) is handled the same way by the loop itself.
"""

from __future__ import annotations

import signal
from collections.abc import Callable

# Each means "stop now, keep the work": Ctrl-C, a polite kill (SIGTERM: systemd, Slurm, docker
# stop) and the terminal going away (SIGHUP: a closed window, a dropped ssh session).
STOP_SIGNALS = tuple(getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP")
                     if hasattr(signal, name))  # no SIGHUP on Windows
STOPPING = "stopping: saving last/"
AGAIN = " (Ctrl-C again to abort without saving)"  # only a second Ctrl-C aborts
CAUSE = {"SIGTERM": "terminated (SIGTERM)", "SIGHUP": "the terminal hung up (SIGHUP)"}


def stopping_line(signum: int) -> str:
    """What the run says when told to stop: after a Ctrl-C, a second one aborts; a kill or a
    hang-up is named, and a second one only says so again."""
    if signum == signal.SIGINT:
        return STOPPING + AGAIN
    return f"{CAUSE.get(signal.Signals(signum).name, signal.Signals(signum).name)}: {STOPPING}"


class StopFlag:
    """While installed, the first Ctrl-C, SIGTERM or SIGHUP only sets `requested`: the training
    loop finishes its step, saves and stops. A second Ctrl-C raises KeyboardInterrupt (abort
    without saving). Signals that arrive outside the loop keep their usual effect."""

    def __init__(self, say: Callable[[str], None] = lambda _: None) -> None:
        self.requested = False
        self.say = say
        self._saved: dict = {}

    def _handle(self, signum, frame) -> None:  # noqa: ARG002
        if self.requested and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.requested = True
        try:
            self.say(stopping_line(signum))
        except OSError:  # the terminal may be gone (SIGHUP): saving matters, the line does not
            pass

    def install(self) -> None:
        try:
            for sig in STOP_SIGNALS:
                self._saved[sig] = signal.signal(sig, self._handle)
        except ValueError:  # not the main thread (e.g. inside a test runner thread)
            pass

    def restore(self) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
        self._saved.clear()
