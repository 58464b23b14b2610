"""Preprocess text into token ids on disk, and read them back through numpy.memmap.

A dataset is a folder:

    meta.json    tokenizer, split sizes (tokens and characters), source hashes, split rule
    train.bin    flat token ids, the smallest unsigned dtype that fits the vocabulary
    val.bin      (contiguous tail of the corpus, or the --valid files)
    test.bin     (contiguous tail after val, or the --test files)

The corpus is read three times as a stream (count characters, build the vocabulary, encode), so
peak memory is a few chunks plus the vocabulary, whatever the corpus size. Splits are cut by
character position, as nanoGPT cuts tiny Shakespeare 90/10; word and subword cuts move forward to
the next line break so that no word is split.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from charrnn import fsutil
from charrnn.errors import UserError
from charrnn.inputs import TextSource, expand_inputs
from charrnn.tokenizers import (
    CharTokenizer,
    SubwordTokenizer,
    Tokenizer,
    WordTokenizer,
    tokenizer_from_json,
)

FORMAT, VERSION = "charrnn-dataset", 1
SPLITS = ("train", "val", "test")
LEVELS = ("char", "word", "subword")


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

    def validate(self) -> None:
        if self.level not in LEVELS:
            raise UserError(f"--level must be one of {', '.join(LEVELS)}, not {self.level!r}")
        for name, frac in (("--val-frac", self.val_frac), ("--test-frac", self.test_frac)):
            if not 0 <= frac < 1:
                raise UserError(f"{name} must be in [0, 1), got {frac}")
        if self.val_frac + self.test_frac >= 1:
            raise UserError("--val-frac + --test-frac must leave some text for training")
        if self.min_count < 1:
            raise UserError(f"--min-count must be ≥ 1, got {self.min_count}")
        if self.max_vocab is not None and self.max_vocab < 3:
            raise UserError(f"--max-vocab must be ≥ 3, got {self.max_vocab}")

    def tokenizer_options(self) -> dict:
        """The options that change what the ids mean (part of the cache key)."""
        keys = {"char": ("lower",), "word": ("lower", "pattern", "min_count", "max_vocab"),
                "subword": ("vocab_size", "subword_model")}[self.level]
        return {"level": self.level, **{k: getattr(self, k) for k in keys}}


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
        self.tokenizer: Tokenizer = tokenizer_from_json(self.meta["tokenizer"])
        self.dtype = np.dtype(self.meta["dtype"])

    @property
    def id(self) -> str:
        return self.meta["id"]

    def tokens(self, split: str) -> int:
        return int(self.meta["splits"][split]["tokens"])

    def chars(self, split: str) -> int:
        return int(self.meta["splits"][split]["chars"])

    def ids(self, split: str) -> np.ndarray:
        """The split's token ids as a read-only memmap (an empty array for an empty split)."""
        if split not in SPLITS:
            raise UserError(f"unknown split {split!r}: choose train, val or test")
        count = self.tokens(split)
        path = self.root / f"{split}.bin"
        if count == 0:
            return np.zeros(0, dtype=self.dtype)
        size = path.stat().st_size if path.exists() else -1
        if size != count * self.dtype.itemsize:
            raise UserError(f"{path} has {size} bytes, expected {count * self.dtype.itemsize}: "
                            "the dataset is truncated; preprocess again")
        return np.memmap(path, dtype=self.dtype, mode="r", shape=(count,))


def _split_pieces(
    source: TextSource, bounds: tuple[int, int], snap: bool
) -> Iterator[tuple[int, str]]:
    """Yield (split index, text) pieces; split 0 ends at bounds[0], split 1 at bounds[1].

    With `snap`, a cut moves forward to just after the next newline inside the same chunk.
    """
    position, split = 0, 0
    for chunk in source.chunks():
        start = 0
        while split < 2 and position + len(chunk) - start > bounds[split]:
            cut = start + max(0, bounds[split] - position)
            if snap:
                newline = chunk.find("\n", cut)
                cut = len(chunk) if newline < 0 else newline + 1
            if cut > start:
                yield split, chunk[start:cut]
                position += cut - start
                start = cut
            split += 1
        if start < len(chunk):
            yield split, chunk[start:]
            position += len(chunk) - start


