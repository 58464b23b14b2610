"""One token of one stream in NumPy: the model's step and the draw, as cpukernel computes them.

    state (h, c per layer) ─ step(token) ─▶ scores (V,) ─ shape (× 1/T, top-k, top-p) ─▶ shaped
    shaped + Gumbel noise ─ pick ─▶ id (-1: no distribution)       stats(shaped, id) for the view

A few vectorised calls a layer (matrix-vector products, the gates as slices of one array):
faster than PyTorch's per-call overhead on one row, and no compiler to load. The state arrays
are the kernel's layout (h and c (layers, hidden), float32), so the kernel takes over from them.
"""

from __future__ import annotations

import numpy as np

TOP = 5  # alternatives per token for the live view (here: torch-free, as the view is)
CELL_CODES = {"rnn": 0, "lstm": 1, "gru": 2}  # how the compiled kernel is told the cell


def stats_width(vocab: int) -> int:
    """Floats per token of the live view's stats: chosen p, entropy, top probabilities, ids."""
    return 2 + 2 * min(TOP, vocab)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return np.float32(1.0) / (np.float32(1.0) + np.exp(-x))


def step(weights, h: np.ndarray, c: np.ndarray, token: int) -> np.ndarray:
    """Every layer's state after `token` (h, c written in place) → the next token's scores."""
    size, x = weights.config.hidden, None
    for layer in range(h.shape[0]):
        gi = weights.table[token] if layer == 0 else \
            weights.w_ih[layer] @ x + weights.b_ih[layer]
        gh = weights.w_hh[layer] @ h[layer] + weights.b_hh[layer]
        cell = weights.config.cell
        if cell == "lstm":
            gates = gi + gh
            sig = _sigmoid(gates)
            c[layer] = sig[size:2 * size] * c[layer] + sig[:size] * np.tanh(
                gates[2 * size:3 * size])
            h[layer] = sig[3 * size:] * np.tanh(c[layer])
        elif cell == "gru":
            rz = _sigmoid(gi[:2 * size] + gh[:2 * size])
            n = np.tanh(gi[2 * size:] + rz[:size] * gh[2 * size:])
            h[layer] = n + rz[size:] * (h[layer] - n)
        else:
            h[layer] = np.tanh(gi + gh)
        x = h[layer]
    if weights.proj is not None:
        x = weights.proj[0] @ x + weights.proj[1]
    return weights.head_w @ x + weights.head_b


def shape(scores: np.ndarray, inv_temp: float, top_k: int, top_p: float) -> np.ndarray:
    """× 1/T, then top-k (ties with the k-th kept), then top-p (a token is dropped when the mass
    before it is ≥ p; the first is always kept); masked entries -inf. 0 = off."""
    shaped = scores * np.float32(inv_temp)
    vocab = shaped.shape[0]
    if 0 < top_k < vocab:
        kth = np.partition(shaped, vocab - top_k)[vocab - top_k]
        shaped[shaped < kth] = -np.inf
    if 0 < top_p < 1:
        order = np.argsort(-shaped, kind="stable")
        probs = np.exp(shaped[order].astype(np.float64) - shaped[order[0]])
        probs /= probs.sum()
        drop = np.cumsum(probs) - probs >= top_p
        shaped[order[drop]] = -np.inf
    return shaped


def pick(shaped: np.ndarray, noise: np.ndarray | None) -> int:
    """argmax(shaped + noise) (greedy: noise None); -1 where there is no distribution (NaN,
    +inf, or every entry masked)."""
    values = shaped if noise is None else shaped + noise
    token = int(np.argmax(values))
    return token if np.isfinite(values[token]) and not np.isnan(values).any() else -1


def stats(shaped: np.ndarray, tokens: np.ndarray, width: int) -> np.ndarray:
    """Per row of shaped (n, V) and its chosen id: (chosen p, entropy in bits, the top
    probabilities, their ids), `width` = 2 + 2·top. A chunk's rows at once: one call per
    token cost the live view a tenth of its time."""
    probs = np.exp(shaped.astype(np.float64) - shaped.max(axis=1, keepdims=True))
    probs /= probs.sum(axis=1, keepdims=True)
    best = np.argsort(-probs, axis=1, kind="stable")[:, :(width - 2) // 2]
    logs = np.log(probs, out=np.zeros_like(probs), where=probs > 0)
    entropy = -(probs * logs).sum(axis=1) / np.log(2.0)
    chosen = np.take_along_axis(probs, tokens[:, None], 1)[:, 0]
    return np.column_stack([chosen, entropy, np.take_along_axis(probs, best, 1),
                            best]).astype(np.float32)
