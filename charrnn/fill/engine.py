"""Fill in the blank: the methods that combine the models, blank by blank.

Methods (what `--method` and `charrnn fill eval` name):

    left           the forward LM from the left context only (what a char-rnn can do)
    forward        forward-LM beam, each candidate rescored with the text after the blank
    bidirectional  proposals from the forward LM, the backward LM and the masked BiRNN, rescored
                   by both LMs together, and by the masked model with --mask-weight > 0
                   (charrnn.fill.search explains the scores)
    ngram          the n-gram baseline: its own beam, rescored with the text after the blank

Several blanks are filled jointly, left to right (a beam over blanks); probabilities are
normalised over the candidates found.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from charrnn.errors import UserError, option
from charrnn.fill.config import FillOptions, SearchOptions
from charrnn.fill.families import Family, method_family
from charrnn.fill.syntax import Template, parse

if TYPE_CHECKING:
    from charrnn.fill.search import Edges


def shown_prob(prob: float) -> str:
    """' 62.1%', or to a thousandth of a percent below 0.1%, then '<0.001%' (several blanks'
    joint fills are each a small share: every row showed '0.0%')."""
    if prob >= 0.00095:
        return f"{prob:6.1%}"
    return f"{prob:6.3%}" if prob >= 0.000005 else "<0.001%"


@dataclass
class Fill:
    fills: list[str]  # one string per blank
    prob: float  # normalised over the candidates found

    def to_json(self, template: Template) -> dict:
        return {"text": template.render(self.fills), "fills": self.fills, "prob": self.prob}


@dataclass
class Sides:
    """What the models read around one blank (token ids of the family's tokenizer)."""

    start_l: list[int]  # the forward models' context (a line break where there is none)
    starts_r: list[tuple[float, list[int]]]  # the backward models' contexts, log-weighted
    look_l: list[int]  # scored with each candidate: the far side for the backward models
    look_r: list[int]  # … and for the forward ones
    end: list[int] | None  # tokens one of which follows look_r (the text stops there)


def blank_candidates(fam: Family, method: str, left: list[int], right: list[int], lmin: int,
                     lmax: int, opts: FillOptions, text_ends: bool = False,
                     words: bool = False, space_first: bool = False
                     ) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """Candidates for one blank between token contexts, with normalised log-probabilities.
    `text_ends`: nothing follows `right` (the user's text stops there, at a boundary).
    `words`: a blank of unknown length holds words, so a fill neither starts nor ends with a
    punctuation mark, a line break or a space (the text around it has those).
    `space_first`: the space before the blank was taken from `left` (`_space_with_fill`), so a
    fill starts with exactly one space."""
    from charrnn.fill.search import NO_EDGES, MaskScorer, combine, log_softmax

    so = opts.search
    ctx_l, ctx_r = left[-so.context :], right[: so.context]
    lb = fam.line_break if fam.line_break is not None else 0
    # The text stopping after `right` means a boundary comes next: a line break, or a mark such
    # as 。 or ! the user did not type (summed over them, so "净" is not beaten by "净。").
    sides = Sides(ctx_l or [lb], [(0.0, ctx_r[::-1] or [lb])], left[-so.lookahead :],
                  right[: so.lookahead],
                  fam.boundary if text_ends and len(right) <= so.lookahead else None)
    if method == "bidirectional" and fam.bwd is not None and text_ends and len(right) <= so.context:
        sides.starts_r = _backward_starts(fam, ctx_r)
    edges = fam.word_edges if words else NO_EDGES
    if method == "left":
        found = fam.fwd.beam(sides.start_l, lmin, lmax, max(so.beam, so.candidates), edges)
        if words:  # (the baseline follows the word rule too: it put "，" in a word blank)
            kept = set(_word_fills(fam, [c for c, _ in found], space_first))
            found = [(c, score) for c, score in found if c in kept]
        if not found:
            return [], np.zeros(0)
        return [c for c, _ in found], log_softmax(np.array([s for _, s in found]))
    marg = None
    if method == "bidirectional" and fam.mask is not None:
        marg = fam.mask.marginals(ctx_l, ctx_r, list(range(lmin, lmax + 1)))
    cands = _proposals(fam, method, sides, lmin, lmax, so, marg, edges)
    if words:
        cands = _word_fills(fam, cands, space_first)
    if method != "ngram" and "fwd" in fam.proposers and len(cands) > so.candidates:
        cands = _shortlist(fam, cands, sides, so.candidates)
    if not cands:
        return [], np.zeros(0)
    lm_scores = _rescored(fam, method, cands, sides)
    mask_scores = MaskScorer.score(marg, cands) if marg is not None else None
    lengths = np.array([len(c) for c in cands])
    return cands, combine(lm_scores, mask_scores, lengths, so.mask_weight)


def _word_fills(fam: Family, cands: list[tuple[int, ...]], space_first: bool
                ) -> list[tuple[int, ...]]:
    """The candidates a blank of unknown length may hold: none starts or ends with a mark, a
    line break or a space."""
    edges = fam.word_edges  # (the searches keep to it; the whole vocabulary tried does not)
    cands = [c for c in cands if c[0] not in edges.first and c[-1] not in edges.last]
    if fam.tokenizer.level == "subword":  # a piece may carry a space: read the text
        cands = [c for c in cands if _word_like(fam.decode(c), space_first)]
    return cands


def _word_like(text: str, space_first: bool) -> bool:
    """A subword fill of a word blank: no space at its end, and one at its start exactly where
    the space before the blank was given to it."""
    body = text[1:] if space_first and text.startswith(" ") else text
    return bool(body) and body == body.strip() and (space_first == text.startswith(" "))


def _space_with_fill(fam: Family, words: bool, left_text: str) -> bool:
    """sentencepiece reads a word with the space before it ("▁lord"): a word blank after a space
    is read as the fill's space, which the text already shows, rather than a lone "▁" piece the
    models have rarely seen before a word."""
    return words and fam.tokenizer.level == "subword" and left_text.endswith(" ")


def _proposals(fam: Family, method: str, sides: Sides, lmin: int, lmax: int,
               so: SearchOptions, marg: dict | None, edges: Edges) -> list[tuple[int, ...]]:
    """Candidates from every search the method has: beams from the left, from the right (read
    backwards) and the masked model's; a one-token blank on a small vocabulary: every token."""
    from charrnn.fill.search import MaskScorer, merge

    if _enumerated(fam, lmin, lmax, so):
        banned = set(Family.banned_ids(fam.tokenizer))
        return [(t,) for t in range(fam.tokenizer.vocab_size) if t not in banned]
    sources = []
    if method == "ngram":
        sources.append(fam.ngram.beam(sides.start_l, lmin, lmax, so.beam, edges))
    forward = [fam.fwd, fam.proposers.get("fwd")] if fam.fwd is not None else []
    backward = [fam.bwd, fam.proposers.get("bwd")] if fam.bwd is not None else []
    if method in ("forward", "bidirectional"):
        sources += [f.beam(sides.start_l, lmin, lmax, so.beam, edges) for f in forward
                    if f is not None]
    if method == "bidirectional":
        best_start = max(sides.starts_r)[1]
        sources += [[(c[::-1], s) for c, s in b.beam(best_start, lmin, lmax, so.beam,
                                                     edges.reversed())]
                    for b in backward if b is not None]
    if marg is not None:
        sources.append(MaskScorer.beam(marg, so.beam, edges))
    # Every proposer keeps its full share: a second proposer must add recall, not cut into the
    # first one's candidates.
    return merge(sources, so.candidates * len(sources))


def _enumerated(fam: Family, lmin: int, lmax: int, so: SearchOptions) -> bool:
    """A one-token blank on a vocabulary small enough to try every token: no search."""
    return lmin == lmax == 1 and fam.tokenizer.vocab_size <= so.enumerate_below


def idle_search(templates: list[Template], families: dict[str, Family], methods: list[str],
                opts: FillOptions) -> list[str]:
    """The search settings ("beam", "candidates") that no blank of `templates` reads under
    `methods`: every blank is one token on a vocabulary tried whole. (A fill group still
    compares its candidates with how many to rescore; the left-only baseline always searches.)"""
    read: set[str] = set()
    for method in methods:
        fam = method_family(families, method)
        for template in templates:
            for blank in template.blanks:
                if method == "left" or not _enumerated(
                        fam, *blank.bounds(opts.max_len or fam.default_max_len()), opts.search):
                    read |= {"beam", "candidates"}
                elif method != "ngram" and "fwd" in fam.proposers:
                    read.add("candidates")
    return [name for name in ("beam", "candidates") if name not in read]


def _rescored(fam: Family, method: str, cands: list, sides: Sides) -> list[np.ndarray]:
    """Each model's log P(candidate together with the text on the far side)."""
    forward = [[*c, *sides.look_r] for c in cands]
    if method == "ngram":
        return [fam.ngram.rescore(sides.start_l, forward, sides.end)]
    scores = []
    if fam.fwd is not None:
        scores.append(fam.fwd.rescore(sides.start_l, forward, sides.end))
    if method == "bidirectional" and fam.bwd is not None:
        backward = [[*c[::-1], *sides.look_l[::-1]] for c in cands]
        scores.append(np.logaddexp.reduce(
            [weight + fam.bwd.rescore(start, backward) for weight, start in sides.starts_r],
            axis=0))
    return scores


def _shortlist(fam: Family, cands: list, sides: Sides, keep: int) -> list[tuple[int, ...]]:
    """A fill group's first pass: its n-grams (fast) rank every candidate both ways, and the
    mixed LMs then rescore only the best `keep` of them (n-best rescoring)."""
    from charrnn.fill.search import log_softmax

    scores = [log_softmax(fam.proposers["fwd"].rescore(
        sides.start_l, [[*c, *sides.look_r] for c in cands], sides.end))]
    if "bwd" in fam.proposers:
        backward = [[*c[::-1], *sides.look_l[::-1]] for c in cands]
        scores.append(log_softmax(fam.proposers["bwd"].rescore(max(sides.starts_r)[1], backward)))
    order = np.argsort(-np.mean(scores, axis=0), kind="stable")[:keep]
    return [cands[i] for i in sorted(order)]


def _backward_starts(fam: Family, ctx_r: list[int], marks: int = 2) -> list[tuple[float, list[int]]]:
    """Where the backward LM starts reading when the text ends after `ctx_r`: the line's end,
    and perhaps one of the `marks` likeliest boundary marks the user did not type; with the log
    probability of each start and of `ctx_r` read from it."""
    lb = fam.line_break
    first = fam.bwd.next_logp([lb])
    ranked = sorted((e for e in fam.boundary if e != lb), key=lambda e: -first[e])[:marks]
    options = [[lb], *([lb, e] for e in ranked)]
    reversed_r = ctx_r[::-1]
    if reversed_r:
        weights = fam.bwd.rescore([lb], [[*o[1:], *reversed_r] for o in options])
    else:
        weights = np.array([0.0, *(first[e] for e in ranked)])
    return [(float(w), [*o, *reversed_r]) for w, o in zip(weights, options, strict=True)]


def fill_template(template: Template, families: dict[str, Family], method: str,
                  opts: FillOptions) -> list[Fill]:
    """The top-k joint fills of every blank, left to right (a beam over blanks)."""
    with one_thread():
        return _fill_template(template, families, method, opts)


@contextlib.contextmanager
def one_thread() -> Iterator[None]:
    """PyTorch on one thread meanwhile. A fill's batches are small (one row to a few hundred): a
    second thread costs a barrier per product, and on a busy machine, where it is descheduled,
    stalls each of them (one fill on 2 busy cores: 2.3 s with two threads, 0.5–0.8 s with one)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)


def _fill_template(template: Template, families: dict[str, Family], method: str,
                   opts: FillOptions) -> list[Fill]:
    opts.validate()
    fam = method_family(families, method)
    fam.encode("".join(template.pieces), opts.unknown)  # unknown characters: all named at once
    default_max = opts.max_len or fam.default_max_len()
    wrap = opts.wrap and fam.line_break is not None
    partial: list[tuple[list[str], float]] = [([], 0.0)]
    keep = max(opts.top_k, 4)
    n = len(template.blanks)
    for k, blank in enumerate(template.blanks):
        lmin, lmax = blank.bounds(default_max)
        if lmin != lmax and method == "bidirectional" and fam.fwd is None and fam.bwd is None:
            raise UserError("a fill model alone scores a fill given its length, and cannot "
                            "weigh one length against another (each got an equal share): give "
                            "the blank its length ({N}, e.g. ___{2}), or add a language model "
                            f"({option('model')} LM_RUN)")
        right = fam.encode(template.pieces[k + 1], opts.unknown)
        text_ends = wrap and k == n - 1
        grown = []
        for fills, score in partial:
            prefix = "".join(p + f for p, f in zip(template.pieces, fills, strict=False))
            left_text, words = prefix + template.pieces[k], blank.max_len is None
            shift = _space_with_fill(fam, words, left_text)
            left = fam.encode(left_text[:-1] if shift else left_text, opts.unknown)
            if wrap:
                left.insert(0, fam.line_break)
            cands, log_p = blank_candidates(fam, method, left, right, lmin, lmax, opts, text_ends,
                                            words=words, space_first=shift)
            for c, lp in zip(cands, log_p, strict=True):
                grown.append(([*fills, fam.decode(c)[1 if shift else 0 :]], score + float(lp)))
        merged: dict[tuple[str, ...], float] = {}
        for fills, score in grown:  # two token paths may decode to the same text: add them up
            key = tuple(fills)
            merged[key] = float(np.logaddexp(merged.get(key, -np.inf), score))
        partial = sorted(([list(k), s] for k, s in merged.items()), key=lambda x: -x[1])[:keep]
    if not partial or not partial[0][0]:
        return []
    # Each blank's log-probabilities are normalised over its candidates, so a fill's score is
    # already its share of all the fills found: not renormalised over the few kept (that made a
    # fill's probability depend on --top-k).
    return [Fill(f, float(np.exp(s))) for f, s in partial][: opts.top_k]


def fill_text(text: str, families: dict[str, Family], methods: list[str], opts: FillOptions
              ) -> dict:
    """One TEXT, every method asked for → JSON-ready results."""
    template = parse(text)
    return {"input": text, "blanks": len(template.blanks),
            "methods": {m: [f.to_json(template) for f in fill_template(template, families, m, opts)]
                        for m in methods}}
