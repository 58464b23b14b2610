"""train: run folders, metrics, checkpoints, schedule, NaN rollback, early stop, exact resume."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from charrnn.data import PreprocessOptions, prepare
from charrnn.lm.config import TrainConfig
from charrnn.lm.train import Trainer
from charrnn.training.loop import Loop
from helpers import TINY, run_cli


def _records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


def test_train_writes_run_folder_with_best_last_and_metrics(small_text: Path, tmp_path: Path) -> None:
    result = run_cli("train", small_text, *TINY, "--max-steps", "20", "--run-name", "r1")
    run = tmp_path / "runs" / "r1"
    assert "done at step 20" in result.output
    for name in ("best", "last"):
        meta = json.loads((run / name / "checkpoint.json").read_text())
        assert meta["format"] == "charrnn-checkpoint" and meta["tokenizer"]["level"] == "char"
        assert (run / name / "model.safetensors").is_file()
    assert [r["step"] for r in _records(run, "train")] == [5, 10, 15, 20]
    evals = _records(run, "eval")
    assert [r["step"] for r in evals] == [10, 20]
    assert all(r["val_bpc"] > 0 for r in evals)
    assert not list(run.glob("*.tmp-*")) and not list(run.glob("*.old"))


def test_default_run_name_is_a_readable_timestamp_and_out_moves_the_root(small_text, tmp_path) -> None:
    run_cli("train", small_text, *TINY, "--max-steps", "5", "--out", tmp_path / "elsewhere")
    (run,) = (tmp_path / "elsewhere").iterdir()
    assert run.name[:4].isdigit() and "_" in run.name


@pytest.mark.parametrize("cell", ["rnn", "gru", "lstm"])
def test_every_cell_trains_and_loss_falls(small_text: Path, tmp_path: Path, cell: str) -> None:
    run_cli("train", small_text, *TINY, "--cell", cell, "--layers", "2", "--max-steps", "60",
            "--run-name", cell, "--lr", "0.01", "--tie-weights", "--emb", "16")
    losses = [r["loss"] for r in _records(tmp_path / "runs" / cell, "train")]
    assert losses[-1] < losses[0] - 0.3


@pytest.mark.parametrize("level", ["word", "subword"])
def test_word_and_subword_levels_train_sample_and_eval(shakespeare, tmp_path, level) -> None:
    extra = ["--vocab-size", "400"] if level == "subword" else ["--min-count", "3"]
    run_cli("train", shakespeare, *TINY, "--level", level, *extra, "--max-steps", "10",
            "--run-name", level, "--eval-tokens", "2000")
    out = run_cli("sample", level, "--length", "20", "--seed", "3").output
    assert len(out.strip()) > 0
    result = json.loads(run_cli("eval", level, "--split", "test", "--json").output)
    assert result["tokens"] < result["chars"] and result["bits_per_char"] > 0


def test_corpus_too_short_for_one_batch_says_how_short(tmp_path: Path) -> None:
    corpus = tmp_path / "short.txt"
    corpus.write_text("tiny corpus\n" * 5)
    result = run_cli("train", corpus, "--batch-size", "64", "--seq-len", "128", "--run-name",
                     "short", ok=False)
    assert result.exit_code == 2
    assert "too few for one batch of 64×128" in result.output and "--batch-size" in result.output
    assert not (tmp_path / "runs/short").exists()  # refused before the run folder is made


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--hidden", "-3"], "--hidden must be ≥ 1"),
        (["--seq-len", "0"], "--seq-len must be ≥ 1"),
        (["--dropout", "1.5"], "--dropout must be in"),
        (["--lr", "nan"], "--lr must be a positive number"),
        (["--device", "tpu"], "--device must be one of"),
        (["--device", "cpu:7"], "--device must be one of"),  # torch took it and ignored the 7
        (["--device", "cuda:abc"], "--device must be one of"),  # torch: a RuntimeError
        (["--device", "cuda:-1"], "--device must be one of"),
        (["--seed", "99999999999999999999"], "--seed must be in [0, 2**63)"),
        (["--seed", "-1"], "--seed must be in [0, 2**63)"),
        (["--grad-clip", "nan"], "--grad-clip must be a finite number ≥ 0"),
        (["--grad-clip", "inf"], "--grad-clip must be a finite number ≥ 0"),
        (["--weight-decay", "nan"], "--weight-decay must be a finite number ≥ 0"),
    ],
)
def test_nonsense_options_are_one_line_errors(small_text, args, message) -> None:
    result = run_cli("train", small_text, *TINY, "--max-steps", "2", *args, ok=False)
    assert result.exit_code == 2 and message in result.output
    assert "Traceback" not in result.output


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA")
def test_cuda_asked_for_without_cuda_is_a_clear_error(small_text) -> None:
    for device in ("cuda", "cuda:1"):
        result = run_cli("train", small_text, *TINY, "--device", device, ok=False)
        assert f"--device {device} was asked for, but CUDA is not available" in result.output
        assert "--device cpu" in result.output


def test_warmup_then_cosine_schedule(small_text, tmp_path) -> None:
    ds = prepare([str(small_text)], PreprocessOptions())
    cfg = TrainConfig(hidden=8, layers=1, batch_size=2, seq_len=8, max_steps=100, warmup=10,
                      lr=1.0, min_lr_ratio=0.1)
    trainer = Trainer(ds, cfg, tmp_path)
    lrs = []
    for step in (0, 9, 10, 55, 100):
        trainer.progress.step = step
        lrs.append(trainer.loop.lr_now())
    assert lrs[0] == pytest.approx(0.1) and lrs[1] == pytest.approx(1.0)
    assert lrs[2] == pytest.approx(1.0, abs=1e-3) and lrs[3] == pytest.approx(0.55, abs=0.01)
    assert lrs[4] == pytest.approx(0.1)


def test_a_time_budget_decays_from_the_end_of_warmup_without_a_drop(small_text, tmp_path) -> None:
    """The seconds counted from 0: with warm-up a fifth of --max-time, the lr fell at once from
    4.00e-3 to about 3.2e-3 when warm-up ended."""
    ds = prepare([str(small_text)], PreprocessOptions())
    cfg = TrainConfig(hidden=8, layers=1, batch_size=2, seq_len=8, max_time=100.0, warmup=10,
                      lr=1.0, min_lr_ratio=0.1)
    trainer = Trainer(ds, cfg, tmp_path)
    prog = trainer.progress
    for step in range(10):  # warm-up: 2 s a step
        prog.elapsed = 2.0 * step
        trainer.loop.step()
    assert prog.step == 10 and prog.warmup_s == pytest.approx(18.0)
    prog.elapsed = 18.0
    assert trainer.loop.lr_now() == pytest.approx(1.0)  # the peak, where warm-up left it
    prog.elapsed = 18.0 + (100.0 - 18.0) / 2
    assert trainer.loop.lr_now() == pytest.approx(0.55, abs=1e-6)  # half way through what is left
    prog.warmup_s = None  # a run begun before: its seconds count from 0, as they did
    prog.elapsed = 50.0
    assert trainer.loop.lr_now() == pytest.approx(0.55, abs=1e-6)


def _run_with_one_nan(small_text, tmp_path, monkeypatch) -> tuple[Trainer, dict, list[str]]:
    ds = prepare([str(small_text)], PreprocessOptions())
    cfg = TrainConfig(hidden=16, layers=1, batch_size=4, seq_len=16, max_steps=30, log_every=5,
                      eval_every=10, warmup=1)
    trainer = Trainer(ds, cfg, tmp_path)
    real_step, calls = Loop.step, {"n": 0}

    def poisoned(self):
        calls["n"] += 1
        loss = real_step(self)
        if calls["n"] == 12:  # one bad step in the third logging window
            with torch.no_grad():
                next(self.task.model.parameters()).fill_(float("nan"))
            return loss * float("nan")
        return loss

    monkeypatch.setattr(Loop, "step", poisoned)
    messages = []
    trainer.reporter.message = messages.append
    return trainer, trainer.run(), messages


def test_nan_loss_rolls_back_halves_lr_and_goes_on(small_text, tmp_path, monkeypatch) -> None:
    trainer, result, messages = _run_with_one_nan(small_text, tmp_path, monkeypatch)
    assert result["outcome"] == "finished" and result["step"] == 30
    assert any("rolled back" in m for m in messages)
    assert trainer.progress.lr_scale == 0.5
    assert all(torch.isfinite(p).all() for p in trainer.model.parameters())


def test_nan_rollback_message_shows_the_halved_learning_rate(small_text, tmp_path, monkeypatch) -> None:
    _, _, messages = _run_with_one_nan(small_text, tmp_path, monkeypatch)
    (warning,) = [m for m in messages if "rolled back" in m]
    assert warning.endswith("learning rate ×0.5") and "before step 15" in warning, warning


def test_stop_requested_while_logging_still_saves_last(small_text, tmp_path) -> None:
    """A request that lands after the step's sync point (a signal during logging, a closed
    stdout) must stop the run at the next step with last/ saved, not skip the save."""
    ds = prepare([str(small_text)], PreprocessOptions())
    cfg = TrainConfig(hidden=8, layers=1, batch_size=2, seq_len=8, max_steps=1000, log_every=5,
                      eval_every=1000, warmup=1)
    trainer = Trainer(ds, cfg, tmp_path)
    trainer.reporter.train = lambda rec: setattr(trainer.loop.stop, "requested", True)
    result = trainer.run()
    assert result["outcome"] == "interrupted" and result["step"] == 6
    assert json.loads((tmp_path / "last/checkpoint.json").read_text())["progress"]["step"] == 6


def test_model_too_big_for_memory_is_refused_before_the_run_folder(small_text, tmp_path) -> None:
    result = run_cli("train", small_text, *TINY, "--cell", "lstm", "--hidden", "10000000",
                     "--run-name", "huge", ok=False)
    assert result.exit_code == 2 and "Traceback" not in result.output
    assert "does not fit in memory on cpu" in result.output and "smaller --hidden" in result.output
    assert "800,000,390,000,031 parameters" in result.output  # 1×10M LSTM, tied, vocab 31
    assert not (tmp_path / "runs/huge").exists()


def test_out_of_memory_while_allocating_the_model_is_a_user_error(small_text, monkeypatch) -> None:
    from charrnn.training import loop

    def oom(*args):
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(loop, "make_optimizer", oom)
    result = run_cli("train", small_text, *TINY, "--max-steps", "2", ok=False)
    assert result.exit_code == 2 and "does not fit in memory on cpu" in result.output


def test_cpu_allocator_failure_is_the_same_user_error(small_text, monkeypatch) -> None:
    """Where the memory cannot be told beforehand, the allocation itself fails: the same advice."""
    from charrnn import devices

    monkeypatch.setattr(devices, "device_memory", lambda device: None)
    result = run_cli("train", small_text, *TINY, "--hidden", "3000000", "--emb", "1", ok=False)
    assert result.exit_code == 2 and "does not fit in memory on cpu" in result.output


def test_patience_stops_early(small_text, tmp_path) -> None:
    run_cli("train", small_text, *TINY, "--max-steps", "400", "--eval-every", "5", "--patience",
            "1", "--lr", "0.5", "--optim", "sgd", "--cell", "lstm", "--run-name", "p")
    steps = [r["step"] for r in _records(tmp_path / "runs" / "p", "train")]
    assert steps[-1] < 400


def _train_losses(run: Path) -> dict[int, float]:
    return {r["step"]: r["loss"] for r in _records(run, "train")}


def _whole_and_stopped_at(step: int, small_text: Path, tmp_path: Path, *args: str) -> Path:
    """Train run `whole` with `args`, and the same run `split` stopped at `step` as Ctrl-C
    would stop it, then resumed to its end; `split`'s folder."""
    run_cli("train", small_text, *TINY, *args, "--run-name", "whole")
    cfg = TrainConfig.from_json(json.loads((tmp_path / "runs/whole/last/checkpoint.json")
                                           .read_text())["train"])
    from charrnn import runs

    run_dir = runs.new_run_dir(tmp_path / "runs", "split", "lm")
    trainer = Trainer(prepare([str(small_text)], PreprocessOptions()), cfg, run_dir)
    real_step = Loop.step

    def step_then_stop(self):
        loss = real_step(self)
        if self.progress.step == step:
            self.stop.requested = True
        return loss

    trainer.loop.step = step_then_stop.__get__(trainer.loop)
    assert trainer.run()["outcome"] == "interrupted"
    assert json.loads((run_dir / "last/checkpoint.json").read_text())["progress"]["step"] == step
    run_cli("train", "--resume", "split", "--plain")
    return run_dir


