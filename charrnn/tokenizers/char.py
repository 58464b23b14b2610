"""The char tokenizer: one id per Unicode code point seen in the corpus (CJK, emoji, combining
marks), looked up through a table over all code points; `--lower` folds case first."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from charrnn.tokenizers.base import ListDecoder, StreamDecoder, unknown_error


class CharTokenizer:
    level = "char"

    def __init__(self, chars: Sequence[str], lower: bool = False) -> None:
        self.chars = list(chars)
        self.lower = lower
        self.vocab_size = len(self.chars)
        self.index = {c: i for i, c in enumerate(self.chars)}
        self._lut: np.ndarray | None = None

    @classmethod
    def build(cls, chunks: Iterable[str], lower: bool = False) -> CharTokenizer:
        counts = np.zeros(0x110000, dtype=np.int64)
        for chunk in chunks:
            text = chunk.lower() if lower else chunk
            counts += np.bincount(code_points(text), minlength=0x110000)
        return cls([chr(c) for c in np.flatnonzero(counts)], lower)

    def _table(self) -> np.ndarray:
        if self._lut is None:
            self._lut = np.full(0x110000, -1, dtype=np.int64)
            self._lut[[ord(c) for c in self.chars]] = np.arange(self.vocab_size)
        return self._lut

    def encode(self, text: str, unknown: str = "error") -> np.ndarray:
        if self.lower:
            text = text.lower()
        ids = self._table()[code_points(text)]
        missing = ids < 0
        if missing.any():
            if unknown == "skip":
                return ids[~missing]
            bad = [chr(c) for c in code_points(text)[missing]]
            raise unknown_error("character", bad)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def stream_decoder(self) -> StreamDecoder:
        return ListDecoder(self)

    def token_strings(self) -> list[str]:
        return list(self.chars)

    def line_break_id(self) -> int | None:
        return self.index.get("\n")

    def to_json(self) -> dict:
        return {"level": "char", "chars": "".join(self.chars), "lower": self.lower}


def code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.int64)
