"""One stream's K sampling steps in one compiled call (Numba): the CPU's chunk engine.

A streamed token is one matrix-vector product per weight matrix and a few hundred tiny vector
operations. Driven from Python, each of those is a PyTorch call of ~10 µs (and on the AMD EPYC
measured, MKL's matrix-vector product took twice as long as this file's loop); compiled, a step
is only its arithmetic: 3–5× the tokens/s (bench/sample_speed.py, `kernel_over_pytorch`). Per
step, for a stream with state h[l] (and c[l] for an LSTM):

    layer 0:     gi = table[token]                 (embedding · W_ih0ᵀ + b_ih0, precomputed)
    layer l > 0: gi = W_ihₗ · h[l-1] + b_ihₗ
    all layers:  gh = W_hhₗ · h[l] + b_hhₗ         → PyTorch's gate equations (i f g o / r z n)
    output:      logits = head(proj(h[top]))       → × 1/T → top-k → top-p → + Gumbel noise → argmax

The Gumbel noise is drawn by the caller (cpustream.py, NumPy's PCG64), and the maths is
cpustep.py's — the top-k / top-p masks keep what decode.shape_scores keeps — so NumPy's step
and this kernel draw the same tokens from the same noise; only the order of floating-point sums
differs, so on a near tie the drawn token may differ. A row with no distribution (NaN, +inf,
all masked) ends the chunk with id -1, as decode.checked marks it.
"""

from __future__ import annotations

import math

import numpy as np

from charrnn.jit import njit
from charrnn.lm.cpustep import CELL_CODES

RNN, LSTM, GRU = CELL_CODES["rnn"], CELL_CODES["lstm"], CELL_CODES["gru"]


@njit(fastmath={"reassoc", "contract"})
def _affine(out, bias, weight, x):
    """out = weight · x + bias, four rows at a time: each x[col] loaded once feeds four sums
    (1.2–1.5× the one-row loop measured; the product is memory-bound beyond that)."""
    rows, cols = weight.shape
    for row in range(0, rows - 3, 4):
        s0 = s1 = s2 = s3 = np.float32(0.0)
        for col in range(cols):
            value = x[col]
            s0 += weight[row, col] * value
            s1 += weight[row + 1, col] * value
            s2 += weight[row + 2, col] * value
            s3 += weight[row + 3, col] * value
        out[row], out[row + 1] = s0 + bias[row], s1 + bias[row + 1]
        out[row + 2], out[row + 3] = s2 + bias[row + 2], s3 + bias[row + 3]
    for row in range(rows - rows % 4, rows):
        total = np.float32(0.0)
        for col in range(cols):
            total += weight[row, col] * x[col]
        out[row] = total + bias[row]


@njit(fastmath={"reassoc", "contract"})
def _sigmoid(x):
    return np.float32(1.0) / (np.float32(1.0) + np.exp(-x))


@njit(fastmath={"reassoc", "contract"})
def _tanh(x):
    """tanh through one exp (libm's tanh takes 5× as long here: a fifth of a step's time)."""
    e = np.exp(np.float32(-2.0) * abs(x))
    t = (np.float32(1.0) - e) / (np.float32(1.0) + e)
    return t if x >= 0 else -t


@njit
def _recurrent_step(cell, token, table, w_ih, b_ih, w_hh, b_hh, h, c, gi, gh):
    """Every layer's state after `token` (h and c updated in place); the top layer's h."""
    size = h.shape[1]
    for layer in range(h.shape[0]):
        if layer == 0:
            gi[:] = table[token]
        else:
            _affine(gi, b_ih[layer], w_ih[layer - 1], h[layer - 1])
        _affine(gh, b_hh[layer], w_hh[layer], h[layer])
        for j in range(size):
            if cell == LSTM:
                i = _sigmoid(gi[j] + gh[j])
                f = _sigmoid(gi[size + j] + gh[size + j])
                g = _tanh(gi[2 * size + j] + gh[2 * size + j])
                o = _sigmoid(gi[3 * size + j] + gh[3 * size + j])
                c[layer, j] = f * c[layer, j] + i * g
                h[layer, j] = o * _tanh(c[layer, j])
            elif cell == GRU:
                r = _sigmoid(gi[j] + gh[j])
                z = _sigmoid(gi[size + j] + gh[size + j])
                n = _tanh(gi[2 * size + j] + r * gh[2 * size + j])
                h[layer, j] = n + z * (h[layer, j] - n)
            else:
                h[layer, j] = _tanh(gi[j] + gh[j])
    return h[h.shape[0] - 1]


