"""What the training loop (loop.py) asks of a task, and the state it keeps of a run.

    Task           one kind of training: the LM's carried TBPTT state and DDP wrapper, the
                   tagger's sentence batches, the fill model's masked windows
    StatelessTask  what a task that carries nothing between steps has (a tagger, the fill model)
    Progress       where a run is: steps, epoch and position, time, tokens, the best metric
    Window         the steps since the last sync point (their summed loss stays on the device)
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import nn


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
    # A run begun before scoring rows read the text before them scores its validation so to its
    # end (its best/ and patience compare like with like); a new run's Loop sets False.
    cold_rows: bool = True
    # The training seconds when warm-up ended, where the cosine over --max-time starts (a new run
    # keeps it current while it warms up); None for a run begun before, which counts from 0.
    warmup_s: float | None = None
    # A stop between two log lines: the loss summed over the steps since the last one, and how
    # many, so that a resume's next line averages the steps an uninterrupted run's would.
    window_loss: float = 0.0
    window_steps: int = 0

    def check(self, steps_per_epoch: int) -> None:
        """ValueError naming the first field a damaged checkpoint.json put out of range (a
        negative step retrained from warm-up, a NaN time never stopped --max-time)."""
        for name in ("step", "epoch", "pos", "tokens", "evals_since_best", "window_steps"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"progress.{name} is {value!r}, not a count ≥ 0")
        if self.pos >= steps_per_epoch:
            raise ValueError(f"progress.pos {self.pos} is past the {steps_per_epoch} steps of an "
                             "epoch of this data")
        for name in ("elapsed", "lr_scale", "warmup_s"):
            value = getattr(self, name)
            if value is None and name == "warmup_s":  # (a run begun before it was recorded)
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or \
                    not (math.isfinite(value) and value >= 0):
                raise ValueError(f"progress.{name} is {value!r}, not a finite number ≥ 0")
        for name in ("best_val", "window_loss"):
            value = getattr(self, name)
            if value is not None and not (isinstance(value, (int, float)) and math.isfinite(value)):
                raise ValueError(f"progress.{name} is {value!r}, not a finite number")


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
