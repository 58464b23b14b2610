"""`charrnn tag train`: a tagger trained on whole sentences, on the shared loop (charrnn.training).

    sentences ─ Encoder ─ id arrays ─ batches of similar length (padded, packed by the model)
              ─ Tagger ─ cross-entropy on real positions ─ (the loop: optimizer, clipping, warmup
              + cosine, sync points)
    every epoch (or --eval-every steps): decode the validation set with constrained Viterbi,
    score it (F1 for chunks and segmentation, accuracy otherwise), write last/ and, when it
    improved, best/ — atomic safetensors + checkpoint.json folders with "task": "tag".

Each checkpoint records where its sentences were read and a digest of them, so `--resume`
continues a run exactly on the same sentences (read from the same place, or given again).
"""

from __future__ import annotations

import hashlib
import math
import random
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from charrnn import checkpoint, runlock, runs
from charrnn.devices import (
    host_to_device,
    keeps_global_rng,
    out_of_memory_is_too_big,
    require_fits,
    resolve_device,
)
from charrnn.errors import UserError, option
from charrnn.tag.config import TaggerConfig, TagTrainConfig
from charrnn.tag.data import UNK, Encoder, Sentence, read_data
from charrnn.tag.model import Tagger, allowed_transitions
from charrnn.tag.predict import TaggerBundle, collate, length_batches, load_tagger
from charrnn.training.loop import Loop, Progress, StatelessTask
from charrnn.training.reporters import Reporter


class TagTask(StatelessTask):
    """The tagger's side of the loop: shuffled sentence batches, token dropout, F1 on validation.
    An epoch's batches and a step's dropped tokens are functions of (seed, epoch, step), so the
    loop's own state (weights, optimizer, progress, RNG) is all a resume needs."""

    higher_is_better, resumable = True, True

    def __init__(self, bundle: TaggerBundle, cfg: TagTrainConfig, train_sents: list[Sentence],
                 val_sents: list[Sentence], metric: str) -> None:
        self.bundle, self.cfg, self.model = bundle, cfg, bundle.model
        self.val_sents, self.metric = val_sents, metric
        self.has_validation = bool(val_sents)
        self.encoded = [bundle.encoder.encode(s) for s in train_sents]
        self.lengths = [len(e["tokens"]) for e in self.encoded]
        self.steps_per_epoch = math.ceil(len(self.encoded) / cfg.batch_size)
        self.epoch_batches: dict[int, list[list[int]]] = {}
        self.unk = bundle.encoder.tokens.index(UNK)

    def _batch(self, epoch: int, pos: int) -> dict:
        cfg = self.cfg
        if epoch not in self.epoch_batches:  # (a string seeds Random the same in every process)
            self.epoch_batches = {epoch: length_batches(
                self.lengths, cfg.batch_size, random.Random(f"{cfg.seed}/{epoch}"))}
        device = self.bundle.device
        out = collate([self.encoded[i] for i in self.epoch_batches[epoch][pos]], device)
        if cfg.token_dropout > 0:
            rng = np.random.default_rng([cfg.seed, epoch, pos])
            drop = torch.from_numpy(rng.random(tuple(out["tokens"].shape)) < cfg.token_dropout)
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
        return (f"{self.cfg.batch_size} sentences a batch: use a smaller {option('batch_size')} or "
                f"{option('hidden')}")


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
    given = {"train": _fingerprint(data, train_sents)}
    if valid is not None:
        val_sents = read(valid)
        given["valid"] = _fingerprint(valid, val_sents)
        _refuse_trained_on(given["train"], given["valid"], valid, "valid")
    else:
        train_sents, val_sents = split_validation(train_sents, cfg.val_frac, cfg.seed)
    test_sents = read(test) if test else None
    if test:
        _refuse_trained_on(given["train"], _fingerprint(test, test_sents), test, "test")
    return train_sents, val_sents, test_sents, given


def _refuse_trained_on(train: dict, other: dict, path: str, split: str) -> None:
    """The training sentences given again as --valid or --test (the same file, a link or a
    copy): a score on what the tagger trained on says nothing of new text."""
    if other["sha256"] == train["sha256"]:
        raise UserError(f"{path} holds the training sentences: a tagger scored on what it trained "
                        f"on says nothing of new text; give {option(split)} sentences of their own")


