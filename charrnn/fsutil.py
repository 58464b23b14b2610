"""Atomic writes: a reader sees the old folder or the new one, never a half-written one.

A folder is written under a temporary name, fsynced, then swapped in by renames:

    final.tmp-HOST-PID  --(write, fsync)-->  final -> final.old,  final.tmp-… -> final,  rm final.old

A crash between the two renames leaves `final.old` and no `final`; `recover_dir` puts it back,
so the last complete folder is always readable. A process killed while writing leaves its
`final.tmp-HOST-PID`; `recover_dir` removes it once that process is gone (only folders of this
host: a process of another machine sharing the folder cannot be checked, so it is left alone).
"""

from __future__ import annotations

import contextlib
import errno
import glob
import json
import os
import shutil
import socket
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

from charrnn.errors import UserError, option


def _fsync_tree(folder: Path) -> None:
    for path in folder.iterdir():
        if path.is_file():
            with open(path, "rb") as handle:
                os.fsync(handle.fileno())
    _fsync_dir(folder)


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's live process
        return True
    return True


def _tmp_name(final: Path, pid: int | None = None) -> Path:
    host = socket.gethostname().replace("-", "_") or "host"
    return final.with_name(f"{final.name}.tmp-{host}-{os.getpid() if pid is None else pid}")


def recover_dir(final: Path) -> None:
    """Finish an interrupted swap: bring `final.old` back when `final` is missing, and remove
    the half-written temp folders of this host's processes that died while writing."""
    old = final.with_name(final.name + ".old")
    if old.is_dir():
        if final.is_dir():
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(old, final)
    mine = _tmp_name(final, 0).name[: -len("0")]  # "<name>.tmp-<host>-"
    for tmp in final.parent.glob(glob.escape(mine) + "*"):
        pid = tmp.name[len(mine):]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(tmp, ignore_errors=True)


@contextlib.contextmanager
def atomic_dir(final: Path) -> Iterator[Path]:
    """Yield a temporary folder; on success it replaces `final` atomically, on error it is removed."""
    final = Path(final)
    try:
        final.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {final.parent}: {exc.strerror}") from exc
    recover_dir(final)
    had_copy = final.exists() and any(final.iterdir())  # (an empty one holds nothing to keep)
    tmp = _tmp_name(final)
    shutil.rmtree(tmp, ignore_errors=True)
    try:
        tmp.mkdir()
        yield tmp
        _fsync_tree(tmp)
        old = final.with_name(final.name + ".old")
        _swap(tmp, final, old)
        _fsync_dir(final.parent)
        shutil.rmtree(old, ignore_errors=True)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        recover_dir(final)
        kept = "the previous copy is intact" if had_copy else f"nothing of {final.name}/ was written"
        raise UserError(f"could not write {final}: {exc.strerror or exc}; {kept} "
                        f"({write_advice(exc, final)})") from exc
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def _swap(tmp: Path, final: Path, old: Path, tries: int = 5) -> None:
    """final → old, then tmp → final. A reader opening the run between the two renames sees
    `old` without `final` and brings it back (recover_dir), so the second rename meets a folder
    again (ENOTEMPTY): move it aside again and retry."""
    for attempt in range(tries):
        if final.exists():
            os.replace(final, old)
        try:
            os.replace(tmp, final)
            return
        except OSError as exc:
            if exc.errno not in (errno.ENOTEMPTY, errno.EEXIST) or attempt == tries - 1:
                raise


DISK_FULL_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)  # a write the disk had no room for


def write_advice(exc: OSError, final: Path | None = None) -> str:
    """What to do about a failed write, by its cause (errno; a wrapped safetensors error has
    none, only its message) and by where it went: the cache is moved by CHARRNN_CACHE."""
    cached = final is not None and cache_dir().resolve() in Path(final).resolve().parents
    elsewhere = "set CHARRNN_CACHE to another folder" if cached else f"choose another {option('out')}"
    # (safetensors words a full disk as a short write: "N requested and M written")
    if exc.errno in (errno.ENOSPC, errno.EDQUOT) or any(
            words in str(exc) for words in ("No space left", "requested and")):
        return f"the disk may be full: free some space or {elsewhere}"
    if exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        return f"the {'cache ' * cached}folder is not writable: {elsewhere}"
    return elsewhere


