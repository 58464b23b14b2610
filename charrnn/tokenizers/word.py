"""The word tokenizer: words by whitespace (or a `--pattern` regex), `<eos>` at each line end
(the PTB convention), `<unk>` for the rest; the vocabulary by count (`--min-count`,
`--max-vocab`), most frequent first."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Sequence

import numpy as np

from charrnn.errors import UserError, option
from charrnn.tokenizers.base import EOS, UNK, StreamDecoder, unknown_error


class WordTokenizer:
    """Words by whitespace (default) or a regex; every line ends in `<eos>`."""

    level = "word"

    def __init__(self, words: Sequence[str], pattern: str | None = None, lower: bool = False):
        self.words = list(words)
        self.pattern = pattern
        self.lower = lower
        self.vocab_size = len(self.words)
        self.index = {w: i for i, w in enumerate(self.words)}
        self._regex = re.compile(pattern) if pattern else None

    @classmethod
    def build(
        cls, chunks: Iterable[str], pattern: str | None = None, lower: bool = False,
        min_count: int = 1, max_vocab: int | None = None,
    ) -> WordTokenizer:
        if pattern:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise UserError(f"{option('pattern')} {pattern!r} is not a valid regex: {exc}") from exc
        probe = cls([EOS, UNK], pattern, lower)
        counts: Counter[str] = Counter()
        for chunk in chunks:
            for line in chunk.split("\n"):  # as encode splits: splitlines() also breaks at \r,
                counts.update(probe.split(line))  # \x0b, \x85, \u2028..., which a --pattern keeps
        counts.pop(EOS, None)
        counts.pop(UNK, None)
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
        if not kept:  # only <eos> and <unk>: a model of nothing but line breaks and unknowns
            raise _no_words(counts, pattern, min_count)
        if max_vocab is not None:
            kept = kept[: max(0, max_vocab - 2)]
        return cls([EOS, UNK, *kept], pattern, lower)

    def split(self, line: str) -> list[str]:
        if self.lower:
            line = line.lower()
        if self._regex is None:
            return line.split()
        # group(0), not findall: a pattern with groups would give tuples; empty matches (`x*`
        # between the x's) are no token at all.
        return [m.group(0) for m in self._regex.finditer(line) if m.end() > m.start()]

    def encode(self, text: str, unknown: str = "map") -> np.ndarray:
        ids: list[int] = []
        unk_id, eos_id, missing = self.index[UNK], self.index[EOS], []
        lines = text.split("\n")
        for number, line in enumerate(lines):
            for word in self.split(line):
                # "<eos>" in the text is a word no model knows, not a line break
                token = self.index.get(word) if word != EOS else None
                if token is None:
                    if unknown == "skip":
                        continue
                    if unknown == "error":
                        missing.append(word)
                    token = unk_id
                ids.append(token)
            if number < len(lines) - 1:
                ids.append(eos_id)
        if missing:
            raise unknown_error("word", missing)
        return np.asarray(ids, dtype=np.int64)

    def unknown_words(self, text: str) -> list[str]:
        """The words of `text` the vocabulary lacks (each once, in order): what encode reads as
        <unk>."""
        words = (w for line in text.split("\n") for w in self.split(line))
        return list(dict.fromkeys(w for w in words if w == EOS or w not in self.index))

    def decode(self, ids: Iterable[int]) -> str:
        out: list[str] = []
        for i in ids:
            word = self.words[i]
            if word == EOS:
                out.append("\n")
            else:
                out.append(word if not out or out[-1] == "\n" else " " + word)
        return "".join(out)

    def stream_decoder(self) -> StreamDecoder:
        return _WordStream(self)

    def token_strings(self) -> list[str]:
        return list(self.words)

    def line_break_id(self) -> int | None:
        return self.index[EOS]

    def to_json(self) -> dict:
        return {"level": "word", "words": self.words, "pattern": self.pattern, "lower": self.lower}


class _WordStream:
    def __init__(self, tokenizer: WordTokenizer) -> None:
        self.tokenizer = tokenizer
        self.at_line_start = True

    def feed(self, token_id: int) -> str:
        word = self.tokenizer.words[token_id]
        if word == EOS:
            self.at_line_start = True
            return "\n"
        text = word if self.at_line_start else " " + word
        self.at_line_start = False
        return text


def _no_words(counts: Counter[str], pattern: str | None, min_count: int) -> UserError:
    """Why the training text gave no word to keep, and what keeps some."""
    if counts:
        top, most = counts.most_common(1)[0]
        return UserError(f"{option('min_count')} {min_count} keeps no word: the most frequent, "
                         f"{top!r}, appears {most:,} times; give {option('min_count')} {most:,} "
                         "or less")
    if pattern:
        return UserError(f"{option('pattern')} {pattern!r} matches no word of the training text: "
                         f"give a pattern that matches its words, or drop {option('pattern')} to "
                         "split at whitespace")
    return UserError(f"the training text has no words (only whitespace): give text with words, "
                     f"or use {option('level')} char")
