"""The live view of `charrnn fill train`: the stages of the group above the training view.

    ┌ fill group 2026-12-04_19-40-00_fill ── 7m12s of 20m00s ─────────────────────────────┐
    │ ✓ n-gram       …-ngram   done in 9 s                                                  │
    │ ▶ forward LM   …-fwd     budget 7m31s, 4m02s left                                     │
    │ · backward LM  …-bwd                                                                  │
    │ · fill model   …-mask                                                                 │
    └───────────────────────────────────────────────────────────────────────────────────────┘
    (the training view of the stage that runs: progress, loss chart, sample — tui.train_view)

One LiveTrainReporter per stage (the loop closes its reporter when the stage ends); the stage
panel is drawn from the group's record, which charrnn.fill.train_group keeps up to date.
"""

from __future__ import annotations

from rich.console import Console, Group
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from charrnn.fill.group import ROLES
from charrnn.training.reporters import fmt_duration
from charrnn.tui.train_view import LiveTrainReporter

MARKS = {"done": ("✓", "green"), "running": ("▶", "bold cyan"), "stopped": ("■", "yellow"),
         "skipped": ("-", "dim"), "pending": ("·", "dim")}


def stage_table(info: dict) -> Table:
    table = Table.grid(padding=(0, 2))
    for stage in info["stages"]:
        mark, style = MARKS.get(stage.get("state", "pending"), ("?", ""))
        state = stage.get("state")
        if state == "done":
            what = f"done in {fmt_duration(stage.get('used_s'))}"
        elif stage.get("budget_s"):  # the time left counting down (booked at each line)
            left = max(0.0, stage["budget_s"] - stage.get("used_s", 0.0))
            what = f"budget {fmt_duration(stage['budget_s'])}, {fmt_duration(left)} left"
        else:
            what = ""
        table.add_row(Text(mark, style=style), ROLES[stage["role"]], stage["run"], what)
    return table


def stage_panel(name: str, info: dict) -> Panel:
    spent = f"{fmt_duration(info.get('spent_s'))} of {fmt_duration(info['max_time'])}"
    return Panel(stage_table(info), title=f"fill group {name} · {spent} spent",
                 title_align="left", border_style="blue")


class FillTrainView(LiveTrainReporter):
    """The training view of one stage under the panel of all stages."""

    def __init__(self, name: str, info: dict, console: Console | None = None) -> None:
        self.name, self.info = name, info  # before the parent's Live first draws
        super().__init__(console=console)

    def render(self, above: int = 0) -> Group:
        """The stages' panel, then the stage's training in the lines left under it (a short
        terminal drops the training's chart and sample first, then the panel is all)."""
        panel = stage_panel(self.name, self.info)
        rows = len(self.console.render_lines(panel, self.console.options, pad=False))
        if self.console.height - above - rows < 3:  # not even the progress line fits under it
            return Group(panel)
        return Group(panel, super().render(above + rows))
