"""Tokens K at a time, whatever makes them: the chunk every sampling mode reads.

    engine.run()  ──▶ Chunk: ids (B, K) on the host [+ per-token stats (B, K, S)]
         ▲                │                          (torch tensors, or NumPy arrays: cpustream)
         │ rewind(j)      ▼
    TokenStream.take(n) ─ hands out ≤ n tokens: the last chunk's surplus first, else a new chunk
    TokenStream.stop()  ─ forgets the surplus: the carried state is as if sampling had stopped
                          after the last token handed out

Engines: `StepEngine` (chunks.py, a Python loop over a PyTorch step), `GraphEngine`
(cudagraph.py, K steps in one CUDA graph), `CPUStream` (cpustream.py, one CPU stream in NumPy
and a compiled kernel). Torch-free, so that `charrnn sample` on a CPU runs without PyTorch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from charrnn.errors import UserError, diverged
from charrnn.lm.config import SampleOptions

Array = Any  # torch.Tensor or np.ndarray: what the engine computes with


@dataclass
class Chunk:
    """Tokens of B streams: ids (B, n) int64 on the host; with stats, per token (B, n, S) floats:
    chosen p, entropy in bits, the top-5 probabilities and their ids (decode.token_stats)."""

    ids: Array
    stats: Array | None = None

    def __len__(self) -> int:
        return self.ids.shape[1]

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

    def run_ahead(self, seconds: float | None = None) -> None:
        """The caller is about to be busy about `seconds` (a frame to draw; None: not known): an
        engine that can start its next chunk in the background does, where the next take will
        need one."""
        if not self.surplus and self.error is None and hasattr(self.engine, "run_ahead"):
            self.engine.run_ahead(seconds)

    def take_all(self, n: int):
        """Exactly n next tokens of every stream: ids (B, n), of the engine's array type."""
        parts = []
        while n > 0:
            parts.append(self.take(n).ids)
            n -= parts[-1].shape[1]
        if isinstance(parts[0], np.ndarray):
            return np.concatenate(parts, 1)
        import torch  # an engine that returns tensors has loaded it

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
        bad = (chunk.ids < 0).any(0).tolist()
        if True not in bad:
            return chunk
        at = bad.index(True)
        self.error = diverged(f"at generated token {self.position + at + 1:,}", sampling=True)
        if at == 0:
            raise self.error
        return chunk.split(at)[0]
