"""`charrnn preprocess` and `charrnn train` (a language model, or with --task fill the masked model).

Every option's default is its config field's default (lm.config.TrainConfig, fill.config.
FillTrainConfig, data.PreprocessOptions); the configs are built by keyword from what was parsed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn.cli import options as opt
from charrnn.cli.errors import exit_after
from charrnn.errors import UserError

L, P = opt.L, opt.P
# What `train` takes besides the configs' fields (and the preprocess options).
RUN_OPTIONS = {"inputs", "task", "run_name", "resume", "plain", "out", "mirror"}
FINETUNE_OPTIONS = ("unk", "grow_vocab")  # only with --init-from
FineTuneUnk = opt.choices("FineTuneUnk", ("add", "skip", "error"))


@opt.with_preprocess_options
def preprocess(
    ctx: typer.Context,
    inputs: Annotated[list[str], typer.Argument(help="Text files, directories or globs.")],
    out: Annotated[str, typer.Option("--out", help="Dataset folder to write.")],
) -> None:
    """Tokenize a corpus into train/val/test id files (numpy memmap) plus meta.json."""
    from charrnn.data import preprocess as run_preprocess

    popts = opt.preprocess_options(ctx.params, opt.typed_params(ctx))
    dataset = run_preprocess(inputs, Path(out), popts)
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
    precision: opt.Precision = L.precision,
    softmax: Annotated[opt.SoftmaxChoice, typer.Option(help="Output layer: full, adaptive (Grave et al. 2017: the vocabulary in frequency clusters; exact probabilities, a fraction of the cost for word vocabularies) or auto (adaptive from 5,000 tokens on a CPU).")] = L.softmax,
    cutoffs: Annotated[Optional[str], typer.Option(help="Adaptive softmax cluster bounds in frequency ranks, e.g. 2000,6000 (default: where the head covers 87% and the first tail 97% of the training tokens).")] = None,
    direction: Annotated[opt.DirectionChoice, typer.Option(help="forward, or backward (a right-to-left LM, used by fill).")] = L.direction,
    task: Annotated[opt.TaskChoice, typer.Option(help="lm (a language model), or fill (a masked bidirectional model for `charrnn fill`).")] = "lm",
    run_name: opt.RunName = None,
    resume: Annotated[Optional[str], typer.Option(help="Continue RUN exactly from its last/.")] = None,
    init_from: Annotated[Optional[str], typer.Option(help="Fine-tune: a new run whose model, weights and tokenizer start from RUN (or RUN/best, RUN/last); a fresh optimizer, schedule and peak lr, as a new run's.")] = None,
    unk: Annotated[FineTuneUnk, typer.Option("--unk", help="--init-from: characters the model never saw are added to its vocabulary (add), dropped (skip) or refused (error); unknown words become <unk> (add) unless --grow-vocab.")] = "add",
    grow_vocab: Annotated[int, typer.Option(help="--init-from, word level: add the N most frequent new words to the vocabulary.")] = 0,
    plain: opt.Plain = False, out: opt.Out = None, mirror: opt.Mirror = None,
) -> None:
    """Train an RNN language model (raw text is preprocessed and cached automatically)."""
    params, typed = ctx.params, opt.typed_params(ctx)
    popts = opt.preprocess_options(params, typed)
    if opt.plain(task) == "fill":
        exit_after(_train_fill(params, typed, popts))
        return
    from charrnn.lm.config import TrainConfig
    from charrnn.lm.job import BUDGET_FIELDS, train_job

    cfg = opt.config_from(TrainConfig, {**params, "cutoffs": opt.int_list(cutoffs, "--cutoffs", "2000,6000")})
    overrides = {k: opt.plain(params[k]) for k in BUDGET_FIELDS}
    overrides["device"] = None if device == "auto" else device
    if resume is not None:  # so that --resume can refuse a change it would otherwise ignore
        overrides["typed"] = {k: getattr(cfg, k) for k in typed if hasattr(cfg, k)}
        _refuse_on_resume(typed, bool(inputs))
    elif init_from is None:
        opt.refuse_inapplicable(typed & set(FINETUNE_OPTIONS), TrainConfig, set(), "a run without --init-from")
    exit_after(train_job(list(inputs or []), popts, cfg, opt.root(out), run_name, resume,
                         overrides, mirror, reporter=training_reporter(plain), typed=typed,
                         init_from=init_from, unknown=opt.plain(unk), grow_vocab=grow_vocab))


def _refuse_on_resume(typed: frozenset[str], corpus: bool) -> None:
    """What a resumed run cannot take: a tokenizer choice of --init-from (it has its tokenizer),
    or preprocess options without the corpus they would read (with it, the dataset must be the
    run's own: data checks that)."""
    finetune = sorted(typed & set(FINETUNE_OPTIONS))
    if finetune:
        names = ", ".join(f"--{k.replace('_', '-')}" for k in finetune)
        raise UserError(f"{names}: a resumed run keeps the tokenizer it started with; drop "
                        f"{'it' if len(finetune) == 1 else 'them'}")
    reading = sorted(typed & (opt.PREPROCESS_FIELDS | {"mirror"}))
    if reading and not corpus:
        names = ", ".join(f"--{k.replace('_', '-')}" for k in reading)
        raise UserError(f"{names}: a resumed run reads its own dataset, so without a corpus these "
                        "say nothing; drop them (or give the run's corpus with the options it "
                        "was made with)")


def _with_word_recipe(doc: str) -> str:
    """train's help: the defaults shown are char level's, and word level's differ (one source)."""
    from charrnn.lm.config import WORD_RECIPE

    said = ", ".join(f"--{k.replace('_', '-')} {v}" if not isinstance(v, bool) else
                     f"--{'' if v else 'no-'}{k.replace('_', '-')}" for k, v in WORD_RECIPE.items())
    return (f"{doc}\n\nThe defaults shown are char level's. At word level an option not typed "
            f"takes the word recipe: {said}.")


train.__doc__ = _with_word_recipe(train.__doc__ or "")


def _train_fill(params: dict, typed: frozenset[str], popts) -> dict:
    from charrnn.fill.config import FillTrainConfig
    from charrnn.fill.train import train_fill_job

    if params["resume"] is not None:
        raise UserError("--resume continues language models only; train the fill model again "
                        "(it keeps its best checkpoint by validation loss)")
    opt.refuse_inapplicable(typed, FillTrainConfig, RUN_OPTIONS | opt.PREPROCESS_FIELDS,
                            "--task fill (the masked bidirectional model)")
    cfg = opt.config_from(FillTrainConfig, params)
    return train_fill_job(list(params["inputs"] or []), popts, cfg, opt.root(params["out"]),
                          params["run_name"], params["mirror"], training_reporter(True))


def training_reporter(plain: bool):
    """Plain lines when piped (or asked); in a terminal, the live view with loss curves."""
    import sys

    from charrnn.training.reporters import PlainReporter

    if plain or not sys.stdout.isatty():
        return PlainReporter()
    from charrnn.tui.train_view import LiveTrainReporter

    return LiveTrainReporter()
