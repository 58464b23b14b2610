"""Every command-line option declared once, with its default taken from the config dataclasses.

Fixed sets of choices are enums (Typer refuses anything else in one line); configs are built by
keyword from the parsed options (`config_from`), so a default lives in one place: the dataclass.
Only typer, the torch-free config modules and `data` are imported here: `charrnn --help` and the
n-gram commands never load torch.
"""

from __future__ import annotations

import contextlib
import functools
import glob
import inspect
import sys
import typing
from collections.abc import Callable, Iterator
from dataclasses import MISSING, fields
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn.data import LEVELS, SPLITS, PreprocessOptions
from charrnn.errors import UserError, flag
from charrnn.lm.config import DIRECTIONS, SOFTMAXES, TrainConfig
from charrnn.rnn.shape import CELLS
from charrnn.tag.config import FORMATS, TagTrainConfig
from charrnn.training.config import OPTIMIZERS, PRECISIONS


def choices(name: str, values: tuple[str, ...]) -> type[Enum]:
    """An enum of string choices, as Typer wants them (the member is its own value)."""
    return Enum(name, {v: v for v in values}, type=str)  # type: ignore[return-value]


CellChoice = choices("CellChoice", CELLS)
OptimChoice = choices("OptimChoice", OPTIMIZERS)
DirectionChoice = choices("DirectionChoice", DIRECTIONS)
TaskChoice = choices("TaskChoice", ("lm", "fill"))
LevelChoice = choices("LevelChoice", LEVELS)
SubwordChoice = choices("SubwordChoice", ("bpe", "unigram"))
ErrorsChoice = choices("ErrorsChoice", ("strict", "replace"))
UnkChoice = choices("UnkChoice", ("error", "skip"))
SplitChoice = choices("SplitChoice", SPLITS)
CheckpointChoice = choices("CheckpointChoice", ("best", "last"))
FormatChoice = choices("FormatChoice", FORMATS)
PrecisionChoice = choices("PrecisionChoice", PRECISIONS)
SoftmaxChoice = choices("SoftmaxChoice", SOFTMAXES)


def plain(value: object) -> object:
    """An option's value as the library takes it (an enum member → its string)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


def default(cls: type, name: str) -> object:
    """A config field's default (the one source of every option default)."""
    for f in fields(cls):
        if f.name == name:
            if f.default is not MISSING:
                return f.default
            return f.default_factory()  # type: ignore[misc]
    raise KeyError(name)


def config_from(cls: type, params: dict):
    """`cls(**…)` from the parsed options that are its fields, by keyword."""
    names = {f.name for f in fields(cls)}
    return cls(**{k: plain(v) for k, v in params.items() if k in names})


def int_list(spec: str | None, option_name: str, example: str) -> list[int]:
    """'2000,6000' → [2000, 6000] (None: []; '', ',' or an empty field is an error: typed, it
    would do nothing, and '10,,20' may have lost a number)."""
    if spec is None:
        return []
    try:
        values = [int(x) for x in spec.split(",")]
    except ValueError:
        values = []
    if not values:
        raise UserError(f"{option_name} must be whole numbers separated by commas (e.g. "
                        f"{example}), not {spec!r}")
    return values


def typed_params(ctx: typer.Context) -> frozenset[str]:
    """The options typed on this command line (not defaults): an option that does not apply is
    refused only when typed, and a dataset folder or a resumed run refuses one it would ignore."""
    return frozenset(name for name in ctx.params
                     if getattr(ctx.get_parameter_source(name), "name", "") == "COMMANDLINE")


def refuse_inapplicable(typed: frozenset[str], cls: type, others: set[str], what: str) -> None:
    """A typed option that is neither a field of `cls` nor in `others` does not apply to `what`:
    an error naming it, never silently ignored."""
    names = {f.name for f in fields(cls)} | others
    stray = sorted(flag(n) for n in typed if n not in names)
    if stray:
        raise UserError(f"{', '.join(stray)} {'does' if len(stray) == 1 else 'do'} not apply to "
                        f"{what}: drop {'it' if len(stray) == 1 else 'them'}")


def root(out: str | None) -> Path:
    from charrnn.runs import runs_root

    return runs_root(out)


