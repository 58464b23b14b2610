"""Run folders: where training output lives and how a RUN argument is found.

    checkpoints/<run-name>/        (root: --out, or $CHARRNN_RUNS, or ./checkpoints)
        run.json                   kind (lm, tag, fill or ngram), created, dataset id, config
        metrics.jsonl              one JSON object per log/eval line
        best/  last/               RNN checkpoints (see checkpoint.py)
        model/                     n-gram model arrays (see charrnn/ngram)

Wherever a command takes RUN it accepts a run name under the root, a path to a run folder, or a
path to a checkpoint folder inside one. Torch-free: n-gram commands use it too.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import unicodedata
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from charrnn import fsutil, runlock
from charrnn.errors import UserError, flag, option

RUN_FILE = "run.json"
GROUP_FILE = "group.json"  # a fill group's record (charrnn.fill.group): a folder of runs' names
# The run kinds, named as checkpoints name their task; run.json files written before 0.2 said
# "rnn" and "tagger", which still open.
OLD_KINDS = {"rnn": "lm", "tagger": "tag"}
KIND_NAMES = {"lm": "language model", "tag": "tagger", "fill": "fill-model", "ngram": "n-gram"}


def a_kind(kind: object) -> str:
    """'a tagger', 'an n-gram', … : a run kind in words, for messages."""
    what = str(KIND_NAMES.get(kind_name(kind), kind))  # type: ignore[arg-type]
    return f"{'an' if what.startswith(('a', 'e', 'i', 'o', 'u', 'n-')) else 'a'} {what}"


def kind_name(kind: object) -> object:
    """A run kind as this version names it (an old name is mapped; anything else kept)."""
    return OLD_KINDS.get(kind, kind) if isinstance(kind, str) else kind


def runs_root(out: str | Path | None = None) -> Path:
    if out is not None and not str(out).strip():  # (it was taken as none: ./checkpoints)
        raise UserError(f"{option('out')} is empty: give the runs folder, or drop {option('out')} for "
                        "./checkpoints")
    # (~ expanded: `--out=~/runs` reaches us unexpanded by the shell, and made a folder named ~)
    return Path(out or os.environ.get("CHARRNN_RUNS") or "checkpoints").expanduser()


def out_suffix(folder: Path) -> str:
    """What a command line that names the run `folder` by its name adds to find it: its root
    (" --out ROOT") where that is not the default one, else nothing."""
    import shlex

    if folder.parent.resolve() == runs_root().resolve():
        return ""
    return f" {flag('out')} {shlex.quote(str(folder.parent))}"


def refuse_missing_root(root: Path) -> None:
    """A runs root asked for that is not a folder: a mistyped path, not a root without runs."""
    if root.is_file():
        raise UserError(f"{root} is a file, not a runs folder: give the folder that holds the runs")
    if not root.is_dir():
        raise UserError(f"{root} does not exist: give the folder that holds the runs (a run "
                        "folder's parent)")


# The command that continues each kind of run (an n-gram has nothing to continue).
RESUMES = {"lm": "charrnn train --resume", "fill": "charrnn train --resume",
           "tag": "charrnn tag train --resume"}
MAX_NAME_BYTES = 200  # a folder name holds 255; the rest is room for "-fwd", "-2", ...


def check_run_name(name: str) -> None:
    """A run's name is a plain folder name that every command can take back as its RUN: no
    path, no hidden folder, no leading dash (read as an option), no control characters or
    surrounding spaces (a table or a message would not show it as typed)."""
    plain = (name.strip() == name and name and "/" not in name and name[0] not in ".-"
             and not any(unicodedata.category(ch) == "Cc" for ch in name))
    if not plain:
        raise UserError(f"{option('run_name')} {name!r} must be a plain folder name: no /, no "
                        "control characters or surrounding spaces, not starting with . or -")
    try:
        size = len(name.encode("utf-8"))
    except UnicodeEncodeError:  # bytes a UTF-8 locale could not decode (a latin-1 name)
        raise UserError(f"{option('run_name')} {name!r} is not UTF-8 text (run.json and every table "
                        "hold its name): name the run in UTF-8, under a UTF-8 locale "
                        "(LANG=C.UTF-8)") from None
    if size > MAX_NAME_BYTES:
        raise UserError(f"{option('run_name')} {name[:16] + '…'!r} is {size} bytes long: at most "
                        f"{MAX_NAME_BYTES}")


def new_run_dir(root: Path, name: str | None, kind: str, extra: dict | None = None) -> Path:
    """Create a fresh run folder; the default name is a readable timestamp (made unique)."""
    base = name or time.strftime("%Y-%m-%d_%H-%M-%S") + ("" if kind == "lm" else f"_{kind}")
    if name is not None:
        check_run_name(name)
    folder, n = root / base, 1
    while folder.exists():
        if name is not None and _free_again(folder):  # a start that wrote nothing: its name is
            shutil.rmtree(folder)  # free again (only its run.json goes)
            break
        if name is not None and _take_empty(folder):
            break  # an empty folder made by hand: nothing to lose in taking it
        if name is not None:
            _refuse_taken(folder)
        n += 1
        folder = root / f"{base}-{n}"
    try:
        folder.mkdir(parents=True)  # (a start racing for the same name fails here)
    except OSError as exc:
        raise UserError(f"cannot create run folder {folder}: {exc.strerror}") from exc
    info = {"kind": kind, "name": folder.name, "created": time.time(), **(extra or {})}
    fsutil.write_json_atomic(folder / RUN_FILE, info)
    return folder


def _take_empty(folder: Path) -> bool:
    """Remove `folder` if it is an empty folder (made by hand), so that it is made again as
    the run's: a second start racing for it then finds it made and taken, never shared."""
    try:
        folder.rmdir()  # (refused unless empty; a file is no folder)
    except OSError:
        return False
    return True


