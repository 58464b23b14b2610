"""`charrnn tag train`: a tagger trained on whole sentences, on the shared loop (charrnn.training).

    sentences ─ Encoder ─ id arrays ─ batches of similar length (padded, packed by the model)
              ─ Tagger ─ cross-entropy on real positions ─ (the loop: optimizer, clipping, warmup
              + cosine, sync points)
    every epoch (or --eval-every steps): decode the validation set with constrained Viterbi,
    score it (F1 for chunks and segmentation, accuracy otherwise), write last/ and, when it
    improved, best/ — atomic safetensors + checkpoint.json folders with "task": "tag".
"""

from __future__ import annotations

import math
import random
from dataclasses import asdict
from pathlib import Path

import torch
import torch.nn.functional as F

from charrnn import runlock, runs
from charrnn.devices import host_to_device, out_of_memory_is_too_big, require_fits, resolve_device
from charrnn.errors import UserError
from charrnn.tag import score as tagscore
from charrnn.tag.config import TaggerConfig, TagTrainConfig
from charrnn.tag.data import UNK, Encoder, Sentence, read_data
from charrnn.tag.model import Tagger, allowed_transitions
from charrnn.tag.predict import TaggerBundle, collate, length_batches, load_tagger
from charrnn.training.loop import Loop, StatelessTask
from charrnn.training.reporters import Reporter


class TagTask(StatelessTask):
    """The tagger's side of the loop: shuffled sentence batches, token dropout, F1 on validation."""

    higher_is_better = True

    def __init__(self, bundle: TaggerBundle, cfg: TagTrainConfig, train_sents: list[Sentence],
                 val_sents: list[Sentence], metric: str) -> None:
        self.bundle, self.cfg, self.model = bundle, cfg, bundle.model
        self.val_sents, self.metric = val_sents, metric
        self.has_validation = bool(val_sents)
        self.encoded = [bundle.encoder.encode(s) for s in train_sents]
        self.lengths = [len(e["tokens"]) for e in self.encoded]
        self.steps_per_epoch = math.ceil(len(self.encoded) / cfg.batch_size)
        self.rng = random.Random(cfg.seed)
        self.epoch_batches: dict[int, list[list[int]]] = {}
        self.unk = bundle.encoder.tokens.index(UNK)
        self.generator = torch.Generator().manual_seed(cfg.seed)

    def _batch(self, epoch: int, pos: int) -> dict:
        if epoch not in self.epoch_batches:
            self.epoch_batches = {epoch: length_batches(self.lengths, self.cfg.batch_size, self.rng)}
        device = self.bundle.device
        out = collate([self.encoded[i] for i in self.epoch_batches[epoch][pos]], device)
        if self.cfg.token_dropout > 0:
            drop = torch.rand(out["tokens"].shape, generator=self.generator) < self.cfg.token_dropout
            out["tokens"] = out["tokens"].masked_fill(
                host_to_device(drop, device) & (out["tokens"] > 0), self.unk)
        return out

    def loss(self, epoch: int, pos: int) -> tuple[torch.Tensor, int]:
        batch = self._batch(epoch, pos)
        logits = self.model(batch)  # padding (token 0) is ignored; no boolean indexing: no sync
        labels = batch["labels"].masked_fill(batch["tokens"] == 0, -100)
        loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), ignore_index=-100)
        return loss, int(batch["lengths"].sum())

    def evaluate(self) -> dict:
        return self.bundle.score(self.val_sents) if self.val_sents else {}

    def checkpoint_meta(self) -> dict:
        return dict(self.bundle.meta)

    def out_of_memory(self) -> str:
        return f"{self.cfg.batch_size} sentences a batch: use a smaller --batch-size or --hidden"


def split_validation(sentences: list[Sentence], frac: float, seed: int
                     ) -> tuple[list[Sentence], list[Sentence]]:
    if frac <= 0 or len(sentences) < 2:
        return sentences, []
    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    n_val = max(1, int(len(sentences) * frac))
    val = set(order[:n_val])
    return ([s for i, s in enumerate(sentences) if i not in val],
            [s for i, s in enumerate(sentences) if i in val])


