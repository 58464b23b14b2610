"""The `train` job of a language model: the device, the dataset, the run folder, the Trainer.

    TrainJob(root)                    the runs root; the process group and device on open_device
      .open_resumed(RUN) / .open_parent(RUN)    the run continued, or fine-tuned from
      .prepare(inputs, options)       the dataset (rank 0 first under torchrun; the others find
                                      it in the cache)
      .facts(dataset), .measure(…)    what a plan decides by: level, size, measured speeds
      .start(dataset, config) / .resume(checkpoint, config)    the run, with its one writer lock
                                      (a resumed fill model: charrnn.fill.train.resume_fill_job)

A plan (charrnn.plan.train) drives it for the command line with resolved configs; `train_job`
drives it for library callers. Inputs may be files, directories, globs, a preprocessed dataset
folder, or the name of a registry corpus; no input means the embedded default corpus.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import asdict, replace
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from charrnn import checkpoint, data, runlock, runs
from charrnn.configs import typed_config
from charrnn.corpora import resolve_inputs
from charrnn.devices import keeps_global_rng, out_of_memory_is_too_big, require_fits, resolve_device
from charrnn.distributed import Dist
from charrnn.errors import UserError, option
from charrnn.lm import finetune
from charrnn.lm.batching import TBPTTStream
from charrnn.lm.config import DataFacts, ModelConfig, TrainConfig
from charrnn.lm.model import RNNLM
from charrnn.lm.softmax import cutoffs_from_counts
from charrnn.lm.train import Trainer, model_config_for
from charrnn.training.config import LoopConfig, described_settings
from charrnn.training.reporters import Reporter, resume_command
from charrnn.training.task import Progress

C = TypeVar("C", bound=LoopConfig)


class TrainJob:
    def __init__(self, root: Path, mirror: str | None = None) -> None:
        self.root, self.mirror, self.dist = Path(root), mirror, Dist()
        self.device: torch.device | None = None

    def open_device(self, name: str) -> torch.device:
        self.device = self.dist.start(resolve_device(name))
        return self.device

    @property
    def device_type(self) -> str:
        assert self.device is not None, "open_device first"
        return self.device.type

    def open_resumed(self, spec: str, run_name: str | None = None,
                     configs: dict[str, type[LoopConfig]] | None = None
                     ) -> tuple[checkpoint.Checkpoint, LoopConfig]:
        """The run's last checkpoint, and the config it trained with, of the type `configs` maps
        its task to (a language model's TrainConfig; the plan adds the fill model's)."""
        configs = configs or {"lm": TrainConfig}
        ckpt = checkpoint.resolve_for_resume(spec, self.root)
        if ckpt.task not in configs:
            how = ("`charrnn tag train --resume` continues it" if ckpt.task == "tag"
                   else "train a new one instead")
            raise UserError(f"{spec} is {runs.a_kind(ckpt.task)} run: `charrnn train --resume` "
                            f"continues language models and fill models; {how}")
        if run_name is not None and run_name != ckpt.run_folder.name:
            raise UserError(f"{option('run_name')} {run_name}: a resumed run keeps its folder "
                            f"({ckpt.run_folder}); drop {option('run_name')}, or drop "
                            f"{option('resume')} to start a new run")
        return ckpt, _saved_config(ckpt, configs[ckpt.task])

    def open_parent(self, spec: str) -> finetune.Parent:
        return finetune.open_parent(spec, self.root)

    def prepare(self, inputs: list[str], popts: data.PreprocessOptions,
                given: data.GivenTokenizer | None = None) -> data.Dataset:
        """The dataset of `inputs` with final options (rank 0 preprocesses first under DDP)."""
        if not self.dist.is_main:
            self.dist.barrier()
        dataset = data.prepare(resolve_inputs(inputs, popts, self.mirror, final=True), popts,
                               given)
        if self.dist.is_main:
            self.dist.barrier()
        return dataset

    def facts(self, dataset: data.Dataset) -> DataFacts:
        vocab = dataset.tokenizer.vocab_size
        counts = np.bincount(np.asarray(dataset.ids("train")), minlength=vocab)[:vocab]
        return DataFacts(dataset.tokenizer.level, vocab, dataset.tokens("train"),
                         cutoffs_from_counts(counts) if vocab > 2 else [],
                         has_validation=dataset.tokens("val") >= 2)

    def measure(self, config: ModelConfig, batch: int, candidates: dict,
                window: int | None = None, threads: int = 0):
        """This machine's time per training step of `config` in each candidate setting (on
        `window` time steps, None: speed's own; on the run's `threads`, 0: the process's): rank
        0 measures, every rank takes its answer (so all ranks decide alike)."""
        from charrnn.lm import speed

        params = require_fits(lambda: RNNLM(config), self.device)  # no trial of what cannot fit
        measured = None
        if self.dist.is_main:
            with out_of_memory_is_too_big(params, torch.device("cpu")):
                measured = speed.measure(config, batch, candidates, window, threads)
        return self.dist.broadcast(measured)

    def start(self, dataset: data.Dataset, cfg: TrainConfig, run_name: str | None = None,
              sources: dict[str, str] | None = None, reporter: Reporter | None = None,
              parent: finetune.Parent | None = None) -> dict:
        """A new run (fine-tuned from `parent` when given)."""
        with contextlib.ExitStack() as held:
            start = None
            if parent is not None:
                cfg = finetune.parent_shaped(cfg, parent)
                start = finetune.grown_model(parent, dataset.tokenizer.vocab_size, cfg)
            trainer = _new_run(dataset, cfg, self.root, run_name, self.device, reporter, self.dist,
                               start, parent, held, sources or {})
            return _finish(trainer)

    def resume(self, ckpt: checkpoint.Checkpoint, cfg: TrainConfig, inputs: list[str],
               popts: data.PreprocessOptions | None, reporter: Reporter | None = None,
               refuse_spent: Callable[[Progress, bool], None] | None = None) -> dict:
        """Continue `ckpt`'s run exactly (its dataset: the corpus given again, or the cache).
        `refuse_spent(progress, spent)` sees, before the first step, where the run stands and
        whether its budget is already spent (a caller may call that an error, not 'done')."""
        with contextlib.ExitStack() as held:  # the run folder, as its one writer (rank 0 writes)
            if self.dist.is_main:
                held.enter_context(runlock.writer(ckpt.run_folder))
            given = finetune.resumed_given(ckpt)
            prepare = (lambda: self.prepare(inputs, popts, given)) if inputs and popts else None
            dataset = resumed_dataset(ckpt, prepare)
            repaired = self.dist.is_main and runs.repair_run_info(
                ckpt.run_folder, "lm", ckpt.started_at, _run_record(dataset, cfg, {}))
            trainer = Trainer(dataset, cfg, ckpt.run_folder, resume=ckpt, reporter=reporter,
                              dist=self.dist)
            trainer.loop.resumed(ckpt, _computes(trainer, _resumed_sources(ckpt, cfg)),
                                 bool(repaired), refuse_spent)
            return _finish(trainer)


@keeps_global_rng
def train_job(inputs: list[str], popts: data.PreprocessOptions, cfg: TrainConfig | None,
              root: Path, run_name: str | None = None, resume: str | None = None,
              overrides: dict | None = None, mirror: str | None = None,
              reporter: Reporter | None = None) -> dict:
    """A language model run for library callers: a new run of `cfg` as it is (no recipe; `auto`
    precision and softmax by the library's rules), or `resume` continued (cfg None: the run
    keeps its own) with `overrides` of its budget (max_steps, max_time, epochs, patience,
    device, threads)."""
    job = TrainJob(Path(root), mirror)
    if resume is not None:
        stray = sorted(set(overrides or {}) - set(BUDGET))
        if cfg is not None or stray:  # either would be silently ignored
            raise UserError(f"a resumed run keeps its own config: pass cfg=None, and in overrides "
                            f"only its budget ({', '.join(BUDGET)})"
                            + (f", not {', '.join(stray)}" if stray else ""))
        ckpt, saved = job.open_resumed(resume, run_name)
        budget = {k: v for k, v in (overrides or {}).items() if v is not None}
        saved = replace(saved, **budget)
        job.open_device(saved.device)
        return job.resume(ckpt, saved, inputs, popts, reporter)
    if cfg is None:
        raise UserError("a new run needs its config: pass cfg=TrainConfig(...)")
    job.open_device(cfg.device)
    return job.start(job.prepare(inputs, popts), cfg, run_name, reporter=reporter)


BUDGET = ("max_steps", "max_time", "epochs", "patience", "device", "threads")


def _finish(trainer: Trainer) -> dict:
    result = trainer.run()
    resume = resume_command(trainer.reporter, f"charrnn train --resume {result['run']}")
    trainer.reporter.message(_summary(result, resume))
    trainer.loop.end_if_reader_gone(result, resume)
    return result


def _saved_config(ckpt: checkpoint.Checkpoint, kind: type[C]) -> C:
    train = dict(ckpt.meta.get("train") or {})
    if train.get("optim") == "sgd":  # runs made before --momentum: their SGD had momentum 0.9
        train.setdefault("momentum", 0.9)
    return typed_config(kind, train, f"{ckpt.folder / checkpoint.META} [train]")


def resumed_dataset(ckpt: checkpoint.Checkpoint, prepare) -> data.Dataset:
    """The dataset the run trained on: the corpus given again (it must be the same), or the
    cached one."""
    wanted = ckpt.meta.get("dataset", {}).get("id", "")
    if prepare is not None:
        dataset = prepare()
        if dataset.id != wanted:
            unrecorded = "" if "options" in (ckpt.meta.get("dataset") or {}) else (
                " typed as it was first preprocessed (this run, made by an older charrnn, does "
                "not record them; a fine-tuned one cannot be matched)")
            raise UserError(f"the given corpus is not the one run {ckpt.run_folder.name} was "
                            "trained on (its dataset id differs): resume without a corpus, or "
                            f"with the same corpus and options{unrecorded}")
    else:
        dataset = data.find_dataset(wanted)
        if dataset is None:
            raise data.dataset_gone(wanted, f"pass the same corpus and options again to {option('resume')}")
    _check_tokenizer(dataset, ckpt)
    return dataset


def _run_record(dataset: data.Dataset, cfg: TrainConfig, sources: dict[str, str]) -> dict:
    """What run.json says of a language model run beside its kind, name and creation time."""
    return {"dataset": {"id": dataset.id, "level": dataset.tokenizer.level,
                        "splits": dataset.meta["splits"]}, "config": asdict(cfg),
            "sources": sources}


def _new_run(dataset: data.Dataset, cfg: TrainConfig, root: Path, run_name: str | None,
             device, reporter: Reporter | None, dist: Dist, start, parent: finetune.Parent | None,
             held: contextlib.ExitStack, sources: dict[str, str]) -> Trainer:
    info = _run_record(dataset, cfg, sources)
    model_config = start[0] if start else model_config_for(cfg, dataset, device)[0]  # validated,
    require_fits(lambda: RNNLM(model_config), device)  # size checked, before the folder exists
    TBPTTStream.check(dataset.tokens("train"), cfg.batch_size, cfg.seq_len)  # and the text
    dist.check_batch(cfg.batch_size)  # as the recipe made it, before the folder exists
    added = model_config.vocab_size - parent.config.vocab_size if parent else 0
    if parent is not None:
        info["init_from"] = parent.record(added)
    run_dir = runs.new_run_dir(root, run_name, "lm", info) if dist.is_main else None
    if run_dir is not None:
        held.enter_context(runlock.writer(run_dir))
        held.enter_context(runs.kept_if_saved(run_dir))
    run_dir = Path(str(dist.broadcast(str(run_dir) if run_dir else None)))
    trainer = Trainer(dataset, cfg, run_dir, reporter=reporter, dist=dist, start=start)
    if parent is not None:
        trainer.task.unseen = finetune.unseen_after(parent, dataset)
        skipped = sum(dataset.skipped_chars(s) for s in data.SPLITS)
        vocabulary = (f"{added:,} token(s) added to its vocabulary ({parent.config.vocab_size:,}"
                      f" → {model_config.vocab_size:,})" if added else
                      f"its vocabulary as it was ({model_config.vocab_size:,})")
        trainer.reporter.message(
            f"fine-tuning {parent.name}: {vocabulary}, "
            + (f"{skipped:,} character(s) of the new text skipped ({option('unknown', 'unk')} skip), "
               if skipped else "")
            + f"peak lr {cfg.base_lr:g}")
    splits = dataset.meta["splits"]
    processes = f" × {dist.world} process{'es' if dist.world > 1 else ''} (DDP)"
    trainer.reporter.message(
        f"run {run_dir} | {dataset.tokenizer.level} vocab {dataset.tokenizer.vocab_size} | "
        f"train {splits['train']['tokens']:,} val {splits['val']['tokens']:,} tokens | "
        f"{cfg.cell} {cfg.layers}×{cfg.hidden} {trainer.model.num_parameters():,} params | "
        f"{trainer.device}" + (processes if dist.enabled else "")
        + f" | {_computes(trainer, sources)}")
    settings = described_settings(cfg, sources)
    if settings:
        trainer.reporter.message(f"settings: {settings}")
    return trainer


def _computes(trainer: Trainer, sources: dict[str, str]) -> str:
    """What the run computes in, and why: the precision, and the softmax with its clusters."""
    config, loop = trainer.model.config, trainer.loop
    head = (f"adaptive softmax {config.cutoffs}" if config.softmax == "adaptive"
            else "full softmax")
    why = sources.get("precision", loop.precision_why)
    if loop.precision == "bf16" and trainer.device.type == "cpu" and config.cell != "lstm":
        # PyTorch's CPU autocast has a bf16 kernel for nn.LSTM (oneDNN), none for GRU / RNN
        why += f"; the {config.cell.upper()} recurrence stays float32 on the CPU, the layers " \
               "around it bf16"
    return f"{loop.precision} ({why}), {head}"


def _resumed_sources(ckpt: checkpoint.Checkpoint, cfg: TrainConfig) -> dict[str, str]:
    """Why a resumed run computes as it does: what its start decided (a precision the machine
    chose is not one the user asked for)."""
    if cfg.precision == "auto":  # decided again by the library's rule
        return {}
    try:
        first = (runs.run_info(ckpt.run_folder).get("sources") or {}).get("precision")
    except UserError:  # run.json unreadable: the checkpoint alone still resumes
        first = None
    return {"precision": f"the run's own{f', {first}' if first else ''}"}


def _check_tokenizer(dataset: data.Dataset, ckpt: checkpoint.Checkpoint) -> None:
    if dataset.meta["tokenizer"] != ckpt.meta["tokenizer"]:
        raise UserError(f"tokenizer mismatch: dataset {dataset.root} and checkpoint {ckpt.folder} "
                        "use different vocabularies; preprocess with the run's options")


def _summary(result: dict, resume: str) -> str:
    best = result.get("best_val")
    best_text = f", best val {best:.4f} nats/token" if best is not None else ""
    verb = {"interrupted": "stopped", "early-stopped": "stopped early"}
    how = f"; continue with `{resume}`" if result["outcome"] == "interrupted" else ""
    return (f"{verb.get(result['outcome'], 'done')} at step {result['step']}"
            f"{result.get('why_ended', '')}{best_text}; run folder {result['run']}{how}")
