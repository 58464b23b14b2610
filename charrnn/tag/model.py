"""Bidirectional RNN taggers: the LMs' cells read both ways, one output layer per position.

    char level (segmentation)   [char emb ; bigram emb (c₋₁c) ; bigram emb (cc₊₁)]
    word level (conll)          [word emb ; char-CNN of the word ; feature embs (e.g. POS)]
        ─ dropout ─ BiRNN (rnn|lstm|gru, stacked; forward and backward weights separate,
        outputs concatenated) ─ dropout ─ Linear(2·hidden → labels)

The char CNN gives every word, seen or not, a vector from its spelling, so unseen words still get
sensible tags. Padded batches are packed, so the backward direction of a short sentence never reads
padding. `BiRNN` (charrnn.rnn.layers) is shared with the masked fill model (charrnn.fill.model).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from charrnn.rnn.layers import BiRNN, Dropout, embedding
from charrnn.tag.config import TaggerConfig


class CharCNN(nn.Module):
    """A word's characters → one vector (conv over 3-char windows, max over the word)."""

    def __init__(self, n_chars: int, emb: int, filters: int) -> None:
        super().__init__()
        self.embed = embedding(n_chars, emb, padding_idx=0)
        self.conv = nn.Conv1d(emb, filters, kernel_size=3, padding=1)

    def forward(self, chars: torch.Tensor) -> torch.Tensor:  # (B, T, W) → (B, T, filters)
        b, t, w = chars.shape
        x = self.embed(chars.view(b * t, w)).transpose(1, 2)
        x = torch.relu(self.conv(x))
        x = x.masked_fill((chars.view(b * t, 1, w) == 0), 0.0)  # padding never wins the max
        return x.max(dim=2).values.view(b, t, -1)


class Tagger(nn.Module):
    def __init__(self, config: TaggerConfig) -> None:
        super().__init__()
        self.config = c = config
        self.embed = embedding(c.n_tokens, c.emb, padding_idx=0)
        size = c.emb
        if c.level == "char" and c.n_bigrams:
            self.bigrams = embedding(c.n_bigrams, c.bigram_emb, padding_idx=0)
            size += 2 * c.bigram_emb
        if c.level == "word" and c.n_chars:
            self.char_cnn = CharCNN(c.n_chars, c.char_emb, c.char_filters)
            size += c.char_filters
        self.features = nn.ModuleList(embedding(n, c.feature_emb, padding_idx=0)
                                      for n in c.feature_sizes)
        size += c.feature_emb * len(c.feature_sizes)
        self.drop = Dropout(c.dropout)
        self.encoder = BiRNN(c.cell, size, c.hidden, c.layers, c.dropout)
        self.head = nn.Linear(2 * c.hidden, c.n_labels)

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Batch of padded arrays (see tagdata.Encoder.encode) → logits (B, T, labels)."""
        parts = [self.embed(batch["tokens"])]
        if hasattr(self, "bigrams"):
            parts += [self.bigrams(batch["bigram_left"]), self.bigrams(batch["bigram_right"])]
        if hasattr(self, "char_cnn"):
            parts.append(self.char_cnn(batch["chars"]))
        for k, table in enumerate(self.features):
            parts.append(table(batch["features"][..., k]))
        x = self.drop(torch.cat(parts, dim=-1))
        out = self.encoder(x, batch.get("lengths"))
        return self.head(self.drop(out))

    def num_parameters(self) -> int:
        return sum(p.numel() for p in self.parameters())


def allowed_transitions(labels: list[str], sequences: list[list[str]]) -> torch.Tensor | None:
    """Hard constraints for decoding: (L+2, L) mask rows = previous label, START, END checks.

    B/M/E/S: a word starts with B or S, B/M go on to M or E, E/S are followed by B or S.
    IOB2 chunks (every chunk starts with B-, as in CoNLL-2000): I-X only after B-X or I-X.
    IOB1 data (I- may open a chunk) and other label sets are left unconstrained.
    Returns a boolean tensor: ok[prev, cur] for prev < L, ok[L, cur] = may start, ok[L+1, cur] =
    may end; or None when no constraint applies.
    """
    n = len(labels)
    ok = torch.ones(n + 2, n, dtype=torch.bool)
    if set(labels) <= set("BMES"):
        for i, prev in enumerate(labels):
            for j, cur in enumerate(labels):
                ok[i, j] = (cur in "ME") if prev in "BM" else (cur in "BS")
        for j, cur in enumerate(labels):
            ok[n, j] = cur in "BS"
            ok[n + 1, j] = cur in "ES"
        return ok
    if not all(lab == "O" or lab[:2] in ("B-", "I-") for lab in labels):
        return None
    for seq in sequences:  # IOB1 check: an I- that opens a chunk means no constraint
        prev = "O"
        for lab in seq:
            if lab.startswith("I-") and prev[2:] != lab[2:]:
                return None
            prev = lab
    for j, cur in enumerate(labels):
        if cur.startswith("I-"):
            for i, prev in enumerate(labels):
                ok[i, j] = prev[2:] == cur[2:] and prev != "O"
            ok[n, j] = False
    return ok


def viterbi(log_probs: torch.Tensor, lengths: torch.Tensor, ok: torch.Tensor | None) -> list[list[int]]:
    """Best label sequence per sentence under the hard constraints (argmax when there are none).
    In numpy on the host, with one preallocated table of back-pointers: a step costs a few
    microseconds and no object of its own, so a line of a million tokens decodes in seconds."""
    if ok is None:
        best = log_probs.argmax(-1)
        return [best[b, : int(n)].tolist() for b, n in enumerate(lengths)]
    lp = log_probs.detach().cpu().float().numpy()
    sizes = lengths.cpu().numpy()
    n_sent, n_steps, n_labels = lp.shape
    allowed = ok.cpu().numpy()
    trans = np.where(allowed[:n_labels], 0.0, -np.inf).astype(np.float32)
    start = np.where(allowed[n_labels], 0.0, -np.inf).astype(np.float32)
    end = np.where(allowed[n_labels + 1], 0.0, -np.inf).astype(np.float32)
    score = lp[:, 0] + start
    back = np.empty((n_sent, max(0, n_steps - 1), n_labels), dtype=np.int16)
    stay = np.broadcast_to(np.arange(n_labels, dtype=np.int16), (n_sent, n_labels))
    for t in range(1, n_steps):
        cand = score[:, :, None] + trans[None]  # (sentence, previous label, label)
        arg = cand.argmax(1)
        alive = (t < sizes)[:, None]
        score = np.where(alive, cand.max(1) + lp[:, t], score)
        back[:, t - 1] = np.where(alive, arg, stay)
    finals = score + end
    out = []
    for b, length in enumerate(sizes.tolist()):
        if not np.isfinite(finals[b]).any():  # nothing fits: fall back to argmax
            out.append(lp[b, :length].argmax(-1).tolist())
            continue
        label = int(finals[b].argmax())
        path = [label]
        for t in range(length - 1, 0, -1):
            label = int(back[b, t - 1, label])
            path.append(label)
        out.append(path[::-1])
    return out
