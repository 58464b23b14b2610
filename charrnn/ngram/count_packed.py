"""Counting in bounded memory: n-grams as packed integer keys, counted chunk by chunk.

`count.py` refines positions order by order, which needs several arrays as long as the corpus
(tens of bytes per token): fine for a few million tokens, not for 100 MB of text. When every word
fits in `bits` bits and an n-gram of the highest order fits in 62, this module gives the same
tables from memory that grows with the number of *distinct* n-grams instead:

    key(w1 … wn) = wn << (n-1)·bits | … | w2 << bits | w1      (last word most significant)

Sorting keys numerically is then exactly lmplz's suffix order, so an order's ids are ranks in
its sorted key array, the suffix of a key is `key >> bits` and its context `key & low bits`.

For each order, the token ids (read straight from the dataset's memmap, never copied whole) are
cut into chunks; a chunk's keys are sorted, run-length counted and merged into the order's
sorted (key, count) table. `<s>` is never stored: a scan going left from a token meets it at the
start of the stream or (with `--lines`) right after a line break, and a window is an n-gram when
`<s>` is at most its first word, the same rule as `count.py`.
"""

from __future__ import annotations

import numpy as np

from charrnn.jit import njit
from charrnn.ngram.count import Order

CHUNK = 1 << 22  # tokens per chunk: 32 MiB of keys


def key_bits(words: int) -> int:
    return max(1, int(words - 1).bit_length())


def fits(words: int, order: int) -> bool:
    """Whether an n-gram of `order` over `words` word ids packs into a non-negative int64."""
    return key_bits(words) * order <= 62


@njit
def _chunk_keys(ids, start, stop, n, bits, bos, line_break, lines):
    """Keys of the order-n n-grams ending at positions start..stop-1 of `ids` (unsorted)."""
    out = np.empty(stop - start, np.int64)
    k = 0
    for i in range(start, stop):
        key = np.int64(ids[i])
        j = i
        m = 1
        while m < n:
            # The token before position j: <s> at the stream start or after a line break.
            if j == 0 or (lines and ids[j - 1] == line_break):
                if m == n - 1:
                    key = (key << bits) | bos
                    m += 1
                break
            j -= 1
            key = (key << bits) | np.int64(ids[j])
            m += 1
        if m == n:
            out[k] = key
            k += 1
    return out[:k]


@njit
def _run_lengths(sorted_keys):
    """Distinct keys of a sorted array and how often each occurs."""
    m = sorted_keys.shape[0]
    keys = np.empty(m, np.int64)
    counts = np.zeros(m, np.int64)
    u = -1
    for i in range(m):
        if i == 0 or sorted_keys[i] != sorted_keys[i - 1]:
            u += 1
            keys[u] = sorted_keys[i]
        counts[u] += 1
    return keys[: u + 1].copy(), counts[: u + 1].copy()


@njit
def _merge(keys_a, counts_a, keys_b, counts_b):
    """Two sorted (key, count) tables → one, counts of equal keys added."""
    na, nb = keys_a.shape[0], keys_b.shape[0]
    keys = np.empty(na + nb, np.int64)
    counts = np.empty(na + nb, np.int64)
    i = j = u = 0
    while i < na or j < nb:
        if j >= nb or (i < na and keys_a[i] < keys_b[j]):
            keys[u], counts[u] = keys_a[i], counts_a[i]
            i += 1
        elif i >= na or keys_b[j] < keys_a[i]:
            keys[u], counts[u] = keys_b[j], counts_b[j]
            j += 1
        else:
            keys[u], counts[u] = keys_a[i], counts_a[i] + counts_b[j]
            i += 1
            j += 1
        u += 1
    return keys[:u].copy(), counts[:u].copy()


def _count_order(ids: np.ndarray, n: int, bits: int, bos: int, line_break: int, lines: bool,
                 chunk: int) -> tuple[np.ndarray, np.ndarray]:
    keys = np.empty(0, np.int64)
    counts = np.empty(0, np.int64)
    for start in range(0, len(ids), chunk):
        stop = min(len(ids), start + chunk)
        # n tokens of left context from the previous chunk: a scan (at most n-1 steps) never
        # reaches the slice's index 0, which it would take for the stream's start.
        lo = max(0, start - n)
        part = np.asarray(ids[lo:stop])
        part_keys = _chunk_keys(part, start - lo, stop - lo, n, bits, bos, line_break, lines)
        part_keys.sort()
        keys, counts = _merge(keys, counts, *_run_lengths(part_keys))
    return keys, counts


def count_ngrams_packed(ids: np.ndarray, order: int, words: int, bos: int,
                        line_break: int | None, lines: bool, chunk: int = CHUNK
                        ) -> tuple[np.ndarray, list[Order]]:
    """Raw unigram counts (length `words`) and the tables of orders 2..`order`, as `count.py`.

    `ids` are the raw token ids (no `<s>`); `lines` starts a sentence after every line break.
    """
    bits = key_bits(words)
    lb = -1 if line_break is None or not lines else int(line_break)
    unigrams = np.zeros(words, np.int64)
    for start in range(0, len(ids), chunk):
        unigrams += np.bincount(np.asarray(ids[start : start + chunk]), minlength=words)[:words]
    tables: list[Order] = []
    previous = None
    for n in range(2, order + 1):
        keys, counts = _count_order(ids, n, bits, bos, lb, lb >= 0, chunk)
        word = (keys & ((1 << bits) - 1)).astype(np.int32)
        if n == 2:
            suffix = (keys >> bits).astype(np.int32)
            prefix = word.copy()
        else:
            suffix = np.searchsorted(previous, keys >> bits).astype(np.int32)
            prefix = np.searchsorted(previous, keys & ((1 << (bits * (n - 1))) - 1)).astype(np.int32)
        tables.append(Order(word, suffix, prefix, counts))
        previous = keys
    return unigrams, tables
