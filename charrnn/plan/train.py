"""`charrnn train` of a language model, planned: the mode, the preprocessing, the full config.

    new       dataclass defaults ← the situation's recipes (rules.py) ← what was typed; then
              `--precision` and `--softmax` auto measured on this model (measured.py)
    resume    the run's own config; only its budget, device and threads may be typed anew
    finetune  a new run's recipe, the parent's shape (and its regularisers unless typed)

Each step asks the library job (lm.job.TrainJob) for the facts it needs — the data's level and
size, the device, the resumed or parent run, this machine's measured speeds — and hands it back
a resolved TrainConfig with, for every value that is not the dataclass default, where it came
from ("typed", "recipe: …", "machine: …", "run", "parent").
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Protocol

from charrnn.errors import UserError, flag
from charrnn.lm.config import (
    REGULARISERS,
    SHAPE,
    DataFacts,
    ModelConfig,
    TrainConfig,
    require_one_batch,
)
from charrnn.plan import rules
from charrnn.plan.measured import measured_choices
from charrnn.plan.preprocess import preprocess_options, resumed_preprocess_options
from charrnn.plan.request import Request
from charrnn.training.config import LoopConfig

TOKENIZER = ("lower", "pattern", "min_count", "max_vocab", "vocab_size", "subword_model")


class Job(Protocol):
    """The library side (lm.job.TrainJob), as the plan drives it."""

    device_type: str
    cores: int  # CPU cores a thread count may be measured over (1: not measured)

    def measure(self, config: ModelConfig, batch: int, candidates: dict,
                window: int | None = None, threads: int = 0): ...


@dataclass
class Resolved:
    config: TrainConfig
    sources: dict[str, str]  # field → where its value came from (what was typed or decided)


def mode_of(request: Request) -> str:
    if request.get("resume") is not None and request.get("init_from") is not None:
        raise UserError("--init-from starts a new run from a trained one and --resume continues a "
                        "run: give one of them")
    return "resume" if request.get("resume") is not None else \
        "finetune" if request.get("init_from") is not None else "new"


def refuse_inapplicable(request: Request, mode: str) -> None:
    rules.refuse_inapplicable(request.typed, rules.Situation(
        mode=mode, corpus_given=bool(request.get("inputs")), optim=str(request["optim"]),
        softmax=str(request["softmax"])))


def refuse_more_threads_than_cpus(request: Request) -> None:
    """More threads than the machine has CPUs never help, and far more crash torch (SIGSEGV at
    100,000); a resumed run's own count is capped where it runs (training.loop)."""
    cpus = os.cpu_count() or 1
    if "threads" in request.typed and request["threads"] > cpus:
        raise UserError(f"--threads {request['threads']}: this machine has {cpus} CPUs; give at "
                        f"most {cpus} (0: every core this process may use)")


def refuse_for_run(request: Request, mode: str, device_type: str,
                   has_validation: bool = True, task: str = "lm") -> None:
    """What the data and the device decide: options that need a validation split the data lacks
    (a new run's prepared data, a resumed run's own dataset), or a CPU the run does not
    compute on; a resumed run's task (a fill model takes no language model option)."""
    rules.refuse_inapplicable(request.typed, rules.Situation(
        mode=mode, task=task, corpus_given=mode != "resume" or bool(request.get("inputs")),
        optim=str(request["optim"]), softmax=str(request["softmax"]),
        has_validation=has_validation, device=device_type))


def new_config(request: Request, facts: DataFacts, job: Job) -> Resolved:
    """A new run's config: recipe, typed values, measured choices."""
    refuse_for_run(request, "new", job.device_type, facts.has_validation)
    resolved = _refuse_idle(recipe_config(request, facts, job), request, facts)
    return measured_choices(_note_long_warmup(resolved, request, facts), facts, job)


def _refuse_idle(resolved: Resolved, request: Request, facts: DataFacts) -> Resolved:
    """A typed switch whose effect the final values cancel (--locked-dropout at dropout 0); a
    batch the text cannot fill, before the measurement sizes one."""
    cfg = resolved.config
    require_one_batch(facts.train_tokens, cfg.batch_size, cfg.seq_len)
    if "locked_dropout" in request.typed and cfg.locked_dropout and cfg.dropout == 0:
        raise UserError("--locked-dropout draws the --dropout mask once per sequence, and the "
                        "dropout is 0: give --dropout, or drop --locked-dropout")
    return resolved


