"""An n-gram run folder: a RUN argument → the folder (another kind refused), and its model."""

from __future__ import annotations

from pathlib import Path

from charrnn import runs
from charrnn.errors import UserError
from charrnn.ngram.model import NGramModel, load


def resolve(spec: str | None, root: Path, action: str = "eval") -> Path:
    """RUN → the n-gram run folder (another kind is refused with the command to use instead;
    action: "eval" or "sample")."""
    folder = runs.resolve_run(spec, root, kind="ngram")
    runs.check_kind(folder, runs.run_info(folder).get("kind"), "ngram", action)
    if not (folder / "model").is_dir():
        raise UserError(f"n-gram run {folder} has no model/ folder: train it again")
    return folder


def load_run(spec: str | None, root: Path, action: str = "eval") -> tuple[Path, NGramModel]:
    folder = resolve(spec, root, action)
    return folder, load(folder / "model")
