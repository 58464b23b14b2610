"""Counting: every n-gram of orders 1..N in a token stream, as suffix-sorted integer tables.

The stream holds model ids with a `<s>` id (BOS) wherever a context starts: once at position 0
(one-stream mode) or before every sentence (`--lines`). A window of tokens is an n-gram when
`<s>` can only be its first word and it does not end on `<s>`; this gives exactly the n-grams
lmplz counts after padding sentences with `<s>` on the left and collapsing `<s> <s> ...`.

An order-n n-gram is the pair (its order n-1 suffix id, its first word). Ids are ranks in
*suffix order* (last word most significant, lmplz's SuffixOrder), so the n-grams that extend
the same suffix to the left are contiguous: the continuation (adjusted) counts of order n-1
are their run lengths. Each n-gram also records its context (prefix) id.

Each order is refined from the previous one: the positions sorted by their (n-1)-gram id are
re-sorted inside each group by the next word to the left. No hashing and no key packing, so any
order and vocabulary size work; time and memory are O(tokens) per order.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from charrnn.jit import njit


@dataclass
class Order:
    """The n-grams of one order n >= 2 (unigrams are just the vocabulary)."""

    word: np.ndarray    # int32: the first (leftmost) word
    suffix: np.ndarray  # int32: id of words 2..n in order n-1 (non-decreasing)
    prefix: np.ndarray  # int32: id of words 1..n-1 in order n-1 (the context)
    count: np.ndarray   # int64: raw occurrences


@njit
def _insertion_sort(pos: np.ndarray, left: np.ndarray, lo: int, hi: int) -> None:
    for i in range(lo + 1, hi):
        p, w = pos[i], left[i]
        j = i - 1
        while j >= lo and left[j] > w:
            pos[j + 1] = pos[j]
            left[j + 1] = left[j]
            j -= 1
        pos[j + 1] = p
        left[j + 1] = w


@njit
def _refine(seq, ids_prev, pos_prev, gid_prev, n, bos):
    """Order n from order n-1: (positions, their group ids, per-position ids, table columns)."""
    m = pos_prev.shape[0]
    pos = np.empty(m, np.int32)
    left = np.empty(m, np.int32)
    grp = np.empty(m, np.int32)
    k = 0
    for i in range(m):
        t = pos_prev[i]
        # The (n-1)-gram ending at t starts at t-n+2; if that is <s> nothing extends it.
        if seq[t - n + 2] != bos:
            pos[k] = t
            left[k] = seq[t - n + 1]
            grp[k] = gid_prev[i]
            k += 1
    # Sort each run of equal suffix id by the new left word (equal words: the same n-gram).
    i = 0
    while i < k:
        j = i + 1
        while j < k and grp[j] == grp[i]:
            j += 1
        if j - i > 24:
            order = np.argsort(left[i:j])
            pos[i:j] = pos[i:j][order]
            left[i:j] = left[i:j][order]
        elif j - i > 1:
            _insertion_sort(pos, left, i, j)
        i = j
    ids_new = np.full(seq.shape[0], -1, np.int32)
    gid = np.empty(k, np.int32)
    word = np.empty(k, np.int32)
    suffix = np.empty(k, np.int32)
    prefix = np.empty(k, np.int32)
    count = np.zeros(k, np.int64)
    u = -1
    for i in range(k):
        if i == 0 or grp[i] != grp[i - 1] or left[i] != left[i - 1]:
            u += 1
            word[u] = left[i]
            suffix[u] = grp[i]
            prefix[u] = ids_prev[pos[i] - 1]  # words 1..n-1 end at t-1
        count[u] += 1
        gid[i] = u
        ids_new[pos[i]] = u
    u += 1
    return pos[:k], gid, ids_new, word[:u], suffix[:u], prefix[:u], count[:u]


@njit
def _unigram_positions(seq, vocab, bos):
    """Positions of every token but <s>, grouped by token (a counting sort)."""
    counts = np.zeros(vocab + 1, np.int64)
    for t in range(seq.shape[0]):
        if seq[t] != bos:
            counts[seq[t] + 1] += 1
    for v in range(vocab):
        counts[v + 1] += counts[v]
    total = counts[vocab]
    pos = np.empty(total, np.int32)
    gid = np.empty(total, np.int32)
    fill = counts[:vocab].copy()
    for t in range(seq.shape[0]):
        w = seq[t]
        if w != bos:
            pos[fill[w]] = t
            gid[fill[w]] = w
            fill[w] += 1
    return pos, gid


def count_ngrams(seq: np.ndarray, order: int, vocab: int, bos: int
                 ) -> tuple[np.ndarray, list[Order]]:
    """Raw unigram counts (length `vocab`) and the tables of orders 2..`order`."""
    seq = np.ascontiguousarray(seq, dtype=np.int32)
    if seq.shape[0] and seq[0] != bos:
        raise ValueError("the stream must start with <s>")
    unigrams = np.bincount(seq[seq != bos], minlength=vocab).astype(np.int64)
    pos, gid = _unigram_positions(seq, vocab, bos)
    ids = seq
    tables: list[Order] = []
    for n in range(2, order + 1):
        pos, gid, ids, word, suffix, prefix, count = _refine(seq, ids, pos, gid, n, bos)
        tables.append(Order(word, suffix, prefix, count))
    return unigrams, tables


def sentence_stream(ids: np.ndarray, bos: int, line_break: int | None, lines: bool) -> np.ndarray:
    """Model input: `<s>` first, and (with `lines`) after every line break, as lmplz reads lines.

    The line break itself stays: it is the `</s>` of the sentence it ends. An unfinished last
    line gets no `</s>`, as lmplz does with a file that does not end in a newline.
    """
    ids = np.asarray(ids).astype(np.int32, copy=False)
    if not lines or line_break is None:
        return np.concatenate([np.array([bos], np.int32), ids])
    breaks = np.flatnonzero(ids == line_break)
    if breaks.size and breaks[-1] == ids.size - 1:
        breaks = breaks[:-1]  # no empty sentence after the final newline
    return np.insert(ids, np.concatenate([[0], breaks + 1]), bos).astype(np.int32)
