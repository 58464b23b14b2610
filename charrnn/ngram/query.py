"""Numba kernels over the stored tables: scoring, next-token distributions.

Nodes are n-grams, numbered globally (order 1 first; unigram ids are word ids). At load time
each node gets one 16-byte record, `rec[g]` = [first extension, suffix node, ln p, ln back-off]
(floats are read through `recf`/`extf`, float32 views of the same memory), and the n-grams
that extend g by one word to the right are the 16-byte entries `ext[rec[g, 0] : rec[g + 1, 0]]`
= [last word, next state, ln p, node], sorted by word: extensions are grouped in node order,
so the next record ends the range (one sentinel record closes the table). An entry carries
what scoring needs, so a hit costs no further memory access.

The state between tokens is the longest n-gram ending at the previous token (at most N-1
words). Scoring word w tries the state's extension by w first; each miss adds the state's
back-off and moves to its suffix, exactly like an ARPA back-off query, and the hit becomes the
next state. On text that the model knows, most tokens cost one lookup of a few cache lines.
A state rebuilt from N-1 tokens of history is the true one, so chunks of a text can be scored
in parallel.
"""

from __future__ import annotations

import numpy as np

from charrnn.jit import njit, prange


@njit
def _sort_group(ext, lo, hi):
    if hi - lo > 32:
        order = np.argsort(ext[lo:hi, 0])
        ext[lo:hi] = ext[lo:hi][order]
        return
    row = np.empty(4, np.int32)
    for i in range(lo + 1, hi):  # insertion sort: most groups are tiny
        row[:] = ext[i]
        j = i - 1
        while j >= lo and ext[j, 0] > row[0]:
            ext[j + 1] = ext[j]
            j -= 1
        ext[j + 1] = row


@njit
def forward_tables(suffix, prefix, logp, backoff, words, top):
    """(rec, ext) from the stored arrays (see the module docstring)."""
    total = suffix.shape[0]
    last = np.empty(total, np.int32)
    start = np.zeros(total + 1, np.int64)
    for g in range(total):
        if g < words:
            last[g] = g
        else:
            last[g] = last[suffix[g]]  # a suffix comes from a lower order: already set
            start[prefix[g] + 1] += 1
    for g in range(total):
        start[g + 1] += start[g]
    rec = np.zeros((total + 1, 4), np.int32)
    recf = rec.view(np.float32)
    ext = np.empty((total - words, 4), np.int32)
    extf = ext.view(np.float32)
    fill = start[:total].copy()
    for g in range(words, total):
        p = prefix[g]
        i = fill[p]
        ext[i, 0] = last[g]
        ext[i, 1] = suffix[g] if g >= top else g  # an order-N n-gram is never a context
        extf[i, 2] = logp[g]
        ext[i, 3] = g
        fill[p] += 1
    for g in range(total):
        _sort_group(ext, start[g], start[g + 1])
        rec[g, 0] = start[g]
        rec[g, 1] = suffix[g]
        recf[g, 2] = logp[g]
        recf[g, 3] = backoff[g]
    rec[total, 0] = start[total]
    return rec, ext


@njit
def extension(node, w, rec, ext):
    """The entry of the n-gram `node`·w, or -1."""
    lo = rec[node, 0]
    hi = rec[node + 1, 0]
    while hi - lo > 8:
        mid = (lo + hi) >> 1
        x = ext[mid, 0]
        if x < w:
            lo = mid + 1
        elif x > w:
            hi = mid
        else:
            return mid
    for i in range(lo, hi):  # short ranges (most of them): a scan predicts better
        if ext[i, 0] == w:
            return i
    return -1


@njit
def step(state, w, rec, recf, ext, extf, bos, top):
    """(ln p(w | state), next state); state -1 is no context, nodes >= top are order N."""
    if w == bos:
        return 0.0, np.int64(bos)  # a new sentence: the context is <s>
    c = np.int64(state)
    acc = 0.0
    while c >= 0:
        i = extension(c, w, rec, ext)
        if i >= 0:
            return np.float64(extf[i, 2]) + acc, np.int64(ext[i, 1])
        acc += recf[c, 3]
        c = rec[c, 1]
    nxt = np.int64(w) if top > w else np.int64(-1)  # a unigram model keeps no context
    return np.float64(recf[w, 2]) + acc, nxt


@njit
def _score_range(seq, start, stop, first, order, bos, top, rec, recf, ext, extf, out, write):
    """Sum of ln p over scored positions in [start, stop); state rebuilt from N-1 tokens back."""
    state = np.int64(-1)
    total = 0.0
    scored = 0
    for t in range(max(0, start - order + 1), stop):
        lp, state = step(state, seq[t], rec, recf, ext, extf, bos, top)
        if t >= start and t >= first and seq[t] != bos:
            total += lp
            scored += 1
            if write:
                out[t] = lp
    return total, scored


