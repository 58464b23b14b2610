"""`charrnn tag train|eval|predict`: bidirectional RNN taggers (chunking, word segmentation).

    charrnn tag train DATA --format conll|segmented [--valid F] [--test F] [--features 1]
    charrnn tag train --resume RUN [--max-time S | --epochs N …]
    charrnn tag eval RUN FILE [--json]
    charrnn tag predict RUN [FILE|-] [--sep " "] [--output conll|inline]

Every option's default is its field's in tag.config.TagTrainConfig. Only typer and the configs at
import time: torch and the models load inside the commands.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from charrnn.cli import options as opt
from charrnn.cli.errors import command, exit_after
from charrnn.errors import UserError

tag_app = typer.Typer(no_args_is_help=True, help="Bidirectional RNN taggers: chunking, segmentation.")
T = opt.T
InputChoice = opt.choices("InputChoice", ("raw", "conll"))
OutputChoice = opt.choices("OutputChoice", ("conll", "inline"))


def _features(spec: str | None) -> list[int]:
    return opt.int_list(spec, "--features", "1,2")  # (their meaning: TagTrainConfig)


@command(tag_app, "train")
def tag_train(
    ctx: typer.Context,
    data: Annotated[Optional[str], typer.Argument(metavar="DATA", help="Training file (CoNLL columns, or segmented lines); with --resume, only if the run's file moved.")] = None,
    format: Annotated[opt.FormatChoice, typer.Option("--format", help="conll (token … label per line) or segmented (words separated by spaces; B/M/E/S tags).")] = T.format,
    label_column: Annotated[int, typer.Option(help="conll: the label column (0-based; -1 = last).")] = T.label_column,
    features: Annotated[Optional[str], typer.Option(help="conll: extra input columns, e.g. 1 for POS in CoNLL-2000.")] = None,
    valid: Annotated[Optional[str], typer.Option(help="Validation file (default: --val-frac of DATA).")] = None,
    test: Annotated[Optional[str], typer.Option(help="Score the best checkpoint on this file at the end.")] = None,
    val_frac: Annotated[float, typer.Option(help="Sentences of DATA held out for validation.")] = T.val_frac,
    cell: opt.Cell = T.cell,
    layers: Annotated[int, typer.Option(help="Stacked bidirectional layers.")] = T.layers,
    hidden: Annotated[int, typer.Option(help="Hidden units per direction.")] = T.hidden,
    emb: Annotated[int, typer.Option(help="Token embedding size.")] = T.emb,
    dropout: opt.Dropout = T.dropout,
    bigram_emb: Annotated[int, typer.Option(help="segmented: character bigram embedding size (0: off).")] = T.bigram_emb,
    char_emb: Annotated[int, typer.Option(help="conll: char embedding size of the char CNN.")] = T.char_emb,
    char_filters: Annotated[int, typer.Option(help="conll: char-CNN filters per word (0: no char encoder).")] = T.char_filters,
    feature_emb: Annotated[int, typer.Option(help="conll: embedding size of each --features column.")] = T.feature_emb,
    min_count: Annotated[int, typer.Option(help="Tokens seen fewer times are <unk>.")] = T.min_count,
    token_dropout: Annotated[float, typer.Option(help="Share of training tokens replaced by <unk> (so unseen tokens mean something).")] = T.token_dropout,
    batch_size: Annotated[int, typer.Option(help="Sentences per step.")] = T.batch_size,
    optim: opt.Optim = T.optim, lr: opt.Lr = T.lr, momentum: opt.Momentum = T.momentum,
    weight_decay: opt.WeightDecay = T.weight_decay, grad_clip: opt.GradClip = T.grad_clip,
    warmup: opt.Warmup = T.warmup, min_lr_ratio: opt.MinLrRatio = T.min_lr_ratio,
    epochs: Annotated[Optional[float], typer.Option(help="Passes over DATA (default 10 when no budget is given).")] = T.epochs,
    max_steps: opt.MaxSteps = T.max_steps, max_time: opt.MaxTime = T.max_time,
    eval_every: Annotated[Optional[int], typer.Option(help="Evaluate every N steps (default: every epoch).")] = T.eval_every,
    eval_seconds: opt.EvalSeconds = T.eval_seconds, save_every: opt.SaveEvery = T.save_every,
    patience: opt.Patience = T.patience, log_every: opt.LogEvery = T.log_every,
    seed: opt.Seed = T.seed, device: opt.Device = T.device, precision: opt.Precision = T.precision,
    run_name: opt.RunName = None,
    resume: Annotated[Optional[str], typer.Option(help="Continue RUN exactly from its last/ (on the sentences it read; only its budget and --device may change).")] = None,
    json_out: Annotated[bool, typer.Option("--json", help="Print the result as JSON.")] = False,
    quiet: opt.Quiet = False,
    out: opt.Out = None,
) -> None:
    """Train a bidirectional RNN sequence labeller (best checkpoint kept by validation score)."""
    import sys

    from charrnn.tag.config import TagTrainConfig
    from charrnn.training.reporters import PlainReporter, SilentReporter

    request = opt.request(ctx, features=_features(features))
    reporter = SilentReporter() if quiet else PlainReporter(sys.stderr)
    if resume is not None:
        result = _resumed(request, opt.root(out), reporter)
    else:
        from charrnn.tag.train import train_tagger

        _check_data(data)
        cfg = _planned(request, TagTrainConfig)
        result = train_tagger(data, cfg, opt.root(out), run_name, valid, test, reporter)
    if json_out:
        typer.echo(json.dumps(result, indent=1))
    else:
        typer.echo(f"{result['outcome']} at step {result['step']}; run folder {result['run']}")
        if "test" in result:
            typer.echo(_score_line(f"test {test}", result["test"]))
    exit_after(result)


def _resumed(request, root, reporter) -> dict:
    """A stopped tagger run continued: its own config, with a budget or device typed now."""
    from charrnn import checkpoint
    from charrnn.plan import rules
    from charrnn.plan.train import refuse_spent_budget, resumed_config
    from charrnn.tag.config import TagTrainConfig
    from charrnn.tag.train import resume_tagger
    from charrnn.training.reporters import SilentReporter

    ckpt = checkpoint.resolve_for_resume(str(request["resume"]), root, kind="tag")
    ckpt.require_task("tag", "continue it with `charrnn train --resume`")
    if ckpt.resumed_from() and isinstance(reporter, SilentReporter):  # steps trained again:
        opt.note(f"resuming{ckpt.resumed_from()}")  # said under --quiet too
    run = ckpt.run_folder.name
    if request["run_name"] is not None and request["run_name"] != run:
        raise UserError(f"--run-name {request['run_name']}: a resumed run keeps its folder "
                        f"({ckpt.run_folder}); drop --run-name, or drop --resume to start a new run")
    saved = ckpt.config(TagTrainConfig, "train")
    recorded = ckpt.meta.get("data") if isinstance(ckpt.meta.get("data"), dict) else {}
    if "val_frac" in request.typed and (request["valid"] or recorded.get("valid")):
        raise UserError("--val-frac does not apply with --valid: the run's validation sentences "
                        "are its --valid file's; drop --val-frac")
    rules.refuse_inapplicable(request.typed, rules.Situation(
        mode="resume", task="tag", data_format=saved.format,
        has_validation=bool(recorded.get("valid")) or saved.val_frac > 0))
    cfg = resumed_config(request, saved, {}, run).config
    typed = {"max_steps", "max_time", "epochs", "patience"} & request.typed
    return resume_tagger(ckpt, cfg, root, request["data"], request["valid"], request["test"],
                         reporter, lambda progress, spent: refuse_spent_budget(
                             cfg, progress, spent, run, typed))


def _planned(request, config_type):
    """The tagger's config: what was typed, the situation's recipe (rules.py: rprop's), defaults."""
    from charrnn.plan import rules

    if "feature_emb" in request.typed and not request["features"]:
        raise UserError("--feature-emb sizes the embeddings of the --features columns, and none "
                        "is given: add --features, or drop --feature-emb")
    if "char_emb" in request.typed and request["char_filters"] == 0:
        raise UserError("--char-emb sizes the char CNN's embeddings, and --char-filters 0 turns "
                        "the CNN off: drop one of the two")
    if request["valid"] and "val_frac" in request.typed:  # the file wins: the fraction unread
        raise UserError("--val-frac does not apply with --valid: the validation sentences are the "
                        "--valid file's; drop one of the two")
    situation = rules.Situation(task="tag", optim=str(request["optim"]),
                                data_format=opt.plain(request["format"]),
                                has_validation=bool(request["valid"]) or request["val_frac"] > 0)
    rules.refuse_inapplicable(request.typed, situation)
    values, _ = rules.recipe(situation, request.typed)
    return config_type(**{**request.fields_of(config_type), **values})


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
    json_out: opt.Json = False, device: opt.Device = "auto", out: opt.Out = None,
) -> None:
    """Token accuracy and the standard score: conlleval chunk F1, or SIGHAN word P/R/F1."""
    from charrnn.tag.data import read_data
    from charrnn.tag.predict import load_tagger

    bundle = load_tagger(run, opt.root(out), device, say=opt.note)
    tag = bundle.meta["tag"]
    result = bundle.score(read_data(file, tag["format"], tag["label_column"], tag["features"],
                                    columns_from_run=True))
    result["file"] = file
    typer.echo(json.dumps(result, indent=1) if json_out else _score_line(file, result))


