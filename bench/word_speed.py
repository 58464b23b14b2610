"""Word-level training throughput: today's recipe against float32 with a full softmax, paired.

    python bench/word_speed.py                 # PTB, 2×256 LSTM, 64 × 35, the word recipe
    python bench/word_speed.py --hidden 400

Both trainers are charrnn's own (`Loop.step`: the whole step, batches from the memmap stream),
on the same PTB ids and the same model shape; the only differences are --precision and
--softmax. Rounds alternate, so drift on a noisy machine hits both alike. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from harness import temporary
from shared_corpora import CORPORA


def trainer(dataset, args, precision: str, softmax: str, work: Path):
    from dataclasses import replace

    from charrnn.lm.config import TrainConfig
    from charrnn.lm.train import Trainer
    from charrnn.plan import rules

    word, _ = rules.recipe(rules.Situation(level="word"), frozenset())  # the word recipe's step
    cfg = replace(TrainConfig(**word), hidden=args.hidden, layers=args.layers,
                  batch_size=args.batch_size, max_steps=10**9, precision=precision, softmax=softmax)
    return Trainer(dataset, cfg, work / f"{precision}-{softmax}")


def rounds(trainer, steps: int):
    while True:
        start = time.perf_counter()
        for _ in range(steps):
            trainer.loop.step()
        yield time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--steps", type=int, default=30, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args()
    from charrnn import data

    work = temporary("charrnn-word-speed-")
    files = [str(CORPORA / f"ptb.{s}.txt") for s in ("train", "valid", "test")]
    dataset = data.preprocess([files[0]], work / "ds", data.PreprocessOptions(
        level="word", valid=[files[1]], test=[files[2]]))
    runs = {"fp32_full": trainer(dataset, args, "fp32", "full", work),
            "auto_auto": trainer(dataset, args, "auto", "auto", work)}
    timers = {name: rounds(t, args.steps) for name, t in runs.items()}
    for timer in timers.values():
        next(timer)  # warm-up
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, timer in timers.items():
            times[name].append(next(timer))
    chosen = runs["auto_auto"]
    tokens = args.steps * chosen.cfg.batch_size * chosen.cfg.seq_len
    rate = {name: tokens / statistics.median(t) for name, t in times.items()}
    print(json.dumps({
        "bench": "word_speed", "threads": torch.get_num_threads(),
        "model": f"lstm {args.layers}x{args.hidden} untied, vocab {dataset.tokenizer.vocab_size}",
        "batch": f"{chosen.cfg.batch_size}x{chosen.cfg.seq_len}",
        "baseline": "fp32, full softmax",
        "chosen": f"{chosen.loop.precision}, {chosen.model.config.softmax} softmax "
                  f"{chosen.model.config.cutoffs}",
        "baseline_tokens_per_s": round(rate["fp32_full"]),
        "chosen_tokens_per_s": round(rate["auto_auto"]),
        "speedup": round(rate["auto_auto"] / rate["fp32_full"], 2), "bar": 3.0,
    }, indent=1))


if __name__ == "__main__":
    main()
