"""The training loop every task shares (charrnn.training): each option means the same for every
task, an option that does not apply is refused, rollbacks stay rollbacks, figures count training."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from charrnn.data import PreprocessOptions, prepare
from charrnn.lm.config import TrainConfig
from charrnn.lm.train import Trainer
from charrnn.training.loop import Loop
from helpers import TINY, run_cli

FILL = ["--task", "fill", "--hidden", "16", "--layers", "1", "--batch-size", "4", "--seq-len", "16",
        "--plain", "--warmup", "2", "--eval-every", "10"]


def _records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def _param_groups(run: Path) -> list[dict]:
    return json.loads((run / "last/checkpoint.json").read_text())["optimizer"]["param_groups"]


def test_fill_with_optim_sgd_trains_with_plain_sgd(small_text: Path, tmp_path: Path) -> None:
    run_cli("train", small_text, *FILL, "--optim", "sgd", "--max-steps", "4", "--run-name", "f")
    groups = _param_groups(tmp_path / "runs/f")
    assert all("momentum" in g and g["momentum"] == 0 and "betas" not in g for g in groups)
    assert max(r["lr"] for r in _records(tmp_path / "runs/f", "train")) <= 1.0  # sgd's default


def test_sgd_momentum_is_asked_for_not_assumed(small_text: Path, tmp_path: Path) -> None:
    run_cli("train", small_text, *TINY, "--optim", "sgd", "--max-steps", "4", "--run-name", "p")
    run_cli("train", small_text, *TINY, "--optim", "sgd", "--momentum", "0.9", "--max-steps", "4",
            "--run-name", "m")
    assert {g["momentum"] for g in _param_groups(tmp_path / "runs/p")} == {0}
    assert {g["momentum"] for g in _param_groups(tmp_path / "runs/m")} == {0.9}
    refused = run_cli("train", small_text, *TINY, "--momentum", "0.9", ok=False)
    assert refused.exit_code == 2 and "--momentum applies to --optim sgd and rmsprop" in refused.output


@pytest.mark.parametrize("task", [[], FILL])
def test_grad_clip_zero_means_no_clipping(small_text: Path, monkeypatch, task) -> None:
    calls = []
    real = torch.nn.utils.clip_grad_norm_
    monkeypatch.setattr(torch.nn.utils, "clip_grad_norm_",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    base = TINY if not task else []
    run_cli("train", small_text, *base, *task, "--max-steps", "3", "--grad-clip", "0")
    assert calls == []
    run_cli("train", small_text, *base, *task, "--max-steps", "3")
    assert len(calls) == 3


@pytest.mark.parametrize("option", [["--tie-weights"], ["--no-tie-weights"], ["--weight-drop", "0.2"],
                                    ["--locked-dropout"], ["--embed-drop", "0.1"],
                                    ["--direction", "backward"], ["--eval-tokens", "100"]])
def test_lm_only_options_are_refused_for_fill(small_text: Path, tmp_path: Path, option) -> None:
    result = run_cli("train", small_text, *FILL, *option, "--run-name", "x", ok=False)
    name = option[0].replace("--no-", "--")
    assert result.exit_code == 2 and f"{name} does not apply to --task fill" in result.output
    assert not (tmp_path / "runs/x").exists()


def test_fill_honours_log_every_min_lr_ratio_and_patience(small_text: Path, tmp_path: Path) -> None:
    run_cli("train", small_text, *FILL, "--max-steps", "21", "--log-every", "7", "--min-lr-ratio",
            "1", "--eval-every", "1000", "--run-name", "a")
    train = _records(tmp_path / "runs/a", "train")
    assert [r["step"] for r in train] == [7, 14, 21]
    assert {round(r["lr"], 9) for r in train} == {round(train[0]["lr"], 9)}  # a flat floor
    run_cli("train", small_text, *FILL, "--max-steps", "2000", "--eval-every", "2", "--patience",
            "1", "--optim", "sgd", "--lr", "5", "--run-name", "p")
    assert _records(tmp_path / "runs/p", "eval")[-1]["step"] < 2000


def _trainer(small_text: Path, tmp_path: Path, **cfg) -> Trainer:
    ds = prepare([str(small_text)], PreprocessOptions())
    base = {"hidden": 16, "layers": 1, "batch_size": 4, "seq_len": 16, "warmup": 1, "log_every": 5}
    return Trainer(ds, TrainConfig(**{**base, **cfg}), tmp_path)


def test_two_non_finite_windows_in_a_row_both_roll_back(small_text, tmp_path, monkeypatch) -> None:
    """After a rollback the optimizer must not share tensors with the snapshot: RMSprop's moments,
    poisoned in place by the second bad window, would otherwise be "restored" poisoned, and the
    run would die although halving the learning rate fixes it."""
    trainer = _trainer(small_text, tmp_path, optim="rmsprop", max_steps=30, eval_every=10)
    real_step, calls = Loop.step, {"n": 0}

    def poisoned(self):
        calls["n"] += 1
        if calls["n"] in (7, 12):  # a bad gradient in two windows one after the other
            for p in self.task.model.parameters():
                p.register_hook(lambda g: g * float("nan")) if p.requires_grad else None
            loss = real_step(self)
            for p in self.task.model.parameters():
                p._backward_hooks.clear() if p._backward_hooks else None
            return loss
        return real_step(self)

    monkeypatch.setattr(Loop, "step", poisoned)
    messages = []
    trainer.reporter.message = messages.append
    result = trainer.run()
    assert result["outcome"] == "finished" and result["step"] == 30
    assert sum("rolled back" in m for m in messages) == 2
    assert trainer.progress.lr_scale == 0.25
    for state in trainer.loop.optimizer.state.values():
        assert all(torch.isfinite(v).all() for v in state.values() if torch.is_tensor(v))


def test_tokens_per_second_counts_training_time_only(small_text, tmp_path, monkeypatch) -> None:
    """An evaluation that takes long must not show up in the next window's tokens/s. The loop's
    clock is one that moves only when read (1 ms) or evaluated on (1,000 s), so the figures do
    not depend on how busy the machine is."""
    clock = _Clock()
    monkeypatch.setattr("charrnn.training.loop.time", clock)
    monkeypatch.setattr("charrnn.training.task.time", clock)
    trainer = _trainer(small_text, tmp_path, max_steps=20, log_every=10, eval_every=10)
    real_eval = trainer.task.evaluate
    monkeypatch.setattr(trainer.task, "evaluate", lambda: clock.wait(1000.0) or real_eval())
    trainer.run()
    first, second = (r["tokens_per_s"] for r in _records(tmp_path, "train"))
    assert second == pytest.approx(first, rel=0.5)  # with the evaluation counted: 1/1,000 of it


class _Clock:
    """A stand-in for the time module whose time() moves 1 ms per read."""

    def __init__(self) -> None:
        self.now = 1.8e9

    def time(self) -> float:
        self.now += 0.001
        return self.now

    def wait(self, seconds: float) -> None:
        self.now += seconds


def test_checkpoint_writes_wait_when_they_would_take_over_the_run(small_text, tmp_path) -> None:
    """A save that took long delays the next one (never more than a tenth of the time writing);
    the best weights wait in memory and are written at the end."""
    trainer = _trainer(small_text, tmp_path, max_steps=30, log_every=5, eval_every=5)
    trainer.loop.saves.record(3600.0)  # as if the last write had taken an hour
    writes = []
    real_write = trainer.loop.write
    trainer.loop.write = lambda name, *a, **k: writes.append(name) or real_write(name, *a, **k)
    result = trainer.run()
    assert writes == ["last", "best"]  # once, at the end: not at the five evaluations before
    best = json.loads((tmp_path / "best/checkpoint.json").read_text())
    assert best["metrics"]["val_loss"] == pytest.approx(result["best_val"])


def test_rprop_trains_resumes_exactly_and_refuses_what_it_ignores(small_text: Path,
                                                                  tmp_path: Path) -> None:
    at = TINY.index("--warmup")  # rprop takes no schedule: typed, it is refused (below)
    args = [small_text, *TINY[:at], *TINY[at + 2 :], "--optim", "rprop", "--log-every", "1",
            "--precision", "fp32", "--batch-size", "8"]
    run_cli("train", *args, "--max-steps", "24", "--run-name", "whole")
    run_cli("train", *args, "--max-steps", "10", "--run-name", "cut")
    run_cli("train", "--resume", "cut", "--max-steps", "24", "--plain")
    whole = {r["step"]: r["loss"] for r in _records(tmp_path / "runs/whole", "train")}
    cut = {r["step"]: r["loss"] for r in _records(tmp_path / "runs/cut", "train")}
    assert whole[24] < whole[1] - 0.2  # it learns
    assert all(cut[s] == pytest.approx(whole[s], rel=1e-6) for s in range(11, 25))
    groups = _param_groups(tmp_path / "runs/whole")
    assert {g["weight_decay"] for g in groups} == {0.0} and all("etas" in g for g in groups)
    for option in ("--weight-decay", "--grad-clip", "--warmup", "--min-lr-ratio"):
        refused = run_cli("train", *args, option, "1" if option == "--warmup" else "0.1", ok=False)
        assert refused.exit_code == 2 and f"{option} does not apply to --optim rprop" in \
            refused.output
    fill = [a for i, a in enumerate(FILL) if "--warmup" not in FILL[max(0, i - 1) : i + 1]]
    run_cli("train", small_text, *fill, "--optim", "rprop", "--max-steps", "3", "--run-name", "f")
    assert {g["weight_decay"] for g in _param_groups(tmp_path / "runs/f")} == {0.0}


def test_a_backward_lm_with_eval_tokens_validates_on_the_same_text_as_a_forward_one() -> None:
    import numpy as np

    from charrnn.lm.model import RNNLM
    from charrnn.lm.train import LMTask

    class Split:  # the two splits LMTask reads; val: ids 0..399, each once
        def ids(self, name: str) -> np.ndarray:
            return np.arange(400, dtype=np.int32) if name == "val" else np.zeros(2000, np.int32)

    cpu = torch.device("cpu")
    val = {}
    for direction in ("forward", "backward"):
        cfg = TrainConfig(direction=direction, eval_tokens=99, batch_size=2, seq_len=8, hidden=8)
        model = RNNLM(cfg.model_config(400, "full", []))
        task = LMTask(Split(), cfg, model, model, cpu, type("Dist", (), {"rank": 0, "world": 1})())
        val[direction] = np.asarray(task.val_ids)
    assert sorted(val["forward"].tolist()) == sorted(val["backward"].tolist())
    assert val["backward"].tolist() == val["forward"][::-1].tolist()


def test_a_library_rprop_config_takes_no_schedule_decay_or_clipping() -> None:
    """TrainConfig(optim="rprop") kept the defaults' warm-up (its first steps 1/100 of the lr),
    weight decay and clipping, which the plan's recipe removes; one asked for is refused."""
    from charrnn.errors import UserError
    from charrnn.lm.config import TrainConfig
    from charrnn.tag.config import TagTrainConfig

    for config in (TrainConfig(optim="rprop"), TagTrainConfig(optim="rprop")):
        assert (config.warmup, config.weight_decay, config.grad_clip, config.min_lr_ratio) == \
            (0, 0.0, 0.0, 1.0)
    assert TrainConfig(optim="rprop", warmup=0).warmup == 0
    with pytest.raises(UserError, match="^warmup 50 does not apply to optim rprop"):
        TrainConfig(optim="rprop", warmup=50)