def _check_data(data: str | None) -> None:
    """DATA of a new run: given, and a file (a registry name, tag train conll2000, said only
    'does not exist: check the path')."""
    from charrnn.corpora import registry

    if data is None:
        raise UserError("give the training file (DATA), or --resume RUN to continue a run")
    if not Path(data).exists() and data in registry():
        raise UserError(f"{data} is a corpus of the registry, not a file: `charrnn corpus get "
                        f"{data}` fetches it and prints its files; give its training file as "
                        "DATA (and its test file to --test)")


def _refuse_other_kind(segmenter: bool, typed: frozenset[str]) -> None:
    """Options of the other kind of tagger (a segmenter reads raw lines and writes words joined
    by --sep; a word tagger reads raw or CoNLL and writes --output): an error when typed, even
    at their default value, not unread."""
    options = {"input_format": "--input", "output": "--output"} if segmenter else {"sep": "--sep"}
    stray = [flag for name, flag in options.items() if name in typed]
    if stray:
        kind = "a segmenter (it reads raw lines and joins words with --sep)" if segmenter else \
            "a word tagger (it writes --output conll or inline)"
        raise UserError(f"{', '.join(stray)} does not apply: this run is {kind}; drop it")


@command(tag_app, "predict")
def tag_predict(
    ctx: typer.Context,
    run: Annotated[str, typer.Argument(help="Tagger run name, run folder or checkpoint.")],
    file: Annotated[Optional[str], typer.Argument(help="Input text (default or '-': stdin).")] = None,
    input_format: Annotated[InputChoice, typer.Option("--input", help="raw (one sentence per line) or conll (columns; needed when the tagger uses --features).")] = "raw",
    output: Annotated[OutputChoice, typer.Option(help="Word taggers: conll (token TAB tag) or inline (token/TAG).")] = "conll",
    sep: Annotated[str, typer.Option(help="Segmenters: the separator written between words.")] = " ",
    errors: opt.Errors = "strict", device: opt.Device = "auto", out: opt.Out = None,
) -> None:
    """Tag raw text (stdin → stdout works): segmented lines, or tokens with their tags."""
    from charrnn.inputs import CONVERT_OR_REPLACE, read_stdin, read_text
    from charrnn.tag.data import Sentence, join_clusters, read_conll, words_from_tags
    from charrnn.tag.predict import load_tagger

    input_format, output, errors = opt.plain(input_format), opt.plain(output), opt.plain(errors)
    bundle = load_tagger(run, opt.root(out), device, say=opt.note)
    tag = bundle.meta["tag"]
    _refuse_other_kind(bundle.encoder.level == "char", opt.typed_params(ctx))
    if not sep or any(ch in sep for ch in "\n\r"):  # words run together, or lines out of step
        raise UserError(f"--sep {sep!r}: give a separator of one line, at least a character "
                        "(e.g. ' ' or '/')")
    if file not in (None, "-") and not Path(file).expanduser().is_file():  # (one text in, its
        # tags out: a folder's files would come out run together)
        raise UserError(f"{file} does not exist or is not a file: tag predict reads one text "
                        "file, or standard input (- or no FILE)")
    # This command has --errors, so invalid UTF-8 may suggest it.
    text = read_stdin(errors, can_replace=True) if file in (None, "-") \
        else read_text([file], errors, CONVERT_OR_REPLACE)
    if bundle.encoder.level == "char":  # a segmenter: spaces already in the input stay boundaries
        pieces = [line.split() for line in _raw_lines(text)]
        sents = [Sentence([c for p in ps for c in p]) for ps in pieces]
        for ps, s, tags in zip(pieces, sents, bundle.predict(sents), strict=True):
            cut = [w for parts in _split_at(words_from_tags(s.tokens, tags), ps) for w in parts]
            # glued back piece by piece: no grapheme is cut, and flags pair up within a piece
            words = [w for piece in _by_piece(cut, ps) for w in join_clusters(piece)]
            typer.echo(sep.join(words))
        return
    if tag["features"] and input_format != "conll":
        columns = ", ".join(map(str, tag["features"]))
        raise UserError(f"this tagger reads extra columns ({columns}: its --features): give "
                        "CoNLL input with those columns and --input conll")
    if input_format == "conll":
        sents = read_conll(file or "<stdin>", -1, tag["features"], text=text, labelled=False,
                           columns_from_run=True)
        rows = [[line.split() for line in block.split("\n") if line.strip()]
                for block in _blocks(text)]
    else:  # one sentence a line, an empty line an empty one: as many out as in
        sents = [Sentence(line.split()) for line in _raw_lines(text)]
        rows = [[[t] for t in s.tokens] for s in sents]
    for cols, s, tags in zip(rows, sents, bundle.predict(sents), strict=True):
        if not s.tokens and output != "inline":  # a blank line alone, as an empty sentence's
            typer.echo("")
        elif output == "inline":
            typer.echo(" ".join(f"{t}/{lab}" for t, lab in zip(s.tokens, tags, strict=True)))
        else:
            typer.echo("\n".join("\t".join([*c, lab]) for c, lab in zip(cols, tags, strict=True)) + "\n")


def _raw_lines(text: str) -> list[str]:
    """The lines of raw input (a last line break ends the last line, it opens no other)."""
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    return lines


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


def _by_piece(words: list[str], pieces: list[str]) -> list[list[str]]:
    """Words (none spanning a space) grouped by the input's space-separated piece they are in."""
    groups: list[list[str]] = [[] for _ in pieces]
    piece, left = 0, len(pieces[0]) if pieces else 0
    for word in words:
        while left == 0 and piece < len(pieces) - 1:
            piece += 1
            left = len(pieces[piece])
        groups[piece].append(word)
        left -= len(word)
    return groups


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
