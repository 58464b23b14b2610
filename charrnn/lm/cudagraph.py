"""K sampling steps of B streams captured in one CUDA graph, replayed one chunk ahead of the host.

    replay i:   for K steps: scores ─ decode (× 1/T, top-k/top-p, Gumbel-max) ─ id ─ model ─ scores
                ids (B, K) [+ stats] ──copy, non-blocking──▶ pinned host slot i % 2, event i
    run():      launch chunk i+1, wait for event i, hand chunk i to the host

The decoding maths is decode.py's, the same the CPU runs; the noise comes from the sampler's own
generator, registered with the graph, so every replay draws new numbers and a seed replays the
same text. The temperature is a device scalar written between replays. Nothing in a replay
reads the host: a row without a distribution (NaN) is marked -1 in the ids the host reads (the
argmax, a valid index, is fed on), so the host stops with one clear error and the CUDA context
survives.

Double buffering: while the host decodes and writes chunk i, chunk i+1 runs. Stopping mid-chunk
(`rewind`) drops the chunk in flight, restores the state saved before chunk i and steps the kept
tokens again with the model itself (the graph's own calls, so the same numbers).
"""

from __future__ import annotations

from collections import deque

import torch

from charrnn.devices import cuda_device
from charrnn.lm.config import SampleOptions
from charrnn.lm.cpustep import stats_width
from charrnn.lm.decode import checked, gumbel_noise, pick, shape_scores, token_stats
from charrnn.lm.model import RNNLM
from charrnn.lm.tokenstream import Chunk
from charrnn.rnn import state as states


