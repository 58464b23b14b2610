"""The recurrent layers the models share: PyTorch's own cells (so CUDA runs cuDNN's fused kernels)
and a stacked bidirectional encoder over padded batches (the taggers and the masked fill model);
and the embedding and dropout every model makes the same way (cheap on the meta device, a
quicker mask on the CPU).

    (B, T, in) ─ nn.LSTM|GRU|RNN, forward ─┐
               ─ the same, backward ──────┴→ concatenated (B, T, 2·hidden)
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

CELLS = {"rnn": nn.RNN, "lstm": nn.LSTM, "gru": nn.GRU}


def embedding(vocab: int, dim: int, padding_idx: int | None = None) -> nn.Embedding:
    """nn.Embedding; on the meta device (the size check before a checkpoint loads,
    devices.skeleton) without its normal_ init, whose values nobody reads there: torch runs
    normal_ on meta tensors through a Python reference whose first use imports torch._dynamo and
    sympy, a second of every loading command's start-up. Elsewhere it draws as before, so a seed
    builds the same weights."""
    if _on_meta():
        return nn.Embedding(vocab, dim, padding_idx, _weight=torch.empty(vocab, dim))
    return nn.Embedding(vocab, dim, padding_idx)


def ids_in_order(n: int) -> torch.Tensor:
    """0, 1, …, n-1 (torch.arange, int64), made without arange on the meta device (there
    arange has the same first-use import as embedding's normal_)."""
    return torch.empty(n, dtype=torch.long) if _on_meta() else torch.arange(n)


def _on_meta() -> bool:
    return torch.get_default_device().type == "meta"


def dropout(x: torch.Tensor, p: float) -> torch.Tensor:
    """Inverted dropout, always on (callers decide when it applies). On the CPU the mask is
    torch.rand ≥ p: bernoulli_, which F.dropout draws with, took 9.3-9.8 ms for a 32×64×512
    activation's forward and backward against 3.5-3.9 here (2-core Zen 4), 5% of a 2×512 LSTM
    char step. CUDA keeps F.dropout's fused kernel."""
    if x.is_cuda or p <= 0:
        return F.dropout(x, p)
    keep = torch.rand(x.shape, device=x.device).ge_(p).mul_(1 / (1 - p))
    return x * keep.to(x.dtype)


class Dropout(nn.Module):
    """nn.Dropout's place in a model (training only), with `dropout`'s CPU mask."""

    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return dropout(x, self.p) if self.training and self.p > 0 else x

    def extra_repr(self) -> str:
        return f"p={self.p}"


def forget_bias_one(rnn: nn.RNNBase, hidden: int) -> None:
    """An LSTM's forget-gate biases at 1 (Jozefowicz et al. 2015): it starts out remembering."""
    for name, param in rnn.named_parameters():
        if name.startswith("bias_ih"):
            with torch.no_grad():
                param[hidden : 2 * hidden].fill_(1.0)


class BiRNN(nn.Module):
    """Stacked bidirectional nn.RNN/LSTM/GRU over (B, T, in) → (B, T, 2·hidden)."""

    def __init__(self, cell: str, input_size: int, hidden: int, layers: int, dropout: float) -> None:
        super().__init__()
        self.rnn = CELLS[cell](input_size, hidden, num_layers=layers, batch_first=True,
                               bidirectional=True, dropout=dropout if layers > 1 else 0.0)
        if cell == "lstm":  # as the LMs do
            forget_bias_one(self.rnn, hidden)

    def forward(self, x: torch.Tensor, lengths: torch.Tensor | None = None) -> torch.Tensor:
        """`lengths` (on the CPU): rows longest first, as tag.train.collate makes them, pack
        without reordering; in any other order PyTorch sorts them, and on CUDA copies the order
        to the device from pageable memory, a host sync per batch."""
        if lengths is None or bool((lengths == x.size(1)).all()):
            return self.rnn(x)[0]
        lengths = lengths.cpu()  # a no-op for collate's lengths
        longest_first = bool((lengths[:-1] >= lengths[1:]).all())
        packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=longest_first)
        out, _ = self.rnn(packed)
        return pad_packed_sequence(out, batch_first=True, total_length=x.size(1))[0]
