"""The whole `charrnn sample` command in a terminal: the live view against plain output.

    python bench/tui_cli.py [--hidden 256] [--lengths 1000 20000] [--rounds 5] [--device cpu]
                            [--reference DIR]

A randomly initialised 2-layer LSTM char model (bench/sample_cli.py's run) is sampled by new
processes, rounds alternating:
    plain   `python -m charrnn sample RUN --length N --plain --seed 1`, output to a pipe: the
            process's wall time
    live    the same without --plain, in a pseudo-terminal of 120×40 (the live view): seconds
            from the start until the screen says "done" (the last token drawn); then `q`
Both include the imports and the model's load, as a user waits for them. `ratio` is plain's
median over the live view's (≥ 1: the live view is done no later). Issue 21's bar: the live
view at least as fast as plain output. `--reference DIR` runs the same rounds of the code in DIR
(a checkout: its PYTHONPATH) alternated with this one's, under "reference". Prints JSON.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import os
import pty
import select
import statistics
import struct
import subprocess
import sys
import tempfile
import termios
import time
from pathlib import Path

from sample_cli import REPO, make_run
from sample_cli import wall as plain_wall  # --plain to a pipe: the process's wall time

DONE = "· done".encode()  # the view's title once the last token is on screen


def live_command(run: Path, length: int, device: str) -> list[str]:
    return [sys.executable, "-m", "charrnn", "sample", str(run), "--length", str(length),
            "--device", device, "--seed", "1"]


def live_wall(run: Path, length: int, device: str, env: dict, timeout: float = 120.0) -> float:
    """Seconds until the live view in a pseudo-terminal shows "done"."""
    leader, follower = pty.openpty()
    fcntl.ioctl(follower, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))
    env = {**env, "TERM": "xterm-256color"}
    start = time.perf_counter()
    proc = subprocess.Popen(live_command(run, length, device), stdin=follower,
                            stdout=follower, stderr=follower, env=env, cwd=run.parent,
                            close_fds=True)
    os.close(follower)
    seen, seconds, screen = b"", None, b""
    try:
        while seconds is None and time.perf_counter() - start < timeout:
            if select.select([leader], [], [], 1.0)[0]:
                try:
                    block = os.read(leader, 1 << 16)
                except OSError:  # the child is gone: its last words are in `screen`
                    break
                seen, screen = seen[-64:] + block, (screen + block)[-2000:]
                if DONE in seen:
                    seconds = time.perf_counter() - start
            elif proc.poll() is not None:
                break
        os.write(leader, b"q")
        deadline = time.perf_counter() + 10
        while proc.poll() is None and time.perf_counter() < deadline:  # drain until it exits
            if select.select([leader], [], [], 0.1)[0]:
                try:
                    os.read(leader, 1 << 16)
                except OSError:
                    break
    finally:
        proc.kill() if proc.poll() is None else None
        proc.wait()
        os.close(leader)
    if seconds is None:
        sys.exit(f"the live view never showed done (exit {proc.returncode}): "
                 f"{screen.decode(errors='replace')[-500:]}")
    return seconds


def summary(length: int, plain: list[float], live: list[float]) -> dict:
    return {"length": length, "plain_median_s": round(statistics.median(plain), 3),
            "live_median_s": round(statistics.median(live), 3),
            "ratio": round(statistics.median(plain) / statistics.median(live), 3),
            "plain_s": [round(s, 3) for s in plain], "live_s": [round(s, 3) for s in live]}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--hidden", type=int, default=256)
    parser.add_argument("--lengths", type=int, nargs="+", default=[1000, 20000])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--reference", type=Path, help="another checkout, timed alternately")
    args = parser.parse_args()
    # Each side's code by PYTHONPATH, the processes started outside any checkout (`-m` puts
    # the working folder first on sys.path).
    sides = {"this": {**os.environ, "PYTHONPATH": str(REPO)}}
    if args.reference:
        sides["reference"] = {**os.environ, "PYTHONPATH": str(args.reference.resolve())}
    results: dict[str, list] = {side: [] for side in sides}
    with tempfile.TemporaryDirectory() as tmp:
        run = make_run(Path(tmp), args.hidden)
        for env in sides.values():  # warm-up: the kernel's compile cache, the disk cache
            plain_wall(run, 3000, args.device, env)
        for length in args.lengths:
            times = {side: ([], []) for side in sides}
            for _ in range(args.rounds):
                for side, env in sides.items():
                    times[side][0].append(plain_wall(run, length, args.device, env))
                    times[side][1].append(live_wall(run, length, args.device, env))
            for side, (plain, live) in times.items():
                results[side].append(summary(length, plain, live))
    print(json.dumps({"bench": "tui_cli", "model": f"lstm 2x{args.hidden} char vocab 65",
                      "device": args.device, "screen": "120x40", "rounds": args.rounds,
                      **results}, indent=1))


if __name__ == "__main__":
    main()
