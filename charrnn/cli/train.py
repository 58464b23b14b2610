"""`charrnn preprocess` and `charrnn train` (a language model, or with --task fill the masked model).

Every option's default is its config field's default (lm.config.TrainConfig, fill.config.
FillTrainConfig, data.PreprocessOptions); the configs are built by keyword from what was parsed.
"""

from __future__ import annotations

import inspect
from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn.cli import options as opt
from charrnn.cli.errors import exit_after
from charrnn.errors import UserError

L, P = opt.L, opt.P
FineTuneUnk = opt.choices("FineTuneUnk", ("add", "skip", "error"))


@opt.with_preprocess_options
def preprocess(
    ctx: typer.Context,
    inputs: Annotated[list[str], typer.Argument(help="Text files, directories, globs or a registry name.")],
    out: Annotated[str, typer.Option("--out", help="Dataset folder to write.")],
    mirror: opt.Mirror = None,
) -> None:
    """Tokenize a corpus into train/val/test id files (numpy memmap) plus meta.json."""
    from charrnn.corpora import resolve_inputs
    from charrnn.data import preprocess as run_preprocess

    popts = opt.preprocess_options(ctx, inputs, mirror)
    if not out.strip():  # (Path('') is the current folder)
        raise UserError("--out is empty: give the dataset folder to write")
    # A registry name becomes its files, as for train (the plan took its level and splits).
    folder = Path(out).expanduser()  # (`--out=~/d` reaches us unexpanded by the shell)
    dataset = run_preprocess(resolve_inputs(inputs, popts, mirror, final=True), folder, popts)
    splits = dataset.meta["splits"]
    typer.echo(f"{dataset.root}: {dataset.tokenizer.level} vocab {dataset.tokenizer.vocab_size}, "
               + ", ".join(f"{k} {v['tokens']:,} tokens / {v['chars']:,} chars"
                           for k, v in splits.items()))


@opt.with_preprocess_options
def train(
    ctx: typer.Context,
    inputs: opt.Inputs = None,
    cell: opt.Cell = L.cell, layers: opt.Layers = L.layers,
    hidden: Annotated[int, typer.Option(help="Hidden units per layer.")] = L.hidden,
    emb: Annotated[int, typer.Option(help="Embedding size (0: same as --hidden).")] = L.emb,
    dropout: opt.Dropout = L.dropout,
    tie_weights: Annotated[bool, typer.Option("--tie-weights/--no-tie-weights", help="Share input embedding and output matrix.")] = L.tie_weights,
    weight_drop: Annotated[float, typer.Option(help="DropConnect on the recurrent (hidden-to-hidden) matrices, as AWD-LSTM.")] = L.weight_drop,
    locked_dropout: Annotated[bool, typer.Option("--locked-dropout/--no-locked-dropout", help="One --dropout mask per window, shared by all time steps (variational).")] = L.locked_dropout,
    embed_drop: Annotated[float, typer.Option(help="Drop whole embedding rows (token types) per window.")] = L.embed_drop,
    seq_len: Annotated[int, typer.Option(help="Truncated-BPTT length (--task fill: the window).")] = L.seq_len,
    batch_size: opt.BatchSize = L.batch_size,
    optim: opt.Optim = L.optim, lr: opt.Lr = L.lr, momentum: opt.Momentum = L.momentum,
    weight_decay: opt.WeightDecay = L.weight_decay, grad_clip: opt.GradClip = L.grad_clip,
    warmup: opt.Warmup = L.warmup, min_lr_ratio: opt.MinLrRatio = L.min_lr_ratio,
    max_steps: opt.MaxSteps = L.max_steps, max_time: opt.MaxTime = L.max_time,
    epochs: opt.Epochs = L.epochs,
    eval_every: Annotated[int, typer.Option(help="Evaluate on val every N steps.")] = L.eval_every,
    eval_seconds: opt.EvalSeconds = L.eval_seconds,
    eval_tokens: Annotated[Optional[int], typer.Option(help="Evaluate on at most N val tokens.")] = L.eval_tokens,
    save_every: opt.SaveEvery = L.save_every, patience: opt.Patience = L.patience,
    log_every: opt.LogEvery = L.log_every, seed: opt.Seed = L.seed, device: opt.Device = L.device,
    precision: opt.Precision = L.precision, threads: opt.Threads = L.threads,
    softmax: Annotated[opt.SoftmaxChoice, typer.Option(help="Output layer: full, adaptive (Grave et al. 2017: the vocabulary in frequency clusters; exact probabilities, a fraction of the cost for word vocabularies) or auto (on a CPU from 2,000 tokens, adaptive where a timed step finds it clearly faster).")] = L.softmax,
    cutoffs: Annotated[Optional[str], typer.Option(help="Adaptive softmax cluster bounds in frequency ranks, e.g. 2000,6000 (default: where the head covers 87% and the first tail 97% of the training tokens).")] = None,
    direction: Annotated[opt.DirectionChoice, typer.Option(help="forward, or backward (a right-to-left LM, used by fill).")] = L.direction,
    task: Annotated[opt.TaskChoice, typer.Option(help="lm (a language model), or fill (a masked bidirectional model for `charrnn fill`).")] = "lm",
    run_name: opt.RunName = None,
    resume: Annotated[Optional[str], typer.Option(help="Continue RUN (a language model or fill model) exactly from its last/.")] = None,
    init_from: Annotated[Optional[str], typer.Option(help="Fine-tune: a new run whose model, weights and tokenizer start from RUN (or RUN/best, RUN/last); a fresh optimizer, schedule and peak lr, as a new run's.")] = None,
    unk: Annotated[FineTuneUnk, typer.Option("--unk", help="--init-from: characters the model never saw are added to its vocabulary (add), dropped (skip) or refused (error); unknown words become <unk> (add) unless --grow-vocab.")] = "add",
    grow_vocab: Annotated[int, typer.Option(help="--init-from, word level: add the N most frequent new words to the vocabulary.")] = 0,
    plain: opt.Plain = False, out: opt.Out = None, mirror: opt.Mirror = None,
) -> None:
    """Train an RNN language model (raw text is preprocessed and cached automatically)."""
    request = opt.request(ctx, cutoffs=opt.int_list(cutoffs, "--cutoffs", "2000,6000"))
    from charrnn.plan.train import run, run_fill

    new_fill = opt.plain(task) == "fill" and resume is None  # (a resumed run keeps its task)
    exit_after((run_fill if new_fill else run)(request, training_reporter(plain)))


def _with_rules(doc: str) -> str:
    """train's help: the defaults shown are the dataclasses'; the situations' recipes and where
    each option applies come from the plan's one table."""
    from charrnn.plan.rules import help_text

    return f"{doc}\n\n{help_text(set(inspect.signature(train).parameters))}"


train.__doc__ = _with_rules(train.__doc__ or "")


def training_reporter(plain: bool):
    """Plain lines when piped (or asked); in a terminal, the live view with loss curves."""
    import sys

    from charrnn.training.reporters import PlainReporter

    if plain or not sys.stdout.isatty():
        return PlainReporter()
    from charrnn.tui.train_view import LiveTrainReporter

    return LiveTrainReporter()
