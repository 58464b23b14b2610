"""The CLI's error contract, one ladder for every command and for the entry point.

A UserError becomes `charrnn: error: …` on stderr and exit code 2; an OSError (the disk, the
permissions) the same with the file named; Ctrl-C exit code 130. A closed stdout (`| head`) ends
the command quietly with 141 (128 + SIGPIPE), as a Unix tool killed by SIGPIPE would.
CHARRNN_DEBUG=1 re-raises, so the traceback shows.
"""

from __future__ import annotations

import codecs
import functools
import os
import stat
import sys
import time

import typer

from charrnn import fsutil
from charrnn.cores import other_rank
from charrnn.errors import UserError
from charrnn.pipes import EXIT_BROKEN_PIPE, silence_stdout, stdout_is_devnull

INTERRUPTED = 130
RANK0_FIRST_S = 5.0  # what a rank other than 0 waits before saying what every rank meets


def debug() -> bool:
    """CHARRNN_DEBUG set to anything but an off word (0, false, no, off, empty)."""
    return os.environ.get("CHARRNN_DEBUG", "").strip().lower() not in ("", "0", "false", "no", "off")


def say(line: str, alike_on_every_rank: bool = False) -> None:
    """`charrnn: line` on stderr; under torchrun a rank other than 0 names itself. What every
    rank meets alike (a user mistake, Ctrl-C) rank 0 says: the others wait first, and torchrun
    stops them when rank 0 has failed, so it is said once (a rank that exited at once got rank 0
    stopped before it spoke). One still running after the wait met it alone, and says it."""
    rank = other_rank()
    if rank and alike_on_every_rank:
        time.sleep(RANK0_FIRST_S)
    print(f"charrnn: {f'rank {rank}: ' if rank else ''}{line}", file=sys.stderr)


def exit_code(exc: BaseException) -> int | None:
    """Report `exc` the charrnn way and return the exit code; None for what is not ours to
    report (a bug, or a SystemExit that is not a closed pipe): the caller re-raises it."""
    inner = _inside_compiled(exc)
    if isinstance(inner, SystemExit) and inner is not exc and isinstance(inner.code, int):
        return inner.code  # a SIGTERM's exit (143) raised inside a Numba call: as outside one
    if isinstance(exc, KeyboardInterrupt) or isinstance(inner, KeyboardInterrupt):
        if not other_rank():  # a Ctrl-C reaches every rank of a torchrun (it forwards SIGINT,
            say("interrupted")  # which leaves them alive after a wait): rank 0 says it
        return INTERRUPTED
    if isinstance(exc, BrokenPipeError):  # the reader of stdout left: nobody to tell, stop
        silence_stdout()
        return EXIT_BROKEN_PIPE
    if isinstance(exc, SystemExit):  # Rich met the closed pipe first (Console.on_broken_pipe
        # points stdout at /dev/null and exits 1): the same case, the same exit code
        return EXIT_BROKEN_PIPE if exc.code == 1 and stdout_is_devnull() else None
    if debug():
        return None
    if isinstance(exc, UserError):
        say(f"error: {exc}", exc.alike_on_every_rank)
        return exc.exit_code
    if _unwritable_to_stdout(exc):
        shown = exc.object[exc.start:exc.end]
        say(f"error: standard output is {exc.encoding}, which cannot hold {shown!r}: use a UTF-8 "
            "locale (LANG=C.UTF-8) or set PYTHONIOENCODING=utf-8")
        return 2
    if isinstance(exc, IsADirectoryError) and exc.filename:  # (a damaged run: metrics.jsonl)
        say(f"error: {exc.filename} is a folder where charrnn keeps a file: move it away (or "
            "remove it), then run the command again")
        return 2
    if isinstance(exc, OSError):  # the disk or the permissions, not a bug: say which file
        if not exc.filename and _stdout_refuses(exc):  # (> /dev/full, a full disk under > FILE)
            silence_stdout()  # (what is still buffered would fail again at exit)
            say(f"error: cannot write to standard output: {exc.strerror or exc}; free space on "
                "its disk, or send the output elsewhere")
            return 2
        where = f" ({exc.filename})" if exc.filename else ""
        say(f"error: {exc.strerror or exc}{where}")
        return 2
    return None


def _inside_compiled(exc: BaseException) -> BaseException | None:
    """What compiled code (a Numba kernel of the n-gram counts) handed back wrapped when a
    signal's handler raised inside it: 'SystemError: CPUDispatcher(…) returned a result with an
    exception set', caused by it, or by such an error around it (one per level of calls it
    went up through). `exc` itself when it is no such wrapper."""
    seen = 0
    while isinstance(exc, SystemError) and seen < 100:
        exc, seen = exc.__cause__ or exc.__context__, seen + 1
    return exc


def _stdout_refuses(exc: OSError) -> bool:
    """Whether a disk-full error with no file name came from standard output: it is /dev/full,
    or a file on a disk with no room left (charrnn names the files it writes in its errors)."""
    if exc.errno not in fsutil.DISK_FULL_ERRNOS:
        return False
    try:
        fd = sys.stdout.fileno()
        held = os.fstat(fd)
        if os.path.exists("/dev/full") and os.path.samestat(held, os.stat("/dev/full")):
            return True
        return stat.S_ISREG(held.st_mode) and os.fstatvfs(fd).f_bavail == 0
    except (AttributeError, ValueError, OSError):  # not a real file (a test runner's buffer)
        return False


def _unwritable_to_stdout(exc: BaseException) -> bool:
    """Text the terminal's (or the pipe's) encoding cannot hold: the user's locale, not a bug."""
    if not isinstance(exc, UnicodeEncodeError) or not isinstance(exc.object, str):
        return False
    try:
        ours = codecs.lookup(getattr(sys.stdout, "encoding", None) or "utf-8").name
        return codecs.lookup(exc.encoding).name == ours != "utf-8"
    except LookupError:
        return False


def report_errors(func):
    """Wrap a command: user mistakes become one line and their exit code."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except (UserError, KeyboardInterrupt, OSError, SystemExit, SystemError) as exc:
            code = exit_code(exc)
            if code is None:
                raise
            raise typer.Exit(code) from None

    return wrapper


def command(app: typer.Typer, *args, **kwargs):
    """`app.command(...)` whose callback reports errors the charrnn way."""

    def register(func):
        app.command(*args, **kwargs)(report_errors(func))
        return func

    return register


def exit_after(result: dict) -> None:
    """A training run that was interrupted (Ctrl-C, SIGTERM, SIGHUP) has saved: exit 130."""
    if result.get("outcome") == "interrupted":
        raise typer.Exit(INTERRUPTED)
