"""Standard scores for sequence labelling: conlleval chunk F1 and SIGHAN word P/R/F1.

    chunks    spans (start, end, type) read from IOB/IOB2/IOBES tags with conlleval's own
              start/end rules, so the F1 here is the number conlleval.pl prints
    words     a segmentation is a set of character spans; precision = correct / predicted words,
              recall = correct / gold words (the SIGHAN bakeoff scorer)

Pure Python, no torch: the CLI and the tests use it directly.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence


def _split(tag: str) -> tuple[str, str]:
    """'B-NP' → ('B', 'NP'); 'O' → ('O', '') (conlleval's reading of a tag)."""
    if "-" in tag:
        prefix, kind = tag.split("-", 1)
        return prefix, kind
    return tag, ""


def _chunk_end(prev: str, tag: str, prev_type: str, kind: str) -> bool:
    """conlleval.pl's endOfChunk, with E/S handled as its IOBES Python ports do."""
    if prev in ("E", "S"):
        return True
    if prev in ("B", "I") and tag in ("B", "S", "O"):
        return True
    return prev not in ("O", ".") and prev_type != kind


def _chunk_start(prev: str, tag: str, prev_type: str, kind: str) -> bool:
    """conlleval.pl's startOfChunk (same IOBES additions)."""
    if tag in ("B", "S"):
        return True
    if prev in ("E", "S", "O") and tag in ("E", "I"):
        return True
    return tag not in ("O", ".") and prev_type != kind


def chunks(tags: Sequence[str]) -> set[tuple[int, int, str]]:
    """The chunks of one sentence as (start, end exclusive, type)."""
    found: set[tuple[int, int, str]] = set()
    prev, prev_type, start = "O", "", None
    for i, tag in enumerate([*tags, "O"]):  # a final O closes the last chunk
        cur, kind = _split(tag)
        if start is not None and _chunk_end(prev, cur, prev_type, kind):
            found.add((start, i, prev_type))
            start = None
        if _chunk_start(prev, cur, prev_type, kind):
            start = i
        prev, prev_type = cur, kind
    return found


def prf(correct: int, predicted: int, gold: int) -> dict[str, float]:
    precision = correct / predicted if predicted else 0.0
    recall = correct / gold if gold else 0.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1}


def accuracy(gold: Iterable[Sequence[str]], pred: Iterable[Sequence[str]]) -> float:
    right = total = 0
    for g, p in zip(gold, pred, strict=True):
        right += sum(a == b for a, b in zip(g, p, strict=True))
        total += len(g)
    return right / total if total else 0.0


def chunk_f1(gold: Iterable[Sequence[str]], pred: Iterable[Sequence[str]]) -> dict[str, float]:
    """conlleval over sentences: chunk precision, recall, F1 (and the counts behind them)."""
    return _overlap(gold, pred, chunks)


def spans(words: Sequence[str]) -> set[tuple[int, int]]:
    out, pos = set(), 0
    for word in words:
        out.add((pos, pos + len(word)))
        pos += len(word)
    return out


def word_f1(gold: Iterable[Sequence[str]], pred: Iterable[Sequence[str]]) -> dict[str, float]:
    """SIGHAN scoring: words as character spans of each sentence."""
    return _overlap(gold, pred, spans)


def _overlap(gold: Iterable[Sequence[str]], pred: Iterable[Sequence[str]],
             units: Callable[[Sequence[str]], set]) -> dict[str, float]:
    """Precision, recall and F1 of the units (chunks, word spans) both sides agree on."""
    correct = n_pred = n_gold = 0
    for g, p in zip(gold, pred, strict=True):
        gold_units, pred_units = units(g), units(p)
        correct += len(gold_units & pred_units)
        n_pred += len(pred_units)
        n_gold += len(gold_units)
    return {**prf(correct, n_pred, n_gold), "correct": correct, "predicted": n_pred, "gold": n_gold}


def is_chunk_tagset(labels: Iterable[str]) -> bool:
    """Labels read as chunks: every label is O or has a B/I/E/S prefix and a type."""
    labels = list(labels)
    return bool(labels) and all(
        lab == "O" or (len(lab) > 2 and lab[1] == "-" and lab[0] in "BIES") for lab in labels)
