"""Fast decoding steps (one token per stream per call).

Sampling feeds one token at a time, so a step is dominated by per-call overhead, not arithmetic:
`nn.LSTM` on a (1, 1) input goes through the generic sequence kernel every time. On the CPU the
`FusedCPUStepper` does the same maths with a handful of BLAS matrix-vector calls:

    layer 0 input:  table[tokens]         (Embedding @ W_ih0ᵀ + b_ih0, precomputed: V × gates)
    layer l > 0:    h_{l-1} · W_ihₗᵀ + b_ihₗ
    recurrent:      hₗ · W_hhₗᵀ + b_hhₗ     → gate non-linearities (PyTorch's gate order)
    output:         head(proj(h_top))

Every stepper works on B streams at once (rows), primed from one prompt: B = 1 for streamed
sampling, B = --num-samples for batched sampling.

It gives the same logits as `RNNLM.forward` (tested), several times faster. On CUDA the
`CUDAGraphStepper` captures one step (embedding → cuDNN RNN → head) in a CUDA graph and replays it,
so a token costs one graph launch instead of dozens of kernel launches; if capture fails it says
so once on stderr and falls back to the `ModuleStepper`, which calls the model itself (also what
MPS uses).
"""

from __future__ import annotations

import contextlib
import sys

import torch

from charrnn.devices import cuda_device
from charrnn.lm import state as states
from charrnn.lm.model import RNNLM
from charrnn.lm.state import State


class ModuleStepper:
    """The model's own forward, one token per stream at a time (any device)."""

    def __init__(self, model: RNNLM, device: torch.device) -> None:
        self.model, self.device = model.eval(), device
        self.state: State | None = None

    @torch.inference_mode()
    def prime(self, ids: list[int], batch: int = 1) -> torch.Tensor:
        """Run the prime once; every one of `batch` streams continues from it. → (batch, V)."""
        logits, state = self.model(torch.tensor([ids], device=self.device))
        self.state = states.repeat_rows(state, batch)
        return logits[:, -1].expand(batch, -1)

    @torch.inference_mode()
    def step(self, tokens: int | torch.Tensor) -> torch.Tensor:
        """One token → logits (V,); or tokens (B,), one per stream → logits (B, V)."""
        if isinstance(tokens, int):
            logits, self.state = self.model(torch.tensor([[tokens]], device=self.device), self.state)
            return logits[0, -1]
        logits, self.state = self.model(tokens.to(self.device).view(-1, 1), self.state)
        return logits[:, -1]


class FusedCPUStepper:
    """CPU step with a precomputed input table and fused matrix products (rows = streams)."""

    def __init__(self, model: RNNLM) -> None:
        self.model = model.eval()
        cfg = model.config
        self.cell, self.layers = cfg.cell, cfg.layers
        rnn = model.rnn
        with torch.inference_mode():
            self.w_ih = [getattr(rnn, f"weight_ih_l{i}").detach() for i in range(cfg.layers)]
            self.w_hh = [getattr(rnn, f"weight_hh_l{i}").detach() for i in range(cfg.layers)]
            self.b_ih = [getattr(rnn, f"bias_ih_l{i}").detach() for i in range(cfg.layers)]
            self.b_hh = [getattr(rnn, f"bias_hh_l{i}").detach() for i in range(cfg.layers)]
            # Layer 0's input projection for every vocabulary entry: one row lookup per token.
            self.table = torch.addmm(self.b_ih[0], model.embed.weight.detach(), self.w_ih[0].t())
            if cfg.cell == "lstm":  # both LSTM biases are simply added: fold b_hh in too
                self.table += self.b_hh[0]
                self.bias = [None] + [self.b_ih[i] + self.b_hh[i] for i in range(1, cfg.layers)]
            # The output layers as plain matrices (a module call costs more than the maths).
            proj = model.proj
            self.proj = (proj.weight.detach(), proj.bias.detach()) \
                if isinstance(proj, torch.nn.Linear) else None
            self.adaptive = model.adaptive  # its head is called as a module: a few products
            if not self.adaptive:
                self.head_weight = model.head.weight.detach()
                self.head_bias = model.head.bias.detach()
        self.h: list[torch.Tensor] = []
        self.c: list[torch.Tensor] = []

    @torch.inference_mode()
    def prime(self, ids: list[int], batch: int = 1) -> torch.Tensor:
        logits, state = self.model(torch.tensor([ids]))
        h, c = states.parts(states.repeat_rows(state, batch))
        self.h, self.c = list(h), list(c) if c is not None else []
        return logits[:, -1].expand(batch, -1)

    @torch.inference_mode()
    def step(self, tokens: int | torch.Tensor) -> torch.Tensor:
        """One token (the streamed case: vectors, BLAS matrix-vector calls) → logits (V,); or
        tokens (B,) → logits (B, V) (rows, matrix-matrix calls). The maths is the same."""
        if isinstance(tokens, int) and self.h[0].dim() == 2:  # primed as one row: use vectors
            self.h = [h[0] for h in self.h]
            self.c = [c[0] for c in self.c]
        x = None
        for layer in range(self.layers):
            h = self.h[layer]
            if self.cell == "lstm":
                base = self.table[tokens] if layer == 0 else _affine(
                    self.bias[layer], self.w_ih[layer], x)
                gates = _affine(base, self.w_hh[layer], h)
                # One sigmoid over all four gates (g's is unused), as few kernel calls as can be:
                # a step is a few matrix-vector products and many tiny calls.
                i, f, _, o = torch.sigmoid(gates).chunk(4, dim=-1)
                g = torch.tanh(gates.chunk(4, dim=-1)[2])
                c = torch.addcmul(f * self.c[layer], i, g)
                h = o * torch.tanh(c)
                self.c[layer] = c
            elif self.cell == "gru":
                gi = self.table[tokens] if layer == 0 else _affine(
                    self.b_ih[layer], self.w_ih[layer], x)
                gh = _affine(self.b_hh[layer], self.w_hh[layer], h)
                i_r, i_z, i_n = gi.chunk(3, dim=-1)
                h_r, h_z, h_n = gh.chunk(3, dim=-1)
                r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
                n = torch.tanh(i_n + r * h_n)
                h = n + z * (h - n)  # (1 - z) * n + z * h
            else:
                gi = self.table[tokens] if layer == 0 else _affine(
                    self.b_ih[layer], self.w_ih[layer], x)
                h = torch.tanh(_affine(gi + self.b_hh[layer], self.w_hh[layer], h))
            self.h[layer] = h
            x = h
        if self.proj is not None:
            x = _affine(self.proj[1], self.proj[0], x)
        if self.adaptive:
            return self.model.scores(x)
        return _affine(self.head_bias, self.head_weight, x)


