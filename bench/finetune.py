"""Fine-tuning against training from scratch, for the same time on the same new text. JSON.

    python bench/finetune.py                 # 60 s each: parent, fine-tuned child, from scratch
    python bench/finetune.py --budget 120

The parent trains on tiny Shakespeare (../shared/corpora), the new text is charrnn's embedded
default corpus (Python's help texts: digits, brackets and operators Shakespeare never used, so
the child's vocabulary grows). The child (`--init-from parent`) and the model from scratch train
for the same --budget seconds with the defaults on the same text and split; both are scored on
that validation split in bits per character.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from harness import cli, scratch
from shared_corpora import SHAKESPEARE


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=60.0)
    parser.add_argument("--device", default="auto")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"]
    if not SHAKESPEARE.is_file():
        sys.exit(f"missing {SHAKESPEARE}")
    work = scratch("charrnn-finetune-")
    run = cli(work)

    budget = ["--max-time", str(args.budget), "--eval-seconds", str(max(5.0, args.budget / 6)),
              "--device", args.device, "--plain", *extra]
    timed = {}
    for name, argv in (("parent", ["train", str(SHAKESPEARE), "--run-name", "parent", *budget]),
                       ("child", ["train", "--init-from", "parent", "--run-name", "child", *budget]),
                       ("scratch", ["train", "--run-name", "scratch", *budget])):
        started = time.time()
        out = run(*argv)
        timed[name] = {"wall_s": round(time.time() - started, 1),
                       "header": [x for x in out.splitlines() if x.startswith(("run ", "fine-"))]}
    scores = {name: json.loads(run("eval", name, "--split", "val", "--json"))
              for name in ("child", "scratch")}
    info = json.loads((work / "runs/child/run.json").read_text())["init_from"]
    print(json.dumps({
        "bench": "finetune", "budget_s": args.budget,
        "parent": "tiny Shakespeare", "new_text": "the embedded default corpus (Python help texts)",
        "added_tokens": info["added_tokens"],
        "child_val_bits_per_char": round(scores["child"]["bits_per_char"], 4),
        "scratch_val_bits_per_char": round(scores["scratch"]["bits_per_char"], 4),
        "fine_tuning_wins": scores["child"]["bits_per_char"] < scores["scratch"]["bits_per_char"],
        "val_chars": scores["child"]["chars"], "runs": timed, "args": extra,
    }, indent=1))


if __name__ == "__main__":
    main()
