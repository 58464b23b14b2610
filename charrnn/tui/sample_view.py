"""What the sampling view shows, and how it is laid out.

The sampler hands the loop a chunk of tokens at a time, with what the view needs of each already
computed inside the chunk (decode.token_stats): the chosen token's probability, the entropy and
the top-5 alternatives, a dozen numbers a token. `record()` keeps them as plain floats (no
distribution, no tensor: memory and a frame's work stay bounded whatever the vocabulary size);
`flush()`, once per frame, folds the pending text into the text flow, coloured by probability,
and shows the top-5 of the newest token.
"""

from __future__ import annotations

import math
from collections import deque
from dataclasses import dataclass, field

from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.panel import Panel
from rich.segment import Segment
from rich.style import Style
from rich.table import Table
from rich.text import Text

from charrnn.lm.cpustep import TOP
from charrnn.tui.textflow import TextFlow
from charrnn.tui.widgets import BUCKET_STYLES, PRIME_STYLE, bar, bucket, fit, legend, sparkline, token_label

SIDE_WIDTH = 40
PRIME = len(BUCKET_STYLES)  # style index of the prime in the text flow
NARROW = SIDE_WIDTH + 30  # below this width the side panel is hidden: the footer says more


@dataclass
class ViewInfo:
    """Fixed facts shown in the side panel."""

    model: str
    checkpoint: str
    token_strings: list[str]


