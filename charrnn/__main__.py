"""The `charrnn` command and `python -m charrnn`."""

import sys


def run() -> None:
    """The console entry point. A Ctrl-C while the command line's modules still load (Typer and
    Rich take a few tenths of a second) ends as one a moment later would: one line, exit 130,
    not a traceback through the imports."""
    _refuse_closed_streams()
    try:
        from charrnn.cli import main
    except KeyboardInterrupt:
        sys.stderr.write("charrnn: interrupted\n")
        sys.exit(130)
    main()


def _refuse_closed_streams() -> None:
    """Standard output closed (`>&-`): Python sets it to None, and a command then lost its
    output with exit 0. One line and exit 2 instead (output nobody wants goes to /dev/null). A
    closed standard input is refused only where it is read (charrnn.inputs.stdin_bytes)."""
    if sys.stdout is None:
        if sys.stderr is not None:
            sys.stderr.write("charrnn: error: standard output is closed: redirect it to a file "
                             "(or /dev/null) instead\n")
        sys.exit(2)


if __name__ == "__main__":
    run()