def _refuse_taken(folder: Path) -> None:
    """Why a --run-name that exists cannot be a new run, and what to do; never advice to delete
    what is not a run (the name may be the user's corpus, or a folder of theirs)."""
    if not (folder / RUN_FILE).is_file() and not has_output(folder):
        what = "a folder" if folder.is_dir() else "a file"
        raise UserError(f"{folder} exists and is not a run ({what} of yours?): pick another "
                        f"{option('run_name')} (nothing there was touched)")
    if not has_output(folder):  # a start that failed before its first save: --resume would
        # only say "no checkpoint", so name the way out
        raise UserError(no_checkpoint_message(folder, "already exists but"))
    try:  # the run that is there decides how it goes on (an n-gram has nothing to continue)
        there = kind_name(run_info(folder).get("kind"))
    except UserError:
        there = None
    how = RESUMES.get(there)  # type: ignore[arg-type]
    resume = ("" if how is None else  # (lm and fill: the command being typed, by its flag)
              f", or continue it with {option('resume')} {folder.name}" if there in ("lm", "fill")
              else f", or continue it with `{how} {folder.name}`")
    raise UserError(f"run {folder} already exists: pick another {option('run_name')}{resume}")


# What reads each run kind, for "eval" and for "sample" (a wrong kind names the right command).
_KIND_COMMANDS = {
    "lm": ("a language model", "charrnn eval {run}", "charrnn sample {run}"),
    "ngram": ("an n-gram", "charrnn ngram eval {run}", "charrnn ngram sample {run}"),
    "tag": ("a tagger", "charrnn tag eval {run} FILE", "charrnn tag predict {run}"),
    "fill": ("a fill", "charrnn fill eval FILE -m {run}", "charrnn fill TEXT -m {run}"),
}


def check_kind(folder: Path, kind: str | None, wanted: str, action: str) -> None:
    """Refuse a run of another kind before reading it, naming the command for it
    (action: "eval" or "sample")."""
    if kind == wanted:
        return
    if kind not in _KIND_COMMANDS:
        raise UserError(f"{folder.name} is a run of unknown kind {kind!r} ({folder / RUN_FILE}): "
                        f"this command reads {_KIND_COMMANDS[wanted][0]} run")
    what, evaluate, sample = _KIND_COMMANDS[kind]
    use = (evaluate if action == "eval" else sample).format(run=folder.name)
    raise UserError(f"{folder.name} is {what} run: use `{use}`")


def run_info(folder: Path) -> dict:
    try:
        info = fsutil.read_json(folder / RUN_FILE, f"run {folder}")
        _check_fields(folder, info)
    except UserError as exc:
        if _resumable_lm(folder):  # its checkpoints say what run.json said that matters
            raise UserError(f"{exc}; `charrnn train --resume {folder}` writes it again from "
                            "the run's checkpoint") from exc
        raise
    if "kind" in info:
        info["kind"] = kind_name(info["kind"])
    return info


# What readers of run.json rely on where a run has it, checked once: a record damaged or written
# by a later version is one clear error (`charrnn runs` lists it as damaged), not a crash in a
# table or a comparison.
RUN_FIELDS: dict[str, type | tuple[type, ...]] = {
    "kind": str, "name": str, "created": (int, float), "config": dict, "sources": dict,
    "dataset": (dict, type(None)), "init_from": (dict, type(None))}  # (an imported ARPA: none)


