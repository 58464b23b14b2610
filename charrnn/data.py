"""Preprocess text into token ids on disk, and read them back through numpy.memmap.

A dataset is a folder:

    meta.json    tokenizer, split sizes (tokens and characters), source hashes, split rule
    train.bin    flat token ids, the smallest unsigned dtype that fits the vocabulary
    val.bin      (contiguous tail of the corpus, or the --valid files)
    test.bin     (contiguous tail after val, or the --test files)

The corpus is read three times as a stream (count characters, build the vocabulary, encode), so
peak memory is a few chunks plus the vocabulary, whatever the corpus size. Splits are cut by
character position, as nanoGPT cuts tiny Shakespeare 90/10; word and subword cuts move forward to
the next line break so that no word is split, or where none comes soon (one long line: text8), to
the next whitespace; a split that was asked for is never left empty (the cuts: splits.py).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Iterable, Iterator
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import numpy as np

from charrnn import fsutil
from charrnn.configs import check_types
from charrnn.errors import UserError, option
from charrnn.inputs import CONVERT_OR_REPLACE, as_specs, refuse_datasets
from charrnn.splits import SPLITS, SplitPlan
from charrnn.tokenizers import (
    CharTokenizer,
    SubwordTokenizer,
    Tokenizer,
    VocabTooSmall,
    WordTokenizer,
    skipped_chars,
    tokenizer_from_json,
)

FORMAT, VERSION = "charrnn-dataset", 1
MAX_SUBWORDS = 10**7  # pieces: more than any text makes, far below sentencepiece's int32
LEVELS = ("char", "word", "subword")

# The tokenizer options each level reads (a typed one of another level is refused by the plan).
LEVEL_OPTIONS = {"char": ("lower",), "word": ("lower", "pattern", "min_count", "max_vocab"),
                 "subword": ("vocab_size", "subword_model")}


def levels_reading(name: str) -> list[str]:
    """The levels whose tokenizer reads a preprocess option ([] for one every level reads)."""
    return [level for level, keys in LEVEL_OPTIONS.items() if name in keys]


@dataclass
class PreprocessOptions:
    level: str = "char"
    lower: bool = False
    val_frac: float = 0.05
    test_frac: float = 0.05
    valid: list[str] = field(default_factory=list)
    test: list[str] = field(default_factory=list)
    errors: str = "strict"
    pattern: str | None = None  # word level: regex of a token; None = whitespace split
    min_count: int = 1
    max_vocab: int | None = None
    vocab_size: int = 2000  # subword level
    subword_model: str = "bpe"
    # Subword level: the vocab_size was asked for (made exactly or refused); the default's fits
    # the text (a command line's plan sets it from what was typed; a value other than the
    # default is asked for whatever this says).
    exact_vocab: bool = False

    def given(self) -> set[str]:
        """The options set to other than their defaults: a dataset folder must obey them or
        refuse them (and a registry corpus fills in the others), when the library is called
        directly; a command line's plan decides by what was typed (charrnn.plan.preprocess)."""
        default = PreprocessOptions()
        return {f.name for f in fields(self) if f.name != "exact_vocab"
                and getattr(self, f.name) != getattr(default, f.name)}

    def as_json(self) -> dict:
        """The options as recorded in meta.json."""
        return asdict(self)

    @classmethod
    def of_dataset(cls, dataset: Dataset) -> PreprocessOptions:
        """The options a dataset folder was made with."""
        names = {f.name for f in fields(cls)}
        saved = {k: v for k, v in dataset.meta.get("options", {}).items() if k in names}
        return cls(**{**saved, "level": dataset.tokenizer.level})

    def validate(self, level_final: bool = True) -> None:
        """The values, each and together; `level_final`: the level is the one the text is read
        at, so another level's option set is refused (a plan checks before a registry corpus or
        a dataset folder has said the level)."""
        check_types(self)
        if self.level not in LEVELS:
            raise UserError(f"{option('level')} must be one of {', '.join(LEVELS)}, not {self.level!r}")
        for name, frac in ((option("val_frac"), self.val_frac), (option("test_frac"), self.test_frac)):
            if not 0 <= frac < 1:
                raise UserError(f"{name} must be in [0, 1), got {frac}")
        if self.val_frac + self.test_frac >= 1:
            raise UserError(f"{option('val_frac')} + {option('test_frac')} must leave some text for training")
        if self.min_count < 1:
            raise UserError(f"{option('min_count')} must be ≥ 1, got {self.min_count}")
        if self.vocab_size > MAX_SUBWORDS:  # (sentencepiece reads an int32)
            raise UserError(f"{option('vocab_size')} must be at most {MAX_SUBWORDS:,}, got "
                            f"{self.vocab_size:,}")
        if self.max_vocab is not None and self.max_vocab < 3:
            raise UserError(f"{option('max_vocab')} must be ≥ 3, got {self.max_vocab}")
        if self.pattern == "":  # (it would be recorded as '' and read as the whitespace split)
            raise UserError(f"{option('pattern')} '' matches no token: drop {option('pattern')} to "
                            "split words at whitespace, or give a regex such as '\\w+'")
        given = self.given()
        for files, frac, split in (("valid", "val_frac", "validation"), ("test", "test_frac", "test")):
            if getattr(self, files) and frac in given:  # the file wins: the fraction would be ignored
                raise UserError(f"{option(frac)} does not apply with {option(files)}: the "
                                f"{split} split is the {option(files)} file; drop one of the two")
        if level_final:
            refuse_other_levels(self.level, given)  # recorded, and unread

    def tokenizer_options(self) -> dict:
        """The options that change what the ids mean (part of the cache key)."""
        key = {"level": self.level, **{k: getattr(self, k) for k in LEVEL_OPTIONS[self.level]}}
        if self.level == "word" and self.pattern:  # counted at \n as encoded (the datasets of
            key["lines"] = "lf"  # before counted at splitlines(): a new id, not theirs reused)
        return key


