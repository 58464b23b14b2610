"""Scoring ids with a language model: -log p of each token, carried state and all.

    ids   a b c d e f g h i j k      rows ┌   a b c d ┐ → targets b c d e
                                          └ c d|e f g h ┘ → targets f g h i,   then i j → j k
                                           (c d: read first, unscored: BURN_IN tokens)

What validation during training (lm.train), `charrnn eval` (evaluation.lm), mixtures and line
scores read. The first token of a text has no left context: N tokens give N-1 scores.
"""

from __future__ import annotations

import numpy as np
import torch

from charrnn.devices import autocast
from charrnn.errors import UserError
from charrnn.lm.model import RNNLM
from charrnn.rnn.state import State, map_state, select_rows

BURN_IN = 256  # tokens a scoring row after the first reads, unscored, before its first target


def score_ids(model: RNNLM, ids: np.ndarray, device: torch.device, streams: int = 32,
              seq_len: int = 256, precision: str = "fp32", burn_in: bool = True
              ) -> tuple[float, int]:
    """Sum of -log p (nats) over ids[1:], reading `streams` contiguous rows with carried state."""
    nll = token_nll(model, ids, device, streams, seq_len, precision, burn_in)
    return float(nll.sum(dtype=np.float64)), len(nll)


@torch.inference_mode()
def token_nll(model: RNNLM, ids: np.ndarray, device: torch.device, streams: int = 32,
              seq_len: int = 256, precision: str = "fp32", burn_in: bool = True) -> np.ndarray:
    """-log p of each of ids[1:] (float32, in order). The text is read as `streams` contiguous
    rows side by side, each with its carried state, and the rest continues the last row; a row
    after the first has first read the BURN_IN tokens before it, unscored (`burn_in`; without,
    it starts from a zero state: a run begun before keeps that for its validation):

        ids   a b c d e f g h i j k      rows ┌   a b c d ┐ → targets b c d e
                                              └ c d|e f g h ┘ → targets f g h i,   then i j → j k
    """
    n_targets = len(ids) - 1
    if n_targets < 1:
        raise UserError(f"need at least 2 tokens to evaluate, got {len(ids)}")
    was_training = model.training
    model.eval()
    ids_t = torch.from_numpy(np.asarray(ids).astype(np.int64))
    streams = max(1, min(streams, n_targets // max(1, seq_len)))
    row = n_targets // streams
    xs = ids_t[: streams * row].view(streams, row).to(device)
    ys = ids_t[1 : streams * row + 1].view(streams, row).to(device)
    windows = []
    state = _burned_in(model, ids_t, streams, row, device, precision) if burn_in else None
    for lo in range(0, row, seq_len):  # (on the device: one copy to the host at the end)
        nll, state = _nll(model, xs[:, lo : lo + seq_len], ys[:, lo : lo + seq_len], state,
                          device, precision)
        windows.append(nll.view(streams, -1))
    parts = [torch.cat(windows, dim=1).reshape(-1)]
    if n_targets > streams * row:  # the tail continues the last row, with its hidden state
        tail_state = select_rows(state, slice(streams - 1, streams)) if state is not None else None
        x = ids_t[streams * row : n_targets].view(1, -1).to(device)
        y = ids_t[streams * row + 1 :].view(1, -1).to(device)
        parts.append(_nll(model, x, y, tail_state, device, precision)[0])
    model.train(was_training)
    return torch.cat(parts).cpu().numpy()


def _burned_in(model: RNNLM, ids_t: torch.Tensor, streams: int, row: int, device: torch.device,
               precision: str) -> State | None:
    """The rows' starting states: the text's start for the first (none), and for each other the
    state after reading the BURN_IN tokens before it. From a zero state mid-text, a row's first
    targets scored worse than in one sequential read (PTB: perplexity 2758 for 2718); with it
    the figure is the sequential one to a few parts in a million, for up to 31 × BURN_IN tokens
    more reading (a few % of a large split; as much again of one near 32 × 256 tokens)."""
    if streams == 1:
        return None
    width = min(BURN_IN, row)
    x = torch.stack([ids_t[r * row - width : r * row] for r in range(1, streams)]).to(device)
    with autocast(device, precision):
        _, state = model.features(x)
    return map_state(lambda s: torch.cat([torch.zeros_like(s[:, :1]), s], dim=1), state)


def _nll(model: RNNLM, x: torch.Tensor, y: torch.Tensor, state, device: torch.device,
         precision: str):
    with autocast(device, precision):
        nll, state = model(x, state, y)
    return nll.float(), state
