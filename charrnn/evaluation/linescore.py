"""`charrnn score`: every line's log-probability, as KenLM's `query` reports sentences.

    line ─ tokenizer ─ t₁ … tₙ ─ the model reads them after a line break and predicts t₁ … tₙ and
    the closing line break (a --lines n-gram: from <s>, with </s>) ─ Σ log10 p, tokens, OOVs

Lines are independent (an n-best list is scored hypothesis by hypothesis), read a batch at a
time, so a file of any size streams through in bounded memory (`--sort` holds the scores).
Works for language model runs, n-gram runs, and a language model mixed with an n-gram (--mix).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from charrnn import runs
from charrnn.errors import UserError, diverged, option
from charrnn.evaluation.scores import UNK
from charrnn.inputs import refuse_binary, stdin_bytes
from charrnn.tokenizers import refuse_idle_unk, skipped_chars

BATCH_LINES = 256  # lines read at a time
GROUP_LINES, GROUP_CHARS = 32, 1 << 20  # scored together: at most, and their padded size
LN10 = math.log(10)


def ppl10(log10_per_token: float) -> float:
    """Perplexity from -log10 p per token, held at 10^300 (a model whose weights overflow scored
    10^36 per token: 10 ** it stopped with OverflowError, an internal error)."""
    return 10 ** min(log10_per_token, 300.0)


@dataclass
class LineScore:
    line: int  # 1-based
    text: str
    log10: float  # of the whole line, its closing line break included
    tokens: int  # scored tokens (the line break included)
    oov: int  # <unk> tokens, or characters --unk skip dropped
    oov_log10: float  # the part of log10 the <unk> tokens took
    oov_scored: int = 0  # the OOVs among `tokens` (<unk> tokens; skipped characters are not)

    @property
    def perplexity(self) -> float:
        return ppl10(-self.log10 / max(1, self.tokens))

    def to_json(self) -> dict:
        return {"line": self.line, "log10": self.log10, "tokens": self.tokens, "oov": self.oov,
                "perplexity": self.perplexity, "text": self.text}


class OpenLine(str):
    """The input's last line when no line break ends it: as KenLM's query does, and as `eval`
    reads a text, scored without the closing line break (</s>)."""


def read_lines(file: str | None, errors: str = "strict") -> Iterator[str]:
    """The lines of FILE (or stdin for None / '-'), decoded one at a time; a line that is not
    UTF-8 is an error naming it (--errors replace goes on); a last one with no line break is an
    OpenLine."""
    from_stdin = file in (None, "-")
    name = "<stdin>" if from_stdin else file
    if from_stdin:
        raw = stdin_bytes()
    else:
        path = Path(file).expanduser()
        if not path.is_file():
            what = ("a folder: score reads one file, a line at a time" if path.is_dir() else
                    "not a file" if path.exists() else "does not exist")
            raise UserError(f"{file} {'is ' * path.exists()}{what}: give a text file or - for "
                            "standard input")
        raw = open(path, "rb")  # noqa: SIM115 - closed below, after the last line
    try:
        for number, data in enumerate(raw, 1):
            if number == 1:  # UTF-16, a pickle: refused as every command that reads text does
                refuse_binary(Path(name), data)
            if b"\0" in data:  # (UTF-8 text never holds a NUL byte)
                raise UserError(f"{name}: line {number} holds a NUL byte, so this is binary data, "
                                "not UTF-8 text: give a text file")
            try:
                line = data.decode("utf-8", errors=errors)
            except UnicodeDecodeError as exc:
                raise UserError(f"{name}: line {number} is not UTF-8 (byte {exc.start} of the "
                                f"line): convert the file, or pass {option('errors')} replace") from exc
            text = line.removesuffix("\n").removesuffix("\r").removeprefix("\ufeff" * (number == 1))
            yield text if line.endswith("\n") else OpenLine(text)
    finally:
        if not from_stdin:
            raw.close()


class Scorer:
    """Turns batches of lines into per-token ln p; the kinds below differ in the model only."""

    def __init__(self, tokenizer, unknown: str | None) -> None:
        refuse_idle_unk(tokenizer.level, unknown)
        self.tokenizer, self.unknown = tokenizer, unknown or "error"
        self.line_break = tokenizer.line_break_id()
        strings = tokenizer.token_strings()
        self.unk = strings.index(UNK) if UNK in strings else None

    def encode(self, number: int, text: str) -> np.ndarray:
        policy = self.unknown if self.tokenizer.level == "char" else "map"
        try:
            ids = self.tokenizer.encode(text, unknown=policy) if text else np.zeros(0, np.int64)
        except UserError as exc:
            raise UserError(f"line {number}: {exc}") from exc
        tail = [self.line_break] if self.closes(text) else []
        return np.concatenate([np.asarray(ids, np.int64), np.asarray(tail, np.int64)])

    def closes(self, text: str) -> bool:
        """Whether the line is scored with its closing line break (</s>)."""
        return self.line_break is not None and not isinstance(text, OpenLine)

    def token_logps(self, lines: list[np.ndarray]) -> list[np.ndarray]:
        """ln p of each token of each line (each read from a line start)."""
        raise NotImplementedError

    def score(self, encoded: list[tuple[int, str, np.ndarray]]) -> list[LineScore]:
        """The scores of (line number, text, its ids from `encode`)."""
        out = []
        for (number, text, ids), lp in zip(encoded, self.token_logps([e[2] for e in encoded]),
                                           strict=True):
            unknown = ids == self.unk if self.unk is not None else np.zeros(len(ids), bool)
            kept = ids[: len(ids) - self.closes(text)]  # without the closing break
            skipped = skipped_chars(self.tokenizer, text, kept) if (
                self.tokenizer.level == "char" and self.unknown == "skip") else 0
            out.append(LineScore(number, text, float(lp.sum()) / LN10, len(ids),
                                 int(unknown.sum()) + skipped, float(lp[unknown].sum()) / LN10,
                                 int(unknown.sum())))
        return out


class NGramScorer(Scorer):
    def __init__(self, model, unknown: str) -> None:
        super().__init__(model.tokenizer, unknown)
        self.model = model

    def token_logps(self, lines: list[np.ndarray]) -> list[np.ndarray]:
        start = [] if self.line_break is None else [self.line_break]
        return self.model.continuation_logps(start, lines)


WINDOW = 4096  # tokens of a line the LM scores in one call


class RNNScorer(Scorer):
    def __init__(self, ckpt, model, device, unknown: str, precision: str, mixture=None) -> None:
        super().__init__(ckpt.tokenizer, unknown)
        self.model, self.device, self.precision, self.mixture = model, device, precision, mixture
        self.start = self.line_break if self.line_break is not None else 0

    def token_logps(self, lines: list[np.ndarray]) -> list[np.ndarray]:
        import torch

        from charrnn.devices import autocast

        width = max(map(len, lines))
        if width == 0:  # lines of no token (a last line of skipped characters only): no score
            return [np.zeros(0) for _ in lines]
        x = torch.full((len(lines), width), self.start, dtype=torch.long)
        y = torch.zeros((len(lines), width), dtype=torch.long)
        for row, ids in enumerate(lines):
            x[row, 1 : len(ids)] = torch.from_numpy(ids[:-1])
            y[row, : len(ids)] = torch.from_numpy(ids)
        parts, state = [], None
        # Windows along the line with the state carried: a line of 50 M tokens scored at once
        # held its B×T×V scores (tens of GB); windowed, memory is bounded and the sums the same.
        with torch.inference_mode(), autocast(self.device, self.precision):
            for start in range(0, width, WINDOW):
                end = start + WINDOW
                nll, state = self.model(x[:, start:end].to(self.device), state,
                                        y[:, start:end].to(self.device))
                parts.append((-nll.float()).view(len(lines), -1).cpu().numpy())
        lp = np.concatenate(parts, axis=1).astype(np.float64)
        rnn = [lp[row, : len(ids)] for row, ids in enumerate(lines)]
        if not all(np.isfinite(scores).all() for scores in rnn):  # (it printed nan, exit 0)
            raise diverged("on the lines scored")
        if self.mixture is None:
            return rnn
        from charrnn.evaluation.mix import mixed_logp

        start = [self.start]
        ngram = self.mixture.ngram.continuation_logps(start, lines)
        return [mixed_logp(r, n, self.mixture.weight) for r, n in zip(rnn, ngram, strict=True)]


def open_scorer(spec: str, root: Path, device: str | None = None, unknown: str | None = None,
                precision: str | None = None, mix: str | None = None,
                mix_weight: float | None = None, say=None) -> Scorer:
    """The scorer of RUN: a language model (optionally mixed) or an n-gram run. None: not given
    (an LM then computes on the `auto` device in fp32; an n-gram refuses what is given, even
    the default's value, since it has no device or precision to choose)."""
    from charrnn import checkpoint

    # (a checkpoint folder named, my-run/last, is a network's: its run.json may be lost)
    folder = None if checkpoint.named_folder(spec, root) else runs.resolve_run(spec, root)
    if folder is not None and runs.run_info(folder).get("kind") == "ngram":
        given = [option(name) for name, value in (
            ("mix", mix), ("mix_weight", mix_weight), ("device", device),
            ("precision", precision)) if value is not None]
        if given:
            verb = "applies" if len(given) == 1 else "apply"
            raise UserError(f"{', '.join(given)} {verb} to language model runs; {folder.name} is "
                            "an n-gram run (scored on the CPU, in float64): drop "
                            f"{'it' if len(given) == 1 else 'them'}")
        from charrnn.ngram.runs import load_run

        return NGramScorer(load_run(spec, root)[1], unknown)
    from charrnn.devices import resolve_device, resolve_precision
    from charrnn.evaluation.mix import mixture_of
    from charrnn.lm.model import load_lm

    ckpt = checkpoint.resolve(spec, root)
    runs.check_kind(ckpt.run_folder, ckpt.task, "lm", "eval")
    dev = resolve_device(device or "auto")
    model = load_lm(ckpt, dev).eval()
    if model.config.direction == "backward":
        raise UserError(f"{ckpt.run_folder.name} reads right to left: score lines with a forward LM")
    mixture = mixture_of(ckpt, model, dev, mix, mix_weight, root, say)
    return RNNScorer(ckpt, model, dev, unknown, resolve_precision(precision or "fp32", dev)[0],
                     mixture)


def score_lines(scorer: Scorer, lines: Iterable[str]) -> Iterator[LineScore]:
    """Scores in input order, computed a batch of lines at a time (longest lines together)."""
    batch: list[tuple[int, str]] = []
    for number, text in enumerate(lines, 1):
        batch.append((number, text))
        if len(batch) == BATCH_LINES:
            yield from _scored(scorer, batch)
            batch = []
    if batch:
        yield from _scored(scorer, batch)


def _scored(scorer: Scorer, batch: list[tuple[int, str]]) -> list[LineScore]:
    encoded = [(number, text, scorer.encode(number, text)) for number, text in batch]  # in input
    # order, so that a line the model cannot read is the first such line
    by_length = sorted(encoded, key=lambda item: len(item[2]))
    done, group = {}, []
    for item in by_length:  # padding stays small inside each group, and a group's padded size
        # bounded: a 50 MB line goes alone, not padded beside 31 others
        if group and (len(group) == GROUP_LINES or (len(group) + 1) * len(item[2]) > GROUP_CHARS):
            done.update((result.line, result) for result in scorer.score(group))
            group = []
        group.append(item)
    if group:
        done.update((result.line, result) for result in scorer.score(group))
    return [done[number] for number, _ in batch]


class Totals:
    """The whole input's figures, added up line by line (nothing is kept)."""

    def __init__(self) -> None:
        self.lines = self.tokens = self.oov = self.oov_scored = 0
        self.log10 = self.oov_log10 = 0.0
        self.open_last = False  # the last line read had no line break (an OpenLine)

    def watch(self, lines: Iterable[str]) -> Iterator[str]:
        """`lines` as they are, noting whether the last one is open."""
        for text in lines:
            self.open_last = isinstance(text, OpenLine)
            yield text

    def caveat(self, scorer: Scorer) -> str | None:
        """What to know of these scores: an open last line among others lacks the </s> they
        were each charged with, so it ranks better than it would with a line break."""
        if not (self.open_last and self.lines > 1 and scorer.closes("")):
            return None
        return (f"line {self.lines:,} has no line break at its end, so it is scored without the "
                "closing line break (</s>) the other lines are, as KenLM's query does: end the "
                "input with a line break to compare it with them")

    def add(self, s: LineScore) -> LineScore:
        self.lines, self.tokens, self.oov = self.lines + 1, self.tokens + s.tokens, self.oov + s.oov
        self.log10, self.oov_log10 = self.log10 + s.log10, self.oov_log10 + s.oov_log10
        self.oov_scored += s.oov_scored
        return s

    def to_json(self) -> dict:
        if self.tokens == 0:
            raise UserError("no line to score: the input is empty")
        known = max(1, self.tokens - self.oov_scored)  # (skipped characters were never scored)
        return {"lines": self.lines, "tokens": self.tokens, "oov": self.oov, "log10": self.log10,
                "perplexity": ppl10(-self.log10 / self.tokens),
                "perplexity_excluding_oov": ppl10(-(self.log10 - self.oov_log10) / known)}

    def describe(self) -> str:
        r = self.to_json()
        return (f"{_counted(r['lines'], 'line')}, {_counted(r['tokens'], 'token')}, "
                f"{r['oov']:,} OOV: total log10 "
                f"{r['log10']:.2f}, perplexity {r['perplexity']:.3f} "
                f"({r['perplexity_excluding_oov']:.3f} excluding OOVs)")


def _counted(count: int, noun: str) -> str:
    return f"{count:,} {noun}" + ("" if count == 1 else "s")


def format_line(s: LineScore) -> str:
    """log10 TAB tokens TAB OOVs TAB perplexity TAB the line (sortable, and the text comes last)."""
    return f"{s.log10:.4f}\t{s.tokens}\t{s.oov}\t{s.perplexity:.2f}\t{s.text}"