def _affine(bias: torch.Tensor, weight: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """bias + x·Wᵀ for a vector x (matrix-vector) or rows x (matrix-matrix)."""
    if x.dim() == 1:
        return torch.addmv(bias, weight, x)
    return torch.addmm(bias, x, weight.t())


class CUDAGraphStepper:
    """One recurrent step of B streams captured in a CUDA graph; it updates the state in place.

    The tokens stay on the GPU from one step to the next, so B streams can be sampled without a
    host round trip per token.
    """

    def __init__(self, model: RNNLM, device: torch.device, batch: int = 1) -> None:
        device = cuda_device(device)  # library callers may pass plain "cuda"
        self.model, self.device, self.batch = model.eval(), device, batch
        # Replays and captures run on the current device: make it this one (`cuda:1` …), and
        # capture on our own stream, not the default capture stream of whichever GPU made it.
        torch.cuda.set_device(device)
        self.tokens = torch.zeros(batch, 1, dtype=torch.long, device=device)
        self.state = model.initial_state(batch, device)  # the graph's static state, kept in place
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):  # warm up cuDNN and the allocator outside the capture
                self._body()
        current = torch.cuda.current_stream(device)
        current.wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        try:
            with torch.inference_mode(), torch.cuda.graph(self.graph, stream=side):
                self.logits = self._body()
        finally:
            # torch.cuda.graph makes `side` current on enter and ends the capture on exit before
            # it restores the stream: when capture_begin or capture_end raises, `side` stays the
            # current stream, and every later kernel of this process would queue there.
            torch.cuda.set_stream(current)

    def _body(self) -> torch.Tensor:
        logits, new_state = self.model(self.tokens, self.state)
        states.copy_into(self.state, new_state)
        return logits[:, -1]

    @torch.inference_mode()
    def prime(self, ids: list[int], batch: int = 1) -> torch.Tensor:
        if batch != self.batch:
            raise ValueError(f"this graph was captured for {self.batch} streams, not {batch}")
        logits, state = self.model(torch.tensor([ids], device=self.device))
        states.copy_into(self.state, states.repeat_rows(state, batch))
        return logits[:, -1].expand(batch, -1)

    @torch.inference_mode()
    def step(self, tokens: int | torch.Tensor) -> torch.Tensor:
        if isinstance(tokens, int):
            self.tokens.fill_(tokens)
            self.graph.replay()
            return self.logits[0]
        self.tokens.copy_(tokens.view(-1, 1), non_blocking=True)
        self.graph.replay()
        return self.logits


Stepper = ModuleStepper | FusedCPUStepper | CUDAGraphStepper


def make_stepper(model: RNNLM, device: torch.device, batch: int = 1, graphs: bool = True) -> Stepper:
    """The fastest step this device has: fused on CPU, a CUDA graph on CUDA, the module elsewhere.

    graphs=False: no CUDA graph, for a few hundred tokens in the middle of training (a capture
    synchronizes and empties the allocator's caches, which training would then fill again).
    """
    if device.type == "cpu":
        return FusedCPUStepper(model)
    if device.type == "cuda" and graphs:
        try:
            return CUDAGraphStepper(model, device, batch)
        except RuntimeError as exc:  # capture unsupported here (old driver, debug mode …)
            _say_graphs_off(exc)
            return ModuleStepper(model, device)
    return ModuleStepper(model, device)


_graphs_off_said = False


def _say_graphs_off(exc: BaseException) -> None:
    """One line on stderr, once per process: sampling stays correct without the graph, only
    slower, and the user should know why (the first error of the chain: a kernel refused during
    the capture makes capture_end fail too, and that second error says less)."""
    global _graphs_off_said
    if _graphs_off_said:
        return
    _graphs_off_said = True
    for _ in range(8):
        first = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
        if first is None:
            break
        exc = first
    lines = str(exc).strip().splitlines()
    why = f"{type(exc).__name__}: {lines[0] if lines else ''}"[:300]
    with contextlib.suppress(OSError):
        print(f"charrnn: CUDA-graph sampling is off ({why}); the model is stepped without a "
              "graph, slower", file=sys.stderr, flush=True)
