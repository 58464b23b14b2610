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

from dataclasses import dataclass

import numpy as np

from charrnn.fill.config import FillOptions
from charrnn.fill.families import Family, method_family
from charrnn.fill.syntax import Template, parse


@dataclass
class Fill:
    fills: list[str]  # one string per blank
    prob: float  # normalised over the candidates found

    def to_json(self, template: Template) -> dict:
        return {"text": template.render(self.fills), "fills": self.fills, "prob": self.prob}


def blank_candidates(fam: Family, method: str, left: list[int], right: list[int], lmin: int,
                     lmax: int, opts: FillOptions) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """Candidates for one blank between token contexts, with normalised log-probabilities."""
    from charrnn.fill.search import MaskScorer, combine, log_softmax, merge

    so = opts.search
    ctx_l, ctx_r = left[-so.context :], right[: so.context]
    look_l, look_r = left[-so.lookahead :], right[: so.lookahead]
    lb = fam.line_break if fam.line_break is not None else 0
    start_l = ctx_l or [lb]  # an LM needs something to read: a line break stands for "start"
    start_r = ctx_r[::-1] or [lb]
    vocab = fam.tokenizer.vocab_size
    enumerate_all = lmin == lmax == 1 and vocab <= so.enumerate_below
    if method == "left":
        found = fam.fwd.beam(start_l, lmin, lmax, max(so.beam, so.candidates))
        cands = [c for c, _ in found]
        return cands, log_softmax(np.array([s for _, s in found]))
    lengths = list(range(lmin, lmax + 1))
    marg = None
    if method == "bidirectional" and fam.mask is not None:
        marg = fam.mask.marginals(ctx_l, ctx_r, lengths)
    if enumerate_all:
        banned = set(Family.banned_ids(fam.tokenizer))
        cands = [(t,) for t in range(vocab) if t not in banned]
    else:
        sources = []
        if method == "ngram":
            sources.append(fam.ngram.beam(ctx_l, lmin, lmax, so.beam))
        if method in ("forward", "bidirectional") and fam.fwd is not None:
            sources.append(fam.fwd.beam(start_l, lmin, lmax, so.beam))
        if method == "bidirectional" and fam.bwd is not None:
            sources.append([(c[::-1], s) for c, s in fam.bwd.beam(start_r, lmin, lmax, so.beam)])
        if marg is not None:
            sources.append(MaskScorer.beam(marg, so.beam))
        # Every proposer keeps its full share: a second proposer must add recall, not cut
        # into the first one's candidates.
        cands = merge(sources, so.candidates * len(sources))
    if not cands:
        return [], np.zeros(0)
    lm_scores = []
    if method == "ngram":
        lm_scores.append(fam.ngram.rescore(ctx_l, [[*c, *look_r] for c in cands]))
    else:
        if fam.fwd is not None:
            lm_scores.append(fam.fwd.rescore(start_l, [[*c, *look_r] for c in cands]))
        if method == "bidirectional" and fam.bwd is not None:
            lm_scores.append(fam.bwd.rescore(start_r, [[*c[::-1], *look_l[::-1]] for c in cands]))
    mask_scores = MaskScorer.score(marg, cands) if marg is not None else None
    lengths_arr = np.array([len(c) for c in cands])
    return cands, combine(lm_scores, mask_scores, lengths_arr, so.mask_weight)


def fill_template(template: Template, families: dict[str, Family], method: str,
                  opts: FillOptions) -> list[Fill]:
    """The top-k joint fills of every blank, left to right (a beam over blanks)."""
    opts.validate()
    fam = method_family(families, method)
    default_max = opts.max_len or fam.default_max_len()
    wrap = opts.wrap and fam.line_break is not None
    partial: list[tuple[list[str], float]] = [([], 0.0)]
    keep = max(opts.top_k, 4)
    n = len(template.blanks)
    for k, blank in enumerate(template.blanks):
        lmin, lmax = blank.bounds(default_max)
        right = fam.encode(template.pieces[k + 1], opts.unknown)
        if wrap and k == n - 1:
            right.append(fam.line_break)
        grown = []
        for fills, score in partial:
            prefix = "".join(p + f for p, f in zip(template.pieces, fills, strict=False))
            left = fam.encode(prefix + template.pieces[k], opts.unknown)
            if wrap:
                left.insert(0, fam.line_break)
            cands, log_p = blank_candidates(fam, method, left, right, lmin, lmax, opts)
            for c, lp in zip(cands, log_p, strict=True):
                grown.append(([*fills, fam.decode(c)], score + float(lp)))
        merged: dict[tuple[str, ...], float] = {}
        for fills, score in grown:  # two token paths may decode to the same text: add them up
            key = tuple(fills)
            merged[key] = float(np.logaddexp(merged.get(key, -np.inf), score))
        partial = sorted(([list(k), s] for k, s in merged.items()), key=lambda x: -x[1])[:keep]
    if not partial or not partial[0][0]:
        return []
    scores = np.array([s for _, s in partial])
    probs = np.exp(scores - np.logaddexp.reduce(scores))
    return [Fill(f, float(p)) for (f, _), p in zip(partial, probs, strict=True)][: opts.top_k]


def fill_text(text: str, families: dict[str, Family], methods: list[str], opts: FillOptions
              ) -> dict:
    """One TEXT, every method asked for → JSON-ready results."""
    template = parse(text)
    return {"input": text, "blanks": len(template.blanks),
            "methods": {m: [f.to_json(template) for f in fill_template(template, families, m, opts)]
                        for m in methods}}