def _char_count(source: TextSource) -> int:
    return sum(len(chunk) for chunk in source.chunks())


def _build_tokenizer(opts: PreprocessOptions, train_text: Iterator[str]) -> Tokenizer:
    if opts.level == "char":
        return CharTokenizer.build(train_text, opts.lower)
    if opts.level == "word":
        return WordTokenizer.build(train_text, opts.pattern, opts.lower, opts.min_count,
                                   opts.max_vocab)
    return SubwordTokenizer.train(train_text, opts.vocab_size, opts.subword_model)


class _Plan:
    """Which text goes to which split, as a stream of (split name, text) pieces."""

    def __init__(self, inputs: list[str], opts: PreprocessOptions) -> None:
        self.opts = opts
        self.main = TextSource(expand_inputs(inputs), opts.errors)
        self.extra = {name: TextSource(expand_inputs(files), opts.errors)
                      for name, files in (("val", opts.valid), ("test", opts.test)) if files}
        self.total = _char_count(self.main)
        if self.total == 0:
            names = ", ".join(str(f) for f in self.main.files)
            raise UserError(f"{names}: input is empty (0 characters); give a non-empty corpus")
        for name, source in self.extra.items():  # an empty split would silently never evaluate
            if _char_count(source) == 0:
                names = ", ".join(str(f) for f in source.files)
                option = "--valid" if name == "val" else "--test"
                raise UserError(f"{option} {names}: file is empty (0 characters); give a "
                                f"non-empty file, or drop {option} to split one off the corpus")
        val_frac = 0.0 if "val" in self.extra else opts.val_frac
        test_frac = 0.0 if "test" in self.extra else opts.test_frac
        self.bounds = (int(self.total * (1 - val_frac - test_frac)), int(self.total * (1 - test_frac)))
        self.rule = {"main": "contiguous tail by characters", "val_frac": val_frac,
                     "test_frac": test_frac, "val_files": opts.valid, "test_files": opts.test,
                     "cut_at_line_break": opts.level != "char"}

    def pieces(self) -> Iterator[tuple[str, str]]:
        for index, text in _split_pieces(self.main, self.bounds, snap=self.opts.level != "char"):
            yield SPLITS[index], text
        for name, source in self.extra.items():
            for text in source.chunks():
                yield name, text

    def vocabulary_text(self) -> Iterator[str]:
        # Characters come from every split (as in char-rnn and nanoGPT), so held-out text has no
        # unknown characters; words and subwords are learnt from train only (the PTB convention).
        for split, text in self.pieces():
            if self.opts.level == "char" or split == "train":
                yield text

    def sources(self) -> list[dict]:
        out = []
        for role, source in (("main", self.main), *self.extra.items()):
            for path in source.files:
                out.append({"role": role, "path": str(path), "bytes": path.stat().st_size,
                            "sha256": TextSource([path]).sha256()})
        return out

    def content_hash(self) -> str:
        parts = [self.main.sha256()] + [f"{k}:{s.sha256()}" for k, s in self.extra.items()]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()


def dataset_id(plan: _Plan) -> str:
    opts = plan.opts
    key = {"content": plan.content_hash(), "tokenizer": opts.tokenizer_options(),
           "rule": plan.rule, "errors": opts.errors, "version": VERSION}
    return hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:24]