class GraphEngine:
    """The chunk engine on CUDA (chunks.Engine): one graph replay per K tokens of B streams."""

    def __init__(self, model: RNNLM, device: torch.device, opts: SampleOptions, streams: int,
                 generator: torch.Generator, k: int, stats: bool = False) -> None:
        device = cuda_device(device)  # library callers may pass plain "cuda"
        torch.cuda.set_device(device)  # replays and captures run on the current device
        self.model, self.device, self.opts = model.eval(), device, opts
        self.streams, self.generator, self.k, self.stats = streams, generator, k, stats
        vocab = model.config.vocab_size
        # The graph's static tensors, read and written in place by every replay.
        self.state = model.initial_state(streams, device)
        self.scores = torch.zeros(streams, vocab, device=device)
        self.inv_temp = torch.ones(1, device=device)
        self.ids = torch.zeros(k, streams, dtype=torch.long, device=device)
        self.shaped = torch.zeros(k, streams, vocab, device=device) if stats else None
        self.out_ids = torch.zeros(streams, k, dtype=torch.long, device=device)
        width = stats_width(vocab)  # floats per token of decode.token_stats
        self.out_stats = torch.zeros(streams, k, width, device=device) if stats else None
        self.graph = self._capture()
        # Two of everything the host reads, so chunk i+1 can run while chunk i is decoded.
        self.snaps = [(states.map_state(torch.clone, self.state), self.scores.clone())
                      for _ in range(2)]
        self.host_ids = [pinned((streams, k), torch.long) for _ in range(2)]
        self.host_stats = [pinned((streams, k, width), torch.float32) if stats else None
                           for _ in range(2)]
        self.events = [torch.cuda.Event() for _ in range(2)]
        self.in_flight: deque[int] = deque()
        self.next_slot = 0
        self.last_slot: int | None = None  # the slot of the chunk handed out last

    def _body(self) -> None:
        """K steps, written as plain tensor code: run eagerly to warm up, then captured."""
        opts = self.opts
        noise = None if opts.greedy else gumbel_noise(
            self.generator, (self.k, self.streams, self.scores.size(1)), self.device)
        for step in range(self.k):
            shaped = self.scores if opts.greedy else shape_scores(
                self.scores, self.inv_temp, opts.top_k, opts.top_p)
            best, ids = pick(shaped, None if noise is None else noise[step])
            self.ids[step].copy_(checked(ids, best))  # -1 where a row had no distribution
            if self.shaped is not None:
                self.shaped[step].copy_(shaped)
            # The argmax itself is fed on: always a valid index, even for a NaN row.
            logits, new_state = self.model(ids.view(-1, 1), self.state)
            states.copy_into(self.state, new_state)
            self.scores.copy_(logits[:, -1])
        self.out_ids.copy_(self.ids.t())
        if self.out_stats is not None:
            self.out_stats.copy_(token_stats(self.shaped, self.ids).transpose(0, 1))

    def _capture(self) -> torch.cuda.CUDAGraph:
        current = torch.cuda.current_stream(self.device)
        side = torch.cuda.Stream(self.device)  # capture on our own stream, not another GPU's
        side.wait_stream(current)
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(2):  # warm up cuDNN and the allocator outside the capture
                self._body()
        current.wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        if not self.opts.greedy:
            register = getattr(graph, "register_generator_state", None)
            if register is None:
                raise RuntimeError("this torch cannot register a generator with a CUDA graph")
            register(self.generator)
        try:
            with torch.inference_mode(), torch.cuda.graph(graph, stream=side):
                self._body()
        finally:
            # torch.cuda.graph makes `side` current on enter and ends the capture on exit before
            # it restores the stream: when capture_begin or capture_end raises, `side` stays the
            # current stream, and every later kernel of this process would queue there.
            torch.cuda.set_stream(current)
        return graph

    @torch.inference_mode()  # the static tensors were made in inference mode
    def set_temperature(self, temperature: float) -> None:
        self.inv_temp.fill_(1.0 / temperature)

    @torch.inference_mode()
    def prime(self, ids: list[int]) -> None:
        logits, state = self.model(torch.tensor([ids], device=self.device))
        states.copy_into(self.state, states.repeat_rows(state, self.streams))
        self.scores.copy_(logits[:, -1].expand(self.streams, -1))
        self.in_flight.clear()
        self.last_slot = None

    def _launch(self) -> None:
        slot, self.next_slot = self.next_slot, 1 - self.next_slot
        snap_state, snap_scores = self.snaps[slot]  # where this chunk starts, for a rewind
        states.copy_into(snap_state, self.state)
        snap_scores.copy_(self.scores)
        self.graph.replay()
        self.host_ids[slot].copy_(self.out_ids, non_blocking=True)
        if self.stats:
            self.host_stats[slot].copy_(self.out_stats, non_blocking=True)
        self.events[slot].record()
        self.in_flight.append(slot)

    @torch.inference_mode()
    def run(self) -> Chunk:
        if not self.in_flight:
            self._launch()
        self._launch()  # the next chunk runs while the host decodes this one
        slot = self.in_flight.popleft()
        self.events[slot].synchronize()
        self.last_slot = slot
        stats = self.host_stats[slot]
        # Copies: this slot's buffers are written again two launches from now.
        return Chunk(self.host_ids[slot].clone(), None if stats is None else stats.clone())

    @torch.inference_mode()
    def rewind(self, kept: int) -> None:
        """The state after the first `kept` tokens of the chunk handed out last."""
        if self.last_slot is None:
            return
        self.in_flight.clear()  # the chunk running ahead is dropped (its slot is reused)
        snap_state, snap_scores = self.snaps[self.last_slot]
        states.copy_into(self.state, snap_state)
        self.scores.copy_(snap_scores)
        tokens = self.host_ids[self.last_slot][:, :kept].clamp_min(0).to(self.device)
        for column in range(kept):
            logits, new_state = self.model(tokens[:, column:column + 1], self.state)
            states.copy_into(self.state, new_state)
            self.scores.copy_(logits[:, -1])
        self.last_slot = None


def pinned(shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    """Page-locked host memory: what a non-blocking device-to-host copy needs to be one."""
    return torch.empty(shape, dtype=dtype, pin_memory=True)