def _check_fields(folder: Path, info: dict) -> None:
    for key, types in RUN_FIELDS.items():
        value = info.get(key)
        if key in info and (not isinstance(value, types) or isinstance(value, bool)):
            raise UserError(f"{folder / RUN_FILE} is damaged or from a later version of charrnn: "
                            f"its {key!r} is {json.dumps(value)[:40]}, not what this version "
                            "reads")


def _resumable_lm(folder: Path) -> bool:
    """A language model run with a last/ checkpoint (its task read from checkpoint.json)."""
    try:
        meta = fsutil.read_json(folder / "last" / "checkpoint.json", "")
    except UserError:
        return False
    return meta.get("task", "lm") == "lm"


def _lost_run_file(folder: Path) -> str | None:
    """What to say of a run folder whose run.json is gone but whose checkpoints are there (a
    network's run: its resume writes run.json again); None for any other folder."""
    for name in ("last", "best"):
        try:
            task = fsutil.read_json(folder / name / "checkpoint.json", "").get("task", "lm")
        except UserError:
            continue
        checkpoint = folder / name
        if task not in RESUMES:
            return None
        return (f"{folder} has no {RUN_FILE} (lost or removed), though its {name}/ checkpoint is "
                f"there: `{RESUMES[task]} {checkpoint}` writes it again; sampling and evaluating "
                f"take the checkpoint folder ({checkpoint}) meanwhile")
    return None


def repair_run_info(folder: Path, kind: str, created: float, extra: dict) -> bool:
    """Write run.json again where it cannot be read (its checkpoint holds what it said that
    matters): True if it was. The damaged file is kept beside it, as run.json.damaged."""
    try:
        run_info(folder)
        return False
    except UserError:
        if (folder / RUN_FILE).exists():
            os.replace(folder / RUN_FILE, folder / (RUN_FILE + ".damaged"))
        info = {"kind": kind, "name": folder.name, "created": created, **extra,
                "repaired": f"{RUN_FILE} was unreadable (kept as {RUN_FILE}.damaged); written "
                            "again on resume, its creation time from the checkpoint"}
        fsutil.write_json_atomic(folder / RUN_FILE, info)
        return True


def list_runs(root: Path, kind: str | None = None) -> list[Path]:
    """Run folders under root, oldest first (by creation time recorded in run.json)."""
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        if not (folder / RUN_FILE).is_file():
            continue
        try:
            info = run_info(folder)
        except UserError:
            continue
        if kind is None or info.get("kind") == kind:
            found.append((float(info.get("created", 0)), folder.name, folder))
    return [f for _, _, f in sorted(found)]


def damaged_runs(root: Path) -> list[Path]:
    """Run folders whose run.json cannot be read, or is lost beside the run's checkpoints
    (list_runs leaves them out), by name."""
    if not root.is_dir():
        return []
    damaged = []
    for folder in sorted(root.iterdir()):
        if (folder / RUN_FILE).is_file():
            try:
                run_info(folder)
            except UserError:
                damaged.append(folder)
        elif folder.is_dir() and not (folder / RUN_FILE).exists() and _lost_run_file(folder):
            damaged.append(folder)
    return damaged


def resolve_run(spec: str | None, root: Path, kind: str | None = None) -> Path:
    """A RUN argument (name, run folder or checkpoint folder) → the run folder."""
    root = Path(root)
    if spec is None:
        runs = [r for r in list_runs(root, kind) if has_output(r)]
        if not runs:
            what = f"{KIND_NAMES.get(kind, kind)} " if kind else ""
            how = {"ngram": "charrnn ngram train", "tag": "charrnn tag train"}.get(kind or "",
                                                                                "charrnn train")
            missing = "" if root.is_dir() else " (no such folder)"
            raise UserError(f"no {what}runs under {root}{missing}: train one first ({how}), or "
                            f"name a run / pass {option('out')}")
        return runs[-1]
    if not spec.strip():  # (as a path, "" would be the current folder or the root)
        raise UserError(f"the run name is empty ({spec!r}): name a run (`charrnn runs --out "
                        f"{root}` lists them)")
    for candidate in (Path(spec), root / spec):
        if (candidate / RUN_FILE).is_file():
            return candidate
        if (candidate.parent / RUN_FILE).is_file() and candidate.is_dir():
            return candidate.parent
        if (candidate / GROUP_FILE).is_file():
            raise UserError(f"{spec} is a fill group, not a run: `charrnn fill TEXT -m {spec}` and "
                            f"`charrnn fill eval FILE -m {spec}` read it, `charrnn fill train --resume "
                            f"{spec}` continues it; its runs ({spec}-fwd, {spec}-bwd, "
                            f"{spec}-mask, {spec}-ngram) are ordinary runs")
    for candidate in (Path(spec), root / spec):
        if (candidate / RUN_FILE).exists() or not candidate.is_dir():
            continue
        lost = _lost_run_file(candidate)
        if lost:
            raise UserError(lost)
    if spec.startswith("-") and not Path(spec).exists():  # `--resume --max-steps 9`
        raise UserError(f"run {spec!r} not found: that is an option, read as the RUN of the one "
                        f"before it; give the RUN name right after that option (`charrnn runs "
                        f"--out {root}` lists them)")
    raise UserError(f"run {spec!r} not found (looked for a folder with {RUN_FILE} at {spec} and "
                    f"{root / spec}): list them with `charrnn runs --out {root}`")


