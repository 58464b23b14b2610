"""The masked bidirectional model behind `charrnn fill` (`charrnn train --task fill`).

    windows of the corpus ─ some tokens and spans → <mask> (one <mask> per hidden token, so the
    model knows the span's length) ─ Embedding ─ BiRNN ─ Linear → the hidden tokens

Trained by charrnn.fill.train on random windows of the same cached datasets the LMs use; the loss
is cross-entropy on masked positions only.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from charrnn import checkpoint
from charrnn.devices import host_to_device
from charrnn.fill.config import FillConfig
from charrnn.rnn.layers import BiRNN, Dropout, embedding

MASK_RATE = 0.2  # share of window tokens hidden per training example
MAX_SPAN = 10


class FillModel(nn.Module):
    def __init__(self, config: FillConfig) -> None:
        super().__init__()
        self.config = config
        emb = config.emb or config.hidden
        self.embed = embedding(config.vocab_size + 1, emb)
        self.drop = Dropout(config.dropout)
        self.encoder = BiRNN(config.cell, emb, config.hidden, config.layers, config.dropout)
        self.head = nn.Linear(2 * config.hidden, config.vocab_size)

    def hidden(self, ids: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        return self.drop(self.encoder(self.drop(self.embed(ids)), lengths))

    def masked_log_probs(self, ids: torch.Tensor, lengths: torch.Tensor | None = None,
                         positions: torch.Tensor | None = None) -> torch.Tensor:
        """log p over the vocabulary at every <mask> of ids (rows in reading order): (M, V).
        `positions`, the masks' flat indices when the caller knows them, avoids the boolean
        indexing that waits for the GPU (training knows them: it placed the masks)."""
        out = self.hidden(ids, lengths)
        if positions is None:
            picked = out[ids == self.config.mask_id]
        else:
            picked = out.flatten(0, 1).index_select(0, positions)
        return F.log_softmax(self.head(picked).float(), dim=-1)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def mask_spans(batch: int, length: int, rng: np.random.Generator, rate: float = MASK_RATE
               ) -> np.ndarray:
    """Which positions to hide: half single tokens, half spans of geometric length (mean ~3)."""
    mask = np.zeros((batch, length), dtype=bool)
    for row in range(batch):
        goal = max(1, int(rate * length))
        while mask[row].sum() < goal:
            span = 1 if rng.random() < 0.5 else min(MAX_SPAN, int(rng.geometric(0.35)))
            start = int(rng.integers(0, max(1, length - span + 1)))
            mask[row, start : start + span] = True
    return mask


def windows_at(ids: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    return np.stack([np.asarray(ids[s : s + length], dtype=np.int64) for s in starts])


def masked_batch(windows: np.ndarray, rng: np.random.Generator, mask_id: int, device: torch.device) -> dict:
    hide = mask_spans(*windows.shape, rng)
    inputs = np.where(hide, mask_id, windows)
    return {"input": host_to_device(inputs, device), "target": host_to_device(windows[hide], device),
            "where": host_to_device(np.flatnonzero(hide), device)}  # row-major, as windows[hide]


def load_fill_model(ckpt: checkpoint.Checkpoint, device: torch.device) -> FillModel:
    ckpt.require_task("fill", "train one with `charrnn train --task fill`")
    return ckpt.build(FillConfig, FillModel, device).eval()
