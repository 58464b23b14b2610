"""What every training loop takes (optimisation, budget, evaluation, seed, device), validated once.

Each task's config extends `LoopConfig` with its own model and data fields (lm.config.TrainConfig,
tag.config.TagTrainConfig, fill.config.FillTrainConfig); the CLI takes its defaults from them.
Torch-free, so `charrnn --help` can read the defaults without importing torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields
from typing import ClassVar

from charrnn.configs import check_types
from charrnn.errors import UserError, check_seed, option

OPTIMIZERS = ("adamw", "adam", "sgd", "rmsprop", "rprop")
RPROP_NEUTRAL = {"weight_decay": 0.0, "grad_clip": 0.0, "warmup": 0, "min_lr_ratio": 1.0}
PRECISIONS = ("auto", "fp32", "bf16")
MOMENTUM_OPTIMIZERS = ("sgd", "rmsprop")  # adam's momentum is its betas


MAX_STEPS = 10**12  # more steps than any machine takes: a bigger bound is a typo
# rprop's steps stay within these (charrnn.training.optim says why): its lr, the first step, too
RPROP_STEPS = (1e-6, 0.05)
MAX_LR = 10**6  # far past any optimizer's useful rate (SGD's 20-40 for RNN LMs)


def require_positive(cfg: object, names: tuple[str, ...]) -> None:
    """Each named field is None or a finite number > 0."""
    for name in names:
        value = getattr(cfg, name)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise UserError(f"{option(name)} must be a positive number, got {value}")


def require_at_least(cfg: object, least: int | float, names: tuple[str, ...]) -> None:
    for name in names:
        value = getattr(cfg, name)
        if not value >= least:  # `nan >= x` is false: what is allowed is tested, so NaN fails
            raise UserError(f"{option(name)} must be ≥ {least}, got {value}")


def require_fraction(cfg: object, names: tuple[str, ...]) -> None:
    """Each named field in [0, 1) (dropout rates)."""
    for name in names:
        value = getattr(cfg, name)
        if not 0 <= value < 1:
            raise UserError(f"{option(name)} must be in [0, 1), got {value}")


@dataclass
class LoopConfig:
    optim: str = "adamw"
    lr: float | None = None  # peak learning rate; None: the optimizer's default (DEFAULT_LR)
    momentum: float = 0.0  # sgd and rmsprop only: SGD is plain SGD unless a momentum is given
    weight_decay: float = 0.01
    grad_clip: float = 1.0  # 0: no clipping
    warmup: int = 100
    min_lr_ratio: float = 0.1  # the cosine's floor, as a fraction of the peak
    max_steps: int | None = None
    max_time: float | None = None
    epochs: float | None = None
    eval_every: int | None = 250  # None: once an epoch
    eval_seconds: float | None = None
    save_every: int | None = None
    patience: int | None = None
    log_every: int = 50
    seed: int = 1337
    device: str = "auto"
    precision: str = "auto"  # fp32 | bf16 | auto (devices.resolve_precision)
    threads: int = 0  # CPU threads of the run; 0: torch's default (every core this process may
    # use), unless a plan measured fewer to be faster (charrnn.plan.measured)

    # Peak learning rates when --lr is not given (the LM defaults: bench/train_shakespeare.py).
    # rprop: the initial step of every weight (each then grows ×1.2 or shrinks ×0.5 by the sign).
    DEFAULT_LR: ClassVar[dict[str, float]] = {"adamw": 4e-3, "adam": 4e-3, "rmsprop": 2e-3,
                                              "sgd": 1.0, "rprop": 1e-3}
    DEFAULT_MAX_STEPS: ClassVar[int | None] = 3000  # the budget when none is given …
    DEFAULT_EPOCHS: ClassVar[float | None] = None  # … or this many epochs

    def __post_init__(self) -> None:
        check_types(self)
        if self.optim not in OPTIMIZERS:
            raise UserError(f"{option('optim')} must be one of {', '.join(OPTIMIZERS)}, not "
                            f"{self.optim!r}")
        require_positive(self, ("lr", "max_steps", "max_time", "epochs", "eval_every",
                                "eval_seconds", "save_every", "patience"))
        require_at_least(self, 1, ("log_every",))
        for name, most in (("max_steps", MAX_STEPS), ("epochs", MAX_STEPS), ("lr", MAX_LR)):
            value = getattr(self, name)  # (past them: int64 and float32 overflows, exit 1)
            if value is not None and value > most:
                raise UserError(f"{option(name)} must be at most {most:.0e}, got {value}")
        require_at_least(self, 0, ("threads",))
        for name in ("weight_decay", "grad_clip", "warmup", "momentum"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise UserError(f"{option(name)} must be a finite number ≥ 0, got {value}")
        if self.optim in ("adamw", "sgd") and self.base_lr * self.weight_decay >= 1:
            # p ← p·(1 − lr·wd) each step (AdamW's decoupled decay; plain SGD's L2 alike): at ≥ 1
            # the weights flip sign or blow up, and the run "diverged" naming the lr
            raise UserError(f"{option('weight_decay')} {self.weight_decay:g} at lr {self.base_lr:g} "
                            "scales the weights by 1 − lr × decay ≤ 0 each step: give a decay "
                            f"below {1 / self.base_lr:g} (1/lr; 0.01 to 0.1 is usual)")
        if self.momentum and self.optim not in MOMENTUM_OPTIMIZERS:
            raise UserError(f"{option('momentum')} applies to sgd and rmsprop, not {self.optim} "
                            f"(whose momentum is fixed by its betas): drop {option('momentum')} or "
                            f"use {option('optim')} sgd")
        if not self.momentum < 1:
            raise UserError(f"{option('momentum')} must be below 1, got {self.momentum}")
        if self.precision not in PRECISIONS:
            raise UserError(f"{option('precision')} must be one of {', '.join(PRECISIONS)}, not "
                            f"{self.precision!r}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise UserError(f"{option('min_lr_ratio')} must be in [0, 1], got {self.min_lr_ratio}")
        check_seed(self.seed)
        if self.optim == "rprop":
            self._rprop_neutral()

    def _rprop_neutral(self) -> None:
        """rprop steps by the sign of each gradient and reads the lr once, as each weight's first
        step: no decay, clipping, warm-up or schedule. Those left at their defaults become that;
        another value asked for would be ignored, so it is an error (the plan's rprop recipe)."""
        low, high = RPROP_STEPS
        if self.lr is not None and not low <= self.lr <= high:  # torch clamps it there
            raise UserError(f"{option('lr')} {self.lr}: rprop's first step must be within its step "
                            f"range, {low:g} to {high:g} (it would be clamped there)")
        defaults = {f.name: f.default for f in fields(self)}
        for name, neutral in RPROP_NEUTRAL.items():
            value = getattr(self, name)
            if value == defaults[name]:
                setattr(self, name, neutral)
            elif value != neutral:
                raise UserError(f"{option(name)} {value} does not apply to {option('optim')} rprop: "
                                "it steps by the sign of each gradient and reads the lr once, as "
                                f"each weight's first step; leave it out (or {neutral})")

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else self.DEFAULT_LR[self.optim]

    def total_steps(self, steps_per_epoch: int) -> int | None:
        """The step budget: --max-steps and --epochs, whichever ends first; with no budget at
        all, the config's default. None: only --max-time bounds the run."""
        epochs = self.epochs
        if self.max_steps is None and self.max_time is None and epochs is None:
            if self.DEFAULT_MAX_STEPS is not None:
                return self.DEFAULT_MAX_STEPS
            epochs = self.DEFAULT_EPOCHS
        by_epochs = math.ceil(epochs * steps_per_epoch) if epochs is not None else None
        if by_epochs is None:
            return self.max_steps
        return min(by_epochs, self.max_steps) if self.max_steps else by_epochs

    @classmethod
    def from_json(cls, data: dict):
        """The config a checkpoint recorded (fields it lacks take today's defaults)."""
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def described_settings(cfg: LoopConfig, sources: dict[str, str]) -> str:
    """Each value a plan chose or the user typed, with where it came from, grouped by source
    (a run header's "settings:" line; the precision is said with what the run computes in)."""
    by_source: dict[str, list[str]] = {}
    for name, source in sources.items():
        if name in ("precision",):
            continue
        value = cfg.base_lr if name == "lr" else getattr(cfg, name, None)  # (lr None: default)
        # a switch as its flag (the negative one `--no-tie-weights` named by its long name)
        shown = (option(name if value else f"no_{name}") if isinstance(value, bool)
                 else f"{name.replace('_', '-')} {value}")
        by_source.setdefault(source, []).append(shown)
    return "; ".join(f"{', '.join(names)} ({source})" for source, names in by_source.items())