def test_stop_then_resume_follows_the_uninterrupted_loss_curve(small_text, tmp_path) -> None:
    run_dir = _whole_and_stopped_at(17, small_text, tmp_path, "--max-steps", "40", "--log-every",
                                    "1", "--dropout", "0.2")
    whole, split = _train_losses(tmp_path / "runs/whole"), _train_losses(run_dir)
    assert sorted(split) == list(range(1, 41))
    for step in range(18, 41):
        assert split[step] == pytest.approx(whole[step], rel=1e-5, abs=1e-6), step


def test_a_stop_between_log_lines_resumes_to_the_same_next_line(small_text, tmp_path) -> None:
    """Stopped at step 17 of lines every 5 steps, the resumed run's step-20 line averaged steps
    18-20 only (0.2391 against the uninterrupted 0.3002 in one walk-through)."""
    run_dir = _whole_and_stopped_at(17, small_text, tmp_path, "--max-steps", "30", "--log-every",
                                    "5", "--eval-every", "10")
    whole, split = _train_losses(tmp_path / "runs/whole"), _train_losses(run_dir)
    assert sorted(split) == [5, 10, 15, 17, 20, 25, 30]  # (and the line where it stopped)
    for step in (20, 25, 30):
        assert split[step] == whole[step], step


def test_awd_regularisers_resume_exactly(small_text, tmp_path) -> None:
    """--weight-drop, --locked-dropout and --embed-drop draw from the run's RNG: exact resume."""
    awd = ["--cell", "lstm", "--weight-drop", "0.3", "--locked-dropout", "--embed-drop", "0.1",
           "--dropout", "0.3"]
    # A flat learning rate after warmup, so the 12-step run's schedule matches the 30-step one.
    args = [small_text, *TINY, *awd, "--log-every", "1", "--min-lr-ratio", "1"]
    run_cli("train", *args, "--max-steps", "30", "--run-name", "whole")
    run_cli("train", *args, "--max-steps", "12", "--run-name", "split")
    run_cli("train", "--resume", "split", "--max-steps", "30", "--plain")
    whole, split = _train_losses(tmp_path / "runs/whole"), _train_losses(tmp_path / "runs/split")
    config = json.loads((tmp_path / "runs/whole/best/checkpoint.json").read_text())["model"]
    assert (config["weight_drop"], config["locked_dropout"], config["embed_drop"]) == (0.3, True, 0.1)
    for step in range(13, 31):
        assert split[step] == pytest.approx(whole[step], rel=1e-5, abs=1e-6), step


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_resume_on_cpu_of_a_half_precision_carried_state(small_text, tmp_path, cell) -> None:
    """A CUDA run under autocast carries the RNN's state in half precision; resumed on a CPU the
    float32 RNN must get float32 (it refused half before)."""
    import torch
    from safetensors.torch import load_file, save_file

    run_cli("train", small_text, *TINY, "--cell", cell, "--max-steps", "12", "--run-name", "gpu")
    path = tmp_path / "runs/gpu/last/state.safetensors"
    tensors = load_file(path)
    tensors = {k: v.half() if k.startswith("state.") else v for k, v in tensors.items()}
    save_file(tensors, str(path))
    run_cli("train", "--resume", "gpu", "--max-steps", "20", "--device", "cpu", "--plain")
    after = load_file(path)
    assert after["state.h"].dtype == torch.float32
    assert max(_train_losses(tmp_path / "runs/gpu")) == 20


