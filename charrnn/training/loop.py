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
import math
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path

import torch
from torch import nn

from charrnn import checkpoint, fsutil, runs
from charrnn.devices import (
    autocast,
    is_out_of_memory,
    loss_scaler,
    resolve_precision,
    run_threads,
)
from charrnn.distributed import Dist
from charrnn.errors import RankError, UserError, option
from charrnn.training.config import LoopConfig
from charrnn.training.metrics import MetricsLog
from charrnn.training.optim import load_optimizer, make_optimizer, optimizer_tensors
from charrnn.training.reporters import PlainReporter, Reporter, SilentReporter
from charrnn.training.saving import SaveClock
from charrnn.training.schedule import Schedule
from charrnn.training.stop import StopFlag
from charrnn.training.task import Progress, StatelessTask, Task, Window

__all__ = ["Loop", "Progress", "StatelessTask", "Task"]  # what the tasks import from here
MAX_NAN_RETRIES = 5
HEARTBEAT_S = 2.0  # DDP: seconds between the ranks' agreements on the clock and a stop


class Loop:
    def __init__(self, task: Task, cfg: LoopConfig, run_dir: Path, device: torch.device,
                 dist: Dist | None = None, reporter: Reporter | None = None) -> None:
        self.task, self.cfg, self.run_dir, self.device = task, cfg, run_dir, device
        self.dist = dist or Dist()
        self.precision, self.precision_why = resolve_precision(cfg.precision, device)
        task.precision = self.precision  # its evaluation computes in it too
        self.optimizer = make_optimizer(task.model, cfg, device)
        self.scaler = loss_scaler(device, self.precision)
        self.schedule = Schedule.of(cfg, task.steps_per_epoch)
        self.progress = Progress(cold_rows=False, warmup_s=0.0)
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
        return self.schedule.lr(prog.step, prog.elapsed, prog.lr_scale, prog.warmup_s)

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
        if prog.warmup_s is not None and prog.step <= self.schedule.warmup:  # still warming up
            prog.warmup_s = prog.elapsed
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
            tensors = {**self._rng_tensors(), **self.task.state_tensors(),
                       **optimizer_tensors(self.optimizer)}
        if not self.dist.is_main:
            return None
        return checkpoint.capture(self.task.model, meta, tensors)

    def _rng_tensors(self) -> dict[str, torch.Tensor]:
        """Every rank's random state (a collective under DDP): rank 0's as rng.cpu / rng.cuda
        (what a one-process resume takes), rank r's as rng.cpu.r / rng.cuda.r, so that a resume
        at the same size draws each rank's dropout masks as the run would have."""
        own = {"rng.cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            own["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        ranks = self.dist.gather({k: v.cpu() for k, v in own.items()})
        return {**own, **{f"{name}.{rank}": state for rank, states in enumerate(ranks) if rank
                          for name, state in states.items()}}

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

    def _restore_rng(self, tensors: dict[str, torch.Tensor]) -> bool:
        """This rank's saved random state, where the run had this rank (rank 0: always); False
        where it had not (a resume at a larger size: the caller gives it a stream of its own)."""
        suffix = f".{self.dist.rank}" if self.dist.rank else ""
        if f"rng.cpu{suffix}" not in tensors:
            if not suffix:
                raise KeyError("rng.cpu")  # every resumable checkpoint has rank 0's
            return False
        torch.set_rng_state(tensors[f"rng.cpu{suffix}"])
        if self.device.type == "cuda" and f"rng.cuda{suffix}" in tensors:
            torch.cuda.set_rng_state(tensors[f"rng.cuda{suffix}"], self.device)
        return True

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
            self.progress.check(self.task.steps_per_epoch)
            self.rng_restored = self._restore_rng(tensors)
        except (KeyError, TypeError, ValueError, RuntimeError) as exc:
            raise UserError(f"{ckpt.folder}: resume state is incomplete or damaged ({exc}); "
                            f"{ckpt.without_state()}") from exc
        # Records after the resumed step are dropped: the run writes them again.
        self.metrics = MetricsLog(self.run_dir / "metrics.jsonl", self.progress.step,
                                  enabled=self.dist.is_main)

    def resume(self, ckpt: checkpoint.Checkpoint, what: str, repaired: bool = False,
               refuse_spent: Callable[[Progress, bool], None] | None = None) -> None:
        """restore_from, then `resumed`."""
        self.restore_from(ckpt)
        self.resumed(ckpt, what, repaired, refuse_spent)

    def resumed(self, ckpt: checkpoint.Checkpoint, what: str, repaired: bool = False,
                refuse_spent: Callable[[Progress, bool], None] | None = None) -> None:
        """What every restored run checks and says first: `refuse_spent` sees where it stands
        and whether its budget is spent; a run.json written again (`repaired`); the resume
        line, `what` the run trains."""
        if refuse_spent is not None:
            refuse_spent(self.progress, self.budget_spent())
        if repaired:
            self.reporter.message(f"{runs.RUN_FILE} was unreadable: written again from the "
                                  "checkpoint")
        world = self.dist.world if self.dist.enabled else 1  # (a resume may change them)
        where = self.device.type + (f" × {world} processes (DDP)" if world > 1 else "")
        self.reporter.message(f"resuming {ckpt.run_folder} at step {self.progress.step}"
                              f"{ckpt.resumed_from()} | {where} | {what}"
                              f"{self._budget_change(ckpt)}")

    def _aborted(self) -> str:
        """What a second Ctrl-C leaves: the run's last save, or none (then a new run's folder
        is taken away: runs.kept_if_saved)."""
        try:
            saved = fsutil.read_json(self.run_dir / "last" / checkpoint.META, "")["progress"]["step"]
        except (UserError, KeyError, TypeError):
            saved = None
        where = f"the run resumes from its last save, step {saved}" if saved is not None else \
            "nothing was saved"
        return f"aborted without saving at step {self.progress.step}: {where}"

    def _budget_change(self, ckpt: checkpoint.Checkpoint) -> str:
        """' | budget changed: …' where the resume gave the run another budget: the cosine
        stretches (or shrinks) to it, so the lr moves (a run ended at its floor rises again)."""
        saved = ckpt.meta.get("train") or {}
        try:
            before = replace(self.cfg, **{k: saved.get(k) for k in ("max_steps", "max_time",
                                                                      "epochs")})
        except (UserError, TypeError):
            return ""
        now, then = self.schedule, Schedule.of(before, self.task.steps_per_epoch)
        if (then.total_steps, then.max_time) == (now.total_steps, now.max_time):
            return ""
        prog = self.progress
        was, lr = then.lr(prog.step, prog.elapsed, prog.lr_scale, prog.warmup_s), self.lr_now()
        moved = f" (lr {was:.2e} → {lr:.2e})" if not math.isclose(was, lr) else ""
        return f" | budget changed: the lr schedule spans the new one{moved}"

    # ---- the loop -----------------------------------------------------------------------------
    def run(self) -> dict:
        self.stop.install()
        try:
            with run_threads(self.cfg.threads if self.device.type == "cpu" else 0):
                return self._windows()
        except KeyboardInterrupt:
            if self.stop.requested:  # the second Ctrl-C: aborted without saving
                self.reporter.message(self._aborted())
            raise
        except RuntimeError as exc:
            if is_out_of_memory(exc):
                raise RankError(f"out of memory on {self.device}: {self.task.out_of_memory()}") from exc
            raise
        finally:
            self.stop.restore()
            self.reporter.close()

    # ---- the windows between sync points ----------------------------------------------------
    def _start_windows(self) -> None:
        """The run's bookkeeping, from where it starts (after a resume's restore)."""
        self.has_val = self.task.has_validation
        self.eval_every = self.cfg.eval_every or self.task.steps_per_epoch
        prog = self.progress  # (a stop between log lines left the steps since the last one)
        self.window = Window(torch.tensor(prog.window_loss, device=self.device), prog.window_steps,
                             prog.tokens, time.time())
        self.last_eval_at = self.progress.elapsed
        self.last_eval: dict = {}
        self.pending_best: checkpoint.Captured | None = None  # a best/ kept in memory until
        self.pending = False  # writing it is due (rank 0); whether there is one (every rank)
        self.retries = 0
        # DDP heartbeats (_is_sync_point): every step until the step time is known
        self.check_step, self.check_elapsed = self.progress.step, self.progress.elapsed
        self.check_every, self.next_check = 1, self.progress.step + 1

    def _windows(self) -> dict:
        """Steps in windows between sync points; at each: log, evaluate, save, stop."""
        self._start_windows()
        if not self.has_val:
            self.reporter.message("note: no validation data, so no evaluation and no best/ "
                                  f"(use {option('val_frac')} or {option('valid')} FILE)")
        history = getattr(self.reporter, "history", None)  # a view that draws the run so far
        if history is not None and self.progress.step:
            history(self.metrics.kept, self.progress.step, self.progress.elapsed)
        self.reporter.start(getattr(self.task, "preview", None))
        snapshot, outcome = self.snapshot(), "finished"
        started, elapsed_at_start = time.time(), self.progress.elapsed
        single = not self.dist.enabled
        while not self.budget_spent():
            self.window.loss += self.step()
            self.window.steps += 1
            if single:
                self.progress.elapsed = elapsed_at_start + time.time() - started
            if not self._is_sync_point(single):
                continue
            # Read once: a request that lands after this point (a signal, a closed pipe) is acted
            # on at the next sync point, so the stop always comes with its save.
            stopping = self.stop.requested
            if not single:
                self.progress.elapsed, stopping = self.dist.agree(
                    elapsed_at_start + time.time() - started, stopping)
                # A signal during the collective is kept, to be agreed on at the next sync point
                # (the agreed value overwrote it, and the stop said was never made).
                self.stop.requested = stopping or self.stop.requested
                if self._heartbeat_only(stopping):  # clock and stop agreed on; nothing else due
                    continue
            mean = self.dist.mean(self.window.loss / self.window.steps).item()  # the host sync
            if not math.isfinite(mean):
                self._roll_back(snapshot)
                continue
            self.retries = 0
            self._log(mean)
            if self.reader_gone:
                self.stop.requested = True
            self._carry_window(stopping, mean)
            snapshot = self.snapshot()
            outcome = self._after_sync(self.budget_spent() or stopping, stopping)
            self.window.reset(self.progress.tokens)
            if outcome != "finished":
                break
        prog = self.progress
        # The last evaluation apart, named so: its scores beside best_val read as the run's.
        return {"outcome": outcome, "step": prog.step, "best_val": prog.best_val,
                "elapsed": prog.elapsed, "run": str(self.run_dir),
                "last_eval": self.last_eval or None, "why_ended": self._why_ended(outcome)}

    def _why_ended(self, outcome: str) -> str:
        """' (…)' for a run that had a step budget and a time budget, said when the time ended
        it first: a resume that types --max-steps keeps the run's own --max-time, and stopped
        short of the steps typed without a word."""
        plan = self.schedule
        if outcome != "finished" or plan.max_time is None or plan.total_steps is None or \
                self.progress.step >= plan.total_steps:
            return ""
        return (f" (its {option('max_time')} of {plan.max_time:g} s ran out before its "
                f"{plan.total_steps:,} steps)")

    def _carry_window(self, stopping: bool, mean: float) -> None:
        """A stop between two log lines keeps the steps since the last one in its save: the
        resumed run's next line averages them with its own, as the uninterrupted run's does.
        (One process: its sum as summed; under DDP the ranks' mean, which each rank's sum then
        adds to alike.)"""
        prog, window = self.progress, self.window
        carried = stopping and prog.step % self.cfg.log_every != 0
        prog.window_steps = window.steps if carried else 0
        prog.window_loss = (float(window.loss) if not self.dist.enabled else mean * window.steps) \
            if carried else 0.0

    def _is_sync_point(self, single: bool) -> bool:
        """Under DDP only step counts decide, so that every rank reaches the same points: the
        log, eval and save steps, and a heartbeat about every HEARTBEAT_S seconds at which the
        ranks agree on the clock and on a stop (--max-time and Ctrl-C would otherwise wait for
        the next log line, past torchrun's grace before it kills the ranks unsaved); a single
        process also stops for the clock and for Ctrl-C at any step."""
        if self._due():
            return True
        if single:
            return self.stop.requested or self._eval_due()
        return self.progress.step >= self.next_check

    def _due(self) -> bool:
        cfg, step = self.cfg, self.progress.step
        return (step % cfg.log_every == 0 or (self.has_val and step % self.eval_every == 0)
                or (cfg.save_every is not None and step % cfg.save_every == 0)
                or self.budget_spent())

    def _heartbeat_only(self, stopping: bool) -> bool:
        """At a DDP sync point, after the ranks agreed on the clock and a stop: plan the next
        heartbeat (from agreed figures, so every rank plans the same step), and say whether
        nothing else is due here (no log, eval or save, no stop, budget left)."""
        prog = self.progress
        if prog.step > self.check_step:  # steps per HEARTBEAT_S, as measured since the last one
            per_step = max(1e-9, (prog.elapsed - self.check_elapsed) / (prog.step - self.check_step))
            self.check_every = max(1, min(self.cfg.log_every, int(HEARTBEAT_S / per_step)))
        self.check_step, self.check_elapsed = prog.step, prog.elapsed
        self.next_check = prog.step + self.check_every
        return not (self._due() or stopping or self._eval_due())

    def _eval_due(self) -> bool:
        prog, cfg = self.progress, self.cfg
        return self.has_val and (prog.step % self.eval_every == 0 or (
            cfg.eval_seconds is not None and prog.elapsed - self.last_eval_at >= cfg.eval_seconds))

    def _after_sync(self, final: bool, stopping: bool) -> str:
        """Evaluate and save what is due; the run's outcome so far. A stop asked for (Ctrl-C, a
        signal, a closed pipe) saves last/ without an evaluation of its own: one would count
        towards --patience and could become best/, so the resumed run would pick another best/
        or stop early where the uninterrupted one does not."""
        cfg = self.cfg
        save_due = cfg.save_every is not None and self.progress.step % cfg.save_every == 0
        if self._eval_due() or (final and self.has_val and not stopping):
            self.last_eval = self._evaluate_and_save(final)
            self.last_eval_at = self.progress.elapsed
        elif save_due or final:
            self._save(self.last_eval, False, True)
        if cfg.patience and self.progress.evals_since_best >= cfg.patience:
            self.reporter.message(f"early stop: no val improvement in {cfg.patience} evals")
            return "early-stopped"
        return "interrupted" if stopping else "finished"

    def _roll_back(self, snapshot: dict) -> None:
        self.retries += 1
        if self.retries > MAX_NAN_RETRIES:
            raise UserError(f"training diverged: the loss was not finite {self.retries} times in "
                            f"a row even after halving the learning rate; lower {option('lr')} or "
                            f"{option('grad_clip')}, or check the data")
        bad_step = self.progress.step
        self.rollback(snapshot)
        self.reporter.message(f"warning: non-finite loss before step {bad_step}: rolled back to "
                              f"step {self.progress.step}, learning rate ×{self.progress.lr_scale:g}")
        self.window.reset(self.progress.tokens)

    def _log(self, mean: float) -> None:
        prog, window = self.progress, self.window
        seconds = max(time.time() - window.start, 1e-9)
        rec = {"type": "train", "step": prog.step,
               "epoch": prog.epoch + prog.pos / self.task.steps_per_epoch, "loss": mean,
               "lr": self.lr_now(), "tokens_per_s": (prog.tokens - window.tokens) / seconds,
               "elapsed": prog.elapsed,
               "eta": self.schedule.eta(prog.step, prog.elapsed, seconds / max(window.steps, 1)),
               "max_steps": self.max_steps}
        self.metrics.write(rec)
        self.reporter.train(rec)

    def _evaluate_and_save(self, final: bool) -> dict:
        prog, task = self.progress, self.task
        result = task.evaluate()
        value = result.get(task.metric)
        better = value is not None and math.isfinite(value) and (prog.best_val is None or (
            value > prog.best_val if task.higher_is_better else value < prog.best_val))
        if better:
            prog.best_val, prog.evals_since_best = value, 0
        else:
            prog.evals_since_best += 1
        rec = {"type": "eval", "step": prog.step, "elapsed": prog.elapsed, "best": better, **result}
        self.metrics.write(rec)
        # Saved before the report, which may fail (a terminal hung up) and must not cost the save.
        self._save(result, better, final)
        self.reporter.eval(rec)
        return result

    def _save(self, metrics: dict, better: bool, must: bool) -> None:
        """last/ first: if the process dies between the two, best/ is the older, still-valid one.
        Rank 0's clock decides whether writing is due, for every rank (captures are collective)."""
        due = bool(self.dist.broadcast(must or self.saves.due()))
        if not due:
            if better:
                self.pending_best, self.pending = self.capture(metrics), True
            return
        self.save("last", metrics)
        if better:
            self.save("best", metrics)
            self.pending_best, self.pending = None, False
        elif self.pending:  # every rank alike: only rank 0 holds the capture itself
            self.write("best", self.pending_best)
            self.pending_best, self.pending = None, False

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
