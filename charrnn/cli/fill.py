"""`charrnn fill TEXT`, `fill -i` and `fill eval`: fill in the blank with the trained models.

    charrnn fill "TEXT" [--model RUN ...] [--top-k 5] [--json]     (default command of `fill`)
    charrnn fill -i [--model RUN ...]                                (interactive)
    charrnn fill eval FILE --blanks N [--model RUN ...]              (top-1 / top-5 accuracy)

Defaults come from fill.config (FillOptions, SearchOptions).
"""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from charrnn.cli import options as opt
from charrnn.cli.errors import command
from charrnn.errors import UserError
from charrnn.fill.config import FillOptions, SearchOptions
from charrnn.fill.families import METHODS, skip_reads_nothing


class _FillGroup(TyperGroup):
    """`charrnn fill TEXT …` runs the `text` command; `charrnn fill eval …` the evaluation."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["text", *args]
        return super().parse_args(ctx, args)


fill_app = typer.Typer(
    cls=_FillGroup, no_args_is_help=True,
    help='Fill in the blanks: charrnn fill "I want to ___ a new phone" · charrnn fill -i · '
         "charrnn fill eval FILE --blanks N · charrnn fill train CORPUS... Blanks: ___ any length, {N} or ___{N} N tokens, "
         "{M,N} between M and N, {M,} at least M; \\_ is a literal underscore.")

F, S = FillOptions, SearchOptions
Models = Annotated[Optional[list[str]], typer.Option("--model", "-m", help="A forward LM, backward LM (--direction backward), fill model (--task fill) or n-gram run; repeat it. Default: the newest LM run and the newest runs of the other kinds on the same corpus.")]
MaxLen = Annotated[Optional[int], typer.Option(help="Longest fill of an unknown-length blank, in tokens (default: char 10, subword 4, word 3).")]
TopK = Annotated[int, typer.Option(help="Fills to show.")]
Beam = Annotated[int, typer.Option(help="Beam width of each proposal search (one-token blanks on a small vocabulary try every token instead).")]
Candidates = Annotated[int, typer.Option(help="Candidates rescored per blank, from each proposing model.")]
MaskWeight = Annotated[float, typer.Option(help="Weight of the fill model (--task fill) in the rescoring, next to 1 per LM; 0: it only proposes candidates (best for a briefly trained fill model).")]
UnitChoice = opt.choices("UnitChoice", ("word", "char"))
MethodChoice = opt.choices("MethodChoice", METHODS)
Method = Annotated[Optional[list[MethodChoice]], typer.Option("--method", help="left, forward, bidirectional or ngram; repeat it (default: every method the models allow except left, the left-context-only baseline: ask for it with --method left).")]


def _fill_options(top_k: int, max_len: int | None, unk, beam: int, candidates: int,
                  mask_weight: float) -> FillOptions:
    search = SearchOptions(beam=beam, candidates=candidates, mask_weight=mask_weight)
    opts = FillOptions(top_k, max_len, opt.plain(unk), search=search)
    opts.validate()
    return opts


def _refuse_unused(interactive: bool, json_out: bool, methods: list[str], mix, mix_weight) -> None:
    """Options the asked-for fill would not read: an error, as everywhere."""
    if interactive and json_out:
        raise UserError("--json prints the fills of one TEXT; the prompt (-i) shows them as you "
                        "type: drop one of the two")
    if interactive and len(methods) > 1:
        raise UserError("the prompt (-i) shows one method (the n-gram's fills beside it): give "
                        "one --method, and switch at the prompt with :method NAME")
    if not interactive and (mix is not None or mix_weight is not None) and methods and \
            set(methods) == {"ngram"}:  # (at the prompt, :method forward brings the mix in)
        raise UserError("--mix mixes the n-gram into the forward LM's scores, and --method ngram "
                        "reads no LM: drop --mix, or ask for forward or bidirectional")


def _refuse_max_len(max_len: int | None, text: str | None) -> None:
    """--max-len bounds blanks of unknown length: where every blank has its own, unread."""
    from charrnn.fill.syntax import parse

    if max_len is None or text is None:
        return
    blanks = parse(text).blanks
    if all(b.max_len is not None for b in blanks):
        raise UserError("--max-len bounds blanks of unknown length (___), and every blank here "
                        "has its length ({N} or {M,N}): drop --max-len")
    short = next((b for b in blanks if b.max_len is None and b.min_len > max_len), None)
    if short is not None:  # its bound would be its least length: --max-len would do nothing
        raise UserError(f"--max-len {max_len} is below the {short.min_len} tokens the blank at "
                        f"character {short.start} holds at least: raise --max-len, or drop it")


def _refuse_mask_weight(typed: frozenset[str], families: dict, methods: list[str]) -> None:
    """--mask-weight weighs the fill model against the LMs in the bidirectional method: typed
    (its default 0 too) where there is no such weighing, it would change nothing."""
    if "mask_weight" not in typed:
        return
    rnn = families.get("rnn")
    if rnn is None or rnn.mask is None:
        raise UserError("--mask-weight weighs the fill model (charrnn train --task fill), and none "
                        "is loaded: add -m FILL_RUN, or drop --mask-weight")
    if "bidirectional" not in methods:
        raise UserError("--mask-weight weighs the fill model in the bidirectional method, which "
                        "is not asked for: add --method bidirectional, or drop --mask-weight")
    if rnn.fwd is None and rnn.bwd is None:
        raise UserError("--mask-weight weighs the fill model against the language models, and "
                        "none is loaded beside it: add -m LM_RUN, or drop --mask-weight")


def _refuse_idle_device(device: str, families: dict, methods: list[str]) -> None:
    """Only an n-gram fills (it runs on the CPU, in float64): a typed --device moves nothing.
    (At the prompt it stays: :model may load an LM later.)"""
    if device != "auto" and ("rnn" not in families or set(methods) == {"ngram"}):
        raise UserError(f"--device {device} places the RNNs, and only an n-gram fills here (on "
                        "the CPU): drop --device, or add an LM with -m and a method that reads it")


def _refuse_idle_search(typed: frozenset[str], templates: list, families: dict,
                        methods: list[str], opts: FillOptions) -> None:
    """--beam / --candidates where no blank searches: each is one token, every one tried."""
    from charrnn.fill.engine import idle_search

    idle = [f"--{name}" for name in idle_search(templates, families, methods, opts)
            if name in typed]
    if idle:
        raise UserError(f"{' and '.join(idle)} size{'s' if len(idle) == 1 else ''} the search for "
                        "fills, and every blank here is one token on a vocabulary small enough to "
                        f"try whole: drop {'it' if len(idle) == 1 else 'them'}")


def _methods(asked: list | None, families) -> list[str]:
    from charrnn.fill.families import available_methods, method_family

    methods = opt.plain(list(asked or [])) or available_methods(families)
    for m in methods:
        method_family(families, m)
    if not methods:
        raise UserError("these models allow no fill method: give a forward or backward LM, a fill "
                        "model or an n-gram run")
    return methods


def _say_if_unfinished(root, specs: list[str]) -> None:
    """A note on stderr when the fill group that answers (the newest without -m, or the one -m
    names) was stopped half-way or lost a run since: its other models answer, and the user may
    not know the rest are missing."""
    from charrnn import runs
    from charrnn.fill import group

    if not specs:
        folder = group.newest(root)
        for passed in group.untrained_since(root, folder):
            instead = f"fill group {folder.name} answers" if folder else "the newest runs answer"
            typer.echo(f"note: fill group {passed.name}, newer, has no trained model yet (if it "
                       "is not training now, `charrnn fill train --resume "
                       f"{passed.name}{runs.out_suffix(passed)}` trains it): {instead}", err=True)
    elif len(specs) == 1 and group.is_named(specs[0], root):
        folder = group.resolve(specs[0], root)
    else:  # runs given one by one: no group to speak of
        return
    if folder is None:
        return
    info = group.read(folder)
    left = group.left_to_do(folder, info)  # (the mixture weights too: without, LMs unmixed)
    if left:
        typer.echo(f"note: fill group {folder.name} is not finished ({', '.join(left)} still to "
                   "train): its other models answer; if it is not training now, `charrnn fill "
                   f"train --resume {folder.name}{runs.out_suffix(folder)}` trains the rest", err=True)
    gone = group.missing(folder, info)
    if gone:
        typer.echo(f"note: fill group {folder.name} lost {', '.join(gone)} (the run folder is "
                   "gone): its other models answer", err=True)


@command(fill_app, "text")
def fill_command(
    ctx: typer.Context,
    text: Annotated[Optional[str], typer.Argument(help="Text with blanks, e.g. 'I want to ___ a new phone'.")] = None,
    interactive: Annotated[bool, typer.Option("--interactive", "-i", help="A prompt: type sentences, see the fills (Ctrl-D or :q to leave).")] = False,
    model: Models = None, top_k: TopK = F.top_k, method: Method = None,
    max_len: MaxLen = F.max_len, beam: Beam = S.beam, candidates: Candidates = S.candidates,
    mask_weight: MaskWeight = S.mask_weight, json_out: opt.Json = False,
    unk: Annotated[Optional[opt.UnkChoice], typer.Option("--unk", show_default=False, help="Characters a char model does not know: error (the default) or skip.")] = None,
    mix: Annotated[Optional[str], typer.Option("--mix", help="Rescore the forward LM's candidates with its per-token mixture with this n-gram run (same dataset).")] = None,
    mix_weight: opt.MixWeight = None,
    device: opt.Device = "auto", out: opt.Out = None,
) -> None:
    """Fill the blanks of TEXT with every method the models allow but the left-only baseline (top-k, normalised probabilities)."""
    from charrnn.fill.engine import fill_text
    from charrnn.fill.families import load_families

    if (text is None) == (not interactive):
        raise UserError("give a TEXT with blanks, or -i for the interactive prompt (not both)")
    _refuse_unused(interactive, json_out, opt.plain(list(method or [])), mix, mix_weight)
    opt.refuse_undecoded(text, "TEXT")
    _refuse_max_len(max_len, text)
    opts = _fill_options(top_k, max_len, unk, beam, candidates, mask_weight)
    root = opt.root(out)
    families = load_families(list(model or []), root, device, mix, mix_weight, say=opt.note)
    if skip_reads_nothing(families):
        from charrnn.tokenizers import refuse_idle_unk

        refuse_idle_unk(next(iter(families.values())).tokenizer.level, opt.plain(unk))
    _say_if_unfinished(root, list(model or []))
    if interactive:
        from charrnn.tui.fill_repl import Repl

        asked = opt.plain(method[0]) if method else None
        Repl(families, lambda specs: load_families(specs, root, device, mix, mix_weight,
                                                   say=opt.note),
             list(model or []), opts,
             asked).run()
        return
    methods = _methods(method, families)
    _refuse_idle_device(device, families, methods)
    _refuse_mask_weight(opt.typed_params(ctx), families, methods)
    from charrnn.fill.syntax import parse

    template = parse(text)
    _refuse_idle_search(opt.typed_params(ctx), [template], families, methods, opts)
    result = fill_text(text, families, methods, opts)
    result["models"] = next(iter(families.values())).names
    if json_out:
        typer.echo(json.dumps(result, indent=1, ensure_ascii=False))
    else:
        _print_fills(result, template, mix is not None)


def _print_fills(result: dict, template, mixed_in: bool) -> None:
    """Each method's ranked fills, with the filled sentence."""
    from rich.console import Console

    from charrnn.fill.engine import shown_prob
    from charrnn.tui.fill_repl import render

    console = Console(highlight=False, soft_wrap=True)
    mixed = result["models"].get("fwd", "") if mixed_in else ""
    for name, fills in result["methods"].items():
        label = f"{name} ({mixed})" if mixed and name in ("forward", "bidirectional") else name
        console.print(f"{label}:" if fills else f"{label}: no fill found")
        for rank, fill in enumerate(fills, 1):
            line = render(template, fill["fills"])
            console.print(f"  {rank}. {shown_prob(fill['prob'])}  {' | '.join(fill['fills'])}  →  ",
                          end="")
            console.print(line)


