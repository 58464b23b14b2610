"""Fill in the blank: blank syntax, the models taking part, and the methods that combine them.

Blank syntax (lengths count the model's tokens: characters, words or subword pieces):

    ___          one blank of unknown length (1 … --max-len tokens; the models choose)
    {3}  ___{3}  exactly 3 tokens;   {2,4}  ___{2,4}  between 2 and 4
    \\_  \\{  \\\\   a literal underscore, brace, backslash

Methods (what `--method` and `charrnn fill eval` name):

    left           the forward LM from the left context only (what a char-rnn can do)
    forward        forward-LM beam, each candidate rescored with the text after the blank
    bidirectional  proposals from the forward LM, the backward LM and the masked BiRNN, rescored
                   by both LMs together, and by the masked model with --mask-weight > 0
                   (charrnn.fill.search explains the scores)
    ngram          the n-gram baseline: its own beam, rescored with the text after the blank

Text outside the blanks is never changed: a result is the literal pieces with fills between them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from charrnn.errors import UserError

METHODS = ("left", "forward", "bidirectional", "ngram")
MAX_BLANK = 64
DEFAULT_MAX_LEN = {"char": 10, "subword": 4, "word": 3}
_SYNTAX = re.compile(r"\\(.)|(_+)(?:\{(\d+)(?:,(\d+))?\})?|\{(\d+)(?:,(\d+))?\}", re.S)


# ---- syntax -----------------------------------------------------------------------------------
@dataclass
class Blank:
    start: int  # character span of the blank's markup in the input text
    end: int
    min_len: int = 1
    max_len: int | None = None  # None: unknown length, up to the model's default bound

    def bounds(self, default_max: int) -> tuple[int, int]:
        if self.max_len is None:
            return self.min_len, max(self.min_len, default_max)
        return self.min_len, self.max_len


@dataclass
class Template:
    pieces: list[str]  # literal text around the blanks (len(blanks) + 1), escapes resolved
    blanks: list[Blank]

    def render(self, fills: list[str]) -> str:
        out = [self.pieces[0]]
        for fill, piece in zip(fills, self.pieces[1:], strict=True):
            out += [fill, piece]
        return "".join(out)


def escape(text: str) -> str:
    """Literal text → blank syntax that reads back as exactly this text."""
    return re.sub(r"([\\_{])", r"\\\1", text)


def parse(text: str) -> Template:
    """TEXT with blanks → literal pieces and blanks (see the module docstring for the syntax)."""
    pieces, blanks, current, pos = [], [], [], 0
    for m in _SYNTAX.finditer(text):
        current.append(text[pos : m.start()])
        pos = m.end()
        if m.group(1) is not None:  # an escape
            current.append(m.group(1))
            continue
        lo_s, hi_s = (m.group(3), m.group(4)) if m.group(2) else (m.group(5), m.group(6))
        lo = int(lo_s) if lo_s else 1
        hi = (int(hi_s) if hi_s else lo) if lo_s else None
        where = f"blank {m.group(0)!r} at character {m.start()}"
        if lo < 1:
            raise UserError(f"{where}: a blank holds at least 1 token")
        if hi is not None and hi < lo:
            raise UserError(f"{where}: the minimum length {lo} is above the maximum {hi}")
        if max(lo, hi or 0) > MAX_BLANK:
            raise UserError(f"{where}: at most {MAX_BLANK} tokens per blank")
        pieces.append("".join(current))
        current = []
        blanks.append(Blank(m.start(), m.end(), lo, hi))
    current.append(text[pos:])
    pieces.append("".join(current))
    if not blanks:
        raise UserError("no blank in the text: mark one with ___ (any length) or {N} (N tokens), "
                        "e.g. 'I want to ___ a new phone'")
    return Template(pieces, blanks)


# ---- results ------------------------------------------------------------------------------------
@dataclass
class Fill:
    fills: list[str]  # one string per blank
    prob: float  # normalised over the candidates found

    def to_json(self, template: Template) -> dict:
        return {"text": template.render(self.fills), "fills": self.fills, "prob": self.prob}


@dataclass
class FillOptions:
    top_k: int = 5
    max_len: int | None = None  # unknown-length bound (default per tokenizer level)
    unknown: str = "error"  # characters outside a char model's vocabulary: error or skip
    wrap: bool = True  # the text is a whole line: line breaks around it where the model has them
    search: object = field(default=None)  # fillsearch.SearchOptions (built lazily: needs torch)

    def validate(self) -> None:
        if self.top_k < 1:
            raise UserError(f"--top-k must be ≥ 1, got {self.top_k}")
        if self.max_len is not None and not 1 <= self.max_len <= MAX_BLANK:
            raise UserError(f"--max-len must be between 1 and {MAX_BLANK}, got {self.max_len}")
        if self.unknown not in ("error", "skip"):
            raise UserError(f"--unk must be 'error' or 'skip', not {self.unknown!r}")


# ---- the models -----------------------------------------------------------------------------------
class Family:
    """Models that share one tokenizer: forward/backward LMs and the masked model, or an n-gram."""

    def __init__(self, tokenizer, fwd=None, bwd=None, mask=None, ngram=None, names=None) -> None:
        self.tokenizer, self.fwd, self.bwd, self.mask, self.ngram = tokenizer, fwd, bwd, mask, ngram
        self.names = names or {}
        self.line_break = tokenizer.line_break_id()

    @staticmethod
    def banned_ids(tokenizer) -> list[int]:
        """Tokens a fill may not contain: the line break, <unk>, sentencepiece's unknown."""
        banned = [tokenizer.line_break_id()]
        if tokenizer.level == "word":
            banned.append(tokenizer.index.get("<unk>"))
        if tokenizer.level == "subword":
            banned += [i for i in range(tokenizer.newline_id) if tokenizer.sp.is_unknown(i)]
        return [b for b in banned if b is not None]

    def encode(self, text: str, unknown: str) -> list[int]:
        tok = self.tokenizer
        policy = unknown if tok.level == "char" else "map"
        return tok.encode(text, unknown=policy).tolist() if text else []

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids))

    def default_max_len(self) -> int:
        return DEFAULT_MAX_LEN[self.tokenizer.level]


