"""Tagging data: CoNLL columns and segmented text in, id arrays for the tagger out.

    conll      one token per line, whitespace-separated columns (token … label), a blank line
               between sentences; the label column is --label-column (default: the last), and
               --features names extra columns (e.g. 1 = the POS tag in CoNLL-2000) fed as inputs
    segmented  one sentence per line, words separated by whitespace (Chinese word segmentation);
               the tokens are the characters, labelled B/M/E/S (begin, middle, end, single)

`Encoder` holds every vocabulary a tagger needs (tokens, character bigrams or the characters of
words, feature values, labels). It is stored in the checkpoint as JSON, so a checkpoint carries
all it needs to read new text.
"""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np

from charrnn.errors import UserError, option
from charrnn.inputs import read_each

FORMATS = ("conll", "segmented")
PAD, UNK = "<pad>", "<unk>"
BOUNDARY = "<s>"  # the neighbour of the first and last characters, for bigrams
MAX_WORD_CHARS = 24  # longer words are cut for the char encoder (a word's edges carry most of it)


@dataclass
class Sentence:
    tokens: list[str]
    labels: list[str] | None = None
    features: list[list[str]] = field(default_factory=list)  # one list per feature column


# ---- reading ------------------------------------------------------------------------------------
def read_conll(path: str, label_column: int = -1, features: Sequence[int] = (),
               text: str | None = None, labelled: bool = True,
               columns_from_run: bool = False) -> list[Sentence]:
    """CoNLL columns → sentences. `labelled=False` reads files without the label column. A
    folder's files are read one by one: a sentence never runs from one file into the next.
    `columns_from_run`: the columns are a trained tagger's (eval, predict), not options given
    now, so a file that lacks them is told what the tagger reads."""
    sources = [(path, text)] if text is not None else read_each(path)
    sentences: list[Sentence] = []
    first: tuple[str, int, int] | None = None  # (file, line, columns) of the first token line
    for name, body in sources:
        first = _conll_sentences(name, body, (label_column, features, columns_from_run),
                                 labelled, sentences, first)
    if not sentences:
        raise UserError(f"{path} holds no sentences: expected one token per line, blank lines "
                        "between sentences")
    return sentences


def _conll_sentences(path: str, text: str, columns: tuple[int, Sequence[int], bool],
                     labelled: bool, sentences: list[Sentence],
                     first: tuple[str, int, int] | None) -> tuple[str, int, int] | None:
    """One file's sentences added to `sentences`; every token line has the columns of the first
    one read (`first`, returned), as conlleval demands: a missing tag would shift the label.
    `columns`: (label column, feature columns, whether they are a trained tagger's)."""
    label_column, features, from_run = columns
    rows: list[list[str]] = []

    def close() -> None:
        if rows:
            sentences.append(_sentence_from_rows(rows, label_column, features, labelled))
            rows.clear()

    for number, line in enumerate(text.split("\n"), 1):
        cols = line.split()
        if not cols or line.startswith("-DOCSTART-"):
            close()
            continue
        if first is None:
            if from_run:
                _check_run_columns(path, number, len(cols), label_column, features, labelled)
            _check_columns(path, number, len(cols), label_column, features, labelled)
            first = (path, number, len(cols))
        elif len(cols) != first[2]:
            where = f"line {first[1]}" if first[0] == path else f"{first[0]}:{first[1]}"
            raise UserError(f"{path}:{number}: {len(cols)} column(s), and the first token line "
                            f"({where}) has {first[2]}: every token line has the same columns "
                            "(a tag missing, a token with a space in it?)")
        rows.append(cols)
    close()
    return first


def _least_width(features: Sequence[int], labelled: bool) -> int:
    """The columns a line needs: its token, the feature columns asked for, and a label."""
    return max(1 + max([0, *features]), 2 if labelled else 1)


