"""Helpers shared by the tests (imported as a plain module: tests/ is on sys.path)."""

from __future__ import annotations

SMALL_LINES = [
    "the quick brown fox jumps over the lazy dog.",
    "a stitch in time saves nine, and the early bird catches the worm.",
    "all that glitters is not gold; the pen is mightier than the sword.",
    "to be or not to be, that is the question we ask.",
]

# A model small enough to train in about a second on one core.
TINY = ["--hidden", "32", "--layers", "1", "--batch-size", "4", "--seq-len", "16",
        "--log-every", "5", "--eval-every", "10", "--plain", "--warmup", "5"]


def run_cli(*args: str, ok: bool | None = True, input: str | bytes | None = None):
    """Invoke the real Typer app in-process (`input` on stdin); assert the exit code unless ok
    is None."""
    from typer.testing import CliRunner

    from charrnn.cli.app import app

    result = CliRunner().invoke(app, [str(a) for a in args], input=input)
    if ok is True:
        assert result.exit_code == 0, result.output + repr(result.exception)
    elif ok is False:
        assert result.exit_code != 0, result.output
    return result


def flatten_like_cudnn(rnn) -> None:
    """Make an RNN module's weights views of one flat buffer, as cuDNN's `flatten_parameters`
    does on CUDA (tests/test_cudnn_layout.py puts it in that method's place on the CPU).

        flat [ weight_ih_l0 | weight_hh_l0 | bias_ih_l0 | bias_hh_l0 | weight_ih_l1 | … ]
    """
    import torch
    from torch import nn

    weights = [getattr(rnn, name, None) for name in rnn._flat_weights_names]
    if not all(isinstance(w, nn.Parameter) for w in weights):  # weight drop swaps in copies
        return
    flat = torch.cat([w.detach().reshape(-1) for w in weights])
    offset = 0
    for weight in weights:
        weight.data = flat[offset : offset + weight.numel()].view_as(weight)
        offset += weight.numel()


def modules_loaded_by(code: str, *modules: str) -> tuple[str, list[bool]]:
    """Run `code` in a new Python: (its stdout, whether each module was imported by its end)."""
    import subprocess
    import sys

    probe = f"\nimport sys\nprint(*[m in sys.modules for m in {list(modules)!r}], file=sys.stderr)\n"
    result = subprocess.run([sys.executable, "-c", code + probe], capture_output=True, text=True,
                            check=True)
    return result.stdout, [word == "True" for word in result.stderr.split()[-len(modules):]]
