"""Reading user text: paths, directories and globs in; validated UTF-8 chunks out.

Everything downstream (tokenizer building, preprocessing, eval on a file) reads text through
`TextSource`, so every command reports bad input the same way: the file, the byte offset and
what to do about it. Files are streamed in chunks that end on a line boundary, so memory does not
grow with the corpus.
"""

from __future__ import annotations

import codecs
import glob
import hashlib
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from charrnn.errors import UserError, option

CHUNK_BYTES = 1 << 22  # 4 MiB of bytes per read: big enough for numpy, small for memory
# What to do about invalid UTF-8. Only commands with an --errors option may suggest it; the
# others get advice they can follow (callers pass the one that fits). Templates: {errors} is
# filled when the message is made, as `option` names it then (not at import).
CONVERT_UTF8 = "convert it to UTF-8 (e.g. iconv -f latin1 -t utf-8 {path} > {utf8})"
CONVERT_OR_REPLACE = CONVERT_UTF8 + ", or pass {errors} replace to go on"
TEXT_SUFFIXES_SKIPPED = {".bin", ".npy", ".safetensors", ".pt", ".pth", ".zip", ".gz", ".bz2"}


def as_specs(inputs: Iterable[str | Path] | str | Path) -> list[str]:
    """A library caller's inputs as the command line gives them: one path alone is a list of
    one (a "corpus.txt" is not 10 one-letter paths), a Path its string."""
    return [str(inputs)] if isinstance(inputs, (str, Path)) else [str(i) for i in inputs]


def expand_inputs(specs: Iterable[str | Path] | str | Path) -> list[Path]:
    """Turn files, directories and glob patterns into a sorted, de-duplicated list of files
    (one path alone is a list of one: a library call's "corpus.txt" is not 10 one-letter paths)."""
    files: list[Path] = []
    for spec in as_specs(specs):
        refuse_empty(spec)
        refuse_stdin(spec)
        path = Path(spec).expanduser()
        if any(ch in spec for ch in "*?[") and not path.exists():  # (a file named so: itself)
            matched = sorted(Path(p) for p in glob.glob(str(path), recursive=True))
            matched = [p for p in matched if p.is_file()]
            if not matched:
                raise UserError(f"no files match {spec!r}: check the pattern (quote it in the shell)")
            files += matched
        elif path.is_dir():
            found = _text_files_below(path)
            if not found:
                raise UserError(f"directory {spec} holds no text files: "
                                "point at a file or a folder of .txt files")
            _refuse_runs(found)
            files += found
        elif path.is_file():
            files.append(path)
        elif path.exists():
            raise UserError(f"{spec} is not a regular file or directory")
        else:
            raise UserError(f"{spec} does not exist: check the path")
    unique: dict[Path, None] = {}
    for f in files:
        unique.setdefault(f.resolve(), None)
    return list(unique)


def refuse_empty(spec: str, named: str = "") -> None:
    """An empty path is no path: `Path("")` is the current folder, which would be read whole.
    (`named`: the option that gave it and a space, as charrnn.errors.option names it.)"""
    if not spec.strip():
        raise UserError(f"{named}{spec!r} is an empty path: name a file or folder, e.g. "
                        "corpus.txt")


def refuse_stdin(spec: str, named: str = "") -> None:
    """'-' where only files are read (the commands that read standard input handle it first;
    `named`: the option that gave it and a space)."""
    if spec == "-" and not Path(spec).exists():
        raise UserError(f"{named}'-': this reads files, not standard input: save the text to a "
                        "file and give its path")


def _refuse_runs(found: list[Path]) -> None:
    """A folder of runs (a runs root, or a corpus folder holding ./checkpoints) read as text
    would train on their JSON and metrics: say which run it holds instead."""
    run = next((p.parent for p in found if p.name == "run.json"), None)
    if run is not None:
        raise UserError(f"{run} is a run folder inside the input (its run.json and metrics are no "
                        "corpus): give the text files only, or move the runs folder out")


def _text_files_below(folder: Path) -> list[Path]:
    """Files under `folder`, sorted, leaving out every hidden file and hidden folder below it
    (.git/, .venv/, ...: never corpus text); `folder` itself may be hidden."""
    found, seen = [], set()
    for parent, dirs, names in os.walk(folder, followlinks=True):  # a linked folder is read
        real = os.path.realpath(parent)  # as the folder itself is: once (a loop ends here)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)  # (sorted: which of a link and its target claims the files is then the
        # same on every file system, and with it the order, and the split tails)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # never walk into .git/
        for name in names:
            p = Path(parent) / name
            if (not name.startswith(".") and p.suffix.lower() not in TEXT_SUFFIXES_SKIPPED
                    and p.is_file()):
                found.append(p)
    return sorted(found)