def run_and_file(targets: list[str], runs_root: Path, command: str) -> tuple[str | None, str | None]:
    """[RUN] [FILE] of the eval commands: one argument is a run if a run folder has that name
    (under the root, or as a path), else a file."""
    from charrnn.inputs import refuse_empty

    if len(targets) > 2:
        raise UserError(f"{command} takes at most a RUN and a FILE")
    for target in targets:
        refuse_empty(target)
    if len(targets) == 2:
        return targets[0], targets[1]
    if len(targets) == 1:
        if targets[0] == "-":  # standard input, read with the newest run
            return None, "-"
        target = Path(targets[0])
        is_run = (runs_root / targets[0]).is_dir() or (target.is_dir() and any(
            (target / name).exists() for name in ("run.json", "checkpoint.json",
                                                  "last/checkpoint.json", "best/checkpoint.json")))
        is_run = is_run or (target.name in ("best", "last") and any(  # (a run's, missing: the
            (folder.parent / "run.json").is_file() for folder in (target, runs_root / target)))
        # checkpoint's own error says which it has; 'neither a run nor a file' sent no way out)
        if not is_run and not target.expanduser().exists() and not glob.has_magic(targets[0]):
            raise UserError(f"{targets[0]!r} is neither a run under {runs_root} nor a file: check "
                            "the name (charrnn runs lists the runs)")
        return (targets[0], None) if is_run else (None, targets[0])
    return None, None


# ---- options several commands share ----------------------------------------------------------
P = PreprocessOptions
Level = Annotated[LevelChoice, typer.Option("--level", help="Token level: char, word or subword.")]
Lower = Annotated[bool, typer.Option("--lower", help="Lower-case the text first (char and word level).")]
ValFrac = Annotated[float, typer.Option("--val-frac", help="Fraction of the corpus tail held out for validation.")]
TestFrac = Annotated[float, typer.Option("--test-frac", help="Fraction of the corpus tail held out for test (after val).")]
Valid = Annotated[Optional[list[str]], typer.Option("--valid", help="Validation file(s) instead of a tail fraction.")]
Test = Annotated[Optional[list[str]], typer.Option("--test", help="Test file(s) instead of a tail fraction.")]
Errors = Annotated[ErrorsChoice, typer.Option("--errors", help="Invalid UTF-8: 'strict' (stop) or 'replace' (U+FFFD).")]
# Where the text read is FILE, not the run's own split (eval, ngram eval): not typed is None.
TextErrors = Annotated[Optional[ErrorsChoice], typer.Option("--errors", show_default=False, help="Invalid UTF-8 in FILE: 'strict' (stop; the default) or 'replace' (U+FFFD).")]
Pattern = Annotated[Optional[str], typer.Option("--pattern", help="Word level: regex matching one token (default: split on whitespace).")]
MinCount = Annotated[int, typer.Option("--min-count", help="Word level: words seen fewer times become <unk>.")]
MaxVocab = Annotated[Optional[int], typer.Option("--max-vocab", help="Word level: keep at most this many words (with specials).")]
VocabSize = Annotated[int, typer.Option("--vocab-size", help="Subword level: sentencepiece vocabulary size.")]
SubwordModel = Annotated[SubwordChoice, typer.Option("--subword-model", help="Subword level: bpe or unigram.")]
Mirror = Annotated[Optional[str], typer.Option("--mirror", help="Folder with local copies of registry corpora (or $CHARRNN_MIRROR).")]
Out = Annotated[Optional[str], typer.Option("--out", help="Runs root folder (default ./checkpoints or $CHARRNN_RUNS).")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda (cuda:N) or mps.")]
Unk = Annotated[Optional[UnkChoice], typer.Option("--unk", show_default=False, help="Characters outside a char model's vocabulary: error (the default), or skip them (a word model reads unknown words as its <unk>, as in PTB, and a subword model spells any text: neither takes --unk).")]
Json = Annotated[bool, typer.Option("--json", help="Print JSON.")]
Mix = Annotated[Optional[str], typer.Option("--mix", help="An n-gram run on the same dataset: per token, p = λ·p_rnn + (1−λ)·p_ngram.")]
MixWeight = Annotated[Optional[float], typer.Option(help="λ of --mix, the RNN's share (default: tuned on the validation split by EM, and remembered for the checkpoint).")]
def plain_run_name(name: str | None) -> str | None:
    """--run-name checked as it is parsed: before any corpus is read for a run it cannot name."""
    from charrnn.runs import check_run_name

    if name is not None:
        try:
            check_run_name(name)
        except UserError as exc:  # as Click's own refusals are said (in-process too)
            raise typer.BadParameter(str(exc).removeprefix(f"{flag('run_name')} ")) from exc
    return name


RunName = Annotated[Optional[str], typer.Option(help="Run folder name (default: a timestamp).",
                                                callback=plain_run_name)]
Seed = Annotated[int, typer.Option(help="Random seed.")]
# What both samplers take (`sample`, `ngram sample`).
Length = Annotated[int, typer.Option(help="Tokens to generate.")]
Temp = Annotated[float, typer.Option("--temp", help="Temperature (> 0): below 1 is safer, above wilder.")]
Prime = Annotated[Optional[str], typer.Option(help="Text to start from.")]
SampleSeed = Annotated[Optional[int], typer.Option("--seed", help="Random seed: same seed, same text (with the same version; an RNN's on the same device).")]
Quiet = Annotated[bool, typer.Option("--quiet", help="No progress lines on stderr.")]
Plain = Annotated[bool, typer.Option("--plain", help="Plain log lines even in a terminal.")]
Inputs = Annotated[Optional[list[str]], typer.Argument(
    help="Corpus: files, directories, globs, a dataset folder or a registry name. None: the "
         "embedded default corpus.")]

# The options of `preprocess`, which `train` and `ngram train` take too (they preprocess raw text).
PREPROCESS_PARAMS = (("level", Level), ("lower", Lower), ("val_frac", ValFrac),
                     ("test_frac", TestFrac), ("valid", Valid), ("test", Test), ("errors", Errors),
                     ("pattern", Pattern), ("min_count", MinCount), ("max_vocab", MaxVocab),
                     ("vocab_size", VocabSize), ("subword_model", SubwordModel))
PREPROCESS_FIELDS = {name for name, _ in PREPROCESS_PARAMS}


def with_preprocess_options(command):
    """The command with the preprocess options appended to its parameters (declared once, here);
    it reads them from ctx.params (`preprocess_options`), so they are not passed to it."""
    hints = typing.get_type_hints(command, include_extras=True)
    own = [p.replace(annotation=hints.get(p.name, p.annotation))
           for p in inspect.signature(command).parameters.values()]
    extra = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation,
                               default=None if name in ("valid", "test") else default(P, name))
             for name, annotation in PREPROCESS_PARAMS]

    @functools.wraps(command)
    def wrapper(*args, **kwargs):
        return command(*args, **{k: v for k, v in kwargs.items() if k not in PREPROCESS_FIELDS})

    wrapper.__signature__ = inspect.Signature(own + extra)  # type: ignore[attr-defined]
    wrapper.__annotations__ = {p.name: p.annotation for p in own + extra}
    return wrapper


