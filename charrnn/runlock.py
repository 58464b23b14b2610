"""One writer per run: an advisory lock, held for as long as a process trains into a run folder.

    <run>/.writer     {"pid": 4242, "host": "box", "since": 1764876000.0}   flock(2)'d while held

A second `charrnn train --resume RUN` started while the first still trains (two terminals, a
retried job script) is refused at once, naming the process that holds the run. flock locks belong
to the open file, so the kernel drops them when the process ends, however it ends: a SIGKILL
leaves no stale lock, and the file left behind is only a note of who held it last. Readers
(sample, eval, runs, the live view) never look at it. Torch-free.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from collections.abc import Iterator
from pathlib import Path

from charrnn.errors import UserError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs there are not guarded
    fcntl = None  # type: ignore[assignment]

LOCK_FILE = ".writer"
_held: dict[Path, int] = {}  # run folder → the open, locked file of this process


@contextlib.contextmanager
def writer(folder: Path, what: str = "run") -> Iterator[None]:
    """Hold `folder` as its only writer until the block ends (UserError if another process
    holds it; `what` the folder is, for that message: a run, a fill group). A folder where the
    lock file cannot be made (read-only) is not locked: nothing can be written there anyway, and
    the first write says why."""
    folder = Path(folder).resolve()
    if fcntl is None or folder in _held:
        yield
        return
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
    except IsADirectoryError as exc:  # not read-only: unlocked, two trainers would write it
        raise UserError(f"{folder / LOCK_FILE} is a folder, where the file that marks the "
                        f"process training this {what} belongs: remove it (rmdir)") from exc
    except OSError:
        yield
        return
    try:
        if not _try_lock(fd):
            raise UserError(_in_use_message(folder, _note(fd), what))
        _write_note(fd)
        _held[folder] = fd
        yield
    finally:
        _held.pop(folder, None)
        os.close(fd)  # closing the file releases the lock


def holder(folder: Path) -> dict | None:
    """Who trains into `folder` now ({"pid", "host", "since"}), or None."""
    folder = Path(folder).resolve()
    if folder in _held:
        return {"pid": os.getpid(), "host": socket.gethostname()}
    if fcntl is None or not (folder / LOCK_FILE).is_file():
        return None
    try:
        fd = os.open(folder / LOCK_FILE, os.O_RDONLY)
    except OSError:
        return None
    try:
        return None if _try_lock(fd, shared=True) else _note(fd)
    finally:
        os.close(fd)


def _try_lock(fd: int, shared: bool = False) -> bool:
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _write_note(fd: int) -> None:
    note = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.time()}
    with contextlib.suppress(OSError):
        os.ftruncate(fd, 0)
        os.pwrite(fd, (json.dumps(note) + "\n").encode(), 0)


def _note(fd: int) -> dict:
    try:
        note = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        note = {}
    return note if isinstance(note, dict) else {}


def _in_use_message(folder: Path, note: dict, what: str) -> str:
    who = f"process {note['pid']}" if "pid" in note else "another process"
    if note.get("host") and note["host"] != socket.gethostname():
        who += f" on {note['host']}"
    since = f" since {time.strftime('%H:%M:%S', time.localtime(note['since']))}" \
        if isinstance(note.get("since"), (int, float)) else ""
    return (f"{what} {folder.name} is being trained by {who}{since} ({folder}): one process "
            f"trains a {what} at a time; wait for it to end, or stop it (Ctrl-C there saves "
            "last/), then resume")
