"""Char, word and subword tokenizers behind one interface, stored as JSON.

Every dataset's meta.json and every checkpoint carries its tokenizer as `to_json()`, so a
checkpoint needs nothing else to sample or evaluate. Ids are dense `0..vocab_size-1`.

    char     one id per Unicode code point seen in the corpus (CJK, emoji, combining marks)
    word     whitespace or regex split; `<eos>` at each line end (PTB convention); `<unk>`
    subword  sentencepiece BPE/unigram trained on the corpus; newline is an extra id of ours
"""

from __future__ import annotations

import base64
import re
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from typing import Protocol

import numpy as np

from charrnn.errors import UserError

EOS, UNK = "<eos>", "<unk>"


class StreamDecoder(Protocol):
    def feed(self, token_id: int) -> str: ...


class Tokenizer(Protocol):
    level: str
    vocab_size: int

    def encode(self, text: str, unknown: str = "map") -> np.ndarray: ...
    def decode(self, ids: Iterable[int]) -> str: ...
    def stream_decoder(self) -> StreamDecoder: ...
    def token_strings(self) -> list[str]: ...
    def line_break_id(self) -> int | None: ...
    def to_json(self) -> dict: ...


def _unknown_error(kind: str, unknown: Sequence[str]) -> UserError:
    """`kind` is the singular noun ("character", "word"); repeats are counted once."""
    distinct = sorted(set(unknown))
    shown = ", ".join(repr(u) for u in distinct[:20])
    more = f" (and {len(distinct) - 20} more)" if len(distinct) > 20 else ""
    noun = kind if len(distinct) == 1 else kind + "s"
    crlf = " (the text has Windows line ends: convert it with dos2unix)" if "\r" in distinct else ""
    return UserError(
        f"{len(distinct)} {noun} not in the model's vocabulary: {shown}{more}{crlf}; "
        "remove them or pass --unk skip"
    )


def prime_policy(level: str, unknown: str | None) -> str:
    """How a prime's unknown text is read (sample, ngram sample): a char model refuses it, or
    skips it if asked; a word model reads unknown words as its <unk>, as eval and fill do (a
    policy asked of it is refused there as here). None: not asked (a char model's error)."""
    refuse_idle_unk(level, unknown)
    return "skip" if unknown == "skip" else "error" if level == "char" else "map"


def refuse_idle_unk(level: str, unknown: str | None) -> None:
    """A policy for unknown characters asked of a model that has none (None: not asked): a word
    model reads unknown words as its <unk> (as PTB does), a subword model spells any text with
    its byte pieces."""
    if unknown is not None and level != "char":
        why = "reads unknown words as its <unk>" if level == "word" else \
            "spells any text with its byte pieces"
        raise UserError(f"--unk {unknown} says how a char model reads characters it lacks, and "
                        f"this {level} model {why}: drop --unk")


