"""Sampling speed: charrnn's chunked Sampler against plain PyTorch loops, 1 and 64 streams.

    python bench/sample_speed.py [--tokens 2000] [--streams 64] [--device cpu|cuda] [--chunk K]
    python bench/sample_speed.py --word      # vocabulary 10,000: adaptive vs full softmax

References, in the same process on the same weights (so the ratios hold on a noisy machine):
- eager: embedding → nn.LSTM → linear → softmax → multinomial per token, in inference mode;
- graph (CUDA only): the loop of ../shared/gpu-runs/ref_sample_graph.py — embedding → nn.LSTM →
  linear → temperature → Gumbel-max, one token captured in a CUDA graph, replayed with no host
  read inside the loop (its figure on an H200: 25,190 tok/s at batch 1).
One stream is what `charrnn sample` streams (the ids reach the host, a chunk at a time; on the
CPU the compiled kernel after its take-over, on the lanes cpulanes.py chooses — measuring both
kinds as it goes — `charrnn_one_lane` the kernel on one core with the next chunk drawn ahead,
`charrnn_numpy` the NumPy step of a stream's first 512 tokens (and of `--plain` samples of
up to 600), `charrnn_pytorch` the PyTorch
step of several streams, cpustream.py);
`--streams` rows are `--num-samples N` (tokens/s counts every stream). `stats_over_plain` is the
live view's share: the same stream with the per-token probability, entropy and top-5 computed
inside the chunks. The bars of issue 21 (CUDA, 2×512): ≥ 25,000 tok/s one stream, ≥ 1,200,000
at 64 streams. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import time
from unittest import mock

import torch

from charrnn.lm import cpulanes, cpustream
from charrnn.lm.config import ModelConfig
from charrnn.lm.model import RNNLM
from charrnn.lm.sample import SampleOptions, Sampler

BARS = {"cuda": {1: 25_000, 64: 1_200_000}}


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


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


@torch.inference_mode()
def graph_reference(model: RNNLM, tokens: int, device: torch.device, streams: int = 1) -> float:
    """ref_sample_graph.py's loop on this model: one step with Gumbel-max captured once, then
    replay + copy the token and state back, no host read until the end."""
    cfg = model.config
    x = torch.zeros(streams, 1, dtype=torch.long, device=device)
    h = torch.zeros(cfg.layers, streams, cfg.hidden, device=device)
    c = torch.zeros_like(h)

    def step():
        y, (h2, c2) = model.rnn(model.embed(x), (h, c))
        logits = model.head(y[:, -1]) / 0.8
        gumbel = -torch.log(-torch.log(torch.rand_like(logits).clamp_(1e-20, 1.0)))
        return (logits + gumbel).argmax(-1, keepdim=True), h2, c2

    side = torch.cuda.Stream(device)
    side.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(side):
        for _ in range(3):
            step()
    torch.cuda.current_stream(device).wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        x2, h2, c2 = step()
    _sync(device)
    start = time.perf_counter()
    for _ in range(tokens):
        graph.replay()
        x.copy_(x2)
        h.copy_(h2)
        c.copy_(c2)
    _sync(device)
    return streams * tokens / (time.perf_counter() - start)


def charrnn_rate(model: RNNLM, tokens: int, device: torch.device, streams: int = 1,
                 chunk: int | None = None, stats: bool = False, compiled: bool = True) -> float:
    """Steady state: the stream is set up (on CUDA: the graph captured; one CPU stream: the
    compiled kernel has taken over) and one chunk drawn before the clock starts; the clock stops
    when the last ids are on the host. compiled=False: the Python-driven step throughout."""
    sampler = Sampler(model, device, SampleOptions(seed=0), chunk=chunk, compiled=compiled)
    stream = sampler.tokens([0], streams, stats)
    past_take_over = compiled and device.type == "cpu" and streams == 1 \
        and cpustream.TAKE_OVER < 10**6  # (not while charrnn_numpy keeps the kernel off)
    stream.take_all(sampler.chunk + (cpustream.TAKE_OVER if past_take_over else 0))
    _sync(device)
    start = time.perf_counter()
    stream.take_all(tokens)
    return streams * tokens / (time.perf_counter() - start)


def measure(key: str, model: RNNLM, tokens: int, device: torch.device, streams: int,
            chunk: int | None) -> float:
    if key == "eager":
        return eager_reference(model, tokens, device, streams)
    if key == "graph_ref":
        return graph_reference(model, tokens, device, streams)
    if key == "charrnn_numpy":  # the engine of a stream's first TAKE_OVER tokens
        with mock.patch.object(cpustream, "TAKE_OVER", 10**9):
            return charrnn_rate(model, tokens, device, streams, chunk)
    if key == "charrnn_one_lane":  # the kernel on one core, the next chunk drawn ahead
        with mock.patch.object(cpulanes.LaneChoice, "lanes", lambda self: 1):
            return charrnn_rate(model, tokens, device, streams, chunk)
    return charrnn_rate(model, tokens, device, streams, chunk, stats=key == "charrnn_stats",
                        compiled=key != "charrnn_pytorch")


def rows_for(model: RNNLM, name: str, args: argparse.Namespace, device: torch.device) -> list:
    rows = []
    for streams, tokens in ((1, args.tokens), (args.streams, max(64, args.tokens // 4))):
        keys = ["eager", "charrnn"] + (["charrnn_stats"] if streams == 1 else []) + \
            (["graph_ref"] if device.type == "cuda" else []) + \
            (["charrnn_one_lane", "charrnn_numpy", "charrnn_pytorch"]
             if device.type == "cpu" and streams == 1 else [])
        rates = dict.fromkeys(keys, 0.0)
        for _ in range(args.rounds):  # alternated rounds, best of each
            for key in keys:
                rates[key] = max(rates[key], measure(key, model, tokens, device, streams,
                                                     args.chunk))
        row = {"model": name, "streams": streams, **{f"{k}_tokens_per_s": round(v)
                                                      for k, v in rates.items()},
               "speedup_over_eager": round(rates["charrnn"] / rates["eager"], 2)}
        if "graph_ref" in rates:
            row["over_graph_ref"] = round(rates["charrnn"] / rates["graph_ref"], 3)
        if "charrnn_pytorch" in rates:
            row["kernel_over_pytorch"] = round(rates["charrnn"] / rates["charrnn_pytorch"], 2)
            row["numpy_over_pytorch"] = round(rates["charrnn_numpy"] / rates["charrnn_pytorch"],
                                              2)
            row["chosen_lanes_over_one"] = round(rates["charrnn"] / rates["charrnn_one_lane"], 2)
        if "charrnn_stats" in rates:
            row["stats_over_plain"] = round(rates["charrnn_stats"] / rates["charrnn"], 3)
        bar = BARS.get(device.type, {}).get(streams)
        if bar and name.endswith("2x512"):
            row["bar_tokens_per_s"], row["meets_bar"] = bar, rates["charrnn"] >= bar
        rows.append(row)
    return rows


def word_rows(args: argparse.Namespace, device: torch.device) -> list[dict]:
    """Word level: charrnn's sampler over a 10,000-word vocabulary with the adaptive softmax
    (exact distribution: head + every tail) against the full softmax, alternated rounds."""
    models = {}
    for softmax, cutoffs in (("full", []), ("adaptive", [2000, 6000])):
        torch.manual_seed(0)
        models[softmax] = RNNLM(ModelConfig(10000, "lstm", 2, 512, dropout=0.0, softmax=softmax,
                                            cutoffs=cutoffs)).to(device).eval()
    rows = []
    for streams, tokens in ((1, args.tokens), (args.streams, max(64, args.tokens // 4))):
        best = {name: 0.0 for name in models}
        for _ in range(args.rounds):
            for name, model in models.items():
                best[name] = max(best[name], charrnn_rate(model, tokens, device, streams))
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
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=None, help="tokens per chunk (default: "
                        "charrnn's choice for the device)")
    parser.add_argument("--word", action="store_true", help="adaptive vs full softmax, 10k words")
    args = parser.parse_args()
    device = torch.device(args.device)
    head = {"device": str(device), "threads": torch.get_num_threads(), "chunk": args.chunk}
    if device.type == "cuda":
        head["gpu"] = torch.cuda.get_device_name(device)
    if args.word:
        print(json.dumps({"bench": "sample_speed_word", **head, "rows": word_rows(args, device)},
                         indent=1))
        return
    rows = []
    for hidden in (256, 512):
        torch.manual_seed(0)
        model = RNNLM(ModelConfig(65, "lstm", 2, hidden, dropout=0.0)).to(device).eval()
        rows += rows_for(model, f"lstm 2x{hidden}", args, device)
    print(json.dumps({"bench": "sample_speed", **head, "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
