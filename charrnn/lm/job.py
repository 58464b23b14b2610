"""The `train` job: inputs → dataset → run folder → Trainer. Usable without the CLI.

Inputs may be files, directories, globs, a preprocessed dataset folder, or the name of a registry
corpus (`tinyshakespeare`, `ptb`, …); no input means the embedded default corpus.
"""

from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from charrnn import checkpoint, data, runs
from charrnn.configs import typed_config
from charrnn.corpora import resolve_inputs
from charrnn.devices import require_fits, resolve_device
from charrnn.distributed import Dist
from charrnn.errors import UserError
from charrnn.lm import finetune
from charrnn.lm.batching import TBPTTStream
from charrnn.lm.config import TrainConfig, recipe_for
from charrnn.lm.model import RNNLM
from charrnn.lm.train import Trainer, model_config_for
from charrnn.training.reporters import Reporter

BUDGET_FIELDS = ("max_steps", "max_time", "epochs", "patience", "device")


def _refuse_changes(saved: TrainConfig, model: dict, typed: dict, run: str) -> None:
    """An option typed with --resume that would change the model, data or optimisation is an
    error (it would be ignored: the run goes on with its own). Compared with what the run used:
    its lr after the optimizer's default, its model's softmax and cut-offs."""
    used = {"lr": saved.base_lr, "softmax": model.get("softmax"), "cutoffs": model.get("cutoffs")}

    def has(k: str):
        return used[k] if k in used else getattr(saved, k)

    changed = [f"--{k.replace('_', '-')} {v} (the run has {has(k)})" for k, v in typed.items()
               if k not in BUDGET_FIELDS and hasattr(saved, k) and has(k) != v
               and not (k == "softmax" and v == "auto")]
    if changed:
        may = ", ".join(f"--{f.replace('_', '-')}" for f in BUDGET_FIELDS)
        raise UserError(f"a resumed run keeps its own settings, and {run} differs: "
                        f"{'; '.join(changed)}. Only {may} may change; start a new run for the rest")


def _saved_config(ckpt: checkpoint.Checkpoint) -> TrainConfig:
    train = dict(ckpt.meta.get("train") or {})
    if train.get("optim") == "sgd":  # runs made before --momentum: their SGD had momentum 0.9
        train.setdefault("momentum", 0.9)
    return typed_config(TrainConfig, train, f"{ckpt.folder / checkpoint.META} [train]")


def train_job(inputs: list[str], popts: data.PreprocessOptions, cfg: TrainConfig,
              root: Path, run_name: str | None = None, resume: str | None = None,
              overrides: dict | None = None, mirror: str | None = None,
              reporter: Reporter | None = None, typed: frozenset[str] | None = None,
              init_from: str | None = None, unknown: str = "add", grow_vocab: int = 0) -> dict:
    """`charrnn train` (or `--resume`, or `--init-from RUN`): the run's result; the reporter gets
    its progress. A new word-level run takes the word recipe for the options not `typed`
    (lm.config); a fine-tuned one its parent's model and tokenizer (lm.finetune)."""
    dist = Dist()
    ckpt, parent, given = None, None, None
    if resume is not None and init_from is not None:
        raise UserError("--init-from starts a new run from a trained one and --resume continues a "
                        "run: give one of them")
    if resume is not None:
        ckpt, cfg = _resumed_config(resume, root, run_name, overrides or {})
    if init_from is not None:
        parent = finetune.open_parent(init_from, root)
        finetune.refuse_clashes(parent, cfg, popts.level, typed or frozenset())
        given = finetune.given_tokenizer(parent, unknown, grow_vocab)
        popts = replace(popts, level=parent.tokenizer.level)
        # the word recipe too, but the parent's shape and regularisers over it
        cfg = finetune.finetune_config(recipe_for(cfg, parent.tokenizer.level, typed), parent,
                                       typed or frozenset())
    device = dist.start(resolve_device(cfg.device))

    def prepare() -> data.Dataset:
        # Under torchrun rank 0 preprocesses first; the others then find it in the cache.
        if not dist.is_main:
            dist.barrier()
        dataset = data.prepare(resolve_inputs(inputs, popts, mirror), popts, given)
        if dist.is_main:
            dist.barrier()
        return dataset

    if ckpt is not None:
        dataset = _resumed_dataset(ckpt, prepare if inputs else None)
        trainer = Trainer(dataset, cfg, ckpt.run_folder, resume=ckpt, reporter=reporter, dist=dist)
        trainer.reporter.message(f"resuming {ckpt.run_folder} at step {trainer.progress.step} | "
                                 f"{_computes(trainer)}")
    else:
        dataset = prepare()
        start = None
        if parent is not None:
            start = finetune.grown_model(parent, dataset.tokenizer.vocab_size, cfg)
        else:
            cfg = recipe_for(cfg, dataset.tokenizer.level, typed)
        trainer = _new_run(dataset, cfg, root, run_name, device, reporter, dist, start, parent)
    result = trainer.run()
    trainer.reporter.message(_summary(result))
    trainer.loop.end_if_reader_gone(result, f"charrnn train --resume {result['run']}")
    return result


