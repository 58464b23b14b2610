"""The recurrent language model: embedding → stacked RNN/LSTM/GRU → (projection) → vocabulary.

    ids (B, T) ─ Embedding ─ dropout ─ nn.LSTM|GRU|RNN (layers, dropout between) ─ dropout
               ─ [Linear hidden→emb when tied and sizes differ] ─ Linear → logits (B, T, V)
                                                          or the adaptive softmax → log p (B, T, V)

`model(ids, state)` gives scores whose softmax is the model's distribution (logits of a full
softmax, exact log-probabilities of the adaptive one); `model(ids, state, targets)` gives each
target's -log p instead, which is what training and scoring read (the adaptive softmax then skips
the tails no target falls in).

The recurrent core is PyTorch's own module, so CUDA runs cuDNN's fused kernels. The hidden state is
returned and fed back by the caller: that is what makes truncated BPTT stateful.

Regularisers of AWD-LSTM (Merity et al. 2018), each an option that is off at 0:

    embed_drop    whole vocabulary rows of the embedding dropped for a window (a token type
                  vanishes everywhere in it), the rest rescaled
    locked        the input and output dropout masks are drawn once per window and shared by
                  every time step (variational dropout, Gal & Ghahramani 2016)
    weight_drop   DropConnect on the hidden-to-hidden matrices: one mask per window, applied to
                  the weights, so cuDNN's fused kernel still runs the whole sequence
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F
from torch import nn
from torch.func import functional_call

from charrnn.checkpoint import Checkpoint
from charrnn.lm.config import ModelConfig
from charrnn.lm.softmax import AdaptiveSoftmax
from charrnn.rnn import state as states
from charrnn.rnn.layers import CELLS, Dropout, dropout, embedding, forget_bias_one
from charrnn.rnn.state import State


class RNNLM(nn.Module):
    def __init__(self, config: ModelConfig) -> None:
        super().__init__()
        self.config = config
        emb = config.emb_size
        self.embed = embedding(config.vocab_size, emb)
        self.drop = Dropout(config.dropout)
        self.rnn = CELLS[config.cell](
            emb, config.hidden, num_layers=config.layers, batch_first=True,
            dropout=config.dropout if config.layers > 1 else 0.0,
        )
        out_size = config.hidden
        self.proj: nn.Module = nn.Identity()
        if config.tie_weights and config.hidden != emb:
            self.proj = nn.Linear(config.hidden, emb)
            out_size = emb
        self.adaptive = config.softmax == "adaptive"
        self.never: tuple[torch.Tensor, float] | None = None  # (ids, log-prob): never_write's
        if self.adaptive:  # tied: the head's shortlist rows are embedding rows
            self.head: nn.Module = AdaptiveSoftmax(out_size, config.vocab_size, config.cutoffs,
                                                   config.div_value,
                                                   self.embed if config.tie_weights else None)
        else:
            self.head = nn.Linear(out_size, config.vocab_size)
            if config.tie_weights:
                self.head.weight = self.embed.weight  # Press & Wolf 2017: one matrix in and out
        self._init_weights()

    def _init_weights(self) -> None:
        nn.init.uniform_(self.embed.weight, -0.1, 0.1)
        if not self.adaptive:
            nn.init.zeros_(self.head.bias)
        if self.config.cell == "lstm":
            forget_bias_one(self.rnn, self.config.hidden)

    def forward(self, ids: torch.Tensor, state: State | None = None,
                targets: torch.Tensor | None = None) -> tuple[torch.Tensor, State]:
        """(scores (B, T, V), state); with targets (B, T): (-log p of each target (B·T,), state)."""
        features, state = self.features(ids, state)
        if targets is not None:
            return self.nll(features, targets), state
        return self.scores(features), state

    def features(self, ids: torch.Tensor, state: State | None = None
                 ) -> tuple[torch.Tensor, State]:
        """(B, T) ids → (what the output layer reads (B, T, d), state): `scores` and `nll` of
        chosen positions only cost less than scores everywhere (fill's rescoring)."""
        x = self._dropout(self._embed(ids))
        out, state = self._recurrent(x, state)
        return self.proj(self._dropout(out)), state

    def never_write(self, ids: list[int], bias: float) -> None:
        """A sampling model's: these tokens' output bias set to `bias` (lm.plain.NEVER), so that
        no draw writes them; the adaptive softmax's log-probabilities, which have no such bias,
        set to it in `scores` (a subword vocabulary of 5,000 pieces or more takes that head)."""
        if not ids:
            return
        if self.adaptive:
            device = next(self.parameters()).device
            self.never = (torch.tensor(ids, dtype=torch.long, device=device), bias)
            return
        with torch.no_grad():
            self.head.bias[ids] = bias

    def scores(self, features: torch.Tensor) -> torch.Tensor:
        """(…, d) → (…, V): logits, or the adaptive softmax's log-probabilities."""
        if not self.adaptive:
            return self.head(features)
        flat = features.reshape(-1, features.size(-1))
        scores = self.head.log_prob(flat).view(*features.shape[:-1], -1)
        return scores if self.never is None else scores.index_fill(-1, *self.never)

    def nll(self, features: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        flat, targets = features.reshape(-1, features.size(-1)), targets.reshape(-1)
        if self.adaptive:
            return self.head.nll(flat, targets)
        return F.cross_entropy(self.head(flat).float(), targets, reduction="none")

    def _embed(self, ids: torch.Tensor) -> torch.Tensor:
        p = self.config.embed_drop
        if not (self.training and p > 0):
            return self.embed(ids)
        weight = self.embed.weight
        keep = weight.new_empty(weight.size(0), 1).bernoulli_(1 - p) / (1 - p)
        return F.embedding(ids, weight * keep)

    def _dropout(self, x: torch.Tensor) -> torch.Tensor:
        """(B, T, C): plain dropout, or one mask per row shared by all T steps when locked."""
        p = self.config.dropout
        if not (self.training and p > 0 and self.config.locked_dropout):
            return self.drop(x)
        mask = x.new_empty(x.size(0), 1, x.size(2)).bernoulli_(1 - p) / (1 - p)
        return x * mask

    def _recurrent(self, x: torch.Tensor, state: State | None) -> tuple[torch.Tensor, State]:
        p = self.config.weight_drop
        if not (self.training and p > 0):
            return self.rnn(x, state)
        # The module runs with dropped copies of its weight_hh_l* (gradients reach the originals):
        # RNNBase re-reads assigned weights, so the fused sequence kernel still does all T steps.
        dropped = {name: dropout(weight, p) for name, weight in self.rnn.named_parameters()
                   if name.startswith("weight_hh")}
        with warnings.catch_warnings():  # cuDNN repacks the non-contiguous weights: expected here
            warnings.filterwarnings("ignore", message="RNN module weights are not part")
            return functional_call(self.rnn, dropped, (x, state))

    def initial_state(self, batch: int, device: torch.device | str) -> State:
        cfg = self.config
        return states.zeros(cfg.cell, cfg.layers, batch, cfg.hidden, device)

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def load_lm(ckpt: Checkpoint, device: torch.device | str = "cpu") -> RNNLM:
    ckpt.require_task("lm", f"use `charrnn {ckpt.task}` with it")
    return ckpt.build(ModelConfig, RNNLM, device)
