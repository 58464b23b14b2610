"""charrnn's modified Kneser-Ney n-grams against KenLM's lmplz on tiny Shakespeare.

    python bench/ngram_kenlm.py                  # everything (about a minute)
    python bench/ngram_kenlm.py --quick          # order 7 characters only

The set-ups of issue 3: train = first 90% of the characters (1,003,854), test = the last 10%
(111,540). Characters: each line a sentence (--lines), the newline is </s>, 0 OOV. Words: case
kept, whitespace split, words seen < 2 times in train become one rare-word token on both sides
(our tokenizer's `<unk>`, KenLM's `<rare>`; the model's own lmplz-style <unk> is separate).
The KenLM perplexities are the reference figures quoted in the issue (`lmplz -o N -S 1G
--discount_fallback`, then `query`). If the `kenlm` module is importable (`MAX_ORDER=10 pip
install --no-binary kenlm kenlm`), our ARPA export is also scored by KenLM itself.

Prints one JSON object: per set-up our perplexity, KenLM's, the relative difference, build
time in process (JIT cache warm, median of 3), the whole `charrnn ngram train` process (wall
and peak RSS), and scoring speed (one thread, and all threads).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from harness import temporary
from shared_corpora import SHAKESPEARE as CORPUS

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
KENLM_PPL = {("char", 3): 7.8398, ("char", 5): 4.8941, ("char", 7): 4.6370, ("char", 10): 4.6475,
             ("word", 3): 130.350, ("word", 5): 130.184}
LMPLZ_SECONDS = {("char", 3): 0.14, ("char", 5): 0.24, ("char", 7): 0.56, ("char", 10): 1.42}


def split_text(path: Path) -> tuple[str, str]:
    text = path.read_text(encoding="utf-8")
    cut = int(len(text) * 0.9)
    return text[:cut], text[cut:]


def timed(func, repeat: int = 3) -> tuple[float, object]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = func()
        times.append(time.perf_counter() - start)
    return statistics.median(times), result


def scoring_speed(model, ids) -> dict:
    """Tokens/s on the test text: one thread (the serial kernel) and all threads."""
    from charrnn.ngram.query import score_serial, score_total

    seq, first = model.stream(ids)
    args = model._kernel_args()
    score_serial(seq, first, *args)
    serial, _ = timed(lambda: score_serial(seq, first, *args), 5)
    threads = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    score_total(seq, first, *args, 4 * threads)
    parallel, _ = timed(lambda: score_total(seq, first, *args, 4 * threads), 5)
    return {"tokens_per_s_1_thread": len(ids) / serial,
            f"tokens_per_s_{threads}_threads": len(ids) / parallel}


def kenlm_perplexity(model, test_text: str, level: str, workdir: Path) -> dict:
    try:
        import kenlm
    except ImportError:
        return {"kenlm_module": "not installed (MAX_ORDER=10 pip install --no-binary kenlm kenlm)"}
    from charrnn.ngram.arpa import export_arpa, word_strings

    path = workdir / f"{level}{model.order}.arpa"
    export_arpa(model, path)
    try:
        lm = kenlm.Model(str(path))
    except Exception as exc:  # e.g. an order above the module's compiled MAX_ORDER
        return {"kenlm_module": f"could not load: {exc}"}
    names = word_strings(model)  # each id's spelling in the file (our <unk> is ARPA's <unk>)
    total = tokens = 0.0
    for line in test_text.split("\n")[:-1]:
        words = [names[i] for i in model.tokenizer.encode(line).tolist()]
        total += lm.score(" ".join(words), bos=True, eos=True)
        tokens += len(words) + 1
    return {"kenlm_module_perplexity_of_our_arpa": 10 ** (-total / tokens)}


# The child reports its own peak RSS (VmHWM): wait4's ru_maxrss would include the memory of
# this process, which the child shares between fork and exec.
PEAK = """
import atexit, sys
def _peak():
    with open('/proc/self/status') as status:
        for line in status:
            if line.startswith('VmHWM'):
                sys.stderr.write('PEAK_KB ' + line.split()[1] + chr(10))
