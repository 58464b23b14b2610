"""Word-level PTB: train for a wall-clock budget, print test perplexity as JSON.

    python bench/train_ptb.py --budget 600 [-- --hidden 650 --dropout 0.5 ...]

Uses ../shared/corpora/ptb.{train,valid,test}.txt (Mikolov's preprocessing, 10k vocabulary).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from shared_corpora import CORPORA

DEFAULTS = ["--level", "word", "--hidden", "256", "--layers", "2", "--dropout", "0.3",
            "--tie-weights", "--seq-len", "35", "--batch-size", "32", "--lr", "2e-3",
            "--weight-decay", "0.1"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=600.0)
    parser.add_argument("--device", default="auto")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    files = [CORPORA / f"ptb.{s}.txt" for s in ("train", "valid", "test")]
    if not all(f.is_file() for f in files):
        sys.exit(f"missing PTB files under {CORPORA}")
    work = Path(tempfile.mkdtemp(prefix="charrnn-ptb-"))
    os.environ.setdefault("CHARRNN_CACHE", str(work / "cache"))
    from typer.testing import CliRunner

    from charrnn.cli.app import app

    runner = CliRunner()
    argv = ["train", str(files[0]), "--valid", str(files[1]), "--test", str(files[2]),
            *DEFAULTS, "--max-time", str(args.budget), "--device", args.device,
            "--eval-seconds", str(max(15.0, args.budget / 10)), "--out", str(work / "runs"),
            "--run-name", "ptb", "--plain", *extra]
    started = time.time()
    result = runner.invoke(app, argv)
    if result.exit_code != 0:
        sys.exit(result.output)
    wall = time.time() - started
    test = runner.invoke(app, ["eval", str(work / "runs" / "ptb"), "--split", "test", "--json"])
    if test.exit_code != 0:
        sys.exit(test.output)
    scores = json.loads(test.output)
    records = [json.loads(x) for x in (work / "runs/ptb/metrics.jsonl").read_text().splitlines()]
    trains = [r for r in records if r["type"] == "train"]
    print(json.dumps({
        "bench": "train_ptb", "budget_s": args.budget, "wall_s": round(wall, 1),
        "steps": trains[-1]["step"], "tokens_per_s": round(trains[-1]["tokens_per_s"]),
        "best_val_ppl": round(min(2.718281828 ** r["val_loss"] for r in records
                                  if r["type"] == "eval"), 2),
        "test_ppl": round(scores["perplexity"], 2), "test_tokens": scores["tokens"],
        "args": DEFAULTS + extra,
    }, indent=1))


if __name__ == "__main__":
    main()