def refuse_other_levels(level: str, names: Iterable[str]) -> None:
    """An option a level's tokenizer does not read (--max-vocab at char level), set or typed:
    it would be ignored, so it is an error naming the levels that read it."""
    for name in sorted(names):
        readers = levels_reading(name)
        if readers and level not in readers:
            raise UserError(f"{option(name)} applies at {' and '.join(readers)} "
                            f"level, and this text is read at {level} level: drop it, or give "
                            f"{option('level')} {readers[0]}")


def smallest_dtype(vocab_size: int) -> np.dtype:
    for dtype in (np.uint8, np.uint16, np.uint32):
        if vocab_size <= np.iinfo(dtype).max + 1:
            return np.dtype(dtype)
    raise UserError(f"vocabulary of {vocab_size} tokens is too large")


class Dataset:
    """A preprocessed dataset folder; splits are memory-mapped, never read whole."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)
        self.meta = fsutil.read_json(self.root / "meta.json", f"dataset {self.root}")
        if self.meta.get("format") != FORMAT:
            raise UserError(f"{self.root} is not a charrnn dataset (meta.json format is "
                            f"{self.meta.get('format')!r}): run charrnn preprocess")
        if self.meta.get("version") != VERSION:
            raise UserError(f"{self.root} is dataset version {self.meta.get('version')}, this "
                            f"charrnn reads version {VERSION}: preprocess the corpus again")
        try:
            self.tokenizer: Tokenizer = tokenizer_from_json(self.meta["tokenizer"],
                                                            str(self.root / "meta.json"))
            self.dtype = np.dtype(self.meta["dtype"])
            for split in SPLITS:
                int(self.meta["splits"][split]["tokens"]), int(self.meta["splits"][split]["chars"])
            str(self.meta["id"])
        except (KeyError, TypeError, ValueError) as exc:
            what = f"no {exc}" if isinstance(exc, KeyError) else str(exc)
            raise UserError(f"{self.root}/meta.json is damaged ({what}): the dataset is corrupt; "
                            "preprocess the corpus again") from exc
        self._checked: set[str] = set()

    @property
    def id(self) -> str:
        return self.meta["id"]

    def tokens(self, split: str) -> int:
        return int(self.meta["splits"][split]["tokens"])

    def chars(self, split: str) -> int:
        return int(self.meta["splits"][split]["chars"])

    def skipped_chars(self, split: str) -> int:
        """Characters of the split's text that `--unk skip` left out of its ids."""
        return int(self.meta["splits"][split].get("skipped_chars", 0))

    def counted_chars(self, split: str) -> int:
        """The characters its ids stand for: what bits per character divides by."""
        return self.chars(split) - self.skipped_chars(split)

    def ids(self, split: str) -> np.ndarray:
        """The split's token ids as a read-only memmap (an empty array for an empty split)."""
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}: choose train, val or test")
        count = self.tokens(split)
        if count == 0:
            return np.zeros(0, dtype=self.dtype)
        path = self.check_size(split)
        ids = np.memmap(path, dtype=self.dtype, mode="r", shape=(count,))
        if split not in self._checked:  # one pass, once: the models index tables with these
            top = int(ids.max())
            if top >= self.tokenizer.vocab_size:
                raise UserError(f"{path} holds token id {top}, past the vocabulary's "
                                f"{self.tokenizer.vocab_size}: the dataset is damaged; "
                                f"{self._remedy(sizes_right=True)}")
            self._checked.add(split)
        return ids

    def check_size(self, split: str) -> Path:
        """The split's ids file, refused where it is missing or not as long as meta.json says."""
        path, wanted = self.root / f"{split}.bin", self.tokens(split) * self.dtype.itemsize
        if wanted and not path.is_file():
            raise UserError(f"{path} is missing: the dataset is incomplete; {self._remedy()}")
        size = path.stat().st_size if wanted else 0
        if size != wanted:
            raise UserError(f"{path} has {size:,} bytes, {wanted:,} expected: the dataset is "
                            f"{'cut short' if size < wanted else 'damaged'}; {self._remedy()}")
        return path

    def _remedy(self, sizes_right: bool = False) -> str:
        """How a damaged dataset is made whole: a cached one is made again from its text by
        any command given the text, where its sizes show the damage (a cache hit checks sizes
        only, never every id), else once it is deleted; a `preprocess --out` folder by that."""
        if self.root.resolve().parent != (fsutil.cache_dir() / "datasets").resolve():
            return "preprocess the corpus into it again"
        if sizes_right:
            return f"delete {self.root}, then give the command its text again (it is made again)"
        return ("give the command its text again (a cached dataset is made again from it), "
                f"or delete {self.root}")