@dataclass
class TextSource:
    """One or more UTF-8 files read as a single text stream.

    Files are joined with a newline when one does not already end with one, so that the last line
    of a file never runs into the first line of the next.
    """

    files: list[Path]
    errors: str = "strict"  # or "replace": invalid bytes become U+FFFD
    fix: str = CONVERT_UTF8  # the advice on invalid UTF-8 ({path}: the file, {utf8}: a new name)

    def __post_init__(self) -> None:
        if self.errors not in ("strict", "replace"):
            raise UserError(f"{option('errors')} must be 'strict' or 'replace', not {self.errors!r}")

    def chunks(self) -> Iterator[str]:
        """Yield decoded text in chunks that end at a line break (or whitespace) where possible."""
        carry = ""
        for index, path in enumerate(self.files):
            last_char = ""
            for piece in self._decode_file(path):
                if not piece:
                    continue
                last_char = piece[-1]
                text = carry + piece
                cut = text.rfind("\n") + 1
                if cut == 0 and len(text) > CHUNK_BYTES:
                    cut = max(text.rfind(" "), text.rfind("\t")) + 1 or len(text)
                if cut:
                    yield text[:cut]
                carry = text[cut:]
            if index < len(self.files) - 1 and last_char and last_char != "\n":
                carry += "\n"
        if carry:
            yield carry

    def _decode_file(self, path: Path) -> Iterator[str]:
        decoder = codecs.getincrementaldecoder("utf-8")(errors=self.errors)
        offset = 0
        try:
            handle = open(path, "rb")
        except OSError as exc:
            raise UserError(f"cannot read {path}: {exc.strerror}") from exc
        with handle:
            first = True
            while True:
                block = handle.read(CHUNK_BYTES)
                if first:
                    refuse_binary(path, block)
                    if block.startswith(codecs.BOM_UTF8):
                        block = block[len(codecs.BOM_UTF8):]
                        offset += len(codecs.BOM_UTF8)
                    first = False
                final = not block
                held = len(decoder.getstate()[0])  # bytes of a character the last block began
                try:
                    yield decoder.decode(block, final)
                except UnicodeDecodeError as exc:
                    raise self._not_utf8(path, offset - held + exc.start,
                                         final and exc.reason == "unexpected end of data") from exc
                if final:
                    return
                offset += len(block)

    def _not_utf8(self, path: Path, at: int, cut_short: bool) -> UserError:
        """Invalid UTF-8 at byte `at`; `cut_short`: a character the file's end cuts in two (as
        `head -c` leaves one), where converting from latin1 would garble the whole text."""
        fix = self.fix.format(path=path, utf8=f"{path.stem}.utf8{path.suffix}",
                              errors=option("errors"))
        if cut_short:  # (or a last character of another encoding: é is a UTF-8 lead byte too)
            fix = f"the file ends inside a character (cut short, as by head -c?): drop its "\
                  f"partial last line; if the file is not UTF-8 at all, {fix}"
        return UserError(f"{path}: invalid UTF-8 at byte offset {at}: {fix}")

    def text(self) -> str:
        """The whole text in memory: only for small inputs (prime files, eval files)."""
        return "".join(self.chunks())

    def sha256(self) -> str:
        """A content hash over all files, in order, each followed by a separator: the cache key of
        preprocessed datasets. Not a file's sha256 (that is `file_sha256`)."""
        digest = hashlib.sha256()
        for path in self.files:
            with open(path, "rb") as handle:
                while block := handle.read(CHUNK_BYTES):
                    digest.update(block)
            digest.update(b"\0file\0")
        return digest.hexdigest()