def preprocess(inputs: list[str], out: Path | None, opts: PreprocessOptions) -> Dataset:
    """Stream `inputs` into a dataset folder (`out`, or the cache keyed by content + options)."""
    opts.validate()
    plan = _Plan(inputs, opts)
    ident = dataset_id(plan)
    if out is None:
        out = fsutil.cache_dir() / "datasets" / ident
        fsutil.recover_dir(out)
        if (out / "meta.json").exists():
            return Dataset(out)
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not (out / "meta.json").exists():
        raise UserError(f"{out} exists and is not a charrnn dataset: choose an empty or new --out")
    tokenizer = _build_tokenizer(opts, plan.vocabulary_text())
    dtype = smallest_dtype(tokenizer.vocab_size)
    counts = {name: {"tokens": 0, "chars": 0} for name in SPLITS}
    with fsutil.atomic_dir(out) as tmp:
        handles = {name: open(tmp / f"{name}.bin", "wb") for name in SPLITS}
        try:
            for split, text in plan.pieces():
                ids = tokenizer.encode(text, unknown="map")
                handles[split].write(ids.astype(dtype).tobytes())
                counts[split]["tokens"] += len(ids)
                counts[split]["chars"] += len(text)
        finally:
            for handle in handles.values():
                handle.close()
        meta = {"format": FORMAT, "version": VERSION, "id": ident, "dtype": dtype.name,
                "tokenizer": tokenizer.to_json(), "vocab_size": tokenizer.vocab_size,
                "splits": counts, "split_rule": plan.rule, "sources": plan.sources(),
                "options": asdict(opts)}
        fsutil.write_json_atomic(tmp / "meta.json", meta)
    _remember(ident, out)
    return Dataset(out)


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
    path.parent.mkdir(parents=True, exist_ok=True)
    fsutil.write_json_atomic(path, index)


def find_dataset(ident: str) -> Dataset | None:
    """Look a dataset up by id in the cache and the local index (never by a stored path)."""
    if not ident or not all(c in "0123456789abcdef" for c in ident):
        return None
    candidates = [fsutil.cache_dir() / "datasets" / ident]
    try:
        index = json.loads(_index_path().read_text(encoding="utf-8"))
        if isinstance(index.get(ident), str):
            candidates.append(Path(index[ident]))
    except (OSError, ValueError):
        pass
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


def prepare(inputs: list[str], opts: PreprocessOptions) -> Dataset:
    """What `train` and `ngram train` call: a dataset folder as is, or raw text via the cache."""
    if len(inputs) == 1 and is_dataset_dir(inputs[0]):
        dataset = Dataset(Path(inputs[0]))
        level = dataset.tokenizer.level
        if opts.level != PreprocessOptions.level and opts.level != level:
            raise UserError(f"{inputs[0]} is a {level}-level dataset, used as it is, but --level "
                            f"{opts.level} was given: drop --level, or give the raw text")
        return dataset
    return preprocess(inputs, None, opts)


def scoring_text(tokenizer, dataset_id: str, file: str | None, split: str | None,
                 unknown: str, errors: str, again: str) -> tuple[np.ndarray, int, str]:
    """What `eval` scores a model on: (ids, characters, source) of FILE, or of a split (default
    test) of the dataset the model was trained on, looked up by id. `again` is the command that
    scores a FILE instead, for the message when that dataset is gone."""
    from charrnn.inputs import read_text

    if file is not None:
        text = read_text([file], errors)
        ids = tokenizer.encode(text, unknown=unknown if tokenizer.level == "char" else "map")
        return ids, len(text), str(file)
    split = split or "test"
    if split not in SPLITS:
        raise UserError(f"--split must be train, val or test, not {split!r}")
    if not dataset_id:  # an imported model (ARPA file): there never was a split of ours
        raise UserError(f"this model was imported and has no dataset split to score: pass a "
                        f"FILE to evaluate on ({again} FILE)")
    dataset = find_dataset(dataset_id)
    if dataset is None:
        raise UserError(f"the dataset this run was trained on is not in the cache any more: "
                        f"pass a FILE to evaluate on ({again} FILE)")
    return dataset.ids(split), dataset.chars(split), f"split:{split}"