@command(fill_app, "train")
def fill_train_command(
    inputs: Annotated[Optional[list[str]], typer.Argument(help="Corpus: text files, folders, globs or registry names (e.g. zh-reviews); several are one corpus.")] = None,
    max_time: Annotated[Optional[float], typer.Option(help="Seconds for everything together (default 1200; a resumed group keeps its own).")] = None,
    run_name: Annotated[Optional[str], typer.Option(help="Name of the group (its runs are NAME-ngram, NAME-fwd, NAME-bwd, NAME-mask; default: a timestamp).", callback=opt.plain_run_name)] = None,
    resume: Annotated[Optional[str], typer.Option(help="Continue the fill group GROUP where it stopped.")] = None,
    plain: opt.Plain = False, device: opt.Device = "auto", out: opt.Out = None,
    mirror: opt.Mirror = None,
) -> None:
    """Train every model `charrnn fill` uses (an n-gram both ways, forward and backward LMs, the fill model) within one time budget; `charrnn fill` then finds them without -m."""
    import sys

    from charrnn import runs
    from charrnn.cli.errors import exit_after
    from charrnn.devices import resolve_device
    from charrnn.fill import group, train_group
    from charrnn.plan.fill import group_lm

    root = opt.root(out)
    resolve_device(device)  # a device that cannot be had is said before the group is made
    if resume is not None:
        for given, option in ((inputs or None, "a corpus"), (max_time, "--max-time"),
                              (run_name, "--run-name"), (mirror, "--mirror")):
            if given is not None:  # (--max-time 0 and --run-name '' were typed too)
                raise UserError(f"--resume {resume}: a resumed group keeps its own text, budget "
                                f"and name; drop {option}")
        folder = group.resolve(resume, root)
    else:
        budget = train_group.MAX_TIME if max_time is None else max_time
        from charrnn.plan.preprocess import refuse_idle_mirror

        if inputs:  # (none: the library says to give the corpus)
            refuse_idle_mirror(list(inputs), mirror)
        folder = train_group.start(list(inputs or []), budget, root, run_name, mirror)
    say = typer.echo
    live = not plain and sys.stdout.isatty()
    result = train_group.run(folder, _stage_reporters(folder.name, live, say), say, device,
                             group_lm)
    if result["outcome"] == "interrupted":
        say(f"stopped; left: {', '.join(result['left'])}. Continue with "
            f"`charrnn fill train --resume {folder.name}{runs.out_suffix(folder)}`")
    else:
        weights = ", ".join(f"{k} λ {v}" for k, v in result["mix"].items())
        skipped = f"; skipped: {', '.join(result['skipped'])}" if result["skipped"] else ""
        say(f"fill group {folder} ready in {result['spent_s']:.0f} s"
            + (f" (mixtures with the n-gram: {weights})" if weights else "") + skipped
            + f". {_how_fill_uses(folder, root, out)}")
    exit_after(result)


