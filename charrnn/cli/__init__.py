"""The `charrnn` command line: parse options, delegate to the library, report errors in one line.

    app.py       the Typer app, `main` (the console entry point) and the commands of the top level
    options.py   every option declared once, defaults from the config dataclasses
    errors.py    the error contract: one line, exit codes
    ngram.py, tag.py (tag and fill)   the command groups
"""

from charrnn.cli.app import app, main

__all__ = ["app", "main"]