def _check_run_columns(path: str, number: int, width: int, label_column: int,
                       features: Sequence[int], labelled: bool) -> None:
    """A trained tagger's columns against a file: what it reads, when the file lacks them (the
    options that set them belong to its training, not to this command)."""
    need = _least_width(features, labelled)
    label = label_column % width if labelled and -width <= label_column < width else None
    if width >= need and (not labelled or label not in {None, 0, *(c % width for c in features)}):
        return
    reads = ["tokens in column 0"]
    if features:
        reads.append(f"features in column{'s' if len(features) > 1 else ''} "
                     f"{', '.join(map(str, features))}")
    if labelled:
        reads.append(f"labels in column {label_column}" + (" (the last)" if label_column == -1
                                                           else ""))
    raise UserError(f"{path}:{number}: {width} column(s), and this tagger reads "
                    f"{', '.join(reads)}, as its training file had: give a file in those columns")


def _check_columns(path: str, number: int, width: int, label_column: int,
                   features: Sequence[int], labelled: bool) -> None:
    """The columns asked for, against a file's width (a line past the first has the same)."""
    need = _least_width(features, labelled)
    # A column past the line's end: name it, not just "need at least N columns".
    if labelled and width >= 2 and not -width <= label_column < width:
        raise UserError(f"{path}:{number}: the label column ({option('label_column')} {label_column}) "
                        f"is beyond the line's {width} columns (0-based: 0 to {width - 1}, -1 = "
                        f"the last): check {option('label_column')} and {option('format')}")
    beyond = [c for c in features if c >= width]
    if width >= (2 if labelled else 1) and beyond:
        raise UserError(f"{path}:{number}: feature column {beyond[0]} ({option('features')}) is beyond "
                        f"the line's {width} column(s) (0-based: 0 to {width - 1}): check "
                        f"{option('features')} and {option('format')}")
    if width < need:
        raise UserError(f"{path}:{number}: {width} column(s), need at least {need} (token … "
                        f"label): check {option('format')} conll, {option('label_column')} and "
                        f"{option('features')}")
    if labelled and label_column % width == 0:
        raise UserError(f"{path}:{number}: {option('label_column')} {label_column} is column 0 of the "
                        f"file's {width}, the tokens: the tagger would learn to copy its input; "
                        "give the column of the labels")
    if labelled:
        _refuse_label_as_feature(path, number, width, label_column, features)


def _refuse_label_as_feature(path: str, number: int, width: int, label_column: int,
                             features: Sequence[int]) -> None:
    """A feature column that is the label column would hand the answer to the tagger as an
    input (perfect validation scores, useless on unlabelled text): refuse it, naming both."""
    label = label_column % width  # -1 = the last column of this line
    for c in features:
        if c % width == label:
            raise UserError(f"{path}:{number}: feature column {c} ({option('features')}) is the label column "
                            f"({option('label_column')} {label_column} = column {label} of this line's "
                            f"{width}): the label cannot also be an input; drop it from {option('features')} "
                            f"or choose another {option('label_column')}")


def _sentence_from_rows(rows: list[list[str]], label_column: int, features: Sequence[int],
                        labelled: bool) -> Sentence:
    labels = [r[label_column] for r in rows] if labelled else None
    return Sentence([r[0] for r in rows], labels, [[r[c] for r in rows] for c in features])


def bmes(words: Sequence[str]) -> list[str]:
    tags: list[str] = []
    for word in words:
        tags += ["S"] if len(word) == 1 else ["B"] + ["M"] * (len(word) - 2) + ["E"]
    return tags


def words_from_tags(chars: Sequence[str], tags: Sequence[str]) -> list[str]:
    """Characters + B/M/E/S → words (a word ends at E or S; anything else continues it)."""
    words, current = [], ""
    for char, tag in zip(chars, tags, strict=True):
        if tag in ("B", "S") and current:
            words.append(current)
            current = ""
        current += char
        if tag in ("E", "S"):
            words.append(current)
            current = ""
    if current:
        words.append(current)
    return words


ZWJ = "\u200d"  # zero-width joiner: 👩 ZWJ 💻 is one emoji


