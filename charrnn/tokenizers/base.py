"""What every tokenizer is (the `Tokenizer` protocol), the `<eos>` / `<unk>` names, and the
policies for text a model lacks: an unknown character is an error or skipped (`--unk`), an
unknown word is `<unk>`, a subword model spells anything with its byte pieces."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

import numpy as np

from charrnn.errors import UserError, option

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


def unknown_error(kind: str, unknown: Sequence[str]) -> UserError:
    """`kind` is the singular noun ("character", "word"); repeats are counted once."""
    distinct = sorted(set(unknown))
    shown = ", ".join(repr(u) for u in distinct[:20])
    more = f" (and {len(distinct) - 20} more)" if len(distinct) > 20 else ""
    noun = kind if len(distinct) == 1 else kind + "s"
    crlf = " (the text has Windows line ends: convert it with dos2unix)" if "\r" in distinct else ""
    return UserError(
        f"{len(distinct)} {noun} not in the model's vocabulary: {shown}{more}{crlf}; "
        f"remove them or pass {option('unknown', 'unk')} skip"
    )


def prime_policy(level: str, unknown: str | None) -> str:
    """How a prime's unknown text is read (sample, ngram sample): a char model refuses it, or
    skips it if asked; a word model reads unknown words as its <unk>, as eval and fill do (a
    policy asked of it is refused there as here). None: not asked (a char model's error)."""
    refuse_idle_unk(level, unknown)
    return "skip" if unknown == "skip" else "error" if level == "char" else "map"


def prime_shown(decoder: StreamDecoder, level: str, ids: Iterable[int], typed: str) -> str:
    """The prime as a sample shows it, fed to `decoder` (which then continues after it): the
    decoded ids, except that a word model shows the words as typed, not as the <unk> or the lower
    case it read them as. Only the decoder's separator before the prime (a space after earlier
    words) is kept, so the next word joins the prime as it would join a generated word."""
    decoded = "".join(decoder.feed(int(i)) for i in ids)
    if level != "word":
        return decoded
    return decoded[:len(decoded) - len(decoded.lstrip(" "))] + typed.strip(" \t")


def check_unknown_policy(unknown: str | None) -> None:
    """How a char model reads characters it lacks: None (not asked), error or skip."""
    if unknown not in (None, "error", "skip"):
        raise UserError(f"{option('unknown', 'unk')} must be error or skip, not {unknown!r}")


def refuse_idle_unk(level: str, unknown: str | None) -> None:
    """A policy for unknown characters asked of a model that has none (None: not asked): a word
    model reads unknown words as its <unk> (as PTB does), a subword model spells any text with
    its byte pieces. A policy that is none of them is refused too (a library caller's typo)."""
    check_unknown_policy(unknown)
    if unknown is not None and level != "char":
        why = "reads unknown words as its <unk>" if level == "word" else \
            "spells any text with its byte pieces"
        named = option("unknown", "unk")
        raise UserError(f"{named} {unknown} says how a char model reads characters it lacks, and "
                        f"this {level} model {why}: drop {named}")


class ListDecoder:
    """Stream decoder for tokenizers whose tokens decode independently."""

    def __init__(self, tokenizer: Tokenizer) -> None:
        self.tokenizer = tokenizer

    def feed(self, token_id: int) -> str:
        return self.tokenizer.decode([token_id])


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