def _exact_as_asked(dataset: Dataset, opts: PreprocessOptions) -> Dataset:
    """A cached subword dataset made at the default size fitted to the text is not one asked for
    at that size (made exactly or refused): the same key, another promise."""
    made = dataset.tokenizer.vocab_size
    if opts.level == "subword" and opts.exact_vocab and made != opts.vocab_size:
        raise UserError(f"{option('vocab_size')} {opts.vocab_size} cannot be made exactly for this text "
                        f"(the default size fitted to it makes {made:,} pieces): pass "
                        f"{option('vocab_size')} {made}, or drop {option('vocab_size')}")
    return dataset


def _build_tokenizer(opts: PreprocessOptions, train_text: Callable[[], Iterator[str]]
                     ) -> Tokenizer:
    if opts.level == "char":
        return CharTokenizer.build(train_text(), opts.lower)
    if opts.level == "word":
        return WordTokenizer.build(train_text(), opts.pattern, opts.lower, opts.min_count,
                                   opts.max_vocab)
    model = opts.subword_model
    if opts.exact_vocab or opts.vocab_size != PreprocessOptions.vocab_size:
        return SubwordTokenizer.train(train_text(), opts.vocab_size, model, exact=True)
    # The default fits the text: it shrinks to what a small text makes, and grows to what the
    # characters of a large alphabet need (everyday Chinese: about 4,300).
    try:
        return SubwordTokenizer.train(train_text(), opts.vocab_size, model, exact=False)
    except VocabTooSmall as exc:
        return SubwordTokenizer.train(train_text(), exc.least, model, exact=False)


