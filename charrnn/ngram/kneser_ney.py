"""Interpolated modified Kneser-Ney, computed the way KenLM's lmplz computes it.

For an n-gram g = c·x with context c (the notation of Chen & Goodman, 1998):

    a(g)       adjusted count: the raw count at the highest order and for n-grams that start
               with <s>; otherwise the number of distinct words seen to the left of g
    D_n(k)     three discounts per order from the count-of-counts t_k of adjusted counts:
               Y = t1 / (t1 + 2 t2),  D(k) = k - (k+1) Y t_{k+1} / t_k  for k = 1, 2, 3+
               (if an estimate is undefined or outside [0, k], `--discount-fallback` gives
               0.5, 1, 1.5, as lmplz does; the unigram estimates of character models need it)
    u(g)       (a(g) - D(a(g))) / sum_x' a(c x')
    gamma(c)   (D(1) N1(c·) + D(2) N2(c·) + D(3) N3+(c·) + pruned mass) / sum_x' a(c x')
    p(x | c)   u(c x) + gamma(c) p(x | c without its first word)
    p(x)       u(x) + gamma() / |V|,  |V| = every word but <s> (so <unk> and unseen tokens get
               gamma() / |V|: the interpolated uniform distribution)

The stored model is the ARPA view of it: log p for every kept n-gram and back-off log gamma(c)
for every context, so unseen continuations back off to exactly the interpolated value.

Pruning (`--prune`, lmplz semantics): an n-gram of order n >= 2 whose raw count is <= the
order's threshold is dropped; its adjusted count stays in its context's denominator and moves
to the context's gamma, so every distribution still sums to one. Discounts are estimated before
pruning. Thresholds must not decrease with the order, so a kept n-gram keeps its suffix and
context.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from charrnn.configs import is_int
from charrnn.errors import UserError, option
from charrnn.ngram.count import Order

FALLBACK = (0.5, 1.0, 1.5)
LOG_FLOOR = -99 * np.log(10.0)  # ARPA's "-99": probability 0 (zero discounts can give it)


@dataclass
class Estimate:
    """Per order n = 1..N: log p (natural log), back-off log gamma, and the kept tables."""

    logp: list[np.ndarray]
    backoff: list[np.ndarray]
    tables: list[Order]                      # orders 2..N, pruned n-grams removed
    discounts: list[list[float]]             # [D1, D2, D3+] per order
    fallback_orders: list[int] = field(default_factory=list)
    counts: list[int] = field(default_factory=list)         # n-grams per order (kept)
    counts_unpruned: list[int] = field(default_factory=list)


def discounts_from(adjusted: np.ndarray, order: int, fallback: bool) -> tuple[list[float], bool]:
    """D1, D2, D3+ from count-of-counts, in float32 arithmetic as lmplz does; (values, fell back)."""
    t = np.bincount(np.minimum(adjusted, 5), minlength=6)[:5].astype(np.int64)
    problem = None
    if (t[1:4] == 0).any():
        k = int(np.flatnonzero(t[1:4] == 0)[0]) + 1
        problem = (f"no {order}-grams with adjusted count {k}, so the discount for count {k + 1} "
                   "is undefined")
    else:
        f32 = np.float32
        y = f32(float(t[1]) / (float(t[1]) + 2.0 * float(t[2])))
        values = []
        for k in (1, 2, 3):
            d = f32(k) - f32(k + 1) * y * f32(t[k + 1]) / f32(t[k])
            values.append(float(d))
            if not 0.0 <= float(d) <= k and problem is None:
                problem = f"the {order}-gram discount for count {k} is {float(d):.4f}, outside [0, {k}]"
        if problem is None:
            return values, False
    if not fallback:
        raise UserError(f"Kneser-Ney discounts cannot be estimated: {problem} (tiny or artificial "
                        f"data?); add more text, or pass {option('fallback', 'discount_fallback')} "
                        "to use 0.5, 1, 1.5")
    return list(FALLBACK), True


def _discount_of(adjusted: np.ndarray, d: list[float]) -> np.ndarray:
    table = np.array([0.0, d[0], d[1], d[2]])
    return table[np.minimum(adjusted, 3)]


def adjusted_counts(unigrams: np.ndarray, tables: list[Order], bos: int) -> list[np.ndarray]:
    """a(g) for every order (see the module docstring)."""
    raw = [unigrams] + [t.count for t in tables]
    out = []
    for n in range(1, len(raw) + 1):
        if n == len(raw):
            out.append(raw[n - 1].astype(np.int64))
            continue
        extensions = np.bincount(tables[n - 1].suffix, minlength=raw[n - 1].size).astype(np.int64)
        starts_bos = (np.arange(raw[0].size) == bos) if n == 1 else (tables[n - 2].word == bos)
        out.append(np.where(starts_bos, raw[n - 1], extensions))
    return out


def parse_prune(spec: str | None, order: int) -> list[int]:
    """'0 0 1' or '0,0,1' → one threshold per order (the last repeats), lmplz's rules."""
    if spec is None:
        return [0] * order
    if not spec.strip():  # typed empty: it would prune nothing, and may have lost its numbers
        raise UserError(f"{option('prune')} is empty: give one threshold per order, e.g. '0 0 1', "
                        f"or drop {option('prune')}")
    try:
        values = [int(v) for v in spec.replace(",", " ").split()]
    except ValueError as exc:
        raise UserError(f"{option('prune')} {spec!r}: give whole numbers, one per order, "
                        "e.g. '0 0 1'") from exc
    return check_prune(values, order, spec)


