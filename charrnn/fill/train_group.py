"""`charrnn fill train CORPUS...`: every model `charrnn fill` uses, trained within one budget.

    corpus files ─ head / tail of each (group.split_text) ─ one char dataset, the tails its
    validation split
      1 n-gram        seconds: modified Kneser-Ney, and backward/ (the same text right to left)
      2 forward LM    ┐ each a share (SHARES) of what is left of --max-time when it starts,
      3 backward LM   │ so the whole stays within it; a budget too short for all goes without
      4 fill model    ┘ the fill model first, then the backward LM (GIVE_UP)
      5 mixtures      each LM with the n-gram of its direction, λ tuned on the held-out text (EM)

Every stage is an ordinary run (charrnn.lm.job.TrainJob, charrnn.fill.train, charrnn.ngram);
a new LM as the caller's `plan` makes it for the machine (charrnn.plan.fill for the command line;
as it is for library callers). group.json records where each stands and the time spent, booked
at each training line, so an interrupted or killed group resumes (`--resume GROUP`) within its
budget: a stopped LM or fill model continues from its last/ on its own schedule (cut short where
the group has less time left), a stopped n-gram starts again. The settings below are the ones
measured best on this task (README, "Fill in the blank"), where fp32 is the faster (plan.fill
sizes the LMs where bf16 is).
"""

from __future__ import annotations

import math
import shutil
import time
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from charrnn import data, fsutil, runs
from charrnn.errors import UserError, option
from charrnn.fill import group
from charrnn.fill.config import FillTrainConfig
from charrnn.lm.config import DataFacts, TrainConfig

if TYPE_CHECKING:
    from charrnn.lm.job import TrainJob
    from charrnn.training.reporters import Reporter

MAX_TIME = 1200.0  # seconds for everything, when none is given
HELDOUT = 0.02  # the tail of each file kept out of training (validation, `fill eval`)
NGRAM_ORDER = 5
SHARES = {"fwd": 0.45, "bwd": 0.45, "mask": 0.1}  # of the time left after the n-gram
GIVE_UP = ("mask", "bwd", "fwd")  # which stage a budget too short for all goes without first
MIN_STAGE_S = 20.0  # a stage given less is skipped (said so)
RESERVE_S = 15.0  # for the last evaluation and save of a stage, and the mixtures at the end
NGRAM_S = 10.0  # what the n-gram of a corpus of a few MB takes, about


def _least_time(share: float) -> int:
    """The --max-time (in tens of seconds) at which a stage of this share gets MIN_STAGE_S."""
    needed = NGRAM_S + RESERVE_S * len(SHARES) + MIN_STAGE_S * sum(SHARES.values()) / share
    return math.ceil(needed / 10) * 10


MIN_TIME = _least_time(SHARES["fwd"])  # the first network gets MIN_STAGE_S (100 s)
FULL_TIME = _least_time(min(SHARES.values()))  # ... and every stage, the fill model's tenth (260 s)
MIX_TOKENS = 20_000  # held-out tokens the mixture weights are tuned on
LM = TrainConfig(cell="lstm", layers=1, hidden=256, dropout=0.1, batch_size=128, seq_len=32,
                 lr=1e-2, warmup=30, eval_every=10**9, eval_tokens=20_000, patience=3)
# An LM evaluates LM_EVALS times in its budget (each ~0.5 s) and stops after `patience` without a
# better val: on a small corpus it overfits within a tenth of its budget (100 KB of reviews, 101 s:
# the best val at step 100 of 436, worse at every evaluation after), and the stages after it get
# the time it leaves; on 2 MB the val improved to the end.
LM_EVALS, MIN_EVAL_S = 10, 10.0
FILL = FillTrainConfig(cell="lstm", layers=1, hidden=256, dropout=0.1, batch_size=64,
                       seq_len=64, lr=1e-2, warmup=30, eval_every=10**9)

Reporters = Callable[[dict, dict], object]  # (group info, stage) → a training Reporter
# (the group's LM config, the data's facts, the job that measures) → (the config to train, where
# its values came from)
PlanLM = Callable[[TrainConfig, DataFacts, "TrainJob"], tuple[TrainConfig, dict[str, str]]]


def as_given(cfg: TrainConfig, facts: DataFacts, job: TrainJob
             ) -> tuple[TrainConfig, dict[str, str]]:
    """The library's LM stage: the group's LM as it is (`auto` precision: float32 on a CPU)."""
    return cfg, {}