def test_loss_scaling_path_trains_saves_and_resumes(small_text, tmp_path, monkeypatch) -> None:
    """The CUDA path's dynamic loss scaling (GradScaler), run on the CPU: power-of-two scales
    are undone exactly, so the loss curve is the unscaled one; the scale is saved with the
    checkpoint and restored on resume."""
    import torch

    from charrnn.training import loop

    scalers = []

    def enabled_scaler(device, precision="fp32"):
        scalers.append(torch.amp.GradScaler("cpu", init_scale=2.0**10, growth_interval=5))
        return scalers[-1]

    args = [small_text, *TINY, "--max-steps", "30", "--log-every", "1"]
    run_cli("train", *args, "--run-name", "plain")
    monkeypatch.setattr(loop, "loss_scaler", enabled_scaler)
    run_cli("train", *args, "--run-name", "scaled")
    plain, scaled = _train_losses(tmp_path / "runs/plain"), _train_losses(tmp_path / "runs/scaled")
    assert scaled == pytest.approx(plain, rel=1e-6)
    saved = json.loads((tmp_path / "runs/scaled/last/checkpoint.json").read_text())["loss_scale"]
    assert saved["scale"] == scalers[0].get_scale() and saved["scale"] > 2.0**10  # it grew
    run_cli("train", "--resume", "scaled", "--max-steps", "32", "--plain")
    assert scalers[1].get_scale() >= saved["scale"]


