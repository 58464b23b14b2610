"""The models taking part in a fill, grouped by vocabulary, and the methods they allow.

    --model RUN …   a forward LM, a backward LM (--direction backward), a masked fill model
                    (--task fill) and an n-gram run; without --model, the newest LM run and the
                    newest run of every other role on the same dataset (no LM run: the newest
                    n-gram run alone)

A `Family` is the models that share one tokenizer: the RNN side (forward, backward, masked) and,
on its own tokenizer, the n-gram.
"""

from __future__ import annotations

from pathlib import Path

from charrnn.errors import UserError, option

METHODS = ("left", "forward", "bidirectional", "ngram")
DEFAULT_MAX_LEN = {"char": 10, "subword": 4, "word": 3}


class Family:
    """Models that share one tokenizer: forward/backward LMs and the masked model, or an n-gram."""

    def __init__(self, tokenizer, fwd=None, bwd=None, mask=None, ngram=None, names=None,
                 proposers=None) -> None:
        self.tokenizer, self.fwd, self.bwd, self.mask, self.ngram = tokenizer, fwd, bwd, mask, ngram
        self.names = names or {}
        # Extra candidate searches of a fill group: its n-grams, {"fwd": …, "bwd": …}.
        self.proposers = proposers or {}
        self.line_break = tokenizer.line_break_id()
        self.boundary = self.boundary_ids(tokenizer)
        self.spaces = [i for i, s in enumerate(tokenizer.token_strings()) if s and not s.strip()]
        self.word_edges = self.edges_of_words(tokenizer, set(self.boundary) | set(self.spaces))

    @staticmethod
    def edges_of_words(tokenizer, marks: set[int]):
        """What a fill of words neither starts nor ends with: `marks` (punctuation, spaces, the
        line break), and a word model's tokens that begin or end with a mark ("farewell.")."""
        import unicodedata

        from charrnn.fill.search import Edges

        first, last = set(marks), set(marks)
        if tokenizer.level == "word":
            for i, s in enumerate(tokenizer.token_strings()):
                if s and unicodedata.category(s[0])[0] in "PS":
                    first.add(i)
                if s and unicodedata.category(s[-1])[0] in "PS":
                    last.add(i)
        return Edges(frozenset(first), frozenset(last))

    @staticmethod
    def boundary_ids(tokenizer) -> list[int]:
        """Tokens that end a stretch of text: the line break, punctuation marks and symbols
        (Unicode P* and S*: 。，！？）~ .,!?…), what may follow a text where the user stopped
        typing, and what a word does not start or end with."""
        import unicodedata

        marks = [i for i, s in enumerate(tokenizer.token_strings())
                 if s.strip() and all(unicodedata.category(ch)[0] in "PS" for ch in s.strip())]
        lb = tokenizer.line_break_id()
        return sorted(set(marks) | ({lb} if lb is not None else set()))

    @staticmethod
    def banned_ids(tokenizer) -> list[int]:
        """Tokens a fill may not contain: the line break, <unk>, sentencepiece's unknown."""
        banned = [tokenizer.line_break_id()]
        if tokenizer.level == "word":
            banned.append(tokenizer.index.get("<unk>"))
        if tokenizer.level == "subword":
            banned += [i for i in range(tokenizer.newline_id) if tokenizer.sp.is_unknown(i)]
        return [b for b in banned if b is not None]

    def encode(self, text: str, unknown: str | None) -> list[int]:
        tok = self.tokenizer
        policy = (unknown or "error") if tok.level == "char" else "map"
        return tok.encode(text, unknown=policy).tolist() if text else []

    def decode(self, ids) -> str:
        return self.tokenizer.decode(list(ids))

    def default_max_len(self) -> int:
        return DEFAULT_MAX_LEN[self.tokenizer.level]


def skip_reads_nothing(families: dict[str, Family]) -> bool:
    """Whether no model here reads characters, so skipping unknown ones would drop nothing (a
    word model reads unknown words as its <unk>, a subword model spells any text)."""
    return bool(families) and all(f.tokenizer.level != "char" for f in families.values())