def _note_long_warmup(resolved: Resolved, request: Request, facts: DataFacts) -> Resolved:
    """A typed --warmup the budget ends inside: the lr never reaches its peak in this run. Said
    with the setting, not refused: a run trained in parts resumes with a longer budget."""
    cfg = resolved.config
    steps = cfg.total_steps(math.ceil(_steps_per_epoch(cfg, facts.train_tokens)))
    if "warmup" in request.typed and steps is not None and cfg.warmup >= steps:
        resolved.sources["warmup"] = (f"typed; the run's {steps:,} steps end inside it, so the lr "
                                      "reaches its peak only if resumed with a longer budget")
    return resolved


def recipe_config(request: Request, facts: DataFacts, job: Job) -> Resolved:
    """The dataclass defaults, the situation's recipes over them, what was typed over those.
    The passes over the text are counted with the batch the recipes give, then the recipes are
    read again knowing them (a budget of many passes adds its regularisers)."""
    situation, measured = situation_of(request, facts, job)
    typed = {k: v for k, v in request.typed_fields(TrainConfig).items() if k in request.chosen}
    first, _ = rules.recipe(situation, request.chosen)
    passes = passes_in_budget(_config(request, {**first, **typed}), facts.train_tokens,
                              job.device_type)
    situation = replace(situation, epochs_in_budget=passes)
    values, sources = rules.recipe(situation, request.chosen)
    sources.update({k: "typed" for k in typed})
    by_speed = {f"recipe: {name}" for name in rules.by_bf16_speed(situation)}
    for name, source in sources.items():  # a recipe bf16's measured speed chose says it (the
        if measured not in ("", "typed") and source in by_speed:  # fp32 one said nothing)
            sources[name] = f"{source}: {measured}"
    return _recipe_precision(Resolved(_config(request, {**values, **typed}), sources), request)


def _recipe_precision(resolved: Resolved, request: Request) -> Resolved:
    """A recipe's precision is for its own model, the step this machine was measured on: kept
    where the run trains that model, else measured on the run's own like any `auto` (a typed
    shape, a fine-tune's parent)."""
    from charrnn.plan.measured import is_bf16_reference

    if not resolved.sources.get("precision", "").startswith("recipe:") or \
            is_bf16_reference(resolved.config):
        return resolved
    sources = {k: v for k, v in resolved.sources.items() if k != "precision"}
    return Resolved(replace(resolved.config, precision=request["precision"]), sources)


def _steps_per_epoch(cfg: TrainConfig, train_tokens: int) -> float:
    """About how many batches an epoch of the text makes (at least one)."""
    return max(1.0, train_tokens / (cfg.batch_size * cfg.seq_len))


def passes_in_budget(cfg: TrainConfig, train_tokens: int, device: str) -> float | None:
    """Passes over the training text the run's budget allows: the least of --epochs, its steps
    (--max-steps, or the default budget when none is given) and --max-time at the device class's
    rate (rules.TOKENS_PER_S); None where only a time bounds it on a device of unknown rate."""
    per_epoch = _steps_per_epoch(cfg, train_tokens)
    steps = cfg.total_steps(math.ceil(per_epoch))
    bounds = [steps / per_epoch] if steps is not None else []
    rate = rules.TOKENS_PER_S.get(device)
    if cfg.max_time is not None and rate is not None:
        bounds.append(rate * cfg.max_time / max(1, train_tokens))
    return min(bounds) if bounds else None


def situation_of(request: Request, facts: DataFacts, job: Job) -> tuple[rules.Situation, str]:
    """The situation, and how bf16's speed was found (where a recipe depends on it)."""
    measured = ""
    situation = rules.Situation(
        mode="new", level=facts.level, device=job.device_type, optim=str(request["optim"]),
        softmax=str(request["softmax"]), has_validation=facts.has_validation)
    if job.device_type == "cpu" and rules.by_bf16_speed(situation):
        from charrnn.plan.measured import bf16_lead

        # A typed precision picks its own recipe; `auto`, typed or not, this machine's measured one.
        if request["precision"] == "auto":
            lead, measured = bf16_lead(job, facts, int(request["threads"] or 0))
        else:
            lead, measured = (math.inf if request["precision"] == "bf16" else 0.0), "typed"
        situation = replace(situation, cpu_bf16_lead=lead)
    return situation, measured


