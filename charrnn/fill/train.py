"""`charrnn train --task fill`: the masked BiRNN of charrnn.fill.model on the shared loop.

    random windows of the cached dataset (the one an LM would use) ─ spans → <mask> ─ BiRNN ─
    cross-entropy on the masked positions ─ (the loop: optimizer, clipping, schedule, saving)

Each step's windows and masks are a function of (seed, epoch, step), so a run is reproducible;
validation is 64 fixed windows of the val split. Checkpoints are the usual safetensors +
checkpoint.json folders, with "task": "fill", in a run of kind "fill"; `charrnn train --resume`
continues one exactly, as it does a language model.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from charrnn import checkpoint, data, runlock, runs
from charrnn.devices import keeps_global_rng, out_of_memory_is_too_big, require_fits, resolve_device
from charrnn.errors import UserError, option
from charrnn.fill.config import FillConfig, FillTrainConfig
from charrnn.fill.model import FillModel, masked_batch, windows_at
from charrnn.training.config import described_settings
from charrnn.training.loop import Loop, Progress, StatelessTask
from charrnn.training.reporters import Reporter, resume_command

VAL_WINDOWS = 64


class FillTask(StatelessTask):
    """The fill model's side of the loop: masked windows, masked-token loss and accuracy. It
    carries nothing between steps, so the loop's own state (weights, optimizer, progress, RNG)
    is all a resume needs."""

    metric, higher_is_better, resumable = "val_loss", False, True

    def __init__(self, dataset: data.Dataset, cfg: FillTrainConfig, model: FillModel,
                 device: torch.device) -> None:
        self.dataset, self.cfg, self.model, self.device = dataset, cfg, model, device
        self.train_ids, val_ids = dataset.ids("train"), dataset.ids("val")
        length = cfg.seq_len
        if len(self.train_ids) < length + 1:
            raise UserError(f"the training split has {len(self.train_ids):,} tokens, fewer than "
                            f"one window of {option('seq_len')} {length}: use a smaller "
                            f"{option('seq_len')} or more text")
        self.steps_per_epoch = max(1, len(self.train_ids) // (cfg.batch_size * length))
        self.val_batch = None
        if evaluates(dataset, length):
            rng = np.random.default_rng([cfg.seed, 1 << 20])
            starts = np.linspace(0, len(val_ids) - length - 1, VAL_WINDOWS).astype(np.int64)
            self.val_batch = masked_batch(windows_at(val_ids, starts, length), rng,
                                          model.config.mask_id, device)
        self.has_validation = self.val_batch is not None

    def loss(self, epoch: int, pos: int) -> tuple[torch.Tensor, int]:
        cfg = self.cfg
        rng = np.random.default_rng([cfg.seed, epoch, pos])  # a function of the step: reproducible
        starts = rng.integers(0, len(self.train_ids) - cfg.seq_len, size=cfg.batch_size)
        b = masked_batch(windows_at(self.train_ids, starts, cfg.seq_len), rng,
                         self.model.config.mask_id, self.device)
        log_probs = self.model.masked_log_probs(b["input"], positions=b["where"])
        return F.nll_loss(log_probs, b["target"]), cfg.batch_size * cfg.seq_len

    @torch.inference_mode()
    def evaluate(self) -> dict:
        b = self.val_batch
        if b is None:
            return {}
        self.model.eval()
        log_probs = self.model.masked_log_probs(b["input"], positions=b["where"])
        return {"val_loss": float(F.nll_loss(log_probs, b["target"])),
                "val_accuracy": float((log_probs.argmax(-1) == b["target"]).float().mean())}

    def checkpoint_meta(self) -> dict:
        ds = self.dataset
        return {"task": "fill", "model": self.model.config.to_json(),
                "tokenizer": ds.tokenizer.to_json(),
                "dataset": {"id": ds.id, "level": ds.tokenizer.level,
                            "val_tokens": ds.tokens("val"), **data.remaking(ds)}}

    def out_of_memory(self) -> str:
        cfg = self.cfg
        return (f"batch {cfg.batch_size}×{cfg.seq_len}, hidden {cfg.hidden}: use a smaller "
                f"{option('batch_size')}, {option('seq_len')} or {option('hidden')}")


def evaluates(dataset: data.Dataset, seq_len: int) -> bool:
    """Whether a fill run on this dataset has validation windows to evaluate (one window of
    seq_len + 1 tokens at least): what the options that act on evaluations need."""
    return dataset.tokens("val") > seq_len


@keeps_global_rng
def train_fill_job(dataset: data.Dataset, cfg: FillTrainConfig, root: Path,
                   run_name: str | None = None, reporter: Reporter | None = None,
                   sources: dict[str, str] | None = None) -> dict:
    """The masked BiRNN on the same cached dataset an LM would use; the run's result.
    `sources`: where each value not a default came from (typed, a recipe), said and kept."""
    device = resolve_device(cfg.device)
    fcfg = cfg.model_config(dataset.tokenizer.vocab_size)
    params = require_fits(lambda: FillModel(fcfg), device)  # before the run folder exists
    torch.manual_seed(cfg.seed)
    with out_of_memory_is_too_big(params, device):
        model = FillModel(fcfg).to(device)
        task = FillTask(dataset, cfg, model, device)
    run_dir = runs.new_run_dir(root, run_name, "fill",
                               {**_run_record(dataset, cfg), "sources": sources or {}})
    with runlock.writer(run_dir), runs.kept_if_saved(run_dir):
        loop = _loop(task, run_dir, reporter)
        loop.reporter.message(f"run {run_dir} | fill model | {_described(task)} | {task.device}")
        if sources:
            loop.reporter.message(f"settings: {described_settings(cfg, sources)}")
        return _finish(loop)


def resume_fill_job(ckpt: checkpoint.Checkpoint, cfg: FillTrainConfig,
                    prepare: Callable[[], data.Dataset] | None = None,
                    reporter: Reporter | None = None,
                    refuse_spent: Callable[[Progress, bool], None] | None = None) -> dict:
    """Continue `ckpt`'s fill run exactly (weights, optimizer, schedule, step, RNG: each step's
    windows and masks are a function of the step) on its dataset: the corpus `prepare` makes
    (it must be the same), or the cached one. `refuse_spent` as lm.job.TrainJob.resume's."""
    from charrnn.lm.job import resumed_dataset

    with runlock.writer(ckpt.run_folder):
        dataset = resumed_dataset(ckpt, prepare)
        device = resolve_device(cfg.device)
        model = ckpt.build(FillConfig, FillModel, device)
        with out_of_memory_is_too_big(model.num_parameters(), device):
            task = FillTask(dataset, cfg, model, device)
        repaired = runs.repair_run_info(ckpt.run_folder, "fill", ckpt.started_at,
                                        _run_record(dataset, cfg))
        loop = _loop(task, ckpt.run_folder, reporter)
        loop.resume(ckpt, f"fill model | {_described(task)}", repaired, refuse_spent)
        return _finish(loop)


