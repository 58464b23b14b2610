"""`charrnn eval`: a language model scored on a file or a split of its dataset."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer

from charrnn.cli import options as opt
from charrnn.errors import UserError

Targets = Annotated[Optional[list[str]], typer.Argument(
    help="[RUN] [FILE]: a run (default: newest) and/or a text file to score.")]


def eval_command(
    targets: Targets = None,
    split: Annotated[Optional[opt.SplitChoice], typer.Option(help="train, val or test split of the run's dataset.")] = None,
    json_out: opt.Json = False, unk: opt.Unk = "error", device: opt.Device = "auto",
    precision: Annotated[opt.PrecisionChoice, typer.Option(help="What scoring computes in: fp32 (the default: figures that compare), bf16 (faster on CPUs with AMX or AVX512-BF16) or auto.")] = "fp32",
    errors: opt.Errors = "strict", out: opt.Out = None,
) -> None:
    """Score a model: nats/token, perplexity and bits per character of the original text."""
    from charrnn.lm.evaluate import evaluate_run
    from charrnn.scores import describe

    root = opt.root(out)
    run, file = opt.run_and_file(list(targets or []), root, "eval")
    if file is not None and split is not None:
        raise UserError("give a FILE or --split, not both")
    result = evaluate_run(run, root, file, opt.plain(split), device, opt.plain(unk),
                          opt.plain(errors), opt.plain(precision))
    typer.echo(json.dumps(result, indent=1) if json_out else describe(result))