@njit(parallel=True)
def score_total(seq, first, order, bos, top, rec, recf, ext, extf, chunks):
    """(sum of ln p, tokens scored) over seq, split into `chunks` independent pieces."""
    n = seq.shape[0]
    totals = np.zeros(chunks, np.float64)
    counts = np.zeros(chunks, np.int64)
    dummy = np.empty(0, np.float64)
    for c in prange(chunks):
        a = n * c // chunks
        b = n * (c + 1) // chunks
        tot, cnt = _score_range(seq, a, b, first, order, bos, top, rec, recf, ext, extf, dummy, False)
        totals[c] = tot
        counts[c] = cnt
    return totals.sum(), counts.sum()


@njit
def score_serial(seq, first, order, bos, top, rec, recf, ext, extf):
    """The same on one thread (small texts: no thread start-up)."""
    dummy = np.empty(0, np.float64)
    return _score_range(seq, 0, seq.shape[0], first, order, bos, top, rec, recf, ext, extf, dummy, False)


@njit
def token_logprobs(seq, first, order, bos, top, rec, recf, ext, extf):
    """ln p of every position (NaN where not scored: <s> and positions before `first`)."""
    out = np.full(seq.shape[0], np.nan)
    _score_range(seq, 0, seq.shape[0], first, order, bos, top, rec, recf, ext, extf, out, True)
    return out


@njit
def state_after(hist, bos, top, rec, recf, ext, extf):
    """The state after reading a history (-1 for an empty one)."""
    state = np.int64(-1)
    for t in range(hist.shape[0]):
        state = step(state, hist[t], rec, recf, ext, extf, bos, top)[1]
    return state


@njit
def distribution(state, words, bos, rec, recf, ext, extf, out):
    """p(x | state) for every word x into `out`, longest context first.

    Each context sets the words it has seen (not set by a longer one) to its probability
    times the back-offs collected so far, then adds its own back-off; unigrams fill the rest.
    """
    done = np.zeros(words, np.bool_)
    acc = 0.0
    c = np.int64(state)
    while c >= 0:
        for i in range(rec[c, 0], rec[c + 1, 0]):
            x = ext[i, 0]
            if not done[x]:
                out[x] = np.exp(np.float64(extf[i, 2]) + acc)
                done[x] = True
        acc += recf[c, 3]
        c = rec[c, 1]
    for x in range(words):
        if not done[x]:
            out[x] = np.exp(np.float64(recf[x, 2]) + acc)
    out[bos] = 0.0
    return out


@njit(parallel=True)
def distributions(states, words, bos, rec, recf, ext, extf, out):
    """p(x | state) for a batch of states (B,) into out (B, words): streams sampled side by side."""
    for b in prange(states.shape[0]):
        distribution(states[b], words, bos, rec, recf, ext, extf, out[b])
    return out


@njit
def distributions_serial(states, words, bos, rec, recf, ext, extf, out):
    """The same on the calling thread: for a few streams, waking the thread pool costs more than
    the work (one PTB-sized distribution: 0.17 ms here, 12 ms through the pool while PyTorch's
    threads ran beside it)."""
    for b in range(states.shape[0]):
        distribution(states[b], words, bos, rec, recf, ext, extf, out[b])
    return out


@njit
def advance(states, tokens, line_break, lines, bos, top, rec, recf, ext, extf):
    """Each state after reading its token; after a line break a --lines model starts a new
    sentence (its context is <s>)."""
    out = np.empty(states.shape[0], np.int64)
    for b in range(states.shape[0]):
        if lines and tokens[b] == line_break:
            out[b] = np.int64(bos)
        else:
            out[b] = step(states[b], tokens[b], rec, recf, ext, extf, bos, top)[1]
    return out


@njit(parallel=True)
def continuation_logps(state, seqs, lengths, line_break, lines, bos, top, rec, recf, ext, extf):
    """ln p of each token of each sequence (rows of `seqs`, padded), all read after one state."""
    out = np.zeros(seqs.shape, np.float64)
    for i in prange(seqs.shape[0]):
        s = np.int64(state)
        for j in range(lengths[i]):
            w = seqs[i, j]
            lp, nxt = step(s, w, rec, recf, ext, extf, bos, top)
            out[i, j] = lp
            s = np.int64(bos) if lines and w == line_break else nxt
    return out
