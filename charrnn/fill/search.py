"""Candidate search and scoring for one blank: proposals from beams, rescoring of whole windows.

Every model here works on token ids of its own tokenizer and answers two questions:

    beam(context, min_len, max_len, width)   likely fills read from one side (or, for the masked
                                             model, from both sides at once), with their scores
    rescore(…)                               log p of each candidate *together with the text on
                                             the other side of the blank*

    forward LM    log P(fill, right[:lookahead] | left)        (right-hand text is scored too)
    backward LM   log P(fill, left[-lookahead:] | right)       (reads right to left)
    masked BiRNN  Σ log p(fill_i | left, <mask>×L, right)      (content given the length L)
    n-gram        like the forward LM, with the n-gram's own tokenizer

Each LM score is log P(fill | both sides) up to a constant, so candidates of different lengths
compare fairly; a method averages its models' log scores (a product of experts) and normalises
over the candidates found. The masked model knows nothing of the length, so its score is paired
with the LMs' belief in each length (see `combine`); its weight is `mask_weight` (default 0: it
only proposes candidates, because a briefly trained fill model made the ranking worse on tiny
Shakespeare's validation text, while the forward + backward LM product made it better).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property

import numpy as np
import torch
import torch.nn.functional as F

from charrnn.lm.model import RNNLM
from charrnn.rnn.state import repeat_rows, select_rows

Candidate = tuple[int, ...]
NEG = float("-inf")


@dataclass(frozen=True)
class Edges:
    """Tokens a fill may not start with (`first`) or end with (`last`), in a search's reading
    order. Kept out inside the search, not filtered after it: a narrow beam whose best fills
    all ended in "，" found nothing."""

    first: frozenset[int] = frozenset()
    last: frozenset[int] = frozenset()

    def reversed(self) -> Edges:
        """The same rule for a search that reads right to left."""
        return Edges(self.last, self.first)

    @cached_property
    def _indices(self) -> tuple[list[int], list[int]]:  # (sorted once: a beam bans every step)
        return sorted(self.first), sorted(self.last)

    def __bool__(self) -> bool:
        return bool(self.first or self.last)

    def ban(self, log_p, step: int, lmax: int) -> None:
        """Set -inf where `log_p` (the last axis: the vocabulary) takes a token the rule keeps
        out at `step`: the first one, and the last one a fill can have."""
        first, last = self._indices
        for tokens, applies in ((first, step == 0), (last, step + 1 == lmax)):
            if applies and tokens:
                log_p[..., tokens] = NEG

    def ends_well(self, cand: Candidate) -> bool:
        return cand[-1] not in self.last


NO_EDGES = Edges()


class LMScorer:
    """One RNN LM, fed in its own reading order (a backward LM gets reversed ids)."""

    def __init__(self, model: RNNLM, device: torch.device, banned: Sequence[int]) -> None:
        self.model, self.device = model.eval(), device
        self.banned = torch.tensor(sorted(set(banned)), dtype=torch.long)
        self._primed: tuple[tuple[int, ...], object, torch.Tensor] | None = None

    @torch.inference_mode()
    def prime(self, context: Sequence[int]):
        """State after reading `context`, and log p of the next token (cached: beam, then rescore)."""
        key = tuple(context)
        if self._primed is None or self._primed[0] != key:
            ids = torch.tensor([list(key)], dtype=torch.long, device=self.device)
            logits, state = self.model(ids)
            self._primed = (key, state, F.log_softmax(logits[0, -1].float(), -1))
        return self._primed[1], self._primed[2]

    def next_logp(self, context: Sequence[int]) -> np.ndarray:
        """ln p of each token right after `context`."""
        return self.prime(context)[1].double().cpu().numpy()

    @torch.inference_mode()
    def beam(self, context: Sequence[int], lmin: int, lmax: int, width: int,
             edges: Edges = NO_EDGES) -> list[tuple[Candidate, float]]:
        """The `width` best continuations of every length in [lmin, lmax], by log P(· | context),
        none starting or ending with the `edges` tokens."""
        state, log_p = self.prime(context)
        log_p = log_p[None].clone()
        scores = torch.zeros(1, device=log_p.device)
        beams: list[Candidate] = [()]
        found: list[tuple[Candidate, float]] = []
        for step in range(lmax):
            log_p[:, self.banned] = NEG
            edges.ban(log_p, step, lmax)
            total = (scores[:, None] + log_p).reshape(-1)
            top = torch.topk(total, min(width, total.numel()))  # -inf ones dropped at the end
            vocab = log_p.size(-1)
            rows, tokens = top.indices // vocab, top.indices % vocab
            beams = [beams[r] + (t,) for r, t in zip(rows.tolist(), tokens.tolist(), strict=True)]
            scores = top.values
            if step + 1 >= lmin:
                found += [(b, v) for b, v in zip(beams, scores.tolist(), strict=True)
                          if edges.ends_well(b)]
            if step + 1 < lmax:
                state = select_rows(state, rows)
                logits, state = self.model(tokens[:, None], state)
                log_p = F.log_softmax(logits[:, -1].float(), -1)
        return [(cand, score) for cand, score in found if score > NEG]

    @torch.inference_mode()
    def rescore(self, context: Sequence[int], continuations: Sequence[Sequence[int]],
                end: Sequence[int] | None = None, chunk: int = 256) -> np.ndarray:
        """log P(continuation | context) for each (all non-empty), batched; with `end`, times
        P(one of the `end` tokens comes next): the text stops there, at a boundary."""
        out = np.empty(len(continuations))
        for lo in range(0, len(continuations), chunk):
            part = continuations[lo : lo + chunk]
            out[lo : lo + len(part)] = [lp.sum() for lp in self.token_logps(context, part, end)]
        return out

    @torch.inference_mode()
    def token_logps(self, context: Sequence[int], part: Sequence[Sequence[int]],
                    end: Sequence[int] | None = None) -> list[np.ndarray]:
        """ln p of each token of each continuation, read as one batch after the context; with
        `end`, one more entry: ln Σ p(e) over the end tokens after the whole continuation."""
        state, first = self.prime(context)
        lengths = torch.tensor([len(seq) for seq in part])
        width = int(lengths.max())
        ids = torch.zeros(len(part), width, dtype=torch.long)
        for i, seq in enumerate(part):
            ids[i, : len(seq)] = torch.tensor(seq)
        ids = ids.to(self.device)
        lp = first[ids[:, 0]][:, None]
        read = ids if end else ids[:, :-1]  # the last token is read only to score what follows
        if read.size(1):
            features, _ = self.model.features(read, repeat_rows(state, len(part)))
            if width > 1:
                rest = -self.model.nll(features[:, : width - 1], ids[:, 1:]).float()
                lp = torch.cat([lp, rest.view(len(part), width - 1)], dim=1)
            if end:
                last = features[torch.arange(len(part)), (lengths - 1).to(self.device)]
                log_p = F.log_softmax(self.model.scores(last).float(), -1)
                ends = torch.logsumexp(log_p[:, list(end)], -1)
        lp = lp.double().cpu().numpy()
        out = [lp[i, : len(seq)] for i, seq in enumerate(part)]
        if end:
            out = [np.append(row, e) for row, e in zip(out, ends.double().cpu().numpy(), strict=True)]
        return out


class MixedLMScorer(LMScorer):
    """The forward LM mixed per token with an n-gram on its tokenizer (`fill --mix`): the
    rescoring reads ln(λ·p_rnn + (1−λ)·p_ngram) of every token; proposals stay the RNN's."""

    def __init__(self, base: LMScorer, mixture) -> None:
        self.__dict__.update(base.__dict__)
        self.mixture = mixture

    def token_logps(self, context: Sequence[int], part: Sequence[Sequence[int]],
                    end: Sequence[int] | None = None) -> list[np.ndarray]:
        from charrnn.evaluation.mix import mixed_logp

        rnn = super().token_logps(context, part, end)
        ngram = ngram_token_logps(self.mixture.ngram, context, part, end)
        return [mixed_logp(r, n, self.mixture.weight) for r, n in zip(rnn, ngram, strict=True)]


