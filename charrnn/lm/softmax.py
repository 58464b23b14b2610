"""The adaptive softmax (Grave et al. 2017): a word-level output layer that costs a fraction of V.

The vocabulary, in order of training frequency, is cut into a head and tail clusters:

    rank  0 ……… c₀ ……………… c₁ ………………………… V
          │ head │ tail 1     │ tail 2             head: the c₀ most frequent tokens + one entry
                                                   per tail; tail k reads the hidden vector
                                                   projected down to d / div_valueᵏ

    log p(w) = log p_head(w)                           w in the head
    log p(w) = log p_head(tail k) + log p_k(w)         w in tail k

Training reads a tail only for the targets that fall in it, so most tokens cost d × (c₀ + K)
instead of d × V. Everything that reads probabilities gets the exact normalised distribution
(`log_prob`, all V entries, summing to 1), never an approximation. With tied weights the head's
shortlist rows are the embedding rows of its tokens (the tails are not tied).

Ours, not torch.nn.AdaptiveLogSoftmaxWithLoss: the vocabulary order is a buffer (tokenizers do not
number tokens by frequency), the shortlist can be tied, and the loss is per token (evaluation,
mixtures and `charrnn score` need each token's log-probability).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from charrnn.rnn.layers import ids_in_order

HEAD_SHARES = (0.87, 0.97)  # training-token shares the head and the first tail reach (PTB:
# cut-offs 2,000 and 6,000, the usual ones)
DIV_VALUE = 4.0
ADAPTIVE_FROM = 5000  # --softmax auto: adaptive from this vocabulary size, on a CPU


def resolve_softmax(name: str, vocab: int, device: torch.device) -> str:
    """--softmax auto: adaptive for large vocabularies on a CPU (where the full softmax is most of
    a word-level step); full on a GPU (the full product is cheap there, and reading each tail for
    its own targets would wait on the host) and for small vocabularies (characters)."""
    if name != "auto":
        return name
    return "adaptive" if device.type == "cpu" and vocab >= ADAPTIVE_FROM else "full"


def cutoffs_from_counts(counts: np.ndarray, shares: tuple[float, ...] = HEAD_SHARES) -> list[int]:
    """Cluster boundaries (in frequency ranks) where the cumulative share of training tokens
    first reaches each of `shares`; each cluster holds at least one token."""
    ranked = np.sort(np.asarray(counts, dtype=np.float64))[::-1]
    cumulative = np.cumsum(ranked) / max(1.0, ranked.sum())
    cuts, last = [], 0
    for share in shares:
        cut = int(np.searchsorted(cumulative, share) + 1)
        cut = min(max(cut, last + 1), len(ranked) - 1)
        if cut > last and cut < len(ranked):
            cuts.append(cut)
            last = cut
    return cuts


def frequency_order(counts: np.ndarray) -> torch.Tensor:
    """Token ids, most frequent first (ties by id, so the order is a function of the counts)."""
    counts = np.asarray(counts)
    return torch.from_numpy(np.lexsort((np.arange(len(counts)), -counts)).astype(np.int64))


class AdaptiveSoftmax(nn.Module):
    def __init__(self, d: int, vocab: int, cutoffs: list[int], div_value: float = DIV_VALUE,
                 tied: nn.Embedding | None = None) -> None:
        super().__init__()
        if not cutoffs or list(cutoffs) != sorted(set(cutoffs)) or not 0 < cutoffs[0] \
                or cutoffs[-1] >= vocab:
            raise ValueError(f"cutoffs {cutoffs} must rise strictly within (0, {vocab})")
        self.vocab, self.bounds = vocab, [0, *cutoffs, vocab]
        self.shortlist_size, self.tails_count = cutoffs[0], len(cutoffs)
        # Not a submodule: the embedding belongs to the LM (saved once, under its own name).
        object.__setattr__(self, "_tied", tied)
        if tied is None:
            self.shortlist = nn.Parameter(torch.empty(cutoffs[0], d).uniform_(-0.1, 0.1))
        self.cluster = nn.Parameter(torch.empty(len(cutoffs), d).uniform_(-0.1, 0.1))
        self.head_bias = nn.Parameter(torch.zeros(cutoffs[0] + len(cutoffs)))
        self.tails = nn.ModuleList()
        for k in range(len(cutoffs)):
            small = max(1, int(d // div_value ** (k + 1)))
            self.tails.append(nn.Sequential(nn.Linear(d, small, bias=False),
                                            nn.Linear(small, self.bounds[k + 2] - self.bounds[k + 1])))
        self.register_buffer("order", ids_in_order(vocab))  # rank → token id
        self.register_buffer("rank", ids_in_order(vocab))  # token id → rank

    def set_order(self, order: torch.Tensor) -> None:
        """The vocabulary's frequency order (saved with the weights, as buffers)."""
        with torch.no_grad():
            self.order.copy_(order)
            self.rank[order] = torch.arange(self.vocab, device=self.rank.device)

    def _head_logits(self, x: torch.Tensor) -> torch.Tensor:
        tied = self._tied
        shortlist = (tied.weight.index_select(0, self.order[: self.shortlist_size])
                     if tied is not None else self.shortlist)
        # Two products and their outputs joined, not one over joined weights: that would copy the
        # shortlist's matrix at every call (a sampling step's dearest op).
        return torch.cat([F.linear(x, shortlist), F.linear(x, self.cluster)], -1) + self.head_bias

    def log_prob(self, x: torch.Tensor) -> torch.Tensor:
        """(N, d) → (N, V): the exact log-probabilities, in token-id order."""
        head = F.log_softmax(self._head_logits(x).float(), dim=-1)
        c0 = self.shortlist_size
        parts = [head[:, :c0]]
        for k, tail in enumerate(self.tails):
            parts.append(head[:, c0 + k : c0 + k + 1] + F.log_softmax(tail(x).float(), dim=-1))
        return torch.cat(parts, dim=-1).index_select(-1, self.rank)

    def nll(self, x: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """(N, d), (N,) token ids → (N,) -log p(target): each tail read for its targets only."""
        ranks = self.rank[targets]
        head = F.log_softmax(self._head_logits(x).float(), dim=-1)
        c0 = self.shortlist_size
        log_p = head.gather(1, ranks.clamp(max=c0 - 1)[:, None]).squeeze(1)
        for k, tail in enumerate(self.tails):
            lo, hi = self.bounds[k + 1], self.bounds[k + 2]
            rows = torch.nonzero((ranks >= lo) & (ranks < hi)).squeeze(1)
            if rows.numel() == 0:
                continue
            inner = F.log_softmax(tail(x.index_select(0, rows)).float(), dim=-1)
            picked = inner.gather(1, (ranks.index_select(0, rows) - lo)[:, None]).squeeze(1)
            log_p = log_p.index_copy(0, rows, head.index_select(0, rows)[:, c0 + k] + picked)
        return -log_p
