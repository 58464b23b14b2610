"""Training throughput: charrnn's training step against a plain PyTorch loop of the same size.

    python bench/train_speed.py --device cuda                      # 3×512 LSTM, 128 × 256 (issue bar)
    python bench/train_speed.py --device cpu --hidden 256 --layers 2 --batch-size 32 --seq-len 64

The reference is the obvious loop: nn.Embedding → nn.LSTM → nn.Linear, cross-entropy, backward,
AdamW (fused on CUDA) with bf16 autocast on CUDA, batches already on the device. charrnn's side is
`Loop.step` (the whole step: batch from the memmap stream, autocast, clipping, schedule,
carried state, and on CUDA float16 autocast with loss scaling: the cuDNN RNN runs in float16 under
the reference's bf16 autocast too), on the same tiny Shakespeare ids. Both run in this process,
alternating, so the ratio holds on a noisy machine. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from harness import temporary
from shared_corpora import SHAKESPEARE as CORPUS


class PlainLM(nn.Module):
    def __init__(self, vocab: int, hidden: int, layers: int, cell: str) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab, hidden)
        self.rnn = {"lstm": nn.LSTM, "gru": nn.GRU}[cell](hidden, hidden, layers, batch_first=True)
        self.head = nn.Linear(hidden, vocab)

    def forward(self, x, state):
        out, state = self.rnn(self.embed(x), state)
        return self.head(out), state


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def plain_steps(ids: torch.Tensor, args, device: torch.device, steps: int):
    """A generator: each next() runs `steps` plain training steps and yields seconds taken."""
    torch.manual_seed(0)
    model = PlainLM(int(ids.max()) + 1, args.hidden, args.layers, args.cell).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, fused=device.type == "cuda")
    b, t = args.batch_size, args.seq_len
    rows = ids[: (len(ids) // b) * b].view(b, -1).to(device)
    state, pos = None, 0
    while True:
        sync(device)
        start = time.perf_counter()
        for _ in range(steps):
            if pos + t + 1 > rows.size(1):
                pos, state = 0, None
            x, y = rows[:, pos : pos + t], rows[:, pos + 1 : pos + t + 1]
            pos += t
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=device.type == "cuda"):
                logits, state = model(x, state)
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            state = tuple(s.detach() for s in state) if isinstance(state, tuple) else state.detach()
        sync(device)
        yield time.perf_counter() - start


def charrnn_steps(args, device: torch.device, steps: int, work: Path):
    from charrnn import data
    from charrnn.lm.config import TrainConfig
    from charrnn.lm.train import Trainer

    dataset = data.preprocess([str(args.corpus)], work / "ds", data.PreprocessOptions(
        val_frac=0.1, test_frac=0.0))
    cfg = TrainConfig(cell=args.cell, layers=args.layers, hidden=args.hidden, dropout=0.0,
                      tie_weights=False, seq_len=args.seq_len, batch_size=args.batch_size,
                      device=str(device), max_steps=10**9, warmup=0)
    trainer = Trainer(dataset, cfg, work / "run")
    ids = torch.from_numpy(dataset.ids("train").astype("int64"))

    def run():
        while True:
            sync(device)
            start = time.perf_counter()
            for _ in range(steps):
                trainer.loop.step()
            sync(device)
            yield time.perf_counter() - start

    return ids, run()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--cell", default="lstm", choices=("lstm", "gru"))
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--hidden", type=int, default=512)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--seq-len", type=int, default=256)
    parser.add_argument("--steps", type=int, default=20, help="steps per timed round")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--corpus", default=str(CORPUS))
    args = parser.parse_args()
    device = torch.device(args.device)
    work = temporary("charrnn-train-speed-")
    ids, ours = charrnn_steps(args, device, args.steps, work)
    plain = plain_steps(ids, args, device, args.steps)
    next(ours), next(plain)  # warm-up: cuDNN plans, allocator, first-call costs
    times = {"charrnn": [], "plain": []}
    for _ in range(args.rounds):  # alternate, so drift hits both alike
        times["charrnn"].append(next(ours))
        times["plain"].append(next(plain))
    tokens = args.steps * args.batch_size * args.seq_len
    rate = {k: tokens / statistics.median(v) for k, v in times.items()}
    print(json.dumps({
        "bench": "train_speed", "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "threads": torch.get_num_threads(), "model": f"{args.cell} {args.layers}x{args.hidden}",
        "batch": f"{args.batch_size}x{args.seq_len}",
        "charrnn_tokens_per_s": round(rate["charrnn"]), "plain_tokens_per_s": round(rate["plain"]),
        "ratio": round(rate["charrnn"] / rate["plain"], 3), "required_on_gpu": 0.95,
    }, indent=1))


if __name__ == "__main__":
    main()
