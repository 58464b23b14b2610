"""Quality per wall-clock second: train on tiny Shakespeare (first 90% train, last 10% val).

    python bench/train_shakespeare.py --budget 600              # 10 minutes, default settings
    python bench/train_shakespeare.py --budget 120 --device cuda

Prints one JSON object: tokens/s, best val nats/char and bits/char, steps, settings. Extra
`charrnn train` options can follow `--`, e.g. `-- --hidden 512 --dropout 0.2`.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

from harness import cli, scratch
from shared_corpora import SHAKESPEARE as CORPUS


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=600.0, help="training seconds")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--corpus", default=str(CORPUS))
    parser.add_argument("--as-typed", action="store_true",
                        help="the command a user types (`charrnn train FILE --val-frac 0.1 "
                             "--test-frac 0 --max-time B`): no evaluation cadence of its own")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    if not Path(args.corpus).is_file():
        sys.exit(f"missing corpus {args.corpus}")
    work = scratch("charrnn-bench-")
    started = time.time()
    cadence = [] if args.as_typed else [  # evaluations by the clock only: ~12 in the budget
        "--eval-seconds", str(max(10.0, args.budget / 12)), "--eval-every", "1000000000"]
    header = cli(work)("train", args.corpus, "--val-frac", "0.1", "--test-frac", "0",
                       "--max-time", str(args.budget), "--device", args.device, "--run-name",
                       "bench", "--plain", *cadence, *extra).splitlines()[:2]
    wall = time.time() - started
    run = work / "runs" / "bench"
    records = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    evals = [r for r in records if r["type"] == "eval"]
    trains = [r for r in records if r["type"] == "train"]
    best = min(r["val_loss"] for r in evals)
    config = json.loads((run / "run.json").read_text())["config"]
    print(json.dumps({
        "bench": "train_shakespeare", "budget_s": args.budget, "wall_s": round(wall, 1),
        "device": args.device, "header": header, "as_typed": args.as_typed,
        "steps": trains[-1]["step"],
        "tokens_per_s": round(sum(r["tokens_per_s"] for r in trains[-10:]) / min(10, len(trains))),
        "best_val_nats_per_char": round(best, 4), "best_val_bpc": round(best / math.log(2), 4),
        "evals": [(r["step"], round(r["elapsed"]), round(r["val_loss"], 4)) for r in evals],
        "settings": {k: config[k] for k in ("cell", "layers", "hidden", "emb", "dropout",
                                            "seq_len", "batch_size", "optim", "lr")},
        "extra_args": extra,
    }, indent=1))


if __name__ == "__main__":
    main()