atexit.register(_peak)
"""
ENTRY_POINTS = {
    "python -m charrnn ngram train": PEAK + "import runpy; sys.argv[0] = 'charrnn'\n"
                                            "runpy.run_module('charrnn', run_name='__main__')",
    # The n-gram app alone, for a checkout whose top-level CLI does not import right now.
    "ngram_app() train": PEAK + "from charrnn.cli.ngram import ngram_app; ngram_app()",
}


def whole_process(dataset_args: list[str], order: int, workdir: Path, env: dict) -> dict:
    """Wall time and peak RSS of `python -m charrnn ngram train ...` (best of 2 runs)."""
    errors = []
    for entry, code in ENTRY_POINTS.items():
        command = ["ngram", "train"] if entry.startswith("python -m") else ["train"]
        result = _whole_process(["-c", code, *command], dataset_args, order, workdir, env)
        if "error" not in result:
            return {"entry": entry, **result}
        errors.append(f"{entry}: {result['error']}")
    return {"error": " | ".join(errors)}


def _whole_process(prefix: list[str], dataset_args: list[str], order: int, workdir: Path,
                   env: dict) -> dict:
    best = None
    for attempt in range(2):
        argv = [sys.executable, *prefix, *dataset_args, "--order",
                str(order), "--lines", "--out", str(workdir / "runs"),
                "--run-name", f"bench-{order}-{attempt}-{time.time_ns()}"]
        start = time.perf_counter()
        child = subprocess.Popen(argv, env=env, cwd=REPO, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE)
        _, stderr = child.communicate()
        wall = time.perf_counter() - start
        stderr = stderr.decode()
        if child.returncode != 0:
            return {"error": stderr[-300:]}
        peak = [int(line.split()[1]) for line in stderr.splitlines() if line.startswith("PEAK_KB")]
        if best is None or wall < best["wall_s"]:
            best = {"wall_s": wall, "peak_rss_mib": peak[-1] / 1024 if peak else None}
    return best


def run(quick: bool) -> dict:
    import numpy as np

    from charrnn import data
    from charrnn.ngram.build import build_model
    from charrnn.tokenizers import CharTokenizer, WordTokenizer

    work = temporary("charrnn-ngram-bench-")
    os.environ["CHARRNN_CACHE"] = str(work / "cache")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    train_text, test_text = split_text(CORPUS)

    # Warm the JIT cache (compiled once, then loaded from charrnn/ngram/__pycache__).
    tiny = CharTokenizer.build(["warm up\n"])
    build_model(tiny.encode("warm up\nwarm up\n"), tiny, 3, lines=True).score_ids(
        tiny.encode("warm up\n"))

    chars = data.preprocess([str(CORPUS)], work / "chars",
                            data.PreprocessOptions(val_frac=0.0, test_frac=0.1))
    assert chars.chars("train") == 1_003_854 and chars.chars("test") == 111_540
    words = WordTokenizer.build([train_text], min_count=2)
    setups = [("char", n, chars.tokenizer, np.asarray(chars.ids("train")),
               np.asarray(chars.ids("test")), [str(chars.root)]) for n in (3, 5, 7, 10)]
    setups += [("word", n, words, words.encode(train_text), words.encode(test_text),
                [str(CORPUS), "--level", "word", "--min-count", "2", "--val-frac", "0",
                 "--test-frac", "0.1"]) for n in (3, 5)]
    if quick:
        setups = [s for s in setups if s[:2] == ("char", 7)]

    results = []
    for level, order, tok, train_ids, test_ids, cli_args in setups:
        seconds, model = timed(lambda: build_model(train_ids, tok, order, lines=True))  # noqa: B023
        nats, scored = model.score_ids(test_ids)
        ppl = math.exp(nats / scored)
        ref = KENLM_PPL[(level, order)]
        row = {"setup": f"{level} order {order}", "test_tokens": scored,
               "perplexity": round(ppl, 5), "kenlm_perplexity": ref,
               "relative_difference": ppl / ref - 1,
               # Words: rare words share one token, so bits/char would flatter them.
               "bits_per_char": nats / math.log(2) / len(test_text) if level == "char" else None,
               "ngrams": model.meta["ngrams"],
               "discounts": [[round(d, 4) for d in ds] for ds in model.meta["discounts"]],
               "build_seconds_in_process": seconds,
               "lmplz_seconds": LMPLZ_SECONDS.get((level, order)),
               **scoring_speed(model, test_ids),
               **kenlm_perplexity(model, test_text, level, work)}
        if "kenlm_module_perplexity_of_our_arpa" in row:
            row["kenlm_module_vs_ours"] = row["kenlm_module_perplexity_of_our_arpa"] / ppl - 1
        process = whole_process(cli_args, order, work, env)
        row.update({f"charrnn_ngram_train_{k}": v for k, v in process.items()})
        results.append(row)
        print(f"{row['setup']}: ppl {ppl:.4f} (KenLM {ref}), build {seconds:.2f}s, "
              f"process {process.get('wall_s', float('nan')):.2f}s", file=sys.stderr)
    return {"corpus": str(CORPUS), "cpus": os.cpu_count(),
            "bench_peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "results": results}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="order-7 characters only")
    args = parser.parse_args()
    if not CORPUS.is_file():
        sys.exit(f"missing corpus {CORPUS}")
    sys.path.insert(0, str(REPO))
    print(json.dumps(run(args.quick), indent=1))


if __name__ == "__main__":
    main()
