"""One frame of the live sampling view, by part: folding the new tokens, making the lines, writing.

    python bench/tui_frame.py [--tokens 1700] [--confident 0.0 0.6 0.95] [--frames 30]
                              [--reference DIR]

Each frame records `--tokens` new tokens (what 25,000 tok/s brings in 1/15 s) into a SampleView
and draws it as the loop does (flush, Frame.lines at 120×40, Console.update_screen_lines into
/dev/null). Token probabilities: a `--confident` share of them 0.9 (one colour), the rest uniform
in [0, 1) — 0 gives runs of one colour as short as random probabilities make them, 0.95 the long
runs of low-temperature sampling. Medians over `--frames` frames after 5 unmeasured ones.
`--reference DIR` runs the same in another checkout (its PYTHONPATH), alternated. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


def frame_parts(tokens: int, confident: float, frames: int) -> dict[str, float]:
    """Median milliseconds of each part of a frame, in this process's checkout."""
    import numpy as np
    from rich.console import Console

    from charrnn.lm.config import SampleOptions
    from charrnn.tui.sample_view import SampleView, ViewInfo

    names = [chr(c) for c in range(32, 97)]
    view = SampleView(ViewInfo("lstm 2×256 char 0.8M", "bench/best", names), SampleOptions())
    view.restart("", 1, 10**9)
    rng = np.random.default_rng(0)
    console = Console(file=open(os.devnull, "w"), force_terminal=True, width=120, height=40,  # noqa: SIM115
                      color_system="truecolor")
    parts: dict[str, list[float]] = {"fold": [], "lines": [], "write": []}
    with console.screen():
        for index in range(frames + 5):
            ids = rng.integers(0, len(names), tokens)
            stats = rng.random((tokens, 12)).astype(np.float32)
            stats[:, 0] = np.where(rng.random(tokens) < confident, 0.9, stats[:, 0])
            stats[:, 7:] = rng.integers(0, len(names), (tokens, 5))
            view.record(ids.tolist(), [names[i] for i in ids], stats)
            started = time.perf_counter()
            view.flush()
            folded = time.perf_counter()
            lines = view.render().lines(console, 120, 40)
            made = time.perf_counter()
            console.update_screen_lines(lines)
            written = time.perf_counter()
            if index >= 5:
                for name, seconds in (("fold", folded - started), ("lines", made - folded),
                                      ("write", written - made)):
                    parts[name].append(seconds * 1000)
    return {name: round(statistics.median(values), 3) for name, values in parts.items()}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=1700)
    parser.add_argument("--confident", type=float, nargs="+", default=[0.0, 0.6, 0.95])
    parser.add_argument("--frames", type=int, default=30)
    parser.add_argument("--reference", type=Path, help="another checkout, run alternately")
    parser.add_argument("--one", type=float, help=argparse.SUPPRESS)  # a child: one share, JSON
    args = parser.parse_args()
    if args.one is not None:
        print(json.dumps(frame_parts(args.tokens, args.one, args.frames)))
        return
    sides = {"this": REPO} | ({"reference": args.reference.resolve()} if args.reference else {})
    results: dict[str, dict] = {side: {} for side in sides}
    for confident in args.confident:
        for side, checkout in sides.items():  # each side in its own process: its own code
            out = subprocess.run([sys.executable, __file__, "--one", str(confident), "--tokens",
                                  str(args.tokens), "--frames", str(args.frames)],
                                 env={**os.environ, "PYTHONPATH": str(checkout)},
                                 capture_output=True, text=True, check=True).stdout
            results[side][f"confident {confident}"] = json.loads(out)
    print(json.dumps({"bench": "tui_frame", "screen": "120x40", "tokens_a_frame": args.tokens,
                      "unit": "ms (median)", **results}, indent=1))


if __name__ == "__main__":
    main()