def _run_record(dataset: data.Dataset, cfg: FillTrainConfig) -> dict:
    """What run.json says of a fill run beside its kind, name and creation time."""
    return {"task": "fill", "dataset": {"id": dataset.id, "level": dataset.tokenizer.level,
                                        "splits": dataset.meta["splits"]}, "config": asdict(cfg)}


def _loop(task: FillTask, run_dir: Path, reporter: Reporter | None) -> Loop:
    with out_of_memory_is_too_big(task.model.num_parameters(), task.device):
        return Loop(task, task.cfg, run_dir, task.device, reporter=reporter)


def _described(task: FillTask) -> str:
    fcfg = task.model.config
    return (f"{task.dataset.tokenizer.level} vocab {fcfg.vocab_size} | {fcfg.cell} "
            f"{fcfg.layers}×{fcfg.hidden} bidirectional, {task.model.num_parameters():,} params")


def _finish(loop: Loop) -> dict:
    result = loop.run()
    best = result.get("best_val")
    resume = resume_command(loop.reporter, f"charrnn train --resume {loop.run_dir.name}"
                                           f"{runs.out_suffix(loop.run_dir)}")
    stopped = result["outcome"] == "interrupted"
    loop.reporter.message(f"{'stopped' if stopped else 'done'} at step {result['step']}"
                          + result["why_ended"]
                          + (f", best val {best:.4f} nats/masked token" if best is not None else "")
                          + f"; run folder {loop.run_dir}"
                          + (f"; continue with `{resume}`" if stopped else ""))
    loop.end_if_reader_gone(result, resume)
    return result