def test_a_step_budget_beyond_any_machine_is_refused_as_a_typo(small_text: Path) -> None:
    """99999999999999999999 steps were taken, with an eta of 2116930815908643h50m."""
    result = run_cli("train", small_text, "--max-steps", "99999999999999999999", ok=False)
    assert result.exit_code == 2 and "--max-steps must be at most 1e+12" in result.output


def test_a_stack_deeper_than_any_trained_is_refused_as_a_typo(small_text: Path) -> None:
    """--layers 100000 passed the memory check, then built for minutes with no output."""
    result = run_cli("train", small_text, "--layers", "100000", ok=False)
    assert result.exit_code == 2 and "--layers must be at most 1000" in result.output


def test_a_stop_signalled_while_the_ranks_agree_is_acted_on_not_lost(small_text, tmp_path) -> None:
    """Under torchrun a Ctrl-C that landed during the collective that agrees on a stop was
    overwritten by the agreed 'no': the run said 'stopping: saving last/' and trained on."""
    from charrnn import runs
    from charrnn.data import PreprocessOptions, prepare
    from charrnn.distributed import Dist
    from charrnn.lm.config import TrainConfig
    from charrnn.lm.train import Trainer

    class OneRankAgreeing(Dist):
        """A torchrun of one, its collectives identities; a signal lands in the first one."""

        def __init__(self, loop) -> None:
            super().__init__()
            self.enabled, self.loop, self.calls = True, loop, 0

        def agree(self, seconds: float, flag: bool) -> tuple[float, bool]:
            self.calls += 1
            if self.calls == 1:
                self.loop.stop.requested = True  # during the all-reduce: after `flag` was read
            return seconds, flag

        def mean(self, value):
            return value

        def broadcast(self, obj):
            return obj

        def gather(self, obj):
            return [obj]

    ds = prepare([str(small_text)], PreprocessOptions())
    cfg = TrainConfig(hidden=16, layers=1, batch_size=4, seq_len=16, max_steps=300, log_every=50,
                      eval_every=300)
    trainer = Trainer(ds, cfg, runs.new_run_dir(tmp_path / "runs", "r", "lm"))
    trainer.loop.dist = OneRankAgreeing(trainer.loop)
    result = trainer.run()
    assert result["outcome"] == "interrupted" and result["step"] < 300


