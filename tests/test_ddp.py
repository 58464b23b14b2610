"""DDP through torchrun (gloo, 2 CPU processes): same curve as one process, resume at any size."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import TINY, run_cli

# Constant LR (no warmup, no decay) so that a run cut short and resumed follows the same schedule;
# float32, because bfloat16's rounding depends on how the batch is split between processes.
COMMON = [*TINY, "--batch-size", "4", "--dropout", "0", "--log-every", "1", "--warmup", "0",
          "--min-lr-ratio", "1", "--eval-every", "5", "--precision", "fp32"]


def _torchrun(tmp_path: Path, *args: str, processes: int = 2, ok: bool = True,
              command: str = "train") -> subprocess.CompletedProcess:
    env = {**os.environ, "CHARRNN_RUNS": str(tmp_path / "runs"), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(processes),
         "--standalone",  # a free port each time (a fixed one can be in TIME_WAIT)
         "-m", "charrnn", command, *args],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0 or not ok, proc.stdout + proc.stderr
    return proc


def _losses(run: Path) -> dict[int, float]:
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {r["step"]: r["loss"] for r in records if r["type"] == "train"}


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_and_resumes_at_another_size(small_text, tmp_path):
    run_cli("train", small_text, *COMMON, "--max-steps", "20", "--run-name", "single")
    proc = _torchrun(tmp_path, str(small_text), *COMMON, "--max-steps", "10", "--run-name", "ddp")
    assert "2 processes (DDP)" in proc.stdout
    assert proc.stdout.count("done at step 10") == 1  # rank 0 alone logs
    single, ddp = _losses(tmp_path / "runs/single"), _losses(tmp_path / "runs/ddp")
    assert sorted(ddp) == list(range(1, 11))
    for step in range(1, 11):
        assert ddp[step] == pytest.approx(single[step], rel=1e-4), step
    # Resume the 2-process run in one process: it carries on along the same curve.
    run_cli("train", "--resume", "ddp", "--max-steps", "20", "--plain")
    resumed = _losses(tmp_path / "runs/ddp")
    for step in range(11, 21):
        assert resumed[step] == pytest.approx(single[step], rel=1e-4), step
    # A count its batch (4) cannot be shared by: the advice is a count, not a batch it keeps.
    proc = _torchrun(tmp_path, "--resume", "ddp", "--max-steps", "30", processes=3, ok=False)
    assert "resume it with --nproc_per_node 2, or another count that divides it (1, 2, 4)" in \
        proc.stderr, proc.stderr


def test_one_process_under_torchrun_trains_through_ddp_like_a_plain_run(small_text, tmp_path):
    run_cli("train", small_text, *COMMON, "--max-steps", "8", "--run-name", "single")
    proc = _torchrun(tmp_path, str(small_text), *COMMON, "--max-steps", "8", "--run-name", "one",
                     processes=1)
    assert "× 1 process (DDP)" in proc.stdout
    single, one = _losses(tmp_path / "runs/single"), _losses(tmp_path / "runs/one")
    assert sorted(one) == list(range(1, 9))
    for step in range(1, 9):
        assert one[step] == pytest.approx(single[step], rel=1e-5), step


def test_two_ranks_on_one_gpu_are_found_before_nccl_and_said_in_one_line() -> None:
    from charrnn.distributed import shared_gpu, shared_gpu_message

    assert shared_gpu([("a", "GPU-1"), ("a", "GPU-2"), ("b", "GPU-1")]) is None
    assert shared_gpu([("a", "GPU-1"), ("a", "GPU-2"), ("a", "GPU-1")]) == (0, 2)
    message = shared_gpu_message((0, 1), "box", 1)
    assert "\n" not in message and "--nproc_per_node 1" in message and "with device cpu" in message


@pytest.mark.slow
def test_a_mistake_one_rank_sees_is_one_line_from_each_and_exit_2(small_text, tmp_path):
    """Rank 0 alone finds the run name taken; rank 1, waiting for it, lost the connection and
    printed 'internal error: RuntimeError … gloo … Connection closed by peer' (and at times a
    rank died of SIGABRT at exit). An uneven batch names the sizes that divide."""
    _torchrun(tmp_path, str(small_text), *COMMON, "--max-steps", "2", "--run-name", "taken")
    proc = _torchrun(tmp_path, str(small_text), *COMMON, "--max-steps", "2", "--run-name",
                     "taken", ok=False)
    said = [line for line in proc.stderr.splitlines() if line.startswith("charrnn:")]
    assert said[0].startswith("charrnn: error: run ") and "already exists" in said[0], proc.stderr
    # rank 1 says it stopped, unless torchrun stopped it first (its 5-s wait on a loaded machine)
    assert said[1:] in ([], ["charrnn: rank 1: error: stopped: another process of this torchrun "
                             "ended (its message, if it gave one, is above); a run it was "
                             "training keeps its last save: `charrnn train --resume RUN` "
                             "continues it"]), proc.stderr
    exits = proc.stderr.count("exitcode  : 2")  # each rank that spoke
    assert exits == 2 if said[1:] else exits >= 1, proc.stderr
    assert "internal error" not in proc.stderr
    proc = _torchrun(tmp_path, str(small_text), *COMMON, "--batch-size", "5",  # (the last wins)
                     "--max-steps", "2", "--run-name", "odd", ok=False)
    said = [line for line in proc.stderr.splitlines() if line.startswith("charrnn:")]
    assert said == ["charrnn: error: --batch-size 5 must be divisible by the 2 processes: give "
                    "e.g. 4 or 6"], proc.stderr  # once: every rank meets it, rank 0 says it


def test_under_torchrun_rank_0_alone_says_what_every_rank_meets_and_others_name_themselves(
        monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture) -> None:
    from charrnn.cli import errors
    from charrnn.cli.errors import exit_code
    from charrnn.errors import RankError, UserError

    waited: list[float] = []
    monkeypatch.setattr(errors.time, "sleep", waited.append)  # (torchrun stops it meanwhile,
    monkeypatch.setenv("TORCHELASTIC_RUN_ID", "x")  # when rank 0 has failed too)
    monkeypatch.setenv("WORLD_SIZE", "2")
    for rank, said, waits in (("0", ["charrnn: error: same", "charrnn: error: mine"], []),
                              ("1", ["charrnn: rank 1: error: same",
                                     "charrnn: rank 1: error: mine"], [errors.RANK0_FIRST_S])):
        monkeypatch.setenv("RANK", rank)
        assert exit_code(UserError("same")) == 2 and exit_code(RankError("mine")) == 2
        assert capsys.readouterr().err.splitlines() == said and waited == waits
        waited.clear()


@pytest.mark.slow
def test_max_time_and_a_stop_are_agreed_on_between_log_lines(small_text, tmp_path):
    """Under DDP the ranks agreed on the clock and on a stop only at log, eval and save steps:
    --max-time 3 with a log line every 100,000 steps trained for minutes (and a Ctrl-C waited
    as long, past torchrun's grace, which then killed the ranks unsaved)."""
    proc = _torchrun(tmp_path, str(small_text), *COMMON, "--log-every", "100000",
                     "--eval-every", "100000", "--max-time", "3", "--run-name", "clock")
    assert "done at step" in proc.stdout, proc.stdout + proc.stderr
    saved = json.loads((tmp_path / "runs/clock/last/checkpoint.json").read_text())
    assert saved["progress"]["elapsed"] < 3 + 2 * 2.0  # within about a heartbeat of the budget


def test_what_trains_or_runs_in_one_process_is_refused_under_torchrun(small_text, tmp_path):
    """A fill model or a tagger under torchrun: each rank made a run folder of its own, then
    crashed ('Default process group has not been initialized'); sample printed twice."""
    proc = _torchrun(tmp_path, str(small_text), *TINY, "--task", "fill", "--max-steps", "2",
                     ok=False)
    assert "--task fill trains in one process" in proc.stderr and "internal error" not in \
        proc.stderr and not (tmp_path / "runs").exists()
    run_cli("train", small_text, *TINY, "--max-steps", "2", "--run-name", "lm")
    proc = _torchrun(tmp_path, "lm", "--length", "5", command="sample", ok=False)
    assert "`charrnn sample` is for one process" in proc.stderr and proc.stdout == ""


@pytest.mark.slow
def test_a_ddp_run_with_dropout_resumes_along_its_own_curve(small_text, tmp_path):
    """Each rank's random state is saved: the other ranks were re-seeded on resume and drew new
    dropout masks (3.29493 uninterrupted vs 3.29806 resumed at step 25, in the walkthrough)."""
    args = [str(small_text), *COMMON, "--dropout", "0.3"]  # (the last --dropout wins)
    _torchrun(tmp_path, *args, "--max-steps", "12", "--run-name", "whole")
    _torchrun(tmp_path, *args, "--max-steps", "6", "--run-name", "cut")
    _torchrun(tmp_path, "--resume", "cut", "--max-steps", "12", "--plain")
    whole, cut = _losses(tmp_path / "runs/whole"), _losses(tmp_path / "runs/cut")
    assert sorted(cut) == list(range(1, 13))
    for step in range(7, 13):
        assert cut[step] == pytest.approx(whole[step], rel=1e-6), step


def test_out_of_memory_while_a_model_is_built_is_a_ranks_own() -> None:
    """A GPU another process fills fails one rank at build: said as a plain mistake, rank 1
    stayed silent and rank 0 pointed at a message 'above' that no one had printed."""
    import torch

    from charrnn.devices import out_of_memory_is_too_big
    from charrnn.errors import RankError

    with pytest.raises(RankError, match="does not fit in memory"):
        with out_of_memory_is_too_big(1000, torch.device("cpu")):
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
