"""The `train` job: inputs → dataset → run folder → Trainer. Usable without the CLI.

Inputs may be files, directories, globs, a preprocessed dataset folder, or the name of a registry
corpus (`tinyshakespeare`, `ptb`, …); no input means the embedded default corpus.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, replace
from pathlib import Path

from charrnn import checkpoint, data, runs
from charrnn.corpora import resolve_inputs
from charrnn.devices import require_fits, resolve_device
from charrnn.distributed import Dist
from charrnn.errors import UserError
from charrnn.lm.model import RNNLM
from charrnn.lm.train import TrainConfig, Trainer

BUDGET_FIELDS = ("max_steps", "max_time", "epochs", "patience", "device")


def _refuse_changes(saved: TrainConfig, typed: dict, run: str) -> None:
    """An option typed with --resume that would change the model, data or optimisation is an
    error (it would be ignored: the run goes on with its own)."""
    changed = [f"--{k.replace('_', '-')} {v} (the run has {getattr(saved, k)})"
               for k, v in typed.items()
               if k not in BUDGET_FIELDS and hasattr(saved, k) and getattr(saved, k) != v]
    if changed:
        may = ", ".join(f"--{f.replace('_', '-')}" for f in BUDGET_FIELDS)
        raise UserError(f"a resumed run keeps its own settings, and {run} differs: "
                        f"{'; '.join(changed)}. Only {may} may change; start a new run for the rest")


def train_job(inputs: list[str], popts: data.PreprocessOptions, cfg: TrainConfig,
              root: Path, run_name: str | None = None, resume: str | None = None,
              overrides: dict | None = None, mirror: str | None = None,
              plain: bool | None = None) -> dict:
    dist = Dist()
    ckpt = None
    if resume is not None:
        ckpt = checkpoint.resolve(resume, root, prefer="last")
        if ckpt.task != "lm":
            raise UserError(f"{resume} is a {ckpt.task} run: `charrnn train --resume` continues "
                            "language models only; train a new one instead")
        if run_name is not None and run_name != ckpt.run_folder.name:
            raise UserError(f"--run-name {run_name}: a resumed run keeps its folder "
                            f"({ckpt.run_folder}); drop --run-name, or drop --resume to start a "
                            "new run")
        saved = TrainConfig.from_json(ckpt.meta.get("train", {}))
        overrides = dict(overrides or {})
        _refuse_changes(saved, overrides.pop("typed", {}), ckpt.run_folder.name)
        cfg = replace(saved, **{k: v for k, v in overrides.items()
                                if k in BUDGET_FIELDS and v is not None})
    dist.check_batch(cfg.batch_size)
    device = dist.start(resolve_device(cfg.device))

    def prepare() -> data.Dataset:
        # Under torchrun rank 0 preprocesses first; the others then find it in the cache.
        if not dist.is_main:
            dist.barrier()
        dataset = data.prepare(resolve_inputs(inputs, popts, mirror), popts)
        if dist.is_main:
            dist.barrier()
        return dataset

    if ckpt is not None:
        wanted = ckpt.meta.get("dataset", {}).get("id", "")
        if inputs:
            dataset = prepare()
            if dataset.id != wanted:
                raise UserError(f"the given corpus is not the one run {ckpt.run_folder.name} was "
                                "trained on (its dataset id differs): resume without a corpus, or "
                                "with the same corpus and options")
        else:
            dataset = data.find_dataset(wanted)
            if dataset is None:
                raise UserError(f"run {ckpt.run_folder.name}'s dataset ({wanted}) is no longer in "
                                "the cache: pass the same corpus and options again to --resume")
        _check_tokenizer(dataset, ckpt)
        run_dir = ckpt.run_folder
        trainer = Trainer(dataset, cfg, run_dir, resume=ckpt, plain=plain, dist=dist)
        trainer.reporter.message(f"resuming {run_dir} at step {trainer.progress.step}")
    else:
        dataset = prepare()
        info = {"dataset": {"id": dataset.id, "level": dataset.tokenizer.level,
                            "splits": dataset.meta["splits"]}, "config": asdict(cfg)}
        model_config = cfg.model_config(dataset.tokenizer.vocab_size)  # validated, and the
        require_fits(lambda: RNNLM(model_config), device)  # size checked, before the folder exists
        run_dir = runs.new_run_dir(root, run_name, "rnn", info) if dist.is_main else None
        run_dir = Path(str(dist.broadcast(str(run_dir) if run_dir else None)))
        trainer = Trainer(dataset, cfg, run_dir, plain=plain, dist=dist)
        splits = dataset.meta["splits"]
        processes = f" × {dist.world} process{'es' if dist.world > 1 else ''} (DDP)"
        trainer.reporter.message(
            f"run {run_dir} | {dataset.tokenizer.level} vocab {dataset.tokenizer.vocab_size} | "
            f"train {splits['train']['tokens']:,} val {splits['val']['tokens']:,} tokens | "
            f"{cfg.cell} {cfg.layers}×{cfg.hidden} {trainer.model.num_parameters():,} params | "
            f"{trainer.device}" + (processes if dist.enabled else ""))
    result = trainer.run()
    trainer.reporter.message(_summary(result))
    if trainer.reader_gone:  # `charrnn train … | head`: saved and stopped; stdout is gone, so
        # stderr says how to go on, and the CLI ends as a closed pipe does (exit 141)
        print(f"charrnn: stdout was closed: stopped at step {result['step']} with last/ saved; "
              f"continue with: charrnn train --resume {result['run']}", file=sys.stderr)
        raise BrokenPipeError("stdout was closed during training (the run is saved)")
    return result


def _check_tokenizer(dataset: data.Dataset, ckpt: checkpoint.Checkpoint) -> None:
    if dataset.meta["tokenizer"] != ckpt.meta["tokenizer"]:
        raise UserError(f"tokenizer mismatch: dataset {dataset.root} and checkpoint {ckpt.folder} "
                        "use different vocabularies; preprocess with the run's options")


def _summary(result: dict) -> str:
    best = result.get("best_val")
    best_text = f", best val {best:.4f} nats/token" if best is not None else ""
    verb = {"interrupted": "stopped (resume with --resume)", "early-stopped": "stopped early"}
    return (f"{verb.get(result['outcome'], 'done')} at step {result['step']}{best_text}; "
            f"run folder {result['run']}")
