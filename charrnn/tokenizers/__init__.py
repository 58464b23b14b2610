"""Char, word and subword tokenizers behind one interface, stored as JSON.

Every dataset's meta.json and every checkpoint carries its tokenizer as `to_json()`, so a
checkpoint needs nothing else to sample or evaluate. Ids are dense `0..vocab_size-1`.

    char     one id per Unicode code point seen in the corpus (CJK, emoji, combining marks)
    word     whitespace or regex split; `<eos>` at each line end (PTB convention); `<unk>`
    subword  sentencepiece BPE/unigram trained on the corpus; newline is an extra id of ours

One file each: base (the protocol, <eos>/<unk>, the policies for unknown text), char, word,
subword; here, `tokenizer_from_json`.
"""

from __future__ import annotations

import base64
import re

from charrnn.errors import UserError
from charrnn.tokenizers.base import (
    EOS,
    UNK,
    StreamDecoder,
    Tokenizer,
    check_unknown_policy,
    prime_policy,
    prime_shown,
    refuse_idle_unk,
    skipped_chars,
)
from charrnn.tokenizers.char import CharTokenizer
from charrnn.tokenizers.subword import SubwordTokenizer, VocabTooSmall
from charrnn.tokenizers.word import WordTokenizer

__all__ = ["EOS", "UNK", "CharTokenizer", "StreamDecoder", "SubwordTokenizer", "Tokenizer",
           "VocabTooSmall", "WordTokenizer", "check_unknown_policy", "prime_policy", "prime_shown",
           "refuse_idle_unk", "skipped_chars", "tokenizer_from_json"]


def tokenizer_from_json(data: dict, source: str = "", remedy: str = "re-run preprocess"
                        ) -> Tokenizer:
    """Rebuild a tokenizer from its JSON form (as stored in meta.json and checkpoints); one
    that cannot be is an error naming `source` (the file) and saying `remedy`."""
    where = f"{source}: " if source else ""
    if not isinstance(data, dict):
        raise UserError(f"{where}stored tokenizer is {type(data).__name__}, not an object: "
                        f"{remedy}")
    level = data.get("level")
    try:
        if level == "char":
            if len(set(data["chars"])) != len(data["chars"]):
                raise ValueError("a character listed twice")
            return CharTokenizer(list(data["chars"]), bool(data.get("lower", False)))
        if level == "word":
            return WordTokenizer(data["words"], data.get("pattern"), bool(data.get("lower", False)))
        if level == "subword":
            return SubwordTokenizer(base64.b64decode(data["model"], validate=True))
    except (KeyError, TypeError, ValueError, RuntimeError, re.error) as exc:
        raise UserError(f"{where}stored {level} tokenizer is malformed ({exc}): {remedy}") from exc
    raise UserError(f"{where}unknown tokenizer level {level!r}: expected char, word or subword "
                    f"({remedy})")
