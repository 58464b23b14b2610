"""Fast single-stream decoding steps.

Sampling feeds one token at a time, so a step is dominated by per-call overhead, not arithmetic:
`nn.LSTM` on a (1, 1) input goes through the generic sequence kernel every time. On the CPU the
`FusedCPUStepper` does the same maths with a handful of BLAS matrix-vector calls:

    layer 0 input:  table[token]          (Embedding @ W_ih0ᵀ + b_ih0, precomputed: V × gates)
    layer l > 0:    W_ihₗ · h_{l-1} + b_ihₗ
    recurrent:      W_hhₗ · hₗ + b_hhₗ     → gate non-linearities (PyTorch's gate order)
    output:         head(proj(h_top))

It gives the same logits as `RNNLM.forward` (tested), several times faster. On CUDA the
`CUDAGraphStepper` captures one step (embedding → cuDNN RNN → head) in a CUDA graph and replays it,
so a token costs one graph launch instead of dozens of kernel launches; if capture fails it falls
back to the `ModuleStepper`, which calls the model itself (also what MPS uses).
"""

from __future__ import annotations

import torch

from charrnn.models import RNNLM, State


class ModuleStepper:
    """The model's own forward, one token at a time (any device)."""

    def __init__(self, model: RNNLM, device: torch.device) -> None:
        self.model, self.device = model.eval(), device
        self.state: State | None = None

    @torch.inference_mode()
    def prime(self, ids: list[int]) -> torch.Tensor:
        logits, self.state = self.model(torch.tensor([ids], device=self.device))
        return logits[0, -1]

    @torch.inference_mode()
    def step(self, token: int) -> torch.Tensor:
        logits, self.state = self.model(torch.tensor([[token]], device=self.device), self.state)
        return logits[0, -1]


class FusedCPUStepper:
    """Batch-1 CPU step with precomputed input table and fused matrix-vector products."""

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
        self.h: list[torch.Tensor] = []
        self.c: list[torch.Tensor] = []

    @torch.inference_mode()
    def prime(self, ids: list[int]) -> torch.Tensor:
        logits, state = self.model(torch.tensor([ids]))
        if isinstance(state, tuple):
            self.h = [s for s in state[0][:, 0].clone()]
            self.c = [s for s in state[1][:, 0].clone()]
        else:
            self.h = [s for s in state[:, 0].clone()]
        return logits[0, -1]

    @torch.inference_mode()
    def step(self, token: int) -> torch.Tensor:
        x = None
        for layer in range(self.layers):
            h = self.h[layer]
            if self.cell == "lstm":
                base = self.table[token] if layer == 0 else torch.addmv(
                    self.bias[layer], self.w_ih[layer], x)
                i, f, g, o = torch.addmv(base, self.w_hh[layer], h).chunk(4)
                c = torch.sigmoid(f) * self.c[layer] + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                self.c[layer] = c
            elif self.cell == "gru":
                gi = self.table[token] if layer == 0 else torch.addmv(
                    self.b_ih[layer], self.w_ih[layer], x)
                gh = torch.addmv(self.b_hh[layer], self.w_hh[layer], h)
                i_r, i_z, i_n = gi.chunk(3)
                h_r, h_z, h_n = gh.chunk(3)
                r, z = torch.sigmoid(i_r + h_r), torch.sigmoid(i_z + h_z)
                n = torch.tanh(i_n + r * h_n)
                h = n + z * (h - n)  # (1 - z) * n + z * h
            else:
                gi = self.table[token] if layer == 0 else torch.addmv(
                    self.b_ih[layer], self.w_ih[layer], x)
                h = torch.tanh(torch.addmv(gi + self.b_hh[layer], self.w_hh[layer], h))
            self.h[layer] = h
            x = h
        return self.model.head(self.model.proj(x))


class CUDAGraphStepper:
    """One recurrent step captured in a CUDA graph; the state is updated in place by the graph."""

    def __init__(self, model: RNNLM, device: torch.device) -> None:
        self.model, self.device = model.eval(), device
        cfg = model.config
        shape = (cfg.layers, 1, cfg.hidden)
        self.token = torch.zeros(1, 1, dtype=torch.long, device=device)
        self.h = torch.zeros(shape, device=device)
        self.c = torch.zeros(shape, device=device) if cfg.cell == "lstm" else None
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side), torch.inference_mode():
            for _ in range(3):  # warm up cuDNN and the allocator outside the capture
                self._body()
        torch.cuda.current_stream(device).wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(self.graph):
            self.logits = self._body()

    def _body(self) -> torch.Tensor:
        state = (self.h, self.c) if self.c is not None else self.h
        logits, new_state = self.model(self.token, state)
        if self.c is not None:
            self.h.copy_(new_state[0])
            self.c.copy_(new_state[1])
        else:
            self.h.copy_(new_state)
        return logits[0, -1]

    @torch.inference_mode()
    def prime(self, ids: list[int]) -> torch.Tensor:
        logits, state = self.model(torch.tensor([ids], device=self.device))
        if self.c is not None:
            self.h.copy_(state[0])
            self.c.copy_(state[1])
        else:
            self.h.copy_(state)
        return logits[0, -1]

    @torch.inference_mode()
    def step(self, token: int) -> torch.Tensor:
        self.token.fill_(token)
        self.graph.replay()
        return self.logits


Stepper = ModuleStepper | FusedCPUStepper | CUDAGraphStepper


def make_stepper(model: RNNLM, device: torch.device) -> Stepper:
    """The fastest step this device has: fused on CPU, a CUDA graph on CUDA, the module elsewhere."""
    if device.type == "cpu":
        return FusedCPUStepper(model)
    if device.type == "cuda":
        try:
            return CUDAGraphStepper(model, device)
        except RuntimeError:  # capture unsupported here (old driver, debug mode …): stay correct
            return ModuleStepper(model, device)
    return ModuleStepper(model, device)