def method_family(families: dict[str, Family], method: str) -> Family:
    """The family a method runs on, or a UserError saying which model is missing."""
    rnn, ngram = families.get("rnn"), families.get("ngram")
    if method == "ngram":
        if ngram is None:
            raise UserError("the ngram method needs an n-gram run: add --model NGRAM_RUN "
                            "(charrnn ngram train CORPUS)")
        return ngram
    if method not in METHODS:
        raise UserError(f"--method must be one of {', '.join(METHODS)}, not {method!r}")
    if rnn is None:
        raise UserError(f"the {method} method needs RNN models: give --model RUN")
    if method in ("left", "forward") and rnn.fwd is None:
        raise UserError(f"the {method} method needs a forward LM: add --model RUN (charrnn train)")
    if method == "bidirectional" and rnn.bwd is None and rnn.mask is None:
        raise UserError("the bidirectional method needs a backward LM (charrnn train --direction "
                        "backward) or a fill model (charrnn train --task fill): add --model RUN")
    return rnn


def available_methods(families: dict[str, Family]) -> list[str]:
    """The methods these models allow, best first within the RNNs, then the n-gram.

    Not `left`: it is the char-rnn baseline that ignores the text after the blank, which
    `forward` reads the same LM's candidates against; it runs when asked for (--method left)."""
    out = []
    rnn = families.get("rnn")
    if rnn is not None and (rnn.bwd is not None or rnn.mask is not None):
        out.append("bidirectional")
    if rnn is not None and rnn.fwd is not None:
        out.append("forward")
    if "ngram" in families:
        out.append("ngram")
    return out


