"""Word-level PTB: train for a wall-clock budget with the defaults a user gets at word level, then
test perplexity alone and mixed with a modified Kneser-Ney 5-gram (λ tuned on val). JSON.

    python bench/train_ptb.py --budget 600                       # charrnn's word recipe
    python bench/train_ptb.py --budget 600 --reference           # plain SGD, as pytorch/examples
    python bench/train_ptb.py --budget 600 -- --hidden 400 ...   # anything else typed into charrnn

--reference types the recipe of pytorch/examples word_language_model (its defaults + --tied:
2×200 LSTM, plain SGD lr 20, batch 20, bptt 35, clip 0.25, dropout 0.2) into charrnn, whose
schedule is a cosine to 1/10 instead of the example's lr ÷ 4 on a plateau.

Uses ../shared/corpora/ptb.{train,valid,test}.txt (Mikolov's preprocessing, 10k vocabulary).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

from harness import cli, scratch
from shared_corpora import CORPORA

REFERENCE = ["--cell", "lstm", "--layers", "2", "--hidden", "200", "--emb", "200", "--tie-weights",
             "--optim", "sgd", "--lr", "20", "--batch-size", "20", "--seq-len", "35",
             "--grad-clip", "0.25", "--dropout", "0.2", "--weight-decay", "0", "--warmup", "0",
             "--softmax", "full"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=600.0)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--reference", action="store_true")
    parser.add_argument("--no-mix", action="store_true", help="skip the KN5 and the mixture")
    parser.add_argument("--as-typed", action="store_true",
                        help="the command a user types (`charrnn train ptb --max-time B`): no "
                             "evaluation cadence of the bench's own")
    args, extra = parser.parse_known_args()
    extra = [a for a in extra if a != "--"] + (REFERENCE if args.reference else [])
    files = [CORPORA / f"ptb.{s}.txt" for s in ("train", "valid", "test")]
    if not all(f.is_file() for f in files):
        sys.exit(f"missing PTB files under {CORPORA}")
    work = scratch("charrnn-ptb-")
    run = cli(work)

    data = [str(files[0]), "--valid", str(files[1]), "--test", str(files[2]), "--level", "word"]
    cadence = [] if args.as_typed else ["--eval-seconds", str(max(15.0, args.budget / 10))]
    started = time.time()
    header = run("train", *data, "--max-time", str(args.budget), "--device", args.device,
                 *cadence, "--run-name", "ptb", "--plain", *extra).splitlines()[0]
    wall = time.time() - started
    test = json.loads(run("eval", "ptb", "--split", "test", "--json"))
    records = [json.loads(x) for x in (work / "runs/ptb/metrics.jsonl").read_text().splitlines()]
    trains = [r for r in records if r["type"] == "train"]
    result = {
        "bench": "train_ptb", "budget_s": args.budget, "wall_s": round(wall, 1),
        "threads": int(os.environ.get("OMP_NUM_THREADS", "0")) or os.cpu_count(),
        "header": header, "as_typed": args.as_typed, "steps": trains[-1]["step"],
        "tokens_per_s": round(sum(r["tokens_per_s"] for r in trains[1:]) / max(1, len(trains) - 1)),
        "best_val_ppl": round(min(2.718281828 ** r["val_loss"] for r in records
                                  if r["type"] == "eval"), 2),
        "test_ppl": round(test["perplexity"], 2), "test_tokens": test["tokens"],
        "bar_test_ppl": 125, "args": extra,
    }
    if not args.no_mix:
        run("ngram", "train", *data, "--order", "5", "--lines", "--run-name", "kn5")
        kn5 = json.loads(run("ngram", "eval", "kn5", "--split", "test", "--json"))
        mixed = json.loads(run("eval", "ptb", "--split", "test", "--mix", "kn5", "--json"))
        result.update({"kn5_test_ppl": round(kn5["perplexity"], 2),
                       "mix_test_ppl": round(mixed["perplexity"], 2),
                       "mix_weight": round(mixed["mix"]["weight"], 4), "bar_mix_test_ppl": 108})
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
