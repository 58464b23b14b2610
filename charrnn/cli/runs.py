"""`charrnn runs`, `charrnn plot` and `charrnn corpus list|get`: what is on disk."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from charrnn.cli import options as opt
from charrnn.cli.errors import command
from charrnn.errors import UserError

corpus_app = typer.Typer(no_args_is_help=True, help="The registry of public corpora.")


def runs_command(out: opt.Out = None) -> None:
    """List the runs under the root with their best scores (a table)."""
    from charrnn.runs import refuse_missing_root
    from charrnn.tui.runs_table import print_runs

    root = opt.root(out)
    if out is not None:  # the default root before a first run is no mistake: "no runs"
        refuse_missing_root(root)
    elif root.is_file():  # ($CHARRNN_RUNS naming a file is one, though)
        raise UserError(f"$CHARRNN_RUNS is {root}, a file, not a runs folder: point it at the "
                        "folder that holds the runs, or unset it")
    print_runs(root)


def plot(
    run_specs: Annotated[list[str], typer.Argument(metavar="RUN...", help="Runs (names or folders) whose curves to draw.")],
    png: Annotated[str, typer.Option("--png", help="PNG file to write.")] = "curves.png",
    out: opt.Out = None,
) -> None:
    """Write a PNG of train/val loss and val bits/char curves for one or several runs."""
    from charrnn.plot import plot_runs

    path = plot_runs(list(run_specs), opt.root(out), Path(png).expanduser())
    typer.echo(f"wrote {path}")


@command(corpus_app, "list")
def corpus_list() -> None:
    """Show the registry of public corpora."""
    from rich.table import Column, Table

    from charrnn.corpora import registry
    from charrnn.tui import table_console

    table = Table("files", "level", "licence", "description")
    table.columns.insert(0, Column("name", no_wrap=True, style="bold"))
    for name, entry in registry().items():
        table.add_row(name, ", ".join(f["name"] for f in entry["files"]), entry.get("level", ""),
                      entry.get("licence", ""), entry.get("description", ""))
    table_console().print(table)


@command(corpus_app, "get")
def corpus_get(
    name: Annotated[str, typer.Argument(help="Registry name (see `charrnn corpus list`).")],
    mirror: opt.Mirror = None,
    allow_unverified: Annotated[bool, typer.Option("--allow-unverified", help="Fetch entries without a recorded sha256.")] = False,
) -> None:
    """Download (or copy from --mirror), verify the sha256 and cache a corpus; print its paths."""
    from charrnn.corpora import get, unverified_hashes

    paths = get(name, mirror, allow_unverified)
    for role, path in paths.items():
        typer.echo(f"{role}\t{path}")
    for role, digest in unverified_hashes(name, paths).items():
        typer.echo(f"note: {role} is unverified (the registry records no sha256); its sha256 is "
                   f"{digest}", err=True)