@dataclass
class GivenTokenizer:
    """Preprocess with a tokenizer made from another one (fine-tuning: the parent run's), not
    learnt from the text: `build(vocabulary text)` makes it, `key` names it in the cache key,
    `unknown` is how text it lacks is encoded (map to <unk>, skip)."""

    build: object  # Callable[[Iterator[str]], Tokenizer]
    key: dict
    unknown: str = "map"


def dataset_id(plan: SplitPlan, given: GivenTokenizer | None = None) -> str:
    opts = plan.opts
    key = {"content": plan.content_hash(), "tokenizer": opts.tokenizer_options(),
           "rule": plan.rule, "errors": opts.errors, "version": VERSION}
    if given is not None:
        key["tokenizer"] = given.key
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def preprocess(inputs: list[str], out: Path | None, opts: PreprocessOptions,
               given: GivenTokenizer | None = None) -> Dataset:
    """Stream `inputs` into a dataset folder (`out`, or the cache keyed by content + options)."""
    opts.validate()
    plan = SplitPlan(as_specs(inputs), opts)
    if out is not None:
        _check_out(Path(out), plan)
    ident = dataset_id(plan, given)
    if out is None:
        out = fsutil.cache_folder("datasets") / ident
        fsutil.recover_dir(out)
        cached = _whole_dataset(out)
        if cached is not None:
            return _exact_as_asked(cached, opts)
    out = Path(out)
    tokenizer = (given.build(plan.vocabulary_text()) if given is not None
                 else _build_tokenizer(opts, plan.vocabulary_text))
    unknown = given.unknown if given is not None else "map"
    dtype = smallest_dtype(tokenizer.vocab_size)
    counts = {name: {"tokens": 0, "chars": 0, "skipped_chars": 0} for name in SPLITS}
    with fsutil.atomic_dir(out) as tmp:
        handles = {name: open(tmp / f"{name}.bin", "wb") for name in SPLITS}
        try:
            for split, text in plan.pieces():
                ids = tokenizer.encode(text, unknown=unknown)
                handles[split].write(ids.astype(dtype).tobytes())
                counts[split]["tokens"] += len(ids)
                counts[split]["chars"] += len(text)
                if unknown == "skip":
                    counts[split]["skipped_chars"] += skipped_chars(tokenizer, text, ids)
        finally:
            for handle in handles.values():
                handle.close()
        _refuse_empty_splits(plan, counts)  # inside atomic_dir: nothing is written
        meta = {"format": FORMAT, "version": VERSION, "id": ident, "dtype": dtype.name,
                "tokenizer": tokenizer.to_json(), "vocab_size": tokenizer.vocab_size,
                "splits": counts, "split_rule": plan.rule, "sources": plan.sources(),
                "options": opts.as_json(),
                **({"given_tokenizer": given.key} if given is not None else {})}
        fsutil.write_json_atomic(tmp / "meta.json", meta)
    _remember(ident, out)
    return Dataset(out)


def _whole_dataset(folder: Path) -> Dataset | None:
    """The cached dataset in `folder` if it is whole (its meta.json readable, each split's ids
    as long as it says); None where there is none or it is damaged: the text is at hand, so it
    is made again rather than refused."""
    if not (folder / "meta.json").exists():
        return None
    try:
        dataset = Dataset(folder)
        for split in SPLITS:
            dataset.check_size(split)
    except UserError:
        return None
    return dataset


