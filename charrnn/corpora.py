"""The embedded default corpus and the registry of public corpora (download, verify, cache).

The default corpus exists offline on every machine with Python: the English help texts that ship
with the standard library (`pydoc_data.topics`, what `help("if")` prints), about 460 KB of prose
and code. Where a distribution strips pydoc_data, the standard library's own source stands in (the
char-rnn "Linux source" demo, in Python).
"""

from __future__ import annotations

import errno
import json
import os
import shutil
import sysconfig
import tempfile
import urllib.request
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from charrnn import fsutil
from charrnn.errors import UserError, option
from charrnn.inputs import as_specs, file_sha256

DEFAULT_NAME = "python-help"


def default_corpus() -> Path:
    """Write the embedded corpus into the cache once and return its path."""
    path = fsutil.cache_dir() / "corpora" / DEFAULT_NAME / "python-help.txt"
    if path.is_file():
        return path
    text = _pydoc_topics() or _stdlib_source()
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _pydoc_topics() -> str | None:
    try:
        from pydoc_data.topics import topics
    except ImportError:
        return None
    return "\n\n".join(topics[key].strip("\n") for key in sorted(topics)) + "\n"


def _stdlib_source(limit: int = 1_000_000) -> str:
    root = Path(sysconfig.get_paths()["stdlib"])
    parts, size = [], 0
    for path in sorted(root.glob("*.py")):
        try:
            text = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError):
            continue
        parts.append(text)
        size += len(text)
        if size >= limit:
            break
    if not parts:
        raise UserError("no embedded corpus is available (pydoc_data and the stdlib source are "
                        "both missing): give a corpus file")
    return "\n".join(parts)


def registry() -> dict:
    """The registry, from the installed package or the repository's corpora/ folder."""
    here = Path(__file__).resolve().parent
    for path in (here / "registry.json", here.parent / "corpora" / "registry.json"):
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
    raise UserError("the corpus registry (registry.json) is missing from this installation")


def lookup(name: str) -> dict:
    entries = registry()
    if name not in entries:
        raise UserError(f"unknown corpus {name!r}: `charrnn corpus list` shows {', '.join(entries)}")
    return entries[name]


def get(name: str, mirror: str | None = None, allow_unverified: bool = False) -> dict[str, Path]:
    """Fetch a registry corpus (mirror folder or network), verify, cache; return role → path."""
    entry = lookup(name)
    given = mirror is not None
    if given and not str(mirror).strip():  # (as an empty path elsewhere: not silently none)
        raise UserError(f"{option('mirror')} is empty: give the folder that holds the corpus "
                        f"files, or drop {option('mirror')} to download")
    mirror = mirror or os.environ.get("CHARRNN_MIRROR")
    if mirror:  # checked even when the cache has the files: a typo must not pass unnoticed
        mirror = os.path.expanduser(mirror)  # (`--mirror=~/m`: the shell left the ~)
        _check_mirror(mirror, option("mirror") if given else "CHARRNN_MIRROR")
    if allow_unverified and all(spec.get("sha256") for spec in entry["files"]):
        raise UserError(f"{option('allow_unverified')} does not apply: every file of corpus {name!r} has a "
                        "recorded sha256, which is checked; drop it")
    folder = fsutil.cache_folder("corpora") / name
    out: dict[str, Path] = {}
    for spec in entry["files"]:
        target = folder / spec["name"]
        expected = spec.get("sha256")
        if expected is None and not allow_unverified:
            raise UserError(f"corpus {name!r} has no sha256 in the registry yet: pass "
                            f"{option('allow_unverified')} to fetch it anyway (the hash seen is printed)")
        _fetch_checked(spec, target, mirror, f"{spec['name']} of corpus {name!r}")
        out[spec["role"]] = target
    return out


def unverified_hashes(name: str, paths: dict[str, Path]) -> dict[str, str]:
    """The sha256 of each fetched file of corpus `name` the registry records none for (what
    `--allow-unverified` promises to show, and what to record)."""
    return {spec["role"]: file_sha256(paths[spec["role"]]) for spec in lookup(name)["files"]
            if not spec.get("sha256") and spec["role"] in paths}


