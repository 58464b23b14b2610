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
    json_out: opt.Json = False, unk: opt.Unk = None, device: opt.Device = "auto",
    precision: Annotated[opt.PrecisionChoice, typer.Option(help="What scoring computes in: fp32 (the default: figures that compare), bf16 (faster on CPUs that multiply it natively) or auto (fp32 on a CPU, float16 on CUDA).")] = "fp32",
    mix: opt.Mix = None, mix_weight: opt.MixWeight = None,
    errors: opt.TextErrors = None, out: opt.Out = None,
) -> None:
    """Score a model: nats/token, perplexity and bits per character of the original text."""
    from charrnn.evaluation.lm import evaluate_run
    from charrnn.evaluation.scores import describe

    root = opt.root(out)
    run, file = opt.run_and_file(list(targets or []), root, "eval")
    if file is not None and split is not None:
        raise UserError("give a FILE or --split, not both")
    opt.refuse_text_options(file is not None, unk, errors)
    result = evaluate_run(run, root, file, opt.plain(split), device, opt.plain(unk),
                          opt.plain(errors) or "strict", opt.plain(precision), mix, mix_weight,
                          say=opt.note)
    typer.echo(json.dumps(result, indent=1) if json_out else describe(result))


def score_command(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="A language model or n-gram run (name, folder or checkpoint).")],
    file: Annotated[Optional[str], typer.Argument(help="Lines to score (default or '-': stdin).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="JSON lines: one object a line, then the totals.")] = False,
    sort: Annotated[bool, typer.Option("--sort", help="Best line first (rescoring an n-best list; holds the scores in memory).")] = False,
    unk: opt.Unk = None, device: opt.Device = "auto",
    precision: Annotated[opt.PrecisionChoice, typer.Option(help="fp32 (the default), bf16 or auto.")] = "fp32",
    mix: opt.Mix = None, mix_weight: opt.MixWeight = None,
    errors: opt.Errors = "strict", out: opt.Out = None,
) -> None:
    """Score each line: total log10 probability, tokens, OOVs, perplexity (as KenLM's query)."""
    from charrnn.evaluation.linescore import Totals, format_line, open_scorer, read_lines, score_lines

    typed = opt.typed_params(ctx)  # (an n-gram run refuses these typed even at their default)
    scorer = open_scorer(run, opt.root(out), device if "device" in typed else None, opt.plain(unk),
                         opt.plain(precision) if "precision" in typed else None, mix, mix_weight,
                         say=opt.note)
    totals = Totals()
    scores = (totals.add(s) for s in score_lines(scorer, totals.watch(read_lines(
        file, opt.plain(errors)))))
    if sort:
        scores = iter(sorted(scores, key=lambda s: -s.log10))
    for s in scores:
        typer.echo(json.dumps(s.to_json(), ensure_ascii=False) if json_out else format_line(s))
    if json_out:
        typer.echo(json.dumps({"total": totals.to_json()}))
    else:
        typer.echo(totals.describe(), err=True)
    caveat = totals.caveat(scorer)
    if caveat:
        opt.note(caveat)
