"""The `charrnn` command line: parse options, call the library, map errors to exit codes.

Heavy modules (torch, numba, sentencepiece) are imported inside the commands, so `charrnn --help`
and the n-gram commands start fast and never import torch.
"""

from __future__ import annotations

import glob
import json
import sys
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn.cli import options as opt
from charrnn.cli.errors import debug as _debug
from charrnn.cli.errors import report_errors
from charrnn.errors import UserError
from charrnn.pipes import EXIT_BROKEN_PIPE, silence_stdout, stdout_is_devnull

app = typer.Typer(
    name="charrnn", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Train, sample, evaluate and compare recurrent language models (char, word, subword).",
)
corpus_app = typer.Typer(no_args_is_help=True, help="The registry of public corpora.")
app.add_typer(corpus_app, name="corpus")


def _print_version(value: bool) -> None:
    if value:
        from charrnn import __version__

        typer.echo(f"charrnn {__version__}")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.")]
        = False) -> None:
    """Train, sample, evaluate and compare recurrent language models (char, word, subword)."""


def _root(out: str | None) -> Path:
    from charrnn.runs import runs_root

    return runs_root(out)


@app.command()
@report_errors
def preprocess(
    ctx: typer.Context,
    inputs: Annotated[list[str], typer.Argument(help="Text files, directories or globs.")],
    out: Annotated[str, typer.Option("--out", help="Dataset folder to write.")],
    level: opt.Level = "char", lower: opt.Lower = False, val_frac: opt.ValFrac = 0.05,
    test_frac: opt.TestFrac = 0.05, valid: opt.Valid = None, test: opt.Test = None,
    errors: opt.Errors = "strict", pattern: opt.Pattern = None, min_count: opt.MinCount = 1,
    max_vocab: opt.MaxVocab = None, vocab_size: opt.VocabSize = 2000,
    subword_model: opt.SubwordModel = "bpe",
) -> None:
    """Tokenize a corpus into train/val/test id files (numpy memmap) plus meta.json."""
    from charrnn.data import preprocess as run_preprocess

    popts = opt.preprocess_options(level, lower, val_frac, test_frac, valid, test, errors,
                                   pattern, min_count, max_vocab, vocab_size, subword_model)
    popts.typed = opt.typed_params(ctx)
    dataset = run_preprocess(inputs, Path(out), popts)
    splits = dataset.meta["splits"]
    typer.echo(f"{dataset.root}: {dataset.tokenizer.level} vocab {dataset.tokenizer.vocab_size}, "
               + ", ".join(f"{k} {v['tokens']:,} tokens / {v['chars']:,} chars"
                           for k, v in splits.items()))