def refuse_dataset_as_text(file: str) -> None:
    """A FILE to score that is a dataset folder: its meta.json would be scored as text."""
    refuse_datasets([file], "", f"score a run on the splits of its own with {option('split')} (default "
                     "test), or give a text file")


def _check_out(out: Path, plan: SplitPlan) -> None:
    """--out must be a folder that holds no input and lies in no input folder: the dataset
    replaces it whole, and a dataset among the inputs would be read as text next time."""
    _refuse_impossible_path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"{option('out')} {out} is an existing file, not a folder: a dataset is a folder "
                        "(meta.json, train.bin, ...); give a new or empty folder (nothing was "
                        "written)")
    target = out.expanduser().resolve()
    for path in plan.files():
        if path == target or target in path.parents:
            raise UserError(f"{option('out')} {out} holds the input {path}: the dataset would replace its "
                            f"own text; give another {option('out')} folder (nothing was written)")
    for spec in plan.specs:
        folder = Path(spec).expanduser()
        if folder.is_dir() and folder.resolve() in target.parents:
            raise UserError(f"{option('out')} {out} is inside the input folder {spec}: the dataset would "
                            f"be read as text the next time; give an {option('out')} folder outside it")
    if out.exists():
        _refuse_foreign_files(out)


NAME_MAX = 255  # bytes of one file or folder name on Linux and macOS (Windows: UTF-16 units)


def _refuse_impossible_path(out: Path) -> None:
    """An --out no folder can be made at, said as such (it was 'cannot create x: File exists',
    and 'File name too long (xxxx…)', naming no option)."""
    longest = max((len(part.encode("utf-8", "surrogateescape")) for part in Path(out).parts),
                  default=0)
    if longest > NAME_MAX:
        raise UserError(f"{option('out')} {str(out)[:40]}…: a name in it is {longest} bytes, "
                        f"more than file systems allow ({NAME_MAX}); give a shorter one")
    for parent in Path(out).expanduser().parents:
        if parent.exists() and not parent.is_dir():
            raise UserError(f"{option('out')} {out}: {parent} is a file, not a folder; give a "
                            "path through folders (nothing was written)")


DATASET_FILES = frozenset({"meta.json", *(f"{split}.bin" for split in SPLITS)})


def _refuse_foreign_files(out: Path) -> None:
    """The dataset replaces --out whole: only an earlier dataset (its meta.json says so, and the
    folder holds nothing else) may go; a project that merely has a meta.json must not."""
    others = sorted(entry.name for entry in out.iterdir() if entry.name not in DATASET_FILES)
    if others:
        shown = ", ".join(others[:3]) + (f" and {len(others) - 3} more" if len(others) > 3 else "")
        raise UserError(f"{option('out')} {out} holds files that are not a charrnn dataset's ({shown}): "
                        f"choose an empty or new {option('out')} folder (nothing was written)")
    if any(out.iterdir()) and not _is_dataset_meta(out / "meta.json"):
        raise UserError(f"{option('out')} {out} exists and is not a charrnn dataset (its meta.json is "
                        f"missing or another program's): choose an empty or new {option('out')} folder "
                        "(nothing was written)")


def _is_dataset_meta(path: Path) -> bool:
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(meta, dict) and meta.get("format") == FORMAT


def _refuse_empty_splits(plan: SplitPlan, counts: dict) -> None:
    """A split the user asked for that holds no token would silently never be evaluated."""
    pattern = f" (or a {option('pattern')} that matches its text)" if plan.opts.pattern else ""
    for split in SPLITS:
        if plan.asked(split) and counts[split]["tokens"] == 0:
            # The train split is what the fractions leave: smaller ones give it more.
            fractions = ("smaller val/test fractions" if split == "train" else
                         f"a larger fraction or a separate {option('valid')} / {option('test')} "
                         "file")
            raise UserError(f"the {split} split came out empty ({counts[split]['chars']:,} "
                            f"characters, no {plan.opts.level} token): give more text, "
                            f"{fractions}{pattern}")


