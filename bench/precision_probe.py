"""bfloat16 against float32 on this CPU: the facts `--precision auto` decides from. JSON.

    flock /tmp/charrnn-bench.lock python bench/precision_probe.py
    python bench/precision_probe.py --threads 2 --rounds 3     # quicker

For 1 and 2 threads: matmul GFLOP/s in float32, in bfloat16 (operands already bf16) and under CPU
bf16 autocast (float32 operands cast at each call, as in training), on the shapes a run has:

    square       512 × 2048 @ 2048 × 512     the issue's figure
    lstm_input   2048 × 512 @ 512 × 2048     a 2×512 LSTM's input gates for a 32 × 64 batch
    lstm_step    32 × 512 @ 512 × 2048       its recurrent product, once per time step
    word_output  2240 × 512 @ 512 × 10000    a 10k-word full softmax for a 64 × 35 batch

then nn.LSTM / nn.GRU (2×512, 32 streams × --rnn-steps) forward + backward in fp32 and under bf16
autocast. Rounds alternate fp32 / bf16, so drift hits both alike; figures are medians.

How long a probe must run to decide: `probe` repeats a tiny probe on the lstm_step shape (one
warm and one timed call of fp32, then of autocast) and reports the spread of the ratio it sees,
what one such probe costs, and the noise floor (the same probe with fp32 on both sides);
`first_call_ms` is the cost of the first call of each kind in a fresh process (kernel
selection), which a real probe pays once.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import torch
from torch import nn

SHAPES = {"square": (512, 2048, 512), "lstm_input": (2048, 512, 2048),
          "lstm_step": (32, 512, 2048), "word_output": (2240, 512, 10000)}


def seconds(fn, calls: int) -> float:
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    return (time.perf_counter() - start) / calls


def matmul_kinds(m: int, k: int, n: int) -> dict:
    a, b = torch.randn(m, k), torch.randn(k, n)
    a16, b16 = a.bfloat16(), b.bfloat16()

    def autocast():
        with torch.autocast("cpu", dtype=torch.bfloat16):
            return a @ b

    return {"fp32": lambda: a @ b, "bf16": lambda: a16 @ b16, "autocast": autocast}


def first_calls() -> dict:
    """ms of the first fp32, bf16 and autocast call in this process (before anything warmed)."""
    out = {}
    for name, fn in matmul_kinds(*SHAPES["lstm_step"]).items():
        start = time.perf_counter()
        fn()
        out[name] = round(1e3 * (time.perf_counter() - start), 1)
    return out


def matmul_rates(rounds: int, budget: float) -> dict:
    """GFLOP/s per kind, medians of alternated rounds. A kind whose one call at the full shape
    would take over `budget` × 5 (bf16 without native support) is measured on fewer rows
    (`rows`): its GFLOP/s hardly depends on them, and a 20-second call would teach nothing more."""
    result = {}
    for shape, (m, k, n) in SHAPES.items():
        probe = {name: seconds(fn, 1) for name, fn in matmul_kinds(32, k, n).items()}
        rows = {name: max(32, min(m, int(32 * 5 * budget / t))) for name, t in probe.items()}
        kinds = {name: matmul_kinds(rows[name], k, n)[name] for name in probe}
        per = {name: seconds(fn, 1) for name, fn in kinds.items()}  # warm-up and sizing
        calls = {name: max(1, int(budget / t)) for name, t in per.items()}
        times = {name: [] for name in kinds}
        for _ in range(rounds):
            for name, fn in kinds.items():
                times[name].append(seconds(fn, calls[name]))
        gflops = {name: 2 * rows[name] * k * n / statistics.median(t) / 1e9
                  for name, t in times.items()}
        result[shape] = {"mkn": [m, k, n], "rows": rows,
                         **{f"{k}_gflops": round(v, 2) for k, v in gflops.items()},
                         "bf16_over_fp32": round(gflops["bf16"] / gflops["fp32"], 4),
                         "autocast_over_fp32": round(gflops["autocast"] / gflops["fp32"], 4)}
    return result


def probe_spread(repeats: int, shape: str = "lstm_step") -> dict:
    """A tiny probe on one shape (one warm + one timed call of fp32, then of autocast), `repeats`
    times: the spread of the ratio it sees, what one probe costs, and the same probe with fp32 on
    both sides (the noise floor: the ratio a probe sees when there is no difference)."""
    kinds = matmul_kinds(*SHAPES[shape])
    ratios, nulls, costs = [], [], []
    for _ in range(repeats):
        start = time.perf_counter()
        kinds["fp32"]()
        t32 = seconds(kinds["fp32"], 1)
        kinds["autocast"]()
        t16 = seconds(kinds["autocast"], 1)
        costs.append(time.perf_counter() - start)
        ratios.append(t32 / t16)  # > 1: autocast faster
        nulls.append(t32 / seconds(kinds["fp32"], 1))
    return {"shape": shape, "mkn": SHAPES[shape], "repeats": repeats,
            "autocast_over_fp32_min": round(min(ratios), 4),
            "autocast_over_fp32_median": round(statistics.median(ratios), 4),
            "autocast_over_fp32_max": round(max(ratios), 4),
            "fp32_over_fp32_min": round(min(nulls), 3), "fp32_over_fp32_max": round(max(nulls), 3),
            "probe_ms_median": round(1e3 * statistics.median(costs), 1),
            "probe_ms_max": round(1e3 * max(costs), 1)}


def rnn_step(rnn: nn.Module, x: torch.Tensor, bf16: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        out, _ = rnn(x)
    out.float().square().mean().backward()


def rnn_rates(rounds: int, cells: tuple[str, ...], steps: int) -> dict:
    """tokens/s of a 2×512 cell's forward + backward, 32 streams × `steps`, fp32 vs bf16 autocast
    (an error, such as oneDNN refusing a bf16 LSTM on a CPU without bf16, is reported)."""
    torch.manual_seed(0)
    result = {}
    for cell in cells:
        rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](512, 512, 2)
        x = torch.randn(steps, 32, 512, requires_grad=True)

        kinds = {"fp32": lambda r=rnn, x=x: rnn_step(r, x, False),
                 "bf16_autocast": lambda r=rnn, x=x: rnn_step(r, x, True)}
        try:
            for fn in kinds.values():
                fn()
        except RuntimeError as exc:
            result[cell] = {"fp32_tok_s": round(32 * steps / seconds(kinds["fp32"], 1)),
                            "bf16_autocast_error": str(exc).splitlines()[0][:160]}
            continue
        times = {name: [] for name in kinds}
        for _ in range(rounds):
            for name, fn in kinds.items():
                times[name].append(seconds(fn, 1))
        rate = {name: steps * 32 / statistics.median(t) for name, t in times.items()}
        result[cell] = {**{f"{k}_tok_s": round(v) for k, v in rate.items()},
                        "bf16_over_fp32": round(rate["bf16_autocast"] / rate["fp32"], 3),
                        "fp32_step_ms": round(1e3 * statistics.median(times["fp32"]), 1)}
    return result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--round-seconds", type=float, default=0.2, help="per kind per round")
    parser.add_argument("--repeats", type=int, default=10, help="tiny probes")
    parser.add_argument("--rnn-rounds", type=int, default=3)
    parser.add_argument("--rnn-steps", type=int, default=16, help="time steps of the RNN batch")
    args = parser.parse_args()
    out = {"bench": "precision_probe", "torch": torch.__version__,
           "capability": torch.backends.cpu.get_cpu_capability(),
           "first_call_ms": first_calls(), "threads": {}}
    torch.manual_seed(0)
    for threads in args.threads:
        torch.set_num_threads(threads)
        out["threads"][threads] = {
            "matmul": matmul_rates(args.rounds, args.round_seconds),
            "probe": probe_spread(args.repeats),
            f"rnn_2x512_32x{args.rnn_steps}": rnn_rates(args.rnn_rounds, ("lstm", "gru"),
                                                        args.rnn_steps),
        }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