def _fetch_checked(spec: dict, target: Path, mirror: str | None, what: str) -> None:
    """`target` as the registry describes it: cached, or fetched and its sha256 checked."""
    expected = spec.get("sha256")
    if target.is_file() and (expected is None or file_sha256(target) == expected):
        return
    _fetch(spec, target, mirror)
    seen = file_sha256(target)
    if expected is not None and seen != expected:
        target.unlink()
        source = f"the mirror's copy in {mirror}" if mirror else "the download"
        raise UserError(f"{what} failed its sha256 check (expected {expected}, got {seen}); it "
                        f"was not used: {source} is not the registry's file; replace it")


def _check_mirror(mirror: str, where: str) -> None:
    if not Path(mirror).expanduser().is_dir():
        raise UserError(f"{where} {mirror} is not a folder: give the folder that holds the corpus "
                        "files, or leave it out to download")


def _fetch(spec: dict, target: Path, mirror: str | None) -> None:
    """The file fetched into the cache whole, or not at all: a write that fails (a full disk)
    names the cache file and leaves no partial copy behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f".{target.name}.tmp-{os.getpid()}")
    try:
        _fetch_to(spec, tmp, target, mirror)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if not _is_write_error(exc, tmp):  # a mirror file that cannot be read: its own words
            raise
        raise UserError(f"could not write {target}: {exc.strerror or exc} "
                        f"({fsutil.write_advice(exc, target)})") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    os.replace(tmp, target)


def _fetch_to(spec: dict, tmp: Path, target: Path, mirror: str | None) -> None:
    if "derive" in spec and not (mirror and (Path(mirror) / spec["name"]).is_file()):
        _derive(spec, target, tmp, mirror)
    elif mirror:
        for candidate in (Path(mirror) / spec["name"], Path(mirror) / spec.get("archive", "")):
            if candidate.is_file() and candidate.name:
                source = candidate
                break
        else:
            raise UserError(f"{spec['name']} is not in the mirror folder {mirror}: add it there or "
                            f"unset {option('mirror')} / CHARRNN_MIRROR to download")
        if source.name == spec["name"]:
            shutil.copyfile(source, tmp)
        else:
            _extract(source, spec["name"], tmp)
    else:
        _download(spec, tmp)


def _derive(spec: dict, target: Path, tmp: Path, mirror: str | None) -> None:
    """A file the registry makes from published sources (each fetched and sha256-checked first):
    `alternate_lines` takes the sources' non-empty lines in turn (CR dropped, each stripped), the
    longer one's rest at the end, and drops exact repeats (the first kept)."""
    if spec["derive"] != "alternate_lines":
        raise UserError(f"{spec['name']}: unknown derivation {spec['derive']!r} in the registry "
                        "(a newer charrnn may know it)")
    sources = []
    for source in spec["sources"]:
        path = target.with_name(source["name"])
        _fetch_checked(source, path, mirror, f"{source['name']} (a source of {spec['name']})")
        text = path.read_bytes().decode("utf-8").replace("\r", "")
        sources.append([line.strip() for line in text.split("\n") if line.strip()])
    lines: dict[str, None] = {}
    for row in range(max(map(len, sources))):
        for source in sources:
            if row < len(source):
                lines.setdefault(source[row], None)
    tmp.write_text("".join(f"{line}\n" for line in lines), encoding="utf-8")


def _download(spec: dict, tmp: Path) -> None:
    url = spec["url"]
    try:
        with tempfile.TemporaryDirectory() as scratch:
            fetched = Path(scratch) / "download"
            with urllib.request.urlopen(url, timeout=60) as response, open(fetched, "wb") as out:
                shutil.copyfileobj(response, out)
            if spec.get("archive"):
                _extract(fetched, spec["name"], tmp)
            else:
                shutil.move(fetched, tmp)
    except OSError as exc:
        if _is_write_error(exc, tmp):  # (a full disk is no download's fault: _fetch says it)
            raise
        raise UserError(f"could not download {url}: {exc}; use {option('mirror')} DIR with a local "
                        "copy") from exc


