"""Fault census: kill a training run at random moments and feed every kind of bad input.

    python bench/faults.py [--kills 20] [--task lm|fill|tag]

Prints JSON: kills survived, bad inputs tried (each must be a one-line error, exit code 2, no
traceback), and cases that lost data (must be 0). The kill harness is tests/faults.py, shared
with the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import sys
from pathlib import Path

from harness import temporary

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from faults import kill_cycle  # noqa: E402

LINES = ["the quick brown fox jumps over the lazy dog.", "to be or not to be, that is it."]


def bad_inputs(work: Path, run: Path) -> list[tuple[str, list[str]]]:
    (work / "empty.txt").write_text("")
    (work / "binary.bin.txt").write_bytes(bytes(range(256)) * 4)
    (work / "latin1.txt").write_bytes("café crème\n".encode("latin-1"))
    (work / "short.txt").write_text("short\n")
    (work / "nodir").mkdir(exist_ok=True)
    (work / "evil.ckpt").write_bytes(pickle.dumps({"x": 1}))
    trunc = work / "trunc"
    if not trunc.exists():
        import shutil

        shutil.copytree(run, trunc)
        weights = trunc / "best" / "model.safetensors"
        weights.write_bytes(weights.read_bytes()[:64])
    other = work / "other"  # a checkpoint of another format version
    mismatch = work / "mismatch"  # same corpus, another vocabulary order
    if not other.exists():
        import shutil

        shutil.copytree(run, other)
        meta = json.loads((other / "best" / "checkpoint.json").read_text())
        meta["version"] = 99
        (other / "best" / "checkpoint.json").write_text(json.dumps(meta))
        shutil.copytree(run, mismatch)
        meta = json.loads((mismatch / "last" / "checkpoint.json").read_text())
        meta["tokenizer"]["chars"] = meta["tokenizer"]["chars"][::-1]
        (mismatch / "last" / "checkpoint.json").write_text(json.dumps(meta))
    corpus = str(work / "corpus.txt")
    return [
        ("empty file", ["train", str(work / "empty.txt")]),
        ("binary file", ["train", str(work / "binary.bin.txt")]),
        ("invalid UTF-8", ["train", str(work / "latin1.txt")]),
        ("shorter than one batch", ["train", str(work / "short.txt")]),
        ("directory with no text", ["train", str(work / "nodir")]),
        ("missing path", ["train", str(work / "missing.txt")]),
        ("truncated checkpoint", ["sample", str(trunc)]),
        ("pickle renamed as checkpoint", ["sample", str(work / "evil.ckpt")]),
        ("unknown characters in prime", ["sample", str(run), "--prime", "你好"]),
        ("negative size", ["train", corpus, "--hidden", "-1"]),
        ("temperature 0", ["sample", str(run), "--temp", "0"]),
        ("temperature NaN", ["sample", str(run), "--temp", "nan"]),
        ("top-p 1.5", ["sample", str(run), "--top-p", "1.5"]),
        ("seq-len 0", ["train", corpus, "--seq-len", "0"]),
        ("CUDA where there is none", ["train", corpus, "--device", "cuda"]),
        ("resume with another corpus", ["train", str(work / "latin1.txt"), "--resume", str(run),
                                        "--errors", "replace"]),
        ("nonsense --unk value", ["eval", str(run), "--split", "train", "--unk", "maybe"]),
        ("unknown split name", ["eval", str(run), "--split", "dev"]),
        ("checkpoint of another format version", ["sample", str(other / "best")]),
        ("tokenizer mismatch on resume", ["train", "--resume", str(mismatch)]),
        ("invalid UTF-8 eval file", ["eval", str(run), str(work / "latin1.txt")]),
        ("n-gram order 0", ["ngram", "train", corpus, "--order", "0"]),
        ("n-gram of an empty file", ["ngram", "train", str(work / "empty.txt")]),
        ("a tagger from a binary file", ["tag", "train", str(work / "binary.bin.txt")]),
        ("fill with a pickle as model", ["fill", "a ___ b", "-m", str(work / "evil.ckpt")]),
    ]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--kills", type=int, default=20)
    parser.add_argument("--task", choices=("lm", "fill", "tag"), default="lm",
                        help="what is killed and resumed (the bad inputs are the same)")
    args = parser.parse_args()
    work = temporary("charrnn-faults-")
    os.environ["CHARRNN_CACHE"] = str(work / "cache")
    os.environ["CHARRNN_RUNS"] = str(work / "runs")
    corpus = work / "corpus.txt"
    corpus.write_text("\n".join(LINES * 150) + "\n")
    killed = corpus
    if args.task == "tag":  # word, POS, chunk columns; a blank line ends each sentence
        killed = work / "chunks.txt"
        killed.write_text("the DT B-NP\ndog NN I-NP\nran VBD B-VP\n\n"
                          "a DT B-NP\ncat NN I-NP\nsat VBD B-VP\non IN B-PP\nit PRP B-NP\n\n" * 100)
    kills = kill_cycle(killed, work / "runs", kills=args.kills, task=args.task)
    if args.task != "lm":  # the bad inputs read an LM run
        kill_cycle(corpus, work / "lm-runs", kills=1)

    import subprocess

    import torch

    failures, tried = [], 0
    lm_run = work / ("runs" if args.task == "lm" else "lm-runs") / "killed"
    for name, argv in bad_inputs(work, lm_run):
        if name.startswith("CUDA") and torch.cuda.is_available():
            continue
        tried += 1  # as a user meets it: the installed entry point, its own error handling
        result = subprocess.run([sys.executable, "-m", "charrnn", *argv], capture_output=True,
                                text=True, timeout=300)
        output = result.stdout + result.stderr
        lines = output.strip().splitlines()
        if result.returncode != 2 or len(lines) != 1 or "Traceback" in output:
            failures.append({"case": name, "exit": result.returncode, "output": output[-300:]})
    print(json.dumps({"bench": "faults", "task": args.task, "kills": kills["kills"],
                      "kills_survived": kills["survived"],
                      "bad_inputs_tried": tried, "bad_inputs_clean": tried - len(failures),
                      "cases_that_lost_data": kills["lost_data"], "failures": failures,
                      "kills_by_phase": kills["phases"], "problems": kills["problems"]}, indent=1))
    if failures or kills["lost_data"]:
        sys.exit(1)


if __name__ == "__main__":
    main()