def write_json_atomic(path: Path, data: object) -> None:
    """Write JSON to a temp file and rename it over `path`."""
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    text = json.dumps(data, indent=1, ensure_ascii=False)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a file name not in UTF-8 (its bytes as surrogates): escaped,
        text = json.dumps(data, indent=1)  # \udce9 reads back as the same name
    try:
        with open(tmp, "w", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)  # the rename itself survives a power cut
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UserError(f"could not write {path}: {exc.strerror or exc}") from exc
    except BaseException:  # Ctrl-C, or data json cannot write: no temp file left behind
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def refuse_overwrite(path: Path, ours: Callable[[Path], bool], what: str, named: str) -> None:
    """Refuse to replace an existing file unless it is an earlier output of the same kind
    (`ours(path)`): a typo in an output path must not destroy a corpus or a photo. An empty file
    holds nothing to lose, so it may be replaced. `named`: the option that gave the path, as
    charrnn.errors.option names it."""
    path = Path(path)
    if path.is_dir():
        raise UserError(f"{named} {path} is a folder: give a file path for {what}")
    if path.exists() and not path.stat().st_mode & 0o222:  # (a rename replaces it regardless)
        raise UserError(f"{path} is read-only: charrnn will not replace it; make it writable "
                        f"(chmod u+w) or pick another {named} path")
    if not path.exists() or path.stat().st_size == 0:
        return
    try:
        mine = ours(path)
    except OSError as exc:
        raise UserError(f"cannot read {path} ({exc.strerror or exc}) to check that it is {what} "
                        f"before replacing it: pick another {named} path") from exc
    if not mine:
        raise UserError(f"{path} already exists and is not {what}: charrnn will not overwrite it; "
                        f"pick another {named} path, or remove the file first")


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """Yield a temporary path beside `path`; on success it is renamed over `path` (a reader, or a
    crash, sees the old file or the new one, never half of one); on error it is removed."""
    path = Path(path)
    if path.exists() and not path.is_file() and not path.is_dir():
        # a pipe, a FIFO, a device (/dev/stdout): written through, never renamed over
        try:
            yield path
        except BrokenPipeError:  # its reader left (`| head`): the quiet exit of a closed pipe
            raise
        except OSError as exc:
            raise UserError(f"cannot write {path}: {exc.strerror or exc}") from exc
        return
    if path.is_symlink():  # the file it points to is replaced, and the link kept
        path = Path(os.path.realpath(path))
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    above = next((p for p in path.parents if p.exists()), None)
    if above is not None and not above.is_dir():  # mkdir would say only "File exists"
        raise UserError(f"cannot write {path}: {above} is a file, not a folder")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield tmp
        with open(tmp, "rb+") as handle:
            os.fsync(handle.fileno())
        if path.is_file():  # the file replaced keeps its mode (a rename would take the new one's)
            os.chmod(tmp, stat.S_IMODE(path.stat().st_mode))
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise UserError(f"cannot write {path}: {exc.strerror or exc}"
                        f"{'' if not path.exists() else '; the previous file is intact'}") from exc
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def read_json(path: Path, what: str) -> dict:
    """Read a JSON object, turning every way it can be broken into a clear UserError."""
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError as exc:
        raise UserError(f"{what} is missing {path.name} ({path})") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UserError(f"{path} is not readable JSON ({exc}): the {what} is corrupt") from exc
    if not isinstance(data, dict):
        raise UserError(f"{path} is not a JSON object: the {what} is corrupt")
    return data


def cache_dir() -> Path:
    """Where preprocessed datasets and downloaded corpora live (CHARRNN_CACHE to move it)."""
    root = os.path.expanduser(os.environ.get("CHARRNN_CACHE") or os.path.join(  # (a quoted ~)
        os.environ.get("XDG_CACHE_HOME") or "~/.cache", "charrnn"))
    return Path(root)


def cache_folder(part: str) -> Path:
    """cache_dir() / part, where something must be kept (datasets, corpora): a file in the way
    is named, with what to change, rather than left to fail later as 'Not a directory'. (What
    only speeds things up, a history or a measurement, does without.)"""
    folder = cache_dir() / part
    above = next((p for p in (folder, *folder.parents) if p.exists()), None)
    if above is not None and not above.is_dir():
        raise UserError(f"the cache folder {folder} cannot be made: {above} is a file, not a "
                        "folder; point CHARRNN_CACHE at a folder")
    return folder
