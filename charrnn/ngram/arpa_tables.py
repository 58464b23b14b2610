"""ARPA n-grams (parsed by arpa.py) → our suffix-sorted tables.

The fast path finds each n-gram's suffix and context by their spelling among the n-grams one
order down; files where one is missing (pruned SRILM models) go through the general path,
which works on id rows and inserts the missing n-grams as blanks: probability = back-off of
the context + probability of the suffix, back-off 0, exactly what a back-off query would give.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from charrnn.errors import UserError
from charrnn.ngram.count import Order
from charrnn.ngram.model import NGramModel, assemble

LOG10 = math.log(10.0)
MISSING_LOG10 = -99.0


def _finite(values: np.ndarray, top: float | None) -> np.ndarray:
    """-inf (a zero probability) becomes ARPA's -99, and so does a value float32 cannot hold
    (-1e39 would be -inf in the model, which then reads as damaged); NaN is refused."""
    if np.isnan(values).any() or np.isposinf(values).any():
        raise UserError("the ARPA file has a probability or back-off that is not a number")
    zero = values < np.finfo(np.float32).min
    values = np.where(zero, MISSING_LOG10 * LOG10, values)  # (-100 stays -100)
    return values if top is None else np.minimum(values, top)


def _unigrams(parsed, index: dict, words: int, vocab: int, skip_unknown: bool):
    logp = np.full(words, MISSING_LOG10 * LOG10)
    backoff = np.zeros(words)
    lp, bo, names = parsed[0]
    for i, name in enumerate(names):
        word = index.get(name)
        if word is None:
            if skip_unknown:  # the -99 </s>, <unk> of a one-stream export
                continue
            raise UserError(f"unigram {name!r} is not in the vocabulary")
        logp[word], backoff[word] = lp[i], bo[i]
    logp[vocab] = 0.0  # <s>: never predicted
    return logp, backoff


def build_fast(parsed, index: dict, words: int, vocab: int, skip_unknown: bool
                ) -> NGramModel | None:
    """Tables by string lookups of each n-gram's suffix and context (None if one is missing)."""
    logp1, bo1 = _unigrams(parsed, index, words, vocab, skip_unknown)
    logps, backoffs, tables = [logp1], [bo1], []
    lower = {name: i for name, i in index.items()}
    for n in range(2, len(parsed) + 1):
        lp, bo, names = parsed[n - 1]
        first = np.empty(len(names), np.int64)
        suffix = np.empty(len(names), np.int64)
        prefix = np.empty(len(names), np.int64)
        try:
            for i, name in enumerate(names):
                head, tail = name.split(" ", 1)
                first[i] = index[head]
                suffix[i] = lower[tail]
                prefix[i] = lower[name.rsplit(" ", 1)[0]]
        except KeyError:
            return None
        sort = np.argsort(suffix * words + first, kind="stable")
        logps.append(lp[sort])
        backoffs.append(bo[sort] if n < len(parsed) else np.zeros(len(sort)))
        tables.append(Order(first[sort].astype(np.int32), suffix[sort].astype(np.int32),
                            prefix[sort].astype(np.int32), np.zeros(len(sort), np.int64)))
        lower = {names[j]: rank for rank, j in enumerate(sort.tolist())}
    if len(parsed) == 1:
        backoffs[0] = np.zeros(words)
    return assemble({"counts_unpruned": [len(p[2]) for p in parsed]},
                    [_finite(lp, 0.0) for lp in logps], [_finite(b, None) for b in backoffs],
                    words, tables)


