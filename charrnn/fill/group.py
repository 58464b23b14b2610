"""A fill group: the runs `charrnn fill train` made for `charrnn fill`, found together.

    <root>/<group>/group.json       the stages, their budgets and state, the mixture weights
    <root>/<group>/train/NAME.txt   the head of each corpus file (what every model trains on)
    <root>/<group>/heldout/NAME.txt its tail (every model's validation text; `fill eval` reads it)
    <root>/<group>-ngram/           ordinary runs: an n-gram (with backward/, the same counts
    <root>/<group>-fwd/ -bwd/       right to left), forward and backward LMs and the fill model;
    <root>/<group>-mask/            `charrnn runs`, sample, eval … take them as any run

group.json is rewritten atomically at every change of stage, so a run killed at any moment leaves
a group that `charrnn fill train --resume GROUP` continues. Torch-free.
"""

from __future__ import annotations

import time
from pathlib import Path

from charrnn import fsutil, runs
from charrnn.errors import UserError, option

FILE, FORMAT, VERSION = runs.GROUP_FILE, "charrnn-fill-group", 1
ROLES = {"ngram": "n-gram", "fwd": "forward LM", "bwd": "backward LM", "mask": "fill model"}


def is_group(folder: Path) -> bool:
    return (folder / FILE).is_file()


STATES = ("pending", "running", "stopped", "skipped", "done")


def read(folder: Path) -> dict:
    info = fsutil.read_json(folder / FILE, f"fill group {folder}")
    if info.get("format") != FORMAT or not isinstance(info.get("stages"), list):
        raise UserError(f"{folder / FILE} is not a fill group (charrnn fill train writes them)")
    # What every reader relies on, checked once: a record damaged or written by a later version
    # is one clear error (and `charrnn runs` leaves it out), not a crash half-way through a table.
    numbers = all(isinstance(info.get(k), (int, float)) for k in ("created", "max_time", "spent_s"))
    stages = all(isinstance(s, dict) and s.get("role") in ROLES and s.get("state") in STATES
                 and isinstance(s.get("run"), str) for s in info["stages"])
    if not (numbers and stages):
        raise UserError(f"{folder / FILE} is damaged or from a later version of charrnn: its "
                        "stages or times are not what this version reads")
    return info


def write(folder: Path, info: dict) -> None:
    fsutil.write_json_atomic(folder / FILE, info)


def create(root: Path, name: str | None) -> Path:
    """A new group folder (the default name a timestamp); its members' names are checked free."""
    base = name or time.strftime("%Y-%m-%d_%H-%M-%S") + "_fill"
    runs.check_run_name(base)
    taken = [p for p in (root / base, *(root / f"{base}-{r}" for r in ROLES))
             if p.exists() and not (p == root / base and _left_empty(p))]
    if taken:
        if name is None:  # two groups started in the same second
            return create(root, f"{base}-{time.time_ns() % 10_000}")
        again = f", or continue that group with {option('resume')} {base}" if is_group(root / base) else ""
        raise UserError(f"{taken[0]} already exists: pick another {option('run_name')}{again}")
    folder = root / base
    try:
        folder.mkdir(parents=True, exist_ok=_left_empty(folder))
    except OSError as exc:
        raise UserError(f"cannot create {folder}: {exc.strerror}") from exc
    return folder


def _left_empty(folder: Path) -> bool:
    """A group folder a start left empty when it was stopped before its texts were written
    (they and group.json arrive together, train_group.start): the name is free again."""
    return folder.is_dir() and not any(folder.iterdir())


def is_named(spec: str, root: Path) -> bool:
    """Whether a RUN argument names a group (a folder, or a name under the root)."""
    return is_group(Path(spec)) or is_group(root / spec)


def resolve(spec: str, root: Path) -> Path:
    """A GROUP argument (a name under the root or a folder) → its folder."""
    for candidate in (Path(spec), root / spec):
        if is_group(candidate):
            return candidate
    raise UserError(f"fill group {spec!r} not found (looked for {FILE} in {spec} and "
                    f"{root / spec}): `charrnn fill train CORPUS` makes one")


def groups(root: Path) -> list[tuple[Path, dict]]:
    """Every readable group under the root with its record, oldest first."""
    return scan(root)[0]


def damaged(root: Path) -> list[Path]:
    """The group folders under the root whose record cannot be read, oldest record first."""
    return scan(root)[1]


def scan(root: Path) -> tuple[list[tuple[Path, dict]], list[Path]]:
    """One pass over the root's group folders: the readable ones with their records, by
    creation; the damaged ones (`fill train --resume` says why when asked), by their record's
    time."""
    readable, broken = [], []
    for folder in root.iterdir() if root.is_dir() else []:
        if not is_group(folder):
            continue
        try:
            info = read(folder)
        except UserError:
            broken.append(folder)
            continue
        readable.append((float(info.get("created", 0)), folder.name, folder, info))
    return ([(folder, info) for _, _, folder, info in sorted(readable)],
            sorted(broken, key=lambda folder: ((folder / FILE).stat().st_mtime, folder.name)))


