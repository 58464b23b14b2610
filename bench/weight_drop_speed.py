"""What `--weight-drop` costs in training: charrnn's training step with and without DropConnect on
the recurrent matrices, the same model shape and batches, timed in alternating rounds in this
process (so the ratio holds on a noisy machine). Prints JSON.

    python bench/weight_drop_speed.py --device cuda          # 3×512 LSTM, 128 × 256 (bench/gpu_suite.sh)
    python bench/weight_drop_speed.py --device cpu --hidden 64 --layers 2 --batch-size 8 --seq-len 32

What `--weight-drop p` adds to a step (charrnn/lm/model.py, `_recurrent`): a dropout of every
weight_hh_l* (a mask and a product, and their backward), and `torch.func.functional_call` swaps
the dropped copies into the module, so its weights are no longer views of one flat buffer: cuDNN
copies all of them (input, recurrent, biases, every layer) into a fresh buffer on every forward
and its weight gradient comes back through that buffer. On CUDA, charrnn trains under float16
autocast, and autocast's cuDNN wrapper already casts the float32 weights into a fresh float16
flat buffer on every forward, weight drop or not; `rnn_weight_bytes` is what such a copy reads
(float32) and `flat_fp16_bytes` what it writes.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from harness import temporary
from shared_corpora import SHAKESPEARE as CORPUS


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def rounds(dataset, cfg, run_dir: Path, device: torch.device, steps: int):
    """(the model, a generator: each next() runs `steps` training steps, yields seconds, peak MiB)."""
    from charrnn.lm.train import Trainer

    trainer = Trainer(dataset, cfg, run_dir)
    step = getattr(trainer, "_step", None) or trainer.loop.step  # the loop's whole training step

    def run():
        while True:
            sync(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            start = time.perf_counter()
            for _ in range(steps):
                step()
            sync(device)
            peak = torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else None
            yield time.perf_counter() - start, peak

    return trainer.model, run()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cell", default="lstm", choices=("lstm", "gru", "rnn"))
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--weight-drop", type=float, default=0.3)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--corpus", default=str(CORPUS))
    args = parser.parse_args()
    device = torch.device(args.device)
    from charrnn import data
    from charrnn.lm.config import TrainConfig

    work = temporary("charrnn-weight-drop-")
    dataset = data.preprocess([args.corpus], work / "ds", data.PreprocessOptions(
        val_frac=0.1, test_frac=0.0))
    runs, model = {}, None
    for name, p in (("plain", 0.0), ("weight_drop", args.weight_drop)):
        cfg = TrainConfig(cell=args.cell, layers=args.layers, hidden=args.hidden, dropout=0.0,
                          tie_weights=False, weight_drop=p, seq_len=args.seq_len,
                          batch_size=args.batch_size, device=str(device), max_steps=10**9,
                          warmup=0)
        model, runs[name] = rounds(dataset, cfg, work / name, device, args.steps)
    for run in runs.values():
        next(run)  # warm-up: cuDNN plans, the allocator, first-call costs
    seconds, peaks = {k: [] for k in runs}, {k: [] for k in runs}
    for _ in range(args.rounds):  # alternate, so drift hits both alike
        for name, run in runs.items():
            took, peak = next(run)
            seconds[name].append(took)
            peaks[name].append(peak)
    tokens = args.steps * args.batch_size * args.seq_len
    rate = {k: tokens / statistics.median(v) for k, v in seconds.items()}
    rnn = list(model.rnn.parameters())
    numel = sum(p.numel() for p in rnn)
    hh = sum(p.numel() for n, p in model.rnn.named_parameters() if n.startswith("weight_hh"))
    print(json.dumps({
        "bench": "weight_drop_speed", "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__, "model": f"{args.cell} {args.layers}x{args.hidden}",
        "batch": f"{args.batch_size}x{args.seq_len}", "weight_drop": args.weight_drop,
        "plain_tokens_per_s": round(rate["plain"]),
        "weight_drop_tokens_per_s": round(rate["weight_drop"]),
        "ratio": round(rate["weight_drop"] / rate["plain"], 3),
        "ms_per_step": {k: round(1e3 * statistics.median(v) / args.steps, 2)
                        for k, v in seconds.items()},
        "peak_mib": {k: round(max(v)) if v[0] is not None else None for k, v in peaks.items()},
        "rnn_weights": numel, "rnn_weight_bytes": numel * rnn[0].element_size(),
        "flat_fp16_bytes": numel * 2, "weight_hh_bytes": hh * rnn[0].element_size(),
    }, indent=1))


if __name__ == "__main__":
    main()
