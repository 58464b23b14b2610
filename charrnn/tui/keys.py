"""Raw key presses from the terminal, read without blocking the generation loop.

`RawKeys` puts the TTY in cbreak mode (keys arrive one by one, not echoed; Ctrl-C still raises
KeyboardInterrupt) and polls with select(); leaving the context restores the saved settings,
whatever ended it. Ctrl-Z is disabled while it is active: a stopped process would leave the
shell with a terminal in cbreak mode and the alternate screen on.
"""

from __future__ import annotations

import os
import select
import sys


class NoKeys:
    """No keyboard (benchmarks, tests): never a key; waiting is just sleeping."""

    def read(self, timeout: float = 0.0) -> str:
        if timeout > 0:
            select.select([], [], [], timeout)
        return ""

    def __enter__(self) -> NoKeys:
        return self

    def __exit__(self, *exc: object) -> None:
        pass


class RawKeys:
    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdin
        self.fd = self.stream.fileno()
        self.saved: list | None = None

    def __enter__(self) -> RawKeys:
        import termios
        import tty

        self.saved = termios.tcgetattr(self.fd)
        tty.setcbreak(self.fd, termios.TCSANOW)
        attrs = termios.tcgetattr(self.fd)
        try:
            attrs[6][termios.VSUSP] = os.fpathconf(self.fd, "PC_VDISABLE")
        except (OSError, ValueError, AttributeError):
            attrs[6][termios.VSUSP] = 0
        termios.tcsetattr(self.fd, termios.TCSANOW, attrs)
        return self

    def __exit__(self, *exc: object) -> None:
        import termios

        if self.saved is not None:
            termios.tcsetattr(self.fd, termios.TCSADRAIN, self.saved)
            self.saved = None

    def read(self, timeout: float = 0.0) -> str:
        """The keys typed since the last call ("" if none), waiting at most `timeout` seconds."""
        ready, _, _ = select.select([self.fd], [], [], max(0.0, timeout))
        if not ready:
            return ""
        data = os.read(self.fd, 1024)
        return data.decode("utf-8", errors="replace")


class NoEcho:
    """The terminal's echo off while a live block is drawn that reads no keys (the training
    view): a typed key, Enter or the `^C` of a Ctrl-C moved the cursor under Rich, which then
    redrew the block below the copy the echo left. Lines are still read whole and Ctrl-C still
    interrupts; stop() gives the settings back."""

    def __init__(self, stream=None) -> None:
        self.stream = stream or sys.stdin
        self.saved: list | None = None

    def start(self) -> None:
        try:
            import termios
        except ImportError:  # no terminal settings here (Windows)
            return
        try:
            fd = self.stream.fileno()
            # Not in the foreground (`charrnn train … &`): setting the terminal would stop the
            # job (SIGTTOU), and its keys go to the shell anyway.
            if not os.isatty(fd) or _in_background(fd):
                return
            self.saved = termios.tcgetattr(fd)
            attrs = termios.tcgetattr(fd)
            attrs[3] &= ~termios.ECHO
            termios.tcsetattr(fd, termios.TCSANOW, attrs)
        except (OSError, ValueError, AttributeError, termios.error):
            self.saved = None  # no terminal to quiet

    def stop(self) -> None:
        if self.saved is not None:
            import termios

            saved, self.saved = self.saved, None
            try:
                fd = self.stream.fileno()
                # Sent to the background since (Ctrl-Z, bg): the shell gave the terminal its
                # settings back when it stopped us, and setting them now would stop us again.
                if not _in_background(fd):
                    termios.tcsetattr(fd, termios.TCSADRAIN, saved)
            except (OSError, ValueError, termios.error):  # the terminal is gone (SIGHUP)
                pass


def _in_background(fd: int) -> bool:
    """Whether this process is a background job of the terminal `fd` (not our controlling
    terminal: no job control, so nothing to stop us)."""
    try:
        return os.tcgetpgrp(fd) != os.getpgrp()
    except OSError:
        return False
