"""Fill-in-the-blank accuracy: bidirectional vs forward-only rescoring vs the n-gram baseline.

    python bench/fill_eval.py --budget 600 --zh-budget 600 --mask-budget 200 --blanks 300
    python bench/fill_eval.py --only zh ... &  python bench/fill_eval.py --only shakespeare ...
                                               (one thread each: both corpora side by side)

For each corpus, trains (through the CLI) a forward char LM, a backward char LM, a masked fill
model (each for the given seconds) and a modified Kneser-Ney n-gram, then runs
`charrnn fill eval` on held-out text:

    tiny Shakespeare   train on the first 90%, hide random words of the last 10%
    zh_seg             train on zh_seg_train.txt (spaces removed), hide random words of
                       zh_seg_test.txt (--segmented: the words are the units)

Prints one JSON object with top-1 / top-5 of every method, the settings and the time taken. The
issue's bar: bidirectional > forward > n-gram.

    python bench/fill_eval.py --only reviews --group-budget 1200 --blanks 200 [--device cuda]

`reviews` is the everyday-Chinese set-up of `charrnn fill train` (issue 22): one command trains
the group on zh_reviews.txt + the SXU news with its spaces removed within --group-budget seconds,
then `charrnn fill eval` hides characters and words (cut by longest match against the SXU
lexicon) of the reviews' held-out tail: the group's methods (each LM mixed with the n-gram of its
direction), and the RNNs alone beside them (-m fwd -m bwd -m mask).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from shared_corpora import CORPORA


def charrnn(args: list[str], env: dict, capture: bool = False) -> str:
    """Run the real CLI in a subprocess (its progress goes to our stderr)."""
    cmd = [sys.executable, "-m", "charrnn", *map(str, args)]
    done = subprocess.run(cmd, env=env, text=True, stdout=subprocess.PIPE if capture else sys.stderr)
    if done.returncode != 0:
        sys.exit(f"failed ({done.returncode}): {' '.join(cmd)}")
    return done.stdout or ""


def train_models(train: Path, root: Path, budget: float, mask_budget: float, env: dict,
                 lm: list[str], fill: list[str], order: int) -> dict[str, float]:
    common = ["--val-frac", "0.05", "--test-frac", "0", "--plain", "--out", root]
    seconds = {}
    if (root / "ngram" / "model" / "model.json").is_file():  # --work of an earlier run: reuse
        return {"reused": str(root)}
    for name, extra, seconds_for in (("fwd", lm, budget),
                                     ("bwd", [*lm, "--direction", "backward"], budget),
                                     ("mask", [*fill, "--task", "fill"], mask_budget)):
        started = time.time()
        timing = ["--max-time", seconds_for, "--eval-seconds", max(20.0, seconds_for / 6),
                  "--eval-every", 10**9]
        charrnn(["train", train, *common, *timing, *extra, "--run-name", name], env)
        seconds[name] = round(time.time() - started, 1)
    started = time.time()
    charrnn(["ngram", "train", train, "--order", order, "--val-frac", "0.05", "--test-frac", "0",
             "--out", root, "--run-name", "ngram"], env)
    seconds["ngram"] = round(time.time() - started, 1)
    return seconds


def evaluate(test: Path, root: Path, blanks: int, env: dict, extra: list[str],
             models: list[str] | None = None, device: str = "cpu") -> dict:
    if models is None:
        models = ["-m", "fwd", "-m", "bwd", "-m", "mask", "-m", "ngram"]
    out = charrnn(["fill", "eval", test, "--blanks", blanks, *models, "--json", "--quiet",
                   "--device", device, "--out", root, *extra], env, capture=True)
    return json.loads(out)


def verdict(methods: dict) -> dict:
    b, f, n = (methods[m] for m in ("bidirectional", "forward", "ngram"))
    return {k: b[k] > f[k] > n[k] for k in ("top1", "top5")}


def reviews(work: Path, budget: float, blanks: int, env: dict, device: str = "cpu") -> dict:
    """`fill train` on reviews + news, then `fill eval` on the reviews' held-out tail (both on
    `device`)."""
    news = work / "news.txt"
    lines = (CORPORA / "zh_seg_train.txt").read_text(encoding="utf-8").split("\n")
    news.write_text("\n".join("".join(x.split()) for x in lines), encoding="utf-8")
    root = work / "reviews"
    started = time.time()
    if not (root / "zh" / "group.json").is_file():
        charrnn(["fill", "train", CORPORA / "zh_reviews.txt", news, "--max-time", budget,
                 "--out", root, "--run-name", "zh", "--plain", "--device", device], env)
    group = json.loads((root / "zh" / "group.json").read_text(encoding="utf-8"))
    held = root / "zh" / "heldout" / "01_zh_reviews.txt"
    rnn_only = [a for r in ("fwd", "bwd", "mask") for a in ("-m", f"zh-{r}")]
    out = {"train_wall_s": round(time.time() - started, 1), "spent_s": group["spent_s"],
           "stages": {s["role"]: {"run": s["run"], "budget_s": s.get("budget_s"),
                                  "used_s": s.get("used_s")} for s in group["stages"]},
           "mix": group["mix"], "heldout": str(held)}
    for unit, extra in (("char", ["--unit", "char"]),
                        ("word", ["--unit", "word", "--lexicon", CORPORA / "zh_seg_train.txt"])):
        grouped = evaluate(held, root, blanks, env, extra, models=[], device=device)
        alone = evaluate(held, root, blanks, env, extra, models=rnn_only, device=device)
        out[unit] = {**grouped["methods"],
                     **{f"{m} (RNNs alone)": r for m, r in alone["methods"].items()}}
    return out


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--budget", type=float, default=600.0, help="seconds per Shakespeare LM")
    parser.add_argument("--zh-budget", type=float, default=600.0, help="seconds per zh LM")
    parser.add_argument("--mask-budget", type=float, default=200.0,
                        help="seconds for each fill model (it only proposes candidates)")
    parser.add_argument("--blanks", type=int, default=300)
    parser.add_argument("--work", default=None,
                        help="work folder; the models of an earlier run there are reused")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--only", choices=("shakespeare", "zh", "reviews"), default=None)
    parser.add_argument("--group-budget", type=float, default=1200.0,
                        help="seconds of `fill train` for --only reviews")
    parser.add_argument("--device", default="cpu",
                        help="where --only reviews trains and evaluates (cpu, cuda)")
    args = parser.parse_args()
    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="charrnn-bench-fill-"))
    env = {**os.environ, "CHARRNN_CACHE": str(work / "cache"), "OMP_NUM_THREADS": str(args.threads),
           "MKL_NUM_THREADS": str(args.threads), "NUMBA_NUM_THREADS": str(args.threads)}
    report: dict = {"bench": "fill_eval", "threads": args.threads, "blanks": args.blanks,
                    "budgets_s": {"lm": args.budget, "zh_lm": args.zh_budget,
                                  "fill_model": args.mask_budget}}
    started = time.time()
    if args.only == "reviews":
        report["reviews"] = reviews(work, args.group_budget, args.blanks, env, args.device)
    if args.only in (None, "shakespeare"):
        text = (CORPORA / "tinyshakespeare.txt").read_text(encoding="utf-8")
        cut = text.index("\n", int(len(text) * 0.9)) + 1
        (work / "sh_train.txt").write_text(text[:cut], encoding="utf-8")
        (work / "sh_test.txt").write_text(text[cut:], encoding="utf-8")
        # The LMs: charrnn's default recipe (2×256 GRU, tied, dropout 0.2, 32×64, AdamW 6e-3).
        lm = ["--cell", "gru", "--layers", "2", "--hidden", "256", "--seq-len", "64",
              "--batch-size", "32", "--dropout", "0.2"]
        fill = ["--cell", "gru", "--layers", "1", "--hidden", "256", "--seq-len", "96",
                "--batch-size", "32", "--dropout", "0.1"]
        root = work / "sh"
        seconds = train_models(work / "sh_train.txt", root, args.budget, args.mask_budget, env, lm,
                               fill, 7)
        result = evaluate(work / "sh_test.txt", root, args.blanks, env, ["--unit", "word"])
        report["shakespeare"] = {"train_seconds": seconds, "lm": lm, "fill_model": fill,
                                 "ngram_order": 7, "methods": result["methods"],
                                 "bidirectional>forward>ngram": verdict(result["methods"])}
    if args.only in (None, "zh"):
        lines = (CORPORA / "zh_seg_train.txt").read_text(encoding="utf-8").split("\n")
        (work / "zh_train.txt").write_text("\n".join("".join(x.split()) for x in lines),
                                           encoding="utf-8")
        # 4,000+ characters: a narrower embedding (tied through a projection) keeps the softmax
        # affordable on a CPU.
        lm = ["--cell", "gru", "--layers", "2", "--hidden", "256", "--emb", "128", "--seq-len",
              "64", "--batch-size", "32", "--dropout", "0.1"]
        fill = ["--cell", "gru", "--layers", "1", "--hidden", "256", "--emb", "128",
                "--seq-len", "96", "--batch-size", "32", "--dropout", "0.1"]
        root = work / "zh"
        seconds = train_models(work / "zh_train.txt", root, args.zh_budget, args.mask_budget, env,
                               lm, fill, 5)
        result = evaluate(CORPORA / "zh_seg_test.txt", root, args.blanks, env,
                          ["--unit", "word", "--segmented", "--max-len", "6"])
        example = json.loads(charrnn(["fill", "我的手机坏了，我打算__一部新手机", "--json",
                                      "--top-k", "3", "--out", root, "-m", "fwd", "-m", "bwd",
                                      "-m", "mask", "-m", "ngram", "--device", "cpu"],
                                     env, capture=True))
        report["zh"] = {"train_seconds": seconds, "lm": lm, "fill_model": fill, "ngram_order": 5,
                        "methods": result["methods"],
                        "bidirectional>forward>ngram": verdict(result["methods"]),
                        "example": {m: [(f["fills"][0], round(f["prob"], 3)) for f in fills]
                                    for m, fills in example["methods"].items()}}
    report["wall_s"] = round(time.time() - started, 1)
    print(json.dumps(report, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
