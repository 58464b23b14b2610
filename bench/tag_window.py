"""Long lines: a segmenter's labels on one long line tagged whole and in windows (tag.predict).

    python bench/tag_window.py RUN [--chars 50000] [--long-chars 1000000] [--whole-chars 200000]

RUN is a segmenter (`charrnn tag train zh_seg_train.txt --format segmented`). The test file's
sentences, spaces removed, are joined into one line (repeated as needed). Each measurement runs
in a child process of its own (its peak memory is its own):
  - `--chars`: whole and windowed; how many labels agree, and the word F1 of each against the
    test file's own segmentation;
  - `--whole-chars` whole and `--long-chars` windowed: seconds and peak memory.
Prints one JSON object.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

from shared_corpora import CORPORA


def _line(chars: int) -> tuple[list[str], list[str]]:
    """(characters, gold words) of the test sentences joined and repeated to `chars`."""
    words: list[str] = []
    lines = (CORPORA / "zh_seg_test.txt").read_text(encoding="utf-8").splitlines()
    count, index = 0, 0
    while count < chars:
        for word in lines[index % len(lines)].split():
            words.append(word)
            count += len(word)
        index += 1
    return [c for w in words for c in w], words


def child(run: str, chars: int, whole: bool) -> None:
    import torch

    from charrnn.runs import runs_root
    from charrnn.tag import predict
    from charrnn.tag.data import Sentence, words_from_tags

    torch.set_num_threads(1)
    if whole:
        predict.WINDOW = 10**12
    bundle = predict.load_tagger(run, runs_root(), "cpu")
    text, _ = _line(chars)
    began = time.perf_counter()
    (tags,) = bundle.predict([Sentence(text)])
    seconds = time.perf_counter() - began
    print(json.dumps({"seconds": round(seconds, 2), "words": words_from_tags(text, tags),
                      "labels": "".join(tags),
                      "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024}))


def _measure(run: str, chars: int, whole: bool) -> dict:
    proc = subprocess.run([sys.executable, __file__, run, "--child", str(chars),
                           *(["--whole"] if whole else [])], capture_output=True, text=True)
    if proc.returncode != 0:
        return {"failed": proc.returncode, "stderr": proc.stderr[-300:]}
    return json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("run")
    parser.add_argument("--chars", type=int, default=50_000)
    parser.add_argument("--whole-chars", type=int, default=200_000)
    parser.add_argument("--long-chars", type=int, default=1_000_000)
    parser.add_argument("--child", type=int)
    parser.add_argument("--whole", action="store_true")
    args = parser.parse_args()
    if args.child is not None:
        child(args.run, args.child, args.whole)
        return
    from charrnn.tag.predict import CONTEXT, WINDOW
    from charrnn.tag.score import word_f1

    _, gold = _line(args.chars)
    whole, windowed = (_measure(args.run, args.chars, w) for w in (True, False))
    agree = sum(a == b for a, b in zip(whole["labels"], windowed["labels"], strict=True))
    result = {
        "bench": "tag_window", "window": WINDOW, "context": CONTEXT,
        "chars": len(whole["labels"]), "labels_differ": len(whole["labels"]) - agree,
        "f1_whole": round(word_f1([gold], [whole["words"]])["f1"], 4),
        "f1_windowed": round(word_f1([gold], [windowed["words"]])["f1"], 4),
    }
    for name, chars, whole_line in (("whole", args.whole_chars, True),
                                    ("windowed", args.long_chars, False)):
        measured = _measure(args.run, chars, whole_line)
        result[f"{name}_{chars}"] = {k: measured.get(k) for k in ("seconds", "peak_mb", "failed")
                                     if k in measured}
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
