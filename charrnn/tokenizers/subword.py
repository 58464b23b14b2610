"""The subword tokenizer: sentencepiece (BPE or unigram) trained on the corpus's lines, with
identity normalisation and byte fallback, so that any text round-trips; the newline is an extra id
of ours (sentencepiece works per line)."""

from __future__ import annotations

import base64
import re
from collections.abc import Iterable, Iterator

import numpy as np

from charrnn.errors import UserError, option
from charrnn.tokenizers.base import StreamDecoder

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


MIN_VOCAB = 260  # the 256 byte pieces that spell unseen characters, <unk>, a piece, newline


def _too_small(vocab_size: int, least: int) -> VocabTooSmall:
    return VocabTooSmall(f"{option('vocab_size')} {vocab_size} is too small for this text: its "
                         f"characters and the 256 byte pieces need at least {least}; pass "
                         f"{option('vocab_size')} {least} or more (or use {option('level')} char)",
                         least)


PROBE_CHARS = 20_000_000  # what the least size is read from: seconds, not a corpus's minutes


def _head(chunks: Iterable[str], chars: int) -> Iterator[str]:
    for chunk in chunks:
        yield chunk
        chars -= len(chunk)
        if chars <= 0:
            return


def _least_size(chunks: Iterable[str], model_type: str, coverage: float, sentences: int) -> int:
    """The smallest vocabulary sentencepiece accepts for the text's first PROBE_CHARS: MIN_VOCAB
    where it trains at MIN_VOCAB, else the size its refusal names (its characters need more). A
    least for all of a longer text, which may have more characters, is no smaller."""
    try:
        SubwordTokenizer.train(_head(chunks, PROBE_CHARS), MIN_VOCAB, model_type, coverage,
                               sentences, exact=False)
    except VocabTooSmall as refusal:
        return refusal.least
    return MIN_VOCAB


def _training_error(message: str, vocab_size: int) -> UserError:
    """sentencepiece's failure as a UserError: its reason, or for the sizes it names, the
    --vocab-size that works (sentencepiece counts without our newline id, hence the +1)."""
    reason = message.split("] ", 1)[1].strip() if "] " in message else message.strip()
    needed = re.search(r"smaller than required_chars\. \d+ vs (\d+)", reason)
    if needed:
        least = int(needed.group(1)) + 1
        return _too_small(vocab_size, least)
    most = re.search(r"too high.*<= (\d+)", reason)
    if most:
        return UserError(f"{option('vocab_size')} {vocab_size} is too large for this text: pass "
                         f"{option('vocab_size')} {int(most.group(1)) + 1} or less, or give more text")
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

        if not model_proto:  # (sentencepiece takes it, then says "not initialized" at each call)
            raise ValueError("the sentencepiece model is empty")
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
            raise UserError(f"{option('subword_model')} must be 'bpe' or 'unigram', not {model_type!r}")
        if vocab_size < MIN_VOCAB:  # the least this text needs, found by training at the floor
            raise _too_small(vocab_size, _least_size(chunks, model_type, character_coverage,
                                                     max_sentences))
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
            raise UserError(f"{option('vocab_size')} {vocab_size} is too large for this text: its "
                            f"{model_type} model stops at {made.vocab_size} pieces; pass "
                            f"{option('vocab_size')} {made.vocab_size} or less, or give more text")
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