def train_lm(inputs: list[str], popts: data.PreprocessOptions, cfg: TrainConfig, root: Path,
             run_name: str, reporter: Reporter, plan: PlanLM = as_given) -> dict:
    """A new LM stage of `fill train`: a run of what `plan` makes of `cfg` on this machine and
    data (charrnn.plan.fill for the command line)."""
    from charrnn.lm.job import TrainJob

    began = time.time()
    job = TrainJob(root)
    job.open_device(cfg.device)
    dataset = job.prepare(inputs, popts)
    planned, sources = plan(cfg, job.facts(dataset), job)
    if cfg.max_time is not None:  # the stage's budget pays for its measurements (cold: seconds)
        planned = replace(planned, max_time=max(1.0, cfg.max_time - (time.time() - began)))
    return job.start(dataset, planned, run_name, sources, reporter)


def start(inputs: list[str], max_time: float, root: Path, name: str | None,
          mirror: str | None = None) -> Path:
    """A new group: the corpus split into train/ and heldout/ text, the stages planned."""
    from charrnn.corpora import resolve_inputs
    from charrnn.inputs import expand_inputs, read_text

    if not inputs:
        raise UserError("give the corpus: one or more text files (or a registry name, e.g. "
                        "zh-reviews)")
    if not (max_time > 0 and math.isfinite(max_time)):  # (inf would be stored, then refused)
        raise UserError(f"{option('max_time')} must be a positive number of seconds, got {max_time}")
    if max_time < MIN_TIME:
        raise UserError(f"{option('max_time')} {max_time:g} is too short for the group: below "
                        f"{MIN_TIME:.0f} s "
                        f"its first network's share is under {MIN_STAGE_S:.0f} s (the fill "
                        f"model's, a tenth, reaches it from about {FULL_TIME:.0f} s); give more, or "
                        "train single models with charrnn train")
    files = expand_inputs(resolve_inputs(inputs, data.PreprocessOptions(), mirror))
    splits = _check_texts([(path, read_text([str(path)])) for path in files])
    folder = group.create(root, name)  # (claims the name: an empty folder)
    with fsutil.atomic_dir(folder) as tmp:  # the texts and group.json arrive together
        for sub in ("train", "heldout"):
            (tmp / sub).mkdir()
        for index, (path, head, tail) in enumerate(splits):
            target = f"{index + 1:02d}_{path.stem}.txt"  # two inputs may share a name
            (tmp / "train" / target).write_text(head, encoding="utf-8")
            (tmp / "heldout" / target).write_text(tail, encoding="utf-8")
        stages = [{"role": role, "run": f"{folder.name}-{role}", "state": "pending"}
                  for role in group.ROLES]
        group.write(tmp, {"format": group.FORMAT, "version": group.VERSION,
                          "created": time.time(), "inputs": [str(p) for p in files],
                          "max_time": max_time, "spent_s": 0.0, "stages": stages, "mix": {}})
    return folder


def _check_texts(texts: list[tuple[Path, str]]) -> list[tuple[Path, str, str]]:
    """Each file's (path, training head, held-out tail); refused, before the group exists, when
    a stage would fail on it half-way."""
    blank = [path for path, text in texts if not text.strip()]
    texts = [(path, text) for path, text in texts if text.strip()]  # (as preprocess: nothing
    if not texts:  # to learn from an empty file in a folder, and nothing to hold out of it)
        raise UserError(f"{blank[0]}: the file has no text (empty or whitespace only): give text "
                        "to learn from")
    from charrnn.lm.batching import TBPTTStream

    splits = [(path, *group.split_text(text, HELDOUT)) for path, text in texts]
    need = TBPTTStream.min_tokens(LM.batch_size, LM.seq_len)  # characters: the LMs' tokens
    have = sum(len(head) for _, head, _ in splits)
    if have < need:
        raise UserError(f"the corpus has {have:,} characters to train on, fewer than one batch "
                        f"of the group's LMs ({need:,}): give more text")
    return splits


def popts_of(folder: Path) -> tuple[list[str], data.PreprocessOptions]:
    """The group's training files and preprocess options (the held-out tails: validation)."""
    train = sorted(str(p) for p in (folder / "train").glob("*.txt"))
    heldout = sorted(str(p) for p in (folder / "heldout").glob("*.txt"))
    return train, data.PreprocessOptions(valid=heldout, test_frac=0.0)


