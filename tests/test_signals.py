"""Signals and closed pipes, in real processes: training of every kind stops after saving (Ctrl-C,
SIGTERM, SIGHUP, a closed stdout), and every command ends quietly with 141 when its reader
leaves, as Unix tools do."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from test_tagger import TAG_TINY, _conll

from helpers import TINY, run_cli

EXIT_BROKEN_PIPE = 141
LOUD = [arg for arg in TAG_TINY if arg != "--quiet"]  # the progress lines tell when to signal


def _charrnn(tmp_path: Path, *args: str) -> subprocess.Popen:
    env = {**os.environ, "CHARRNN_RUNS": str(tmp_path / "runs")}
    return subprocess.Popen([sys.executable, "-m", "charrnn", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for_line(stream, start: str, timeout: float = 120) -> str:
    """Read `stream` until a line starting with `start` (training has reached its loop)."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        line = stream.readline()
        if not line:
            break
        if line.startswith(start):
            return line
    raise AssertionError(f"no line starting with {start!r}")


def _wait_for_metrics(run: Path) -> None:
    metrics, deadline = run / "metrics.jsonl", time.time() + 120
    while time.time() < deadline and not (metrics.exists() and metrics.stat().st_size > 0):
        time.sleep(0.05)


def _saved_step(run: Path) -> int:
    return json.loads((run / "last/checkpoint.json").read_text())["progress"]["step"]


def _quiet(stderr: str) -> bool:
    return not any(word in stderr for word in ("Traceback", "Exception ignored", "error"))


@pytest.mark.slow
def test_sighup_stops_lm_training_after_saving_last(small_text, tmp_path) -> None:
    proc = _charrnn(tmp_path, "train", small_text, *TINY, "--max-steps", "100000", "--run-name", "h")
    _wait_for_metrics(tmp_path / "runs/h")
    proc.send_signal(signal.SIGHUP)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"continue with `charrnn train --resume {tmp_path / 'runs/h'}`" in out \
        and "Traceback" not in err
    assert _saved_step(tmp_path / "runs/h") > 0


@pytest.mark.slow
def test_closed_stdout_stops_lm_training_after_saving_last_and_exits_141(small_text, tmp_path) -> None:
    proc = _charrnn(tmp_path, "train", small_text, *TINY, "--max-steps", "100000", "--run-name", "p")
    _wait_for_line(proc.stdout, "run ")  # `| head -1`: one line read, then the pipe closes
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == EXIT_BROKEN_PIPE, err
    assert _quiet(err) and "charrnn train --resume" in err
    step = _saved_step(tmp_path / "runs/p")
    assert step > 0
    run_cli("train", "--resume", "p", "--max-steps", str(step + 5), "--plain")
    assert _saved_step(tmp_path / "runs/p") == step + 5


def test_closed_stdout_ends_sample_quietly_with_141(tiny_run, tmp_path) -> None:
    proc = _charrnn(tmp_path, "sample", tiny_run, "--length", "100000", "--plain")
    assert len(proc.stdout.read(100)) == 100  # `| head -c 100`
    proc.stdout.close()
    err = proc.stderr.read()
    # quiet but for the note of a kernel compiled the first time this session samples (the
    # order the tests run in decides which test that is)
    said = [line for line in err.splitlines() if "compiling the CPU sampling kernel" not in line]
    assert proc.wait(timeout=60) == EXIT_BROKEN_PIPE and said == [], err


