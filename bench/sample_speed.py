"""Sampling speed: charrnn's Sampler against a plain eager PyTorch loop, 1 and 64 streams.

    python bench/sample_speed.py [--tokens 2000] [--streams 64] [--device cpu|cuda]
    python bench/sample_speed.py --word      # vocabulary 10,000: adaptive vs full softmax

The reference loop is the obvious one (embedding → nn.LSTM → linear → softmax → multinomial per
token, in torch.inference_mode) and runs in the same process on the same weights, so the ratio
holds on a noisy machine. One stream is what `charrnn sample` streams; `--streams` rows are
`--num-samples N` (all streams side by side; tokens/s counts every stream). Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from charrnn.lm.config import ModelConfig
from charrnn.lm.model import RNNLM
from charrnn.lm.sample import SampleOptions, Sampler


@torch.inference_mode()
def eager_reference(model: RNNLM, tokens: int, device: torch.device, streams: int = 1) -> float:
    generator = torch.Generator(device=device).manual_seed(0)
    token, state = torch.zeros(streams, 1, dtype=torch.long, device=device), None
    start = time.perf_counter()
    for _ in range(tokens):
        out, state = model.rnn(model.embed(token), state)
        probs = torch.softmax(model.head(out[:, -1]), dim=-1)
        token = torch.multinomial(probs, 1, generator=generator)
        if streams == 1:
            int(token)  # a streamed token is written as it comes
    token.tolist()
    return streams * tokens / (time.perf_counter() - start)


def charrnn_batch(model: RNNLM, tokens: int, device: torch.device, streams: int) -> float:
    """Steady-state tokens/s: each call sets up its own stepper (on CUDA a graph capture, which
    empties the allocator's cache), so time a long and a short call and count the difference."""
    sampler = Sampler(model, device, SampleOptions(seed=0))

    def seconds(length: int) -> float:
        start = time.perf_counter()
        sampler.sample_batch([0], streams, length)
        return time.perf_counter() - start

    short = 8
    seconds(short)  # warm-up: cuDNN, the allocator
    return streams * (tokens - short) / max(seconds(tokens) - seconds(short), 1e-9)


def charrnn_sampler(model: RNNLM, tokens: int, device: torch.device) -> float:
    stream = Sampler(model, device, SampleOptions(seed=0)).stream([0])
    next(stream)
    start = time.perf_counter()
    for _ in range(tokens):
        next(stream)
    return tokens / (time.perf_counter() - start)


def word_rows(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Word level: charrnn's sampler over a 10,000-word vocabulary with the adaptive softmax
    (exact distribution: head + every tail) against the full softmax, alternated rounds."""
    models = {}
    for softmax, cutoffs in (("full", []), ("adaptive", [2000, 6000])):
        torch.manual_seed(0)
        models[softmax] = RNNLM(ModelConfig(10000, "lstm", 2, 512, dropout=0.0, softmax=softmax,
                                            cutoffs=cutoffs)).to(device).eval()
    rows = []
    for streams, tokens in ((1, args.tokens), (args.streams, max(50, args.tokens // 4))):
        best = {name: 0.0 for name in models}
        for _ in range(3):
            for name, model in models.items():
                rate = (charrnn_sampler(model, tokens, device) if streams == 1
                        else charrnn_batch(model, tokens, device, streams))
                best[name] = max(best[name], rate)
        rows.append({"model": "lstm 2x512, vocab 10000", "streams": streams,
                     "full_tokens_per_s": round(best["full"]),
                     "adaptive_tokens_per_s": round(best["adaptive"]),
                     "adaptive_over_full": round(best["adaptive"] / best["full"], 2)})
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--tokens", type=int, default=2000)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--word", action="store_true", help="adaptive vs full softmax, 10k words")
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.word:
        print(json.dumps({"bench": "sample_speed_word", "device": str(device),
                          "threads": torch.get_num_threads(), "rows": word_rows(args, device)},
                         indent=1))
        return
    rows = []
    for hidden in (256, 512):
        torch.manual_seed(0)
        model = RNNLM(ModelConfig(65, "lstm", 2, hidden, dropout=0.0)).to(device).eval()
        eager = max(eager_reference(model, args.tokens, device) for _ in range(2))
        ours = max(charrnn_sampler(model, args.tokens, device) for _ in range(2))
        rows.append({"model": f"lstm 2x{hidden}", "streams": 1, "eager_tokens_per_s": round(eager),
                     "charrnn_tokens_per_s": round(ours), "speedup": round(ours / eager, 2)})
        steps = max(50, args.tokens // 4)
        eager = max(eager_reference(model, steps, device, args.streams) for _ in range(2))
        ours = max(charrnn_batch(model, steps, device, args.streams) for _ in range(2))
        rows.append({"model": f"lstm 2x{hidden}", "streams": args.streams,
                     "eager_tokens_per_s": round(eager), "charrnn_tokens_per_s": round(ours),
                     "speedup": round(ours / eager, 2)})
    print(json.dumps({"bench": "sample_speed", "device": str(device),
                      "threads": torch.get_num_threads(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
