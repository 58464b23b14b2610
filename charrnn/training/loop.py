"""The training loop every task shares: steps, sync points, evaluation, checkpoints, stopping.

    ┌─ step ── task.loss(epoch, pos) under autocast ─ backward (loss-scaled on CUDA) ─ clip
    │          ─ lr from the schedule ─ optimizer step ─ task.after_step()
    └─ every --log-every steps (and at evals, saves, stops, the budget's end): a sync point
         read the window's mean loss back (the only host sync) ─ non-finite: roll back to the
         last good snapshot with half the learning rate ─ log ─ evaluate and save last/ (+ best/
         when it improved) ─ patience ─ stop

What differs between tasks sits behind `Task`: the LM's carried TBPTT state and DDP wrapper, the
tagger's sentence batches, the fill model's masked windows. Under DDP every rank reaches the same
sync points (step counts decide them; the clock and Ctrl-C are agreed on there).
"""

from __future__ import annotations

import contextlib
import copy
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch import nn

from charrnn import checkpoint
from charrnn.devices import autocast, is_out_of_memory, loss_scaler, resolve_precision
from charrnn.distributed import Dist
from charrnn.errors import UserError
from charrnn.training.config import LoopConfig
from charrnn.training.metrics import MetricsLog
from charrnn.training.optim import load_optimizer, make_optimizer, optimizer_tensors
from charrnn.training.reporters import PlainReporter, Reporter, SilentReporter
from charrnn.training.runner import Runner
from charrnn.training.saving import SaveClock
from charrnn.training.schedule import Schedule
from charrnn.training.stop import StopFlag


@dataclass
class Progress:
    step: int = 0
    epoch: int = 0
    pos: int = 0  # step within the epoch
    elapsed: float = 0.0
    tokens: int = 0
    best_val: float | None = None  # the best value of the task's metric so far
    evals_since_best: int = 0
    lr_scale: float = 1.0