@app.command()
@report_errors
def train(
    ctx: typer.Context,
    inputs: Annotated[Optional[list[str]], typer.Argument(
        help="Corpus: files, directories, globs, a dataset folder or a registry name. "
             "None: the embedded default corpus.")] = None,
    cell: Annotated[str, typer.Option(help="rnn, lstm or gru.")] = "gru",
    layers: Annotated[int, typer.Option(help="Stacked recurrent layers.")] = 2,
    hidden: Annotated[int, typer.Option(help="Hidden units per layer.")] = 256,
    emb: Annotated[int, typer.Option(help="Embedding size (0: same as --hidden).")] = 0,
    dropout: Annotated[float, typer.Option(help="Dropout on embeddings, between layers, on outputs.")] = 0.2,
    tie_weights: Annotated[bool, typer.Option("--tie-weights/--no-tie-weights", help="Share input embedding and output matrix.")] = True,
    weight_drop: Annotated[float, typer.Option(help="DropConnect on the recurrent (hidden-to-hidden) matrices, as AWD-LSTM.")] = 0.0,
    locked_dropout: Annotated[bool, typer.Option("--locked-dropout/--no-locked-dropout", help="One --dropout mask per window, shared by all time steps (variational).")] = False,
    embed_drop: Annotated[float, typer.Option(help="Drop whole embedding rows (token types) per window.")] = 0.0,
    seq_len: Annotated[int, typer.Option(help="Truncated-BPTT length.")] = 64,
    batch_size: Annotated[int, typer.Option(help="Parallel streams per step.")] = 32,
    optim: Annotated[str, typer.Option(help="adamw, adam, sgd or rmsprop.")] = "adamw",
    lr: Annotated[Optional[float], typer.Option(help="Peak learning rate (default per optimizer).")] = None,
    weight_decay: Annotated[float, typer.Option(help="Weight decay on matrices.")] = 0.01,
    grad_clip: Annotated[float, typer.Option(help="Clip the gradient norm (0: off).")] = 1.0,
    warmup: Annotated[int, typer.Option(help="Linear warmup steps.")] = 100,
    min_lr_ratio: Annotated[float, typer.Option(help="Cosine floor as a fraction of --lr.")] = 0.1,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after this many steps.")] = None,
    max_time: Annotated[Optional[float], typer.Option(help="Stop after this many seconds.")] = None,
    epochs: Annotated[Optional[float], typer.Option(help="Stop after this many epochs.")] = None,
    eval_every: Annotated[int, typer.Option(help="Evaluate on val every N steps.")] = 250,
    eval_seconds: Annotated[Optional[float], typer.Option(help="Also evaluate every N seconds.")] = None,
    eval_tokens: Annotated[Optional[int], typer.Option(help="Evaluate on at most N val tokens.")] = None,
    save_every: Annotated[Optional[int], typer.Option(help="Save last/ every N steps (besides evals).")] = None,
    patience: Annotated[Optional[int], typer.Option(help="Stop after N evals without improvement.")] = None,
    log_every: Annotated[int, typer.Option(help="Read the loss back every N steps.")] = 50,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1337,
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    direction: Annotated[str, typer.Option(help="forward, or backward (a right-to-left LM, used by fill).")] = "forward",
    task: Annotated[str, typer.Option(help="lm (a language model), or fill (a masked bidirectional model for `charrnn fill`).")] = "lm",
    run_name: Annotated[Optional[str], typer.Option(help="Run folder name (default: a timestamp).")] = None,
    resume: Annotated[Optional[str], typer.Option(help="Continue RUN exactly from its last/.")] = None,
    plain: Annotated[bool, typer.Option("--plain", help="Plain log lines even in a terminal.")] = False,
    out: opt.Out = None, mirror: opt.Mirror = None,
    level: opt.Level = "char", lower: opt.Lower = False, val_frac: opt.ValFrac = 0.05,
    test_frac: opt.TestFrac = 0.05, valid: opt.Valid = None, test: opt.Test = None,
    errors: opt.Errors = "strict", pattern: opt.Pattern = None, min_count: opt.MinCount = 1,
    max_vocab: opt.MaxVocab = None, vocab_size: opt.VocabSize = 2000,
    subword_model: opt.SubwordModel = "bpe",
) -> None:
    """Train an RNN language model (raw text is preprocessed and cached automatically)."""
    from charrnn.lm.job import train_job
    from charrnn.lm.train import TrainConfig

    popts = opt.preprocess_options(level, lower, val_frac, test_frac, valid, test, errors,
                                   pattern, min_count, max_vocab, vocab_size, subword_model)
    typed = opt.typed_params(ctx)
    popts.typed = typed
    cfg = TrainConfig(cell, layers, hidden, emb, dropout, tie_weights, seq_len, batch_size, optim,
                      lr, weight_decay, grad_clip, warmup, min_lr_ratio, max_steps, max_time,
                      epochs, eval_every, eval_seconds, eval_tokens, save_every, patience,
                      log_every, seed, device, direction, weight_drop=weight_drop,
                      locked_dropout=locked_dropout, embed_drop=embed_drop)
    overrides = {"max_steps": max_steps, "max_time": max_time, "epochs": epochs,
                 "patience": patience, "device": device if device != "auto" else None}
    if resume is not None:  # so that --resume can refuse a change it would otherwise ignore
        overrides["typed"] = {k: v for k, v in asdict(cfg).items() if k in typed}
    if task != "lm":
        from charrnn.fill.model import train_fill_job

        result = train_fill_job(task, list(inputs or []), popts, cfg, _root(out), run_name, resume,
                                mirror, plain=plain)
        if result["outcome"] == "interrupted":
            raise typer.Exit(130)
        return
    result = train_job(list(inputs or []), popts, cfg, _root(out), run_name, resume, overrides,
                       mirror, plain=True if plain else None)
    if result["outcome"] == "interrupted":
        raise typer.Exit(130)