def test_optimizer_kernel_settings_follow_the_machine_not_the_checkpoint() -> None:
    from charrnn.training.optim import with_kernels as _with_kernels

    saved = [{"lr": 0.1, "fused": True, "foreach": None, "weight_decay": 0.1}]
    current = [{"lr": 0.5, "fused": None, "foreach": None, "weight_decay": 0.0}]
    assert _with_kernels(saved, current) == [{"lr": 0.1, "fused": None, "foreach": None,
                                              "weight_decay": 0.1}]


@pytest.mark.slow
def test_sigkill_mid_training_resumes_from_last_and_matches(small_text, tmp_path) -> None:
    # Every option a recipe sets is typed: the process started below measures this CPU as it is,
    # where the tests' own process sees no bf16 (conftest), and the two must train one model.
    common = [str(small_text), *TINY, "--max-steps", "400", "--log-every", "1", "--save-every",
              "7", "--dropout", "0.1", "--cell", "lstm", "--lr", "4e-3", "--precision", "fp32"]
    run_cli("train", *common, "--run-name", "whole")
    env = {**os.environ, "CHARRNN_RUNS": str(tmp_path / "runs")}
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "train", *common, "--run-name",
                             "killed"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    last = tmp_path / "runs/killed/last/checkpoint.json"
    deadline = time.time() + 60
    while time.time() < deadline and not last.exists():
        time.sleep(0.01)
    time.sleep(0.3)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    saved = json.loads(last.read_text())["progress"]["step"]
    assert 0 < saved < 400, "the kill must land mid-training"
    run_cli("train", "--resume", "killed", "--plain")
    whole, resumed = _train_losses(tmp_path / "runs/whole"), _train_losses(tmp_path / "runs/killed")
    assert max(resumed) == 400
    for step in range(saved + 1, 401):
        assert resumed[step] == pytest.approx(whole[step], rel=1e-5, abs=1e-6), step


