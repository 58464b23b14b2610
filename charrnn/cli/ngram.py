"""`charrnn ngram train|eval|sample|export|import` and `charrnn compare`.

Cheap to import: numpy-, numba- and torch-heavy modules are imported inside the commands, and
no n-gram command ever imports torch.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn.cli import options as opt
from charrnn.cli.errors import command
from charrnn.errors import UserError
from charrnn.lm.config import SampleOptions as S

P = opt.P

ngram_app = typer.Typer(no_args_is_help=True, add_completion=False,
                        pretty_exceptions_enable=False,
                        help="N-gram baselines: interpolated modified Kneser-Ney, as KenLM's lmplz.")

Run = Annotated[Optional[str], typer.Argument(help="Run name or folder (default: newest n-gram run).")]


@command(ngram_app)
@opt.with_preprocess_options
def train(
    ctx: typer.Context,
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="Corpus: files, folders, globs, a dataset folder or a registry name "
             "(none: the embedded default corpus).")] = None,
    order: Annotated[Optional[int], typer.Option(
        help="N-gram order, 1-12 (default: 7 for char, 3 for word, 5 for subword).")] = None,
    lines: Annotated[bool, typer.Option(
        "--lines", help="Each line is a sentence with <s> and </s>, as lmplz (default: one "
                        "stream where the newline is a token, as the RNNs see it).")] = False,
    prune: Annotated[Optional[str], typer.Option(
        help="Count thresholds per order, as lmplz --prune: '0 0 1' drops trigrams and up "
             "seen once (non-decreasing; the last value repeats).")] = None,
    discount_fallback: Annotated[bool, typer.Option(
        "--discount-fallback/--no-discount-fallback",
        help="Use discounts 0.5, 1, 1.5 for an order whose estimates fail (lmplz "
             "--discount_fallback; character unigrams need it).")] = True,
    run_name: opt.RunName = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print a JSON summary.")] = False,
    out: opt.Out = None, mirror: opt.Mirror = None,
) -> None:
    """Count n-grams of a corpus and store a modified Kneser-Ney model in a run folder."""
    from charrnn import data
    from charrnn.corpora import resolve_inputs
    from charrnn.ngram.build import DEFAULT_ORDER, check_order, train_run
    from charrnn.ngram.kneser_ney import parse_prune
    from charrnn.ngram.model import MAX_ORDER

    popts = opt.preprocess_options(ctx, list(inputs or []), mirror)
    if order is not None:
        check_order(order)
    parse_prune(prune, order or MAX_ORDER)  # fail before a long preprocess
    dataset = data.prepare(resolve_inputs(list(inputs or []), popts, mirror, final=True), popts)
    order = order or DEFAULT_ORDER[dataset.tokenizer.level]
    thresholds = parse_prune(prune, order)
    folder, model = train_run(dataset, order, lines, thresholds, discount_fallback,
                              opt.root(out), run_name)
    meta = model.meta
    summary = {"run": folder.name, "path": str(folder), "order": order, "mode": meta["mode"],
               "level": dataset.tokenizer.level, "train_tokens": meta["train_tokens"],
               "ngrams": meta["ngrams"], "discounts": meta["discounts"],
               "discount_fallback_orders": meta["discount_fallback_orders"],
               "build_seconds": meta["build_seconds"], "train_seconds": meta["train_seconds"]}
    if json_out:
        typer.echo(json.dumps(summary, indent=1))
        return
    if meta["discount_fallback_orders"]:
        orders = ", ".join(map(str, meta["discount_fallback_orders"]))
        typer.echo(f"note: discounts of order {orders} fell back to 0.5, 1, 1.5", err=True)
    typer.echo(f"run {folder} | {dataset.tokenizer.level} {order}-gram ({meta['mode']}) | "
               f"{sum(meta['ngrams']):,} n-grams from {meta['train_tokens']:,} tokens | "
               f"{meta['train_seconds']:.2f}s")


@command(ngram_app, "eval")
def eval_cmd(
    targets: Annotated[Optional[list[str]], typer.Argument(
        help="[RUN] [FILE]: an n-gram run (default: newest) and/or a text file to score.")] = None,
    split: Annotated[Optional[opt.SplitChoice], typer.Option(
        help="train, val or test split of the run's dataset.")] = None,
    json_out: opt.Json = False, unk: opt.Unk = None, errors: opt.TextErrors = None,
    out: opt.Out = None,
) -> None:
    """Score a model: nats/token, perplexity and bits per character of the original text."""
    from charrnn.evaluation.ngram import evaluate_ngram
    from charrnn.evaluation.scores import describe

    root = opt.root(out)
    run, file = opt.run_and_file(list(targets or []), root, "ngram eval")
    opt.refuse_text_options(file is not None, unk, errors)
    result = evaluate_ngram(run, root, file, opt.plain(split), opt.plain(unk),
                            opt.plain(errors) or "strict")
    if json_out:
        typer.echo(json.dumps(result, indent=1))
    else:
        typer.echo(describe(result))


@command(ngram_app)
def sample(
    run: Run = None,
    length: opt.Length = S.length, temp: opt.Temp = S.temperature, prime: opt.Prime = None,
    seed: opt.SampleSeed = S.seed,
    unk: opt.Unk = None, out: opt.Out = None,
) -> None:
    """Generate text from an n-gram model."""
    from charrnn.ngram.runs import load_run
    from charrnn.ngram.sample import stream_text

    opt.refuse_empty_prime(prime)
    opt.refuse_text_options(bool(prime), unk, source="a --prime")
    _, model = load_run(run, opt.root(out), "sample")
    opt.note_unknown_prime(model.tokenizer, prime, opt.plain(unk))
    with opt.streamed_text() as write:
        for piece in stream_text(model, length, temp, prime, seed, opt.plain(unk)):
            write(piece)
        write("\n")


@command(ngram_app)
def export(
    run: Run = None,
    arpa: Annotated[str, typer.Option("--arpa", help="ARPA file to write (- for standard output).")] = ...,
    out: opt.Out = None,
) -> None:
    """Write a model as a standard ARPA file (log10 probabilities, back-off weights)."""
    from charrnn import runs
    from charrnn.ngram.arpa import export_arpa, write_arpa
    from charrnn.ngram.runs import load_run

    root = opt.root(out)
    folder = runs.resolve_run(run, root, kind="ngram")
    kind = runs.run_info(folder).get("kind")
    if kind != "ngram":  # load_run would send an RNN run to `charrnn eval`: not what was asked
        raise UserError(f"{folder.name} is not an n-gram run (its kind is {kind!r}): export "
                        "applies to n-gram runs only (an RNN has no ARPA form); give a run made "
                        "by `charrnn ngram train` or `charrnn ngram import`")
    _, model = load_run(str(folder), root)
    if arpa == "-":  # standard output as it is (a pipe, or `>> file` appended to); the
        # summary then on stderr
        counts, shown = write_arpa(model, sys.stdout), "<stdout>"
        sys.stdout.flush()
    else:
        if not arpa.strip():  # (Path("") would be "." by now)
            raise UserError("--arpa is empty: give the file to write, e.g. --arpa model.arpa, or - "
                            "for standard output")
        info = export_arpa(model, Path(arpa).expanduser())
        counts, shown = info["ngrams"], info["path"]
    typer.echo(f"{shown}: " + ", ".join(f"{c:,} {n}-grams" for n, c in enumerate(counts, 1)),
               err=arpa == "-" or _is_stdout(Path(arpa).expanduser()))


def _is_stdout(path: Path) -> bool:
    """Whether `path` is where standard output goes (/dev/stdout, /proc/self/fd/1): the summary
    line then goes to stderr, not into the ARPA stream."""
    try:
        here, there = os.fstat(sys.stdout.fileno()), os.stat(path)
    except (OSError, ValueError, AttributeError):  # (no descriptor: a test's captured stream)
        return False
    return (here.st_dev, here.st_ino) == (there.st_dev, there.st_ino)


@command(ngram_app, "import")
def import_cmd(
    file: Annotated[str, typer.Argument(help="ARPA file (ours, KenLM's, SRILM's, ...).")],
    run_name: opt.RunName = None, out: opt.Out = None,
) -> None:
    """Read an ARPA file into a new n-gram run (evaluate it with a FILE, sample from it)."""
    from charrnn import runs
    from charrnn.ngram.arpa import import_arpa

    path = Path(file)
    if not path.is_file():
        raise UserError(f"{file} does not exist or is not a file: give an ARPA file")
    model = import_arpa(path)
    info = {"imported_from": str(path.resolve()), "config": {"order": model.order},
            "dataset": model.meta.get("dataset")}
    folder = runs.new_run_dir(opt.root(out), run_name, "ngram", info)
    with runs.kept_if_written(folder):
        model.save(folder / "model")
    typer.echo(f"run {folder} | {model.tokenizer.level} {model.order}-gram "
               f"({model.meta['mode']}) | {model.num_ngrams:,} n-grams")
    if model.meta.get("unk_missing"):
        typer.echo("note: the file has no <unk>: an unknown word gets log10 p = -100, as KenLM "
                   "gives it", err=True)


def compare_cmd(
    runs: Annotated[Optional[list[str]], typer.Argument(
        help="Runs to compare, RNN and n-gram (default: every run under the root).")] = None,
    split: Annotated[Optional[opt.SplitChoice], typer.Option(help="Split of each run's dataset: train, val or test (default: test).")] = None,
    file: Annotated[Optional[str], typer.Option(
        "--file", help="Score every run on this text file instead.")] = None,
    json_out: opt.Json = False,
    unk: Annotated[Optional[opt.UnkChoice], typer.Option(
        "--unk", show_default=False, help="Characters outside a char model's vocabulary: error (the default; that run is skipped) or skip (at least one char-level run compared).")] = None,
    mix: Annotated[Optional[bool], typer.Option("--mix/--no-mix", show_default=False, help="Add a row for each RNN ⊕ n-gram pair counted on one dataset (λ tuned on its validation split); the default where the runs hold such a pair.")] = None,
    out: opt.Out = None,
) -> None:
    """Compare runs on the same text: bits/char (any tokenizer), perplexity, size, speed."""
    from charrnn.evaluation.compare import compare, render

    if file is not None and split is not None:
        raise UserError("give --file or --split, not both (a --file replaces every run's split)")
    opt.refuse_text_options(file is not None, unk, source="a --file")
    report = compare(list(runs or []), opt.root(out), opt.plain(split) if split else "test", file,
                     opt.plain(unk), mix, say=opt.note)
    if json_out:
        typer.echo(json.dumps(report, indent=1))
    else:
        from charrnn.tui import table_console

        render(report, table_console())
