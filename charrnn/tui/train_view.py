"""The live training view (`charrnn train` in a terminal): a Reporter drawn with Rich's Live.

    ━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━━  1,200/3,000  40%  elapsed 1m02s  eta 1m31s
    loss 1.6021   val 1.5843 (best 1.5843)   1.711 bpc   lr 2.4e-03   41.3k tok/s   epoch 0.84
    ┌ loss ─────────────────────────────────────────────────────────────────────────────────┐
    │ braille chart: train loss (cyan) and val loss (magenta) against the step                 │
    └──────────────────────────────────────────────────────────────────────────────────────┘
    ┌ sample at step 1,000 ─────────────────────────────────────────────────────────────────┐

Messages (run folder, warnings, the summary) print above the live block and stay in the
scrollback; the block itself stays on screen when training ends. Redraws come from Rich's
refresh thread at 2 per second, so the training loop pays nothing per step.
"""

from __future__ import annotations

import atexit
import time
from collections.abc import Callable

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.progress_bar import ProgressBar
from rich.table import Table
from rich.text import Text

from charrnn.training.reporters import fmt_duration, fmt_eval
from charrnn.tui.keys import NoEcho
from charrnn.tui.textflow import sized
from charrnn.tui.widgets import LineChart

CHART_HEIGHT = 10
SAMPLE_LINES = 4