def newest(root: Path) -> Path | None:
    """The newest group under the root with at least one trained member, or None. A damaged
    group written since is refused: the runs that answered instead were not the ones the user
    had just trained, and nothing said so."""
    readable, broken = scan(root)
    trained = [folder for folder, info in readable
               if any(stage.get("state") == "done" for stage in info["stages"])]
    found = trained[-1] if trained else None
    if broken and _written(broken[-1]) > max(
            [_written(found)] + [(run / runs.RUN_FILE).stat().st_mtime for run in runs.list_runs(root)]):
        name = broken[-1].name  # newer than anything else that could answer in its place
        members = [f"{name}-{role}" for role in ROLES if (root / f"{name}-{role}").is_dir()]
        give = (f"give its models with {option('model')} ({', '.join(members)} are ordinary "
                "runs), or train a new group") if members else "train a new group"
        raise UserError(f"fill group {name}, the newest under {root}, is damaged ({FILE} cannot "
                        f"be read): {give}")
    return found


def untrained_since(root: Path, found: Path | None) -> list[Path]:
    """The groups newer than `found` (None: any) with no trained model yet, which `newest`
    passes over (a group stopped in its first stage)."""
    readable, _ = scan(root)
    folders = [folder for folder, _ in readable]
    since = folders[folders.index(found) + 1:] if found in folders else folders
    return [folder for folder, info in readable if folder in since
            and not any(stage.get("state") == "done" for stage in info["stages"])]


def _written(folder: Path | None) -> float:
    return (folder / FILE).stat().st_mtime if folder is not None else float("-inf")


def members(folder: Path) -> list[tuple[str, Path]]:
    """(role, run folder) of the group's finished stages, in stage order."""
    root = folder.parent
    out = []
    for stage in read(folder)["stages"]:
        run = root / stage["run"]
        if stage.get("state") == "done" and (run / runs.RUN_FILE).is_file():
            out.append((stage["role"], run))
    return out


def split_text(text: str, fraction: float) -> tuple[str, str]:
    """(head, tail): the tail is the last `fraction` of the characters, from a line start (the
    last line break before the cut), so no line is split; one long line is cut where it is."""
    cut = int(len(text) * (1 - fraction))
    line_start = text.rfind("\n", 0, cut) + 1
    if line_start > len(text) // 2:
        cut = line_start
    return text[:cut], text[cut:]


def continues(root: Path, stage: dict) -> bool:
    """Whether a stage's run continues where it stopped (a network that saved its last/); any
    other unfinished stage starts again."""
    return stage["role"] in ("fwd", "bwd", "mask") and (root / stage["run"] / "last").is_dir()


def schedule(root: Path, stage: dict) -> tuple[float, float] | None:
    """A continuing network's own schedule as its last/ saved it (a run killed outright resumes
    from there): (its --max-time, the training time it had spent), or None where that cannot be
    read."""
    try:
        saved = fsutil.read_json(root / stage["run"] / "last" / "checkpoint.json", "checkpoint")
        return float(saved["train"]["max_time"]), float(saved["progress"]["elapsed"])
    except (UserError, KeyError, TypeError, ValueError):
        return None


def seconds_left(root: Path, stage: dict) -> float | None:
    """What a continuing network's own schedule has left, or None where it cannot be read."""
    saved = schedule(root, stage)
    return None if saved is None else max(0.0, saved[0] - saved[1])


def skipped(info: dict) -> list[str]:
    """The stages the budget left too little time for, in words: ['fill model']."""
    return [ROLES[stage["role"]] for stage in info["stages"] if stage["state"] == "skipped"]


def missing(folder: Path, info: dict) -> list[str]:
    """The finished stages whose run is gone (deleted since), in words: 'backward LM (g-bwd)'."""
    return [f"{ROLES[stage['role']]} ({stage['run']})" for stage in info["stages"]
            if stage["state"] == "done" and not (folder.parent / stage["run"] / runs.RUN_FILE
                                                  ).is_file()]


ROUNDED_S = 0.5  # a stage's seconds are recorded to a tenth: within this, two times agree


def own_left(stage: dict) -> float:
    """What a stage's own schedule has left: its budget less the time it used (booked, or as of
    its last save where it continues)."""
    return max(0.0, (stage.get("budget_s") or 0.0) - stage.get("used_s", 0.0))


def left_to_do(folder: Path, info: dict) -> list[str]:
    """What is still to train, in words: 'backward LM (312 s of 480 s left)', 'fill model' (not
    a stage skipped for want of time: `skipped` names those)."""
    out = []
    for stage in info["stages"]:
        if stage.get("state") in ("done", "skipped"):
            continue
        what = ROLES[stage["role"]]
        budget = stage.get("budget_s")
        if budget and continues(folder.parent, stage):
            # What the resume will continue with: its own schedule as of last/ (the wall time
            # booked also counts start-up, evaluations and the save after the stop).
            left = seconds_left(folder.parent, stage)
            left = own_left(stage) if left is None else left
            what += f" ({left:.0f} s of {budget:.0f} s left)"
        out.append(what)
    if not out and not mixed(folder, info):
        out.append("mixture weights")  # (a stop while they were tuned: fill would go unmixed)
    return out


def mixed(folder: Path, info: dict) -> bool:
    """Whether the group's last step, the mixture weights, is done. A record made before it
    said so: whether it holds weights, or has nothing to mix (no n-gram, or no LM)."""
    if "mixed" in info:
        return bool(info["mixed"])
    if info.get("mix"):
        return True
    have = {role for role, _ in members(folder)}
    return "ngram" not in have or not {"fwd", "bwd"} & have
