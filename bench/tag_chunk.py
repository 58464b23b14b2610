"""CoNLL-2000 chunking: a BiLSTM over words (+ a char CNN per word, + POS tags) → conlleval F1.

    nice -n 10 python bench/tag_chunk.py --budget 300          # seconds of training
    python bench/tag_chunk.py --budget 300 --no-pos             # from words only

Trains on conll2000_train.txt (5% held out to pick the best epoch), scores conll2000_test.txt and
prints one JSON object: chunk precision / recall / F1 as conlleval computes them (bar: F1 ≥ 0.92),
token accuracy, settings and time.
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from harness import temporary
from shared_corpora import CORPORA


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=300.0, help="training seconds")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--no-pos", action="store_true", help="words only (no POS column)")
    parser.add_argument("--hidden", type=int, default=128)
    args = parser.parse_args()
    train, test = CORPORA / "conll2000_train.txt", CORPORA / "conll2000_test.txt"
    if not train.is_file():
        sys.exit(f"missing corpus {train}")
    import torch

    from charrnn.tag.config import TagTrainConfig
    from charrnn.tag.train import train_tagger
    from charrnn.training.reporters import PlainReporter, fmt_eval

    torch.set_num_threads(args.threads)
    cfg = TagTrainConfig(format="conll", label_column=-1, features=[] if args.no_pos else [1],
                         cell="lstm", hidden=args.hidden, emb=100, char_filters=64, dropout=0.2,
                         batch_size=64, lr=4e-3, max_time=args.budget, val_frac=0.05,
                         device=args.device)
    work = temporary("charrnn-bench-chunk-")

    class Lines(PlainReporter):  # progress on stderr, eval lines kept for the JSON
        def eval(self, rec: dict) -> None:
            super().eval(rec)
            evals.append(fmt_eval(rec))

    evals: list[str] = []
    started = time.time()
    result = train_tagger(str(train), cfg, work / "runs", "chunk", test=str(test),
                          reporter=Lines(sys.stderr))
    t = result["test"]
    print(json.dumps({
        "bench": "tag_chunk", "corpus": "CoNLL-2000 (conll2000_train → conll2000_test)",
        "inputs": "words" if args.no_pos else "words + POS",
        "test_f1": round(t["f1"], 4), "test_precision": round(t["precision"], 4),
        "test_recall": round(t["recall"], 4), "test_accuracy": round(t["accuracy"], 4),
        "bar_f1": 0.92, "passed": t["f1"] >= 0.92, "best_val_f1": round(result["best_val"], 4),
        "steps": result["step"], "train_s": round(result["elapsed"], 1),
        "wall_s": round(time.time() - started, 1), "threads": args.threads,
        "device": args.device, "evals": evals,
        "settings": {k: getattr(cfg, k) for k in ("cell", "layers", "hidden", "emb", "char_filters",
                                                   "feature_emb", "dropout", "batch_size", "lr")},
    }, indent=1))


if __name__ == "__main__":
    main()
