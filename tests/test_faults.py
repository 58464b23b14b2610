"""The fault suite: kills at random moments, full and read-only disks, OOM, hostile metadata,
and determinism properties. Nothing may be lost, nothing may crash with a traceback."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from charrnn import checkpoint
from charrnn.errors import UserError
from charrnn.lm.config import ModelConfig
from charrnn.lm.model import RNNLM
from charrnn.lm.sample import SampleOptions, Sampler
from charrnn.training.loop import Loop
from faults import checkpoint_problems, kill_cycle
from helpers import TINY, run_cli


@pytest.mark.slow
def test_sigkill_at_20_random_moments_never_loses_a_checkpoint(small_text: Path, tmp_path: Path):
    counts = kill_cycle(small_text, tmp_path / "runs", kills=20, seed=1)
    print(f"\nfault suite: {counts['kills']} kills, {counts['survived']} survived, "
          f"{counts['lost_data']} lost data, reached step {counts['final_step']}; kills by "
          f"phase: {counts['phases']}")
    assert counts["lost_data"] == 0, counts["problems"]
    assert counts["final_step"] > 0
    run_cli("train", "--resume", "killed", "--max-steps", str(counts["final_step"] + 3), "--plain")


@pytest.mark.slow
@pytest.mark.parametrize("task", ["fill", "tag"])
def test_sigkill_of_a_fill_model_or_a_tagger_never_loses_a_checkpoint_and_resumes(
        small_text: Path, tmp_path: Path, task: str) -> None:
    """They resume since 2026-12-06: killed at random moments, each start after the first
    resumes, and every checkpoint left opens whole."""
    from test_tagger import _conll

    corpus = _conll(tmp_path / "chunks.txt", 150, 0) if task == "tag" else small_text
    counts = kill_cycle(corpus, tmp_path / "runs", kills=8, seed=2, task=task)
    assert counts["lost_data"] == 0, counts["problems"]
    assert counts["final_step"] > 0 and counts["survived"] == 8


@pytest.fixture
def tiny_mount(tmp_path: Path):
    """A tmpfs of a chosen size (needs root and mount; skipped where unavailable)."""
    mounted = []

    def mount(size_kb: int, read_only: bool = False, fill_from: Path | None = None) -> Path:
        target = tmp_path / f"mnt{len(mounted)}"
        target.mkdir()
        proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_kb}k", "tmpfs",
                               str(target)], capture_output=True)
        if proc.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.decode().strip()}")
        mounted.append(target)
        if fill_from is not None:
            shutil.copytree(fill_from, target / fill_from.name)
        if read_only:
            subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True)
        return target

    yield mount
    for target in mounted:
        subprocess.run(["umount", "-l", str(target)], capture_output=True)


def _du_kb(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) // 1024


def test_disk_full_keeps_the_previous_checkpoint(tiny_run: Path, tiny_mount) -> None:
    mount = tiny_mount(_du_kb(tiny_run) + 40, fill_from=tiny_run)
    run = mount / tiny_run.name
    before = (run / "last" / "model.safetensors").read_bytes()
    result = run_cli("train", "--resume", run, "--max-steps", "400", ok=False)
    assert result.exit_code == 2 and "No space left" in result.output
    assert "Traceback" not in result.output
    assert (run / "last" / "model.safetensors").read_bytes() == before
    assert checkpoint_problems(run) == []


def test_read_only_folder_is_a_clear_error_and_nothing_changes(tiny_run: Path, tiny_mount) -> None:
    mount = tiny_mount(_du_kb(tiny_run) + 400, read_only=True, fill_from=tiny_run)
    run = mount / tiny_run.name
    result = run_cli("train", "--resume", run, "--max-steps", "400", ok=False)
    assert result.exit_code == 2 and "Read-only file system" in result.output
    assert checkpoint_problems(run) == []


def test_out_of_memory_gives_advice(small_text: Path, monkeypatch) -> None:
    def oom(self):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(Loop, "step", oom)
    result = run_cli("train", small_text, *TINY, "--max-steps", "5", ok=False)
    assert result.exit_code == 2
    assert "out of memory" in result.output and "smaller --batch-size" in result.output


def test_hostile_metadata_paths_are_never_followed(tiny_run: Path, tmp_path: Path) -> None:
    """A checkpoint whose dataset id is a path to a real, valid dataset must not reach it."""
    from charrnn import data

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    meta_path = run / "best" / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    real = data.find_dataset(meta["dataset"]["id"])
    assert real is not None
    secret = tmp_path / "secret"
    shutil.copytree(real.root, secret)
    hostile = "../../../" + str(secret)
    secret_meta = json.loads((secret / "meta.json").read_text())
    secret_meta["id"] = hostile  # were the path followed, this dataset would match and be used
    (secret / "meta.json").write_text(json.dumps(secret_meta))
    meta["dataset"]["id"] = hostile
    meta_path.write_text(json.dumps(meta))
    result = run_cli("eval", run, "--split", "test", ok=False)
    assert result.exit_code == 2 and "not in the cache" in result.output


def test_resume_with_another_tokenizer_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    meta_path = run / "last" / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    meta["tokenizer"]["chars"] = meta["tokenizer"]["chars"][::-1]  # same size, other ids
    meta_path.write_text(json.dumps(meta))
    result = run_cli("train", "--resume", run, "--max-steps", "60", ok=False)
    assert result.exit_code == 2 and "tokenizer mismatch" in result.output


@pytest.mark.parametrize(("where", "code", "message"), [
    ("_fsync_tree", errno.ENOSPC, "No space left on device"),
    ("os.replace", errno.EROFS, "Read-only file system"),
])
def test_a_failed_checkpoint_write_keeps_the_previous_one_without_mounts(
        tiny_run: Path, tmp_path: Path, monkeypatch, where: str, code: int, message: str) -> None:
    """Disk full / read-only simulated in process (no root or mount needed)."""
    from charrnn import fsutil

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    before = (run / "last" / "model.safetensors").read_bytes()

    def fail(*args, **kwargs):
        raise OSError(code, os.strerror(code))

    if where == "os.replace":
        monkeypatch.setattr(fsutil.os, "replace", fail)
    else:
        monkeypatch.setattr(fsutil, where, fail)
    result = run_cli("train", "--resume", run, "--max-steps", "60", ok=False)
    monkeypatch.undo()
    assert result.exit_code == 2 and message in result.output and "Traceback" not in result.output
    assert (run / "last" / "model.safetensors").read_bytes() == before
    assert checkpoint_problems(run) == [] and not list(run.glob("*.tmp-*"))


def test_half_written_folders_of_dead_processes_are_cleared(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    from charrnn.fsutil import _tmp_name

    stale = _tmp_name(run / "best", _dead_pid())  # best/: resume reads last/, yet clears both
    shutil.copytree(run / "best", stale)
    (stale / "model.safetensors").write_bytes(b"half")
    run_cli("train", "--resume", run, "--max-steps", "45")
    assert not stale.exists() and checkpoint_problems(run) == []


def _dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@settings(max_examples=15, deadline=None)
@given(seed=st.integers(0, 2**31), temp=st.floats(0.2, 2.0), top_k=st.none() | st.integers(1, 20))
def test_sampling_with_a_fixed_seed_is_deterministic(seed: int, temp: float, top_k) -> None:
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(20, "gru", layers=1, hidden=16))

    def draw() -> list[int]:
        stream = Sampler(model, torch.device("cpu"), SampleOptions(temperature=temp, top_k=top_k,
                                                                   seed=seed)).stream([1, 2])
        return [next(stream)[0] for _ in range(25)]

    assert draw() == draw()


def test_checkpoint_with_missing_weights_file_is_reported(tiny_run: Path, tmp_path: Path) -> None:
    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    (run / "best" / "model.safetensors").unlink()
    with pytest.raises(UserError, match="missing model.safetensors"):
        checkpoint.resolve(str(run), tmp_path)
    assert os.path.exists(run / "last" / "model.safetensors")