def _config(request: Request, values: dict[str, object]) -> TrainConfig:
    base = request.fields_of(TrainConfig)
    base["cutoffs"] = list(base.get("cutoffs") or [])
    return TrainConfig(**{**base, **values})


def _shown(value: object) -> str:
    return "none" if value is None else str(value)


def resumed_config(request: Request, saved: LoopConfig, model: dict, run: str) -> Resolved:
    """The run's own config, with the budget typed now; a typed change to anything else would be
    ignored, so it is an error naming what the run has. `model`: the run's model section (a
    language model's softmax and cutoffs are there)."""
    used = {"lr": saved.base_lr, **{k: model.get(k) for k in ("softmax", "cutoffs") if k in model}}
    typed = request.typed_fields(type(saved))
    changed = [f"{flag(k)} {v} (the run has {_shown(used.get(k, getattr(saved, k)))})"
               for k, v in typed.items() if k not in rules.BUDGET
               and used.get(k, getattr(saved, k)) != v and k in request.chosen]
    if changed:
        may = ", ".join(flag(f) for f in rules.BUDGET if f in request.values)
        raise UserError(f"a resumed run keeps its own settings, and {run} differs: "
                        f"{'; '.join(changed)}. Only {may} may change; start a new run for the rest")
    budget = {k: v for k, v in typed.items() if k in rules.BUDGET}
    return Resolved(replace(saved, **budget), {k: "typed" for k in budget})  # type: ignore[arg-type]


def refuse_spent_budget(cfg: LoopConfig, progress, spent: bool, run: str,
                        typed: frozenset[str] | set[str]) -> None:
    """A resumed run counts its whole training against its budget: a budget (or --patience)
    typed now on a run whose budget is spent would stop it at once, having trained nothing, and
    say 'done'. Said with the bound that is spent (a default one too). Nothing typed: 'done'
    stands (the resume a stop printed at its last step, a wrapper run again after the end).
    `typed`: the budget options typed now (a spent bound not among them is the run's own)."""
    if not spent or not typed:
        return
    at = f"(it is at step {progress.step:,})"
    unbounded = cfg.max_steps is None and cfg.max_time is None and cfg.epochs is None
    epochs = cfg.DEFAULT_EPOCHS if unbounded and cfg.DEFAULT_MAX_STEPS is None else cfg.epochs
    if cfg.max_time is not None and progress.elapsed >= cfg.max_time:
        limit, bound = "--max-time", f"{cfg.max_time:g} (it has trained {progress.elapsed:.0f} s)"
    elif cfg.max_steps is not None and progress.step >= cfg.max_steps:
        limit, bound = "--max-steps", f"{cfg.max_steps} {at}"
    elif epochs is not None:
        limit, bound = "--epochs", f"{epochs:g}{' (the default)' if unbounded else ''} {at}"
    else:
        limit, bound = "--max-steps", f"{cfg.DEFAULT_MAX_STEPS} (the default) {at}"
    own = "" if limit[2:].replace("-", "_") in typed else \
        f" (the run's own: a resume keeps it beside the {', '.join(sorted(flag(t) for t in typed))} typed)"
    raise UserError(f"run {run} has spent its budget, {limit} {bound}{own}: a resumed run counts "
                    f"its whole training, so it would stop at once; give a larger {limit} to "
                    "continue")


def finetune_config(request: Request, facts: DataFacts, parent: ModelConfig, parent_level: str,
                    job: Job) -> Resolved:
    """A new run's recipe and optimisation (a lower lr measured worse: bench/finetune.py) with
    the parent's shape, and its regularisers unless typed; precision measured on that shape."""
    facts = replace(facts, level=parent_level)
    refuse_for_run(request, "finetune", job.device_type, facts.has_validation)
    unmeasured = recipe_config(request, facts, job)
    keep = {k: getattr(parent, k) for k in SHAPE}
    keep.update({k: getattr(parent, k) for k in REGULARISERS if k not in request.typed})
    # A typed shape option equal to the parent's in effect (--emb 64 where the parent has emb 0,
    # its hidden size) keeps the parent's spelling: the value is the parent's, not what was typed.
    sources = {**unmeasured.sources,
               **{k: "parent" for k in keep if k not in request.typed or k in SHAPE}}
    cfg = replace(unmeasured.config, **keep)
    require_one_batch(facts.train_tokens, cfg.batch_size, cfg.seq_len)
    return measured_choices(_recipe_precision(Resolved(cfg, sources), request), facts, job)


