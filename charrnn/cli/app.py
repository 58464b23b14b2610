"""The `charrnn` app: every command group mounted, and `main`, the console entry point.

Heavy modules (torch, numba, sentencepiece) are imported inside the commands, so `charrnn --help`
and the n-gram commands start fast and never import torch.
"""

from __future__ import annotations

import os
import signal
import sys
import traceback
from functools import partial
from typing import Annotated

import typer

from charrnn.cli import evaluate, fill, ngram, runs, sample, tag, train
from charrnn.cli.errors import debug, exit_code, report_errors, say
from charrnn.cores import other_rank, under_torchrun
from charrnn.errors import spell_options_as_flags

app = typer.Typer(
    name="charrnn", no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False,
    help="Train, sample, evaluate and compare recurrent language models (char, word, subword).",
)


def _print_version(value: bool) -> None:
    if value:
        from charrnn import __version__

        typer.echo(f"charrnn {__version__}")
        raise typer.Exit()


@app.callback()
def _options(ctx: typer.Context, version: Annotated[bool, typer.Option(
        "--version", callback=_print_version, is_eager=True, help="Print the version and exit.")]
        = False) -> None:
    """Train, sample, evaluate and compare recurrent language models (char, word, subword)."""
    # This command's user typed flags: the library's messages name them so until it ends, and
    # then name fields again (a library caller in this process after it: tests, a notebook).
    ctx.call_on_close(partial(spell_options_as_flags, spell_options_as_flags(True)))
    if ctx.invoked_subcommand != "train" and under_torchrun():
        from charrnn.errors import UserError

        raise UserError(f"`charrnn {ctx.invoked_subcommand}` is for one process (under "
                        "torchrun each rank would do it again): run it without torchrun, which "
                        "is for `charrnn train` of a language model")


for name, func in (("preprocess", train.preprocess), ("train", train.train),
                   ("sample", sample.sample), ("eval", evaluate.eval_command),
                   ("score", evaluate.score_command),
                   ("runs", runs.runs_command), ("plot", runs.plot),
                   ("compare", ngram.compare_cmd)):
    app.command(name)(report_errors(func))
app.add_typer(runs.corpus_app, name="corpus")
app.add_typer(ngram.ngram_app, name="ngram", help="N-gram baselines (modified Kneser-Ney).")
app.add_typer(tag.tag_app, name="tag")
app.add_typer(fill.fill_app, name="fill")


def main() -> None:
    """Console entry point: one-line errors, exit codes, traceback only with CHARRNN_DEBUG=1."""
    _exit_cleanly_on_stop_signals()
    _quiet_help_on_other_ranks()
    try:
        # Not standalone: a mistyped command line comes back here as an exception, so that it is
        # reported in our one-line form rather than as Typer's multi-line box.
        code = app(standalone_mode=False)
        _leave(code if isinstance(code, int) else 0)
    except typer.TyperException as exc:  # Click's usage errors (typer re-exports them)
        if type(exc).__name__ == "NoArgsIsHelpError":  # the help was printed already
            sys.exit(exc.exit_code)
        if debug() or not hasattr(exc, "format_message"):
            raise
        where = f" (see `charrnn{_subcommand(getattr(exc, 'ctx', None))} --help`)"
        # Typer words a refused choice through pydantic ("Value error, 'x' is not one of …").
        message = exc.format_message().replace("Value error, ", "").rstrip(".")
        say(f"error: {message}{where}", alike_on_every_rank=True)
        sys.exit(getattr(exc, "exit_code", 2))
    except (Exception, KeyboardInterrupt, SystemExit) as exc:
        code = exit_code(exc)
        if code is not None:
            _leave(code)
        if isinstance(exc, SystemExit) or debug():
            raise
        if _distributed() and _peer_gone(exc):  # the peer said why (if it could); this rank
            # only lost it, so it waits as for a mistake every rank meets: torchrun, stopping
            # the others, mostly spares the line
            say("error: stopped: another process of this torchrun ended (its message, if it "
                "gave one, is above); a run it was training keeps its last save: `charrnn train "
                "--resume RUN` continues it", alike_on_every_rank=True)
            _leave(2)
        say(f"internal error: {type(exc).__name__}: {exc} (set CHARRNN_DEBUG=1 for the traceback)")
        traceback.clear_frames(exc.__traceback__)
        _leave(1)


def _distributed() -> bool:
    """A rank of torchrun: in its process group (torch imported by a command; never imported
    here), or started by it (the group may already be torn down when a peer's loss surfaces)."""
    if under_torchrun():
        return True
    dist = sys.modules.get("torch.distributed")
    return dist is not None and dist.is_available() and dist.is_initialized()


def _peer_gone(exc: BaseException) -> bool:
    """A collective that failed because another rank left (gloo and NCCL say so in words)."""
    text = str(exc)
    return isinstance(exc, RuntimeError) and any(
        words in text for words in ("Connection closed by peer", "Connection reset by peer",
                                    "remote worker", "remote process exited"))


def _quiet_help_on_other_ranks() -> None:
    """`torchrun … -m charrnn train --help` (or --version): every rank runs the command, so
    the help came once per process; rank 0 prints it."""
    if other_rank() and {"--help", "--version"} & set(sys.argv[1:]):
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 (for the life of the process)


def _exit_cleanly_on_stop_signals() -> None:
    """SIGTERM and SIGHUP end a command through Python's exit (SystemExit, status 128 + the
    signal's number, as the kill would give), so that what it holds is cleaned up: a new run
    killed before its first save kept a folder that nothing could resume. A training loop stops
    and saves on them instead (training.stop). Where they are ignored (nohup) they stay ignored;
    under torchrun, which stops the other ranks with SIGTERM, they keep their effect."""
    if _distributed():
        return

    def interrupt(signum, frame) -> None:  # noqa: ARG001
        raise SystemExit(128 + signum)

    for name in ("SIGTERM", "SIGHUP"):
        sig = getattr(signal, name, None)
        if sig is not None and signal.getsignal(sig) is signal.SIG_DFL:
            signal.signal(sig, interrupt)


def _leave(code: int) -> None:
    """Exit with `code`. A rank of torchrun at once, after an error or a run that ended well:
    the process group's threads, still running or not yet joined, can abort the interpreter's
    own exit (SIGABRT, 'terminate called without an active exception'), and torchrun then
    reports -6 instead of the code (it happened at times even after the ranks left the group
    together). Everything is written by then: checkpoints atomically, the streams flushed."""
    if _distributed():
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)


def _subcommand(ctx) -> str:
    """' ngram sample' for a context of `charrnn ngram sample` (whatever the program was called)."""
    names = []
    while ctx is not None and ctx.parent is not None:
        names.append(ctx.info_name)
        ctx = ctx.parent
    return "".join(f" {name}" for name in reversed(names))
