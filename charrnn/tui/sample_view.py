"""What the sampling view shows, and how it is laid out.

The sampler hands the loop a chunk of tokens at a time, with what the view needs of each already
computed inside the chunk (decode.token_stats): the chosen token's probability, the entropy and
the top-5 alternatives, a dozen numbers a token. `record()` keeps of them what a frame shows —
the chosen probabilities (an array a chunk), the last SIDE_WIDTH entropies, the newest token's
row — and no distribution or tensor: memory and a frame's work stay bounded whatever the
vocabulary size. `flush()`, once per frame, colours the pending tokens by probability (one NumPy
pass), joins each run of one colour and folds it into the text flow, and shows the top-5 of the
newest token:

    texts  "T" "h" "e" " " "k" "i" "n" "g"     p  .9 .9 .6 .9 .3 .3 .3 .9
    runs   "Th"        "e"  " " "kin"  "g"         bold green · green · bold green · yellow · …
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field
from itertools import pairwise

import numpy as np
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.segment import Segment
from rich.style import Style
from rich.text import Text

from charrnn.lm.cpustep import TOP
from charrnn.tui.textflow import TextFlow
from charrnn.tui.widgets import (
    BUCKET_STYLES,
    PRIME_STYLE,
    bar,
    bucket,
    buckets,
    fit,
    legend,
    sparkline,
    token_label,
)

SIDE_WIDTH = 40
PRIME = len(BUCKET_STYLES)  # style index of the prime in the text flow
NARROW = SIDE_WIDTH + 30  # below this width the side panel is hidden: the footer says more
LABEL_WIDTH = 11  # the side panel's figure names


@dataclass
class ViewInfo:
    """Fixed facts shown in the side panel."""

    model: str
    checkpoint: str
    token_strings: list[str]
    mixture: str = ""  # --mix: 'kn5, λ 0.018'


@dataclass
class SampleView:
    info: ViewInfo
    opts: object  # SampleOptions: read live, so +/- show at once
    flow: TextFlow = field(default_factory=lambda: TextFlow([*BUCKET_STYLES, PRIME_STYLE]))
    pending_text: list[str] = field(default_factory=list)
    pending_p: list[np.ndarray] = field(default_factory=list)  # chosen tokens' p, by chunk
    newest: list[float] | None = None  # the newest token's stats row (for the top-5)
    entropies: deque = field(default_factory=lambda: deque(maxlen=SIDE_WIDTH))
    candidates: list[tuple[int, float]] = field(default_factory=list)
    chosen: int | None = None
    chosen_p: float = 0.0
    generated: int = 0
    target: int = 0
    rate: float = 0.0
    seed: int | None = None
    paused: bool = False
    status: str = ""
    footer_drawn: tuple = ((), [])  # (what the footer said, its lines): frames reuse them

    # ---- data ---------------------------------------------------------------------------------
    def restart(self, prime_text: str, seed: int | None, target: int) -> None:
        self.flow.clear()
        self.pending_text.clear()
        self.pending_p.clear()
        self.newest = None
        self.entropies.clear()
        self.candidates, self.chosen, self.generated = [], None, 0
        self.seed, self.target = seed, target
        self.flow.add(prime_text, PRIME)

    def record(self, ids: list[int], texts: list[str], stats) -> None:
        """A chunk of tokens: ids, decoded texts, and per token (chosen p, entropy in bits, the
        top-5 probabilities, their ids), as decode.token_stats packs them (an array (n, S))."""
        rows = np.asarray(stats)
        self.pending_text.extend(texts)
        self.pending_p.append(rows[:, 0])
        self.entropies.extend(rows[-SIDE_WIDTH:, 1].tolist())
        self.generated += len(ids)
        self.chosen, self.newest = ids[-1], rows[-1].tolist()

    def flush(self) -> None:
        if self.pending_text:
            styles = buckets(np.concatenate(self.pending_p))
            cuts = [0, *(np.flatnonzero(styles[1:] != styles[:-1]) + 1).tolist(), len(styles)]
            texts, colours = self.pending_text, styles.tolist()
            self.flow.add_many([("".join(texts[start:end]), colours[start])  # a run of one colour
                                for start, end in pairwise(cuts)])
        self.pending_text.clear()
        self.pending_p.clear()
        if self.newest is not None:
            row = self.newest
            self.chosen_p = row[0]
            top = (len(row) - 2) // 2  # TOP, or the vocabulary size when smaller
            self.candidates = [(int(i), v) for i, v in zip(row[2 + top:], row[2:2 + top],
                                                             strict=True)]

    # ---- rendering ----------------------------------------------------------------------------
    def render(self) -> Frame:  # sized when drawn
        return Frame(self)

    def title(self) -> Text:
        state = "paused" if self.paused else ("done" if self.generated >= self.target else "live")
        return Text.assemble(("sample ", "bold"), (f"· {state}", _STATE_STYLE[state]))

    def _side(self) -> list[Text]:
        """The side panel's rows, each at most SIDE_WIDTH - 4 cells: the newest token's top
        candidates, then the figures (label, value)."""
        inner = SIDE_WIDTH - 4
        names = self.info.token_strings
        rows = [Text(f"top-{TOP} candidates", style="bold")]
        for token, p in self.candidates:
            label = token_label(names[token] if token < len(names) else "?", 8)
            rows.append(Text.assemble((f"{label} ", "bold" if token == self.chosen else ""),
                                      (bar(p, inner - 18), BUCKET_STYLES[bucket(p)]),
                                      f" {p:6.1%} {'◀' if token == self.chosen else ' '}"))
        if not self.candidates:
            rows.append(Text("(waiting for the first token)", style="dim"))
        ent = max(0.0, self.entropies[-1]) if self.entropies else 0.0  # (rounding: -0.00)
        top_bits = math.log2(max(2, len(names)))
        opts, value_w = self.opts, inner - LABEL_WIDTH - 1
        ent_text = f" {ent:4.2f} bits" if ent < 10 else f" {ent:4.1f} bits"
        figures = (
            ("entropy", Text.assemble((sparkline(self.entropies, value_w - 10, top_bits),
                                       "magenta"), ent_text)),
            ("speed", Text(self._speed(), style="bold cyan")),
            ("tokens", f"{self.generated:,} / {self.target:,}"),
            ("temp", Text.assemble((f"{opts.temperature:.2f}", "bold"),
                                   "  greedy" if opts.greedy else "")),
            ("top-k", str(opts.top_k or "—")), ("top-p", str(opts.top_p or "—")),
            ("seed", "—" if opts.greedy else str(self.seed)),
            ("model", fit(self.info.model, value_w)),
            *((("mixed", fit(f"⊕ {self.info.mixture}", value_w)),) if self.info.mixture else ()),
            ("checkpoint", fit(self.info.checkpoint, value_w)))
        rows.append(Text(""))
        rows.extend(Text.assemble((name.ljust(LABEL_WIDTH), "dim"), " ", value)
                    for name, value in figures)
        return rows

    def _speed(self) -> str:
        """The sampling rate; none while paused (the last one read as if it still sampled)."""
        return "— tok/s (paused)" if self.paused else f"{self.rate:,.0f} tok/s"

    def footer_lines(self, console: Console, options: ConsoleOptions,
                     width: int) -> list[list[Segment]]:
        """The footer's lines, laid out again only when what it says changes (Rich's layout of
        its three lines took a tenth of a frame, and a wide footer changes only with a key)."""
        footer = self._footer(width)
        said = (width, *((text.plain, text.style, tuple(text.spans))
                         for text in footer.renderables))
        if said != self.footer_drawn[0]:
            self.footer_drawn = (said, console.render_lines(footer, options, pad=True))
        return self.footer_drawn[1]

    def _footer(self, width: int) -> Group:
        space = "more" if self.generated >= self.target else ("resume" if self.paused else "pause")
        if width >= NARROW:
            keys = Text.assemble(
                ("space", "bold"), f" {space}  ", ("+/-", "bold"), " temperature  ", ("r", "bold"),
                " restart (new seed)  ", ("s", "bold"), " save  ", ("q", "bold"), " quit")
            return Group(legend(), keys, _one_line(Text(self.status, style="italic yellow")))
        # No side panel: the footer carries the figures, and the keys in short.
        figures = Text.assemble((f"temp {self.opts.temperature:.2f}", "bold"),
                                f"  {self._speed()}  {self.generated:,}/{self.target:,}  ")
        figures.append(self.status, style="italic yellow")
        keys = Text.assemble(("space", "bold"), f" {space} ", ("+/-", "bold"), " temp ",
                             ("r", "bold"), " new ", ("s", "bold"), " save ", ("q", "bold"), " quit")
        return Group(_one_line(legend(compact=True)), _one_line(keys), _one_line(figures))


def _one_line(text: Text) -> Text:
    text.no_wrap, text.overflow = True, "ellipsis"
    return text


_STATE_STYLE = {"live": "green", "paused": "yellow", "done": "cyan"}


BORDER = Style.parse("blue")
FOOTER_LINES = 3


class Frame:
    """The whole screen: text box | side panel, footer below, as lines of segments.

    Both boxes draw their own borders around rows made to width, and the loop writes the lines
    in place (Console.update_screen_lines), so a frame passes over the many small coloured
    segments of the text once, not once per nested layout level (Layout → Panel → Padding, then
    Live's Screen and LiveRender each re-crop every line): ~6 ms a frame at 120×40 instead of
    ~25 on a 2-core AMD EPYC.
    """

    def __init__(self, view: SampleView) -> None:
        self.view = view

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        for line in self.lines(console, options.max_width, options.height or options.size.height):
            yield from line
            yield Segment.line()

    def lines(self, console: Console, width: int, height: int) -> list[list[Segment]]:
        """The screen's `height` lines, each `width` cells wide."""
        view = self.view
        if width < 16 or height < FOOTER_LINES + 3:
            said = "terminal too small" if width >= 18 else "too small"  # whole, or nothing
            return Segment.set_shape([[Segment(said if width >= len(said) else "",
                                               Style.parse("bold red"))]], width, height)
        options = console.options.update(width=width, height=height)
        body = height - FOOTER_LINES
        side_width = SIDE_WIDTH if width >= SIDE_WIDTH + 30 else 0
        side = self._side_box(console, side_width, body) if side_width else None
        rows = self._text_box(console, width - side_width, body)
        if side is not None:
            rows = [row + side_row for row, side_row in zip(rows, side, strict=True)]
        footer = view.footer_lines(console, options.update(height=FOOTER_LINES), width)
        return rows + footer

    def _text_box(self, console: Console, width: int, height: int) -> list[list[Segment]]:
        view, inner = self.view, width - 4
        styles = view.flow.styles
        rows = []
        for line, used in view.flow.tail(inner, height - 2):
            row = [Segment(text, styles[style]) for text, style in line]
            row.append(Segment(" " * max(0, inner - used)))
            rows.append(row)
        return _boxed(console, view.title(), rows, width, height)

    def _side_box(self, console: Console, width: int, height: int) -> list[list[Segment]]:
        inner, rows = width - 4, []
        for text in self.view._side()[:height - 2]:
            text.truncate(inner, overflow="ellipsis", pad=True)
            text.stylize_before(text.style)  # Text.render drops a base style: a span keeps it
            rows.append(list(text.render(console)))
        return _boxed(console, Text.assemble(("next token", BORDER)), rows, width, height)


def _boxed(console: Console, title: Text, rows: list[list[Segment]], width: int,
           height: int) -> list[list[Segment]]:
    """Rows of `width` - 4 cells in a rounded blue border with the title in its top edge, padded
    with blank rows to `height` (Panel's look, without its layout passes over every segment)."""
    inner = width - 4
    title.truncate(max(0, width - 6))
    top = [Segment("╭─ ", BORDER), *title.render(console),
           Segment(" " + "─" * max(0, width - 5 - title.cell_len) + "╮", BORDER)]
    left, right = Segment("│ ", BORDER), Segment(" │", BORDER)
    body = [[left, *row, right] for row in rows]
    body.extend([[left, Segment(" " * inner), right]] * (height - 2 - len(rows)))
    return [top, *body, [Segment("╰" + "─" * (width - 2) + "╯", BORDER)]]