def no_checkpoint_message(folder: Path, verb: str = "") -> str:
    """What to say about a run folder without any checkpoint or model (training stopped, or
    failed, before its first save; or is still before it)."""
    what = f"run {folder} {verb + ' ' if verb else ''}has no checkpoint (no best/, last/ or model/)"
    training = runlock.holder(folder)
    if training is not None:
        return (f"{what} yet: process {training.get('pid', '?')} is training it and has not "
                "reached its first save; wait for it")
    damaged = [f"{sub}/" for sub in ("best", "last") if (folder / sub).is_dir()
               and any((folder / sub).iterdir())]
    if damaged:  # files are there: never advise deleting them
        return (f"run {folder} has no readable checkpoint: {' and '.join(damaged)} "
                f"{'holds' if len(damaged) == 1 else 'hold'} files but no checkpoint.json (damaged "
                "or cut short by a crash); they are left as they are: restore them from a "
                f"backup, or train again under another {option('run_name')}")
    if _never_started(folder) and runlock.fcntl is not None:  # (new_run_dir takes it again)
        if not _free_again(folder):  # its run.json just written: a start that has yet to lock
            return (f"{what} yet: another start is making it at this moment; wait for it, or "
                    f"pick another {option('run_name')}")
        return (f"{what}: its training stopped before anything was saved; train again with the "
                f"same {option('run_name')}, which is free again")
    return (f"{what}: its training stopped before the first save. Delete it (rm -r {folder}) or "
            f"pick another {option('run_name')}, and train again")


@contextmanager
def kept_if_written(folder: Path) -> Iterator[Path]:
    """Writing a new run's output (an n-gram model): a failure or a stop before anything is
    written takes the folder away again, so that no run without output is left behind."""
    try:
        yield folder
    except BaseException:
        if _never_started(folder):
            shutil.rmtree(folder, ignore_errors=True)
        raise


@contextmanager
def kept_if_saved(folder: Path) -> Iterator[Path]:
    """Training a new network run that this process holds (its writer lock): a failure or a stop
    before its first checkpoint takes the folder away again. Such a run could not be resumed
    (`--resume` would say 'no checkpoint'), and it kept its --run-name taken."""
    try:
        yield folder
    except BaseException:
        if folder.is_dir() and not has_output(folder):
            shutil.rmtree(folder, ignore_errors=True)
        raise


METRICS_FILE = "metrics.jsonl"


def _never_started(folder: Path) -> bool:
    """A run folder with nothing to resume (its start failed, or was stopped or killed, before
    its first save: its run.json, and the training lines it logged) that no process is
    training."""
    names = {p.name for p in folder.iterdir()} if folder.is_dir() else {"?"}
    return (names <= {RUN_FILE, runlock.LOCK_FILE, METRICS_FILE}
            and runlock.holder(folder) is None)


SETTLED_S = 10.0  # a start locks its run folder this long after writing run.json, and far sooner


def _free_again(folder: Path) -> bool:
    """A never-started run folder (_never_started) another start may take: where file locks
    work (else a start training towards its first save looks the same), and not one a start is
    making at this moment (its run.json written, its lock not yet taken). A lock file no one
    holds, or training lines logged, were left by a start that had locked it and has ended
    (killed before its first save): free at once."""
    try:
        age = time.time() - (folder / RUN_FILE).stat().st_mtime
    except OSError:
        return False
    settled = age > SETTLED_S or _was_locked(folder) or (folder / METRICS_FILE).exists()
    return runlock.fcntl is not None and settled and _never_started(folder)


def _was_locked(folder: Path) -> bool:
    """Whether a start took the folder's lock (its note written once it held it: the lock file
    alone may be a start's between making it and locking it)."""
    try:
        return (folder / runlock.LOCK_FILE).stat().st_size > 0
    except OSError:
        return False


def has_output(folder: Path) -> bool:
    return any((folder / sub).exists() for sub in ("best", "last", "model", "best.old", "last.old"))