class _ListDecoder:
    """Stream decoder for tokenizers whose tokens decode independently."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def feed(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])


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
            counts += np.bincount(_code_points(text), minlength=0x110000)
        return cls([chr(c) for c in np.flatnonzero(counts)], lower)

    def _table(self) -> np.ndarray:
        if self._lut is None:
            self._lut = np.full(0x110000, -1, dtype=np.int64)
            self._lut[[ord(c) for c in self.chars]] = np.arange(self.vocab_size)
        return self._lut

    def encode(self, text: str, unknown: str = "error") -> np.ndarray:
        if self.lower:
            text = text.lower()
        ids = self._table()[_code_points(text)]
        missing = ids < 0
        if missing.any():
            if unknown == "skip":
                return ids[~missing]
            bad = [chr(c) for c in _code_points(text)[missing]]
            raise _unknown_error("character", bad)
        return ids

    def decode(self, ids: Iterable[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def stream_decoder(self) -> StreamDecoder:
        return _ListDecoder(self)

    def token_strings(self) -> list[str]:
        return list(self.chars)

    def line_break_id(self) -> int | None:
        return self.index.get("\n")

    def to_json(self) -> dict:
        return {"level": "char", "chars": "".join(self.chars), "lower": self.lower}


def skipped_chars(tokenizer: Tokenizer, text: str, ids: np.ndarray) -> int:
    """How many characters of `text` encoding it with unknown="skip" dropped (`ids` is that
    encoding): characters are one id each; words count the letters of the unknown ones; subword
    pieces never skip (byte fallback)."""
    if tokenizer.level == "char":
        return max(0, len(text) - len(ids))
    if tokenizer.level == "word":
        return sum(len(word) for line in text.split("\n") for word in tokenizer.split(line)
                   if word not in tokenizer.index)
    return 0


def _code_points(text: str) -> np.ndarray:
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4").astype(np.int64)


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
                raise UserError(f"--pattern {pattern!r} is not a valid regex: {exc}") from exc
        probe = cls([EOS, UNK], pattern, lower)
        counts: Counter[str] = Counter()
        for chunk in chunks:
            for line in chunk.split("\n"):  # as encode splits: splitlines() also breaks at \r,
                counts.update(probe.split(line))  # \x0b, \x85, \u2028..., which a --pattern keeps
        counts.pop(EOS, None)
        counts.pop(UNK, None)
        kept = sorted((w for w, n in counts.items() if n >= min_count), key=lambda w: (-counts[w], w))
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
                token = self.index.get(word)
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
            raise _unknown_error("word", missing)
        return np.asarray(ids, dtype=np.int64)

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


# sentencepiece's trainer skips every sentence longer than this (in UTF-8 bytes), and fails with
# no sentences left when a text is one long line (text8): long lines reach it in pieces.
MAX_SENTENCE_BYTES = 1 << 16


SPACE_MARK = "\u2581"  # sentencepiece's mark for a space inside a piece


def _sentence_pieces(line: str, max_bytes: int) -> Iterator[str]:
    """`line` cut into pieces of fewer than `max_bytes` UTF-8 bytes, each ending after a whitespace
    where there is one (a word is never cut unless it alone is that long). Training only: encoding
    reads whole lines, so no text is lost or changed."""
    if len(line) < max_bytes // 4 or len(line.encode("utf-8")) < max_bytes:
        yield line
        return
    width = max_bytes // 4 - 1  # characters: at most 4 bytes each, so below max_bytes
    start = 0
    while len(line) - start > width:
        space = max(line.rfind(" ", start, start + width), line.rfind("\t", start, start + width))
        end = space + 1 if space >= start else start + width
        yield line[start:end]
        start = end
    if start < len(line):
        yield line[start:]


class VocabTooSmall(UserError):
    """A subword vocabulary smaller than the text's characters need (`least`)."""

    def __init__(self, message: str, least: int) -> None:
        super().__init__(message)
        self.least = least


def _training_error(message: str, vocab_size: int) -> UserError:
    """sentencepiece's failure as a UserError: its reason, or for the sizes it names, the
    --vocab-size that works (sentencepiece counts without our newline id, hence the +1)."""
    reason = message.split("] ", 1)[1].strip() if "] " in message else message.strip()
    needed = re.search(r"smaller than required_chars\. \d+ vs (\d+)", reason)
    if needed:
        least = int(needed.group(1)) + 1
        return VocabTooSmall(f"--vocab-size {vocab_size} is too small for this text: its "
                             f"characters and the 256 byte pieces need at least {least}; pass "
                             f"--vocab-size {least} or more (or use --level char)", least)
    most = re.search(r"too high.*<= (\d+)", reason)
    if most:
        return UserError(f"--vocab-size {vocab_size} is too large for this text: pass --vocab-size "
                         f"{int(most.group(1)) + 1} or less, or give more text")
    if "!sentences_.empty()" in message:
        reason = "the training text holds nothing but line breaks: give more text"
    elif not reason or reason.endswith("]"):  # a bare check, no explanation: show the check
        reason = message.strip()
    return UserError(f"sentencepiece could not train a subword model: {reason}")


