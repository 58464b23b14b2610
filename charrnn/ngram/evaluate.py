"""Scoring an n-gram run: the same JSON fields as `charrnn eval`, so rows compare one to one."""

from __future__ import annotations

from pathlib import Path

from charrnn import runs
from charrnn.errors import UserError
from charrnn.ngram.model import NGramModel, load
from charrnn.scores import scored, too_short


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


def evaluate_ngram(spec: str | None, root: Path, file: str | None = None,
                   split: str | None = None, unknown: str = "error",
                   errors: str = "strict") -> dict:
    """`charrnn ngram eval`: score a FILE, or a split of the run's own dataset (default test)."""
    from charrnn import data

    if unknown not in ("error", "skip"):
        raise UserError(f"--unk must be 'error' or 'skip', not {unknown!r}")
    if file is not None and split is not None:
        raise UserError("give a FILE or --split, not both")
    folder, model = load_run(spec, root)
    tokenizer = model.tokenizer
    ident = (model.meta.get("dataset") or {}).get("id", "")
    again = f"charrnn ngram eval {folder.name}"
    ids, chars, source, skipped = data.scoring_text(tokenizer, ident, file, split, unknown, errors, again)
    total, predicted = model.score_ids(ids)
    if predicted < 1:
        raise too_short(ids, file, split, ident, again)
    return {"run": folder.name, "kind": "ngram", "source": source,
            **scored(total, predicted, ids, chars, tokenizer, skipped)}
