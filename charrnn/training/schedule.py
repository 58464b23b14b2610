"""The learning rate over a run: linear warmup, then cosine decay to a floor (as nanoGPT).

The cosine follows whichever budget ends first, steps or seconds:

    lr ▲  peak ┌─╮
           ╱ │  ╲__                   fraction done = max(steps after warmup / steps after warmup
          ╱  │     ╲__                                    of the budget, seconds after warmup /
         ╱   │        ╲___ floor         seconds of --max-time after warmup)
        └────┴────────────▶ step       floor = peak × --min-lr-ratio
        warmup

The seconds count from the end of warm-up as the steps do (a run begun before this records no
such time, and keeps counting from 0: the lr fell at once when warm-up ended, by the share of the
budget warm-up had taken).
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Schedule:
    """The rates of one run (`of`: a config's, over its data)."""

    peak: float
    warmup: int
    min_ratio: float
    total_steps: int | None
    max_time: float | None

    @classmethod
    def of(cls, cfg, steps_per_epoch: int) -> Schedule:
        """A LoopConfig's schedule, its budget counted in the steps of this data's epochs."""
        return cls(cfg.base_lr, cfg.warmup, cfg.min_lr_ratio, cfg.total_steps(steps_per_epoch),
                   cfg.max_time)

    def fraction_done(self, step: int, elapsed: float, warmup_s: float | None = None) -> float:
        """`warmup_s`: the training seconds when warm-up ended (None: count from 0)."""
        done = 0.0
        if self.total_steps:  # the cosine starts after warmup
            done = (step - self.warmup) / max(1, self.total_steps - self.warmup)
        if self.max_time:
            start = min(warmup_s or 0.0, self.max_time * 0.99)
            done = max(done, (elapsed - start) / (self.max_time - start))
        return min(1.0, max(0.0, done))

    def lr(self, step: int, elapsed: float, scale: float = 1.0,
           warmup_s: float | None = None) -> float:
        """The rate of `step` (0-based); `scale` < 1 after a non-finite loss halved it."""
        peak = self.peak * scale
        if step < self.warmup:
            return peak * (step + 1) / self.warmup
        cosine = 0.5 * (1 + math.cos(math.pi * self.fraction_done(step, elapsed, warmup_s)))
        return peak * (self.min_ratio + (1 - self.min_ratio) * cosine)

    def spent(self, step: int, elapsed: float) -> bool:
        return bool((self.total_steps is not None and step >= self.total_steps)
                    or (self.max_time is not None and elapsed >= self.max_time))

    def eta(self, step: int, elapsed: float, seconds_per_step: float) -> float | None:
        """Seconds left by whichever budget ends first (None: no budget to tell)."""
        eta = None
        if self.total_steps:
            eta = max(0, self.total_steps - step) * seconds_per_step
        if self.max_time:
            left = max(0.0, self.max_time - elapsed)  # the last step may overshoot
            eta = left if eta is None else min(eta, left)
        return eta