def load_families(specs: list[str], root: Path, device: str = "auto") -> dict[str, Family]:
    """--model RUN … → {"rnn": Family, "ngram": Family}; no RUN: the newest runs on one corpus."""
    from charrnn.devices import resolve_device
    from charrnn.fill.model import load_fill_model
    from charrnn.fill.search import LMScorer, MaskScorer, NGramScorer

    dev = resolve_device(device)
    roles: dict[str, tuple[str, object]] = {}
    rnn_tokenizer = None
    for spec, role, source in _resolve_specs(specs, root):
        if role in roles:
            raise UserError(f"two {role} models given ({roles[role][0]} and {spec}): give one of each")
        if role == "ngram":
            from charrnn.ngram.model import load as load_ngram

            model = load_ngram(source / "model")
            roles[role] = (spec, NGramScorer(model, Family.banned_ids(model.tokenizer)))
            continue
        ckpt = source
        if rnn_tokenizer is not None and ckpt.meta["tokenizer"] != rnn_tokenizer:
            first = next(s for r, (s, _) in roles.items() if r != "ngram")
            raise UserError(_vocabularies_differ(first, spec))
        rnn_tokenizer = ckpt.meta["tokenizer"]
        banned = Family.banned_ids(ckpt.tokenizer)
        if role == "mask":
            roles[role] = (spec, MaskScorer(load_fill_model(ckpt, dev), dev, banned))
        else:
            roles[role] = (spec, LMScorer(ckpt.load_model(dev), dev, banned))
    families = {}
    names = {role: spec for role, (spec, _) in roles.items()}
    if rnn_tokenizer is not None:
        from charrnn.tokenizers import tokenizer_from_json

        families["rnn"] = Family(tokenizer_from_json(rnn_tokenizer),
                                 *(roles.get(r, (None, None))[1] for r in ("fwd", "bwd", "mask")),
                                 names=names)
    if "ngram" in roles:
        scorer = roles["ngram"][1]
        families["ngram"] = Family(scorer.model.tokenizer, ngram=scorer, names=names)
        rnn = families.get("rnn")
        if rnn is not None and not _same_vocabulary(rnn.tokenizer, scorer.model.tokenizer):
            # Otherwise the first character one of them lacks reads as a typo in the text.
            rnn_spec = next(s for r, (s, _) in roles.items() if r != "ngram")
            raise UserError(_vocabularies_differ(rnn_spec, roles["ngram"][0]))
    return families


def _same_vocabulary(a, b) -> bool:
    return a.level == b.level and a.token_strings() == b.token_strings()


def _vocabularies_differ(first: str, second: str) -> str:
    return (f"the models' vocabularies differ: {first} and {second} were trained on different "
            "corpora or with different --level/tokenizer options, and fill combines its models "
            "on one text: give runs trained on the same corpus with the same options")


def _resolve_specs(specs: list[str], root: Path):
    """Yield (spec, role, source) with role fwd | bwd | mask | ngram."""
    from charrnn import checkpoint, runs

    if not specs:
        yield from _default_models(root)
        return
    for spec in specs:
        try:
            folder = runs.resolve_run(spec, root)
            kind = runs.run_info(folder).get("kind")
        except UserError:
            folder, kind = None, None
        if kind == "ngram":
            yield spec, "ngram", folder
            continue
        if kind == "tagger":
            raise UserError(f"{spec} is a tagger run: fill takes language models, fill models and "
                            "n-gram runs")
        ckpt = checkpoint.resolve(spec, root, kind=kind or "rnn")
        yield spec, _role(ckpt, spec), ckpt


def _role(ckpt, spec: str) -> str:
    if ckpt.task == "fill":
        return "mask"
    if ckpt.task != "lm":
        raise UserError(f"{spec} holds a {ckpt.task} model: fill takes language models, fill "
                        "models and n-gram runs")
    return "bwd" if ckpt.model_config.direction == "backward" else "fwd"


def _default_models(root: Path):
    """The newest RNN LM run, plus the newest run of every other role on the same dataset."""
    from charrnn import checkpoint, runs

    newest = runs.resolve_run(None, root, kind="rnn")
    dataset = _dataset_id(runs.run_info(newest))
    picked: dict[str, tuple] = {}
    for folder in reversed(runs.list_runs(root)):
        info = runs.run_info(folder)
        kind = info.get("kind")
        if kind not in ("rnn", "fill", "ngram") or _dataset_id(info) != dataset:
            continue
        if kind == "ngram":
            if (folder / "model" / "model.json").is_file():
                picked.setdefault("ngram", (folder.name, "ngram", folder))
            continue
        try:
            ckpt = checkpoint.resolve(str(folder), root)
        except UserError:
            continue
        role = _role(ckpt, folder.name)
        picked.setdefault(role, (folder.name, role, ckpt))
    yield from picked.values()


def _dataset_id(info: dict) -> str | None:
    # Imported n-gram runs store "dataset": null (an ARPA file has no split of ours).
    return (info.get("dataset") or {}).get("id")


# ---- filling ------------------------------------------------------------------------------------
def _options(opts: FillOptions):
    from charrnn.fill.search import SearchOptions

    return opts.search or SearchOptions()


def blank_candidates(fam: Family, method: str, left: list[int], right: list[int], lmin: int,
                     lmax: int, opts: FillOptions) -> tuple[list[tuple[int, ...]], np.ndarray]:
    """Candidates for one blank between token contexts, with normalised log-probabilities."""
    from charrnn.fill.search import MaskScorer, combine, log_softmax, merge

    so = _options(opts)
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
