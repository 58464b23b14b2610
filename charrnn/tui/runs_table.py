"""`charrnn runs`: every run under the root as a Rich table, oldest first."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

from charrnn import runs
from charrnn.runstats import summary


def _size(count: int | None, unit: str) -> str:
    """3.3M (parameters) or 1.2M n-grams."""
    if count is None:
        return "—"
    text = str(count)
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            text = f"{count / scale:.1f}{suffix}"
            break
    return text if unit == "params" else f"{text} {unit}"


def runs_table(root: Path) -> Table | None:
    folders = runs.list_runs(root)
    if not folders:
        return None
    table = Table(title=f"runs under {root}", title_justify="left")
    table.add_column("name", style="bold", no_wrap=True)
    table.add_column("kind")
    table.add_column("created", no_wrap=True)
    table.add_column("steps", justify="right")
    table.add_column("val loss", justify="right")
    table.add_column("bpc", justify="right")
    table.add_column("level")
    table.add_column("params", justify="right")
    rows = [summary(folder) for folder in folders]
    best_bpc = min((r["val_bpc"] for r in rows if r["val_bpc"] is not None), default=None)
    for row in rows:
        created = (time.strftime("%Y-%m-%d %H:%M", time.localtime(row["created"]))
                   if isinstance(row["created"], (int, float)) else "—")
        bpc = "—" if row["val_bpc"] is None else f"{row['val_bpc']:.4f}"
        if row["val_bpc"] is not None and row["val_bpc"] == best_bpc:
            bpc = f"[green]{bpc}[/green]"  # the best bits/char (comparable across levels)
        table.add_row(
            row["name"], row["kind"], created,
            "—" if row["steps"] is None else f"{row['steps']:,}",
            "—" if row["val_loss"] is None else f"{row['val_loss']:.4f}",
            bpc, row["level"] or "—", _size(row["params"], row["size_unit"]),
        )
    return table


def print_runs(root: Path, console: Console | None = None) -> int:
    """Print the table (or a one-line note when there is no run); the number of runs."""
    console = console or Console()
    table = runs_table(root)
    if table is None:
        console.print(f"no runs under {root} (train one with `charrnn train`, or pass --out)",
                      markup=False)
        return 0
    console.print(table)
    return table.row_count