def run(folder: Path, reporters: Reporters, say: Callable[[str], None],
        device: str = "auto", plan: PlanLM = as_given) -> dict:
    """Train the group's stages that are not done, within what is left of its budget; each new
    LM as `plan` makes it for this machine. One process at a time (a second one would train the
    same stages beside it, and the last to write group.json would win)."""
    from charrnn import runlock

    with runlock.writer(folder, "fill group"):
        return _run_stages(folder, reporters, say, device, plan)


def _run_stages(folder: Path, reporters: Reporters, say: Callable[[str], None], device: str,
                plan: PlanLM) -> dict:
    info = group.read(folder)
    deadline = time.time() + max(0.0, info["max_time"] - info["spent_s"])
    inputs, popts = popts_of(folder)
    for stage in info["stages"]:
        if stage["state"] == "done":
            continue
        _continue_or_restart(folder.parent, stage)
        budget = _budget(info, stage, deadline)
        if stage["role"] != "ngram" and budget < MIN_STAGE_S:
            say(f"{group.ROLES[stage['role']]}: skipped, its share of the budget left "
                f"({int(budget)} s) is under {MIN_STAGE_S:.0f} s")
            stage["state"] = "skipped"
            group.write(folder, info)  # (as said: a stop after this line keeps it so)
            continue
        _name_run(folder.parent, stage)
        if stage["continued"]:
            stage["left_s"] = round(_left_in_group(stage, deadline), 1)
        stage.update(state="running", budget_s=round(budget, 1), started=time.time())
        outcome, seconds = _train_stage(folder, info, stage, reporters, partial(
            _run_stage, folder, stage, inputs, popts, device=device, plan=plan))
        if stage["role"] == "ngram" and outcome != "interrupted":
            say(f"n-gram: order {NGRAM_ORDER}, both ways, in {seconds:.0f} s")
        if outcome == "interrupted":
            return {"outcome": "interrupted", "group": str(folder), "left": group.left_to_do(folder, info)}
    began = time.time()
    try:
        info["mix"], info["mixed"] = mixture_weights(folder, device), True
    except (KeyboardInterrupt, SystemExit):  # Ctrl-C, SIGTERM: said as a stage's stop is
        return {"outcome": "interrupted", "group": str(folder), "left": ["mixture weights"]}
    finally:
        info["spent_s"] += time.time() - began  # (the budget's reserve pays for them: booked)
        group.write(folder, info)
    return {"outcome": "done", "group": str(folder), "left": group.left_to_do(folder, info),
            "skipped": group.skipped(info), "spent_s": round(info["spent_s"], 1),
            "mix": info["mix"]}


def _train_stage(folder: Path, info: dict, stage: dict, reporters: Reporters,
                 run: Callable[[Reporter], str]) -> tuple[str, float]:
    """One stage run with its reporter, its outcome and seconds. The stage's state is set before
    its reporter closes, so that a live view's last frame shows it stopped or done."""
    clock = StageClock(folder, info, stage)
    clock.book()
    reporter = BookingReporter(reporters(info, stage), clock)
    try:
        try:
            outcome = run(reporter)
        except KeyboardInterrupt:  # outside a training loop (the n-gram, preprocessing)
            outcome = "interrupted"
        stage["state"] = "done" if outcome != "interrupted" else "stopped"
        clock.book()
        return outcome, clock.seconds()
    finally:
        reporter.inner.close()


class StageClock:
    """The group's record of time spent, kept current while a stage runs: at its start, at each
    training line of its reporter, at its end. A group killed mid-stage (SIGKILL, power) thus
    resumes with at most one line's seconds missing from what it spent."""

    def __init__(self, folder: Path, info: dict, stage: dict) -> None:
        self.folder, self.info, self.stage = folder, info, stage
        self.began = time.time()
        self.spent, self.used = info["spent_s"], stage.get("used_s", 0.0)

    def seconds(self) -> float:
        return time.time() - self.began

    def book(self) -> None:
        self.info["spent_s"] = self.spent + self.seconds()
        self.stage["used_s"] = round(self.used + self.seconds(), 1)
        group.write(self.folder, self.info)


