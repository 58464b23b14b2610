"""The generated text as wrapped, coloured lines that grow at the bottom (a terminal "tail").

Rich's own wrapping would re-wrap the whole text every frame; here each token is folded into
lines once, when it arrives: word wrap by terminal cell width (CJK and other wide characters
take two cells, combining marks none; a word longer than the line, or CJK text, breaks
anywhere). A resize re-folds the recent tail at the new width. Rendering yields only the last
`height` lines as Segments, so a frame costs the same at token 100 and at token 100,000.

Folding is the view's work per character, so a stretch of printable ASCII between line breaks
(one cell a character) is placed whole where it fits the line, and only the character that
wraps goes through the loop: the same lines, a Python step per line instead of per character.

    "the quick brown fox"  at 8 cells:  "the quic" placed; 'k' wraps, carrying "quic" down;
                                        " br" placed; 'o' wraps, carrying "br" down; …
                                        → "the " / "quick " / "brown " / "fox"
"""

from __future__ import annotations

import unicodedata
from collections import deque

from rich.cells import get_character_cell_size
from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.style import Style

MAX_LINES = 400  # kept folded; more than any terminal shows
REFOLD_CHARS = 40_000  # how much history a resize re-folds (MAX_LINES of 100 cells)


def visible(text: str) -> str:
    """Text as a terminal may show it: tabs become spaces, control characters their Unicode
    pictures (␍, ␀, ␛, …); what a terminal would act on rather than show (C1 controls, bidi
    overrides, line separators) becomes �. Spaces of every script (U+3000) and the joiners of
    emoji and Indic sequences are shown as they are."""
    if text.isprintable() or all(c == "\n" or c.isprintable() for c in text):
        return text
    return "".join(shown_char(char) for char in text)


KEPT_FORMAT = frozenset("\u200c\u200d")  # zero-width non-joiner and joiner

# What terminals join into one glyph or not, each its own way, so that no count of cells is
# right on every one: the zero-width joiner (👨‍👩‍👧 2 cells or 6), the variation selectors (❤️ 1 or
# 2) and the skin tones (a🏽 1 or 3). A laid-out view leaves them out, or its borders move.
UNSURE_WIDTH = {ord(c): None for c in "\u200d\ufe0e\ufe0f" + "".join(
    chr(code) for code in range(0x1F3FB, 0x1F400))}


def sized(text: str) -> str:
    """`visible(text)` for a view that lays text out by cells (the sample view, the training
    preview): without the characters of UNSURE_WIDTH, so each character's cells are the same in
    Rich and in every terminal. The text itself (saved, piped, left on screen) keeps them."""
    return visible(text) if text.isascii() else visible(text).translate(UNSURE_WIDTH)


def shown_char(char: str) -> str:
    if char == "\n" or char.isprintable():
        return char
    if char == "\t":
        return "    "
    if ord(char) < 0x20:
        return chr(0x2400 + ord(char))
    if char == "\x7f":
        return "\u2421"  # ␡
    if unicodedata.category(char) == "Zs" or char in KEPT_FORMAT:
        return char
    return "\ufffd"