def _index_path() -> Path:
    return fsutil.cache_dir() / "datasets" / "index.json"


def _remember(ident: str, folder: Path) -> None:
    """Record where a dataset with this id lives, so a run can find its splits again by id."""
    path = _index_path()
    index = {}
    if path.exists():
        try:
            index = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            index = {}
    index[ident] = str(Path(folder).resolve())
    try:  # a read-only cache: the dataset is written all the same, and found by its folder
        path.parent.mkdir(parents=True, exist_ok=True)
        fsutil.write_json_atomic(path, index)
    except (OSError, UserError):  # (write_json_atomic says its OSError as a UserError)
        pass


def remaking(dataset: Dataset) -> dict:
    """What a run's checkpoint records of its dataset to make it again from its corpus (a resume
    given the corpus): the options, and a fine-tune's tokenizer key."""
    return {k: dataset.meta[k] for k in ("options", "given_tokenizer") if k in dataset.meta}


def _indexed_folder(ident: str) -> Path | None:
    """The dataset folder the local index records for this id (preprocess --out), if any."""
    try:
        index = json.loads(_index_path().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return Path(index[ident]) if isinstance(index, dict) and isinstance(index.get(ident), str) \
        else None


def dataset_gone(ident: str, instead: str) -> UserError:
    """The error for a run whose dataset cannot be found: where it was, and what to do
    (`instead`). A dataset folder written over by another preprocess is said as such."""
    folder = _indexed_folder(ident)
    if folder is None:
        where = "is not in the cache any more"
    elif (folder / "meta.json").exists():
        where = f"was the folder {folder}, which another preprocess has written over since"
    else:
        where = f"was the folder {folder}, which is gone"
    return UserError(f"the dataset this run was trained on ({ident}) {where}: {instead}")


def find_dataset(ident: str) -> Dataset | None:
    """Look a dataset up by id in the cache and the local index (never by a stored path)."""
    if not ident or not all(c in "0123456789abcdef" for c in ident):
        return None
    candidates = [fsutil.cache_dir() / "datasets" / ident]
    indexed = _indexed_folder(ident)
    if indexed is not None:
        candidates.append(indexed)
    for folder in candidates:
        if (folder / "meta.json").exists():
            try:
                dataset = Dataset(folder)
            except UserError:
                continue
            if dataset.id == ident:
                return dataset
    return None


def is_dataset_dir(path: str | Path) -> bool:
    return (Path(path) / "meta.json").is_file()


def prepare(inputs: list[str], opts: PreprocessOptions,
            given: GivenTokenizer | None = None) -> Dataset:
    """What `train` and `ngram train` call: a dataset folder as is, or raw text via the cache."""
    inputs = as_specs(inputs)
    if len(inputs) == 1 and is_dataset_dir(inputs[0]):
        if given is not None:
            raise UserError(f"{inputs[0]} is a preprocessed dataset with a tokenizer of its own: "
                            "to fine-tune, give the text files (they are read with the run's)")
        dataset = Dataset(Path(inputs[0]))
        refuse_options(inputs[0], dataset, opts)
        return dataset
    return preprocess(inputs, None, opts, given)


def _given(name: str, value) -> str:
    """An option with its value, as a message names it (`option`): `--level word`, `no --pattern`."""
    named = option(name)
    if value is None:
        return f"no {named}"
    if isinstance(value, bool):
        return named if value else f"no {named}"
    if isinstance(value, list):
        return " ".join(f"{named} {v}" for v in value) or f"no {named}"
    return f"{named} {value}"


def refuse_options(folder: str, dataset: Dataset, opts: PreprocessOptions,
                   names: set[str] | frozenset[str] | None = None) -> None:
    """A dataset folder is used as it is: a preprocess option asked for (`names`; by default the
    ones set to other than their defaults) that it was not made with would be silently ignored,
    so it is an error naming what the dataset has instead."""
    saved = {**dataset.meta.get("options", {}), "level": dataset.tokenizer.level}
    if dataset.tokenizer.level == "subword":  # the size made (the default's fits the text)
        saved["vocab_size"] = dataset.tokenizer.vocab_size
    asked = opts.given() if names is None else names
    clashes = [name for name in sorted(asked) if getattr(opts, name) != saved.get(name)]
    level = dataset.tokenizer.level
    # Asked for, even at the value saved (every option is saved, other levels' at their
    # defaults): preprocessing again would not read it either (--vocab-size at char level).
    unread = [n for n in sorted(asked) if levels_reading(n) and level not in levels_reading(n)]
    if unread:
        name = unread[0]
        raise UserError(f"{folder} is a preprocessed {level}-level dataset, and "
                        f"{option(name)} applies at "
                        f"{' and '.join(levels_reading(name))} level: drop it")
    for frac, files in (("val_frac", "valid"), ("test_frac", "test")):
        if frac in asked and saved.get(files):  # (it said 'made with --val-frac 0.05', the
            raise UserError(  # default recorded beside the file, and advised that fraction)
                f"{folder} was made with {option(files)} {', '.join(map(str, saved[files]))}: "
                f"that file is its split, and {option(frac)} does not apply; drop it")
    if clashes:
        given = "; ".join(f"{_given(n, getattr(opts, n))} does not apply (it was made with "
                          f"{_given(n, saved.get(n))})" for n in clashes)
        again = " ".join(_given(n, getattr(opts, n)) for n in clashes)
        raise UserError(f"{folder} is a preprocessed {dataset.tokenizer.level}-level dataset: "
                        f"{given}; preprocess the text again with {again}, or drop "
                        f"{'it' if len(clashes) == 1 else 'them'}")


def scoring_text(tokenizer, dataset_id: str, file: str | None, split: str | None,
                 unknown: str, errors: str, again: str,
                 fix: str = CONVERT_OR_REPLACE) -> tuple[np.ndarray, int, str, int]:
    """What `eval` scores a model on: (ids, characters, source, characters skipped by --unk
    skip) of FILE, or of a split (default test) of the dataset the model was trained on, looked
    up by id. `again` is the command that scores a FILE instead, for the message when that
    dataset is gone; `fix` the advice on invalid UTF-8 (inputs.CONVERT_UTF8 for a command
    without --errors, as `compare --file`)."""
    from charrnn.inputs import read_stdin, read_text

    if file is not None and split is not None:  # the file would be scored, the split unread
        raise UserError(f"give a FILE or {option('split')}, not both")
    if file is not None:
        refuse_dataset_as_text(file)
        if file != "-" and Path(file).expanduser().is_dir():  # (every file below it was read)
            raise UserError(f"{file} is a folder: give a text file, or - for standard input")
        text = read_stdin(errors, fix == CONVERT_OR_REPLACE) if file == "-" else \
            read_text([file], errors, fix)
        unknown = unknown if tokenizer.level == "char" else "map"
        ids = tokenizer.encode(text, unknown=unknown)
        skipped = skipped_chars(tokenizer, text, ids) if unknown == "skip" else 0
        return ids, len(text), "<stdin>" if file == "-" else str(file), skipped
    split = split or "test"
    if split not in SPLITS:
        raise UserError(f"{option('split')} must be train, val or test, not {split!r}")
    if not dataset_id:  # an imported model (ARPA file): there never was a split of ours
        raise UserError(f"this model was imported and has no dataset split to score: pass a "
                        f"FILE to evaluate on ({again} FILE)")
    dataset = find_dataset(dataset_id)
    if dataset is None:
        raise dataset_gone(dataset_id, f"pass a FILE to evaluate on ({again} FILE)")
    return dataset.ids(split), dataset.chars(split), f"split:{split}", dataset.skipped_chars(split)