def _with_reader_gone(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    """Run with a stdout pipe whose reader closed before the start (`cmd | true`, where `true`
    has exited): the first write fails, however short the output is."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    env = {**os.environ, "CHARRNN_RUNS": str(tmp_path / "runs")}
    try:
        return subprocess.run([sys.executable, "-m", "charrnn", *map(str, args)], env=env,
                              stdout=write_end, stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(write_end)


@pytest.mark.parametrize("args", [["corpus", "list"], ["--help"], ["sample", "--help"]])
def test_closed_stdout_ends_rich_output_quietly_with_141(tmp_path, args) -> None:
    # Rich tables and Typer's Rich help meet the closed pipe inside Rich, which exits 1 itself
    proc = _with_reader_gone(tmp_path, *args)
    assert proc.returncode == EXIT_BROKEN_PIPE and proc.stderr == "", proc.stderr



@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_stops_tag_training_after_saving_and_exits_130(tmp_path, sig) -> None:
    train = _conll(tmp_path / "train.txt", 200, 0)
    proc = _charrnn(tmp_path, "tag", "train", train, "--format", "conll", *LOUD,
                    "--max-steps", "100000", "--eval-every", "10", "--run-name", "t")
    first = int(_wait_for_line(proc.stderr, "eval step").split()[2])
    proc.send_signal(sig)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopping: saving last/" in err and "Traceback" not in err
    assert ("Ctrl-C again" in err) == (sig == signal.SIGINT)  # only a Ctrl-C can abort next
    assert "continue with `charrnn tag train --resume t`" in err
    step = _saved_step(tmp_path / "runs/t")
    assert step >= first and (tmp_path / "runs/t/best/checkpoint.json").is_file()
    run_cli("tag", "train", "--resume", "t", "--max-steps", str(step + 3), "--quiet")
    assert _saved_step(tmp_path / "runs/t") == step + 3


@pytest.mark.slow
def test_sigterm_stops_fill_training_after_saving_and_exits_130(small_text, tmp_path) -> None:
    proc = _charrnn(tmp_path, "train", small_text, "--task", "fill", *TINY, "--max-steps", "100000",
                    "--run-name", "f")
    first = int(_wait_for_line(proc.stdout, "eval step").split()[2])
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "stopped at step" in out and "Traceback" not in err
    assert "continue with `charrnn train --resume f`" in out
    assert _saved_step(tmp_path / "runs/f") >= first


@pytest.mark.slow
def test_closed_stdout_stops_fill_training_after_saving_and_exits_141(small_text, tmp_path) -> None:
    proc = _charrnn(tmp_path, "train", small_text, "--task", "fill", *TINY, "--max-steps", "100000",
                    "--run-name", "f")
    _wait_for_line(proc.stdout, "run ")
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(timeout=60) == EXIT_BROKEN_PIPE, err
    assert _quiet(err)
    assert _saved_step(tmp_path / "runs/f") > 0


def _wait_for_checkpoint(run: Path) -> None:
    deadline = time.time() + 120
    while time.time() < deadline and not (run / "last/checkpoint.json").is_file():
        time.sleep(0.05)


@pytest.mark.slow
def test_a_run_in_training_has_one_writer_and_readers_are_never_blocked(small_text, tmp_path) -> None:
    proc = _charrnn(tmp_path, "train", small_text, *TINY, "--max-steps", "100000", "--run-name", "w")
    try:
        _wait_for_checkpoint(tmp_path / "runs/w")
        second = run_cli("train", "--resume", "w", "--max-steps", "5", ok=False)
        lines = second.output.strip().splitlines()
        assert second.exit_code == 2 and len(lines) == 1, second.output
        assert f"run w is being trained by process {proc.pid}" in lines[0]
        assert run_cli("sample", "w", "--length", "5", "--plain").output  # readers go on
        assert "w" in run_cli("runs").output
        assert json.loads(run_cli("eval", "w", "--split", "val", "--json").output)["bits_per_char"]
    finally:
        proc.kill()  # SIGKILL: nothing is released by the process itself
        proc.communicate()
    step = _saved_step(tmp_path / "runs/w")
    run_cli("train", "--resume", "w", "--max-steps", str(step + 2), "--plain")  # no stale lock
    assert _saved_step(tmp_path / "runs/w") == step + 2


def test_sigterm_outside_a_training_loop_exits_through_python_with_its_status() -> None:
    """Before a loop took over SIGTERM, the kill ended the process where it stood: a new run's
    folder, made and not yet saved, stayed (only run.json) and could not be resumed. nohup's
    ignored SIGHUP stays ignored."""
    code = ("import os, signal, sys, time\n"
            "signal.signal(signal.SIGHUP, signal.SIG_IGN)\n"
            "from charrnn.cli.app import _exit_cleanly_on_stop_signals\n"
            "_exit_cleanly_on_stop_signals()\n"
            "try:\n"
            "    os.kill(os.getpid(), signal.SIGHUP)\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    time.sleep(30)\n"
            "finally:\n"
            "    print('cleaned up', flush=True)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 128 + signal.SIGTERM and proc.stdout == "cleaned up\n", proc.stderr


def test_a_new_run_stopped_before_its_first_save_leaves_no_folder(small_text, tmp_path) -> None:
    """It left the folder with its run.json alone: --resume said 'no checkpoint', and the name
    stayed taken."""
    from charrnn import data
    from charrnn.lm.config import TrainConfig
    from charrnn.lm.job import train_job
    from charrnn.training.reporters import PlainReporter

    class StoppedAtStart(PlainReporter):
        def start(self, preview) -> None:
            raise KeyboardInterrupt

    cfg = TrainConfig(hidden=16, layers=1, batch_size=4, seq_len=16, max_steps=5)
    with pytest.raises(KeyboardInterrupt):
        train_job([str(small_text)], data.PreprocessOptions(), cfg, tmp_path / "runs",
                  run_name="early", reporter=StoppedAtStart())
    assert not (tmp_path / "runs" / "early").exists()
    run_cli("train", small_text, *TINY, "--max-steps", "2", "--run-name", "early")


def test_a_second_ctrl_c_says_what_the_run_can_resume_from(small_text, tmp_path) -> None:
    """It said only 'interrupted': the user could not tell that nothing had been saved."""
    from charrnn import data
    from charrnn.lm.config import TrainConfig
    from charrnn.lm.job import train_job
    from charrnn.training.reporters import PlainReporter

    said: list[str] = []

    class CtrlCTwice(PlainReporter):
        def train(self, rec: dict) -> None:
            os.kill(os.getpid(), signal.SIGINT)  # stop, and save …
            os.kill(os.getpid(), signal.SIGINT)  # … no: abort

        def message(self, text: str) -> None:
            said.append(text)

    cfg = TrainConfig(hidden=16, layers=1, batch_size=4, seq_len=16, max_steps=50, log_every=1)
    with pytest.raises(KeyboardInterrupt):
        train_job([str(small_text)], data.PreprocessOptions(), cfg, tmp_path / "runs",
                  run_name="twice", reporter=CtrlCTwice())
    assert said[-1] == "aborted without saving at step 1: nothing was saved", said
    assert not (tmp_path / "runs" / "twice").exists()


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="no /dev/full here")
@pytest.mark.parametrize("args", [["corpus", "list"], ["ngram", "sample", "n", "--length", "5000"]])
def test_a_full_standard_output_is_named_in_its_error(small_text, tmp_path, args) -> None:
    """`> /dev/full` said only 'error: No space left on device', not what it was writing."""
    run_cli("ngram", "train", small_text, "--order", "2", "--run-name", "n", "--out",
            tmp_path / "runs")
    env = {**os.environ, "CHARRNN_RUNS": str(tmp_path / "runs")}
    with open("/dev/full", "w") as full:
        proc = subprocess.run([sys.executable, "-m", "charrnn", *args], env=env, stdout=full,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == ("charrnn: error: cannot write to standard output: No space left on "
                           "device; free space on its disk, or send the output elsewhere\n"
                           ), proc.stderr