def _how_fill_uses(folder, root, out: str | None) -> str:
    """How `charrnn fill` takes this group: without -m only while it is the newest."""
    from charrnn.fill import group

    where = f" --out {out}" if out else ""
    newest = group.newest(root)
    if newest is not None and newest.resolve() == folder.resolve():
        return f"`charrnn fill TEXT{where}` uses it"
    return f"`charrnn fill TEXT -m {folder.name}{where}` uses it (without -m: the newest group)"


def _budget_words(stage: dict) -> str:
    """', 480 s', or for an LM that continues ', continued: 312 s of 480 s left'."""
    budget_s = stage.get("budget_s")
    if not budget_s:
        return ""
    if not stage.get("continued"):
        return f", {budget_s:.0f} s"
    from charrnn.fill.group import ROUNDED_S, own_left

    own_s = own_left(stage)
    left_s = stage.get("left_s", own_s)
    if left_s < own_s - ROUNDED_S:  # the group has less time left than its own schedule
        return (f", continued: {left_s:.0f} s (what the group's budget has left for it; its own "
                f"schedule had {own_s:.0f} s of {budget_s:.0f} s)")
    return f", continued: {left_s:.0f} s of {budget_s:.0f} s left"


def _stage_reporters(name: str, live: bool, say):
    """(group record, stage) → the reporter of that stage's training, after a line naming it."""
    from charrnn.fill.group import ROLES
    from charrnn.training.reporters import PlainReporter

    def reporter(info: dict, stage: dict):
        number = info["stages"].index(stage) + 1
        say(f"[{number}/{len(info['stages'])}] {ROLES[stage['role']]}: run {stage['run']}"
            f"{_budget_words(stage)}")
        if not live:
            return PlainReporter()
        from charrnn.tui.fill_train_view import FillTrainView

        return FillTrainView(name, info)

    return reporter


