"""One decoding step's maths, the same on every device and inside a CUDA graph.

    scores (B, V) ─ × 1/T ─ top-k ─ top-p ─ shaped (B, V) ─ + Gumbel noise ─ max ─ id, best (B,)
                    (greedy: no temperature, no noise: the max of the scores themselves)

Sampling is Gumbel-max: the argmax of log p + g, with g = -log E and E ~ Exp(1) drawn from the
sampler's own generator, picks token i with probability p_i, as torch.multinomial does, but in
two elementwise kernels and one reduction of static shape: no host read, no validation kernels,
so K steps can be captured in one CUDA graph. Every shape here is fixed by (B, V) and the
options, never by the data (top-k and top-p mask with -inf rather than cut).

A row whose scores hold NaN (or +inf, or nothing but -inf) has no distribution to draw from:
its id is marked -1, so the host sees it with the ids it reads anyway and stops with one clear
error, instead of a device-side assert that would kill the CUDA context (`checked`).

Per-token figures for the live view (`token_stats`) are reduced over a whole chunk at once:
the chosen token's probability, the entropy in bits and the top alternatives.
"""

from __future__ import annotations

import math

import torch

from charrnn.lm.cpustep import TOP  # alternatives kept per token for the live view

TINY = torch.finfo(torch.float32).tiny  # E = 0 would make the noise +inf, and -inf + inf NaN


def shape_scores(scores: torch.Tensor, inv_temp: float | torch.Tensor, top_k: int | None,
                 top_p: float | None) -> torch.Tensor:
    """Temperature, then top-k, then top-p; masked entries become -inf. scores: (…, V).

    inv_temp is 1/T: a float, or a one-element tensor (a CUDA graph's device scalar, which can
    change between replays)."""
    shaped = scores.float() * inv_temp
    if top_k is not None and top_k < shaped.size(-1):
        kth = torch.topk(shaped, top_k, dim=-1).values[..., -1:]
        shaped = shaped.masked_fill(shaped < kth, float("-inf"))
    if top_p is not None and top_p < 1:
        sorted_scores, order = torch.sort(shaped, descending=True, dim=-1)
        probs = torch.softmax(sorted_scores, dim=-1)
        drop = probs.cumsum(-1) - probs >= top_p  # the mass before a token: keeps ≥ 1 token
        shaped = shaped.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return shaped


def gumbel_noise(generator: torch.Generator, shape: tuple[int, ...],
                 device: torch.device) -> torch.Tensor:
    """-log E, E ~ Exp(1): Gumbel noise, drawn from `generator` (its stream of numbers is the
    same whether drawn as one (K, B, V) block or K blocks of (B, V) on the CPU: tested)."""
    noise = torch.empty(shape, device=device).exponential_(generator=generator)
    return noise.clamp_min_(TINY).log_().neg_()


def pick(shaped: torch.Tensor, noise: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """(best value, drawn id) per row: the argmax of shaped + noise (greedy: noise None)."""
    return (shaped if noise is None else shaped + noise).max(-1)


def checked(ids: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
    """The ids, with -1 where the row had no distribution (its best value is NaN, +inf, or
    -inf: every entry masked)."""
    return torch.where(torch.isfinite(best), ids, -1)


def token_stats(shaped: torch.Tensor, ids: torch.Tensor, top: int = TOP) -> torch.Tensor:
    """Per token of a chunk: (chosen p, entropy in bits, top-`top` probabilities, their ids),
    packed as floats (…, 2 + 2·top). shaped: (…, V) the distributions drawn from; ids: (…)."""
    probs = torch.softmax(shaped, dim=-1)
    chosen = probs.gather(-1, ids.clamp_min(0).unsqueeze(-1))
    # Masked tokens have p = 0 exactly; clamp so 0·log 0 counts as 0, not NaN (natural log,
    # then bits: log2 is many times slower than log in CPU builds of torch).
    entropy = (probs * probs.clamp_min(1e-30).log()).sum(-1, keepdim=True) * (-1 / math.log(2))
    best = torch.topk(probs, min(top, probs.size(-1)), dim=-1)
    return torch.cat([chosen, entropy, best.values, best.indices.to(probs.dtype)], dim=-1)
