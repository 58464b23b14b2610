"""`charrnn ngram eval`: the same JSON fields as `charrnn eval`, so rows compare one to one."""

from __future__ import annotations

from pathlib import Path

from charrnn.evaluation.scores import scored, too_short
from charrnn.ngram.runs import load_run
from charrnn.tokenizers import check_unknown_policy, refuse_idle_unk


def evaluate_ngram(spec: str | None, root: Path, file: str | None = None,
                   split: str | None = None, unknown: str | None = None,
                   errors: str = "strict", refuse_idle: bool = True) -> dict:
    """`charrnn ngram eval`: score a FILE, or a split of the run's own dataset (default test)."""
    from charrnn import data

    check_unknown_policy(unknown)
    folder, model = load_run(spec, root)
    tokenizer = model.tokenizer
    if refuse_idle:  # (compare asks a skip of its char runs, and scores the others as they are)
        refuse_idle_unk(tokenizer.level, unknown)
    ident = (model.meta.get("dataset") or {}).get("id", "")
    again = f"charrnn ngram eval {folder.name}"
    ids, chars, source, skipped = data.scoring_text(tokenizer, ident, file, split,
                                                    unknown or "error", errors, again)
    total, predicted = model.score_ids(ids)
    if predicted < 1:
        raise too_short(ids, file, split, ident, again)
    return {"run": folder.name, "kind": "ngram", "source": source,
            **scored(total, predicted, ids, chars, tokenizer, skipped)}