@command(fill_app, "eval")
def fill_eval_command(
    ctx: typer.Context,
    file: Annotated[str, typer.Argument(help="Held-out text to cut blanks from.")],
    blanks: Annotated[int, typer.Option(help="How many blanks (each a separate case).")] = 200,
    unit: Annotated[UnitChoice, typer.Option(help="word (unknown-length blanks) or char (one-token blanks).")] = "word",
    segmented: Annotated[bool, typer.Option("--segmented", help="FILE has words separated by spaces (e.g. zh_seg_test.txt): they are the units; the models read the text without the spaces.")] = False,
    lexicon: Annotated[Optional[str], typer.Option(help="Unsegmented Chinese FILE: cut it into words by longest match against the words of this space-segmented text (e.g. zh_seg_train.txt).")] = None,
    context: Annotated[int, typer.Option(help="Characters of context on each side.")] = 100,
    seed: Annotated[int, typer.Option(help="Which blanks are picked.")] = 0,
    model: Models = None, method: Method = None, max_len: MaxLen = F.max_len, beam: Beam = S.beam,
    candidates: Candidates = S.candidates, mask_weight: MaskWeight = S.mask_weight,
    json_out: opt.Json = False,
    quiet: opt.Quiet = False,
    device: opt.Device = "auto", out: opt.Out = None,
) -> None:
    """Hide random words or characters of FILE; top-1 / top-5 accuracy of every method."""
    from charrnn.fill.evaluate import cases_of, check_options, fill_eval
    from charrnn.fill.families import load_families

    unit = opt.plain(unit)
    check_options(blanks, unit, context)
    if lexicon is not None and (segmented or unit != "word"):
        raise UserError("--lexicon cuts an unsegmented FILE into words: it applies with --unit "
                        "word and without --segmented")
    if max_len is not None and unit == "char":
        raise UserError("--max-len bounds word blanks of unknown length, and --unit char hides "
                        "one character each: drop --max-len")
    opts = _fill_options(5, max_len, "skip", beam, candidates, mask_weight)
    cases = cases_of(file, blanks, unit, segmented, context, seed, lexicon)
    if len(cases) < blanks and not quiet:
        typer.echo(f"note: {file} holds {len(cases)} {unit}s to hide, fewer than --blanks "
                   f"{blanks}: each of them is a blank", err=True)
    families = load_families(list(model or []), opt.root(out), device)
    methods = _methods(method, families)
    _refuse_idle_device(device, families, methods)
    _refuse_mask_weight(opt.typed_params(ctx), families, methods)
    _refuse_idle_search(opt.typed_params(ctx), [t for t, _ in cases], families, methods, opts)
    done: dict = {}
    try:
        result = fill_eval(file, blanks, families, methods, opts, unit, segmented,
                           context, seed, quiet, lexicon, cases, done)
    except KeyboardInterrupt:  # the methods scored before the stop are shown, not lost
        if done and not json_out:
            typer.echo(f"{file}: {len(cases)} {unit} blanks, stopped; scored before the stop:")
            _print_scores(done)
        raise
    if json_out:
        typer.echo(json.dumps(result, indent=1, ensure_ascii=False))
        return
    typer.echo(f"{file}: {result['blanks']} {unit} blanks, {context} characters of context")
    _print_scores(result["methods"])


def _print_scores(methods: dict) -> None:
    for name, r in methods.items():
        typer.echo(f"  {name:14} top-1 {r['top1']:.3f}  top-5 {r['top5']:.3f}  ({r['seconds']:.0f}s)")
