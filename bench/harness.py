"""What the benches that drive `charrnn` share: a scratch folder (its own cache and runs root) and
the real command line, run in this process."""

from __future__ import annotations

import atexit
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path


def temporary(prefix: str) -> Path:
    """A fresh work folder, removed when the bench ends (a pass over the benches left ~850 MB
    of runs and datasets in /tmp); CHARRNN_KEEP_SCRATCH=1 keeps it to look into."""
    work = Path(tempfile.mkdtemp(prefix=prefix))
    if not os.environ.get("CHARRNN_KEEP_SCRATCH"):
        atexit.register(shutil.rmtree, work, ignore_errors=True)
    return work


def scratch(prefix: str) -> Path:
    """A `temporary` work folder; the dataset cache goes inside it unless $CHARRNN_CACHE says
    else."""
    work = temporary(prefix)
    os.environ.setdefault("CHARRNN_CACHE", str(work / "cache"))
    return work


def cli(work: Path) -> Callable[..., str]:
    """`run("train", …)`: the command with `--out WORK/runs`, its stdout; a failure ends the
    bench with the command's output."""
    from typer.testing import CliRunner

    from charrnn.cli.app import app

    runner = CliRunner()

    def run(*argv: str) -> str:
        result = runner.invoke(app, [*map(str, argv), "--out", str(work / "runs")])
        if result.exit_code != 0:
            sys.exit(result.output)
        return result.stdout

    return run