class Task(Protocol):
    """What one kind of training supplies to the loop."""

    model: nn.Module  # the module trained and saved (never a DDP wrapper)
    steps_per_epoch: int
    metric: str  # the evaluation metric that picks best/
    higher_is_better: bool
    resumable: bool  # whether checkpoints hold what --resume needs
    precision: str  # what the loop computes in (fp32 | bf16 | fp16): set by the loop

    def loss(self, epoch: int, pos: int) -> tuple[torch.Tensor, int]:
        """One step's forward pass: the loss (on the device) and the tokens it read."""

    def after_step(self, new_epoch: bool) -> None:
        """After the optimizer step (the LM detaches its carried state, or starts afresh)."""

    def evaluate(self) -> dict:
        """Validation metrics ({} when there is nothing to validate on)."""

    def checkpoint_meta(self) -> dict:
        """The task's sections of checkpoint.json (model, tokenizer, dataset, task …)."""

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The task's own resume state (the LM's carried hidden state)."""

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None: ...

    def snapshot(self) -> object: ...

    def restore(self, snap: object) -> None: ...

    def out_of_memory(self) -> str:
        """What to make smaller when a step ran out of memory."""


class StatelessTask:
    """What a task carries nothing between steps has (a tagger, the fill model): no state of its
    own to save, snapshot or restore, nothing to do after a step."""

    resumable = False
    precision = "fp32"

    def after_step(self, new_epoch: bool) -> None:
        pass

    def state_tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        pass

    def snapshot(self) -> None:
        return None

    def restore(self, snap: None) -> None:
        pass


class Loop:
    def __init__(self, task: Task, cfg: LoopConfig, run_dir: Path, device: torch.device,
                 dist: Dist | None = None, reporter: Reporter | None = None) -> None:
        self.task, self.cfg, self.run_dir, self.device = task, cfg, run_dir, device
        self.dist = dist or Dist()
        self.precision, self.precision_why = resolve_precision(cfg.precision, device)
        task.precision = self.precision  # its evaluation computes in it too
        self.optimizer = make_optimizer(task.model, cfg, device)
        self.scaler = loss_scaler(device, self.precision)
        self.schedule = Schedule(cfg.base_lr, cfg.warmup, cfg.min_lr_ratio,
                                 cfg.total_steps(task.steps_per_epoch), cfg.max_time)
        self.progress = Progress()
        main = self.dist.is_main
        self.reporter = (reporter or PlainReporter()) if main else SilentReporter()
        self.metrics = MetricsLog(run_dir / "metrics.jsonl", enabled=main)
        self.stop = StopFlag(self.reporter.message)
        self.saves = SaveClock()

    @property
    def max_steps(self) -> int | None:
        return self.schedule.total_steps

    @property
    def reader_gone(self) -> bool:
        """The reporter's reader went away (a closed pipe): stop as on SIGTERM."""
        return bool(getattr(self.reporter, "reader_gone", False))

    def lr_now(self) -> float:
        prog = self.progress
        return self.schedule.lr(prog.step, prog.elapsed, prog.lr_scale)

    def budget_spent(self) -> bool:
        return self.schedule.spent(self.progress.step, self.progress.elapsed)

    # ---- one step ---------------------------------------------------------------------------
    def step(self) -> torch.Tensor:
        prog, task = self.progress, self.task
        task.model.train()
        with autocast(self.device, self.precision):
            loss, tokens = task.loss(prog.epoch, prog.pos)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
            nn.utils.clip_grad_norm_(task.model.parameters(), self.cfg.grad_clip)
        lr = self.lr_now()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.scaler.step(self.optimizer)  # skipped (on the device) if a gradient overflowed
        self.scaler.update()
        prog.step, prog.pos, prog.tokens = prog.step + 1, prog.pos + 1, prog.tokens + tokens
        new_epoch = prog.pos >= task.steps_per_epoch
        if new_epoch:
            prog.epoch, prog.pos = prog.epoch + 1, 0
        task.after_step(new_epoch)
        return loss.detach()

    # ---- rollback -----------------------------------------------------------------------------
    def snapshot(self) -> dict:
        return {"model": copy.deepcopy(self.task.model.state_dict()),
                "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "task": self.task.snapshot(), "progress": copy.deepcopy(self.progress)}

    def rollback(self, snap: dict) -> None:
        """Back to `snap` with half the learning rate. The snapshot itself is never handed over:
        load_state_dict keeps tensors that already fit, so the optimizer would then update the
        snapshot's own moments in place, and a second rollback would restore those."""
        self.task.model.load_state_dict(snap["model"])
        self.optimizer.load_state_dict(copy.deepcopy(snap["optimizer"]))
        self.task.restore(copy.deepcopy(snap["task"]))
        lr_scale = self.progress.lr_scale / 2
        self.progress = copy.deepcopy(snap["progress"])
        self.progress.lr_scale = lr_scale

    # ---- checkpoints --------------------------------------------------------------------------
    def capture(self, metrics: dict) -> checkpoint.Captured | None:
        """What save writes, copied off the live model (a collective under DDP)."""
        optim_state = self.optimizer.state_dict()
        meta = {**self.task.checkpoint_meta(), "train": asdict(self.cfg),
                "progress": asdict(self.progress), "metrics": metrics, "saved_at": time.time(),
                "optimizer": {"param_groups": optim_state["param_groups"]},
                "loss_scale": self.scaler.state_dict()}  # {} where no scaling is done
        tensors = None
        if self.task.resumable:
            tensors = {"rng.cpu": torch.get_rng_state(), **self.task.state_tensors(),
                       **optimizer_tensors(self.optimizer)}
            if self.device.type == "cuda":
                tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        if not self.dist.is_main:
            return None
        return checkpoint.capture(self.task.model, meta, tensors)

    def save(self, name: str, metrics: dict | None = None) -> None:
        """Write best/ or last/ from the live model (every rank takes part; rank 0 writes)."""
        started = time.time()
        self.write(name, self.capture(metrics or {}), started)

    def write(self, name: str, captured: checkpoint.Captured | None,
              started: float | None = None) -> None:
        """Write an earlier capture (rank 0's; None on the other ranks: nothing to do)."""
        started = time.time() if started is None else started
        if captured is not None:
            checkpoint.write(self.run_dir / name, captured)
            self.saves.record(time.time() - started)

    def restore_from(self, ckpt: checkpoint.Checkpoint) -> None:
        """Continue exactly where `ckpt` stopped: weights, optimizer, loss scale, progress, RNG and
        the task's own state (what resume needs of this rank)."""
        ckpt.load_into(self.task.model, self.device)
        tensors = ckpt.load_state()
        try:
            load_optimizer(self.optimizer, tensors, ckpt.meta["optimizer"]["param_groups"])
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise UserError(f"{ckpt.folder}: optimizer state does not fit this config ({exc})") from exc
        if self.scaler.is_enabled() and ckpt.meta.get("loss_scale"):
            self.scaler.load_state_dict(ckpt.meta["loss_scale"])
        try:
            self.task.load_state_tensors(tensors)
            self.progress = Progress(**ckpt.meta["progress"])
            torch.set_rng_state(tensors["rng.cpu"])  # rank 0's (the one saved)
            if self.device.type == "cuda" and "rng.cuda" in tensors:
                torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
        except (KeyError, TypeError, RuntimeError) as exc:
            raise UserError(f"{ckpt.folder}: resume state is incomplete ({exc}); resume from the "
                            "run's other checkpoint or start a new run") from exc
        # Records after the resumed step are dropped: the run writes them again.
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl", self.progress.step,
                                  enabled=self.dist.is_main)

    # ---- the loop -----------------------------------------------------------------------------
    def run(self) -> dict:
        self.stop.install()
        try:
            return Runner(self).run()
        except RuntimeError as exc:
            if is_out_of_memory(exc):
                raise UserError(f"out of memory on {self.device}: {self.task.out_of_memory()}") from exc
            raise
        finally:
            self.stop.restore()
            self.reporter.close()

    def end_if_reader_gone(self, result: dict, resume: str | None = None) -> None:
        """`charrnn train … | head`: the run stopped and saved; stdout is gone, so stderr says so
        (and how to go on), and the CLI ends as a closed pipe does (exit 141)."""
        if not self.reader_gone:
            return
        how = f"; continue with: {resume}" if resume else ""
        with contextlib.suppress(OSError):
            print(f"charrnn: stdout was closed: stopped at step {result['step']} with last/ "
                  f"saved{how}", file=sys.stderr)
        raise BrokenPipeError("stdout was closed during training (the run is saved)")