def test_a_weight_decay_that_would_flip_the_weights_each_step_is_refused() -> None:
    """AdamW scales the weights by 1 − lr·decay each step: --weight-decay 1e308 trained to NaN,
    and the message after five roll-backs blamed the lr."""
    from charrnn.errors import UserError

    with pytest.raises(UserError, match=r"weight_decay 300 at lr 0\.004 scales the weights"):
        TrainConfig(weight_decay=300)
    with pytest.raises(UserError, match="below 1 \\(1/lr"):
        TrainConfig(optim="sgd", weight_decay=1.0)  # sgd's default lr is 1
    assert TrainConfig(weight_decay=249).weight_decay == 249
    assert TrainConfig(optim="adam", weight_decay=300).weight_decay == 300  # (an L2 term, scaled
    # by Adam's own normalisation: no such bound)


def test_a_run_that_its_time_ends_before_its_steps_says_so() -> None:
    """A resumed tagger with --max-steps 5 typed stopped at step 3, its own --max-time spent,
    and said only 'done at step 3'."""
    from types import SimpleNamespace

    from charrnn.training.schedule import Schedule

    loop = Loop.__new__(Loop)
    loop.schedule = Schedule(1e-3, 0, 0.1, total_steps=100, max_time=5.0)
    loop.progress = SimpleNamespace(step=40)
    assert loop._why_ended("finished") == " (its max_time of 5 s ran out before its 100 steps)"
    assert loop._why_ended("interrupted") == ""
    loop.progress.step = 100  # the steps ended it
    assert loop._why_ended("finished") == ""
    loop.schedule = Schedule(1e-3, 0, 0.1, total_steps=None, max_time=5.0)  # time alone
    assert loop._why_ended("finished") == ""