def refuse_clashes(request: Request, parent: ModelConfig, level: str, name: str) -> None:
    """The shape and tokenizer come from the parent: typed options saying otherwise are errors
    (a typed value equal to the parent's is fine)."""
    clashes = [_clash(k, request[k], _in_effect(parent, k)) for k in SHAPE
               if k in request.chosen and _differs(k, request[k], parent)]
    if "level" in request.typed and request["level"] != level:
        clashes.append(f"--level {request['level']} (it reads {level} tokens)")
    if clashes:
        raise UserError(f"--init-from {name} keeps that model's shape and tokenizer, but "
                        f"{'; '.join(clashes)}: drop {'it' if len(clashes) == 1 else 'them'}, "
                        "or train a new model")
    tokenizer = [flag(k) for k in TOKENIZER if k in request.typed]
    if tokenizer:
        raise UserError(f"{', '.join(tokenizer)} {'does' if len(tokenizer) == 1 else 'do'} not "
                        f"apply with --init-from: the text is read with {name}'s {level} tokenizer")


def _in_effect(config: ModelConfig, key: str):
    return (config.emb or config.hidden) if key == "emb" else getattr(config, key)


def _differs(key: str, typed, config: ModelConfig) -> bool:
    """Whether a typed shape option says otherwise than the parent (emb 0 is the hidden size;
    a typed --softmax auto is no choice: Request.chosen leaves it out)."""
    if key == "cutoffs":
        return bool(typed) and list(typed) != list(config.cutoffs)
    return (typed or config.hidden if key == "emb" else typed) != _in_effect(config, key)


def _clash(key: str, typed, has) -> str:
    if isinstance(typed, bool):
        return f"--{'' if typed else 'no-'}{key.replace('_', '-')} (it has " \
               f"--{'' if has else 'no-'}{key.replace('_', '-')})"
    return f"{flag(key)} {typed} (it has {has})"


def run(request: Request, reporter=None) -> dict:
    """`charrnn train` of a language model: each decision planned, each step run by the library
    (lm.job.TrainJob), which never sees what was typed."""
    from charrnn.lm.job import TrainJob
    from charrnn.runs import runs_root

    mode = mode_of(request)
    refuse_inapplicable(request, mode)
    refuse_more_threads_than_cpus(request)
    inputs, mirror = list(request.get("inputs") or []), request.get("mirror")
    job = TrainJob(runs_root(request.get("out")), mirror)
    if mode == "resume":
        return _resume(request, job, inputs, mirror, reporter)
    if mode == "finetune":
        return _finetune(request, job, inputs, mirror, reporter)
    popts = preprocess_options(request, inputs, mirror)
    job.open_device(str(request["device"]))
    refuse_for_run(request, mode, job.device_type)  # before a corpus is prepared for nothing
    dataset = job.prepare(inputs, popts)
    resolved = new_config(request, job.facts(dataset), job)
    return job.start(dataset, resolved.config, request.get("run_name"), resolved.sources,
                     reporter)


def run_fill(request: Request, reporter=None) -> dict:
    """`charrnn train --task fill`: a new masked fill model (fill.train). Whether the options
    that act on evaluations apply is known once the data is: a split of fewer tokens than one
    window gives none."""
    from charrnn import data
    from charrnn.corpora import resolve_inputs
    from charrnn.devices import resolve_device
    from charrnn.distributed import refuse_torchrun
    from charrnn.fill.config import FillTrainConfig
    from charrnn.fill.train import evaluates, train_fill_job
    from charrnn.runs import runs_root

    refuse_torchrun("--task fill")
    refuse_more_threads_than_cpus(request)
    situation = rules.Situation(task="fill", optim=str(request["optim"]),
                                device=resolve_device(str(request["device"])).type)
    rules.refuse_inapplicable(request.typed, situation)  # before a corpus is prepared for nothing
    inputs, mirror = list(request.get("inputs") or []), request.get("mirror")
    popts = preprocess_options(request, inputs, mirror)
    recipe, sources = rules.recipe(situation, request.typed)
    cfg = FillTrainConfig(**{**request.fields_of(FillTrainConfig), **recipe})
    sources.update({k: "typed" for k in request.typed_fields(FillTrainConfig)})
    dataset = data.prepare(resolve_inputs(inputs, popts, mirror, final=True), popts)
    rules.refuse_inapplicable(request.typed, replace(
        situation, has_validation=evaluates(dataset, cfg.seq_len)))
    return train_fill_job(dataset, cfg, runs_root(request.get("out")), request.get("run_name"),
                          reporter, sources)