class SubwordTokenizer:
    """sentencepiece over lines; the newline is our own extra id (sentencepiece works per line).

    Identity normalisation, no dummy prefix and kept whitespace make decode(encode(x)) == x;
    byte fallback means no character is ever unknown. sentencepiece reads U+2581 "▁" as its own
    space mark, so a literal one is written as its three UTF-8 byte pieces, which decode to "▁":

        "a▁b"  ->  sp("a") <0xE2> <0x96> <0x81> sp("b")
    """

    level = "subword"

    def __init__(self, model_proto: bytes) -> None:
        import sentencepiece as spm

        self.model_proto = model_proto
        self.sp = spm.SentencePieceProcessor(model_proto=model_proto)
        self.newline_id = self.sp.get_piece_size()
        self.vocab_size = self.newline_id + 1
        self.space_mark_bytes = [self.sp.piece_to_id(f"<0x{byte:02X}>") for byte in SPACE_MARK.encode()]

    @classmethod
    def train(
        cls, chunks: Iterable[str], vocab_size: int = 2000, model_type: str = "bpe",
        character_coverage: float = 0.9995, max_sentences: int = 2_000_000, exact: bool = True,
    ) -> SubwordTokenizer:
        """sentencepiece on the text's lines. `exact`: fewer pieces than `vocab_size` (the text
        runs out of them first: its limit is soft) is an error naming the most it makes; else
        the smaller vocabulary is kept."""
        import io

        import sentencepiece as spm

        if model_type not in ("bpe", "unigram"):
            raise UserError(f"--subword-model must be 'bpe' or 'unigram', not {model_type!r}")
        if vocab_size < 260:
            raise UserError(f"--vocab-size {vocab_size} is too small: subword needs at least 260 "
                            "(256 byte pieces for unseen characters, plus specials)")
        lines = (piece for chunk in chunks for line in chunk.split("\n")
                 for part in line.split(SPACE_MARK) if part  # a literal mark is no space
                 for piece in _sentence_pieces(part, MAX_SENTENCE_BYTES))
        model = io.BytesIO()
        try:
            spm.SentencePieceTrainer.train(
                sentence_iterator=lines, model_writer=model, vocab_size=vocab_size - 1,
                model_type=model_type, character_coverage=character_coverage,
                byte_fallback=True, normalization_rule_name="identity",
                remove_extra_whitespaces=False, add_dummy_prefix=False,
                split_digits=True, hard_vocab_limit=False, input_sentence_size=max_sentences,
                shuffle_input_sentence=True, max_sentence_length=MAX_SENTENCE_BYTES,
                bos_id=-1, eos_id=-1, unk_id=0, minloglevel=2, num_threads=2,
            )
        except RuntimeError as exc:
            raise _training_error(str(exc), vocab_size) from exc
        made = cls(model.getvalue())
        if exact and made.vocab_size < vocab_size:  # the text ran out of pieces first
            raise UserError(f"--vocab-size {vocab_size} is too large for this text: its "
                            f"{model_type} model stops at {made.vocab_size} pieces; pass "
                            f"--vocab-size {made.vocab_size} or less, or give more text")
        return made

    def encode(self, text: str, unknown: str = "map") -> np.ndarray:
        ids: list[int] = []
        lines = text.split("\n")
        for number, line in enumerate(lines):
            for part_number, part in enumerate(line.split(SPACE_MARK)):
                if part_number:
                    ids += self.space_mark_bytes
                if part:
                    ids += self.sp.encode(part)
            if number < len(lines) - 1:
                ids.append(self.newline_id)
        return np.asarray(ids, dtype=np.int64)

    def decode(self, ids: Iterable[int]) -> str:
        stream = _SubwordStream(self)
        return "".join(stream.feed(i) for i in ids) + stream.flush()

    def stream_decoder(self) -> StreamDecoder:
        return _SubwordStream(self)

    def token_strings(self) -> list[str]:
        return [self.sp.id_to_piece(i) for i in range(self.newline_id)] + ["\n"]

    def line_break_id(self) -> int | None:
        return self.newline_id

    def to_json(self) -> dict:
        return {"level": "subword", "model": base64.b64encode(self.model_proto).decode("ascii")}


class _SubwordStream:
    """Turns ids into text as they come, holding back bytes of an unfinished UTF-8 character."""

    def __init__(self, tokenizer: SubwordTokenizer) -> None:
        self.tokenizer = tokenizer
        self.pending = bytearray()

    def feed(self, token_id: int) -> str:
        sp = self.tokenizer.sp
        if token_id != self.tokenizer.newline_id and sp.is_byte(token_id):
            self.pending.append(int(sp.id_to_piece(token_id)[1:-1], 16))
            try:
                text = self.pending.decode("utf-8")
            except UnicodeDecodeError:
                return "" if len(self.pending) < 4 else self.flush()
            self.pending.clear()
            return text
        head = self.flush()
        if token_id == self.tokenizer.newline_id:
            return head + "\n"
        if sp.is_unknown(token_id):
            return head + "\u2047"
        return head + sp.id_to_piece(token_id).replace(SPACE_MARK, " ")

    def flush(self) -> str:
        text = self.pending.decode("utf-8", errors="replace")
        self.pending.clear()
        return text


def tokenizer_from_json(data: dict) -> Tokenizer:
    """Rebuild a tokenizer from its JSON form (as stored in meta.json and checkpoints)."""
    level = data.get("level")
    try:
        if level == "char":
            if len(set(data["chars"])) != len(data["chars"]):
                raise ValueError("a character listed twice")
            return CharTokenizer(list(data["chars"]), bool(data.get("lower", False)))
        if level == "word":
            return WordTokenizer(data["words"], data.get("pattern"), bool(data.get("lower", False)))
        if level == "subword":
            return SubwordTokenizer(base64.b64decode(data["model"]))
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise UserError(f"stored {level} tokenizer is malformed ({exc}): re-run preprocess") from exc
    raise UserError(f"unknown tokenizer level {level!r}: expected char, word or subword")
