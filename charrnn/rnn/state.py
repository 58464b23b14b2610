"""The recurrent state an RNN carries between calls, in one place.

An LSTM's state is a pair (h, c), a GRU's or plain RNN's one tensor h; each is (layers, B, hidden),
one row per stream. Every helper here takes either form and keeps it, so no caller needs to ask
which cell it has.
"""

from __future__ import annotations

from collections.abc import Callable

import torch

State = torch.Tensor | tuple[torch.Tensor, torch.Tensor]


def map_state(fn: Callable[[torch.Tensor], torch.Tensor], state: State) -> State:
    """`fn` applied to each tensor of the state (h, or h and c)."""
    if isinstance(state, tuple):
        return tuple(fn(s) for s in state)  # type: ignore[return-value]
    return fn(state)


def parts(state: State) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(h, c) of an LSTM, (h, None) of the other cells."""
    if isinstance(state, tuple):
        return state
    return state, None


def zeros(cell: str, layers: int, batch: int, hidden: int, device: torch.device | str) -> State:
    h = torch.zeros(layers, batch, hidden, device=device)
    return (h, h.clone()) if cell == "lstm" else h


def detach(state: State) -> State:
    """Cut the graph between TBPTT windows while keeping the values, in float32: under CUDA
    autocast the RNN hands back a half-precision state, which must not reach a checkpoint (a CPU
    resume would feed it to a float32 RNN) nor lose precision window after window."""
    return map_state(lambda s: s.detach().float(), state)


def select_rows(state: State, index: torch.Tensor | slice) -> State:
    """The streams `index` picks (a beam's survivors, this rank's block), in that order."""
    return map_state(lambda s: s[:, index].contiguous(), state)


def repeat_rows(state: State, batch: int) -> State:
    """A state of one stream, (layers, 1, H), repeated for `batch` streams."""
    return map_state(lambda s: s.expand(-1, batch, -1).contiguous(), state)


def copy_into(target: State, source: State) -> None:
    """Overwrite `target` in place (a CUDA graph's static state) with `source`."""
    if isinstance(target, tuple):
        for t, s in zip(target, source, strict=True):
            t.copy_(s)
    else:
        target.copy_(source)  # type: ignore[arg-type]


def to_tensors(state: State) -> dict[str, torch.Tensor]:
    """Named tensors for a checkpoint's state.safetensors."""
    if isinstance(state, tuple):
        return {"state.h": state[0], "state.c": state[1]}
    return {"state.h": state}


def from_tensors(tensors: dict[str, torch.Tensor]) -> State | None:
    if "state.h" not in tensors:
        return None
    if "state.c" in tensors:
        return tensors["state.h"], tensors["state.c"]
    return tensors["state.h"]