def _refuse_other_root(request: Request, run_folder: Path) -> None:
    """--out finds a run by name; a resumed run stays in its folder, so a typed --out that does
    not hold the run named by its path would be ignored (the user may think it a copy)."""
    from charrnn.runs import runs_root

    out = request.get("out")  # (what --out means, `~` and all, is decided by runs_root)
    if "out" in request.typed and out and run_folder.parent.resolve() != runs_root(out).resolve():
        raise UserError(f"--out {out}: run {run_folder} is not in it, and a resumed run stays in "
                        "its own folder; drop --out, or give the run's name with the --out that "
                        "holds it")


def _resume(request: Request, job, inputs: list[str], mirror, reporter) -> dict:
    from charrnn.fill.config import FillTrainConfig

    ckpt, saved = job.open_resumed(str(request["resume"]), request.get("run_name"),
                                   {"lm": TrainConfig, "fill": FillTrainConfig})
    task = "fill" if ckpt.task == "fill" else "lm"
    _refuse_other_root(request, ckpt.run_folder)
    if task == "fill":
        from charrnn.distributed import refuse_torchrun

        refuse_torchrun(f"the fill model {ckpt.run_folder.name}")
    if "task" in request.typed and request["task"] != task:
        raise UserError(f"--task {request['task']}: run {ckpt.run_folder.name} is "
                        f"{'a fill model' if task == 'fill' else 'a language model'}, and a "
                        "resumed run keeps its task; drop --task")
    resolved = resumed_config(request, saved, ckpt.meta.get("model") or {}, ckpt.run_folder.name)
    job.open_device(resolved.config.device)
    val_tokens = (ckpt.meta.get("dataset") or {}).get("val_tokens")
    # (its own dataset's split; a corpus given anew is prepared later, in the job)
    enough = resolved.config.seq_len + 1 if task == "fill" else 2  # a fill model: one window
    refuse_for_run(request, "resume", job.device_type,
                   bool(inputs) or val_tokens is None or val_tokens >= enough, task)
    recorded = (ckpt.meta.get("dataset") or {}).get("options")
    popts = resumed_preprocess_options(request, inputs, mirror, recorded) if inputs else None
    budget_typed = {"max_steps", "max_time", "epochs", "patience"} & request.typed

    def refuse_spent(progress, spent: bool) -> None:
        refuse_spent_budget(resolved.config, progress, spent, ckpt.run_folder.name, budget_typed)

    if task == "fill":
        from charrnn.fill.train import resume_fill_job

        prepare = (lambda: job.prepare(inputs, popts)) if inputs and popts else None
        return resume_fill_job(ckpt, resolved.config, prepare, reporter, refuse_spent)
    return job.resume(ckpt, resolved.config, inputs, popts, reporter, refuse_spent)


def _finetune(request: Request, job, inputs: list[str], mirror, reporter) -> dict:
    from charrnn.lm import finetune

    parent = job.open_parent(str(request["init_from"]))
    level = parent.tokenizer.level
    refuse_clashes(request, parent.config, level, parent.name)
    typed = request.typed  # (at their defaults too: the library refuses other values)
    finetune.refuse_idle_growth(parent.name, level,
                                str(request["unk"]) if "unk" in typed else None,
                                int(request["grow_vocab"]) if "grow_vocab" in typed else None)
    given = finetune.given_tokenizer(parent, str(request["unk"]), int(request["grow_vocab"]))
    popts = replace(preprocess_options(request, inputs, mirror), level=level)
    job.open_device(str(request["device"]))
    refuse_for_run(request, "finetune", job.device_type)
    dataset = job.prepare(inputs, popts, given)
    resolved = finetune_config(request, job.facts(dataset), parent.config, level, job)
    return job.start(dataset, resolved.config, request.get("run_name"), resolved.sources,
                     reporter, parent)