def to_ids(path: Path, parsed, index: dict, skip_unknown: bool):
    rows, values = [], []
    for n, (lp, bo, names) in enumerate(parsed, 1):
        ids = np.empty((len(names), n), np.int64)
        keep = np.ones(len(names), bool)
        for i, name in enumerate(names):
            for k, word in enumerate(name.split(" ")):
                word_id = index.get(word)
                if word_id is None:
                    if skip_unknown and n == 1:  # the -99 </s>, <unk> of a one-stream export
                        keep[i] = False
                        break
                    raise UserError(f"{path}: {n}-gram {name!r} uses a word missing from the "
                                    "unigrams")
                ids[i, k] = word_id
        rows.append(ids[keep])
        values.append(np.stack([lp, bo], axis=1)[keep])
    return rows, values


def build_general(rows: list[np.ndarray], values: list[np.ndarray], words: int, vocab: int
           ) -> NGramModel:
    """Our suffix-sorted tables from n-gram rows, adding blank suffixes and contexts."""
    order = len(rows)
    logp1 = np.full(words, MISSING_LOG10 * LOG10)
    bo1 = np.zeros(words)
    logp1[rows[0][:, 0]] = values[0][:, 0]
    bo1[rows[0][:, 0]] = values[0][:, 1]
    logp1[vocab] = 0.0  # <s>: never predicted
    # Blanks: every n-gram's suffix and context must exist one order down.
    blank = [np.zeros(len(r), bool) for r in rows]
    for n in range(order, 1, -1):
        need = np.concatenate([rows[n - 1][:, 1:], rows[n - 1][:, :-1]])
        if n - 1 == 1:
            continue  # the unigram table holds every word id (missing ones at log10 p = -99)
        have = rows[n - 2]
        merged = np.concatenate([have, need])
        unique, first = np.unique(merged, axis=0, return_index=True)
        new = first >= len(have)
        if new.any():
            rows[n - 2] = np.concatenate([have, unique[new]])
            values[n - 2] = np.concatenate([values[n - 2], np.full((int(new.sum()), 2), np.nan)])
            values[n - 2][len(have):, 1] = 0.0
            blank[n - 2] = np.concatenate([blank[n - 2], np.ones(int(new.sum()), bool)])
    logps, backoffs, tables = [logp1], [bo1], []
    keys = [np.arange(words, dtype=np.int64)]  # per order: sorted packed (suffix, word) keys
    for n in range(2, order + 1):
        r, v = rows[n - 1], values[n - 1]
        suffix = _lookup(r[:, 1:], keys, words)
        prefix = _lookup(r[:, :-1], keys, words)
        key = suffix * words + r[:, 0]
        sort = np.argsort(key, kind="stable")
        r, v, suffix, prefix, key = r[sort], v[sort], suffix[sort], prefix[sort], key[sort]
        lp = v[:, 0].copy()
        holes = blank[n - 1][sort]
        lp[holes] = backoffs[-1][prefix[holes]] + logps[-1][suffix[holes]]
        logps.append(lp)
        backoffs.append(v[:, 1] if n < order else np.zeros(len(r)))
        tables.append(Order(r[:, 0].astype(np.int32), suffix.astype(np.int32),
                            prefix.astype(np.int32), np.zeros(len(r), np.int64)))
        keys.append(key)
    if order > 1:
        backoffs[-1] = np.zeros(len(rows[-1]))
    return assemble({"counts_unpruned": [len(r) for r in rows]},
                    [_finite(lp, 0.0) for lp in logps], [_finite(b, None) for b in backoffs],
                    words, tables)


def _lookup(rows: np.ndarray, keys: list[np.ndarray], words: int) -> np.ndarray:
    """Local ids of n-gram rows (orders with tables in `keys`), found right to left."""
    ids = rows[:, -1].astype(np.int64)
    for k in range(rows.shape[1] - 2, -1, -1):
        table = keys[rows.shape[1] - 1 - k]
        key = ids * words + rows[:, k]
        at = np.searchsorted(table, key)
        at = np.minimum(at, len(table) - 1)
        if len(table) == 0 or (table[at] != key).any():
            raise UserError("the ARPA file is inconsistent: an n-gram's shorter parts are missing")
        ids = at
    return ids
