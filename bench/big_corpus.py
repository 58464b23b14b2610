"""Big corpora: preprocess (and n-gram counting) of a ~100 MB text within time and memory bars.

    python bench/big_corpus.py [--mb 100] [--level char] [--ngram-order 5]

The text is tiny Shakespeare repeated with random mutation (lines shuffled, 1% of letters
replaced), generated into a temp folder. Each step runs as its own `charrnn` process; peak RSS is
that child's ru_maxrss. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from harness import temporary
from shared_corpora import SHAKESPEARE as CORPUS


def make_corpus(path: Path, megabytes: int, seed: int = 0) -> int:
    rng = np.random.default_rng(seed)
    lines = CORPUS.read_text(encoding="utf-8").splitlines(keepends=True)
    letters = np.frombuffer(b"abcdefghijklmnopqrstuvwxyz", dtype=np.uint8)
    written = 0
    with open(path, "wb") as out:
        while written < megabytes * 1_000_000:
            order = rng.permutation(len(lines))
            block = np.frombuffer("".join(lines[i] for i in order).encode(), dtype=np.uint8).copy()
            alpha = (block >= ord("a")) & (block <= ord("z"))
            flip = alpha & (rng.random(block.size) < 0.01)
            block[flip] = rng.choice(letters, int(flip.sum()))
            out.write(block.tobytes())
            written += block.size
    return written


def run_child(argv: list[str]) -> dict:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(argv, capture_output=True, text=True)
    wall = time.perf_counter() - start
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    if proc.returncode != 0:
        sys.exit(proc.stderr)
    return {"wall_s": round(wall, 2), "peak_rss_mb": round(max(peak_kb, before) / 1024, 1),
            "output": proc.stdout.strip()[-300:]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--mb", type=int, default=100)
    parser.add_argument("--level", default="char")
    parser.add_argument("--ngram-order", type=int, default=5)
    args = parser.parse_args()
    work = temporary("charrnn-big-")
    env_cache = {"CHARRNN_CACHE": str(work / "cache")}
    os.environ.update(env_cache)
    corpus = work / "big.txt"
    size = make_corpus(corpus, args.mb)
    result = {"bench": "big_corpus", "bytes": size, "level": args.level}
    result["preprocess"] = run_child([sys.executable, "-m", "charrnn", "preprocess", str(corpus),
                                      "--level", args.level, "--out", str(work / "ds")])
    ngram = [sys.executable, "-m", "charrnn", "ngram", "train", str(work / "ds"), "--order",
             str(args.ngram_order), "--out", str(work / "runs")]
    # ru_maxrss of children is a high-water mark over all children: run the n-gram step in a
    # fresh process tree so that its peak is its own.
    probe = (f"import resource,subprocess,sys;p=subprocess.run({ngram!r},capture_output=True,text=True);"
             "print(p.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss);"
             "sys.stderr.write(p.stderr[-500:])")
    start = time.perf_counter()
    probe_out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    code, peak = (probe_out.stdout.split() + ["?", "0"])[:2]
    result["ngram_train"] = {"order": args.ngram_order, "returncode": code,
                             "wall_s": round(time.perf_counter() - start, 2),
                             "peak_rss_mb": round(int(peak) / 1024, 1),
                             "stderr": probe_out.stderr.strip()[-300:]}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