def method_family(families: dict[str, Family], method: str) -> Family:
    """The family a method runs on, or a UserError saying which model is missing."""
    rnn, ngram = families.get("rnn"), families.get("ngram")
    if method == "ngram":
        if ngram is None:
            raise UserError(f"the ngram method needs an n-gram run: add {option('model')} NGRAM_RUN "
                            "(charrnn ngram train CORPUS)")
        return ngram
    if method not in METHODS:
        raise UserError(f"{option('method')} must be one of {', '.join(METHODS)}, not {method!r}")
    if rnn is None:
        raise UserError(f"the {method} method needs RNN models: give {option('model')} RUN")
    if method in ("left", "forward") and rnn.fwd is None:
        raise UserError(f"the {method} method needs a forward LM: add {option('model')} RUN (charrnn train)")
    if method == "left" and "⊕" in rnn.names.get("fwd", "") and not rnn.proposers:
        # A group's own mixture (it brings proposers) is left out: the left method's beam is the
        # RNN's alone. A typed --mix would be ignored by it, so that is refused.
        raise UserError(f"{option('mix')} mixes the forward LM with an n-gram that rescores "
                        "candidates with the text after the blank, and the left method reads "
                        "only the text before it: choose forward or bidirectional, or leave out "
                        f"{option('mix')}")
    if method == "bidirectional" and rnn.bwd is None and rnn.mask is None:
        raise UserError("the bidirectional method needs a backward LM (charrnn train --direction "
                        "backward) or a fill model (charrnn train --task fill): add "
                        f"{option('model')} RUN")
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


def load_families(specs: list[str], root: Path, device: str = "auto", mix: str | None = None,
                  mix_weight: float | None = None, say=None) -> dict[str, Family]:
    """--model RUN … → {"rnn": Family, "ngram": Family}; no RUN: the newest runs on one corpus.
    With `mix` (an n-gram run), the forward LM rescores with its per-token mixture (`say` hears
    when its weight is tuned, which takes seconds)."""
    from charrnn.devices import resolve_device
    from charrnn.fill.model import load_fill_model
    from charrnn.fill.search import LMScorer, MaskScorer, NGramScorer
    from charrnn.lm.model import load_lm

    dev = resolve_device(device)
    specs, grouped = _group_members(specs, root)
    roles: dict[str, tuple[str, object]] = {}
    fwd_ckpt = None
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
            roles[role] = (spec, LMScorer(load_lm(ckpt, dev), dev, banned))
            if role == "fwd":
                fwd_ckpt = ckpt
    _say_group_remixed(grouped, mix, say)
    if mix is not None or mix_weight is not None:
        roles = _mixed(roles, fwd_ckpt if "fwd" in roles else None, dev, mix, mix_weight, root,
                       say)
    proposers = {}
    if grouped is not None and mix is None and "ngram" in roles:
        roles, proposers = _group_mixtures(roles, grouped)
    families = {}
    names = {role: spec for role, (spec, _) in roles.items()}
    if rnn_tokenizer is not None:
        from charrnn.tokenizers import tokenizer_from_json

        families["rnn"] = Family(tokenizer_from_json(rnn_tokenizer),
                                 *(roles.get(r, (None, None))[1] for r in ("fwd", "bwd", "mask")),
                                 names=names, proposers=proposers)
    if "ngram" in roles:
        scorer = roles["ngram"][1]
        families["ngram"] = Family(scorer.model.tokenizer, ngram=scorer, names=names)
        rnn = families.get("rnn")
        if rnn is not None and not _same_vocabulary(rnn.tokenizer, scorer.model.tokenizer):
            # Otherwise the first character one of them lacks reads as a typo in the text.
            rnn_spec = next(s for r, (s, _) in roles.items() if r != "ngram")
            raise UserError(_vocabularies_differ(rnn_spec, roles["ngram"][0]))
    return families


def _say_group_remixed(grouped: Path | None, mix: str | None, say) -> None:
    if grouped is not None and mix is not None and say is not None:
        say(f"fill group {grouped.name} mixes both its LMs with its own n-grams; {option('mix')} "
            f"{mix} replaces that: the forward LM alone is mixed, with {mix}")


def _mixed(roles: dict, ckpt, device, mix: str | None, weight: float | None, root: Path,
           say) -> dict:
    from charrnn.evaluation.mix import mixture_of
    from charrnn.fill.search import MixedLMScorer

    if ckpt is None:
        raise UserError(f"{option('mix')} mixes the forward LM with an n-gram: give a forward LM "
                        f"({option('model')} RUN, trained with charrnn train)")
    spec, scorer = roles["fwd"]
    mixture = mixture_of(ckpt, scorer.model, device, mix, weight, root, say)
    return {**roles, "fwd": (f"{spec}⊕{mixture.name}", MixedLMScorer(scorer, mixture))}


