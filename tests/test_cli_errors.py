"""The CLI's error contract (charrnn.cli.errors): what becomes one line, and with what code."""

from __future__ import annotations

import io
import sys

import pytest

from charrnn.cli.errors import exit_code
from helpers import run_cli


def test_text_the_output_encoding_cannot_hold_is_a_one_line_error_not_a_bug(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    """A latin-1 terminal given Chinese text was 'internal error: UnicodeEncodeError'."""
    stream = io.TextIOWrapper(io.BytesIO(), encoding="latin-1")
    monkeypatch.setattr(sys, "stdout", stream)
    with pytest.raises(UnicodeEncodeError) as caught:
        print("我们", file=stream)
        stream.flush()
    assert exit_code(caught.value) == 2
    said = capsys.readouterr().err
    assert said.startswith("charrnn: error: standard output is latin-1, which cannot hold '我们'")
    assert "PYTHONIOENCODING=utf-8" in said and said.count("\n") == 1
    other = UnicodeEncodeError("ascii", "é", 0, 1, "ordinal not in range")  # not the output's
    assert exit_code(other) is None  # a bug: the traceback's to show


@pytest.mark.parametrize(("args", "said"), [
    (["train", "{text}", "--out", ""], "--out is empty"),  # it trained into ./checkpoints
    (["preprocess", "{text}", "--out", ""], "--out is empty"),  # it wrote into .
    (["train", "{text}", "--softmax", "adaptive", "--cutoffs", ""], "--cutoffs must be whole"),
    (["sample", "{run}", "--prime", ""], "--prime is empty"),  # it started at a line break
])
def test_an_empty_value_typed_is_an_error_not_the_default(tiny_run, small_text, tmp_path, args,
                                                          said) -> None:
    args = [str(a).format(text=small_text, run=tiny_run) for a in args]
    result = run_cli(*args, ok=False)
    assert result.exit_code == 2 and said in result.output, result.output
    assert not (tmp_path / "checkpoints").exists() and not (tmp_path / "meta.json").exists()


def test_a_ctrl_c_compiled_code_hands_back_wrapped_is_an_interrupt(capsys) -> None:
    """Ctrl-C while the n-gram counts ran in Numba: 'internal error: SystemError: …' and exit 1."""
    try:
        try:
            raise KeyboardInterrupt
        except KeyboardInterrupt as ctrl_c:
            raise SystemError("CPUDispatcher(<function _refine>) returned a result with an "
                              "exception set") from ctrl_c
    except SystemError as wrapped:
        assert exit_code(wrapped) == 130
        try:
            raise SystemError("<function _numba_unpickle> returned …") from wrapped
        except SystemError as twice:  # one per level the Ctrl-C went up through
            assert exit_code(twice) == 130
    assert capsys.readouterr().err == "charrnn: interrupted\n" * 2
    assert exit_code(SystemError("a bug")) is None
