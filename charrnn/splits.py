"""Which text goes to which split: a corpus cut by character position into train, val and test,
or --valid / --test files taken whole.

    corpus  |<------------- train ------------->|<--- val --->|<--- test --->|
            0                              bounds[0]      bounds[1]        total
                                               └─▶ word and subword cuts move forward to the
                                                   next line break (else whitespace), by at
                                                   most half of the split that follows

The text is streamed in chunks (TextSource), never held whole; the plan also says where the text
came from (sources, with sha256) and what identifies it (content_hash, part of the cache key).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

from charrnn.errors import UserError, option
from charrnn.inputs import (
    CONVERT_OR_REPLACE,
    SameText,
    TextSource,
    expand_inputs,
    file_sha256,
    is_built_dataset,
    refuse_datasets,
)

if TYPE_CHECKING:
    from charrnn.data import PreprocessOptions

SPLITS = ("train", "val", "test")


_WHITESPACE = re.compile(r"\s")


def _snap(chunk: str, cut: int, end: int) -> int:
    """Where a word or subword split starts: after the first line break in chunk[cut - 1:end]
    (a cut just after one stays), else after the first whitespace there, else at `cut` itself
    (cutting one word beats an empty split)."""
    newline = chunk.find("\n", max(0, cut - 1), end)
    if newline >= 0:
        return newline + 1
    space = _WHITESPACE.search(chunk, max(0, cut - 1), end)
    return space.end() if space else cut


def split_pieces(
    source: TextSource, bounds: tuple[int, int], total: int, snap: bool
) -> Iterator[tuple[int, str]]:
    """Yield (split index, text) pieces; split 0 ends at bounds[0], split 1 at bounds[1].

    With `snap`, a cut moves forward (see `_snap`) but never by more than half of the split that
    follows it, so that split keeps at least half its size; a split asked to be empty stays empty.
    """
    ends = (*bounds, total)
    position, split = 0, 0
    for chunk in source.chunks():
        start, base = 0, position  # base: the position of chunk[0]
        while split < 2 and base + len(chunk) > bounds[split]:
            cut = max(start, bounds[split] - base)
            if snap and bounds[split] > position:
                following = next((e for e in ends[split + 1:] if e > bounds[split]), total)
                reach = bounds[split] + (following - bounds[split]) // 2  # < following
                cut = _snap(chunk, cut, min(len(chunk), reach - base))
            if cut > start:
                yield split, chunk[start:cut]
                position += cut - start
                start = cut
            split += 1
        if start < len(chunk):
            yield split, chunk[start:]
            position += len(chunk) - start


def char_count(source: TextSource) -> int:
    return sum(len(chunk) for chunk in source.chunks())


class SplitPlan:
    """Which text goes to which split, as a stream of (split name, text) pieces."""

    def _refuse_shared_files(self) -> None:
        """A training file given as --valid or --test too (the same path, a link or a copy)
        scores a model on what it trained on: refused, naming both, rather than a score that
        flatters. (Validation and test alike is the user's choice: neither is trained on.)"""
        trained = SameText(Path(f) for f in self.main.files)
        for name, source in self.extra.items():
            for path in source.files:
                twin = trained.match(Path(path))
                if twin is not None:
                    split = "validation" if name == "val" else "test"
                    where = (f"is in the training text and in the {split} text"
                             if Path(twin) == Path(path) else
                             f"({split}) holds the same text as the training file {twin}")
                    raise UserError(f"{path} {where}: a model scored on text it trained on says "
                                    "nothing of new text; give "
                                    f"{option('valid' if name == 'val' else 'test')} files of "
                                    "their own")

    def __init__(self, inputs: list[str], opts: PreprocessOptions) -> None:
        self.opts = opts
        refuse_datasets(inputs, "", "train on it directly with `charrnn train {spec}`")
        for name, files in (("valid", opts.valid), ("test", opts.test)):
            refuse_datasets(files, f"{option(name)} ", "give the text file instead")
        self.specs = [*inputs, *opts.valid, *opts.test]
        self.main = self._source(inputs)
        self.extra = {name: self._source(files)
                      for name, files in (("val", opts.valid), ("test", opts.test)) if files}
        self._refuse_shared_files()
        self.total = char_count(self.main)
        if self.total == 0:
            names = ", ".join(str(f) for f in self.main.files)
            raise UserError(f"{names}: input is empty (0 characters); give a non-empty corpus")
        for name, source in self.extra.items():  # an empty split would silently never evaluate
            if char_count(source) == 0:
                names = ", ".join(str(f) for f in source.files)
                given = option("valid" if name == "val" else "test")
                raise UserError(f"{given} {names}: file is empty (0 characters); give a "
                                f"non-empty file, or drop {given} to split one off the corpus")
        val_frac = 0.0 if "val" in self.extra else opts.val_frac
        test_frac = 0.0 if "test" in self.extra else opts.test_frac
        # In floats on purpose, as every cached dataset was cut: 1 − 0.05 − 0.05 is 0.8999…, so
        # 200,000 characters split 179,999 / 10,001 / 10,000. The dataset id covers the rule, not
        # the bounds: cut otherwise, a cache made before and one made after would hold different
        # splits under one id, and a run would resume on other data than it trained on.
        self.bounds = (int(self.total * (1 - val_frac - test_frac)), int(self.total * (1 - test_frac)))
        for name, frac, size in (("val_frac", val_frac, self.bounds[1] - self.bounds[0]),
                                 ("test_frac", test_frac, self.total - self.bounds[1])):
            if frac > 0 and size == 0:
                raise UserError(f"{option(name)} {frac} of {self.total:,} characters is not one "
                                f"character: give a larger {option(name)} or more text")
        self.rule = {"main": "contiguous tail by characters", "val_frac": val_frac,
                     "test_frac": test_frac, "val_files": opts.valid, "test_files": opts.test,
                     "cut_at_line_break": opts.level != "char"}
        if opts.level != "char":  # part of the cache key: these cuts differ from the old ones
            self.rule["cut_fallback"] = "next whitespace, else the character (within half a split)"

    def _source(self, specs: list[str]) -> TextSource:
        files = expand_inputs(specs)
        for path in files:  # a folder of texts that also holds a dataset: its meta.json is no text
            if path.name == "meta.json" and is_built_dataset(path.parent):
                raise UserError(f"{path.parent} is a preprocessed dataset inside the input: give "
                                "the text files only, or move the dataset folder out")
        return TextSource(files, self.opts.errors, CONVERT_OR_REPLACE)

    def files(self) -> list[Path]:
        return [path for source in (self.main, *self.extra.values()) for path in source.files]

    def asked(self, split: str) -> bool:
        """Whether the user asked for text in this split (so an empty one is an error)."""
        if split == "train":
            return True
        files, frac = (self.opts.valid, self.opts.val_frac) if split == "val" else \
            (self.opts.test, self.opts.test_frac)
        return bool(files) or frac > 0

    def pieces(self) -> Iterator[tuple[str, str]]:
        for index, text in split_pieces(self.main, self.bounds, self.total,
                                         snap=self.opts.level != "char"):
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
                            "sha256": file_sha256(path)})  # what `sha256sum` and the registry say
        return out

    def content_hash(self) -> str:
        # Over all files in order with separators (TextSource.sha256), not the per-file hashes:
        # the cache key, unchanged so that existing datasets are found again.
        parts = [self.main.sha256()] + [f"{k}:{s.sha256()}" for k, s in self.extra.items()]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()
