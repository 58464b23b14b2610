"""What a run folder says about itself: its metrics curves and a one-row summary. Torch-free.

Used by `charrnn runs` (the table) and `charrnn plot` (the curves). Everything is read from the
files training leaves behind (run.json, metrics.jsonl, checkpoint.json, the safetensors header),
and a missing or torn file only blanks the cells it would fill.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from charrnn import runs

TAGGER_SCORES = ("f1", "accuracy")  # what a tagger's evaluations score, the first one it has


def tagger_score(evals: list[dict]) -> str:
    """The score a tagger's evaluations hold: F1 (chunks, words), else accuracy."""
    return next((k for k in TAGGER_SCORES if any(k in r for r in evals)), TAGGER_SCORES[0])


def score_label(score: str) -> str:
    return "F1" if score == "f1" else score


def read_metrics(folder: Path, scores: tuple[str, ...] = ("val_loss",)
                 ) -> tuple[list[dict], list[dict]]:
    """(train records, eval records holding one of `scores`) from <run>/metrics.jsonl, in step
    order. A language model's evaluations hold val_loss, a tagger's f1 and/or accuracy."""
    train, evals = [], []
    path = folder / "metrics.jsonl"
    if not path.is_file():
        return train, evals
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue  # a torn last line after a crash
        rec = _clean(rec)
        if rec is None:
            continue
        if rec.get("type") == "eval" and any(k in rec for k in scores):
            evals.append(rec)
        elif rec.get("type") == "train" and "loss" in rec:
            train.append(rec)
    return sorted(train, key=lambda r: r["step"]), sorted(evals, key=lambda r: r["step"])


NUMBERS = ("loss", "val_loss", "val_bpc", "f1", "accuracy", "lr", "tok_per_s")


def _number(value: object) -> float | None:
    """A finite number as JSON holds one (a damaged field, a bool, a string, NaN: None)."""
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return value if ok else None


def _clean(rec: object) -> dict | None:
    """A metrics record with an integer step, its damaged figures dropped (a blank cell, a
    missing point); None for what is no record."""
    if not isinstance(rec, dict) or not isinstance(rec.get("step"), int) or \
            isinstance(rec["step"], bool):
        return None
    return {k: v for k, v in rec.items() if k not in NUMBERS or _number(v) is not None}


def _section(data: dict, key: str) -> dict:
    value = data.get(key)
    return value if isinstance(value, dict) else {}


def _json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def safetensors_params(path: Path) -> int | None:
    """Parameter count from a safetensors header (8-byte length + JSON), without loading it:
    floating-point tensors only (integer ones are buffers, as the adaptive softmax's order)."""
    try:
        with open(path, "rb") as handle:
            (size,) = struct.unpack("<Q", handle.read(8))
            if size > 100_000_000:
                return None
            header = json.loads(handle.read(size))
    except (OSError, ValueError, struct.error):
        return None
    total = 0
    for name, entry in header.items():
        if name != "__metadata__" and isinstance(entry, dict) and \
                str(entry.get("dtype", "F")).startswith(("F", "BF")):
            count = 1
            for dim in entry.get("shape", []):
                count *= int(dim)
            total += count
    return total


def summary(folder: Path) -> dict:
    """One row of `charrnn runs`: name, kind, created, steps, best val loss/bpc (a tagger's best
    F1 or accuracy), level, size."""
    info = _json(folder / runs.RUN_FILE)
    kind = runs.kind_name(info.get("kind", "?"))
    parent = _section(info, "init_from").get("run")
    row = {"name": folder.name, "kind": f"{kind} ← {parent}" if parent else kind,
           "parent": parent, "created": info.get("created"), "steps": None,
           "val_loss": None, "val_bpc": None, "level": _section(info, "dataset").get("level"),
           "params": None, "size_unit": "params"}
    if kind == "ngram":
        meta = _json(folder / "model" / "model.json")
        offsets = meta.get("offsets")
        if isinstance(offsets, list) and offsets and _number(offsets[-1]) is not None:
            row["params"], row["size_unit"] = int(offsets[-1]), "n-grams"
        if isinstance(meta.get("order"), int):
            row["kind"] = f"ngram ({meta['order']})"
        return row
    train, evals = read_metrics(folder, TAGGER_SCORES if kind == "tag" else ("val_loss",))
    if kind == "tag":  # a tagger's validation is a score, higher better
        score = tagger_score(evals)
        if any(score in r for r in evals):
            row["score"] = f"{score_label(score)} {max(r[score] for r in evals if score in r):.4f}"
    elif evals:
        best = min(evals, key=lambda r: r["val_loss"])
        row["val_loss"], row["val_bpc"] = best["val_loss"], best.get("val_bpc")
    steps = [r["step"] for r in train + evals]
    for name in ("last", "best"):
        ckpt = _json(folder / name / "checkpoint.json")
        if not ckpt:
            continue
        row["level"] = row["level"] or _section(ckpt, "tokenizer").get("level")
        step = _section(ckpt, "progress").get("step")
        if isinstance(step, int) and not isinstance(step, bool):
            steps.append(step)
        metrics = _section(ckpt, "metrics")
        # best/ holds the best scores themselves: metrics.jsonl may have lost its last line
        # (a kill during an append), and with it the best evaluation.
        if (name == "best" or row["val_loss"] is None) and kind != "tag" \
                and _number(metrics.get("val_loss")) is not None:
            row["val_loss"], row["val_bpc"] = metrics["val_loss"], _number(metrics.get("val_bpc"))
        score = tagger_score([metrics]) if kind == "tag" else None
        if name == "best" and _number(metrics.get(score)) is not None:
            row["score"] = f"{score_label(score)} {metrics[score]:.4f}"
        if row["params"] is None:
            row["params"] = safetensors_params(folder / name / "model.safetensors")
    row["steps"] = max(steps) if steps else None
    return row