def _extends_cluster(char: str) -> bool:
    """Whether `char` belongs to the character before it on screen whatever that is: a
    combining mark (é as e + U+0301, a virama, a variation selector), an emoji skin-tone
    modifier, or a tag character (the letters of a subdivision flag, 🏴 + gbsct + cancel)."""
    return (unicodedata.combining(char) != 0 or unicodedata.category(char).startswith("M")
            or char == ZWJ or "\U0001F3FB" <= char <= "\U0001F3FF"
            or "\U000E0020" <= char <= "\U000E007F")


REGIONAL = "".join(map(chr, range(0x1F1E6, 0x1F200)))  # 🇦..🇿: two make a flag


def _jamo(char: str) -> str:
    """A Hangul character's part in a syllable: L (leading consonant), V (vowel), T (trailing
    consonant), LV or LVT (a precomposed syllable), or "" (not Hangul)."""
    code = ord(char)
    if 0x1100 <= code <= 0x115F or 0xA960 <= code <= 0xA97C:
        return "L"
    if 0x1160 <= code <= 0x11A7 or 0xD7B0 <= code <= 0xD7C6:
        return "V"
    if 0x11A8 <= code <= 0x11FF or 0xD7CB <= code <= 0xD7FB:
        return "T"
    if 0xAC00 <= code <= 0xD7A3:
        return "LV" if (code - 0xAC00) % 28 == 0 else "LVT"
    return ""


def _continues(before: str, char: str) -> bool:
    """Whether `char` continues the grapheme that `before` ends with (Unicode's extended
    grapheme clusters, for the cuts a tagger can make between code points)."""
    if _extends_cluster(char) or before.endswith(ZWJ):
        return True
    if char in REGIONAL:  # a flag pairs indicators from the left: an odd run is waiting for one
        return (len(before) - len(before.rstrip(REGIONAL))) % 2 == 1
    last, this = _jamo(before[-1]), _jamo(char)
    return (last == "L" and this in ("L", "V", "LV", "LVT")) or \
        (last in ("LV", "V") and this in ("V", "T")) or (last in ("LVT", "T") and this == "T")


def join_clusters(words: Sequence[str]) -> list[str]:
    """Glue back a word that starts inside the previous word's last character (a combining mark,
    or after a zero-width joiner): the tagger labels code points, but a reader sees graphemes,
    and `e ́` or `👩 ‍💻` would be a cut no one asked for."""
    out: list[str] = []
    for word in words:
        if out and out[-1] and word and _continues(out[-1], word[0]):
            out[-1] += word
        else:
            out.append(word)
    return out


def read_segmented(path: str, text: str | None = None) -> list[Sentence]:
    text = "\n".join(body for _name, body in read_each(path)) if text is None else text
    sentences = []
    for line in text.split("\n"):
        words = line.split()
        if words:
            sentences.append(Sentence([c for w in words for c in w], bmes(words)))
    if not sentences:
        raise UserError(f"{path} holds no text: expected one sentence per line, words separated "
                        "by spaces")
    return sentences


def read_data(path: str, fmt: str, label_column: int = -1, features: Sequence[int] = (),
              columns_from_run: bool = False) -> list[Sentence]:
    if fmt not in FORMATS:
        raise UserError(f"{option('format')} must be conll or segmented, not {fmt!r}")
    if fmt == "segmented":
        return read_segmented(path)
    return read_conll(path, label_column, features, columns_from_run=columns_from_run)


# ---- vocabularies --------------------------------------------------------------------------------
def norm_word(word: str) -> str:
    """Word-embedding key: lower case, digits as 0 (numbers share one embedding per shape)."""
    return re.sub(r"\d", "0", word.lower())


def _vocab(counts: Counter[str], min_count: int) -> list[str]:
    kept = sorted((k for k, n in counts.items() if n >= min_count), key=lambda k: (-counts[k], k))
    return [PAD, UNK, *kept]