def _group_members(specs: list[str], root: Path) -> tuple[list[str], Path | None]:
    """A fill group (`charrnn fill train`) as its member runs: the one named, or without
    --model the newest group under the root; other specs as they are."""
    from charrnn import runs
    from charrnn.fill import group

    if not specs:
        newest = group.newest(root)
        if newest is None:
            return specs, None
        return _member_specs(newest, root), newest
    folders = [group.resolve(s, root) if group.is_named(s, root) else None for s in specs]
    named = [f for f in folders if f is not None]
    if not named:
        return specs, None
    if len(specs) > 1:
        raise UserError(f"{named[0].name} is a fill group (its models together): give it alone "
                        f"with {option('model')}, or its runs one by one")
    members = _member_specs(named[0], root)
    if not members:
        raise UserError(f"fill group {named[0].name} has no trained model yet: continue it with "
                        f"`charrnn fill train --resume {named[0].name}{runs.out_suffix(named[0])}`")
    return members, named[0]


def _member_specs(folder: Path, root: Path) -> list[str]:
    """The group's runs as RUN arguments: their names where they sit under the root."""
    from charrnn.fill import group

    return [run.name if run.parent.resolve() == root.resolve() else str(run)
            for _, run in group.members(folder)]


def _group_mixtures(roles: dict, folder: Path) -> tuple[dict, dict]:
    """A group's LMs each mixed per token with the n-gram of its direction (λ tuned on the
    held-out text when the group was trained), and its n-grams as extra proposers."""
    from charrnn.evaluation.mix import Mixture
    from charrnn.fill import group
    from charrnn.fill.search import MixedLMScorer, NGramScorer
    from charrnn.ngram.model import load as load_ngram

    spec, forward = roles["ngram"]
    weights = group.read(folder).get("mix") or {}
    backward = dict(group.members(folder))["ngram"] / "backward"
    models = {"fwd": (forward.model, spec),
              "bwd": (load_ngram(backward), f"{spec}/backward")
              if (backward / "model.json").is_file() else None}
    proposers, out = {}, dict(roles)
    for role, found in models.items():
        if found is None:
            continue
        model, name = found
        proposers[role] = NGramScorer(model, forward.banned)
        if role in roles and role in weights:
            run, scorer = roles[role]
            mixture = Mixture(model, name, float(weights[role]), "val")
            out[role] = (f"{run}⊕{name}", MixedLMScorer(scorer, mixture))
    return out, proposers


def _same_vocabulary(a, b) -> bool:
    return a.level == b.level and a.token_strings() == b.token_strings()


def _vocabularies_differ(first: str, second: str) -> str:
    return (f"the models' vocabularies differ: {first} and {second} were trained on different "
            f"corpora or with different {option('level')}/tokenizer options, and fill combines its models "
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
        if kind == "tag":
            raise UserError(f"{spec} is a tagger run: fill takes language models, fill models and "
                            "n-gram runs")
        ckpt = checkpoint.resolve(spec, root, kind=kind or "lm")
        yield spec, _role(ckpt, spec), ckpt


def _role(ckpt, spec: str) -> str:
    if ckpt.task == "fill":
        return "mask"
    if ckpt.task != "lm":
        raise UserError(f"{spec} holds a {ckpt.task} model: fill takes language models, fill "
                        "models and n-gram runs")
    from charrnn.lm.config import lm_config

    return "bwd" if lm_config(ckpt).direction == "backward" else "fwd"


def _default_models(root: Path):
    """The newest language model run, plus the newest run of every other role on the same dataset."""
    from charrnn import checkpoint, runs

    try:
        newest = runs.resolve_run(None, root, kind="lm")
    except UserError:  # no language model: the newest n-gram answers alone (--method ngram)
        ngrams = [f for f in runs.list_runs(root, "ngram") if (f / "model" / "model.json").is_file()]
        if not ngrams:
            missing = "" if root.is_dir() else " (no such folder)"
            raise UserError(f"no models to fill with under {root}{missing}: train them first "
                            "(`charrnn fill train CORPUS` trains every one fill uses), or name "
                            f"runs with {option('model')} / pass {option('out')}") from None
        yield ngrams[-1].name, "ngram", ngrams[-1]
        return
    dataset = _dataset_id(runs.run_info(newest))
    picked: dict[str, tuple] = {}
    for folder in reversed(runs.list_runs(root)):
        info = runs.run_info(folder)
        kind = info.get("kind")
        if kind not in ("lm", "fill", "ngram") or _dataset_id(info) != dataset:
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