def request(ctx: typer.Context, **parsed):
    """The command line as a plan reads it: every option's value (with `parsed` replacing the
    raw text of options parsed here), and which options were typed."""
    from charrnn.plan.request import Request

    return Request.of({**ctx.params, **parsed}, typed_params(ctx))


def preprocess_options(ctx: typer.Context, inputs: list[str] | None = None,
                       mirror: str | None = None) -> PreprocessOptions:
    """The preprocess options a command's corpus takes, as its plan resolves them (typed ones
    kept; a registry corpus's or a dataset folder's own for the rest)."""
    from charrnn.plan.preprocess import preprocess_options as planned

    return planned(request(ctx), inputs, mirror)


# ---- optimisation and budget: every training command (train, tag train) ----------------------
L, T = TrainConfig, TagTrainConfig
Optim = Annotated[OptimChoice, typer.Option(help="The optimizer (rprop: resilient backpropagation, a full-batch method: each weight steps by the sign of its gradient; full batch when a batch covers the training text: --batch-size × --seq-len tokens for `train`, --batch-size sentences for `tag train`).")]
Lr = Annotated[Optional[float], typer.Option(help="Peak learning rate (default per optimizer: adamw/adam 4e-3, rmsprop 2e-3, sgd 1; rprop: each weight's initial step, 1e-3).")]
Momentum = Annotated[float, typer.Option(help="sgd and rmsprop: momentum (0: plain SGD).")]
WeightDecay = Annotated[float, typer.Option(help="Weight decay on matrices (not biases or embeddings).")]
GradClip = Annotated[float, typer.Option(help="Clip the gradient norm (0: off).")]
Warmup = Annotated[int, typer.Option(help="Linear warmup steps.")]
MinLrRatio = Annotated[float, typer.Option(help="Cosine floor as a fraction of --lr.")]
MaxSteps = Annotated[Optional[int], typer.Option(help="Stop after this many steps.")]
MaxTime = Annotated[Optional[float], typer.Option(help="Stop after this many seconds.")]
Epochs = Annotated[Optional[float], typer.Option(help="Stop after this many epochs.")]
EvalSeconds = Annotated[Optional[float], typer.Option(help="Also evaluate every N seconds.")]
SaveEvery = Annotated[Optional[int], typer.Option(help="Save last/ every N steps (besides evals).")]
Patience = Annotated[Optional[int], typer.Option(help="Stop after N evals without improvement.")]
LogEvery = Annotated[int, typer.Option(help="Read the loss back (and log) every N steps.")]
Precision = Annotated[PrecisionChoice, typer.Option(help="What training computes in: auto (on a CPU, bf16 autocast only where a measured step of this model runs clearly faster in it, else fp32 — the char recipe of a CPU where bf16 is fast trains its own model in bf16, as `charrnn train --help` lists; float16 with loss scaling on CUDA), fp32 or bf16 (CPU). Weights, optimizer state and the loss stay fp32.")]
Threads = Annotated[int, typer.Option(help="CPU threads (0: every core this process may use; with OMP_NUM_THREADS set, torch's count as it says).")]
Cell = Annotated[CellChoice, typer.Option(help="rnn, lstm or gru.")]
Layers = Annotated[int, typer.Option(help="Stacked recurrent layers.")]
Dropout = Annotated[float, typer.Option(help="Dropout on inputs and outputs of the RNN (and between layers).")]
BatchSize = Annotated[int, typer.Option(help="Parallel streams (LM) or sentences (tagger) per step.")]