def _fingerprint(path: str, sentences: list[Sentence]) -> dict:
    """Where the text was read, and a digest of what was read from it (tokens, labels, feature
    columns): a resumed run must read the same sentences, wherever they are now."""
    digest = hashlib.sha256()
    for s in sentences:
        for column in (s.tokens, s.labels or [], *s.features):
            digest.update("\x1f".join(column).encode("utf-8", "surrogatepass") + b"\x1e")
        digest.update(b"\x1d")
    return {"path": str(Path(path).resolve()) if path != "-" else "-",
            "sentences": len(sentences), "sha256": digest.hexdigest()}


def _build(data: str, cfg: TagTrainConfig, train_sents: list[Sentence]) -> TaggerBundle:
    """Vocabularies, constraints and the model (its size checked against memory)."""
    level = "char" if cfg.format == "segmented" else "word"
    encoder = Encoder.build(train_sents, level, cfg.min_count)
    if len(encoder.labels) < 2:
        raise UserError(f"{data} has a single label ({', '.join(encoder.labels)}): nothing to "
                        f"learn; check {option('label_column')} and {option('format')}")
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


@keeps_global_rng
def train_tagger(data: str, cfg: TagTrainConfig, root: Path, run_name: str | None = None,
                 valid: str | None = None, test: str | None = None,
                 reporter: Reporter | None = None) -> dict:
    """`charrnn tag train`: read, build vocabularies, train, keep the best on validation; score
    `test` with best/ at the end (not when interrupted: the user asked to stop)."""
    train_sents, val_sents, test_sents, given = _read_splits(data, cfg, valid, test)
    bundle = _build(data, cfg, train_sents)
    bundle.meta["data"] = given
    task = TagTask(bundle, cfg, train_sents, val_sents, _metric(bundle))
    run_dir = runs.new_run_dir(root, run_name, "tag", _run_record(data, cfg, task))
    with runlock.writer(run_dir), runs.kept_if_saved(run_dir):
        loop = _loop(task, run_dir, reporter)
        loop.reporter.message(f"run {run_dir} | {_described(task)} | {task.bundle.device}")
        _note_unseen(loop, bundle, {"validation": val_sents if valid else [],
                                    "test": test_sents or []})
        return _finish(loop, root, test_sents, cfg.device)


UNSEEN_NOTED = 0.5  # more of a split's tokens than this unseen in training: another format?


def _note_unseen(loop: Loop, bundle: TaggerBundle, splits: dict[str, list]) -> None:
    """A --valid or --test file mostly of tokens the training data lacks is trained and scored
    without complaint (a CoNLL file read as segmented text: F1 0.05); say so once, at the start."""
    for name, sentences in splits.items():
        share = bundle.encoder.unseen_share(sentences) if sentences else 0.0
        if share > UNSEEN_NOTED:
            loop.reporter.message(f"note: {share:.0%} of the {name} tokens never occur in the "
                                  "training data: is that file in the same format and language?")


@keeps_global_rng
def resume_tagger(ckpt: checkpoint.Checkpoint, cfg: TagTrainConfig, root: Path,
                  data: str | None = None, valid: str | None = None, test: str | None = None,
                  reporter: Reporter | None = None,
                  refuse_spent: Callable[[Progress, bool], None] | None = None) -> dict:
    """Continue `ckpt`'s tagger run exactly on the sentences it trained on: read again from
    `data` / `valid` where given, else from where the run read them; refused if they differ."""
    ckpt.require_task("tag", "`charrnn tag train --resume` continues taggers")
    recorded = ckpt.meta.get("data")
    if not isinstance(recorded, dict) or not all(
            isinstance(recorded.get(k), dict) for k in recorded.keys() | {"train"}):
        raise UserError(f"{ckpt.folder} was saved by a version that did not record its data, so "
                        "it cannot resume: train a new tagger")
    with runlock.writer(ckpt.run_folder):
        paths = {"train": data, "valid": valid}
        _refuse_other_split(recorded, valid)
        texts = {k: _resumed_text(k, paths[k], recorded[k], ckpt.run_folder.name)
                 for k in ("train", "valid") if recorded.get(k)}
        train_sents, val_sents, test_sents, given = _read_splits(
            texts["train"], cfg, texts.get("valid"), test)
        for part, fingerprint in given.items():
            _require_same(part, fingerprint, recorded[part], ckpt.run_folder.name)
        bundle = _resumed_bundle(ckpt, resolve_device(cfg.device))
        bundle.meta["data"] = given  # where the sentences are now, for the next resume
        task = TagTask(bundle, cfg, train_sents, val_sents, _metric(bundle))
        repaired = runs.repair_run_info(ckpt.run_folder, "tag", ckpt.started_at,
                                        _run_record(texts["train"], cfg, task))
        loop = _loop(task, ckpt.run_folder, reporter)
        loop.resume(ckpt, _described(task), repaired, refuse_spent)
        return _finish(loop, root, test_sents, cfg.device)


