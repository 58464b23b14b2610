"""One run of a `Loop`: windows of steps between sync points, then log, evaluate, save, stop.

A window's tokens/s counts training time only: the clock restarts after evaluating and saving.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from charrnn.errors import UserError

if TYPE_CHECKING:
    from charrnn.training.loop import Loop

MAX_NAN_RETRIES = 5


@dataclass
class Window:
    """The steps since the last sync point."""

    loss: torch.Tensor
    steps: int = 0
    tokens: int = 0
    start: float = 0.0

    def reset(self, tokens: int) -> None:
        self.loss.zero_()
        self.steps, self.tokens, self.start = 0, tokens, time.time()


class Runner:
    def __init__(self, loop: Loop) -> None:
        self.loop = loop
        self.has_val = loop.task.has_validation
        self.eval_every = loop.cfg.eval_every or loop.task.steps_per_epoch
        self.window = Window(torch.zeros((), device=loop.device), 0, loop.progress.tokens,
                             time.time())
        self.last_eval_at = loop.progress.elapsed
        self.last_eval: dict = {}
        self.pending_best = None  # a best/ kept in memory until writing it is due (rank 0)
        self.pending = False  # whether there is one (known on every rank)
        self.retries = 0

    def run(self) -> dict:
        loop = self.loop
        if not self.has_val:
            loop.reporter.message("note: no validation data, so no evaluation and no best/ "
                                  "(use --val-frac or --valid FILE)")
        loop.reporter.start(getattr(loop.task, "preview", None))
        snapshot, outcome = loop.snapshot(), "finished"
        started, elapsed_at_start = time.time(), loop.progress.elapsed
        single = not loop.dist.enabled
        while not loop.budget_spent():
            self.window.loss += loop.step()
            self.window.steps += 1
            if single:
                loop.progress.elapsed = elapsed_at_start + time.time() - started
            if not self._is_sync_point(single):
                continue
            if not single:
                loop.progress.elapsed = loop.dist.max(elapsed_at_start + time.time() - started)
                loop.stop.requested = loop.dist.any(loop.stop.requested)
            # Read once: a request that lands after this point (a signal, a closed pipe) is acted
            # on at the next sync point, so the stop always comes with its save.
            stopping = loop.stop.requested
            mean = loop.dist.mean(self.window.loss / self.window.steps).item()  # the host sync
            if not math.isfinite(mean):
                self._roll_back(snapshot)
                continue
            self.retries = 0
            self._log(mean)
            if loop.reader_gone:
                loop.stop.requested = True
            snapshot = loop.snapshot()
            outcome = self._after_sync(loop.budget_spent() or stopping, stopping)
            self.window.reset(loop.progress.tokens)
            if outcome != "finished":
                break
        prog = loop.progress
        return {"outcome": outcome, "step": prog.step, "best_val": prog.best_val,
                "elapsed": prog.elapsed, "run": str(loop.run_dir), **self.last_eval}

    def _is_sync_point(self, single: bool) -> bool:
        """Under DDP only step counts decide, so that every rank reaches the same points; a single
        process also stops for the clock and for Ctrl-C."""
        loop, cfg, step = self.loop, self.loop.cfg, self.loop.progress.step
        if (step % cfg.log_every == 0 or (self.has_val and step % self.eval_every == 0)
                or (cfg.save_every is not None and step % cfg.save_every == 0)
                or loop.budget_spent()):
            return True
        return single and (loop.stop.requested or self._eval_due())

    def _eval_due(self) -> bool:
        prog, cfg = self.loop.progress, self.loop.cfg
        return self.has_val and (prog.step % self.eval_every == 0 or (
            cfg.eval_seconds is not None and prog.elapsed - self.last_eval_at >= cfg.eval_seconds))

    def _after_sync(self, final: bool, stopping: bool) -> str:
        """Evaluate and save what is due; the run's outcome so far."""
        loop, cfg = self.loop, self.loop.cfg
        save_due = cfg.save_every is not None and loop.progress.step % cfg.save_every == 0
        if self._eval_due() or (final and self.has_val):
            self.last_eval = self._evaluate_and_save(final)
            self.last_eval_at = loop.progress.elapsed
        elif save_due or final:
            self._save(self.last_eval, False, True)
        if cfg.patience and loop.progress.evals_since_best >= cfg.patience:
            loop.reporter.message(f"early stop: no val improvement in {cfg.patience} evals")
            return "early-stopped"
        return "interrupted" if stopping else "finished"

    def _roll_back(self, snapshot: dict) -> None:
        loop = self.loop
        self.retries += 1
        if self.retries > MAX_NAN_RETRIES:
            raise UserError(f"training diverged: the loss was not finite {self.retries} times in "
                            "a row even after halving the learning rate; lower --lr or "
                            "--grad-clip, or check the data")
        bad_step = loop.progress.step
        loop.rollback(snapshot)
        loop.reporter.message(f"warning: non-finite loss before step {bad_step}: rolled back to "
                              f"step {loop.progress.step}, learning rate ×{loop.progress.lr_scale:g}")
        self.window.reset(loop.progress.tokens)

    def _log(self, mean: float) -> None:
        loop, prog, window = self.loop, self.loop.progress, self.window
        seconds = max(time.time() - window.start, 1e-9)
        rec = {"type": "train", "step": prog.step,
               "epoch": prog.epoch + prog.pos / loop.task.steps_per_epoch, "loss": mean,
               "lr": loop.lr_now(), "tokens_per_s": (prog.tokens - window.tokens) / seconds,
               "elapsed": prog.elapsed,
               "eta": loop.schedule.eta(prog.step, prog.elapsed, seconds / max(window.steps, 1)),
               "max_steps": loop.max_steps}
        loop.metrics.write(rec)
        loop.reporter.train(rec)

    def _evaluate_and_save(self, final: bool) -> dict:
        loop, prog, task = self.loop, self.loop.progress, self.loop.task
        result = task.evaluate()
        value = result.get(task.metric)
        better = value is not None and math.isfinite(value) and (prog.best_val is None or (
            value > prog.best_val if task.higher_is_better else value < prog.best_val))
        if better:
            prog.best_val, prog.evals_since_best = value, 0
        else:
            prog.evals_since_best += 1
        rec = {"type": "eval", "step": prog.step, "elapsed": prog.elapsed, "best": better, **result}
        loop.metrics.write(rec)
        # Saved before the report, which may fail (a terminal hung up) and must not cost the save.
        self._save(result, better, final)
        loop.reporter.eval(rec)
        return result

    def _save(self, metrics: dict, better: bool, must: bool) -> None:
        """last/ first: if the process dies between the two, best/ is the older, still-valid one.
        Rank 0's clock decides whether writing is due, for every rank (captures are collective)."""
        loop = self.loop
        due = bool(loop.dist.broadcast(must or loop.saves.due()))
        if not due:
            if better:
                self.pending_best, self.pending = loop.capture(metrics), True
            return
        loop.save("last", metrics)
        if better:
            loop.save("best", metrics)
            self.pending_best, self.pending = None, False
        elif self.pending:  # every rank alike: only rank 0 holds the capture itself
            loop.write("best", self.pending_best)
            self.pending_best, self.pending = None, False