def _resumed_config(resume: str, root: Path, run_name: str | None, overrides: dict
                    ) -> tuple[checkpoint.Checkpoint, TrainConfig]:
    """The run's last checkpoint and its own config, with the budget options typed now."""
    ckpt = checkpoint.resolve(resume, root, prefer="last")
    if ckpt.task != "lm":
        raise UserError(f"{resume} is {runs.a_kind(ckpt.task)} run: `charrnn train --resume` continues "
                        "language models only; train a new one instead")
    if run_name is not None and run_name != ckpt.run_folder.name:
        raise UserError(f"--run-name {run_name}: a resumed run keeps its folder "
                        f"({ckpt.run_folder}); drop --run-name, or drop --resume to start a "
                        "new run")
    saved = _saved_config(ckpt)
    overrides = dict(overrides)
    _refuse_changes(saved, ckpt.meta.get("model") or {}, overrides.pop("typed", {}),
                    ckpt.run_folder.name)
    return ckpt, replace(saved, **{k: v for k, v in overrides.items()
                                   if k in BUDGET_FIELDS and v is not None})


def _resumed_dataset(ckpt: checkpoint.Checkpoint, prepare) -> data.Dataset:
    """The dataset the run trained on: the corpus given again (it must be the same), or the
    cached one."""
    wanted = ckpt.meta.get("dataset", {}).get("id", "")
    if prepare is not None:
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
    return dataset


def _new_run(dataset: data.Dataset, cfg: TrainConfig, root: Path, run_name: str | None,
             device, reporter: Reporter | None, dist: Dist, start=None,
             parent: finetune.Parent | None = None) -> Trainer:
    info = {"dataset": {"id": dataset.id, "level": dataset.tokenizer.level,
                        "splits": dataset.meta["splits"]}, "config": asdict(cfg)}
    model_config = start[0] if start else model_config_for(cfg, dataset, device)[0]  # validated,
    require_fits(lambda: RNNLM(model_config), device)  # size checked, before the folder exists
    TBPTTStream.check(dataset.tokens("train"), cfg.batch_size, cfg.seq_len)  # and the text
    dist.check_batch(cfg.batch_size)  # as the recipe made it, before the folder exists
    added = model_config.vocab_size - parent.config.vocab_size if parent else 0
    if parent is not None:
        info["init_from"] = parent.record(added)
    run_dir = runs.new_run_dir(root, run_name, "lm", info) if dist.is_main else None
    run_dir = Path(str(dist.broadcast(str(run_dir) if run_dir else None)))
    trainer = Trainer(dataset, cfg, run_dir, reporter=reporter, dist=dist, start=start)
    if parent is not None:
        skipped = sum(dataset.skipped_chars(s) for s in data.SPLITS)
        trainer.reporter.message(
            f"fine-tuning {parent.name}: {added:,} token(s) added to its vocabulary "
            f"({parent.config.vocab_size:,} → {model_config.vocab_size:,}), "
            + (f"{skipped:,} character(s) of the new text skipped (--unk skip), " if skipped else "")
            + f"peak lr {cfg.base_lr:g}")
    splits = dataset.meta["splits"]
    processes = f" × {dist.world} process{'es' if dist.world > 1 else ''} (DDP)"
    trainer.reporter.message(
        f"run {run_dir} | {dataset.tokenizer.level} vocab {dataset.tokenizer.vocab_size} | "
        f"train {splits['train']['tokens']:,} val {splits['val']['tokens']:,} tokens | "
        f"{cfg.cell} {cfg.layers}×{cfg.hidden} {trainer.model.num_parameters():,} params | "
        f"{trainer.device}" + (processes if dist.enabled else "") + f" | {_computes(trainer)}")
    return trainer


def _computes(trainer: Trainer) -> str:
    """What the run computes in, and why: the precision, and the softmax with its clusters."""
    config, loop = trainer.model.config, trainer.loop
    head = (f"adaptive softmax {config.cutoffs}" if config.softmax == "adaptive"
            else "full softmax")
    why = loop.precision_why
    if loop.precision == "bf16" and trainer.device.type == "cpu" and config.cell != "lstm":
        # PyTorch's CPU autocast has a bf16 kernel for nn.LSTM (oneDNN), none for GRU / RNN
        why += f"; the {config.cell.upper()} recurrence stays float32 on the CPU, the layers " \
               "around it bf16"
    return f"{loop.precision} ({why}), {head}"


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
