"""The CLI's error contract (charrnn.cli.errors): what becomes one line, and with what code."""

from __future__ import annotations

import io
import sys
from pathlib import Path

import pytest

from charrnn.cli.errors import exit_code
from charrnn.errors import UserError, option
from charrnn.lm.config import TrainConfig
from helpers import TINY, run_cli


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


def test_a_sigterm_exit_compiled_code_hands_back_wrapped_keeps_its_code(capsys) -> None:
    """SIGTERM while `ngram train` ran in Numba: the handler's SystemExit(143) came back as
    'internal error: SystemError: … returned a result with an exception set', exit 1."""
    try:
        try:
            raise SystemExit(143)
        except SystemExit as stop:
            raise SystemError("CPUDispatcher(<function _run_lengths>) returned a result with "
                              "an exception set") from stop
    except SystemError as wrapped:
        assert exit_code(wrapped) == 143
    assert capsys.readouterr().err == ""


def test_library_errors_name_fields_and_the_cli_names_flags(small_text: Path, tmp_path: Path) -> None:
    """A message is made where the mistake is found, deep in the library: to a library caller it
    names the field it was given, under the CLI the flag that was typed; after a command the
    library's spelling is back (charrnn.errors.option)."""
    with pytest.raises(UserError) as caught:
        TrainConfig(optim="adam", momentum=0.9)
    said = str(caught.value)
    assert said.startswith("momentum applies to sgd and rmsprop, not adam") and \
        "drop momentum or use optim sgd" in said and "--" not in said
    typed = run_cli("train", small_text, "--optim", "adam", "--momentum", "0.9", "--out", tmp_path,
                    ok=False)
    assert typed.exit_code == 2 and "--momentum applies to" in typed.output, typed.output
    # A mistake only the library checks (the config's bound), made from the command line.
    too_many = run_cli("train", small_text, "--max-steps", str(10**13), "--out", tmp_path, ok=False)
    assert too_many.exit_code == 2 and "--max-steps must be at most 1e+12" in too_many.output
    assert option("max_steps") == "max_steps"
    with pytest.raises(UserError, match=r"^max_steps must be at most 1e\+12, got"):
        TrainConfig(max_steps=10**13)
    # A field whose flag is spelled otherwise (--temp): the field to the library, the flag typed.
    from charrnn.lm.config import SampleOptions

    with pytest.raises(UserError, match=r"^temperature must be a positive number"):
        SampleOptions(temperature=-1.0).validate()