def note(text: str) -> None:
    """A note on stderr, beside output that may be piped."""
    typer.echo(f"note: {text}", err=True)


def note_unknown_prime(tokenizer, prime: str | None, unk: str | None = None) -> None:
    """A word model's prime is shown as typed: say on stderr which of its words the model reads
    as <unk>, since the text no longer shows it. A --unk the model has no use for is refused
    first (a note, then a refusal, read as if it had sampled)."""
    from charrnn.tokenizers import refuse_idle_unk

    refuse_idle_unk(tokenizer.level, unk)
    lacking = tokenizer.unknown_words(prime) if prime and tokenizer.level == "word" else []
    if lacking:
        shown = ", ".join(map(repr, lacking[:10])) + (" …" if len(lacking) > 10 else "")
        noun = "word" if len(lacking) == 1 else "words"
        typer.echo(f"note: {len(lacking)} {noun} of the prime not in the model's vocabulary, "
                   f"read as <unk>: {shown}", err=True)


def refuse_empty_prime(prime: str | None) -> None:
    """--prime '' would be no prime at all (as an empty --prime-file, which is refused)."""
    if prime == "":
        raise UserError("--prime is empty: give text, or drop --prime to start at a line break")
    refuse_undecoded(prime, "--prime")


def refuse_undecoded(text: str | None, what: str) -> None:
    """Text typed on the command line that was not UTF-8: Python keeps each byte it could not
    decode as a lone surrogate (U+DC80…U+DCFF), which a model would read as unknown characters."""
    at = next((i for i, ch in enumerate(text or "") if "\udc80" <= ch <= "\udcff"), None)
    if at is not None:
        before = ("…" if at > 20 else "") + text[max(0, at - 20):at]
        raise UserError(f"{what} is not UTF-8 text (byte 0x{ord(text[at]) - 0xDC00:02X} after "
                        f"{before!r}): give it in UTF-8 (is the terminal's locale UTF-8?)")


def refuse_text_options(text_given: bool, unk: object, errors: object = None,
                        source: str = "a FILE instead of the run's split") -> None:
    """--unk skip and --errors replace say how to read the user's text: where there is none (a
    run's own split, no --prime), they would change nothing."""
    for name, value in (("--unk", plain(unk)), ("--errors", plain(errors))):
        if not text_given and value is not None:
            raise UserError(f"{name} {value} says how to read your text, and there is none "
                            f"here: give {source}, or drop {name}")


@contextlib.contextmanager
def streamed_text() -> Iterator[Callable[[str], None]]:
    """A writer of generated text to stdout, flushed piece by piece. A stop mid-line in a
    terminal (an error, Ctrl-C) ends the text's line first, so that what is said of it starts a
    line of its own (it read 'the kicharrnn: error: …')."""
    line_open = [False]

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()
        if text:
            line_open[0] = not text.endswith("\n")

    try:
        yield write
    except BaseException:
        if line_open[0] and sys.stdout.isatty():
            with contextlib.suppress(OSError, ValueError):
                sys.stdout.write("\n")
                sys.stdout.flush()
        raise
