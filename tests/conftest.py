"""Shared fixtures: every test gets its own cache and runs root, and the real corpora when present.

Devices: a test sees no GPU — in this process and in the processes it starts (torchrun,
`python -m charrnn`) — unless it is marked `cuda`; a `cuda` test runs where a GPU is and skips
elsewhere, saying why. So `--device auto` means the CPU in every unmarked test, on any machine,
and what a test asserts does not change with the machine it runs on.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

from helpers import SMALL_LINES, TINY, run_cli

# ../shared/corpora beside the checkout, or a copy named by $CHARRNN_SHARED_CORPORA (bench/gpu_suite.sh)
SHARED = Path(os.environ.get("CHARRNN_SHARED_CORPORA")
              or Path(__file__).resolve().parents[1].parent / "shared" / "corpora")
# Asked once, before any test hides the GPU: CUDA reads CUDA_VISIBLE_DEVICES when it starts.
GPU = torch.cuda.is_available()


REAL_BF16_MATMUL_SPEED = None  # the gate the fixture below replaces, for the test of the gate


@pytest.fixture(autouse=True)
def devices_seen(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    # Threads: what the test process has, never a measurement (its verdict would follow the load).
    monkeypatch.setenv("OMP_NUM_THREADS", os.environ.get("OMP_NUM_THREADS",
                                                         str(torch.get_num_threads())))
    # bf16: every machine answers as a CPU without bf16 arithmetic (the fp32 recipes, fp32
    # training), so what a test sees does not follow this CPU's bf16 speed; the plan's choices
    # on other machines are tested with measurements the tests set (test_plan.py).
    from charrnn.lm import speed

    global REAL_BF16_MATMUL_SPEED
    REAL_BF16_MATMUL_SPEED = REAL_BF16_MATMUL_SPEED or speed.bf16_matmul_speed
    monkeypatch.setattr(speed, "bf16_matmul_speed", lambda: 0.0)
    # … and their measurements are kept apart from those of the charrnn processes some tests
    # start, which time bf16 as it is: sharing the session's cache, such a process's verdict
    # (bf16 fast on this CPU) became the recipe of a later in-process run of that shape.
    real_cpu = speed.cpu_name()
    monkeypatch.setattr(speed, "cpu_name", lambda: f"{real_cpu} [tests: no bf16]")
    # A quiet machine, whatever else runs beside the tests: a reading not kept for the load
    # broke the tests of the cache (test_plan.py tests the load's rule itself).
    monkeypatch.setattr(speed, "machine_busy", lambda: False)
    if request.node.get_closest_marker("cuda") is not None:
        if not GPU:
            pytest.skip("needs a CUDA GPU (none here, or a CPU-only torch build)")
        return
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")  # the processes a test starts
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)  # and this one
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)


@pytest.fixture(scope="session")
def session_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One content-addressed cache for the whole session (safe to share: keys are hashes)."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, session_cache: Path) -> Path:
    """Cache and runs live in temp folders, so tests never touch ~/.cache or ./checkpoints."""
    monkeypatch.setenv("CHARRNN_CACHE", str(session_cache))
    monkeypatch.setenv("CHARRNN_RUNS", str(tmp_path / "runs"))
    monkeypatch.delenv("CHARRNN_DEBUG", raising=False)
    monkeypatch.delenv("CHARRNN_MIRROR", raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.fixture
def shared_corpora() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"real corpora folder {SHARED} is missing")
    return SHARED


@pytest.fixture
def shakespeare(shared_corpora: Path) -> Path:
    return shared_corpora / "tinyshakespeare.txt"


@pytest.fixture
def small_text(tmp_path: Path) -> Path:
    """A few KB of real English-like text built in the test (no shared data needed)."""
    path = tmp_path / "small.txt"
    path.write_text("\n".join(SMALL_LINES * 60) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory: pytest.TempPathFactory, session_cache: Path) -> Path:
    """A char LSTM trained once for the session on a small built-in text (a run folder)."""
    root = tmp_path_factory.mktemp("tiny-runs")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(SMALL_LINES * 60) + "\n", encoding="utf-8")
    old = os.environ.get("CHARRNN_CACHE")
    os.environ["CHARRNN_CACHE"] = str(session_cache)
    try:
        run_cli("train", corpus, *TINY, "--max-steps", "40", "--out", root, "--run-name", "tiny")
    finally:
        if old is None:
            os.environ.pop("CHARRNN_CACHE", None)
        else:
            os.environ["CHARRNN_CACHE"] = old
    return root / "tiny"