class BookingReporter:
    """A stage's training reporter that books the group's time at its start, at each training
    and evaluation line and each message (a group killed before the first training line had
    not booked its start-up: repeated kills spent time the budget never saw)."""

    def __init__(self, inner: Reporter, clock: StageClock) -> None:
        self.inner, self.clock = inner, clock
        # what a stopped stage says to continue with (training.reporters.resume_command)
        self.resume_command = (f"charrnn fill train --resume {clock.folder.name}"
                               f"{runs.out_suffix(clock.folder)}")

    @property
    def reader_gone(self) -> bool:  # what the loop asks of a plain reporter (charrnn.pipes)
        return bool(getattr(self.inner, "reader_gone", False))

    def start(self, preview: Callable[[], str] | None) -> None:
        self.inner.start(preview)
        self.clock.book()  # (preparing the data and measuring the machine, before the loop)

    def train(self, rec: dict) -> None:
        self.inner.train(rec)
        self.clock.book()

    def eval(self, rec: dict) -> None:
        self.inner.eval(rec)
        self.clock.book()

    def message(self, text: str) -> None:
        self.inner.message(text)
        self.clock.book()

    def close(self) -> None:
        """The loop's close at the stage's end: the group closes the view once the stage's state
        is set (_train_stage)."""


def _budget(info: dict, stage: dict, deadline: float) -> float:
    """A stage's seconds: its share of what is left among the stages still to train (an LM that
    continues keeps its budget, on its own schedule). Where the time left cannot give each of
    them MIN_STAGE_S, the least useful give their shares up first (GIVE_UP: the fill model,
    then the backward LM), so a short budget trains the LMs rather than skipping one of them for
    a fill model that gets twice its share (the stage being planned is thus given up only when
    it is the last one left)."""
    if stage["role"] == "ngram":
        return 0.0
    if stage["state"] in ("running", "stopped") and stage.get("budget_s"):
        return stage["budget_s"]
    left = [s["role"] for s in info["stages"]  # a skipped stage's share goes to the others
            if (s is stage or s["state"] not in ("done", "skipped")) and s["role"] in SHARES]
    kept = {s["role"] for s in info["stages"]  # a stopped network continues on its own budget
            if s is not stage and s["state"] in ("running", "stopped") and s.get("budget_s")}
    seconds = deadline - time.time()
    while True:
        total, spare = sum(SHARES[r] for r in left), seconds - RESERVE_S * len(left)
        sharing = [r for r in left if r not in kept]
        if len(sharing) == 1 or spare * min(SHARES[r] for r in sharing) / total >= MIN_STAGE_S:
            break
        left.remove(next(r for r in GIVE_UP if r in sharing))
    if stage["role"] not in left:
        return 0.0
    return max(0.0, spare * SHARES[stage["role"]] / total)


def _left_in_group(stage: dict, deadline: float) -> float:
    """A continuing network's seconds: what its own schedule has left as of its last save, but
    no more than the group has left less its reserve (the time it trained after that save was
    booked, and is trained again: a group stopped late in its last stage overran its --max-time
    by as much). The stages after it share what it leaves, as when it first ran."""
    return max(0.0, min(group.own_left(stage), deadline - time.time() - RESERVE_S))


def _max_time(root: Path, stage: dict) -> float | None:
    """The --max-time a continuing network resumes with: its own, or less where the group has
    less time left for it than its schedule (`left_s`); None: its own."""
    saved = group.schedule(root, stage)
    if saved is None or stage.get("left_s") is None:
        return None
    max_time, elapsed = saved
    capped = elapsed + stage["left_s"]
    return max_time if capped + group.ROUNDED_S >= max_time else capped


def _run_stage(folder: Path, stage: dict, inputs: list[str], popts, reporter,
               device: str, plan: PlanLM) -> str:
    root, role = folder.parent, stage["role"]
    if role == "ngram":
        build_ngrams(inputs, popts, root, stage)
        return "done"
    resumable = bool(stage.get("continued"))  # decided by _continue_or_restart
    if role == "mask":
        return _train_mask(inputs, popts, root, stage, resumable, reporter, device)
    if resumable:
        from charrnn.lm.job import train_job

        return train_job(inputs, popts, None, root, resume=stage["run"], reporter=reporter,
                         overrides={"max_time": _max_time(root, stage), "device": device}
                         )["outcome"]
    cfg = replace(LM, max_time=stage["budget_s"], device=device,
                  direction="backward" if role == "bwd" else "forward",
                  eval_seconds=max(MIN_EVAL_S, stage["budget_s"] / LM_EVALS))
    return train_lm(inputs, popts, cfg, root, stage["run"], reporter, plan)["outcome"]


