"""Stateful truncated-BPTT batches, as in char-rnn and PyTorch's word_language_model.

The split's ids are cut into B contiguous streams (rows); each step reads the next T columns, and
the model's hidden state carries over from one step to the next, so every row is read as one long
text:

    ids  a b c d e f g h i j k l m n o p q r s t u v w x     (offset o, then B*L ids)
    rows ┌ a b c d e f ┐   step 0: x = cols 0..T-1, y = cols 1..T
         │ g h i j k l │   step 1: x = cols T..2T-1, y = cols T+1..2T
         │ m n o p q r │
         └ s t u v w x ┘

Each epoch starts at a different offset o < T (a function of the epoch only, so resume is exact)
and with a fresh hidden state. Under DDP each rank takes its own contiguous block of rows.
"""

from __future__ import annotations

import numpy as np
import torch

from charrnn.distributed import batch_not_divisible
from charrnn.errors import UserError
from charrnn.lm.config import require_one_batch, tbptt_min_tokens

RESIDENT_LIMIT = 1 << 28  # ids held on the device as int32 below this many tokens


def oriented(ids: np.ndarray, direction: str) -> np.ndarray:
    """The ids as a model of this direction reads them: a backward LM reads the text reversed."""
    return ids[::-1] if direction == "backward" else ids


class TBPTTStream:
    def __init__(self, ids: np.ndarray, batch: int, seq_len: int, device: torch.device,
                 rank: int = 0, world: int = 1) -> None:
        if batch % world:
            raise UserError(batch_not_divisible(batch, world))
        self.ids, self.batch, self.seq_len, self.device = ids, batch, seq_len, device
        self.rows = slice(rank * batch // world, (rank + 1) * batch // world)
        self.row_len = self.check(len(ids), batch, seq_len)
        self.steps_per_epoch = (self.row_len - 1) // seq_len
        self._epoch, self._grid = -1, None

    @staticmethod
    def check(tokens: int, batch: int, seq_len: int) -> int:
        """The length of each of the `batch` rows, refused when it is less than one window."""
        require_one_batch(tokens, batch, seq_len)
        return (tokens - seq_len) // batch

    min_tokens = staticmethod(tbptt_min_tokens)

    def offset(self, epoch: int) -> int:
        return (epoch * 7919) % self.seq_len  # a fixed pseudo-random shift per epoch

    def _rows_for(self, epoch: int) -> torch.Tensor | np.ndarray:
        if epoch != self._epoch:
            start = self.offset(epoch)
            grid = np.asarray(self.ids[start : start + self.batch * self.row_len])
            grid = grid.reshape(self.batch, self.row_len)[self.rows]
            if self.device.type != "cpu" and grid.size <= RESIDENT_LIMIT:
                # Small enough: hold the epoch's ids on the GPU, so a step never waits on the host.
                grid = torch.from_numpy(grid.astype(np.int32)).to(self.device)
            self._epoch, self._grid = epoch, grid
        return self._grid

    def batch_at(self, epoch: int, step: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(x, y) for `step` of `epoch`, both (B_local, T) int64 on the device."""
        grid = self._rows_for(epoch)
        lo = step * self.seq_len
        window = grid[:, lo : lo + self.seq_len + 1]
        if isinstance(window, np.ndarray):
            window = torch.from_numpy(window.astype(np.int64))
            if self.device.type == "cuda":
                window = window.pin_memory().to(self.device, non_blocking=True)
        window = window.long()
        return window[:, :-1], window[:, 1:]