class TextFlow:
    """Append (text, style) pieces; render the tail that fits the given box."""

    def __init__(self, styles: list[Style]) -> None:
        self.styles = styles
        self.pieces: deque[tuple[str, int]] = deque()  # the last REFOLD_CHARS or more
        self.piece_chars = 0  # characters in pieces
        self.width = 0
        self._reset()

    def clear(self) -> None:
        self.pieces.clear()
        self.piece_chars = 0
        self._reset()

    def _reset(self) -> None:
        self.lines: deque[list[list]] = deque([[]], maxlen=MAX_LINES)  # line = [[text, style], …]
        self.widths: deque[int] = deque([0], maxlen=MAX_LINES)  # cells used by each line
        self.used = 0  # cells used on the last line
        self.brk: tuple[int, int, int] | None = None  # last space on the line: span, offset, cells

    def add(self, text: str, style: int) -> None:
        self.add_many([(text, style)])

    def add_many(self, pieces: list[tuple[str, int]]) -> None:
        """Pieces of (text, style) in order: a frame's runs of one colour each."""
        kept = [(sized(text), style) for text, style in pieces if text]
        self.pieces.extend(kept)
        self.piece_chars += sum(len(text) for text, _ in kept)
        while self.pieces and self.piece_chars - len(self.pieces[0][0]) >= REFOLD_CHARS:
            self.piece_chars -= len(self.pieces.popleft()[0])
        if self.width:
            for text, style in kept:
                self._fold(text, style)

    def _fold(self, text: str, style: int) -> None:
        """Word wrap by cells: a line breaks after its last space, or anywhere in a word longer
        than the line (and anywhere in CJK text, which has no spaces)."""
        if text.isascii() and text.isprintable():  # the common case: no line break
            self._fold_narrow(text, style)
            return
        if not text.isascii():
            self._fold_chars(text, style)
            return
        for index, part in enumerate(text.split("\n")):
            if index:
                self._fold_chars("\n", style)
            if part.isprintable():
                self._fold_narrow(part, style)
            else:
                self._fold_chars(part, style)

    def _fold_narrow(self, text: str, style: int) -> None:
        """Printable ASCII: what fits the line is placed whole, the char that wraps it folded."""
        while text:
            room = self.width - self.used
            if len(text) <= room:
                self._place(text, style)
                return
            room = max(0, room)
            if room:
                self._place(text[:room], style)
            self._fold_chars(text[room], style)
            text = text[room + 1:]

    def _place(self, text: str, style: int) -> None:
        """Printable ASCII that fits the last line: appended, its last space the line's break."""
        line = self.lines[-1]
        if line and line[-1][1] == style:
            line[-1][0] += text
        else:
            line.append([text, style])
        space = text.rfind(" ")
        if space >= 0:  # after it, in the span: as _fold_chars records a space
            self.brk = (len(line) - 1, len(line[-1][0]) - (len(text) - 1 - space),
                        self.used + space + 1)
        self.used += len(text)
        self.widths[-1] = self.used

    def _fold_chars(self, text: str, style: int) -> None:
        """The fold a character at a time (any text)."""
        line, used, width, brk = self.lines[-1], self.used, self.width, self.brk
        for char in text:
            if char == "\n":
                self.widths[-1] = used
                line, used, brk = [], 0, None
                self.lines.append(line)
                self.widths.append(0)
                continue
            size = 1 if " " <= char < "\u0300" else get_character_cell_size(char)
            if used + size > width and used:
                tail: list[list] = []
                if brk is not None and char != " ":  # carry the unfinished word down
                    index, offset, cells = brk
                    if offset < len(line[index][0]):
                        tail.append([line[index][0][offset:], line[index][1]])
                        line[index][0] = line[index][0][:offset]
                    tail.extend(line[index + 1:])
                    del line[index + 1:]
                    self.widths[-1], used = cells, used - cells
                else:
                    self.widths[-1], used = used, 0
                line, brk = tail, None
                self.lines.append(line)
                self.widths.append(used)
                if char == " ":
                    continue  # the space the line broke at
            if line and line[-1][1] == style:
                line[-1][0] += char
            else:
                line.append([char, style])
            used += size
            if char == " ":
                brk = (len(line) - 1, len(line[-1][0]), used)
        self.used = self.widths[-1] = used
        self.brk = brk

    def _refold(self, width: int) -> None:
        self.width = width
        self._reset()
        for text, style in self.pieces:
            self._fold(text, style)

    def tail(self, width: int, height: int) -> list[tuple[list[list], int]]:
        """The last `height` lines folded at `width`: ([[text, style index], …], cells used)."""
        if width != self.width:
            self._refold(max(1, width))
        start = max(0, len(self.lines) - height)
        return [(self.lines[i], self.widths[i]) for i in range(start, len(self.lines))]

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        height = options.height or options.size.height
        shown = self.tail(max(1, options.max_width), height)
        for line, _used in shown:
            for text, style in line:
                yield Segment(text, self.styles[style])
            yield Segment.line()
        for _ in range(height - len(shown)):
            yield Segment.line()