@app.command()
@report_errors
def sample(
    run: Annotated[Optional[str], typer.Argument(help="Run name, run folder or checkpoint (default: newest run).")] = None,
    temp: Annotated[float, typer.Option("--temp", help="Softmax temperature (> 0).")] = 1.0,
    top_k: Annotated[Optional[int], typer.Option(help="Sample from the K most likely tokens.")] = None,
    top_p: Annotated[Optional[float], typer.Option(help="Nucleus sampling: smallest set with mass ≥ P.")] = None,
    greedy: Annotated[bool, typer.Option("--greedy", help="Always take the most likely token.")] = False,
    beam: Annotated[Optional[int], typer.Option(help="Beam search with N beams (most likely text).")] = None,
    length: Annotated[int, typer.Option(help="Tokens to generate.")] = 500,
    prime: Annotated[Optional[str], typer.Option(help="Text to start from.")] = None,
    prime_file: Annotated[Optional[str], typer.Option(help="Read the prime from a file.")] = None,
    num_samples: Annotated[int, typer.Option(help="Independent samples, generated side by side (one batch) from --seed.")] = 1,
    seed: Annotated[Optional[int], typer.Option(help="Random seed: same seed, same text.")] = None,
    unk: Annotated[str, typer.Option("--unk", help="Prime tokens outside the vocabulary: error or skip.")] = "error",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    checkpoint_name: Annotated[str, typer.Option("--checkpoint", help="best or last.")] = "best",
    plain: Annotated[bool, typer.Option("--plain", help="Plain streaming text (what a pipe gets).")] = False,
    out: opt.Out = None,
) -> None:
    """Generate text from a trained model, streamed as it is produced."""
    from charrnn import checkpoint, tui
    from charrnn.inputs import read_text
    from charrnn.lm.sample import SampleOptions, generate

    if unk not in ("error", "skip"):
        raise UserError(f"--unk must be 'error' or 'skip', not {unk!r}")
    if prime is not None and prime_file is not None:
        raise UserError("give --prime or --prime-file, not both")
    if prime_file is not None:
        prime = read_text([prime_file])
    opts = SampleOptions(length, temp, top_k, top_p, greedy, beam, seed)
    opts.validate()
    ckpt = checkpoint.resolve(run, _root(out), prefer=checkpoint_name)
    if tui.use_live_view(plain, beam, num_samples, ckpt.model_config.direction):
        tui.live_sample(ckpt, opts, prime, device, unk)  # a terminal: the live view
        return

    def write(text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()

    generate(ckpt, opts, prime, num_samples, write, device, unk)
    write("\n")


@app.command("eval")
@report_errors
def eval_command(
    targets: Annotated[Optional[list[str]], typer.Argument(
        help="[RUN] [FILE]: a run (default: newest) and/or a text file to score.")] = None,
    split: Annotated[Optional[str], typer.Option(help="val or test split of the run's dataset.")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    unk: Annotated[str, typer.Option("--unk", help="Characters outside the vocabulary: error or skip.")] = "error",
    device: Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")] = "auto",
    errors: opt.Errors = "strict", out: opt.Out = None,
) -> None:
    """Score a model: nats/token, perplexity and bits per character of the original text."""
    from charrnn.lm.evaluate import evaluate_run
    from charrnn.scores import describe

    if unk not in ("error", "skip"):
        raise UserError(f"--unk must be 'error' or 'skip', not {unk!r}")
    run, file = _run_and_file(list(targets or []), _root(out))
    if file is not None and split is not None:
        raise UserError("give a FILE or --split, not both")
    if split is not None and split not in ("val", "test", "train"):
        raise UserError(f"--split must be val, test or train, not {split!r}")
    result = evaluate_run(run, _root(out), file, split, device, unk, errors)
    if json_out:
        typer.echo(json.dumps(result, indent=1))
    else:
        typer.echo(describe(result))


def _run_and_file(targets: list[str], root: Path) -> tuple[str | None, str | None]:
    if len(targets) > 2:
        raise UserError("eval takes at most a RUN and a FILE")
    if len(targets) == 2:
        return targets[0], targets[1]
    if len(targets) == 1:
        target = Path(targets[0])
        is_run = (root / targets[0]).is_dir() or (target.is_dir() and (
            (target / "run.json").exists() or (target / "checkpoint.json").exists()))
        if not is_run and not target.expanduser().exists() and not glob.has_magic(targets[0]):
            raise UserError(f"{targets[0]!r} is neither a run under {root} nor a file: check "
                            "the name (charrnn runs lists the runs)")
        return (targets[0], None) if is_run else (None, targets[0])
    return None, None


@corpus_app.command("list")
@report_errors
def corpus_list() -> None:
    """Show the registry of public corpora."""
    from rich.console import Console
    from rich.table import Column, Table

    from charrnn.corpora import registry

    table = Table("files", "level", "licence", "description")
    table.columns.insert(0, Column("name", no_wrap=True, style="bold"))
    for name, entry in registry().items():
        table.add_row(name, ", ".join(f["name"] for f in entry["files"]), entry.get("level", ""),
                      entry.get("licence", ""), entry.get("description", ""))
    Console().print(table)


@corpus_app.command("get")
@report_errors
def corpus_get(
    name: Annotated[str, typer.Argument(help="Registry name (see `charrnn corpus list`).")],
    mirror: opt.Mirror = None,
    allow_unverified: Annotated[bool, typer.Option("--allow-unverified", help="Fetch entries without a recorded sha256.")] = False,
) -> None:
    """Download (or copy from --mirror), verify the sha256 and cache a corpus; print its paths."""
    from charrnn.corpora import get

    for role, path in get(name, mirror, allow_unverified).items():
        typer.echo(f"{role}\t{path}")


@app.command("runs")
@report_errors
def runs_command(out: opt.Out = None) -> None:
    """List the runs under the root with their best scores (a table)."""
    from charrnn.tui.runs_table import print_runs

    print_runs(_root(out))


@app.command()
@report_errors
def plot(
    run_specs: Annotated[list[str], typer.Argument(metavar="RUN...", help="Runs (names or folders) whose curves to draw.")],
    png: Annotated[str, typer.Option("--png", help="PNG file to write.")] = "curves.png",
    out: opt.Out = None,
) -> None:
    """Write a PNG of train/val loss and val bits/char curves for one or several runs."""
    from charrnn.plot import plot_runs

    path = plot_runs(list(run_specs), _root(out), Path(png))
    typer.echo(f"wrote {path}")


def _mount_subcommands() -> None:
    """`charrnn ngram …` and `compare` (torch-free), `charrnn tag …` and `charrnn fill …`
    (charrnn.cli.tag imports typer only); their commands report errors as every command does."""
    from charrnn.cli.ngram import compare_cmd, ngram_app
    from charrnn.cli.tag import fill_app, tag_app

    app.add_typer(ngram_app, name="ngram", help="N-gram baselines (modified Kneser-Ney).")
    app.command("compare")(report_errors(compare_cmd))
    app.add_typer(tag_app, name="tag")
    app.add_typer(fill_app, name="fill")


_mount_subcommands()


def main() -> None:
    """Console entry point: one-line errors, exit codes, traceback only with CHARRNN_DEBUG=1."""
    try:
        # Not standalone: a mistyped command line comes back here as an exception, so that it is
        # reported in our one-line form rather than as Typer's multi-line box.
        code = app(standalone_mode=False)
        sys.exit(code if isinstance(code, int) else 0)
    except typer.TyperException as exc:
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help was printed already
            sys.exit(exc.exit_code)
        if _debug() or not hasattr(exc, "format_message"):
            raise
        ctx = getattr(exc, "ctx", None)
        where = f" (see `charrnn{_subcommand(ctx)} --help`)"
        print(f"charrnn: error: {exc.format_message().rstrip('.')}{where}", file=sys.stderr)
        sys.exit(getattr(exc, "exit_code", 2))
    except UserError as exc:
        if _debug():
            raise
        print(f"charrnn: error: {exc}", file=sys.stderr)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        print("charrnn: interrupted", file=sys.stderr)
        sys.exit(130)
    except BrokenPipeError:  # `charrnn --help | head -1`: before any command's own handling
        silence_stdout()
        sys.exit(EXIT_BROKEN_PIPE)
    except SystemExit as exc:  # Rich met the closed pipe first (see cli_errors.report_errors)
        if exc.code == 1 and stdout_is_devnull():
            sys.exit(EXIT_BROKEN_PIPE)
        raise
    except Exception as exc:  # a bug, not a user mistake: keep it short unless debugging
        if _debug():
            raise
        print(f"charrnn: internal error: {type(exc).__name__}: {exc} "
              "(set CHARRNN_DEBUG=1 for the traceback)", file=sys.stderr)
        traceback.clear_frames(exc.__traceback__)
        sys.exit(1)


def _subcommand(ctx) -> str:
    """' ngram sample' for a context of `charrnn ngram sample` (whatever the program was called)."""
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return "".join(f" {name}" for name in reversed(names))