def check_prune(values: list[int], order: int, spec: object = None) -> list[int]:
    """Thresholds as lmplz takes them → one per order (the last repeats); `spec`: as typed, for
    the message (a library call's list by default)."""
    spec = values if spec is None else spec
    if not isinstance(values, (list, tuple, np.ndarray)) or not all(map(is_int, values)):
        raise UserError(f"{option('prune')} {spec!r}: give whole numbers, one per order, "
                        "e.g. [0, 0, 1]")
    values = [int(v) for v in values]
    if not values or len(values) > order:
        many = "one threshold, 0 (an order-1 model's unigrams cannot be pruned)" if order == 1 \
            else f"1 to {order} thresholds (one per order)"
        raise UserError(f"{option('prune')} {spec!r}: give {many}")
    if values[0] != 0:
        raise UserError(f"{option('prune')}: unigrams cannot be pruned, the first threshold must be 0")
    if any(b < a for a, b in zip(values, values[1:], strict=False)) or min(values) < 0:
        raise UserError(f"{option('prune')} {spec!r}: thresholds must be ≥ 0 and non-decreasing with the "
                        "order (otherwise an n-gram would lose its context)")
    return values + [values[-1]] * (order - len(values))


def estimate(unigrams: np.ndarray, tables: list[Order], bos: int, uniform_size: int,
             prune: list[int], fallback: bool) -> Estimate:
    """Probabilities and back-offs of every order, pruned n-grams removed and ids renumbered."""
    order = len(tables) + 1
    adjusted = adjusted_counts(unigrams, tables, bos)
    discounts, fell_back = [], []
    for n in range(1, order + 1):
        d, fb = discounts_from(adjusted[n - 1], n, fallback)
        discounts.append(d)
        if fb:
            fell_back.append(n)

    # Unigrams: context is empty; <s> gets probability 1 (never predicted), as in lmplz.
    a1 = adjusted[0]
    total = float(a1.sum())
    if total <= 0:
        raise UserError("the training text has no tokens: give a longer corpus")
    sub = _discount_of(a1, discounts[0])
    gamma0 = float(sub[a1 > 0].sum()) / total
    p = (a1 - sub) / total + gamma0 / uniform_size
    p[bos] = 1.0
    probs = [p]
    gammas: list[np.ndarray] = []  # gamma of each order-(n-1) context, from order n
    kept_masks = [np.ones(a1.size, bool)]
    for n in range(2, order + 1):
        tab, a = tables[n - 2], adjusted[n - 1]
        contexts = probs[-1].size
        kept = tab.count > prune[n - 1]
        sub = _discount_of(a, discounts[n - 1])
        denominator = np.bincount(tab.prefix, weights=a, minlength=contexts)
        mass = np.bincount(tab.prefix, weights=np.where(kept, sub, a), minlength=contexts)
        with np.errstate(divide="ignore", invalid="ignore"):
            gamma = np.where(denominator > 0, mass / denominator, 1.0)
            u = (a - sub) / denominator[tab.prefix]
        p = u + gamma[tab.prefix] * probs[-1][tab.suffix]
        probs.append(p)
        gammas.append(gamma)
        kept_masks.append(kept)

    return _finish(probs, gammas, kept_masks, tables, discounts, fell_back)


def _finish(probs, gammas, kept_masks, tables, discounts, fell_back) -> Estimate:
    """Logs, back-offs, and renumbering after pruning (kept sets are closed under suffix/prefix)."""
    order = len(probs)
    logp, backoff, new_tables, renumber = [], [], [], []
    for n in range(1, order + 1):
        kept = kept_masks[n - 1]
        new_id = np.cumsum(kept, dtype=np.int64) - 1
        renumber.append(new_id)
        with np.errstate(divide="ignore"):
            lp = np.clip(np.log(probs[n - 1][kept]), LOG_FLOOR, 0.0)
            bo = (np.maximum(np.log(gammas[n - 1][kept]), LOG_FLOOR) if n < order
                  else np.zeros(int(kept.sum())))
        logp.append(lp.astype(np.float32))
        backoff.append(bo.astype(np.float32))
        if n >= 2:
            t = tables[n - 2]
            prev = renumber[n - 2]
            new_tables.append(Order(t.word[kept], prev[t.suffix[kept]].astype(np.int32),
                                    prev[t.prefix[kept]].astype(np.int32), t.count[kept]))
    counts = [int(m.sum()) for m in kept_masks]
    unpruned = [int(m.size) for m in kept_masks]
    return Estimate(logp, backoff, new_tables, discounts, fell_back, counts, unpruned)
