"""Language model training: stateful truncated BPTT on the shared loop (charrnn.training.loop).

One step:  x,y ← stream  →  logits,state ← model(x, state)  →  CE loss  →  (the loop: backward,
           clip, lr, optimizer step)  →  state.detach()

What only the LM has: the hidden state carried from one window to the next (saved in checkpoints,
so a resumed run continues exactly), DDP (each rank trains its own block of the streams; the
checkpoint holds them all), and bits per character at evaluation.
"""

from __future__ import annotations

import copy
import math
from pathlib import Path

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel

from charrnn import checkpoint
from charrnn.data import Dataset, remaking
from charrnn.devices import out_of_memory_is_too_big, require_fits, resolve_device, skeleton
from charrnn.distributed import Dist
from charrnn.errors import UserError, option
from charrnn.lm.batching import TBPTTStream, oriented
from charrnn.lm.config import ModelConfig, TrainConfig, lm_config
from charrnn.lm.model import RNNLM
from charrnn.lm.scoring import score_ids
from charrnn.lm.softmax import (
    ADAPTIVE_FROM,
    cutoffs_from_counts,
    frequency_order,
    resolve_softmax,
)
from charrnn.rnn import state as states
from charrnn.training.loop import Loop
from charrnn.training.reporters import Reporter


class LMTask:
    """The LM's side of the loop: TBPTT batches, carried state, validation in bits/char."""

    metric, higher_is_better, resumable = "val_loss", False, True
    precision = "fp32"

    def __init__(self, dataset: Dataset, cfg: TrainConfig, model: RNNLM, forward: nn.Module,
                 device: torch.device, dist: Dist) -> None:
        self.dataset, self.cfg, self.model, self.forward = dataset, cfg, model, forward
        self.device, self.dist = device, dist
        self.stream = TBPTTStream(oriented(dataset.ids("train"), cfg.direction), cfg.batch_size,
                                  cfg.seq_len, device, dist.rank, dist.world)
        self.steps_per_epoch = self.stream.steps_per_epoch
        val = dataset.ids("val")
        if cfg.eval_tokens is not None:  # the same text whichever way the model reads it
            val = val[: cfg.eval_tokens + 1]
        self.val_ids = oriented(val, cfg.direction)
        self.has_validation = len(self.val_ids) >= 2
        self.local_batch = cfg.batch_size // dist.world
        self.state = model.initial_state(self.local_batch, device)
        self.next_state: states.State | None = None
        self.cold_rows = False  # a resumed run's own way of scoring validation (Progress)
        self.unseen: list[int] | None = None  # tokens the training text never held (Trainer)

    def loss(self, epoch: int, pos: int) -> tuple[torch.Tensor, int]:
        x, y = self.stream.batch_at(epoch, pos)
        nll, self.next_state = self.forward(x, self.state, y)
        return nll.mean(), self.cfg.batch_size * self.cfg.seq_len  # every rank's tokens

    def after_step(self, new_epoch: bool) -> None:
        if new_epoch:  # a new epoch reads from a new offset: fresh state
            self.state = self.model.initial_state(self.local_batch, self.device)
        else:
            self.state = states.detach(self.next_state)
        self.next_state = None

    def evaluate(self) -> dict:
        # The rows `charrnn eval` reads (not --seq-len ones: on a small split more rows would mean
        # more cold starts, and the log would disagree with eval of the same checkpoint)
        total, count = score_ids(self.model, self.val_ids, self.device, precision=self.precision,
                                 burn_in=not self.cold_rows)
        # Every rank scores the same weights, but kernels need not agree to the last bit: rank 0's
        # figure decides "improved" and patience everywhere, or the ranks' collectives (saving
        # best/) would part ways.
        val = float(self.dist.broadcast(total / count))
        ratio = self.dataset.tokens("val") / max(1, self.dataset.counted_chars("val"))
        return {"val_loss": val, "val_bpc": val * ratio / math.log(2)}

    def checkpoint_meta(self) -> dict:
        ds = self.dataset
        unseen = {} if self.unseen is None else {"unseen": self.unseen}
        return {"task": "lm", "model": self.model.config.to_json(),
                "tokenizer": ds.tokenizer.to_json(),
                "dataset": {"id": ds.id, "level": ds.tokenizer.level,
                            "val_chars": ds.counted_chars("val"), "val_tokens": ds.tokens("val"),
                            **remaking(ds), **unseen}}

    def state_tensors(self) -> dict[str, torch.Tensor]:
        # The checkpoint holds all B streams, whatever the world size (a collective under DDP).
        return states.to_tensors(states.map_state(self.dist.gather_rows, self.state))

    def load_state_tensors(self, tensors: dict[str, torch.Tensor]) -> None:
        carried = states.from_tensors(tensors)
        if carried is not None:  # this rank's rows of the saved B streams
            rows = states.select_rows(carried, self.stream.rows)
            self.state = states.map_state(lambda s: s.to(self.device, torch.float32), rows)

    def snapshot(self) -> states.State:
        return copy.deepcopy(self.state)

    def restore(self, snap: states.State) -> None:
        self.state = snap

    def out_of_memory(self) -> str:
        cfg = self.cfg
        return (f"batch {cfg.batch_size}×{cfg.seq_len}, hidden {cfg.hidden}: use a smaller "
                f"{option('batch_size')}, {option('seq_len')} or {option('hidden')}")

    def preview(self) -> str:
        """A short sample from the current weights (the live view shows one at each eval)."""
        from charrnn.lm.preview import preview_text

        return preview_text(self.model, self.device, self.dataset.tokenizer)


