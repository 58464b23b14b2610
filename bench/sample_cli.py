"""The whole `charrnn sample` command as a user runs it: streaming speed and start-up.

    python bench/sample_cli.py [--device cpu|cuda] [--hidden 256] [--long 20000] [--short 1000]
                               [--rounds 5] [--startup-hidden 512]

A randomly initialised 2-layer LSTM char model (vocab 65; weights do not change the speed) is
saved as a real checkpoint, then `python -m charrnn sample RUN --length N --plain --device D` runs
as a new process, its output read through a pipe. Streaming: the marginal tokens/s, (long −
short) / (median wall of long − median wall of short), so imports, loading and (on CUDA) the graph
capture cancel out; rounds alternate long and short. Start-up: the median wall of `--length 1` on
a 2×`--startup-hidden` model. Issue 21's bars: CPU 2×256 ≥ 10,000 tok/s marginal and start-up
≤ 1.5 s; CUDA 2×512 one stream ≥ 25,000 tok/s. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BARS = {("cpu", 256): 10_000, ("cuda", 512): 25_000}
STARTUP_BAR = 1.5


def make_run(folder: Path, hidden: int) -> Path:
    import string

    import torch

    from charrnn import checkpoint
    from charrnn.lm.config import ModelConfig
    from charrnn.lm.model import RNNLM
    from charrnn.tokenizers import CharTokenizer

    tokenizer = CharTokenizer(sorted(set(string.ascii_letters + " \n.,;:!?'-&$3")))  # 65
    torch.manual_seed(0)
    config = ModelConfig(tokenizer.vocab_size, "lstm", 2, hidden, dropout=0.0)
    meta = {"model": config.to_json(), "tokenizer": tokenizer.to_json(), "progress": {"step": 0},
            "metrics": {}}
    checkpoint.save(folder / f"lstm{hidden}" / "best", RNNLM(config), meta, None)
    return folder / f"lstm{hidden}" / "best"


def wall(run: Path, length: int, device: str, env: dict) -> float:
    """Seconds for the whole process; its output is read from a pipe, as `| cat` would."""
    command = [sys.executable, "-m", "charrnn", "sample", str(run), "--length", str(length),
               "--plain", "--device", device, "--seed", "1"]
    start = time.perf_counter()
    # Started beside the run, outside any checkout: `-m` puts the working folder first on
    # sys.path, ahead of PYTHONPATH, which says whose code runs.
    out = subprocess.run(command, capture_output=True, env=env, cwd=run.parent, check=False)
    seconds = time.perf_counter() - start
    if out.returncode != 0:
        sys.exit(out.stderr.decode(errors="replace"))
    if len(out.stdout.decode()) < length:
        sys.exit(f"expected {length} characters, got {len(out.stdout)}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--hidden", type=int, default=None, help="default: 256 on the CPU, "
                        "512 on CUDA (the bars' models)")
    parser.add_argument("--long", type=int, default=20_000)
    parser.add_argument("--short", type=int, default=1_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--startup-hidden", type=int, default=512)
    args = parser.parse_args()
    hidden = args.hidden or (512 if args.device.startswith("cuda") else 256)
    with tempfile.TemporaryDirectory() as tmp:
        env = {**os.environ, "CHARRNN_CACHE": str(Path(tmp) / "cache"),
               "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        run = make_run(Path(tmp), hidden)
        startup_run = run if args.startup_hidden == hidden else make_run(Path(tmp),
                                                                          args.startup_hidden)
        wall(run, args.long, args.device, env)  # warm-up: the OS's file cache, and the CPU
        #                                         kernel's machine code, made at its first use
        long, short, startup = [], [], []
        for _ in range(args.rounds):
            long.append(wall(run, args.long, args.device, env))
            short.append(wall(run, args.short, args.device, env))
            startup.append(wall(startup_run, 1, args.device, env))
    delta = statistics.median(long) - statistics.median(short)
    rate = (args.long - args.short) / delta if delta > 0 else float("inf")
    key = (args.device.split(":")[0], hidden)
    result = {
        "bench": "sample_cli", "device": args.device, "model": f"lstm 2x{hidden} char vocab 65",
        "rounds": args.rounds, "long": args.long, "short": args.short,
        "long_s": [round(s, 3) for s in long], "short_s": [round(s, 3) for s in short],
        "marginal_tokens_per_s": round(rate), "bar_tokens_per_s": BARS.get(key),
        "startup_model": f"lstm 2x{args.startup_hidden}",
        "startup_s_median": round(statistics.median(startup), 3),
        "startup_s": [round(s, 3) for s in startup], "startup_bar_s": STARTUP_BAR,
    }
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
