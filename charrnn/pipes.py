"""When the reader of our output goes away (`charrnn … | head`, a hung-up terminal).

Shared by the CLI's error contract (end quietly with 141) and by training (stop and save first).
Neither typer nor torch: the library uses it below the CLI.
"""

from __future__ import annotations

import errno
import os
import sys

EXIT_BROKEN_PIPE = 141  # 128 + SIGPIPE: what a shell reports for `cmd | head` ending cmd


def is_reader_gone(exc: OSError) -> bool:
    """Whether a failed write means nobody reads any more: EPIPE (a closed pipe: `| head`) or EIO
    (a hung-up terminal), rather than a problem to report (a full disk)."""
    return isinstance(exc, BrokenPipeError) or exc.errno == errno.EIO


def silence_stdout() -> None:
    """Point stdout's file descriptor at /dev/null once its reader is gone: what is still buffered
    then goes nowhere, instead of failing again at every write and once more at interpreter exit
    ("Exception ignored … BrokenPipeError"). Python's documented remedy for SIGPIPE."""
    try:
        fd = sys.stdout.fileno()
    except (AttributeError, ValueError, OSError):  # not a real file (a test runner's buffer)
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, fd)
    finally:
        os.close(devnull)


def stdout_is_devnull() -> bool:
    """Rich's answer to a closed pipe is to point stdout at /dev/null and exit 1: this tells it."""
    try:
        return os.path.samestat(os.fstat(sys.stdout.fileno()), os.stat(os.devnull))
    except (AttributeError, ValueError, OSError):
        return False