WRITE_ERRNOS = (*fsutil.DISK_FULL_ERRNOS, errno.EROFS)


def _is_write_error(exc: OSError, tmp: Path) -> bool:
    """A failure to write the cache's copy, not to read a source: a full or read-only disk
    (a copy may name its source even then), or an error that names the copy."""
    named = {str(f) for f in (exc.filename, exc.filename2) if f is not None}
    return exc.errno in WRITE_ERRNOS or str(tmp) in named


def _extract(archive: Path, member_name: str, tmp: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.namelist() if Path(m).name == member_name]
            if not members:
                raise UserError(f"{archive} holds no file named {member_name}")
            with zipped.open(members[0]) as source, open(tmp, "wb") as out:
                shutil.copyfileobj(source, out)
    except (zipfile.BadZipFile, zlib.error, EOFError) as exc:  # a damaged deflate stream too
        tmp.unlink(missing_ok=True)
        raise UserError(f"{archive} is not a valid zip archive ({exc}): get it again, or "
                        "replace the mirror's copy") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)  # (the partial file of a failed extraction)
        raise


def resolve_inputs(inputs: list[str], opts, mirror: str | None = None,
                   final: bool = False) -> list[str]:
    """Corpus arguments → paths: registry names become their files; no input is the embedded
    default corpus. Unless the options are `final` (a plan chose them: charrnn.plan), a registry
    corpus also sets `opts` (a PreprocessOptions) where they hold their defaults: its level, and
    its valid/test files as the splits."""
    if mirror is not None:
        _check_mirror(mirror, option("mirror"))
    inputs = as_specs(inputs)
    if not inputs:
        return [str(default_corpus())]
    found = _registry_files(inputs, mirror)
    if not final:
        given = opts.given()
        if found.levels and "level" not in given:
            opts.level = found.level()
        for split, frac in (("valid", "val_frac"), ("test", "test_frac")):
            if split in found.splits and not getattr(opts, split) and frac not in given:
                setattr(opts, split, found.splits[split])
    return found.paths


@dataclass
class RegistryFiles:
    """What the registry corpora among some inputs bring: the inputs as paths, each corpus's
    token level, and the first validation / test files named."""

    paths: list[str]
    levels: dict[str, str]
    splits: dict[str, list[str]]

    def level(self) -> str:
        """The one token level of the registry corpora (an error when they differ)."""
        if len(set(self.levels.values())) > 1:
            shown = ", ".join(f"{name} ({level})" for name, level in self.levels.items())
            raise UserError(f"these corpora have different token levels: {shown}; pass {option('level')}")
        return next(iter(self.levels.values()))


def names_registry(inputs: list[str]) -> bool:
    """Whether any input is a registry name (not a path that exists)."""
    names = registry()
    return any(not Path(spec).exists() and spec in names for spec in inputs)


def registry_files(inputs: list[str], mirror: str | None = None) -> RegistryFiles:
    if mirror is not None:
        _check_mirror(mirror, option("mirror"))
    return _registry_files(inputs, mirror)


def _registry_files(inputs: list[str], mirror: str | None) -> RegistryFiles:
    found = RegistryFiles([], {}, {})
    names = registry()
    for spec in inputs:
        if Path(spec).exists() or spec not in names:
            found.paths.append(spec)
            continue
        level = names[spec].get("level")
        if level == "tagging":  # labelled columns, not running text
            raise UserError(f"{spec} is a tagging corpus (labelled columns), not text for a "
                            f"language model: train a tagger with `charrnn tag train` on "
                            f"its files (`charrnn corpus get {spec}` prints their paths)")
        files = get(spec, mirror)
        found.paths.append(str(files["main"]))
        if level in ("char", "word", "subword"):  # the level `charrnn corpus list` shows
            found.levels[spec] = level
        for split in ("valid", "test"):
            if split in files:
                found.splits.setdefault(split, [str(files[split])])
    return found
