"""Fault harness shared by tests/test_faults.py and bench/faults.py: kill a training run at
random moments and check that nothing was lost."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

from charrnn.lm.model import load_lm

# Save every step and evaluate often, so that kills land in steps, evals and checkpoint writes.
KILL_ARGS = ["--hidden", "32", "--layers", "1", "--batch-size", "4", "--seq-len", "16",
             "--log-every", "1", "--save-every", "1", "--eval-every", "3", "--plain",
             "--max-steps", "100000"]
TAG_KILL_ARGS = ["--format", "conll", "--hidden", "32", "--emb", "16", "--batch-size", "8",
                 "--log-every", "1", "--save-every", "1", "--eval-every", "3",
                 "--max-steps", "100000"]
# task → (the command that starts the run, the one that resumes it); the corpus follows the first
COMMANDS = {"lm": (["train"], ["train", "--resume", "killed", *KILL_ARGS]),
            "fill": (["train", "--task", "fill"], ["train", "--resume", "killed", *KILL_ARGS]),
            "tag": (["tag", "train"], ["tag", "train", "--resume", "killed", *TAG_KILL_ARGS])}


def _start(task: str, corpus: Path, resumed: bool) -> list[str]:
    start, resume = COMMANDS[task]
    if resumed:
        return resume
    return [*start, str(corpus), "--run-name", "killed",
            *(TAG_KILL_ARGS if task == "tag" else KILL_ARGS)]


def _load(ckpt) -> None:
    """Build the checkpoint's model with its weights, whatever its task."""
    if ckpt.task == "fill":
        from charrnn.fill.config import FillConfig
        from charrnn.fill.model import FillModel

        ckpt.build(FillConfig, FillModel, "cpu")
    elif ckpt.task == "tag":
        from charrnn.tag.config import TaggerConfig
        from charrnn.tag.model import Tagger

        ckpt.build(TaggerConfig, Tagger, "cpu")
    else:
        load_lm(ckpt, "cpu")


def checkpoint_problems(run: Path) -> list[str]:
    """Every best/ and last/ folder present must open and load completely."""
    from charrnn import checkpoint
    from charrnn.errors import UserError

    problems = []
    for name in ("best", "last"):
        folder = run / name
        if not folder.exists() and not (run / f"{name}.old").exists():
            continue
        try:
            ckpt = checkpoint.open_checkpoint(folder)
            _load(ckpt)
            ckpt.load_state()
        except UserError as exc:
            problems.append(f"{name}: {exc}")
    return problems


def leftovers(run: Path) -> list[str]:
    """Half-written checkpoint folders still present (a resumed run must have cleared them)."""
    return sorted(p.name for p in run.glob("*.tmp-*")) if run.exists() else []


def saved_step(run: Path) -> int:
    meta = run / "last" / "checkpoint.json"
    return json.loads(meta.read_text())["progress"]["step"] if meta.exists() else 0


def kill_cycle(corpus: Path, runs_root: Path, kills: int = 20, seed: int = 0,
               task: str = "lm") -> dict:
    """Start, SIGKILL at a random moment, check, resume; `kills` times. Returns counts. `task`:
    a language model, a fill model or a tagger (`corpus` then in CoNLL columns)."""
    rng = random.Random(seed)
    env = {**os.environ, "CHARRNN_RUNS": str(runs_root), "OMP_NUM_THREADS": "1"}
    run = runs_root / "killed"
    counts = {"kills": 0, "survived": 0, "lost_data": 0, "problems": [], "phases": {},
              "writing": []}
    previous = 0
    for _ in range(kills):
        argv = _start(task, corpus, (run / "last").exists())
        proc = subprocess.Popen([sys.executable, "-m", "charrnn", *argv],
                                env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        metrics = run / "metrics.jsonl"
        start_size = metrics.stat().st_size if metrics.exists() else 0
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None and not (
                metrics.exists() and metrics.stat().st_size > start_size):
            time.sleep(0.005)
        time.sleep(rng.uniform(0.0, 0.6))
        proc.send_signal(signal.SIGKILL)
        _, err = proc.communicate()
        counts["kills"] += 1
        # Where the kill landed: a half-written checkpoint folder means during a write.
        writing = [p.name for p in run.glob("*.tmp-*")] if run.exists() else []
        phase = "checkpoint write" if writing else "step or evaluation"
        counts["phases"][phase] = counts["phases"].get(phase, 0) + 1
        problems = checkpoint_problems(run)
        step = saved_step(run)
        if counts["kills"] > 1 and any(name in leftovers(run) for name in counts["writing"]):
            problems = problems + [f"half-written folders survived a resume: {counts['writing']}"]
        counts["writing"] = writing
        if problems or step < previous or (proc.returncode not in (-signal.SIGKILL, 0)):
            counts["lost_data"] += 1
            counts["problems"] += problems or [f"step {step} < {previous}: {err.decode()[-300:]}"]
        else:
            counts["survived"] += 1
        previous = step
    counts["final_step"] = previous
    counts.pop("writing")
    return counts