def ngram_token_logps(model, context: Sequence[int], part: Sequence[Sequence[int]],
                      end: Sequence[int] | None = None) -> list[np.ndarray]:
    """An n-gram's LMScorer.token_logps: ln p of each token after `context` (+ the end term)."""
    rows = model.continuation_logps(context, part)
    if not end:
        return rows
    # The state after each continuation, then the end tokens' share of what comes next.
    states = np.concatenate([model.start_states(np.asarray([*context, *seq]), 1) for seq in part])
    with np.errstate(divide="ignore"):
        ends = np.log(model.next_distributions(states)[:, list(end)].sum(axis=1))
    return [np.append(row, e) for row, e in zip(rows, ends, strict=True)]


class MaskScorer:
    """The masked BiRNN (charrnn.fill.model): per-position distributions for each blank length."""

    def __init__(self, model, device: torch.device, banned: Sequence[int]) -> None:
        self.model, self.device = model.eval(), device
        self.mask_id = model.config.mask_id
        self.banned = sorted(set(banned))

    @torch.inference_mode()
    def marginals(self, left: Sequence[int], right: Sequence[int], lengths: Sequence[int]
                  ) -> dict[int, np.ndarray]:
        """{L: (L, V) log p at each of L masked positions between left and right}."""
        seqs = [[*left, *[self.mask_id] * n, *right] for n in lengths]
        width = max(map(len, seqs))
        ids = torch.zeros(len(seqs), width, dtype=torch.long)
        for i, seq in enumerate(seqs):
            ids[i, : len(seq)] = torch.tensor(seq)
        lens = torch.tensor([len(s) for s in seqs])
        log_p = self.model.masked_log_probs(ids.to(self.device), lens).cpu().numpy()
        log_p[:, self.banned] = NEG
        out, row = {}, 0
        for n in lengths:
            out[n] = log_p[row : row + n]
            row += n
        return out

    @staticmethod
    def beam(marginals: dict[int, np.ndarray], width: int, edges: Edges = NO_EDGES
             ) -> list[tuple[Candidate, float]]:
        """Best fills of each length under the per-position distributions."""
        found = []
        for table in marginals.values():
            beams, scores = [()], np.zeros(1)
            for step, row in enumerate(table):
                if edges:  # (the table stays as it is: the rescoring reads it)
                    row = row.copy()
                    edges.ban(row, step, len(table))
                total = (scores[:, None] + row[None]).reshape(-1)
                k = min(width, int(np.isfinite(total).sum()))
                if k == 0:  # nothing allowed here: no fill of this length
                    beams, scores = [], np.zeros(0)
                    break
                top = np.argpartition(-total, k - 1)[:k]
                top = top[np.argsort(-total[top])]
                beams = [beams[i // row.size] + (int(i % row.size),) for i in top]
                scores = total[top]
            found += list(zip(beams, scores.tolist(), strict=True))
        return found

    @staticmethod
    def score(marginals: dict[int, np.ndarray], candidates: Sequence[Candidate]) -> np.ndarray:
        return np.array([sum(marginals[len(c)][i, t] for i, t in enumerate(c)) for c in candidates])


class NGramScorer:
    """A charrnn.ngram model (modified Kneser-Ney) behind the same two questions."""

    def __init__(self, model, banned: Sequence[int]) -> None:
        self.model = model
        self.vocab = model.vocab_size
        self.banned = sorted(set(banned))

    def _history(self, ids: Sequence[int]) -> np.ndarray:
        model, ids = self.model, list(ids)
        if model.lines and model.line_break is not None and model.line_break in ids:
            ids = ids[len(ids) - ids[::-1].index(model.line_break):]
        if model.lines or not ids:
            ids = [model.bos, *ids]
        return np.asarray(ids, dtype=np.int32)

    def _log_p(self, history: Sequence[int]) -> np.ndarray:
        with np.errstate(divide="ignore"):
            log_p = np.log(self.model.distribution(self._history(history))[: self.vocab])
        log_p[self.banned] = NEG
        return log_p

    def next_logp(self, context: Sequence[int]) -> np.ndarray:
        with np.errstate(divide="ignore"):
            return np.log(self.model.distribution(self._history(context))[: self.vocab])

    def beam(self, context: Sequence[int], lmin: int, lmax: int, width: int,
             edges: Edges = NO_EDGES) -> list[tuple[Candidate, float]]:
        beams: list[tuple[Candidate, float]] = [((), 0.0)]
        found = []
        for step in range(lmax):
            pool = []
            for cand, score in beams:
                log_p = self._log_p([*context, *cand])
                edges.ban(log_p, step, lmax)
                k = min(width, int(np.isfinite(log_p).sum()))
                for t in np.argpartition(-log_p, k - 1)[:k] if k else []:
                    pool.append((cand + (int(t),), score + float(log_p[t])))
            beams = sorted(pool, key=lambda x: -x[1])[:width]
            if step + 1 >= lmin:
                found += [(c, v) for c, v in beams if edges.ends_well(c)]
        return found

    def rescore(self, context: Sequence[int], continuations: Sequence[Sequence[int]],
                end: Sequence[int] | None = None) -> np.ndarray:
        rows = ngram_token_logps(self.model, context, continuations, end)
        return np.array([row.sum() for row in rows])


def merge(sources: Sequence[list[tuple[Candidate, float]]], limit: int) -> list[Candidate]:
    """Up to `limit` distinct candidates, taking the sources' best in turn (fair shares)."""
    ranked = [sorted(s, key=lambda x: -x[1]) for s in sources if s]
    seen: dict[Candidate, None] = {}
    depth = 0
    while len(seen) < limit and any(depth < len(r) for r in ranked):
        for r in ranked:
            if depth < len(r) and len(seen) < limit:
                seen.setdefault(r[depth][0], None)
        depth += 1
    return list(seen)


def log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    top = np.max(x[np.isfinite(x)]) if np.isfinite(x).any() else 0.0
    return x - (top + np.log(np.sum(np.exp(x - top))))


def combine(lm_scores: Sequence[np.ndarray], mask_scores: np.ndarray | None,
            lengths: np.ndarray, mask_weight: float = 1.0) -> np.ndarray:
    """Normalised log-probabilities over the candidates: a weighted mean of the experts' logs.

    The masked model scores content given the length, so it enters as log P_mask(fill | L) +
    log P_LM(L), with P_LM(L) the share of the LMs' probability on candidates of that length.
    """
    parts = [log_softmax(s) for s in lm_scores]
    weights = [1.0] * len(parts)
    if mask_scores is not None and (mask_weight > 0 or not parts):
        lm = log_softmax(np.mean(parts, axis=0)) if parts else np.zeros(len(lengths))
        adjusted = np.empty(len(lengths))
        for n in np.unique(lengths):
            mine = lengths == n
            p_length = np.log(np.exp(lm[mine]).sum()) if parts else 0.0
            adjusted[mine] = log_softmax(mask_scores[mine]) + p_length
        parts.append(adjusted)
        weights.append(mask_weight if lm_scores else 1.0)
    return log_softmax(np.average(parts, axis=0, weights=weights))