class SameText:
    """Which of some files another file is: the same file (a path, a link) or a copy of it (the
    same bytes). Each file is hashed at most once, and only where a size matches; empty files
    match nothing (an empty notes.txt on both sides is no leak)."""

    def __init__(self, files: Iterable[Path]) -> None:
        self.by_inode: dict[tuple[int, int], Path] = {}
        self.by_size: dict[int, list[Path]] = {}
        for f in files:
            st = os.stat(f)
            self.by_inode[(st.st_dev, st.st_ino)] = f
            self.by_size.setdefault(st.st_size, []).append(f)
        self.digests: dict[Path, str] = {}

    def match(self, path: Path) -> Path | None:
        st = os.stat(path)
        if (st.st_dev, st.st_ino) in self.by_inode:
            return self.by_inode[(st.st_dev, st.st_ino)]
        if st.st_size == 0 or st.st_size not in self.by_size:
            return None
        digest = file_sha256(path)
        for f in self.by_size[st.st_size]:
            if self.digests.setdefault(f, file_sha256(f)) == digest:
                return f
        return None


def file_sha256(path: Path) -> str:
    """The sha256 of a file's bytes, as `sha256sum` prints it."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(CHUNK_BYTES):
            digest.update(block)
    return digest.hexdigest()


def refuse_binary(path: Path, head: bytes) -> None:
    """A NUL byte in the first block means this is not text (UTF-8 text never contains NUL)."""
    for mark, encoding in ((b"\xff\xfe\x00\x00", "UTF-32"), (b"\x00\x00\xfe\xff", "UTF-32"),
                           (b"\xff\xfe", "UTF-16"), (b"\xfe\xff", "UTF-16")):  # byte order marks
        if head.startswith(mark):  # (UTF-16 is what Windows calls "Unicode")
            raise UserError(f"{path} is {encoding} text, not UTF-8: convert it first (iconv -f "
                            f"{encoding} -t UTF-8)")
    if b"\0" in head[:8192]:
        kind = "a pickle/torch file" if head[:1] == b"\x80" or head[:4] == b"PK\x03\x04" else "binary data"
        raise UserError(f"{path} looks like {kind}, not UTF-8 text: give a text corpus")


def read_text(specs: Iterable[str], errors: str = "strict", fix: str = CONVERT_UTF8) -> str:
    """Read small inputs whole (used for prime files and eval files). `fix` is the advice on
    invalid UTF-8: CONVERT_OR_REPLACE from a command that has --errors, else CONVERT_UTF8. A
    dataset folder is no text (its meta.json would be read as some)."""
    specs = list(specs)
    refuse_datasets(specs)
    return TextSource(expand_inputs(specs), errors, fix).text()


def refuse_datasets(specs: Iterable[str], named: str = "", advice: str = "give a text file"
                    ) -> None:
    """A dataset folder given as text would be read as its meta.json: say what it is instead
    (`named`: the option that gave it and a space, as charrnn.errors.option names it; `advice`
    may name the folder as {spec})."""
    for spec in specs:
        if is_built_dataset(Path(spec).expanduser()):
            raise UserError(f"{named}{spec} is a preprocessed dataset (meta.json, train.bin), "
                            f"not text: {advice.format(spec=spec)}")


def read_each(spec: str, errors: str = "strict", fix: str = CONVERT_UTF8
              ) -> list[tuple[str, str]]:
    """(name, text) of each file `spec` names, read whole and apart (a format whose records must
    not run from one file into the next: CoNLL sentences); "-" is standard input."""
    if spec == "-":
        return [("<stdin>", read_stdin(errors, can_replace=fix == CONVERT_OR_REPLACE))]
    refuse_datasets([spec])
    return [(str(path), TextSource([path], errors, fix).text()) for path in expand_inputs([spec])]


def is_built_dataset(folder: Path) -> bool:
    """A folder `charrnn preprocess` made (its ids, not text)."""
    return (folder / "meta.json").is_file() and (folder / "train.bin").is_file()


def stdin_bytes():
    """Standard input as a binary stream; closed (`<&-`: Python's None), one clear error."""
    if sys.stdin is None:
        raise UserError("standard input is closed: give a FILE, or redirect one in (< FILE)")
    return sys.stdin.buffer


def read_stdin(errors: str = "strict", can_replace: bool = False) -> str:
    """Standard input as UTF-8 text, refused like a file when it is binary or not UTF-8.
    `can_replace`: the calling command has --errors, so the message may suggest it."""
    data = stdin_bytes().read()
    refuse_binary(Path("<stdin>"), data)
    try:
        return data.decode("utf-8", errors=errors).removeprefix("\ufeff")
    except UnicodeDecodeError as exc:
        advice = f", or pass {option('errors')} replace to go on" if can_replace else \
            " (e.g. through iconv)"
        raise UserError(f"<stdin>: invalid UTF-8 at byte offset {exc.start}: send UTF-8 "
                        f"text{advice}") from exc
