"""Chinese word segmentation: train a BiLSTM B/M/E/S tagger on zh_seg_train, score zh_seg_test.

    nice -n 10 python bench/tag_cws.py --budget 900          # seconds of training
    python bench/tag_cws.py --budget 120 -- --hidden 128     # extra `charrnn tag train` settings

Prints one JSON object: SIGHAN word precision / recall / F1 and token accuracy on the test file
(bar: F1 ≥ 0.95), the validation curve, the settings and the time taken.
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
    parser.add_argument("--budget", type=float, default=900.0, help="training seconds")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--cell", default="lstm")
    parser.add_argument("--hidden", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--lr", type=float, default=4e-3)
    parser.add_argument("--dropout", type=float, default=0.2)
    args = parser.parse_args()
    train, test = CORPORA / "zh_seg_train.txt", CORPORA / "zh_seg_test.txt"
    if not train.is_file():
        sys.exit(f"missing corpus {train}")
    import torch

    from charrnn.tag.config import TagTrainConfig
    from charrnn.tag.train import train_tagger
    from charrnn.training.reporters import PlainReporter, fmt_eval

    torch.set_num_threads(args.threads)
    cfg = TagTrainConfig(format="segmented", cell=args.cell, hidden=args.hidden, emb=100,
                         bigram_emb=64, dropout=args.dropout, batch_size=args.batch_size, lr=args.lr,
                         max_time=args.budget, val_frac=0.05, device=args.device)
    work = temporary("charrnn-bench-cws-")

    class Lines(PlainReporter):  # progress on stderr, eval lines kept for the JSON
        def eval(self, rec: dict) -> None:
            super().eval(rec)
            evals.append(fmt_eval(rec))

    evals: list[str] = []
    started = time.time()
    result = train_tagger(str(train), cfg, work / "runs", "cws", test=str(test),
                          reporter=Lines(sys.stderr))
    t = result["test"]
    print(json.dumps({
        "bench": "tag_cws", "corpus": "SIGHAN 2008 SXU (zh_seg_train → zh_seg_test)",
        "test_f1": round(t["f1"], 4), "test_precision": round(t["precision"], 4),
        "test_recall": round(t["recall"], 4), "test_accuracy": round(t["accuracy"], 4),
        "bar_f1": 0.95, "passed": t["f1"] >= 0.95, "best_val_f1": round(result["best_val"], 4),
        "steps": result["step"], "train_s": round(result["elapsed"], 1),
        "wall_s": round(time.time() - started, 1), "threads": args.threads,
        "device": args.device, "evals": evals,
        "settings": {k: getattr(cfg, k) for k in ("cell", "layers", "hidden", "emb", "bigram_emb",
                                                   "dropout", "batch_size", "lr")},
    }, indent=1))


if __name__ == "__main__":
    main()
