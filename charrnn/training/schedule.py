"""The learning rate over a run: linear warmup, then cosine decay to a floor (as nanoGPT).

The cosine follows whichever budget ends first, steps or seconds:

    lr ▲  peak ┌─╮
           ╱ │  ╲__                   fraction done = max(steps after warmup / steps after warmup
          ╱  │     ╲__                                    of the budget, seconds / --max-time)
         ╱   │        ╲___ floor = peak × --min-lr-ratio
        └────┴────────────▶ step
        warmup
"""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass
class Schedule:
    peak: float
    warmup: int
    min_ratio: float
    total_steps: int | None
    max_time: float | None

    def fraction_done(self, step: int, elapsed: float) -> float:
        done = 0.0
        if self.total_steps:  # the cosine starts after warmup
            done = (step - self.warmup) / max(1, self.total_steps - self.warmup)
        if self.max_time:
            done = max(done, elapsed / self.max_time)
        return min(1.0, max(0.0, done))

    def lr(self, step: int, elapsed: float, scale: float = 1.0) -> float:
        """The rate of `step` (0-based); `scale` < 1 after a non-finite loss halved it."""
        peak = self.peak * scale
        if step < self.warmup:
            return peak * (step + 1) / self.warmup
        cosine = 0.5 * (1 + math.cos(math.pi * self.fraction_done(step, elapsed)))
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