@njit
def _order(values, order):
    """order = the indices of values, largest first (a Shell sort: np.argsort would triple the
    first compile's time, and V is a few thousand at most where top-k/top-p are used)."""
    for i in range(values.shape[0]):
        order[i] = i
    gap = 1
    while gap < values.shape[0] // 3:
        gap = 3 * gap + 1
    while gap > 0:
        for i in range(gap, values.shape[0]):
            moving, j = order[i], i
            while j >= gap and values[order[j - gap]] < values[moving]:
                order[j] = order[j - gap]
                j -= gap
            order[j] = moving
        gap //= 3


@njit
def _shape(scores, inv_temp, top_k, top_p, shaped, order):
    """decode.shape_scores for one row: × 1/T, then top-k (ties with the k-th kept), then top-p
    (a token is dropped when the mass before it is ≥ p; the first is always kept)."""
    vocab = scores.shape[0]
    for v in range(vocab):
        shaped[v] = scores[v] * inv_temp
    if 0 < top_k < vocab:
        _order(shaped, order)
        kth = shaped[order[top_k - 1]]
        for v in range(vocab):
            if shaped[v] < kth:
                shaped[v] = -np.inf
    if 0 < top_p < 1:
        _order(shaped, order)
        top = shaped[order[0]]
        total = 0.0
        for v in range(vocab):
            total += math.exp(shaped[v] - top)
        mass = 0.0
        for rank in range(vocab):
            p = math.exp(shaped[order[rank]] - top) / total
            if mass >= top_p:
                shaped[order[rank]] = -np.inf
            mass += p


@njit
def _pick(shaped, noise, greedy):
    """(id, best value) of argmax(shaped + noise); id -1 where the row has no distribution."""
    best, token = -np.inf, 0
    for v in range(shaped.shape[0]):
        value = shaped[v] if greedy else shaped[v] + noise[v]
        if np.isnan(value):
            return -1, value
        if value > best:
            best, token = value, v
    if not np.isfinite(best):
        return -1, best
    return token, best


@njit
def _stats(shaped, token, out):
    """decode.token_stats for one row: chosen p, entropy in bits, top probabilities and ids."""
    probs = np.exp(shaped - np.max(shaped))
    probs /= probs.sum()
    out[0] = probs[token]
    entropy = 0.0
    for p in probs:
        if p > 0:
            entropy -= p * math.log(p)
    out[1] = entropy / math.log(2.0)
    top = (out.shape[0] - 2) // 2  # TOP, or V where the vocabulary is smaller
    for rank in range(top):  # the largest left, `top` times: O(top·V), no sort
        index = np.argmax(probs)
        out[2 + rank] = probs[index]
        out[2 + top + rank] = index
        probs[index] = -1.0


@njit(nogil=True)  # it touches no Python object: a worker thread runs it beside the caller
def run_chunk(cell, table, w_ih, b_ih, w_hh, b_hh, proj_w, proj_b, head_w, head_b,
              h, c, scores, noise, inv_temp, top_k, top_p, greedy, ids, stats):
    """K = len(ids) steps from `scores` (the distribution of the next token) and state h, c;
    all of them updated in place to the state after the chunk. ids (K,) and stats (K, S) or
    (0, S) are written (S: cpustep.stats_width); the number of good tokens is returned (K, or
    the index of the first -1)."""
    gi = np.empty(w_hh.shape[1], np.float32)
    gh = np.empty(w_hh.shape[1], np.float32)
    shaped = np.empty(scores.shape[0], np.float32)
    projected = np.empty(proj_w.shape[0], np.float32)
    order = np.empty(scores.shape[0], np.int64)
    for step in range(ids.shape[0]):
        _shape(scores, inv_temp, top_k, top_p, shaped, order)
        token, _ = _pick(shaped, noise[step], greedy)
        ids[step] = token
        if token < 0:
            ids[step:] = -1
            return step
        if stats.shape[0]:
            _stats(shaped, token, stats[step])
        top = _recurrent_step(cell, token, table, w_ih, b_ih, w_hh, b_hh, h, c, gi, gh)
        if proj_w.shape[0]:
            _affine(projected, proj_b, proj_w, top)
            top = projected
        _affine(scores, head_b, head_w, top)
    return ids.shape[0]
