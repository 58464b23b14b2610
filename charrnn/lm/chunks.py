"""The PyTorch chunk engine: K steps of a Python-driven step per call (tokenstream.py reads it).

    StepEngine.run() ── K × (shape, Gumbel-max draw, step) ──▶ Chunk: ids (B, K) [+ stats]

It steps the fused CPU step for several streams (--num-samples), the adaptive softmax, --mix
(whose n-gram needs the host each step) and the training preview; the module itself on devices
other than the CPU where no CUDA graph is. `GraphEngine` (cudagraph.py) replays K steps captured
in one CUDA graph; both draw with the same functions (decode.py), so what the CPU tests prove of
the chunk logic (exact lengths, the surplus, a stop mid-chunk, NaN rows) holds for the graph
too. One CPU stream of a full-softmax model has its own engine (cpustream.py).

Seeds: the Gumbel noise of a chunk is drawn from the sampler's generator as one (K, B, V) block.
On the CPU that block is the same sequence of numbers as K draws of (B, V), so a seed gives the
same text whatever K is; B streams share the generator, so stream 0 of a batch reads other
numbers than a lone stream does.
"""

from __future__ import annotations

import torch

from charrnn.lm.config import SampleOptions
from charrnn.lm.decode import checked, gumbel_noise, pick, shape_scores, token_stats
from charrnn.lm.tokenstream import Chunk


class StepEngine:
    """K steps of a stepper (fastpath.py) per call, each drawn with decode.py's functions."""

    def __init__(self, stepper, device: torch.device, opts: SampleOptions, streams: int,
                 generator: torch.Generator, k: int, stats: bool = False, side=None) -> None:
        self.stepper, self.device, self.opts, self.streams = stepper, device, opts, streams
        self.generator, self.k, self.stats, self.side = generator, k, stats, side
        # One stream on the CPU steps with vectors and host ints (cheapest per call).
        self.single = streams == 1 and device.type == "cpu"
        self.inv_temp = 1.0
        self.scores: torch.Tensor | None = None
        self.start = None  # (stepper state, scores, n-gram states) before the last chunk
        self.last: torch.Tensor | None = None  # the last chunk's ids (B, K)

    def set_temperature(self, temperature: float) -> None:
        self.inv_temp = 1.0 if self.opts.greedy else 1.0 / temperature

    def prime(self, ids: list[int]) -> None:
        scores = self.stepper.prime(ids, self.streams)
        self.scores = scores[0] if self.single else scores

    def run(self) -> Chunk:
        if not self.single:
            return self._run()
        # One stream's matrix-vector products are too small to share between threads: a second
        # thread costs a barrier per product, and on a busy machine, where it is descheduled,
        # stalls every one of them (7× slower measured on 2 busy cores).
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return self._run()
        finally:
            torch.set_num_threads(threads)

    @torch.inference_mode()
    def _run(self) -> Chunk:
        self.start = (self.stepper.snapshot(), self.scores,
                      None if self.side is None else self.side.states.copy())
        opts, shaping = self.opts, self._shaping()
        vocab = self.scores.size(-1)
        noise = [None] * self.k if opts.greedy else gumbel_noise(
            self.generator, (self.k, vocab) if self.single else (self.k, self.streams, vocab),
            self.device).unbind(0)  # one call for the K views
        scores, ids, best, shaped_rows = self.scores, [], [], []
        for step in range(self.k):
            if self.side is not None:
                scores = self.side.mix(scores)
            shaped = shape_scores(scores, *shaping) if shaping else scores
            if self.stats:
                shaped_rows.append(shaped)
            value, token = pick(shaped, noise[step])
            best.append(value)
            if self.single:
                token = int(token)  # a host int: the fused step's cheapest lookup
            ids.append(token)
            if self.side is not None:
                self.side.advance([token] if self.single else token)
            scores = self.stepper.step(token)
        self.scores = scores
        ids_t = torch.tensor(ids)[None] if self.single else torch.stack(ids, 1).cpu()
        ids_t = checked(ids_t, torch.stack(best, -1).cpu())
        self.last = ids_t
        stats = None
        if self.stats:
            rows = torch.stack(shaped_rows, -2)  # (B, K, V), or (K, V) for a single stream
            stats = token_stats(rows, ids_t[0] if self.single else ids_t.to(rows.device)).cpu()
            stats = stats[None] if self.single else stats
        return Chunk(ids_t, stats)

    def _shaping(self) -> tuple | None:
        """shape_scores' arguments, or None where the scores are drawn from as they are."""
        opts = self.opts
        if opts.greedy:
            return None
        if self.inv_temp == 1.0 and opts.top_k is None and opts.top_p is None:
            return None
        return self.inv_temp, opts.top_k, opts.top_p

    @torch.inference_mode()
    def rewind(self, kept: int) -> None:
        """The state after the first `kept` tokens of the last chunk: back to the chunk's start,
        then those tokens stepped again (the same calls, so the same numbers)."""
        if self.start is None or kept >= self.k:
            return
        state, self.scores, ngram_states = self.start
        self.stepper.restore(state)
        if self.side is not None:
            self.side.states = ngram_states
        for column in range(kept):
            tokens = self.last[:, column]
            token = int(tokens[0]) if self.single else tokens.to(self.device)
            if self.side is not None:
                self.side.advance([token] if self.single else tokens)
            self.scores = self.stepper.step(token)
        self.start = None
