"""The masked bidirectional model behind `charrnn fill` (`charrnn train --task fill`).

    windows of the corpus ─ some tokens and spans → <mask> (one <mask> per hidden token, so the
    model knows the span's length) ─ Embedding ─ BiRNN ─ Linear → the hidden tokens

Trained with the tagger's loop (charrnn.tag.train.fit) on random windows of the same cached
datasets the LMs use; the loss is cross-entropy on masked positions only. Checkpoints are the
usual safetensors + checkpoint.json folders, with "task": "fill", in a run of kind "fill".
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from charrnn import checkpoint, data, runs
from charrnn.devices import (
    host_to_device,
    out_of_memory_is_too_big,
    require_fits,
    resolve_device,
)
from charrnn.errors import UserError
from charrnn.lm.model import CELLS
from charrnn.tag.model import BiRNN
from charrnn.tag.train import Budget, Loop, fit

MASK_RATE = 0.2  # share of window tokens hidden per training example
MAX_SPAN = 10
VAL_WINDOWS = 64


@dataclass
class FillConfig:
    vocab_size: int
    cell: str = "lstm"
    layers: int = 2
    hidden: int = 256
    emb: int = 0  # 0: same as hidden
    dropout: float = 0.1

    def __post_init__(self) -> None:
        if self.cell not in CELLS:
            raise UserError(f"--cell must be one of {', '.join(CELLS)}, not {self.cell!r}")

    @property
    def mask_id(self) -> int:
        return self.vocab_size  # one id past the tokenizer's

    def to_json(self) -> dict:
        return asdict(self)

    @classmethod
    def from_json(cls, data_: dict) -> FillConfig:
        return cls(**{k: data_[k] for k in cls.__dataclass_fields__ if k in data_})


class FillModel(nn.Module):
    def __init__(self, config: FillConfig) -> None:
        super().__init__()
        self.config = config
        emb = config.emb or config.hidden
        self.embed = nn.Embedding(config.vocab_size + 1, emb)
        self.drop = nn.Dropout(config.dropout)
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


def _windows(ids: np.ndarray, starts: np.ndarray, length: int) -> np.ndarray:
    return np.stack([np.asarray(ids[s : s + length], dtype=np.int64) for s in starts])


def train_fill_job(task: str, inputs: list[str], popts: data.PreprocessOptions, cfg, root: Path,
                   run_name: str | None = None, resume: str | None = None,
                   mirror: str | None = None, plain: bool = False,
                   log: Callable[[str], None] | None = None) -> dict:
    """`charrnn train --task fill`: the masked BiRNN on the same cached dataset an LM would use."""
    from charrnn.corpora import resolve_inputs

    if task != "fill":
        raise UserError(f"--task must be lm or fill, not {task!r}")
    if resume is not None:
        raise UserError("--resume continues language models only; train the fill model again "
                        "(it keeps its best checkpoint by validation loss)")
    if cfg.direction != "forward":
        raise UserError("--direction does not apply to --task fill (the model reads both ways)")
    log = log or (lambda line: print(line, flush=True))
    dataset = data.prepare(resolve_inputs(inputs, popts, mirror), popts)
    train_ids, val_ids = dataset.ids("train"), dataset.ids("val")
    length, batch_size = cfg.seq_len, cfg.batch_size
    if len(train_ids) < length + 1:
        raise UserError(f"the training split has {len(train_ids):,} tokens, fewer than one window "
                        f"of --seq-len {length}: use a smaller --seq-len or more text")
    device = resolve_device(cfg.device)
    fcfg = FillConfig(dataset.tokenizer.vocab_size, cfg.cell, cfg.layers, cfg.hidden, cfg.emb,
                      cfg.dropout)
    params = require_fits(lambda: FillModel(fcfg), device)  # before the run folder exists
    torch.manual_seed(cfg.seed)
    with out_of_memory_is_too_big(params, device):
        model = FillModel(fcfg).to(device)
    info = {"task": "fill", "dataset": {"id": dataset.id, "level": dataset.tokenizer.level,
                                        "splits": dataset.meta["splits"]}, "config": asdict(cfg)}
    run_dir = runs.new_run_dir(root, run_name, "fill", info)

    def batch(epoch: int, pos: int) -> dict:
        rng = np.random.default_rng([cfg.seed, epoch, pos])  # a function of the step: reproducible
        starts = rng.integers(0, len(train_ids) - length, size=batch_size)
        return _masked(_windows(train_ids, starts, length), rng, fcfg.mask_id, device)

    val_batch = None
    if len(val_ids) > length:
        rng = np.random.default_rng([cfg.seed, 1 << 20])
        starts = np.linspace(0, len(val_ids) - length - 1, VAL_WINDOWS).astype(np.int64)
        val_batch = _masked(_windows(val_ids, starts, length), rng, fcfg.mask_id, device)

    def loss(b: dict) -> torch.Tensor:
        return F.nll_loss(model.masked_log_probs(b["input"], positions=b["where"]), b["target"])

    @torch.inference_mode()
    def evaluate() -> dict:
        if val_batch is None:
            return {}
        model.eval()
        log_probs = model.masked_log_probs(val_batch["input"], positions=val_batch["where"])
        return {"val_loss": float(F.nll_loss(log_probs, val_batch["target"])),
                "val_accuracy": float((log_probs.argmax(-1) == val_batch["target"]).float().mean())}

    def save(name: str, metrics: dict, progress: dict) -> None:
        meta = {"task": "fill", "model": fcfg.to_json(), "tokenizer": dataset.tokenizer.to_json(),
                "train": asdict(cfg), "dataset": {"id": dataset.id, "level": dataset.tokenizer.level},
                "metrics": metrics, "progress": progress, "saved_at": time.time()}
        checkpoint.save(run_dir / name, model, meta, None)

    steps = max(1, len(train_ids) // (batch_size * length))
    budget = Budget(cfg.epochs, cfg.max_steps, cfg.max_time)
    if budget.epochs is None and budget.max_steps is None and budget.max_time is None:
        budget.max_steps = 3000  # what `charrnn train` does without a budget
    log(f"run {run_dir} | fill model | {dataset.tokenizer.level} vocab {fcfg.vocab_size} | "
        f"{fcfg.cell} {fcfg.layers}×{fcfg.hidden} bidirectional, {model.num_parameters():,} params"
        f" | {device}")
    result = fit(Loop(model, steps, batch, loss, evaluate, save, "val_loss", higher_is_better=False),
                 budget, cfg.base_lr, cfg.weight_decay, cfg.grad_clip or 5.0, cfg.warmup,
                 cfg.eval_every, log)
    result["run"] = str(run_dir)
    best = result.get("best")
    verb = "stopped" if result["outcome"] == "interrupted" else "done"
    log(f"{verb} at step {result['step']}"
        + (f", best val {best:.4f} nats/masked token" if best is not None and math.isfinite(best)
           else "") + f"; run folder {run_dir}")
    return result


def _masked(windows: np.ndarray, rng: np.random.Generator, mask_id: int, device: torch.device) -> dict:
    hide = mask_spans(*windows.shape, rng)
    inputs = np.where(hide, mask_id, windows)
    return {"input": host_to_device(inputs, device), "target": host_to_device(windows[hide], device),
            "where": host_to_device(np.flatnonzero(hide), device)}  # row-major, as windows[hide]


def load_fill_model(ckpt: checkpoint.Checkpoint, device: torch.device) -> FillModel:
    model = FillModel(FillConfig.from_json(ckpt.meta["model"]))
    ckpt.load_into(model, device)
    return model.eval()