def _train_mask(inputs: list[str], popts, root: Path, stage: dict, resumable: bool, reporter,
                device: str) -> str:
    """The fill model stage: a new run, or its stopped run continued on its own schedule."""
    from charrnn.fill.train import resume_fill_job, train_fill_job

    if resumable:
        from charrnn import checkpoint

        ckpt = checkpoint.resolve(stage["run"], root, prefer="last")
        saved = ckpt.config(FillTrainConfig, "train")
        max_time = _max_time(root, stage)
        max_time = saved.max_time if max_time is None else max_time
        return resume_fill_job(ckpt, replace(saved, device=device, max_time=max_time),
                               lambda: data.prepare(inputs, popts), reporter)["outcome"]
    cfg = replace(FILL, max_time=stage["budget_s"], device=device,
                  eval_seconds=max(30.0, stage["budget_s"] / 3))
    return train_fill_job(data.prepare(inputs, popts), cfg, root, stage["run"],
                          reporter=reporter)["outcome"]


def _continue_or_restart(root: Path, stage: dict) -> None:
    """A stage that ran before: a network with a last/ continues, and its time used becomes what its
    own schedule has used (as of its last save, where a run killed outright resumes); any other
    starts anew, with a new share of the time left and a new clock."""
    stage["continued"] = stage["state"] in ("running", "stopped") and group.continues(root, stage)
    if stage["continued"]:
        left = group.seconds_left(root, stage)
        if left is not None and stage.get("budget_s"):
            stage["used_s"] = round(stage["budget_s"] - left, 1)
    elif stage["state"] in ("running", "stopped"):
        stage.update(used_s=0.0, budget_s=None)
    if not stage["continued"]:
        stage.pop("left_s", None)


def _name_run(root: Path, stage: dict) -> None:
    """A stage's run that exists and cannot be continued is trained again, anew: in its own
    folder when that holds no model (a start stopped before its first save; the group's lock
    keeps any other process out of it), else under the next free name."""
    run = root / stage["run"]
    if group.continues(root, stage) or not run.exists():
        return
    if run.is_dir() and not runs.has_output(run):
        shutil.rmtree(run)  # (run.json and the metrics of a start that saved nothing)
    else:
        stage["run"] = _next_name(root, stage["run"])


def _next_name(root: Path, name: str) -> str:
    base, n = name, 2
    while (root / f"{base}-{n}").exists():
        n += 1
    return f"{base}-{n}"


def build_ngrams(inputs: list[str], popts, root: Path, stage: dict) -> None:
    """The n-gram run, and in its backward/ the same counts of the text read right to left."""
    from charrnn.ngram.build import build_model, train_run

    dataset = data.prepare(inputs, popts)
    prune = [0] * NGRAM_ORDER
    # Counted first: a stop while counting leaves no run folder (one without its backward/
    # would be listed as a finished n-gram, and the stage trained again beside it).
    reversed_ids = np.ascontiguousarray(np.asarray(dataset.ids("train"))[::-1])
    backward = build_model(reversed_ids, dataset.tokenizer, NGRAM_ORDER, False, prune, True,
                           {"dataset": {"id": dataset.id, "level": dataset.tokenizer.level},
                            "direction": "backward"})
    folder, _model = train_run(dataset, NGRAM_ORDER, False, prune, True, root, stage["run"])
    try:
        backward.save(folder / "backward")
    except BaseException:  # a stop (or a full disk) between the two saves: no forward run is
        shutil.rmtree(folder, ignore_errors=True)  # left looking finished without its backward/
        raise


def mixture_weights(folder: Path, device: str) -> dict:
    """λ (the RNN's share) of each LM with the n-gram of its direction, tuned by EM on the
    held-out text: {"fwd": λ, "bwd": λ} for the LMs the group has."""
    from charrnn import checkpoint
    from charrnn.devices import resolve_device
    from charrnn.evaluation.mix import tune_weight
    from charrnn.lm.model import load_lm
    from charrnn.lm.scoring import token_nll
    from charrnn.ngram.model import load as load_ngram

    runs = dict(group.members(folder))
    if "ngram" not in runs:
        return {}
    dev = resolve_device(device)
    weights = {}
    for role, sub in (("fwd", "model"), ("bwd", "backward")):
        if role not in runs:
            continue
        ckpt = checkpoint.resolve(str(runs[role]), folder.parent)
        dataset = data.find_dataset(ckpt.meta["dataset"]["id"])
        if dataset is None:  # the cache was cleared: the group's own text makes it again
            dataset = data.prepare(*popts_of(folder))
        ids = np.asarray(dataset.ids("val"))[:MIX_TOKENS]
        ids = ids[::-1].copy() if role == "bwd" else ids
        rnn = -token_nll(load_lm(ckpt, dev), ids, dev)
        ngram = load_ngram(runs["ngram"] / sub).logp_after_first(ids)
        weights[role] = round(tune_weight(rnn, ngram), 4)
    return weights
