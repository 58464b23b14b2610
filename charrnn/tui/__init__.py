"""Live terminal views: sampling (`charrnn sample` in a TTY) and training (`charrnn train`).

    keys.py         raw key presses without blocking (cbreak + select), terminal restored
    textflow.py     generated text folded into lines once per token, by terminal cell width
    widgets.py      probability colours and legend, bars, sparklines, a braille line chart
    sample_view.py  the sampling screen: text, top-5 candidates, entropy, speed, settings
    sample_app.py   the sampling loop: the same engine as plain output (no torch where it has
                    none), bounded redraws
    train_view.py   the training reporter: progress, ETA, loss curves, a sample at each eval
    runs_table.py   `charrnn runs`
    fill_repl.py    `charrnn fill -i`: the Rich prompt
"""

from __future__ import annotations

import os
import sys

UNUSABLE_COLUMNS = 20  # a table this narrow printed nothing (COLUMNS=0) or only "…" cells …
LEAST_COLUMNS = 60  # … so it is drawn this wide instead (the terminal wraps the long lines)


def table_console(piped_width: int | None = None):
    """A Rich console for a table: `piped_width` where no terminal reads (rows whole for grep,
    unless COLUMNS says); a width no table fits in is taken as LEAST_COLUMNS."""
    from rich.console import Console

    console = Console()
    if piped_width and not console.is_terminal and not os.environ.get("COLUMNS"):
        return Console(width=piped_width)
    return console if console.width >= UNUSABLE_COLUMNS else Console(width=LEAST_COLUMNS)


def live_capable() -> bool:
    """A terminal on both ends (keys in, screen out), one that moves the cursor, and termios to
    read single keys."""
    try:
        import termios  # noqa: F401
    except ImportError:  # Windows: plain output
        return False
    if os.environ.get("TERM", "") in ("dumb", "unknown"):  # no cursor moves: plain text
        return False
    try:
        if not (sys.stdin.isatty() and sys.stdout.isatty()):
            return False
    except (AttributeError, ValueError):
        return False
    from rich.console import Console

    return Console().is_terminal  # TTY_COMPATIBLE=0 and the like: Rich writes no screen


def use_live_view(plain: bool, beam: int | None, num_samples: int, direction: str) -> bool:
    """The live view samples one left-to-right stream; beam search, several samples and
    backward models (whose text is reversed at the end) stay plain."""
    return (not plain and not beam and num_samples == 1 and direction == "forward"
            and live_capable())


def live_sample(*args, **kwargs):
    from charrnn.tui.sample_app import live_sample as run

    return run(*args, **kwargs)
