"""Decoding steps driven from Python (one token per stream per call).

Sampling feeds one token at a time, so a step is dominated by per-call overhead, not arithmetic:
`nn.LSTM` on a (1, 1) input goes through the generic sequence kernel every time. On the CPU the
`FusedCPUStepper` does the same maths with a handful of BLAS matrix-vector calls:

    layer 0 input:  table[tokens]         (Embedding @ W_ih0ᵀ + b_ih0, precomputed: V × gates)
    layer l > 0:    h_{l-1} · W_ihₗᵀ + b_ihₗ
    recurrent:      hₗ · W_hhₗᵀ + b_hhₗ     → gate non-linearities (PyTorch's gate order)
    output:         head(proj(h_top))

Every stepper works on B streams at once (rows), primed from one prompt: B = 1 for streamed
sampling, B = --num-samples for batched sampling.

It gives the same logits as `RNNLM.forward` (tested), several times faster. The `ModuleStepper`
calls the model itself (MPS; CUDA where a graph cannot be captured, says so once on stderr, and
--mix, whose n-gram needs the host every step). A stepper can `snapshot()` its state and
`restore()` it: a chunk that stops mid-way rewinds to its start and steps the kept tokens again.
"""

from __future__ import annotations

import contextlib
import sys

import torch

from charrnn.lm.model import RNNLM
from charrnn.rnn import state as states
from charrnn.rnn.state import State


def last_scores(model: RNNLM, ids: torch.Tensor, state: State | None = None
                ) -> tuple[torch.Tensor, State]:
    """(the scores after the last of `ids` (B, V), the state): the output layer reads the last
    position only; scores at every position of a long prime (a book, × a 10k vocabulary) took
    gigabytes for nothing."""
    features, state = model.features(ids, state)
    return model.scores(features[:, -1:])[:, -1], state


class ModuleStepper:
    """The model's own forward, one token per stream at a time (any device)."""

    def __init__(self, model: RNNLM, device: torch.device) -> None:
        self.model, self.device = model.eval(), device
        self.state: State | None = None

    @torch.inference_mode()
    def prime(self, ids: list[int], batch: int = 1) -> torch.Tensor:
        """Run the prime once; every one of `batch` streams continues from it. → (batch, V)."""
        logits, state = last_scores(self.model, torch.tensor([ids], device=self.device))
        self.state = states.repeat_rows(state, batch)
        return logits.expand(batch, -1)

    @torch.inference_mode()
    def step(self, tokens: int | torch.Tensor) -> torch.Tensor:
        """One token → logits (V,); or tokens (B,), one per stream → logits (B, V)."""
        if isinstance(tokens, int):
            logits, self.state = self.model(torch.tensor([[tokens]], device=self.device), self.state)
            return logits[0, -1]
        logits, self.state = self.model(tokens.to(self.device).view(-1, 1), self.state)
        return logits[:, -1]

    def snapshot(self) -> State | None:
        return self.state  # every step makes a new state: a reference keeps this one

    def restore(self, state: State | None) -> None:
        self.state = state


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
        self.g_gate = slice(2 * cfg.hidden, 3 * cfg.hidden)  # the cell input's rows
        self.h: list[torch.Tensor] = []
        self.c: list[torch.Tensor] = []

    @torch.inference_mode()
    def prime(self, ids: list[int], batch: int = 1) -> torch.Tensor:
        logits, state = last_scores(self.model, torch.tensor([ids]))
        h, c = states.parts(states.repeat_rows(state, batch))
        self.h, self.c = list(h), list(c) if c is not None else []
        return logits.expand(batch, -1)

    def snapshot(self) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        return list(self.h), list(self.c)  # a step replaces tensors, never writes into them

    def restore(self, state: tuple[list[torch.Tensor], list[torch.Tensor]]) -> None:
        self.h, self.c = list(state[0]), list(state[1])

    def step(self, tokens: int | torch.Tensor) -> torch.Tensor:
        """One token (the streamed case: vectors, BLAS matrix-vector calls) → logits (V,); or
        tokens (B,) → logits (B, V) (rows, matrix-matrix calls). The maths is the same. No
        inference-mode guard of its own (entering one costs as much as a small kernel): the
        weights are detached copies, and the sampler runs it inside its own."""
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
                g = torch.tanh(gates[..., self.g_gate])
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


Stepper = ModuleStepper | FusedCPUStepper


def make_stepper(model: RNNLM, device: torch.device) -> Stepper:
    """The fastest Python-driven step this device has: fused on the CPU, the module elsewhere
    (CUDA's fast path is a whole chunk in one graph: cudagraph.py)."""
    if device.type == "cpu":
        return FusedCPUStepper(model)
    return ModuleStepper(model, device)


_graphs_off_said = False


def say_graphs_off(exc: BaseException) -> None:
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