@dataclass
class Encoder:
    level: str  # "char" (segmented text) or "word" (conll tokens)
    tokens: list[str]
    labels: list[str]
    bigrams: list[str] = field(default_factory=list)  # char level
    chars: list[str] = field(default_factory=list)  # word level: the char encoder's alphabet
    features: list[list[str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._index = {name: {s: i for i, s in enumerate(getattr(self, name))}
                       for name in ("tokens", "labels", "bigrams", "chars")}
        self._feature_index = [{s: i for i, s in enumerate(v)} for v in self.features]

    @classmethod
    def build(cls, sentences: Sequence[Sentence], level: str, min_count: int = 1,
              bigram_min_count: int = 2) -> Encoder:
        labels = sorted({lab for s in sentences for lab in (s.labels or [])})
        if not labels:
            raise UserError("the training data has no labels")
        if level == "char":
            tokens = Counter(c for s in sentences for c in s.tokens)
            bigrams = Counter(b for s in sentences for b in _bigrams(s.tokens))
            return cls(level, _vocab(tokens, min_count), labels,
                       bigrams=_vocab(bigrams, bigram_min_count))
        words = Counter(norm_word(w) for s in sentences for w in s.tokens)
        chars = Counter(c for s in sentences for w in s.tokens for c in w)
        n_features = len(sentences[0].features)
        features = [_vocab(Counter(v for s in sentences for v in s.features[k]), 1)
                    for k in range(n_features)]
        return cls(level, _vocab(words, min_count), labels, chars=_vocab(chars, 1),
                   features=features)

    def to_json(self) -> dict:
        return {"level": self.level, "tokens": self.tokens, "labels": self.labels,
                "bigrams": self.bigrams, "chars": self.chars, "features": self.features}

    @classmethod
    def from_json(cls, data: dict) -> Encoder:
        try:
            return cls(data["level"], data["tokens"], data["labels"], data.get("bigrams", []),
                       data.get("chars", []), data.get("features", []))
        except (KeyError, TypeError) as exc:
            raise UserError(f"the tagger's stored vocabularies are malformed ({exc})") from exc

    def unseen_share(self, sentences: Sequence[Sentence]) -> float:
        """The share of these sentences' tokens the training vocabulary lacks."""
        tokens = [t for s in sentences for t in s.tokens]
        return sum(t not in self._index["tokens"] for t in tokens) / max(1, len(tokens))

    def _ids(self, name: str, items: Iterable[str]) -> np.ndarray:
        index = self._index[name]
        unk = index.get(UNK, 0)
        return np.fromiter((index.get(x, unk) for x in items), dtype=np.int64)

    def encode(self, sentence: Sentence) -> dict[str, np.ndarray]:
        """One sentence → arrays (length T, or T × MAX_WORD_CHARS for the char encoder)."""
        toks = sentence.tokens
        if len(sentence.features) != len(self.features):
            raise UserError(f"the tagger was trained with {len(self.features)} feature column(s), "
                            f"this data gives {len(sentence.features)}: use the same {option('features')}")
        out = {}
        if self.level == "char":
            out["tokens"] = self._ids("tokens", toks)
            pairs = self._ids("bigrams", _bigrams(toks))  # T+1 bigrams around T characters
            out["bigram_left"], out["bigram_right"] = pairs[:-1], pairs[1:]
        else:
            out["tokens"] = self._ids("tokens", (norm_word(w) for w in toks))
            grid = np.zeros((len(toks), MAX_WORD_CHARS), dtype=np.int64)
            for i, word in enumerate(toks):
                ids = self._ids("chars", word[:MAX_WORD_CHARS])
                grid[i, : len(ids)] = ids
            out["chars"] = grid
            if self.features:
                out["features"] = np.stack(
                    [np.fromiter((idx.get(v, 1) for v in col), dtype=np.int64)
                     for idx, col in zip(self._feature_index, sentence.features, strict=True)], 1)
        if sentence.labels is not None:
            unknown = sorted(set(sentence.labels) - self._index["labels"].keys())
            if unknown:
                raise UserError(f"label(s) {unknown[:5]} never occur in the tagger's training data: "
                                f"check {option('label_column')}, or train on data with these labels")
            out["labels"] = self._ids("labels", sentence.labels)
        return out


def _bigrams(chars: Sequence[str]) -> list[str]:
    padded = [BOUNDARY, *chars, BOUNDARY]
    return [a + b for a, b in zip(padded, padded[1:], strict=False)]