def _read_splits(data: str, cfg: TagTrainConfig, valid: str | None, test: str | None):
    read = lambda path: read_data(path, cfg.format, cfg.label_column, cfg.features)  # noqa: E731
    train_sents = read(data)
    if len(train_sents) < 2:
        raise UserError(f"{data} holds {len(train_sents)} sentence(s): too few to train a tagger "
                        "(a blank line ends each CoNLL sentence; a line is one segmented sentence)")
    if valid is not None:
        val_sents = read(valid)
    else:
        train_sents, val_sents = split_validation(train_sents, cfg.val_frac, cfg.seed)
    return train_sents, val_sents, read(test) if test else None


def _build(data: str, cfg: TagTrainConfig, train_sents: list[Sentence]) -> TaggerBundle:
    """Vocabularies, constraints and the model (its size checked against memory)."""
    level = "char" if cfg.format == "segmented" else "word"
    encoder = Encoder.build(train_sents, level, cfg.min_count)
    if len(encoder.labels) < 2:
        raise UserError(f"{data} has a single label ({', '.join(encoder.labels)}): nothing to "
                        "learn; check --label-column and --format")
    mcfg = cfg.model_config(level, len(encoder.tokens), len(encoder.labels), len(encoder.bigrams),
                            len(encoder.chars), [len(v) for v in encoder.features])
    device = resolve_device(cfg.device)
    params = require_fits(lambda: Tagger(mcfg), device)
    torch.manual_seed(cfg.seed)
    with out_of_memory_is_too_big(params, device):
        model = Tagger(mcfg).to(device)
    ok = allowed_transitions(encoder.labels, [s.labels or [] for s in train_sents])
    meta = {"task": "tag", "model": mcfg.to_json(), "tokenizer": encoder.to_json(),
            "tag": {"format": cfg.format, "label_column": cfg.label_column,
                    "features": cfg.features, "constraints": None if ok is None else ok.tolist()}}
    return TaggerBundle(model, encoder, meta, device)


def train_tagger(data: str, cfg: TagTrainConfig, root: Path, run_name: str | None = None,
                 valid: str | None = None, test: str | None = None,
                 reporter: Reporter | None = None) -> dict:
    """`charrnn tag train`: read, build vocabularies, train, keep the best on validation; score
    `test` with best/ at the end (not when interrupted: the user asked to stop)."""
    train_sents, val_sents, test_sents = _read_splits(data, cfg, valid, test)
    bundle = _build(data, cfg, train_sents)
    info = {"task": "tag", "data": str(data), "format": cfg.format,
            "sentences": {"train": len(train_sents), "val": len(val_sents)},
            "config": asdict(cfg)}
    run_dir = runs.new_run_dir(root, run_name, "tag", info)
    level, labels = bundle.encoder.level, bundle.encoder.labels
    metric = "f1" if (level == "char" or bundle.meta["tag"]["constraints"] is not None
                      or tagscore.is_chunk_tagset(labels)) else "accuracy"
    task = TagTask(bundle, cfg, train_sents, val_sents, metric)
    with out_of_memory_is_too_big(bundle.model.num_parameters(), bundle.device):
        loop = Loop(task, cfg, run_dir, bundle.device, reporter=reporter)
    mcfg: TaggerConfig = bundle.model.config
    loop.reporter.message(
        f"run {run_dir} | {len(train_sents):,} train / {len(val_sents):,} val sentences | "
        f"{len(bundle.encoder.tokens):,} tokens, {len(labels)} labels | {mcfg.cell} "
        f"{mcfg.layers}×{mcfg.hidden} bidirectional, {bundle.model.num_parameters():,} params | "
        f"{bundle.device}")
    with runlock.writer(run_dir):
        result = loop.run()
    verb = "stopped" if result["outcome"] == "interrupted" else "done"
    loop.reporter.message(f"{verb} at step {result['step']}; checkpoints in {run_dir}")
    loop.end_if_reader_gone(result)
    if test_sents is not None and result["outcome"] != "interrupted":
        result["test"] = load_tagger(str(run_dir), root, cfg.device).score(test_sents)
    return result