def _run_record(data: str, cfg: TagTrainConfig, task: TagTask) -> dict:
    """What run.json says of a tagger run beside its kind, name and creation time."""
    return {"task": "tag", "data": str(data), "format": cfg.format,
            "sentences": {"train": len(task.encoded), "val": len(task.val_sents)},
            "config": asdict(cfg)}


def _resumed_bundle(ckpt: checkpoint.Checkpoint, device: torch.device) -> TaggerBundle:
    try:
        meta = {k: ckpt.meta[k] for k in ("task", "model", "tokenizer", "tag", "data")}
        encoder = Encoder.from_json(meta["tokenizer"])
    except (KeyError, TypeError, ValueError) as exc:
        raise UserError(f"{ckpt.folder / checkpoint.META} is damaged ({exc!r} is missing or "
                        f"unreadable): {ckpt.without_state()}") from exc
    return TaggerBundle(ckpt.build(TaggerConfig, Tagger, device), encoder, meta, device)


def _refuse_other_split(recorded: dict, valid: str | None) -> None:
    if valid is not None and not recorded.get("valid"):
        raise UserError(f"{option('valid')} {valid}: the run held out its validation sentences from its "
                        f"training file ({option('val_frac')}), so it takes none; drop {option('valid')}")


def _resumed_text(part: str, given: str | None, recorded: dict, run: str) -> str:
    """The file to read a part of a resumed run's data from: the one given now, else the
    recorded one."""
    if given is not None:
        return given
    path = recorded.get("path", "-")
    if path == "-" or not Path(path).exists():
        what = "standard input" if path == "-" else f"{path}, which is gone"
        flag = "DATA" if part == "train" else f"{option('valid')} FILE"
        raise UserError(f"run {run} read its {'training' if part == 'train' else 'validation'} "
                        f"sentences from {what}: give the same text again as {flag}")
    return path


def _require_same(part: str, now: dict, then: dict, run: str) -> None:
    if now["sha256"] != then.get("sha256"):
        what = "training file (DATA)" if part == "train" else f"{option('valid')} file"
        before = then.get("sentences")
        before = f"{before:,}" if isinstance(before, int) else "?"
        raise UserError(f"the {what} {now['path']} is not what run {run} trained on "
                        f"({now['sentences']:,} sentences now, {before} then, or the same count "
                        "with other text): give the text it was trained on, or start a new run")


def _metric(bundle: TaggerBundle) -> str:
    """What validation improves: the F1 the labels' standard score has, else accuracy."""
    return "f1" if bundle.score_kind is not None else "accuracy"


def _loop(task: TagTask, run_dir: Path, reporter: Reporter | None) -> Loop:
    bundle = task.bundle
    with out_of_memory_is_too_big(bundle.model.num_parameters(), bundle.device):
        return Loop(task, task.cfg, run_dir, bundle.device, reporter=reporter)


def _described(task: TagTask) -> str:
    """The data and the model (a resume line names the device itself)."""
    bundle, mcfg = task.bundle, task.bundle.model.config
    return (f"{len(task.encoded):,} train / {len(task.val_sents):,} val sentences | "
            f"vocabulary {len(bundle.encoder.tokens):,}, {len(bundle.encoder.labels)} labels | "
            f"{mcfg.cell} {mcfg.layers}×{mcfg.hidden} bidirectional, "
            f"{bundle.model.num_parameters():,} params")


def _finish(loop: Loop, root: Path, test_sents: list[Sentence] | None, device: str) -> dict:
    result = loop.run()
    resume = f"charrnn tag train --resume {loop.run_dir.name}{runs.out_suffix(loop.run_dir)}"
    stopped = result["outcome"] == "interrupted"
    loop.reporter.message(f"{'stopped' if stopped else 'done'} at step {result['step']}"
                          f"{result['why_ended']}; checkpoints in {loop.run_dir}"
                          + (f"; continue with `{resume}`" if stopped else ""))
    loop.end_if_reader_gone(result, resume)
    if test_sents is not None and result["outcome"] != "interrupted":
        result["test"] = load_tagger(str(loop.run_dir), root, device).score(test_sents)
    return result
