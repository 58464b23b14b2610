"""The CLI's error contract, shared by every command group (main app, ngram, tag, fill).

A UserError becomes `charrnn: error: …` on stderr and exit code 2; an OSError (the disk, the
permissions) the same with the file named; Ctrl-C exit code 130. A closed stdout (`| head`) ends
the command quietly with 141 (128 + SIGPIPE), as a Unix tool killed by SIGPIPE would.
CHARRNN_DEBUG=1 re-raises, so the traceback shows.
"""

from __future__ import annotations

import functools
import os

import typer

from charrnn.errors import UserError
from charrnn.pipes import EXIT_BROKEN_PIPE, silence_stdout, stdout_is_devnull


def debug() -> bool:
    return os.environ.get("CHARRNN_DEBUG", "") not in ("", "0")


def report_errors(func):
    """Wrap a command: user mistakes become one line and exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except UserError as exc:
            if debug():
                raise
            typer.echo(f"charrnn: error: {exc}", err=True)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            typer.echo("charrnn: interrupted", err=True)
            raise typer.Exit(130) from None
        except BrokenPipeError:  # the reader of stdout left (`| head`): nobody to tell, stop
            silence_stdout()
            raise typer.Exit(EXIT_BROKEN_PIPE) from None
        except SystemExit as exc:  # Rich met the closed pipe first (Console.on_broken_pipe points
            # stdout at /dev/null and exits 1): the same case, the same exit code
            if exc.code == 1 and stdout_is_devnull():
                raise typer.Exit(EXIT_BROKEN_PIPE) from None
            raise
        except OSError as exc:  # the disk or the permissions, not a bug: say which file
            if debug():
                raise
            where = f" ({exc.filename})" if exc.filename else ""
            typer.echo(f"charrnn: error: {exc.strerror or exc}{where}", err=True)
            raise typer.Exit(2) from None

    return wrapper


def command(app: typer.Typer, *args, **kwargs):
    """`app.command(...)` whose callback reports errors the charrnn way."""

    def register(func):
        app.command(*args, **kwargs)(report_errors(func))
        return func

    return register
