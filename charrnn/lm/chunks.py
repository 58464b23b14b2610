"""Tokens K at a time: the chunk interface every sampling mode reads, and its CPU engine.

    engine.run()  ──▶ Chunk: ids (B, K) on the host [+ per-token stats (B, K, S)]
         ▲                │
         │ rewind(j)      ▼
    TokenStream.take(n) ─ hands out ≤ n tokens: the last chunk's surplus first, else a new chunk
    TokenStream.stop()  ─ forgets the surplus: the carried state is as if sampling had stopped
                          after the last token handed out

An engine makes K tokens per call: `StepEngine` (here) steps a model K times in a Python loop
(the fused CPU step; the module itself on other devices, and wherever --mix needs the host each
step); `GraphEngine` (cudagraph.py) replays K steps captured in one CUDA graph. Both draw with
the same functions (decode.py), so what the CPU tests prove of the chunk logic (exact lengths,
the surplus, a stop mid-chunk, NaN rows) holds for the graph too.

Seeds: the Gumbel noise of a chunk is drawn from the sampler's generator as one (K, B, V) block.
On the CPU that block is the same sequence of numbers as K draws of (B, V), so a seed gives the
same text whatever K is; B streams share the generator, so stream 0 of a batch reads other
numbers than a lone stream does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from charrnn.errors import UserError
from charrnn.lm.config import SampleOptions
from charrnn.lm.decode import checked, gumbel_noise, pick, shape_scores, token_stats


@dataclass
class Chunk:
    """Tokens of B streams: ids (B, n) int64 on the host; with stats, per token (B, n, S) floats:
    chosen p, entropy in bits, the top-5 probabilities and their ids (decode.token_stats)."""

    ids: torch.Tensor
    stats: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.ids.size(1)

    def split(self, n: int) -> tuple[Chunk, Chunk]:
        """(the first n tokens of every stream, the rest)."""
        def cut(part: slice) -> Chunk:
            return Chunk(self.ids[:, part], None if self.stats is None else self.stats[:, part])

        return cut(slice(0, n)), cut(slice(n, None))


class Engine(Protocol):
    k: int  # tokens per chunk

    def prime(self, ids: list[int]) -> None: ...

    def run(self) -> Chunk: ...

    def rewind(self, kept: int) -> None: ...

    def set_temperature(self, temperature: float) -> None: ...


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


class TokenStream:
    """Exactly as many tokens as asked for, from an engine that makes K at a time."""

    def __init__(self, engine: Engine, opts: SampleOptions) -> None:
        self.engine, self.opts = engine, opts
        self.temperature = opts.temperature
        engine.set_temperature(opts.temperature)
        self.surplus: Chunk | None = None
        self.handed: int | None = None  # tokens of the engine's last chunk handed out
        self.position = 0  # tokens handed out per stream
        self.error: UserError | None = None

    def take(self, n: int) -> Chunk:
        """Up to n (≥ 1) next tokens of every stream. Options are read at each call: a new
        temperature (the live view's +/-) drops the surplus drawn at the old one."""
        if self.opts.temperature != self.temperature:
            self.stop()
            self.temperature = self.opts.temperature
            self.engine.set_temperature(self.temperature)
        if not self.surplus:
            if self.error is not None:
                raise self.error
            self.surplus, self.handed = self._checked(self.engine.run()), 0
        head, self.surplus = self.surplus.split(n)
        self.handed += len(head)
        self.position += len(head)
        return head

    def take_all(self, n: int) -> torch.Tensor:
        """Exactly n next tokens of every stream: ids (B, n)."""
        parts = []
        while n > 0:
            parts.append(self.take(n).ids)
            n -= parts[-1].size(1)
        return torch.cat(parts, 1)

    def stop(self) -> None:
        """Forget the surplus: the engine's state becomes what it would be had sampling stopped
        after the last token handed out (an engine that runs ahead forgets that too)."""
        if self.handed is not None:
            self.engine.rewind(self.handed)
        self.surplus, self.handed = None, None

    def _checked(self, chunk: Chunk) -> Chunk:
        """The chunk up to its first row without a distribution; the error is raised when the
        tokens before it have been handed out."""
        bad = (chunk.ids < 0).any(0).nonzero()
        if len(bad) == 0:
            return chunk
        at = int(bad[0])
        self.error = UserError(
            f"the model's probabilities are NaN at generated token {self.position + at + 1:,}: "
            "the checkpoint's weights hold NaN or inf (a run that diverged?); sample another "
            "checkpoint (--checkpoint best|last) or train again")
        if at == 0:
            raise self.error
        return chunk.split(at)[0]
