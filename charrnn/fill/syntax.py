"""The blank syntax of `charrnn fill` (lengths count the model's tokens: characters, words or
subword pieces):

    ___          one blank of unknown length (1 … --max-len tokens; the models choose)
    {3}  ___{3}  exactly 3 tokens;   {2,4}  ___{2,4}  between 2 and 4;   {2,}  at least 2
    \\_  \\{  \\\\   a literal underscore, brace, backslash (before anything else, \\ is text)

Text outside the blanks is never changed: a result is the literal pieces with fills between them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from charrnn.errors import UserError

MAX_BLANK = 64
# A backslash escapes only what would be markup (\_, \{, \\); before anything else it is text.
_SYNTAX = re.compile(r"\\([\\_{])|(_+)(?:\{(\d+)(?:,(\d*))?\})?|\{(\d+)(?:,(\d*))?\}|(\{,\d*\})",
                     re.S)  # (the last: {,N}, a regex's 'up to N', refused as no blank of ours)


@dataclass
class Blank:
    start: int  # character span of the blank's markup in the input text
    end: int
    min_len: int = 1
    max_len: int | None = None  # None: unknown length, up to the model's default bound

    def bounds(self, default_max: int) -> tuple[int, int]:
        if self.max_len is None:
            return self.min_len, max(self.min_len, default_max)
        return self.min_len, self.max_len


@dataclass
class Template:
    pieces: list[str]  # literal text around the blanks (len(blanks) + 1), escapes resolved
    blanks: list[Blank]

    def render(self, fills: list[str]) -> str:
        out = [self.pieces[0]]
        for fill, piece in zip(fills, self.pieces[1:], strict=True):
            out += [fill, piece]
        return "".join(out)


def escape(text: str) -> str:
    """Literal text → blank syntax that reads back as exactly this text."""
    return re.sub(r"([\\_{])", r"\\\1", text)


def parse(text: str) -> Template:
    """TEXT with blanks → literal pieces and blanks (see the module docstring for the syntax)."""
    pieces, blanks, current, pos = [], [], [], 0
    for m in _SYNTAX.finditer(text):
        current.append(text[pos : m.start()])
        pos = m.end()
        if m.group(1) is not None:  # an escape
            current.append(m.group(1))
            continue
        if m.group(7) is not None:  # it was literal text: 'no blank in the text', or kept as is
            raise UserError(f"{m.group(0)!r} at character {m.start()} is no blank: give the least "
                            "length too, as {1,3} for one to three tokens (a literal brace is \\{)")
        lo_s, hi_s = (m.group(3), m.group(4)) if m.group(2) else (m.group(5), m.group(6))
        lo = int(lo_s) if lo_s else 1
        # {N}: N; {M,N}: M to N; {M,}: at least M (as a regex says), up to --max-len; ___: any
        hi = (lo if hi_s is None else int(hi_s) if hi_s else None) if lo_s else None
        where = f"blank {m.group(0)!r} at character {m.start()}"
        if lo < 1:
            raise UserError(f"{where}: a blank holds at least 1 token")
        if hi is not None and hi < lo:
            raise UserError(f"{where}: the minimum length {lo} is above the maximum {hi}")
        if max(lo, hi or 0) > MAX_BLANK:
            raise UserError(f"{where}: at most {MAX_BLANK} tokens per blank")
        pieces.append("".join(current))
        current = []
        blanks.append(Blank(m.start(), m.end(), lo, hi))
    current.append(text[pos:])
    pieces.append("".join(current))
    if not blanks:
        raise UserError("no blank in the text: mark one with ___ (any length) or {N} (N tokens), "
                        "e.g. 'I want to ___ a new phone'")
    return Template(pieces, blanks)