@pytest.mark.slow
def test_ctrl_c_saves_last_and_exits_cleanly(small_text, tmp_path) -> None:
    env = {**os.environ, "CHARRNN_RUNS": str(tmp_path / "runs")}
    proc = subprocess.Popen([sys.executable, "-m", "charrnn", "train", str(small_text), *TINY,
                             "--max-steps", "100000", "--run-name", "c"], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    metrics = tmp_path / "runs/c/metrics.jsonl"
    deadline = time.time() + 60
    while time.time() < deadline and not (metrics.exists() and metrics.stat().st_size > 0):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert f"continue with `charrnn train --resume {tmp_path / 'runs/c'}`" in out \
        and "Traceback" not in err
    meta = json.loads((tmp_path / "runs/c/last/checkpoint.json").read_text())
    assert meta["progress"]["step"] > 0


def test_backward_lm_reads_text_right_to_left(small_text, tmp_path) -> None:
    run_cli("train", small_text, *TINY, "--direction", "backward", "--max-steps", "5",
            "--run-name", "back")
    meta = json.loads((tmp_path / "runs/back/last/checkpoint.json").read_text())
    assert meta["model"]["direction"] == "backward"
    out = run_cli("sample", "back", "--prime", "the end", "--length", "12", "--seed", "1").output
    assert out.rstrip("\n").endswith("the end") and len(out.rstrip("\n")) >= len("the end") + 12


def test_resume_refuses_a_typed_change_of_model_options(small_text, tmp_path) -> None:
    run_cli("train", small_text, *TINY, "--max-steps", "10", "--run-name", "r")
    result = run_cli("train", "--resume", "r", "--hidden", "64", "--max-steps", "20", ok=False)
    assert "--hidden 64 (the run has 32)" in result.output and result.exit_code == 2
    # the same value, or a budget option, is fine
    run_cli("train", "--resume", "r", "--hidden", "32", "--max-steps", "12", "--plain")


def test_resume_refuses_a_different_run_name(small_text, tmp_path) -> None:
    run_cli("train", small_text, *TINY, "--max-steps", "5", "--run-name", "part")
    result = run_cli("train", "--resume", "part", "--run-name", "other", "--max-steps", "8", ok=False)
    assert result.exit_code == 2 and "--run-name other: a resumed run keeps its folder" in result.output
    assert not (tmp_path / "runs/other").exists()
    run_cli("train", "--resume", "part", "--run-name", "part", "--max-steps", "8", "--plain")


def test_resume_of_a_tagger_run_is_a_clear_error(tmp_path) -> None:
    from test_tagger import TAG_TINY, _conll

    train = _conll(tmp_path / "train.txt", 40, 0)
    run_cli("tag", "train", train, "--format", "conll", *TAG_TINY, "--epochs", "1",
            "--run-name", "chunk")
    result = run_cli("train", "--resume", "chunk", "--max-steps", "5", ok=False)
    assert "chunk is a tagger run" in result.output and result.exit_code == 2


def test_tag_train_seed_out_of_range_is_refused() -> None:
    from charrnn.errors import UserError
    from charrnn.tag.train import TagTrainConfig

    with pytest.raises(UserError, match=r"^seed must be in \[0, 2\*\*63\)"):
        TagTrainConfig(seed=2**64)


# ---- sample options met by a new user (beside the training ones above) --------------------------
def test_num_samples_are_separated_by_a_line_and_one_sample_has_none(tiny_run) -> None:
    from charrnn.lm.sample import SEPARATOR

    many = run_cli("sample", tiny_run, "--length", "20", "--num-samples", "3", "--seed", "1").output
    parts = many.split(SEPARATOR)
    assert len(parts) == 3 and all(len(p.strip("\n")) >= 10 for p in parts), many
    assert many.count("-" * 15) == 2 and not many.rstrip("\n").endswith("-")
    one = run_cli("sample", tiny_run, "--length", "20", "--seed", "1", "--plain").output
    assert "-" * 15 not in one and one.endswith("\n")


def test_a_top_p_of_one_is_refused_as_a_top_k_of_the_whole_vocabulary_is(tiny_run) -> None:
    result = run_cli("sample", tiny_run, "--top-p", "1", "--length", "5", ok=False)
    assert result.exit_code == 2 and "--top-p 1 keeps every token" in result.output
    assert run_cli("sample", tiny_run, "--top-p", "0.9", "--length", "5").output


def test_sample_seed_out_of_range_is_a_one_line_error(tiny_run) -> None:
    result = run_cli("sample", tiny_run, "--seed", "99999999999999999999", ok=False)
    assert result.exit_code == 2 and "--seed must be in [0, 2**63)" in result.output


def test_a_resumed_run_says_its_precision_is_its_own_not_asked_for(small_text, tmp_path) -> None:
    run_cli("train", small_text, *TINY, "--max-steps", "4", "--run-name", "r")
    first = json.loads((tmp_path / "runs/r/run.json").read_text())["sources"]["precision"]
    out = run_cli("train", "--resume", "r", "--max-steps", "8", "--plain").output
    header = next(line for line in out.splitlines() if line.startswith("resuming"))
    assert f"fp32 (the run's own, {first})" in header and "asked for" not in header
    assert "at step 4 | cpu | " in header  # where it computes now (a resume may move it)


@pytest.mark.parametrize("option", [["--patience", "3"], ["--eval-every", "5"],
                                    ["--eval-tokens", "1000"], ["--eval-seconds", "10"]])
def test_an_evaluation_option_without_validation_data_is_refused(small_text: Path, tmp_path: Path,
                                                                 option) -> None:
    """With --val-frac 0 and no --valid nothing is evaluated: the option would do nothing."""
    at = TINY.index("--eval-every")
    tiny = TINY[:at] + TINY[at + 2 :]  # only the option under test typed
    result = run_cli("train", small_text, *tiny, "--max-steps", "4", "--val-frac", "0",
                     "--test-frac", "0", *option, "--run-name", "r", ok=False)
    assert result.exit_code == 2
    assert f"charrnn: error: {option[0]}: the data has no validation split" in result.output
    assert not (tmp_path / "runs" / "r").exists()
    run_cli("train", small_text, *tiny, "--max-steps", "4", "--test-frac", "0", *option,
            "--run-name", "r")


def test_the_fill_model_and_a_tagger_refuse_patience_without_validation_data(small_text: Path,
                                                                             tmp_path: Path) -> None:
    result = run_cli("train", small_text, "--task", "fill", "--val-frac", "0", "--test-frac", "0",
                     "--patience", "3", "--max-steps", "2", "--plain", ok=False)
    assert result.exit_code == 2 and "--patience: the data has no validation split" in result.output
    conll = tmp_path / "c.txt"
    conll.write_text("the DT B-NP\ncat NN I-NP\n\n" * 20, encoding="utf-8")
    result = run_cli("tag", "train", conll, "--format", "conll", "--val-frac", "0", "--patience",
                     "2", "--max-steps", "2", "--quiet", ok=False)
    assert result.exit_code == 2 and "--patience: the data has no validation split" in result.output


def test_the_fill_model_gets_the_live_view_in_a_terminal_unless_plain(small_text: Path,
                                                                      monkeypatch) -> None:
    """--task fill took plain lines always, so --plain changed nothing there."""
    from charrnn.cli import train as cli_train
    from charrnn.training.reporters import PlainReporter

    asked: list[bool] = []
    monkeypatch.setattr(cli_train, "training_reporter",
                        lambda plain: asked.append(plain) or PlainReporter())
    for extra in ([], ["--plain"]):
        run_cli("train", small_text, "--task", "fill", "--hidden", "16", "--layers", "1",
                "--batch-size", "4", "--seq-len", "16", "--max-steps", "2", *extra)
    assert asked == [False, True]


def test_a_resumed_run_without_validation_data_refuses_patience(small_text: Path) -> None:
    at = TINY.index("--eval-every")
    run_cli("train", small_text, *TINY[:at], *TINY[at + 2 :], "--val-frac", "0", "--test-frac",
            "0", "--max-steps", "3", "--run-name", "nv")
    result = run_cli("train", "--resume", "nv", "--max-steps", "6", "--patience", "2", "--plain",
                     ok=False)
    assert result.exit_code == 2 and "--patience: the data has no validation split" in result.output
    run_cli("train", "--resume", "nv", "--max-steps", "6", "--plain")


@pytest.mark.parametrize("how", ["new", "resume", "fill"])
def test_threads_are_refused_where_the_run_computes_on_a_gpu(small_text: Path, tmp_path: Path,
                                                             monkeypatch, how: str) -> None:
    """torch's CPU threads are set only for a run on the CPU: on CUDA --threads did nothing.
    The GPU is emulated: the device resolves to CUDA, and the refusal comes before any use."""
    from charrnn import devices
    from charrnn.lm import job

    if how == "resume":
        run_cli("train", small_text, *TINY, "--max-steps", "2", "--run-name", "r")
    cuda = lambda name: torch.device("cuda")  # noqa: E731
    monkeypatch.setattr(job, "resolve_device", cuda)
    monkeypatch.setattr(devices, "resolve_device", cuda)
    given = {"new": [small_text, *TINY, "--run-name", "n"], "resume": ["--resume", "r"],
             "fill": [small_text, "--task", "fill", "--run-name", "n"]}[how]
    result = run_cli("train", *given, "--max-steps", "4", "--threads", "1", "--plain", ok=False)
    assert result.exit_code == 2
    assert "--threads sets how many CPU threads torch computes with, and this run computes on " \
           "the GPU" in result.output
    assert not (tmp_path / "runs" / "n").exists()


def test_more_threads_than_the_machine_has_cpus_are_refused(small_text: Path, tmp_path: Path) -> None:
    """torch crashed with SIGSEGV on --threads 100000 (more than the CPUs never help)."""
    cpus = os.cpu_count() or 1
    for task in ([], ["--task", "fill"]):
        result = run_cli("train", small_text, *task, "--max-steps", "2", "--threads",
                         str(cpus + 1), "--run-name", "t", ok=False)
        assert result.exit_code == 2
        assert f"--threads {cpus + 1}: this machine has {cpus} CPUs" in result.output
        assert not (tmp_path / "runs" / "t").exists()


def test_a_resumed_run_whose_budget_is_spent_says_which_and_what_to_give(small_text: Path) -> None:
    """It trained nothing and said 'done' (a resumed run counts its whole training): typing
    --max-steps on a run bounded by --max-time changed nothing."""
    run_cli("train", small_text, *TINY, "--max-steps", "4", "--run-name", "s")
    result = run_cli("train", "--resume", "s", "--max-steps", "3", "--plain", ok=False)
    assert result.exit_code == 2
    assert "run s has spent its budget, --max-steps 3 (it is at step 4)" in result.output
    assert "give a larger --max-steps" in result.output
    # nothing typed: the run is done, as the resume command a stop at its last step prints
    assert "done at step 4" in run_cli("train", "--resume", "s", "--plain").output
    run_cli("train", small_text, *TINY, "--max-time", "1", "--run-name", "t")
    result = run_cli("train", "--resume", "t", "--max-steps", "100000", "--plain", ok=False)
    assert result.exit_code == 2 and "spent its budget, --max-time 1 (it has trained" in result.output
    assert "done at step 6" in run_cli("train", "--resume", "s", "--max-steps", "6",
                                       "--plain").output


def test_a_damaged_run_json_says_how_to_mend_it_and_resume_writes_it_again(small_text: Path,
                                                                          tmp_path: Path) -> None:
    """It stayed damaged after a resume, and eval kept failing with no way out named."""
    run_cli("train", small_text, *TINY, "--max-steps", "3", "--run-name", "j")
    (tmp_path / "runs/j/run.json").write_text('{"kind": "lm", "na')
    result = run_cli("eval", "j", ok=False)
    assert result.exit_code == 2 and f"`charrnn train --resume {tmp_path / 'runs/j'}` writes it " \
        "again" in result.output
    out = run_cli("train", "--resume", tmp_path / "runs/j", "--plain").output  # as it says
    assert "run.json was unreadable: written again from the checkpoint" in out
    assert json.loads(run_cli("eval", "j", "--split", "val", "--json").output)["bits_per_char"]
    info = json.loads((tmp_path / "runs/j/run.json").read_text())
    assert info["dataset"]["level"] == "char" and info["config"]["max_steps"] == 3
    assert (tmp_path / "runs/j/run.json.damaged").read_text() == '{"kind": "lm", "na'


def test_a_resumed_runs_live_view_goes_on_from_its_history(small_text, tmp_path) -> None:
    """The view of a resumed run showed step 0 and "starting…", and its chart began at the
    resume."""
    from dataclasses import replace

    from rich.console import Console

    from charrnn import checkpoint
    from charrnn.tui.train_view import LiveTrainReporter

    run_cli("train", small_text, *TINY, "--max-steps", "20", "--log-every", "5", "--run-name", "r")
    with open(tmp_path / "runs/r/metrics.jsonl", "a") as log:  # hand-edited lines: left out
        log.write('{"type": "train", "step": null}\n{"type": "eval", "step": 5, "val_loss": "x"}\n')
    ckpt = checkpoint.resolve(str(tmp_path / "runs/r/last"), tmp_path / "runs")
    cfg = replace(TrainConfig.from_json(ckpt.meta["train"]), max_steps=30)
    view = LiveTrainReporter(30, console=Console(file=io.StringIO(), force_terminal=True))
    shown_at_start = []
    real_start = view.start
    view.start = lambda preview: shown_at_start.append(dict(view.last)) or real_start(preview)
    ds = prepare([str(small_text)], PreprocessOptions())
    try:
        Trainer(ds, cfg, tmp_path / "runs/r", resume=ckpt, reporter=view).run()
    finally:
        view.close()
    assert shown_at_start[0]["step"] == 20 and shown_at_start[0]["eta"] is None
    assert [step for step, _ in view.train_points] == [5, 10, 15, 20, 25, 30]
    assert [step for step, _ in view.val_points][0] == 10


def test_a_runs_result_keeps_the_last_evaluation_apart_from_the_best(small_text, tmp_path) -> None:
    """Its scores sat beside best_val at the top (tag train --json printed them so), read as the
    run's result."""
    from charrnn import runs

    ds = prepare([str(small_text)], PreprocessOptions())
    cfg = TrainConfig(hidden=16, layers=1, batch_size=4, seq_len=16, max_steps=20, eval_every=10)
    result = Trainer(ds, cfg, runs.new_run_dir(tmp_path / "runs", "r", "lm")).run()
    assert "val_loss" not in result and result["last_eval"]["val_bpc"] > 0
    assert result["best_val"] <= result["last_eval"]["val_loss"]


@pytest.mark.parametrize("name", ["-x", " a", "a ", "a\nb", "a\tb", ".hidden", "a/b", "",
                                  "a" * 201])
def test_a_run_name_no_command_could_take_back_is_refused_before_the_corpus_is_read(
        small_text: Path, tmp_path: Path, name: str) -> None:
    """'-x' made a run that `charrnn sample -x` reads as an option; 'a\\nb' split the runs table."""
    own = tmp_path / "own.txt"  # a text no other test has cached
    own.write_text(small_text.read_text() + "a line of this test's own\n")
    for command in (["train", own, *TINY, "--max-steps", "1"], ["ngram", "train", own],
                    ["tag", "train", own], ["fill", "train", own]):
        result = run_cli(*command, "--run-name", name, ok=False)
        assert result.exit_code == 2 and "--run-name" in result.output, (command, result.output)
        assert not (tmp_path / "runs").exists()
    datasets = Path(os.environ["CHARRNN_CACHE"]) / "datasets"
    assert not any(own.name in p.read_text(errors="replace") for p in datasets.glob("*/meta.json"))


def test_a_run_name_with_inner_spaces_or_letters_of_any_script_is_taken(small_text: Path,
                                                                        tmp_path: Path) -> None:
    run_cli("ngram", "train", small_text, "--order", "2", "--run-name", "my 模型 run")
    assert (tmp_path / "runs" / "my 模型 run" / "run.json").is_file()


def test_a_run_name_taken_by_something_not_a_run_is_refused_without_advice_to_delete_it(
        small_text: Path, tmp_path: Path) -> None:
    """The corpus itself (--out . --run-name corpus.txt) was told 'Delete it (rm -r ...)'."""
    root = tmp_path / "runs"
    (root / "mydocs").mkdir(parents=True)
    (root / "mydocs" / "notes.txt").write_text("mine\n")
    (root / "a.txt").write_text("mine too\n")
    for name in ("mydocs", "a.txt"):
        result = run_cli("train", small_text, *TINY, "--max-steps", "1", "--run-name", name,
                         ok=False)
        assert result.exit_code == 2 and "exists and is not a run" in result.output
        assert "rm -r" not in result.output
    assert (root / "mydocs" / "notes.txt").read_text() == "mine\n"
    assert (root / "a.txt").read_text() == "mine too\n"


def test_an_empty_folder_made_by_hand_is_taken_as_the_new_run(small_text: Path,
                                                              tmp_path: Path) -> None:
    """It was 'being made by another start at this moment; wait for it' forever."""
    (tmp_path / "runs" / "exp1").mkdir(parents=True)
    run_cli("train", small_text, *TINY, "--max-steps", "1", "--run-name", "exp1")
    assert (tmp_path / "runs" / "exp1" / "run.json").is_file()


def test_a_name_taken_by_an_ngram_run_is_not_offered_as_one_to_resume(small_text: Path) -> None:
    run_cli("ngram", "train", small_text, "--order", "2", "--run-name", "ng")
    result = run_cli("train", small_text, *TINY, "--max-steps", "1", "--run-name", "ng", ok=False)
    assert "already exists: pick another --run-name" in result.output
    assert "--resume" not in result.output


def test_a_corpus_whose_file_name_is_not_utf8_trains_and_its_run_name_is_refused(
        small_text: Path, tmp_path: Path) -> None:
    """Writing the dataset's and the run's JSON raised UnicodeEncodeError (exit 1) for a latin-1
    file name, and for such a --run-name."""
    latin1 = os.fsdecode(bytes(tmp_path) + b"/caf\xe9.txt")
    try:
        Path(latin1).write_text(small_text.read_text() + "a line of its own\n")
    except OSError:  # a file system that holds UTF-8 names only (APFS, ZFS utf8only)
        pytest.skip("this file system refuses a file name that is not UTF-8")
    run_cli("train", latin1, *TINY, "--max-steps", "1", "--run-name", "m")
    assert json.loads((tmp_path / "runs/m/run.json").read_text())["dataset"]
    result = run_cli("train", small_text, *TINY, "--max-steps", "1",
                     "--run-name", os.fsdecode(b"r\xe9"), ok=False)
    assert result.exit_code == 2 and "is not UTF-8 text" in result.output
