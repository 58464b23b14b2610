"""`charrnn tag …` and `charrnn fill …`: the command layer over tagtrain/fill (mounted by cli.py).

Only typer at import time: torch and the models load inside the commands, so `charrnn --help`
stays fast.

    charrnn tag train DATA --format conll|segmented [--valid F] [--test F] [--features 1]
    charrnn tag eval RUN FILE [--json]
    charrnn tag predict RUN [FILE|-] [--sep " "] [--output conll|inline]
    charrnn fill "TEXT" [--model RUN ...] [--top-k 5] [--json]     (default command of `fill`)
    charrnn fill -i [--model RUN ...]                                (interactive)
    charrnn fill eval FILE --blanks N [--model RUN ...]              (top-1 / top-5 accuracy)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from typer.core import TyperGroup

from charrnn.cli.errors import command
from charrnn.cli.options import Errors
from charrnn.errors import UserError

tag_app = typer.Typer(no_args_is_help=True, help="Bidirectional RNN taggers: chunking, segmentation.")

Out = Annotated[Optional[str], typer.Option("--out", help="Runs root folder (default ./checkpoints or $CHARRNN_RUNS).")]
Device = Annotated[str, typer.Option(help="auto, cpu, cuda or mps.")]


def _root(out: str | None) -> Path:
    from charrnn.runs import runs_root

    return runs_root(out)


def _features(spec: str | None) -> list[int]:
    if not spec:
        return []
    try:
        columns = [int(x) for x in spec.split(",") if x.strip()]
    except ValueError as exc:
        raise UserError(f"--features must be column numbers separated by commas (e.g. 1), "
                        f"not {spec!r}") from exc
    if 0 in columns:
        raise UserError("--features 0: column 0 is the token itself, which the tagger reads "
                        "anyway; name the extra columns (0-based, e.g. 1 for the POS tag)")
    return columns


def _check_tag_train_sizes(bigram_emb: int, char_filters: int, min_count: int,
                           eval_every: int | None) -> None:
    """Sizes the model and loop would take without complaint, or fail on deep inside torch."""
    for name, value, least in (("--bigram-emb", bigram_emb, 0), ("--char-filters", char_filters, 0),
                               ("--min-count", min_count, 1)):
        if value < least:
            raise UserError(f"{name} must be ≥ {least}, got {value}")
    if eval_every is not None and eval_every < 1:
        raise UserError(f"--eval-every must be ≥ 1 step (leave it out to evaluate every epoch), "
                        f"got {eval_every}")


# ---- tag ---------------------------------------------------------------------------------------
@command(tag_app, "train")
def tag_train(
    data: Annotated[str, typer.Argument(help="Training file (CoNLL columns, or segmented lines).")],
    format: Annotated[str, typer.Option("--format", help="conll (token … label per line) or segmented (words separated by spaces; B/M/E/S tags).")] = "conll",
    label_column: Annotated[int, typer.Option(help="conll: the label column (0-based; -1 = last).")] = -1,
    features: Annotated[Optional[str], typer.Option(help="conll: extra input columns, e.g. 1 for POS in CoNLL-2000.")] = None,
    valid: Annotated[Optional[str], typer.Option(help="Validation file (default: --val-frac of DATA).")] = None,
    test: Annotated[Optional[str], typer.Option(help="Score the best checkpoint on this file at the end.")] = None,
    val_frac: Annotated[float, typer.Option(help="Sentences of DATA held out for validation.")] = 0.05,
    cell: Annotated[str, typer.Option(help="rnn, lstm or gru.")] = "lstm",
    layers: Annotated[int, typer.Option(help="Stacked bidirectional layers.")] = 1,
    hidden: Annotated[int, typer.Option(help="Hidden units per direction.")] = 128,
    emb: Annotated[int, typer.Option(help="Token embedding size.")] = 100,
    dropout: Annotated[float, typer.Option(help="Dropout on inputs and outputs of the RNN.")] = 0.2,
    bigram_emb: Annotated[int, typer.Option(help="segmented: character bigram embedding size (0: off).")] = 64,
    char_filters: Annotated[int, typer.Option(help="conll: char-CNN filters per word (0: no char encoder).")] = 64,
    min_count: Annotated[int, typer.Option(help="Tokens seen fewer times are <unk>.")] = 1,
    batch_size: Annotated[int, typer.Option(help="Sentences per step.")] = 64,
    lr: Annotated[float, typer.Option(help="AdamW peak learning rate.")] = 4e-3,
    epochs: Annotated[Optional[float], typer.Option(help="Passes over DATA (default 10 when no budget is given).")] = None,
    max_steps: Annotated[Optional[int], typer.Option(help="Stop after this many steps.")] = None,
    max_time: Annotated[Optional[float], typer.Option(help="Stop after this many seconds.")] = None,
    eval_every: Annotated[Optional[int], typer.Option(help="Evaluate every N steps (default: every epoch).")] = None,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 1337,
    device: Device = "auto",
    run_name: Annotated[Optional[str], typer.Option(help="Run folder name (default: a timestamp).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines on stderr.")] = False,
    out: Out = None,
) -> None:
    """Train a bidirectional RNN sequence labeller (best checkpoint kept by validation score)."""
    from charrnn.tag.train import TagTrainConfig, train_tagger

    _check_tag_train_sizes(bigram_emb, char_filters, min_count, eval_every)
    cfg = TagTrainConfig(format=format, label_column=label_column, features=_features(features),
                         cell=cell, layers=layers, hidden=hidden, emb=emb, dropout=dropout,
                         bigram_emb=bigram_emb, char_filters=char_filters, min_count=min_count,
                         batch_size=batch_size, lr=lr, epochs=epochs, max_steps=max_steps,
                         max_time=max_time, eval_every=eval_every, val_frac=val_frac, seed=seed,
                         device=device)
    log = (lambda _: None) if quiet else (lambda line: typer.echo(line, err=True))
    result = train_tagger(data, cfg, _root(out), run_name, valid, test, log)
    if json_out:
        typer.echo(json.dumps(result, indent=1))
        return
    typer.echo(f"{result['outcome']} at step {result['step']}; run folder {result['run']}")
    if "test" in result:
        typer.echo(_score_line(f"test {test}", result["test"]))


def _score_line(source: str, r: dict) -> str:
    line = f"{source}: {r['sentences']:,} sentences, {r['tokens']:,} tokens, accuracy {r['accuracy']:.4f}"
    if "f1" in r:
        what = "word" if r["score"] == "word" else "chunk"
        line += (f", {what} F1 {r['f1']:.4f} (precision {r['precision']:.4f}, "
                 f"recall {r['recall']:.4f})")
    return line


@command(tag_app, "eval")
def tag_eval(
    run: Annotated[str, typer.Argument(help="Tagger run name, run folder or checkpoint.")],
    file: Annotated[str, typer.Argument(help="Labelled file in the tagger's training format.")],
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    device: Device = "auto", out: Out = None,
) -> None:
    """Token accuracy and the standard score: conlleval chunk F1, or SIGHAN word P/R/F1."""
    from charrnn.tag.data import read_data
    from charrnn.tag.train import load_tagger

    bundle = load_tagger(run, _root(out), device)
    tag = bundle.meta["tag"]
    result = bundle.score(read_data(file, tag["format"], tag["label_column"], tag["features"]))
    result["file"] = file
    typer.echo(json.dumps(result, indent=1) if json_out else _score_line(file, result))


@command(tag_app, "predict")
def tag_predict(
    run: Annotated[str, typer.Argument(help="Tagger run name, run folder or checkpoint.")],
    file: Annotated[Optional[str], typer.Argument(help="Input text (default or '-': stdin).")] = None,
    input_format: Annotated[str, typer.Option("--input", help="raw (one sentence per line) or conll (columns; needed when the tagger uses --features).")] = "raw",
    output: Annotated[str, typer.Option(help="Word taggers: conll (token TAB tag) or inline (token/TAG).")] = "conll",
    sep: Annotated[str, typer.Option(help="Segmenters: the separator written between words.")] = " ",
    errors: Errors = "strict", device: Device = "auto", out: Out = None,
) -> None:
    """Tag raw text (stdin → stdout works): segmented lines, or tokens with their tags."""
    from charrnn.inputs import CONVERT_OR_REPLACE, read_stdin, read_text
    from charrnn.tag.data import Sentence, join_clusters, read_conll, words_from_tags
    from charrnn.tag.train import load_tagger

    if input_format not in ("raw", "conll"):
        raise UserError(f"--input must be raw or conll, not {input_format!r}")
    if output not in ("conll", "inline"):
        raise UserError(f"--output must be conll or inline, not {output!r}")
    if errors not in ("strict", "replace"):
        raise UserError(f"--errors must be 'strict' or 'replace', not {errors!r}")
    # This command has --errors, so invalid UTF-8 may suggest it.
    text = read_stdin(errors, can_replace=True) if file in (None, "-") \
        else read_text([file], errors, CONVERT_OR_REPLACE)
    bundle = load_tagger(run, _root(out), device)
    tag = bundle.meta["tag"]
    if bundle.encoder.level == "char":  # a segmenter: spaces already in the input stay boundaries
        lines = text.split("\n")
        if lines and lines[-1] == "":
            lines.pop()
        pieces = [line.split() for line in lines]
        sents = [Sentence([c for p in ps for c in p]) for ps in pieces]
        for ps, s, tags in zip(pieces, sents, bundle.predict(sents), strict=True):
            found = join_clusters(words_from_tags(s.tokens, tags))  # never cut inside a grapheme
            words = [w for chunk in _split_at(found, ps) for w in chunk]
            typer.echo(sep.join(words))
        return
    if tag["features"] and input_format != "conll":
        raise UserError(f"this tagger reads extra columns {tag['features']} (--features): give "
                        "CoNLL input with those columns and --input conll")
    if input_format == "conll":
        sents = read_conll(file or "<stdin>", -1, tag["features"], text=text, labelled=False)
        rows = [[line.split() for line in block.split("\n") if line.strip()]
                for block in _blocks(text)]
    else:
        sents = [Sentence(line.split()) for line in text.split("\n") if line.strip()]
        rows = [[[t] for t in s.tokens] for s in sents]
    for cols, s, tags in zip(rows, sents, bundle.predict(sents), strict=True):
        if output == "inline":
            typer.echo(" ".join(f"{t}/{lab}" for t, lab in zip(s.tokens, tags, strict=True)))
        else:
            typer.echo("\n".join("\t".join([*c, lab]) for c, lab in zip(cols, tags, strict=True)) + "\n")


def _blocks(text: str) -> list[str]:
    """CoNLL text → sentence blocks (as read_conll splits them)."""
    blocks, current = [], []
    for line in text.split("\n"):
        if line.split() and not line.startswith("-DOCSTART-"):
            current.append(line)
        elif current:
            blocks.append("\n".join(current))
            current = []
    if current:
        blocks.append("\n".join(current))
    return blocks


def _split_at(words: list[str], pieces: list[str]) -> list[list[str]]:
    """Cut predicted words wherever the input had a space (a word never spans a space)."""
    cuts, pos = set(), 0
    for p in pieces[:-1]:
        pos += len(p)
        cuts.add(pos)
    out, pos = [], 0
    for word in words:
        parts, start = [], 0
        for i in range(1, len(word)):
            if pos + i in cuts:
                parts.append(word[start:i])
                start = i
        parts.append(word[start:])
        out.append(parts)
        pos += len(word)
    return out


# ---- fill ----------------------------------------------------------------------------------------
class _FillGroup(TyperGroup):
    """`charrnn fill TEXT …` runs the `text` command; `charrnn fill eval …` the evaluation."""

    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["text", *args]
        return super().parse_args(ctx, args)


fill_app = typer.Typer(
    cls=_FillGroup, no_args_is_help=True,
    help='Fill in the blanks: charrnn fill "I want to ___ a new phone" · charrnn fill -i · '
         "charrnn fill eval FILE --blanks N. Blanks: ___ any length, {N} or ___{N} N tokens, "
         "{M,N} between M and N; \\_ is a literal underscore.")

Models = Annotated[Optional[list[str]], typer.Option("--model", "-m", help="A forward LM, backward LM (--direction backward), fill model (--task fill) or n-gram run; repeat it. Default: the newest LM run and the newest runs of the other kinds on the same corpus.")]
MaxLen = Annotated[Optional[int], typer.Option(help="Longest fill of an unknown-length blank, in tokens (default: char 10, subword 4, word 3).")]
Beam = Annotated[int, typer.Option(help="Beam width of each proposal search.")]
Candidates = Annotated[int, typer.Option(help="Candidates rescored per blank, from each proposing model.")]
MaskWeight = Annotated[float, typer.Option(help="Weight of the fill model (--task fill) in the rescoring, next to 1 per LM; 0: it only proposes candidates (best for a briefly trained fill model).")]
Method = Annotated[Optional[list[str]], typer.Option("--method", help="left, forward, bidirectional or ngram; repeat it (default: every method the models allow except left, the left-context-only baseline: ask for it with --method left).")]


def _fill_options(top_k: int, max_len: int | None, unk: str, beam: int, candidates: int,
                  mask_weight: float):
    from charrnn.fill.engine import FillOptions
    from charrnn.fill.search import SearchOptions

    if beam < 1 or candidates < 1:
        raise UserError("--beam and --candidates must be ≥ 1")
    if not 0 <= mask_weight <= 10:
        raise UserError(f"--mask-weight must be between 0 and 10, got {mask_weight}")
    search = SearchOptions(beam=beam, candidates=candidates, mask_weight=mask_weight)
    opts = FillOptions(top_k, max_len, unk, search=search)
    opts.validate()
    return opts


def _methods(asked: list[str] | None, families) -> list[str]:
    from charrnn.fill.engine import available_methods, method_family

    methods = list(asked or available_methods(families))
    for m in methods:
        method_family(families, m)
    if not methods:
        raise UserError("these models allow no fill method: give a forward or backward LM, a fill "
                        "model or an n-gram run")
    return methods


@command(fill_app, "text")
def fill_command(
    text: Annotated[Optional[str], typer.Argument(help="Text with blanks, e.g. 'I want to ___ a new phone'.")] = None,
    interactive: Annotated[bool, typer.Option("--interactive", "-i", help="A prompt: type sentences, see the fills (Ctrl-D or :q to leave).")] = False,
    model: Models = None, top_k: Annotated[int, typer.Option(help="Fills to show.")] = 5,
    method: Method = None, max_len: MaxLen = None, beam: Beam = 16, candidates: Candidates = 48,
    mask_weight: MaskWeight = 0.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    unk: Annotated[str, typer.Option("--unk", help="Characters a char model does not know: error or skip.")] = "error",
    device: Device = "auto", out: Out = None,
) -> None:
    """Fill the blanks of TEXT with every method the models allow but the left-only baseline (top-k, normalised probabilities)."""
    from charrnn.fill.engine import fill_text, load_families

    if (text is None) == (not interactive):
        raise UserError("give a TEXT with blanks, or -i for the interactive prompt (not both)")
    opts = _fill_options(top_k, max_len, unk, beam, candidates, mask_weight)
    root = _root(out)
    families = load_families(list(model or []), root, device)
    if interactive:
        from charrnn.tui.fill_repl import Repl

        asked = method[0] if method else None
        Repl(families, lambda specs: load_families(specs, root, device), list(model or []), opts,
             asked).run()
        return
    methods = _methods(method, families)
    result = fill_text(text, families, methods, opts)
    result["models"] = next(iter(families.values())).names
    if json_out:
        typer.echo(json.dumps(result, indent=1, ensure_ascii=False))
        return
    from rich.console import Console

    from charrnn.fill.engine import parse
    from charrnn.tui.fill_repl import render

    console = Console(highlight=False, soft_wrap=True)
    template = parse(text)
    for name, fills in result["methods"].items():
        console.print(f"{name}:" if fills else f"{name}: no fill found")
        for rank, fill in enumerate(fills, 1):
            line = render(template, fill["fills"])
            console.print(f"  {rank}. {fill['prob']:6.1%}  {' | '.join(fill['fills'])}  →  ", end="")
            console.print(line)


@command(fill_app, "eval")
def fill_eval_command(
    file: Annotated[str, typer.Argument(help="Held-out text to cut blanks from.")],
    blanks: Annotated[int, typer.Option(help="How many blanks (each a separate case).")] = 200,
    unit: Annotated[str, typer.Option(help="word (unknown-length blanks) or char (one-token blanks).")] = "word",
    segmented: Annotated[bool, typer.Option("--segmented", help="FILE has words separated by spaces (e.g. zh_seg_test.txt): they are the units; the models read the text without the spaces.")] = False,
    context: Annotated[int, typer.Option(help="Characters of context on each side.")] = 100,
    seed: Annotated[int, typer.Option(help="Which blanks are picked.")] = 0,
    model: Models = None, method: Method = None, max_len: MaxLen = None, beam: Beam = 16,
    candidates: Candidates = 48, mask_weight: MaskWeight = 0.0,
    json_out: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", help="No progress lines on stderr.")] = False,
    device: Device = "auto", out: Out = None,
) -> None:
    """Hide random words or characters of FILE; top-1 / top-5 accuracy of every method."""
    from charrnn.fill.engine import load_families
    from charrnn.fill.evaluate import check_options, fill_eval

    check_options(blanks, unit, context)
    opts = _fill_options(5, max_len, "skip", beam, candidates, mask_weight)
    families = load_families(list(model or []), _root(out), device)
    result = fill_eval(file, blanks, families, _methods(method, families), opts, unit, segmented,
                       context, seed, quiet)
    if json_out:
        typer.echo(json.dumps(result, indent=1, ensure_ascii=False))
        return
    typer.echo(f"{file}: {result['blanks']} {unit} blanks, {context} characters of context")
    for name, r in result["methods"].items():
        typer.echo(f"  {name:14} top-1 {r['top1']:.3f}  top-5 {r['top5']:.3f}  ({r['seconds']:.0f}s)")