def model_config_for(cfg: TrainConfig, dataset: Dataset, device: torch.device
                     ) -> tuple[ModelConfig, np.ndarray]:
    """The model a new run builds (the softmax resolved for this vocabulary and device, adaptive
    cut-offs from the training frequencies), and the token counts of the training split."""
    vocab = dataset.tokenizer.vocab_size
    counts = np.bincount(np.asarray(dataset.ids("train")), minlength=vocab)[:vocab]
    softmax = resolve_softmax(cfg.softmax, vocab, device)
    if cfg.cutoffs and softmax == "full":
        raise UserError(f"{option('cutoffs')} {','.join(map(str, cfg.cutoffs))}: {option('softmax')} "
                        f"auto chose the full softmax here ({vocab:,} tokens on {device.type}; auto is "
                        f"adaptive from {ADAPTIVE_FROM:,} on a CPU): type {option('softmax')} adaptive "
                        "to use them, or drop them")
    cutoffs = (cfg.cutoffs or cutoffs_from_counts(counts)) if softmax == "adaptive" else []
    if softmax == "adaptive" and not cutoffs:  # a vocabulary too small to cut
        softmax = "full"
    return cfg.model_config(vocab, softmax, cutoffs), counts


def _unseen(resume: checkpoint.Checkpoint | None, start, counts: np.ndarray | None
            ) -> list[int] | None:
    """The tokens the training text never held, which sampling never writes (lm.plain): a new
    run's, from its counts; a resumed run's, as its checkpoint says; a fine-tuned run's are set
    by its job, from its parent's too (lm.finetune.unseen_after); none for a run made before
    they were recorded."""
    if resume is not None:
        return (resume.meta.get("dataset") or {}).get("unseen")
    if start is not None or counts is None:
        return None
    return [int(x) for x in np.flatnonzero(counts == 0)]


class Trainer:
    """A language model, its task and its loop, built for one run (new or resumed: a resumed run
    builds the model its checkpoint describes)."""

    def __init__(self, dataset: Dataset, cfg: TrainConfig, run_dir: Path,
                 resume: checkpoint.Checkpoint | None = None, reporter: Reporter | None = None,
                 dist: Dist | None = None,
                 start: tuple[ModelConfig, dict[str, torch.Tensor]] | None = None) -> None:
        """`start`: the model and weights a fine-tuned run begins from (lm.finetune)."""
        self.dataset, self.cfg, self.run_dir = dataset, cfg, run_dir
        self.dist = dist or Dist()
        self.dist.check_batch(cfg.batch_size, resumed=resume is not None)
        self.device = self.dist.start(resolve_device(cfg.device))
        counts = None  # a new model's training frequencies (its adaptive order)
        if resume is not None:  # the model its checkpoint describes, whatever auto says here
            model_config = lm_config(resume)
        elif start is not None:
            model_config = start[0]
        else:
            model_config, counts = model_config_for(cfg, dataset, self.device)
        params = require_fits(lambda: RNNLM(model_config), self.device)
        if resume is not None:  # its weights file must be this model's, before anything is built
            resume.check_weights(skeleton(lambda: RNNLM(model_config)))
        torch.manual_seed(cfg.seed)  # the same initial weights on every rank
        with out_of_memory_is_too_big(params, self.device):
            self.model = self._model(model_config, start, counts, resume is not None)
            forward: nn.Module = self.model
            if self.dist.enabled:
                ids = [self.device.index] if self.device.type == "cuda" else None
                forward = DistributedDataParallel(self.model, device_ids=ids)
            self.task = LMTask(dataset, cfg, self.model, forward, self.device, self.dist)
            self.task.unseen = _unseen(resume, start, counts)
            self.loop = Loop(self.task, cfg, run_dir, self.device, self.dist, reporter)
        # ...then a stream of its own per rank, so ranks draw different dropout masks.
        torch.manual_seed(cfg.seed + self.dist.rank)
        if resume is not None:
            self.loop.restore_from(resume)
            self.task.cold_rows = self.progress.cold_rows
            if not self.loop.rng_restored:  # a rank the run had not: a stream of its own
                torch.manual_seed(cfg.seed + self.dist.rank + 1_000_003 * self.progress.step)

    def _model(self, config: ModelConfig, start: tuple[ModelConfig, dict] | None,
               counts: np.ndarray | None, resumed: bool) -> RNNLM:
        """A new model's initial weights are drawn on the host (the same on every device); a
        resumed one's are overwritten by its checkpoint, so it is built where it trains."""
        if resumed:
            with torch.device(self.device):
                return RNNLM(config)
        model = RNNLM(config)
        if start is not None:  # its buffers carry the parent's frequency order too
            model.load_state_dict(start[1])
        elif model.adaptive and counts is not None:
            model.head.set_order(frequency_order(counts))
        return model.to(self.device)

    @property
    def progress(self):
        return self.loop.progress

    @property
    def reporter(self) -> Reporter:
        return self.loop.reporter

    def run(self) -> dict:
        try:
            result = self.loop.run()
        except BaseException:
            self.dist.stop()  # no barrier: the other ranks may never reach it
            raise
        self.dist.stop(synchronize=True)
        return result
