"""The `charrnn` command and `python -m charrnn`."""

import sys


def run() -> None:
    """The console entry point. A Ctrl-C while the command line's modules still load (Typer and
    Rich take a few tenths of a second) ends as one a moment later would: one line, exit 130,
    not a traceback through the imports."""
    try:
        from charrnn.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("charrnn: interrupted\n")
        sys.exit(130)
    main()


if __name__ == "__main__":
    run()
