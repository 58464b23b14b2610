"""The training loop: stateful TBPTT, clipping, warmup + cosine, eval, checkpoints, exact resume.

One step:  x,y ← stream  →  logits,state ← model(x, state)  →  CE loss  →  backward  →  clip
           →  lr(progress)  →  optimizer step  →  state.detach()

The loss stays on the device and is read back every `log_every` steps only (no host sync per
step). At each read-back a non-finite loss rolls the run back to the last good snapshot with half
the learning rate. Checkpoints (`last/` and `best/`) hold everything needed to continue exactly:
weights, optimizer moments, step, data position, carried hidden state and RNG states.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel

from charrnn import checkpoint
from charrnn.data import Dataset
from charrnn.devices import (
    autocast,
    is_out_of_memory,
    loss_scaler,
    out_of_memory_is_too_big,
    require_fits,
    resolve_device,
)
from charrnn.distributed import Dist
from charrnn.errors import UserError, check_seed
from charrnn.lm.batching import TBPTTStream, oriented
from charrnn.lm.evaluate import score_ids
from charrnn.lm.model import RNNLM, ModelConfig, detach_state, state_from_tensors, state_tensors
from charrnn.training.progress import MetricsLog, Reporter, SilentReporter, StopFlag, make_reporter

OPTIMIZERS = ("adamw", "adam", "sgd", "rmsprop")
# Peak learning rates of the defaults (a 2×256 GRU, 32 streams × 64 steps): bench/train_shakespeare.py
DEFAULT_LR = {"adamw": 6e-3, "adam": 6e-3, "rmsprop": 2e-3, "sgd": 1.0}
DEFAULT_MAX_STEPS = 3000
MAX_NAN_RETRIES = 5


@dataclass
class TrainConfig:
    cell: str = "gru"
    layers: int = 2
    hidden: int = 256
    emb: int = 0
    dropout: float = 0.2
    tie_weights: bool = True
    seq_len: int = 64
    batch_size: int = 32
    optim: str = "adamw"
    lr: float | None = None
    weight_decay: float = 0.01
    grad_clip: float = 1.0
    warmup: int = 100
    min_lr_ratio: float = 0.1
    max_steps: int | None = None
    max_time: float | None = None
    epochs: float | None = None
    eval_every: int = 250
    eval_seconds: float | None = None
    eval_tokens: int | None = None
    save_every: int | None = None
    patience: int | None = None
    log_every: int = 50
    seed: int = 1337
    device: str = "auto"
    direction: str = "forward"
    weight_drop: float = 0.0
    locked_dropout: bool = False
    embed_drop: float = 0.0

    def __post_init__(self) -> None:
        if self.optim not in OPTIMIZERS:
            raise UserError(f"--optim must be one of {', '.join(OPTIMIZERS)}, not {self.optim!r}")
        positive = ("seq_len", "batch_size", "eval_every", "log_every")
        for name in positive:
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be ≥ 1, got {getattr(self, name)}")
        for name in ("max_steps", "max_time", "epochs", "eval_seconds", "eval_tokens",
                     "save_every", "patience", "lr"):
            value = getattr(self, name)
            if value is not None and not (value > 0 and math.isfinite(value)):
                raise UserError(f"--{name.replace('_', '-')} must be a positive number, got {value}")
        for name in ("weight_decay", "grad_clip", "warmup"):
            value = getattr(self, name)  # `nan < 0` is false: test for what is allowed instead
            if not (value >= 0 and math.isfinite(value)):
                raise UserError(f"--{name.replace('_', '-')} must be a finite number ≥ 0, got {value}")
        if not 0 <= self.min_lr_ratio <= 1:
            raise UserError(f"--min-lr-ratio must be in [0, 1], got {self.min_lr_ratio}")
        check_seed(self.seed)

    @property
    def base_lr(self) -> float:
        return self.lr if self.lr is not None else DEFAULT_LR[self.optim]

    def model_config(self, vocab_size: int) -> ModelConfig:
        return ModelConfig(vocab_size, self.cell, self.layers, self.hidden, self.emb,
                           self.dropout, self.tie_weights, self.direction, self.weight_drop,
                           self.locked_dropout, self.embed_drop)

    @classmethod
    def from_json(cls, data: dict) -> TrainConfig:
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


# Settings of how an optimizer computes, not what: they follow this machine, not the checkpoint
# (a CPU-trained run resumed on CUDA gets the fused kernel, and the other way round).
KERNEL_KEYS = ("fused", "foreach", "capturable")


def _with_kernels(saved: list[dict], current: list[dict]) -> list[dict]:
    if len(saved) != len(current):
        return saved  # load_state_dict says what does not fit
    return [{**old, **{k: new[k] for k in KERNEL_KEYS if k in new}}
            for old, new in zip(saved, current, strict=True)]


def make_optimizer(model: RNNLM, cfg: TrainConfig, device: torch.device) -> torch.optim.Optimizer:
    # Weight decay on matrices only: biases and embeddings are not shrunk (as in nanoGPT).
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and not n.startswith("embed")]
    keep = [p for n, p in model.named_parameters() if p.dim() < 2 or n.startswith("embed")]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay},
              {"params": keep, "weight_decay": 0.0}]
    lr = cfg.base_lr
    if cfg.optim == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.99), fused=device.type == "cuda")
    if cfg.optim == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=(0.9, 0.99), fused=device.type == "cuda")
    if cfg.optim == "rmsprop":  # char-rnn's optimiser (alpha = decay rate 0.95); not fused, so
        # on CUDA the loss scaler reads its overflow flag back once a step
        return torch.optim.RMSprop(groups, lr=lr, alpha=0.95)
    return torch.optim.SGD(groups, lr=lr, momentum=0.9, fused=device.type == "cuda")


@dataclass
class Progress:
    step: int = 0
    epoch: int = 0
    pos: int = 0
    elapsed: float = 0.0
    tokens: int = 0
    best_val: float | None = None
    evals_since_best: int = 0
    lr_scale: float = 1.0


class Trainer:
    def __init__(self, dataset: Dataset, cfg: TrainConfig, run_dir: Path,
                 resume: checkpoint.Checkpoint | None = None, reporter: Reporter | None = None,
                 plain: bool | None = None, dist: Dist | None = None) -> None:
        self.dataset, self.cfg, self.run_dir = dataset, cfg, run_dir
        self.dist = dist or Dist()
        self.dist.check_batch(cfg.batch_size)
        self.device = self.dist.start(resolve_device(cfg.device))
        self.local_batch = cfg.batch_size // self.dist.world
        model_config = cfg.model_config(dataset.tokenizer.vocab_size)
        params = require_fits(lambda: RNNLM(model_config), self.device)
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        with out_of_memory_is_too_big(params, self.device):
            self.model = RNNLM(model_config).to(self.device)
            self.optimizer = make_optimizer(self.model, cfg, self.device)
        # ...then a stream of its own per rank, so ranks draw different dropout masks.
        torch.manual_seed(cfg.seed + self.dist.rank)
        self.forward = self.model
        if self.dist.enabled:
            ids = [self.device.index] if self.device.type == "cuda" else None
            self.forward = DistributedDataParallel(self.model, device_ids=ids)
        self.scaler = loss_scaler(self.device)
        self.stream = TBPTTStream(oriented(dataset.ids("train"), cfg.direction), cfg.batch_size,
                                  cfg.seq_len, self.device, self.dist.rank, self.dist.world)
        self.val_ids = oriented(dataset.ids("val"), cfg.direction)
        if cfg.eval_tokens is not None:
            self.val_ids = self.val_ids[: cfg.eval_tokens + 1]
        self.progress = Progress()
        self.state = self.model.initial_state(self.local_batch, self.device)
        if resume is not None:
            self._restore(resume)
        main = self.dist.is_main
        self.metrics = MetricsLog(run_dir / "metrics.jsonl", self.progress.step if resume else None,
                                  enabled=main)
        self.reporter = (reporter or make_reporter(self.max_steps, plain, preview=self.preview)) \
            if main else SilentReporter()
        self.stop = StopFlag(lambda text: self.reporter.message(text))

    @property
    def stop_requested(self) -> bool:
        return self.stop.requested

    @stop_requested.setter
    def stop_requested(self, value: bool) -> None:
        self.stop.requested = value

    @property
    def reader_gone(self) -> bool:
        """The reporter's reader went away (a closed pipe): stop as on SIGTERM."""
        return bool(getattr(self.reporter, "reader_gone", False))

    # ---- budget and schedule -------------------------------------------------------------
    @property
    def max_steps(self) -> int | None:
        cfg = self.cfg
        if cfg.epochs is not None:
            by_epochs = math.ceil(cfg.epochs * self.stream.steps_per_epoch)
            return min(by_epochs, cfg.max_steps) if cfg.max_steps else by_epochs
        if cfg.max_steps is None and cfg.max_time is None:
            return DEFAULT_MAX_STEPS
        return cfg.max_steps

    def fraction_done(self) -> float:
        """The largest fraction of any budget used: the schedule follows whichever ends first."""
        done, warmup = 0.0, self.cfg.warmup
        if self.max_steps:  # the cosine starts after warmup, as in nanoGPT
            done = (self.progress.step - warmup) / max(1, self.max_steps - warmup)
        if self.cfg.max_time:
            done = max(done, self.progress.elapsed / self.cfg.max_time)
        return min(1.0, max(0.0, done))

    def lr_now(self) -> float:
        base = self.cfg.base_lr * self.progress.lr_scale
        if self.progress.step < self.cfg.warmup:
            return base * (self.progress.step + 1) / self.cfg.warmup
        cosine = 0.5 * (1 + math.cos(math.pi * self.fraction_done()))
        return base * (self.cfg.min_lr_ratio + (1 - self.cfg.min_lr_ratio) * cosine)

    # ---- state ------------------------------------------------------------------------------
    def _snapshot(self) -> dict:
        return {"model": copy.deepcopy(self.model.state_dict()),
                "optimizer": copy.deepcopy(self.optimizer.state_dict()),
                "state": copy.deepcopy(self.state), "progress": copy.deepcopy(self.progress)}

    def _rollback(self, snap: dict) -> None:
        self.model.load_state_dict(snap["model"])
        self.optimizer.load_state_dict(snap["optimizer"])
        self.state = copy.deepcopy(snap["state"])
        lr_scale = self.progress.lr_scale / 2
        self.progress = copy.deepcopy(snap["progress"])
        self.progress.lr_scale = lr_scale

    def _resume_tensors(self) -> dict[str, torch.Tensor]:
        tensors = {"rng.cpu": torch.get_rng_state()}
        if self.device.type == "cuda":
            tensors["rng.cuda"] = torch.cuda.get_rng_state(self.device)
        state = self.state
        if self.dist.enabled:  # the checkpoint holds all B streams, whatever the world size
            state = tuple(map(self.dist.gather_rows, state)) if isinstance(state, tuple) \
                else self.dist.gather_rows(state)
        tensors.update(state_tensors(state))
        for pid, entry in self.optimizer.state_dict()["state"].items():
            for key, value in entry.items():
                tensors[f"optim.{pid}.{key}"] = torch.as_tensor(value)
        return tensors

    def _restore(self, ckpt: checkpoint.Checkpoint) -> None:
        loaded = ckpt.load_model(self.device)
        self.model.load_state_dict(loaded.state_dict())
        tensors = ckpt.load_state()
        optim_meta = ckpt.meta.get("optimizer", {})
        state: dict[int, dict] = {}
        for name, value in tensors.items():
            if name.startswith("optim."):
                _, pid, key = name.split(".", 2)
                # As loaded: load_state_dict puts each value where its parameter's policy wants
                # it (a non-fused Adam keeps `step` on the CPU: on the GPU it would cost a host
                # sync per parameter per step).
                state.setdefault(int(pid), {})[key] = value
        try:
            self.optimizer.load_state_dict({"state": state, "param_groups": _with_kernels(
                optim_meta["param_groups"], self.optimizer.param_groups)})
        except (KeyError, ValueError, RuntimeError) as exc:
            raise UserError(f"{ckpt.folder}: optimizer state does not fit this config ({exc})") from exc
        if self.scaler.is_enabled() and ckpt.meta.get("loss_scale"):
            self.scaler.load_state_dict(ckpt.meta["loss_scale"])
        carried = state_from_tensors(tensors)
        if carried is not None:  # this rank's rows of the saved B streams
            rows = self.stream.rows
            self.state = tuple(s[:, rows].to(self.device, torch.float32) for s in carried) \
                if isinstance(carried, tuple) else carried[:, rows].to(self.device, torch.float32)
        try:
            self.progress = Progress(**ckpt.meta["progress"])
            torch.set_rng_state(tensors["rng.cpu"])  # rank 0's (the one saved)
            if self.device.type == "cuda" and "rng.cuda" in tensors:
                torch.cuda.set_rng_state(tensors["rng.cuda"], self.device)
            if self.dist.rank:  # the other ranks: a stream of their own again (CPU and GPU)
                torch.manual_seed(self.cfg.seed + self.dist.rank + 1_000_003 * self.progress.step)
        except (KeyError, TypeError, RuntimeError) as exc:
            raise UserError(f"{ckpt.folder}: resume state is incomplete ({exc}); resume from the "
                            "run's other checkpoint or start a new run") from exc

    def save(self, name: str, metrics: dict | None = None) -> None:
        optim_state = self.optimizer.state_dict()
        meta = {
            "model": self.model.config.to_json(), "tokenizer": self.dataset.tokenizer.to_json(),
            "train": asdict(self.cfg), "progress": asdict(self.progress),
            "optimizer": {"param_groups": optim_state["param_groups"]},
            "dataset": {"id": self.dataset.id, "level": self.dataset.tokenizer.level,
                        "val_chars": self.dataset.chars("val"), "val_tokens": self.dataset.tokens("val")},
            "metrics": metrics or {}, "saved_at": time.time(),
            "loss_scale": self.scaler.state_dict(),  # {} where no scaling is done
        }
        tensors = self._resume_tensors()  # a collective under DDP: every rank takes part
        if self.dist.is_main:
            checkpoint.save(self.run_dir / name, self.model, meta, tensors)

    # ---- the loop -----------------------------------------------------------------------------
    def preview(self) -> str:
        """A short sample from the current weights (the live view shows one at each eval)."""
        from charrnn.lm.preview import preview_text

        return preview_text(self.model, self.device, self.dataset.tokenizer)

    def evaluate(self) -> dict:
        total, count = score_ids(self.model, self.val_ids, self.device, seq_len=self.cfg.seq_len)
        # Every rank scores the same weights, but kernels need not agree to the last bit: rank 0's
        # figure decides "improved" and patience everywhere, or the ranks' collectives (saving
        # best/) would part ways.
        val = float(self.dist.broadcast(total / count))
        ratio = self.dataset.tokens("val") / max(1, self.dataset.chars("val"))
        return {"val_loss": val, "val_bpc": val * ratio / math.log(2)}

    def run(self) -> dict:
        cfg, prog = self.cfg, self.progress
        has_val = len(self.val_ids) >= 2
        if not has_val:
            self.reporter.message("note: no validation split, so no evaluation and no best/ "
                                  "(use --val-frac or --valid FILE)")
        snapshot, nan_retries = self._snapshot(), 0
        loss_sum = torch.zeros((), device=self.device)
        window_steps, window_start, last_eval_at = 0, time.time(), prog.elapsed
        started, elapsed_at_start = time.time(), prog.elapsed
        outcome, last_eval = "finished", {}
        single = not self.dist.enabled
        self.stop.install()
        try:
            while not self._budget_spent():
                loss_sum += self._step()
                window_steps += 1
                # Under DDP every rank must reach the same sync points, so only step counts decide
                # them; the clock and Ctrl-C are agreed on at those points.
                sync = prog.step % cfg.log_every == 0 or (prog.step % cfg.eval_every == 0 and has_val)
                save_due = cfg.save_every is not None and prog.step % cfg.save_every == 0
                if single:
                    prog.elapsed = elapsed_at_start + time.time() - started
                    sync = sync or self.stop_requested or self._budget_spent() or (
                        cfg.eval_seconds is not None and prog.elapsed - last_eval_at >= cfg.eval_seconds)
                if not (sync or save_due or self._budget_spent()):
                    continue
                if not single:
                    prog.elapsed = self.dist.max(elapsed_at_start + time.time() - started)
                    self.stop_requested = self.dist.any(self.stop_requested)
                # Read once: a request that lands after this point (a signal, a closed pipe) is
                # acted on at the next sync point, so the stop always comes with its save.
                stopping = self.stop_requested
                eval_due = has_val and (prog.step % cfg.eval_every == 0 or (
                    cfg.eval_seconds is not None and prog.elapsed - last_eval_at >= cfg.eval_seconds))
                final = self._budget_spent() or stopping
                mean = self.dist.mean(loss_sum / window_steps).item()  # the only host sync
                if not math.isfinite(mean):
                    nan_retries += 1
                    if nan_retries > MAX_NAN_RETRIES:
                        raise UserError(f"training diverged: the loss was not finite {nan_retries} "
                                        "times in a row even after halving the learning rate; "
                                        "lower --lr or --grad-clip, or check the data")
                    bad_step = prog.step
                    self._rollback(snapshot)
                    prog = self.progress  # the snapshot's, with the halved scale
                    self.reporter.message(f"warning: non-finite loss before step {bad_step}: rolled "
                                          f"back to step {prog.step}, learning rate ×{prog.lr_scale:g}")
                    loss_sum.zero_()
                    window_steps, window_start = 0, time.time()
                    continue
                nan_retries = 0
                self._log(mean, window_steps, time.time() - window_start)
                if self.reader_gone:
                    self.stop_requested = True
                snapshot = self._snapshot()
                loss_sum.zero_()
                window_steps, window_start = 0, time.time()
                if eval_due or (final and has_val):
                    last_eval = self._eval_and_save()
                    last_eval_at = prog.elapsed
                elif save_due or final:
                    self.save("last", last_eval)
                if cfg.patience and prog.evals_since_best >= cfg.patience:
                    self.reporter.message(f"early stop: no val improvement in {cfg.patience} evals")
                    outcome = "early-stopped"
                    break
                if stopping:
                    outcome = "interrupted"
                    break
        except RuntimeError as exc:
            if is_out_of_memory(exc):
                raise UserError(f"out of memory on {self.device} at batch {cfg.batch_size}×"
                                f"{cfg.seq_len}, hidden {cfg.hidden}: use a smaller --batch-size, "
                                "--seq-len or --hidden") from exc
            raise
        finally:
            self.stop.restore()
            self.reporter.close()
            self.dist.stop()
        return {"outcome": outcome, "step": prog.step, "best_val": prog.best_val,
                "elapsed": prog.elapsed, "run": str(self.run_dir), **last_eval}

    def _budget_spent(self) -> bool:
        prog, cfg = self.progress, self.cfg
        if self.max_steps is not None and prog.step >= self.max_steps:
            return True
        return cfg.max_time is not None and prog.elapsed >= cfg.max_time

    def _step(self) -> torch.Tensor:
        prog = self.progress
        x, y = self.stream.batch_at(prog.epoch, prog.pos)
        self.model.train()
        with autocast(self.device):
            logits, state = self.forward(x, self.state)
        loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), y.reshape(-1))
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        if self.cfg.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)  # clip the true gradients, not scaled ones
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        lr = self.lr_now()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.scaler.step(self.optimizer)  # skipped (on the device) if a gradient overflowed
        self.scaler.update()
        self.state = detach_state(state)
        prog.step += 1
        prog.pos += 1
        prog.tokens += x.numel()
        if prog.pos >= self.stream.steps_per_epoch:  # new epoch: new offset, fresh state
            prog.epoch, prog.pos = prog.epoch + 1, 0
            self.state = self.model.initial_state(self.local_batch, self.device)
        return loss.detach()

    def _log(self, mean: float, steps: int, seconds: float) -> None:
        prog = self.progress
        tokens_per_s = steps * self.cfg.batch_size * self.cfg.seq_len / max(seconds, 1e-9)
        eta = None
        if self.max_steps:
            eta = max(0, self.max_steps - prog.step) * seconds / max(steps, 1)
        if self.cfg.max_time:
            left = max(0.0, self.cfg.max_time - prog.elapsed)  # the last step may overshoot
            eta = left if eta is None else min(eta, left)
        rec = {"type": "train", "step": prog.step, "epoch": prog.epoch + prog.pos /
               self.stream.steps_per_epoch, "loss": mean, "lr": self.lr_now(),
               "tokens_per_s": tokens_per_s, "elapsed": prog.elapsed, "eta": eta,
               "max_steps": self.max_steps}
        self.metrics.write(rec)
        self.reporter.train(rec)

    def _eval_and_save(self) -> dict:
        prog = self.progress
        result = self.evaluate()
        improved = prog.best_val is None or result["val_loss"] < prog.best_val
        if improved:
            prog.best_val, prog.evals_since_best = result["val_loss"], 0
        else:
            prog.evals_since_best += 1
        rec = {"type": "eval", "step": prog.step, "elapsed": prog.elapsed, "best": improved, **result}
        self.metrics.write(rec)
        # last/ first: if the process dies between the two, best/ is the older, still-valid one.
        # Both before the report, which may fail (a terminal hung up) and must not cost the save.
        self.save("last", result)
        if improved:
            self.save("best", result)
        self.reporter.eval(rec)
        return result

