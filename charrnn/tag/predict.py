"""A trained tagger at work: decode sentences with constrained Viterbi, score labelled ones.

    sentences ─ Encoder ─ batches of similar length ─ Tagger ─ log-softmax ─ Viterbi under the
    label scheme's hard constraints (B/M/E/S order; IOB2's I-X only after B-X or I-X) ─ labels
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from charrnn import checkpoint
from charrnn.configs import is_int
from charrnn.devices import host_to_device, resolve_device
from charrnn.errors import UserError
from charrnn.tag import score as tagscore
from charrnn.tag.config import TaggerConfig
from charrnn.tag.data import Encoder, Sentence, words_from_tags
from charrnn.tag.model import Tagger, viterbi

# A sentence longer than WINDOW tokens is tagged WINDOW at a time, each window read with CONTEXT
# tokens either side: what a BiRNN's answer at a token depends on fades within far fewer tokens
# (measured in the README: the labels of long lines tagged whole and windowed).
WINDOW, CONTEXT = 4096, 256
BATCH_TOKENS = 32_768  # at most this many tokens a batch (activations of a few tens of MB)


def _capped(batches: list[list[int]], sizes: Sequence[int]) -> list[list[int]]:
    """Each batch of length_batches (unshuffled: shortest first, so each sentence added is the
    longest so far) split where its padded tokens would pass BATCH_TOKENS (64 lines of 4,000
    characters would take GBs at once)."""
    out: list[list[int]] = []
    for batch in batches:
        part: list[int] = []
        for i in batch:
            if part and (len(part) + 1) * sizes[i] > BATCH_TOKENS:
                out.append(part)
                part = []
            part.append(i)
        out.append(part)
    return out


def collate(items: Sequence[dict[str, np.ndarray]], device: torch.device) -> dict:
    """Pad encoded sentences into one batch (0 = padding everywhere), longest first, so that the
    BiRNN packs them without reordering; "order" maps each row back to its place in `items`."""
    order = sorted(range(len(items)), key=lambda i: -len(items[i]["tokens"]))
    items = [items[i] for i in order]
    lengths = [len(it["tokens"]) for it in items]
    width = max(lengths)
    out: dict = {"lengths": torch.tensor(lengths), "order": order}
    for key, first in items[0].items():
        grid = np.zeros((len(items), width, *first.shape[1:]), dtype=np.int64)
        for i, it in enumerate(items):
            grid[i, : len(it[key])] = it[key]
        out[key] = host_to_device(grid, device)
    return out


def length_batches(lengths: Sequence[int], batch_size: int, rng: random.Random | None) -> list[list[int]]:
    """Batches of sentences of similar length (little padding); shuffled when rng is given."""
    order = list(range(len(lengths)))
    if rng is not None:  # sort within shuffled pools, so batches differ from epoch to epoch
        rng.shuffle(order)
        pool = batch_size * 50
        order = [i for lo in range(0, len(order), pool)
                 for i in sorted(order[lo : lo + pool], key=lengths.__getitem__)]
    else:
        order.sort(key=lengths.__getitem__)
    batches = [order[lo : lo + batch_size] for lo in range(0, len(order), batch_size)]
    if rng is not None:
        rng.shuffle(batches)
    return batches


@dataclass
class TaggerBundle:
    """A loaded tagger with what it needs to read text and decode."""

    model: Tagger
    encoder: Encoder
    meta: dict
    device: torch.device

    @property
    def constraints(self) -> torch.Tensor | None:
        ok = self.meta["tag"].get("constraints")
        return None if ok is None else torch.tensor(ok, dtype=torch.bool)

    @torch.inference_mode()
    def predict(self, sentences: Sequence[Sentence], batch_size: int = 64) -> list[list[str]]:
        """The labels of each sentence (tag.data.Sentence: its tokens, and features the tagger
        reads), best path under the label constraints."""
        if isinstance(sentences, str) or not all(isinstance(s, Sentence) for s in sentences):
            raise UserError("predict takes a list of Sentence(tokens) (charrnn.tag.data), e.g. "
                            "[Sentence(['He', 'reckons'])]")
        if not is_int(batch_size) or batch_size < 1:
            raise UserError(f"batch_size must be a whole number ≥ 1, got {batch_size!r}")
        self.model.eval()
        encoded = [self.encoder.encode(Sentence(s.tokens, None, s.features)) for s in sentences]
        out: list[list[str]] = [[] for _ in sentences]
        ok = self.constraints
        short = [i for i, e in enumerate(encoded) if 0 < len(e["tokens"]) <= WINDOW]
        sizes = [len(encoded[i]["tokens"]) for i in short]
        for rows in _capped(length_batches(sizes, batch_size, None), sizes):
            index = [short[r] for r in rows]  # empty lines: no labels
            batch = collate([encoded[i] for i in index], self.device)
            log_probs = F.log_softmax(self.model(batch).float(), -1).cpu()
            for row, path in zip(batch["order"], viterbi(log_probs, batch["lengths"], ok),
                                 strict=True):
                out[index[row]] = [self.encoder.labels[j] for j in path]
        for i, item in enumerate(encoded):
            if len(item["tokens"]) > WINDOW:
                log_probs = self._windowed(item, batch_size)
                (path,) = viterbi(log_probs[None], torch.tensor([len(log_probs)]), ok)
                out[i] = [self.encoder.labels[j] for j in path]
        return out

    def _windowed(self, item: dict[str, np.ndarray], batch_size: int) -> torch.Tensor:
        """A long sentence's label log-probabilities, WINDOW tokens at a time, each read with
        CONTEXT tokens either side (the memory of a whole MB-long line is GBs):

            ...[ context | window 1 | context ]
                           [ context | window 2 | context ] ...     one Viterbi over them all
        """
        length = len(item["tokens"])
        spans = [(lo, min(lo + WINDOW, length)) for lo in range(0, length, WINDOW)]
        pieces: list[torch.Tensor] = [torch.empty(0)] * len(spans)
        per_batch = max(1, min(batch_size, BATCH_TOKENS // (WINDOW + 2 * CONTEXT)))
        for first in range(0, len(spans), per_batch):
            group = range(first, min(first + per_batch, len(spans)))
            reads = [(max(0, spans[k][0] - CONTEXT), min(length, spans[k][1] + CONTEXT))
                     for k in group]
            batch = collate([{key: v[a:b] for key, v in item.items()} for a, b in reads],
                            self.device)
            log_probs = F.log_softmax(self.model(batch).float(), -1).cpu()
            for row, k in enumerate(batch["order"]):
                (lo, hi), (a, _) = spans[group[k]], reads[k]
                pieces[group[k]] = log_probs[row, lo - a : hi - a]
        return torch.cat(pieces)

    def score(self, sentences: Sequence[Sentence]) -> dict:
        """Token accuracy plus the task's standard score on labelled sentences."""
        pred = self.predict(sentences)
        gold = [s.labels or [] for s in sentences]
        result: dict = {"sentences": len(sentences), "tokens": sum(map(len, gold)),
                        "accuracy": tagscore.accuracy(gold, pred)}
        kind = self.score_kind
        if kind == "word":
            result.update(score=kind, **tagscore.word_f1(
                [words_from_tags(s.tokens, g) for s, g in zip(sentences, gold, strict=True)],
                [words_from_tags(s.tokens, p) for s, p in zip(sentences, pred, strict=True)]))
        elif kind == "chunk":
            result.update(score=kind, **tagscore.chunk_f1(gold, pred))
        return result

    @property
    def score_kind(self) -> str | None:
        """The standard score of the labels: word F1 for B/M/E/S (segmentation, read from
        segmented lines or CoNLL columns alike), chunk F1 for IOB chunks; None: accuracy only."""
        if set(self.encoder.labels) <= set("BMES"):
            return "word"
        return "chunk" if tagscore.is_chunk_tagset(self.encoder.labels) else None


def load_tagger(spec: str | None, root: Path, device: str = "auto",
                say: Callable[[str], None] | None = None) -> TaggerBundle:
    """A tagger run's best/ checkpoint (its last/ where it has none, which `say` is told: the
    run stopped before its first evaluation) or the checkpoint named."""
    ckpt = checkpoint.resolve(spec, root, kind="tag")
    ckpt.require_task("tag", "train one with `charrnn tag train`")
    if say is not None and ckpt.folder.name == "last" and Path(spec or "").name != "last":
        say(f"run {ckpt.run_folder.name} has no best/ checkpoint (it stopped before its first "
            "evaluation): this is its last/")
    dev = resolve_device(device)
    model = ckpt.build(TaggerConfig, Tagger, dev)
    return TaggerBundle(model.eval(), Encoder.from_json(ckpt.meta["tokenizer"]), ckpt.meta, dev)
