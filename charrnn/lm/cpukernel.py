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

A step reads every weight once (3 MB for a 2×256 LSTM): one core's cache bandwidth bounds it.
Two threads, "lanes", can make one chunk together (cpulanes.py decides when): each takes half
of every product's rows, then both meet where the next product reads the whole of the last:

    lane 0:  layer 0, rows 0…H/2 of each gate ┐   layer 1 (its rows) ┐   head ┐   draw → token
    lane 1:  layer 0, rows H/2…H of each gate ┴ ◆ layer 1 (its rows) ┴ ◆ head ┴ ◆ draw → token
                                                ◆ meet (a counter each; spin until the other's)

Both draw each token from the whole scores with the same noise, so they agree on it without
meeting again; 1.5× one lane's tokens/s on the 2-core AMD EPYC measured (bench/sample_speed.py).

What runs is c_entry — run_chunk as a C function of three tables — as machine code that
machinecode.py keeps and loads without importing numba. So run_chunk allocates nothing (the
caller gives each lane its room) and neither NumPy's reductions nor slice copies (numba's
versions call its runtime, which only numba's import provides): loops instead.
"""

from __future__ import annotations

import math

import numpy as np

from charrnn.jit import carray, load_acquire, njit, store_release
from charrnn.lm.cpulanes import SYNC_STRIDE
from charrnn.lm.cpustep import CELL_CODES
from charrnn.lm.kernelargs import AT, PTR

RNN, LSTM, GRU = CELL_CODES["rnn"], CELL_CODES["lstm"], CELL_CODES["gru"]


@njit(fastmath={"reassoc", "contract"})
def _affine(out, bias, weight, x, lo, hi):
    """out[r] = weight[r] · x + bias[r] for rows lo ≤ r < hi, four rows at a time: each x[col]
    loaded once feeds four sums (1.2–1.5× the one-row loop measured; the product is memory-bound
    beyond that). A row's sum is the same whichever block it falls in, so a lane's share of the
    rows (lo a multiple of 4) gives each row the bits one lane would."""
    cols, row = weight.shape[1], lo
    while row + 4 <= hi:
        s0 = s1 = s2 = s3 = np.float32(0.0)
        for col in range(cols):
            value = x[col]
            s0 += weight[row, col] * value
            s1 += weight[row + 1, col] * value
            s2 += weight[row + 2, col] * value
            s3 += weight[row + 3, col] * value
        out[row], out[row + 1] = s0 + bias[row], s1 + bias[row + 1]
        out[row + 2], out[row + 3] = s2 + bias[row + 2], s3 + bias[row + 3]
        row += 4
    for rest in range(row, hi):
        total = np.float32(0.0)
        for col in range(cols):
            total += weight[rest, col] * x[col]
        out[rest] = total + bias[rest]


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
def _share(n, lane, lanes):
    """(lo, hi): this lane's rows of n, cut at multiples of 4 (_affine's blocks)."""
    lo = n * lane // lanes // 4 * 4
    return lo, (n if lane == lanes - 1 else n * (lane + 1) // lanes // 4 * 4)


@njit
def _meet(sync, lane, lanes, count):
    """Wait until the other lane has come as far (count: barriers passed so far, + 1)."""
    if lanes == 1:
        return count
    count += 1
    store_release(sync, lane * SYNC_STRIDE, count)
    other = (1 - lane) * SYNC_STRIDE
    while load_acquire(sync, other) < count:
        pass
    return count


@njit
def _recurrent_step(cell, token, table, w_ih, b_ih, w_hh, b_hh, h, c, new_h, gi, gh,
                    lane, lanes, sync, count):
    """This lane's units of every layer after `token`: read h, write new_h and c; the lanes meet
    after each layer (the next reads all of it). Returns the barriers passed."""
    size = h.shape[1]
    lo, hi = _share(size, lane, lanes)
    for layer in range(h.shape[0]):
        for gate in range(w_hh.shape[1] // size):
            first, last = gate * size + lo, gate * size + hi
            if layer == 0:
                for j in range(first, last):  # (a slice copy may allocate: numba's runtime)
                    gi[j] = table[token, j]
            else:
                _affine(gi, b_ih[layer], w_ih[layer - 1], new_h[layer - 1], first, last)
            _affine(gh, b_hh[layer], w_hh[layer], h[layer], first, last)
        for j in range(lo, hi):
            if cell == LSTM:
                i = _sigmoid(gi[j] + gh[j])
                f = _sigmoid(gi[size + j] + gh[size + j])
                g = _tanh(gi[2 * size + j] + gh[2 * size + j])
                o = _sigmoid(gi[3 * size + j] + gh[3 * size + j])
                c[layer, j] = f * c[layer, j] + i * g
                new_h[layer, j] = o * _tanh(c[layer, j])
            elif cell == GRU:
                r = _sigmoid(gi[j] + gh[j])
                z = _sigmoid(gi[size + j] + gh[size + j])
                n = _tanh(gi[2 * size + j] + r * gh[2 * size + j])
                new_h[layer, j] = n + z * (h[layer, j] - n)
            else:
                new_h[layer, j] = _tanh(gi[j] + gh[j])
        count = _meet(sync, lane, lanes, count)
    return count


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
def _stats(shaped, token, out, probs):
    """decode.token_stats for one row: chosen p, entropy in bits, top probabilities and ids
    (probs: the row's room, (V,)). Loops, not NumPy's reductions, which call numba's runtime."""
    top_score = np.float32(-np.inf)
    for v in range(shaped.shape[0]):
        top_score = max(top_score, shaped[v])
    total = np.float32(0.0)
    for v in range(shaped.shape[0]):
        probs[v] = np.exp(shaped[v] - top_score)
        total += probs[v]
    for v in range(shaped.shape[0]):
        probs[v] /= total
    out[0] = probs[token]
    entropy = math.log(total)  # −Σ p·log p = log Z − Σ p·(s − max): one log, not V of them
    for v in range(shaped.shape[0]):
        if probs[v] > 0:
            entropy -= probs[v] * (shaped[v] - top_score)
    out[1] = entropy / math.log(2.0)
    top = (out.shape[0] - 2) // 2  # TOP, or V where the vocabulary is smaller
    for rank in range(top):  # the largest left, `top` times: O(top·V), no sort
        index = 0
        for v in range(1, probs.shape[0]):
            if probs[v] > probs[index]:
                index = v
        out[2 + rank] = probs[index]
        out[2 + top + rank] = index
        probs[index] = -1.0


@njit
def _head(proj_w, proj_b, head_w, head_b, top, projected, scores, lane, lanes, sync, count):
    """This lane's rows of the scores (after its rows of the projection, where there is one),
    the lanes meeting after each. Returns the barriers passed."""
    if proj_w.shape[0]:
        lo, hi = _share(proj_w.shape[0], lane, lanes)
        _affine(projected, proj_b, proj_w, top, lo, hi)
        count = _meet(sync, lane, lanes, count)
        top = projected
    lo, hi = _share(head_w.shape[0], lane, lanes)
    _affine(scores, head_b, head_w, top, lo, hi)
    return _meet(sync, lane, lanes, count)


@njit(nogil=True)  # it touches no Python object: a worker thread runs it beside the caller
def run_chunk(cell, table, w_ih, b_ih, w_hh, b_hh, proj_w, proj_b, head_w, head_b,
              h, c, scores, noise, inv_temp, top_k, top_p, greedy, ids, stats,
              lane, lanes, spare, projected, work, orders, sync):
    """K = len(ids) steps from `scores` (the distribution of the next token) and state h, c;
    all of them updated in place to the state after the chunk. ids (K,) and stats (K, S) or
    (0, S) are written (S: cpustep.stats_width); the number of good tokens is returned (K, or
    the index of the first -1).

    Lanes: `lanes` threads (1 or 2) make the same chunk together, each called with its `lane`
    and the same arrays (spare: h's shape, projected: (E,), sync: zeros (2·cpulanes.SYNC_STRIDE,) int64).
    Each computes its share of every product's rows and meets the other where a product needs
    the whole of the last; both draw every token from the whole scores, so they agree on it
    without meeting again. The state alternates between h and spare a step, so no lane
    overwrites what the other still reads; lane 0 writes ids and stats.

    Nothing is allocated (so the machine code needs no numba runtime: machinecode.py): each
    lane works in its row of work (2, 2·(G + V)) float32 and orders (2, V) int64."""
    gates, vocab = w_hh.shape[1], scores.shape[0]
    mine = work[lane]
    gi, gh = mine[:gates], mine[gates:2 * gates]
    shaped, probs = mine[2 * gates:2 * gates + vocab], mine[2 * gates + vocab:2 * (gates + vocab)]
    order = orders[lane]
    states, count, done = (h, spare), 0, ids.shape[0]
    for step in range(ids.shape[0]):
        _shape(scores, inv_temp, top_k, top_p, shaped, order)
        token, _ = _pick(shaped, noise[step], greedy)
        if lane == 0:
            ids[step] = token
        if token < 0:
            if lane == 0:
                for rest in range(step, ids.shape[0]):
                    ids[rest] = -1
            done = step
            break
        if lane == 0 and stats.shape[0]:
            _stats(shaped, token, stats[step], probs)
        old, new = states[step % 2], states[(step + 1) % 2]
        count = _recurrent_step(cell, token, table, w_ih, b_ih, w_hh, b_hh, old, c, new, gi, gh,
                                lane, lanes, sync, count)
        count = _head(proj_w, proj_b, head_w, head_b, new[new.shape[0] - 1], projected, scores,
                      lane, lanes, sync, count)
    if done % 2:  # the state is in spare: each lane copies its own units back
        lo, hi = _share(h.shape[1], lane, lanes)
        for layer in range(h.shape[0]):
            for j in range(lo, hi):
                h[layer, j] = spare[layer, j]
    return done


# run_chunk as a C function, for machinecode.py: every argument read from three tables (kernelargs
# .pack fills them in run_chunk's order; AT says where each argument's value or shape starts, PTR
# which pointer is an array's). Defined here, compiled only where machine code is made.


@njit
def _vector(pointers, ints, i, dtype):
    """run_chunk's argument i, a 1-D array, from the tables."""
    return carray(pointers[PTR[i]], (ints[AT[i]],), dtype)


@njit
def _matrix(pointers, ints, i, dtype):
    return carray(pointers[PTR[i]], (ints[AT[i]], ints[AT[i] + 1]), dtype)


@njit
def _stack(pointers, ints, i, dtype):
    return carray(pointers[PTR[i]], (ints[AT[i]], ints[AT[i] + 1], ints[AT[i] + 2]), dtype)


def _entry(pointers, ints, floats):
    """run_chunk(*its 27 arguments, read from the tables in its order)."""
    p, d, f32, i64 = pointers, ints, np.float32, np.int64
    return run_chunk(
        d[AT[0]], _matrix(p, d, 1, f32), _stack(p, d, 2, f32), _matrix(p, d, 3, f32),
        _stack(p, d, 4, f32), _matrix(p, d, 5, f32), _matrix(p, d, 6, f32), _vector(p, d, 7, f32),
        _matrix(p, d, 8, f32), _vector(p, d, 9, f32), _matrix(p, d, 10, f32),
        _matrix(p, d, 11, f32), _vector(p, d, 12, f32), _matrix(p, d, 13, f32),
        np.float32(floats[AT[14]]), d[AT[15]], floats[AT[16]], d[AT[17]] != 0,
        _vector(p, d, 18, i64), _matrix(p, d, 19, f32), d[AT[20]], d[AT[21]],
        _matrix(p, d, 22, f32), _vector(p, d, 23, f32), _matrix(p, d, 24, f32),
        _matrix(p, d, 25, i64), _vector(p, d, 26, i64))


def c_entry():
    """_entry compiled as a C function int64(void **pointers, int64 *ints, float64 *floats):
    seconds of compiling, once per machine and version (machinecode.py keeps its machine code).
    Error model "numpy" for the entry itself; run_chunk has no division that could raise."""
    import numba
    from numba import types

    signature = types.int64(types.CPointer(types.voidptr), types.CPointer(types.int64),
                            types.CPointer(types.float64))
    return numba.cfunc(signature, error_model="numpy")(_entry)
