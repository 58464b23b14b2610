"""`charrnn runs`: every run under the root as a Rich table, oldest first; then the fill groups
(`charrnn fill train`), each with what it has trained and what is left."""

from __future__ import annotations

import time
from pathlib import Path

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table

from charrnn import runs
from charrnn.errors import option
from charrnn.fill import group
from charrnn.runstats import summary
from charrnn.tui import table_console

HEADERS = ("name", "kind", "created", "steps", "best val", "bpc", "level", "params")
NUMERIC = {"steps", "best val", "bpc", "params"}  # printed whole: other columns fold instead
MIN_TEXT = 4  # the narrowest a folding column gets
PIPED_WIDTH = 10_000  # no fold where no terminal is: a name cut in two cannot be grepped
NONE = "—"  # a cell with nothing to show …
ASCII_NONE = "-"  # … where the output cannot hold — (PYTHONIOENCODING=ascii): the table is
# ours to print whole; the user's own text the output cannot hold is refused (cli.errors)


def none_mark(console: Console) -> str:
    """The mark of an empty cell that `console`'s output can hold."""
    try:
        NONE.encode(console.encoding)
    except (UnicodeEncodeError, LookupError):
        return ASCII_NONE
    return NONE


def _size(count: int | None, unit: str, none: str) -> str:
    """3.3M (parameters) or 1.2M n-grams."""
    if count is None:
        return none
    text = str(count)
    for scale, suffix in ((1e9, "G"), (1e6, "M"), (1e3, "k")):
        if count >= scale:
            text = f"{count / scale:.1f}{suffix}"
            break
    return text if unit == "params" else f"{text} {unit}"


def _cells(row: dict, none: str) -> list[str]:
    created = (time.strftime("%Y-%m-%d %H:%M", time.localtime(row["created"]))
               if isinstance(row["created"], (int, float)) else none)
    bpc = none if row["val_bpc"] is None else f"{row['val_bpc']:.4f}"
    return [row["name"], row["kind"], created,
            none if row["steps"] is None else f"{row['steps']:,}",
            row.get("score") or (none if row["val_loss"] is None else f"{row['val_loss']:.4f}"),
            bpc, row["level"] or none, _size(row["params"], row["size_unit"], none)]


def _text_caps(rows: list[list[str]], width: int) -> dict[str, int]:
    """Widest each text column may be so that the numeric columns fit whole in `width`:
    the room left after them, shared out (narrow columns keep their natural width)."""
    # (in terminal cells: a CJK name is twice its length, and a cap of its length folded it)
    natural = {h: max(cell_len(h), *(cell_len(r[i]) for r in rows)) for i, h in enumerate(HEADERS)}
    room = width - sum(natural[h] for h in NUMERIC) - 2 * (len(HEADERS) - 1)  # column gaps
    texts = sorted((h for h in HEADERS if h not in NUMERIC), key=natural.get)
    caps = {}
    for index, name in enumerate(texts):  # water-filling: the widest gets what is left
        share = max(MIN_TEXT, room // (len(texts) - index))
        caps[name] = min(natural[name], share)
        room -= caps[name]
    return caps


def runs_table(root: Path, width: int = 80, none: str = NONE) -> Table | None:
    folders = runs.list_runs(root)
    damaged = runs.damaged_runs(root)
    if not folders and not damaged:
        return None
    summaries = [summary(folder) for folder in folders]
    best_bpc = min((r["val_bpc"] for r in summaries if r["val_bpc"] is not None), default=None)
    rows = [_cells(r, none) for r in summaries]
    # A run.json that is not JSON: one row saying so, rather than a run that silently vanishes.
    rows += [[folder.name, "damaged", ("unreadable " if (folder / runs.RUN_FILE).exists() else
                                       "no ") + runs.RUN_FILE, *[none] * 5]
             for folder in damaged]
    caps = _text_caps(rows, width)
    table = Table(title=f"runs under {root}", title_justify="left", box=None, pad_edge=False,
                  padding=(0, 1), header_style="bold underline")
    for name in HEADERS:
        if name in NUMERIC:
            table.add_column(name, justify="right", no_wrap=True)
        else:
            table.add_column(name, overflow="fold", max_width=caps[name],
                             style="bold" if name == "name" else None)
    for cells in rows:
        if best_bpc is not None and cells[5] == f"{best_bpc:.4f}":
            cells = [*cells[:5], f"[green]{cells[5]}[/green]", *cells[6:]]  # best bits/char
        table.add_row(*cells)
    return table


def groups_table(root: Path, none: str = NONE) -> Table | None:
    """The fill groups under the root: their stages done, time spent and what is left."""
    found, damaged = group.scan(root)  # (a damaged one gets a row saying so)
    if not found and not damaged:
        return None
    table = Table(title=f"fill groups under {root}", title_justify="left", box=None,
                  pad_edge=False, padding=(0, 1), header_style="bold underline")
    table.add_column("group", style="bold", overflow="fold")
    table.add_column("created", overflow="fold")
    table.add_column("trained", justify="right", no_wrap=True)
    table.add_column("time", justify="right", no_wrap=True)
    table.add_column("left", overflow="fold")
    for folder, info in found:
        stages = info["stages"]
        done = sum(stage.get("state") == "done" for stage in stages)
        created = time.strftime("%Y-%m-%d %H:%M", time.localtime(float(info.get("created", 0))))
        spent = f"{info.get('spent_s', 0):,.0f} of {info.get('max_time', 0):,.0f} s"
        table.add_row(folder.name, created, f"{done} of {len(stages)}", spent,
                      _left_words(folder, info, none))
    for folder in damaged:  # one row saying so, rather than a group that silently vanishes
        table.add_row(folder.name, "damaged", none, none, f"unreadable {group.FILE}")
    return table


def _left_words(folder: Path, info: dict, none: str) -> str:
    """A group's 'left' cell: what is still to train, then what was skipped or is gone."""
    words = [", ".join(group.left_to_do(folder, info)) or none]
    for label, what in (("skipped", group.skipped(info)), ("gone", group.missing(folder, info))):
        if what:
            words.append(f"{label}: {', '.join(what)}")
    return "; ".join(words)


def print_runs(root: Path, console: Console | None = None) -> int:
    """Print the table (or a one-line note when there is no run), then the fill groups; the
    number of runs."""
    if console is None:  # piped (| grep, | cut, a file): rows whole, unless COLUMNS says
        console = table_console(PIPED_WIDTH)
    table = runs_table(root, console.width, none_mark(console))
    if table is None:
        console.print(f"no runs under {root} (train one with `charrnn train`, or pass {option('out')})",
                      markup=False)
    else:
        console.print(table)
    groups = groups_table(root, none_mark(console))
    if groups is not None:
        console.print()
        console.print(groups)
    return 0 if table is None else table.row_count