def test_a_cache_folder_that_is_a_file_is_named_with_its_variable(tmp_path: Path,
                                                                   monkeypatch) -> None:
    """CHARRNN_CACHE pointing at a file said only 'Not a directory (…/corpora/ptb)'."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    monkeypatch.setenv("CHARRNN_CACHE", str(afile))
    refused = run_cli("corpus", "get", "ptb", ok=False)
    assert refused.exit_code == 2 and f"{afile} is a file, not a folder; point CHARRNN_CACHE" \
        in refused.output
    from charrnn.tui.fill_repl import _setup_readline

    _setup_readline()  # what only saves time (the prompt's history) does without it


def test_a_ctrl_c_while_interrupts_are_held_acts_when_the_block_ends() -> None:
    """A Ctrl-C inside numba's loading of a kernel crashed `ngram eval` (SIGSEGV) at times: it
    is held until the kernel has returned, then acts as it would have."""
    import os
    import signal

    from charrnn.jit import interrupts_held

    before = signal.getsignal(signal.SIGINT)
    reached = []
    with pytest.raises(KeyboardInterrupt):
        with interrupts_held():
            os.kill(os.getpid(), signal.SIGINT)
            reached.append("after the signal")  # the block runs on
    assert reached == ["after the signal"] and signal.getsignal(signal.SIGINT) is before
    with interrupts_held():  # no Ctrl-C: nothing raised
        pass


def test_a_ctrl_c_under_torchrun_is_said_by_rank_0_alone(monkeypatch, capsys) -> None:
    """torchrun forwards SIGINT to every rank, which outlived its wait: 'charrnn: interrupted'
    then 'charrnn: rank 1: interrupted'."""
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "test")
    monkeypatch.setattr("charrnn.cli.errors.RANK0_FIRST_S", 0.0)
    for rank, said in (("1", ""), ("0", "charrnn: interrupted\n")):
        monkeypatch.setenv("RANK", rank)
        assert exit_code(KeyboardInterrupt()) == 130
        assert capsys.readouterr().err == said


def test_help_and_version_under_torchrun_come_from_rank_0_alone() -> None:
    """`torchrun --nproc_per_node 2 -m charrnn train --help` printed the help twice."""
    import os
    import subprocess

    outs = []
    for rank in ("0", "1"):
        env = {**os.environ, "TORCHELASTIC_RUN_ID": "test", "RANK": rank, "WORLD_SIZE": "2"}
        outs.append(subprocess.run([sys.executable, "-m", "charrnn", "--version"], env=env,
                                   capture_output=True, text=True, timeout=60).stdout)
    assert outs[0].startswith("charrnn ") and outs[1] == ""


def test_a_ctrl_c_while_the_command_line_loads_is_one_line_and_exit_130(
        monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    """Ctrl-C in the first half second (Typer and Rich loading) printed a 20-line traceback."""
    import importlib.abc

    from charrnn.__main__ import run

    class CtrlCOnLoad(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "charrnn.cli":
                raise KeyboardInterrupt

    monkeypatch.delitem(sys.modules, "charrnn.cli")
    monkeypatch.setattr(sys, "meta_path", [CtrlCOnLoad(), *sys.meta_path])
    with pytest.raises(SystemExit) as stopped:
        run()
    assert stopped.value.code == 130 and capsys.readouterr().err == "charrnn: interrupted\n"


def test_a_folder_where_a_file_belongs_says_what_to_do(capsys) -> None:
    """metrics.jsonl made a folder: 'error: Is a directory (…/metrics.jsonl)', no way out."""
    import errno

    error = IsADirectoryError(errno.EISDIR, "Is a directory", "runs/r/metrics.jsonl")
    assert exit_code(error) == 2
    assert "runs/r/metrics.jsonl is a folder where charrnn keeps a file: move it away" in \
        capsys.readouterr().err


@pytest.mark.parametrize(("args", "said"), [
    (["--hidden", "9223372036854775808"], "--hidden must be at most 1,000,000,000,000,000"),
    (["--emb", "9223372036854775808"], "--emb must be at most 1,000,000,000,000,000"),
    (["--epochs", "1e308"], "--epochs must be at most 1e+12"),
    (["--optim", "rmsprop", "--lr", "1e308"], "--lr must be at most 1e+06"),
    (["--level", "subword", "--vocab-size", "3000000000"], "--vocab-size must be at most 10,000,000"),
])
def test_sizes_past_what_torch_or_sentencepiece_hold_are_user_errors(small_text: Path, args,
                                                                    said) -> None:
    """Each was 'internal error' and exit 1 (an overflow in torch, or sentencepiece's int32)."""
    result = run_cli("train", small_text, *TINY, "--max-steps", "2", *args, ok=False)
    assert result.exit_code == 2 and said in result.output, result.output


def test_an_rprop_lr_outside_its_step_range_is_refused_not_clamped(small_text: Path) -> None:
    """--optim rprop --lr 1 and --lr 1000 trained exactly as --lr 0.05: torch clamps the first
    step into the step range, and the log showed the lr typed."""
    result = run_cli("train", small_text, "--hidden", "16", "--max-steps", "2", "--optim",
                     "rprop", "--lr", "1", ok=False)
    assert result.exit_code == 2 and "--lr 1.0: rprop's first step must be within its step " \
        "range, 1e-06 to 0.05" in result.output


def test_a_closed_standard_output_is_one_line_and_exit_2(monkeypatch: pytest.MonkeyPatch,
                                                        capsys) -> None:
    """`charrnn runs >&-` exited 0 with its output lost; `charrnn sample … >&-` crashed."""
    from charrnn.__main__ import _refuse_closed_streams

    monkeypatch.setattr(sys, "stdout", None)  # what Python makes of a closed descriptor 1
    with pytest.raises(SystemExit) as stop:
        _refuse_closed_streams()
    assert stop.value.code == 2
    assert capsys.readouterr().err == ("charrnn: error: standard output is closed: redirect it "
                                       "to a file (or /dev/null) instead\n")


def test_a_closed_standard_input_is_refused_where_it_is_read(monkeypatch) -> None:
    """`charrnn score RUN <&-` raised AttributeError: 'NoneType' object has no attribute
    'buffer' (exit 1); commands that do not read it run as before."""
    from charrnn.evaluation.linescore import read_lines
    from charrnn.inputs import read_stdin

    monkeypatch.setattr(sys, "stdin", None)
    for read in (lambda: next(read_lines("-")), read_stdin):
        with pytest.raises(UserError, match="standard input is closed"):
            read()


@pytest.mark.parametrize(("value", "on"), [("1", True), ("yes", True), ("0", False),
                                           ("false", False), ("No", False), ("off", False),
                                           ("", False)])
def test_charrnn_debug_off_words_keep_the_one_line_error(monkeypatch, value: str,
                                                         on: bool) -> None:
    """CHARRNN_DEBUG=false showed the traceback of a plain user error."""
    from charrnn.cli.errors import debug

    monkeypatch.setenv("CHARRNN_DEBUG", value)
    assert debug() is on


def test_the_command_itself_refuses_a_closed_standard_output() -> None:
    """(The entry point must call the check: a slip there once left `python -m charrnn` doing
    nothing with exit 0.)"""
    import subprocess

    done = subprocess.run(["bash", "-c", f"{sys.executable} -m charrnn corpus list >&-"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 2 and "standard output is closed" in done.stderr