@dataclass
class SampleView:
    info: ViewInfo
    opts: object  # SampleOptions: read live, so +/- show at once
    flow: TextFlow = field(default_factory=lambda: TextFlow([*BUCKET_STYLES, PRIME_STYLE]))
    pending_text: list[str] = field(default_factory=list)
    pending_p: list[float] = field(default_factory=list)  # the chosen token's probability
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

    def record(self, ids: list[int], texts: list[str], stats: list[list[float]]) -> None:
        """A chunk of tokens: ids, decoded texts, and per token (chosen p, entropy in bits, the
        top-5 probabilities, their ids), as decode.token_stats packs them."""
        self.pending_text.extend(texts)
        self.pending_p.extend(row[0] for row in stats)
        self.entropies.extend(row[1] for row in stats)
        self.generated += len(ids)
        self.chosen, self.newest = ids[-1], stats[-1]

    def flush(self) -> None:
        for text, p in zip(self.pending_text, self.pending_p, strict=True):
            self.flow.add(text, bucket(p))
        self.pending_text.clear()
        self.pending_p.clear()
        if self.newest is not None:
            row = self.newest
            self.chosen_p = row[0]
            top = (len(row) - 2) // 2  # TOP, or the vocabulary size when smaller
            self.candidates = [(int(i), v) for i, v in zip(row[2 + top:], row[2:2 + top],
                                                             strict=True)]

    # ---- rendering ----------------------------------------------------------------------------
    def render(self, width: int | None = None) -> Frame:  # noqa: ARG002 (sized at render time)
        return Frame(self)

    def title(self) -> Text:
        state = "paused" if self.paused else ("done" if self.generated >= self.target else "live")
        return Text.assemble(("sample ", "bold"), (f"· {state}", _STATE_STYLE[state]))

    def _side(self) -> Group:
        inner = SIDE_WIDTH - 4
        names = self.info.token_strings
        rows = Text()
        for index, (token, p) in enumerate(self.candidates):
            mark = "◀" if token == self.chosen else " "
            label = token_label(names[token] if token < len(names) else "?", 8)
            rows.append(f"{label} ", style="bold" if token == self.chosen else "")
            rows.append(bar(p, inner - 18), style=BUCKET_STYLES[bucket(p)])
            rows.append(f" {p:6.1%} {mark}" + ("\n" if index < len(self.candidates) - 1 else ""))
        if not self.candidates:
            rows.append("(waiting for the first token)", style="dim")
        ent = self.entropies[-1] if self.entropies else 0.0
        top_bits = math.log2(max(2, len(names)))
        opts = self.opts
        label_w = 11
        value_w = inner - label_w - 1
        stats = Table.grid(padding=(0, 1))
        stats.add_column(style="dim", no_wrap=True, width=label_w)
        stats.add_column(no_wrap=True, width=value_w)
        ent_text = f" {ent:4.2f} bits" if ent < 10 else f" {ent:4.1f} bits"
        stats.add_row("entropy", Text.assemble((sparkline(self.entropies, value_w - 10, top_bits),
                                                "magenta"), ent_text))
        stats.add_row("speed", Text(f"{self.rate:,.0f} tok/s", style="bold cyan"))
        stats.add_row("tokens", f"{self.generated:,} / {self.target:,}")
        stats.add_row("temp", Text(f"{opts.temperature:.2f}", style="bold")
                      + Text("  greedy" if opts.greedy else ""))
        stats.add_row("top-k", str(opts.top_k or "—"))
        stats.add_row("top-p", str(opts.top_p or "—"))
        stats.add_row("seed", str(self.seed))
        stats.add_row("model", fit(self.info.model, value_w))
        stats.add_row("checkpoint", fit(self.info.checkpoint, value_w))
        return Group(Text(f"top-{TOP} candidates", style="bold"), rows, Text(""), stats)

    def _footer(self, width: int) -> Group:
        space = "more" if self.generated >= self.target else ("resume" if self.paused else "pause")
        if width >= NARROW:
            keys = Text.assemble(
                ("space", "bold"), f" {space}  ", ("+/-", "bold"), " temperature  ", ("r", "bold"),
                " restart (new seed)  ", ("s", "bold"), " save  ", ("q", "bold"), " quit")
            return Group(legend(), keys, _one_line(Text(self.status, style="italic yellow")))
        # No side panel: the footer carries the figures, and the keys in short.
        figures = Text.assemble((f"temp {self.opts.temperature:.2f}", "bold"),
                                f"  {self.rate:,.0f} tok/s  {self.generated:,}/{self.target:,}  ")
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
    """The whole screen: text box | side panel, footer below.

    The text box draws its own border around pre-folded lines, so each frame passes over the
    many small coloured segments of the text once, not once per nested layout level (Layout →
    Panel → Padding each re-crop every line): this is most of a frame's cost.
    """

    def __init__(self, view: SampleView) -> None:
        self.view = view

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        view = self.view
        width, height = options.max_width, options.height or options.size.height
        if width < 16 or height < FOOTER_LINES + 3:
            yield Text("terminal too small", style="bold red")
            return
        body = height - FOOTER_LINES
        side_width = SIDE_WIDTH if width >= SIDE_WIDTH + 30 else 0
        side = (console.render_lines(
            Panel(view._side(), title="next token", title_align="left", border_style="blue"),
            options.update(width=side_width, height=body), pad=True) if side_width else None)
        text_rows = self._text_box(console, width - side_width, body)
        for row in range(body):
            yield from text_rows[row]
            if side is not None:
                yield from side[row]
            yield Segment.line()
        footer = console.render_lines(view._footer(width), options.update(width=width,
                                                                     height=FOOTER_LINES), pad=True)
        for line in footer:
            yield from line
            yield Segment.line()

    def _text_box(self, console: Console, width: int, height: int) -> list[list[Segment]]:
        view, inner = self.view, width - 4
        styles = view.flow.styles
        title = view.title()
        title.truncate(max(0, width - 6))
        top = [Segment("╭─ ", BORDER), *title.render(console),
               Segment(" " + "─" * max(0, width - 5 - title.cell_len) + "╮", BORDER)]
        rows = [top]
        lines = view.flow.tail(inner, height - 2)
        for line, used in lines:
            row = [Segment("│ ", BORDER)]
            row.extend(Segment(text, styles[style]) for text, style in line)
            row.append(Segment(" " * max(0, inner - used)))
            row.append(Segment(" │", BORDER))
            rows.append(row)
        blank = [Segment("│ ", BORDER), Segment(" " * inner), Segment(" │", BORDER)]
        rows.extend([blank] * (height - 2 - len(lines)))
        rows.append([Segment("╰" + "─" * (width - 2) + "╯", BORDER)])
        return rows