class LiveTrainReporter:
    def __init__(self, total_steps: int | None = None, preview: Callable[[], str] | None = None,
                 console: Console | None = None, refresh_per_second: float = 2) -> None:
        self.total, self.preview = total_steps, preview
        self.console = console or Console()
        self.train_points: list[tuple[float, float]] = []
        self.val_points: list[tuple[float, float]] = []
        self.last: dict = {}
        self.last_eval: dict = {}
        self.best: dict = {}
        self.last_time = time.time()
        self.sample: tuple[int, str] | None = None
        self.live = Live(console=self.console, get_renderable=self.render,
                         refresh_per_second=refresh_per_second, transient=False)
        self.started = self.closed = False
        self.echo = NoEcho()

    # ---- Reporter -----------------------------------------------------------------------------
    def start(self, preview: Callable[[], str] | None) -> None:
        """The loop begins: the live block appears (messages before it print as lines), with a
        sample of the model at each evaluation when it has one."""
        if preview is not None:
            self.preview = preview
        if not self.started:
            self.started, self.last_time = True, time.time()
            self.echo.start()
            self.live.start()
            # Live hides the cursor: if the process dies before close(), still give the
            # terminal back at exit.
            atexit.register(self.close)

    def history(self, records: list[dict], step: int, elapsed: float) -> None:
        """A resumed run's records so far (metrics.jsonl) and where it resumes: the chart and
        the figures go on from them, not from step 0 and "starting…"."""
        def number(value) -> bool:
            return isinstance(value, (int, float)) and not isinstance(value, bool)

        for rec in records:  # (a hand-edited line with other types is left out)
            if not number(rec.get("step")) or not number(rec.get("val_loss", rec.get("loss"))):
                continue
            if "val_loss" in rec:
                self.val_points.append((rec["step"], rec["val_loss"]))
                self.last_eval = rec
                if rec.get("best") or not self.best:
                    self.best = rec
            elif "loss" in rec:
                self.train_points.append((rec["step"], rec["loss"]))
                self.last = rec
        if self.last:  # its last figures, at the step and time it resumes from
            self.last = {**self.last, "step": step, "elapsed": elapsed, "eta": None}

    def train(self, rec: dict) -> None:
        self.train_points.append((rec["step"], rec["loss"]))
        self.last, self.last_time = rec, time.time()
        if rec.get("max_steps"):
            self.total = rec["max_steps"]

    def eval(self, rec: dict) -> None:
        if "val_loss" in rec:
            self.val_points.append((rec["step"], rec["val_loss"]))
        self.last_eval = rec
        if rec.get("best") or not self.best:
            self.best = rec
        self.message(fmt_eval(rec))
        if self.preview is not None:
            try:
                self.sample = (rec["step"], self.preview())
            except Exception as exc:  # a preview must never stop training
                self.sample = (rec["step"], f"(no sample: {type(exc).__name__}: {exc})")
        if self.started:
            self.live.refresh()

    def message(self, text: str) -> None:
        self.console.print(text, markup=False, highlight=False)

    def close(self) -> None:
        if self.started and not self.closed:
            self.closed = True
            self.live.stop()
            self.echo.stop()
            atexit.unregister(self.close)

    # ---- drawing ------------------------------------------------------------------------------
    def render(self, above: int = 0) -> Group:
        """The block, in the terminal's height less `above` lines drawn over it."""
        width, height = self.console.width, self.console.height - above
        stats = self._stats_line()
        parts = [self._progress_line(width), stats]
        # The block fits the terminal: the figures, the chart, then the sample, which gives way
        # first (a block taller than the screen would scroll and smear).
        room = height - 2 - len(stats.wrap(self.console, width))  # one line spare
        chart_rows = 4  # around the plot: the panel's borders, the step axis and the legend
        sample_lines = max(0, min(SAMPLE_LINES, room - (CHART_HEIGHT + chart_rows) - 2))
        chart_height = CHART_HEIGHT if sample_lines else min(CHART_HEIGHT,
                                                             max(3, room - chart_rows))
        if self.train_points and chart_height <= room - chart_rows:  # else: too short for one
            series = [("train", list(self.train_points), "cyan")]
            if self.val_points:
                series.append(("val", list(self.val_points), "magenta"))
            parts.append(Panel(LineChart(series, chart_height), title="loss (nats/token)",
                               title_align="left", border_style="blue"))
        if self.sample is not None and sample_lines:
            step, text = self.sample
            # Shown, never obeyed: a model of logs writes escape codes (colours, a window title)
            lines = [sized(line) for line in text.split("\n") if line.strip()]
            # Folded to the panel (its borders and padding take 4 cells), so a sample without
            # line breaks fills the panel rather than one line cut with "…"; the newest kept.
            folded = Text("\n".join(lines)).wrap(self.console, max(1, width - 4))
            body = Text("\n").join(list(folded)[-sample_lines:])
            body.no_wrap, body.overflow = True, "ellipsis"
            parts.append(Panel(body, title=f"sample at step {step:,}", title_align="left",
                               border_style="green", height=sample_lines + 2))
        return Group(*parts)

    def _progress_line(self, width: int) -> Table:
        rec = self.last
        step = rec.get("step", 0)
        since = time.time() - self.last_time  # the clock runs before the first log line too
        elapsed = rec.get("elapsed", 0.0) + since
        eta = rec.get("eta")
        eta_now = None if eta is None else max(0.0, eta - since)
        total = self.total
        label = f"{step:,}/{total:,}" if total else f"{step:,}"
        percent = f"{step / total:4.0%}" if total else ""
        figures = f"{label} {percent}  eta {fmt_duration(eta_now)}"
        if width >= 80:
            figures = f"{label} {percent}  elapsed {fmt_duration(elapsed)}  eta {fmt_duration(eta_now)}"
        grid = Table.grid(padding=(0, 1))
        grid.add_column(width=max(10, width - len(figures) - 2))
        grid.add_column(no_wrap=True)
        grid.add_row(ProgressBar(total=total or None, completed=step), Text(figures))
        return grid

    def _stats_line(self) -> Text:
        rec, ev = self.last, self.last_eval
        text = Text()
        if not rec:
            return Text("starting…", style="dim")
        text.append("loss ", style="dim").append(f"{rec['loss']:.4f}", style="bold cyan")
        if "val_loss" in ev:
            text.append("   val ", style="dim").append(f"{ev['val_loss']:.4f}", style="bold magenta")
            text.append(f" (best {self.best.get('val_loss', ev['val_loss']):.4f})", style="dim")
        # The task's own figure: bits/char for an LM, the share of hidden tokens guessed right
        # for the fill model (a tagger reports through plain lines).
        if "val_bpc" in ev:
            text.append(f"   {ev['val_bpc']:.3f}", style="bold").append(" bpc", style="dim")
        elif "val_accuracy" in ev:
            text.append(f"   {ev['val_accuracy']:.1%}", style="bold").append(" right", style="dim")
        text.append("   lr ", style="dim").append(f"{rec['lr']:.2e}")
        text.append(f"   {rec['tokens_per_s'] / 1000:.1f}k", style="bold").append(" tok/s", style="dim")
        text.append("   epoch ", style="dim").append(f"{rec['epoch']:.2f}")
        return text
