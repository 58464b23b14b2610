"""The console entry point itself (`python -m charrnn`): what a shell user sees on a typo."""

from __future__ import annotations

import subprocess
import sys

import pytest


def _charrnn(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "charrnn", *args], capture_output=True,
                          text=True, timeout=60)


@pytest.mark.parametrize(("args", "message"), [
    (["train", "--hidden", "abc"], "Invalid value for '--hidden'"),
    (["bogus"], "No such command 'bogus'"),
    (["train", "--foo"], "No such option: --foo"),
    (["preprocess", "x.txt"], "Missing option '--out'"),
    (["ngram", "sample", "kn", "--top-p", "0.9"], "No such option: --top-p"),
    # Fixed sets of choices: Typer refuses anything else, naming the choices.
    (["train", "--cell", "tcn"], "Invalid value for '--cell': 'tcn' is not one of 'rnn', 'lstm', 'gru'"),
    (["train", "--optim", "lion"], "Invalid value for '--optim'"),
    (["train", "--direction", "up"], "'up' is not one of 'forward', 'backward'"),
    (["train", "--task", "tag"], "Invalid value for '--task'"),
    (["tag", "train", "x.txt", "--format", "xml"], "'xml' is not one of 'conll', 'segmented'"),
    (["tag", "train", "x.txt", "--cell", "tcn"], "Invalid value for '--cell'"),
    (["fill", "a ___", "--method", "sideways"], "Invalid value for '--method'"),
    (["sample", "--unk", "drop"], "'drop' is not one of 'error', 'skip'"),
    (["eval", "--split", "dev"], "Invalid value for '--split'"),
    (["ngram", "eval", "--split", "dev"], "'dev' is not one of 'train', 'val', 'test'"),
    (["ngram", "train", "x.txt", "--level", "morse"], "'morse' is not one of 'char', 'word', 'subword'"),
    (["sample", "--checkpoint", "middle"], "'middle' is not one of 'best', 'last'"),
])
def test_command_line_typos_are_one_line_errors(args: list[str], message: str) -> None:
    result = _charrnn(*args)
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charrnn: error: ") and message in lines[0]
    assert "--help" in lines[0] and "╭" not in result.stderr


def test_version_and_help_exit_zero() -> None:
    from charrnn import __version__

    assert _charrnn("--version").stdout.strip() == f"charrnn {__version__}"
    result = _charrnn("--help")
    assert result.returncode == 0 and "train" in result.stdout
