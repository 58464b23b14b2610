"""The `charrnn` command line: parse options, delegate to the library, report errors in one line.

    app.py       the Typer app with every command mounted, and `main` (the entry point)
    options.py   every shared option declared once, defaults from the config dataclasses
    errors.py    the error contract (one ladder): one line, exit codes
    train.py     preprocess, train            sample.py    sample
    evaluate.py  eval                          runs.py      runs, plot, corpus
    ngram.py     ngram …, compare              tag.py       tag …
    fill.py      fill …
"""

from charrnn.cli.app import app, main

__all__ = ["app", "main"]
