"""`charrnn fill train`: one command trains the fill group, `charrnn fill` finds it, an
interrupted group resumes."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import signal
import time
from dataclasses import replace
from pathlib import Path

import pytest

from charrnn.cli import fill as cli_fill
from charrnn.errors import UserError
from charrnn.fill import group, train_group
from charrnn.training.reporters import PlainReporter
from helpers import TINY, run_cli

LINES_A = ["我打算买一部新手机。", "我打算卖一辆旧汽车。", "他很喜欢它。"]
LINES_B = ["她很喜欢这本书。", "我打算买一本新书。"]


@pytest.fixture
def small_stages(monkeypatch: pytest.MonkeyPatch) -> None:
    """The group's models at a size that trains in a second (the stages and budget as they are)."""
    tiny = {"hidden": 32, "batch_size": 4, "seq_len": 16, "max_steps": 30, "warmup": 5,
            "log_every": 10}
    monkeypatch.setattr(train_group, "LM", replace(train_group.LM, **tiny))
    monkeypatch.setattr(train_group, "FILL", replace(train_group.FILL, **tiny))
    monkeypatch.setattr(train_group, "NGRAM_ORDER", 3)


def _corpora(folder: Path) -> list[Path]:
    rng, out = random.Random(0), []
    for name, lines, count in (("a.txt", LINES_A, 300), ("b.txt", LINES_B, 200)):
        path = folder / name
        path.write_text("".join(rng.choice(lines) + "\n" for _ in range(count)), encoding="utf-8")
        out.append(path)
    return out


def test_fill_train_makes_a_group_that_fill_finds_without_model(small_stages, tmp_path: Path
                                                                 ) -> None:
    a, b = _corpora(tmp_path)
    out = run_cli("fill", "train", a, b, "--max-time", "120", "--plain", "--run-name", "g").output
    root = tmp_path / "runs"
    for role, kind in (("ngram", "ngram"), ("fwd", "lm"), ("bwd", "lm"), ("mask", "fill")):
        assert json.loads((root / f"g-{role}" / "run.json").read_text())["kind"] == kind
        assert f"run g-{role}" in out
    assert (root / "g-ngram" / "backward" / "model.json").is_file()
    for role in ("fwd", "bwd"):  # planned for this machine: precision measured, not assumed
        sources = json.loads((root / f"g-{role}" / "run.json").read_text())["sources"]
        assert sources["precision"].startswith("machine: bf16 cannot run here")
    info = group.read(root / "g")
    assert [s["state"] for s in info["stages"]] == ["done"] * 4 and set(info["mix"]) == {"fwd", "bwd"}
    assert info["spent_s"] <= 120
    # The held-out tail of each file: whole lines, kept out of training.
    for index, path in enumerate((a, b)):
        held = (root / "g" / "heldout" / f"{index + 1:02d}_{path.stem}.txt").read_text()
        train = (root / "g" / "train" / f"{index + 1:02d}_{path.stem}.txt").read_text()
        assert train + held == path.read_text() and held.endswith("\n") and train.endswith("\n")
    result = json.loads(run_cli("fill", "我打算__一辆旧汽车", "--json").output)
    assert result["models"]["fwd"].startswith("g-fwd⊕g-ngram")
    assert result["models"]["bwd"].startswith("g-bwd⊕g-ngram/backward")
    assert result["models"]["mask"] == "g-mask" and result["models"]["ngram"] == "g-ngram"
    assert run_cli("fill", "我打算__一辆旧汽车", "-m", "g", "--json").output == \
        run_cli("fill", "我打算__一辆旧汽车", "--json").output
    # The left method's beam is the forward RNN's own: the group's mixture does not stop it.
    left = json.loads(run_cli("fill", "我打算__一辆旧汽车", "--method", "left", "--json").output)
    assert left["methods"]["left"][0]["fills"]
    prompt = run_cli("fill", "-i", "--method", "left", input="我打算__一辆旧汽车\n:q\n").output
    assert "models: fwd g-fwd, ngram g-ngram" in " ".join(prompt.split())
    mixed = run_cli("fill", "我打算__一辆旧汽车", "-m", "g", "-m", "g-fwd", ok=False)
    assert mixed.exit_code == 2 and "g is a fill group" in mixed.output
    remixed = run_cli("fill", "我打算__一辆旧汽车", "--mix", "g-ngram", "--json")  # said, not silent
    assert "note: fill group g mixes both its LMs with its own n-grams; --mix g-ngram replaces " \
        "that" in remixed.stderr
    assert json.loads(remixed.stdout)["models"]["bwd"] == "g-bwd"
    held = root / "g" / "heldout" / "01_a.txt"
    scores = json.loads(run_cli("fill", "eval", held, "--blanks", "5", "--unit", "char", "--json",
                                "--quiet").output)
    assert set(scores["methods"]) == {"bidirectional", "forward", "ngram"}


def _ctrl_c_in(role: str):
    """Stage reporters that send one Ctrl-C at the first training line of the stage `role`."""

    class CtrlC(PlainReporter):
        sent = False
        said: list[str] = []
        closed_as: list[str] = []  # the stage's state when its view closed (its last frame)

        def __init__(self, stage: dict) -> None:
            super().__init__()
            self.stage = stage

        def close(self) -> None:
            CtrlC.closed_as.append(self.stage["state"])
            super().close()

        def train(self, rec: dict) -> None:
            super().train(rec)
            if not CtrlC.sent:
                CtrlC.sent = True
                os.kill(os.getpid(), signal.SIGINT)

        def message(self, text: str) -> None:
            CtrlC.said.append(text)
            super().message(text)

    reporters = lambda info, stage: CtrlC(stage) if stage["role"] == role else PlainReporter()  # noqa: E731
    reporters.said, reporters.closed_as = CtrlC.said, CtrlC.closed_as
    return reporters


def test_an_interrupted_group_resumes_where_it_stopped(small_stages, tmp_path: Path) -> None:
    a, b = _corpora(tmp_path)
    root = tmp_path / "runs"
    folder = train_group.start([str(a), str(b)], 120.0, root, "g")

    said: list[str] = []
    stopping = _ctrl_c_in("bwd")
    result = train_group.run(folder, stopping, said.append)  # while the backward LM trains
    assert result["outcome"] == "interrupted"
    stop_line = next(line for line in stopping.said if line.startswith("stopped at step"))
    assert stop_line.endswith("continue with `charrnn fill train --resume g`")  # not the LM's own
    assert stopping.closed_as == ["stopped"]  # (a live view's last frame showed it running)
    assert result["left"][0].startswith("backward LM") and result["left"][1] == "fill model"
    states = {s["role"]: s["state"] for s in group.read(folder)["stages"]}
    assert states == {"ngram": "done", "fwd": "done", "bwd": "stopped", "mask": "pending"}
    stopped = json.loads((root / "g-bwd" / "last" / "checkpoint.json").read_text())
    # What is left, as the resume will say it: its own schedule as of last/, not the wall time
    # booked (which counts start-up and the save after the stop too)
    left_then = stopped["train"]["max_time"] - stopped["progress"]["elapsed"]
    booked = group.read(folder)
    booked["stages"][2]["used_s"] = booked["stages"][2]["budget_s"]
    assert group.left_to_do(folder, booked)[0].startswith(f"backward LM ({left_then:.0f} s of ")
    half = run_cli("fill", "我打算__一辆旧汽车", "--json")  # what is done answers, with a note
    assert "g-fwd" in json.loads(half.stdout)["models"]["fwd"]
    assert "note: fill group g is not finished (backward LM (" in half.stderr
    assert "s left), fill model still to train)" in half.stderr
    assert "charrnn fill train --resume g" in half.stderr
    listed = _group_row(run_cli("runs", "--out", root).output)  # with what it has and lacks
    assert listed[:3] == ["2", "of", "4"] and "backward LM (" in " ".join(listed)
    info = group.read(folder)  # then killed outright: its time booked after the last save
    info["stages"][2].update(state="running", used_s=info["stages"][2]["budget_s"])
    info["spent_s"] = 0.0  # (with time to spare: a group short of it caps the stage, below)
    group.write(folder, info)
    lines: list[str] = []
    result = train_group.run(folder, cli_fill._stage_reporters("g", False, lines.append),
                             lines.append)
    assert result["outcome"] == "done" and not result["left"]
    # What its own schedule has left as of last/ (where it resumes), not its whole budget or
    # the time booked after that save.
    assert lines[0].startswith("[3/4] backward LM: run g-bwd, continued: ")
    left = stopped["train"]["max_time"] - stopped["progress"]["elapsed"]
    assert abs(float(lines[0].split("continued: ")[1].split()[0]) - left) <= 1
    assert _group_row(run_cli("runs", "--out", root).output)[:3] == ["4", "of", "4"]
    resumed = json.loads((root / "g-bwd" / "last" / "checkpoint.json").read_text())
    assert resumed["progress"]["step"] > stopped["progress"]["step"]  # the same run, continued
    assert resumed["train"]["max_time"] == stopped["train"]["max_time"]  # on its own schedule
    assert not (root / "g-bwd-2").exists()
    assert "note:" not in run_cli("fill", "我打算__一辆旧汽车", "--json").stderr


def test_a_stop_while_the_ngrams_count_leaves_no_run_and_says_no_ngram_was_built(
        small_stages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from charrnn.ngram import build

    a, b = _corpora(tmp_path)
    root = tmp_path / "runs"
    folder = train_group.start([str(a), str(b)], 120.0, root, "g")
    real, calls = build.build_model, []

    def stopped_second(*args, **kwargs):
        calls.append(1)
        if len(calls) == 2:  # Ctrl-C while the second direction is counted
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(build, "build_model", stopped_second)
    said: list[str] = []
    result = train_group.run(folder, lambda info, stage: PlainReporter(), said.append)
    assert result["outcome"] == "interrupted" and not (root / "g-ngram").exists()
    assert not any(line.startswith("n-gram: order") for line in said), said


def test_a_stop_between_the_two_ngram_saves_leaves_no_forward_run_without_its_backward(
        small_stages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from charrnn.ngram.model import NGramModel

    a, b = _corpora(tmp_path)
    root = tmp_path / "runs"
    folder = train_group.start([str(a), str(b)], 120.0, root, "g")
    real = NGramModel.save

    def stopped_backward(self, where: Path) -> None:
        if Path(where).name == "backward":
            raise KeyboardInterrupt
        real(self, where)

    monkeypatch.setattr(NGramModel, "save", stopped_backward)
    result = train_group.run(folder, lambda info, stage: PlainReporter(), lambda line: None)
    assert result["outcome"] == "interrupted" and not (root / "g-ngram").exists()


def _group_row(listing: str) -> list[str]:
    """The words of group g's row in `charrnn runs`, after the date and time."""
    lines = listing.splitlines()
    title = next(i for i, line in enumerate(lines) if line.startswith("fill groups under"))
    row = next(line for line in lines[title + 2 :] if line.startswith("g "))
    return row.split()[3:]


def test_a_stage_killed_before_its_first_save_starts_again_in_its_own_folder(
        small_stages, tmp_path: Path) -> None:
    """It trained under a new name (g-ngram-2), and the folder of the start that saved nothing
    stayed, listed by `charrnn runs` as an empty run."""
    root = tmp_path / "runs"
    folder = train_group.start([str(p) for p in _corpora(tmp_path)], 120.0, root, "g")
    info = group.read(folder)
    info["stages"][0]["state"] = "running"  # SIGKILL during the n-gram: its folder half made
    (root / "g-ngram").mkdir()
    (root / "g-ngram" / "run.json").write_text("{}")
    info["stages"][1]["state"] = "running"  # and one that saved a model, but no last/
    (root / "g-fwd" / "best").mkdir(parents=True)
    group.write(folder, info)
    named = []  # the run each stage's line names: the one that trains
    result = train_group.run(folder, lambda info, stage: named.append(stage["run"]) or
                             PlainReporter(), lambda line: None)
    assert result["outcome"] == "done" and named[:2] == ["g-ngram", "g-fwd-2"]
    assert [s["run"] for s in group.read(folder)["stages"][:2]] == ["g-ngram", "g-fwd-2"]
    assert dict(group.members(folder))["ngram"] == root / "g-ngram"
    assert (root / "g-fwd" / "best").is_dir()  # a model is never deleted


@pytest.mark.parametrize(("args", "message"), [
    ([], "give the corpus"),
    (["a.txt", "--max-time", "0"], "--max-time must be a positive number"),
    (["--resume", "nosuch"], "fill group 'nosuch' not found"),
    (["a.txt", "--resume", "g"], "drop a corpus"),
    (["--resume", "g", "--max-time", "0"], "drop --max-time"),  # 0 was taken for not typed
    (["a.txt", "--max-time", "60"], "--max-time 60 is too short for the group"),
    (["a.txt", "--max-time", "inf"], "--max-time must be a positive number"),  # was stored
    (["a.txt", "--device", "tpu"], "--device must be one of"),  # after the n-gram had trained

    (["empty.txt"], "empty.txt: the file has no text (empty or whitespace only)"),
    (["tiny.txt"], "fewer than one batch of the group's LMs"),
])
def test_fill_train_refuses_bad_input_in_one_line(tmp_path: Path, args, message) -> None:
    (tmp_path / "a.txt").write_text("我打算买一部新手机。\n" * 500, encoding="utf-8")
    (tmp_path / "empty.txt").write_text("\n", encoding="utf-8")
    (tmp_path / "tiny.txt").write_text("我打算买一部新手机。\n" * 20, encoding="utf-8")
    result = run_cli("fill", "train", *args, "--plain", ok=False)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "runs").exists() or not list((tmp_path / "runs").iterdir())


def test_a_taken_group_name_is_refused_before_anything_trains(small_stages, tmp_path: Path
                                                               ) -> None:
    a, _ = _corpora(tmp_path)
    (tmp_path / "runs" / "g-fwd").mkdir(parents=True)
    result = run_cli("fill", "train", a, "--run-name", "g", "--plain", ok=False)
    assert result.exit_code == 2 and "already exists" in result.output
    assert "--resume" not in result.output  # g is no group: --resume g would not find one
    assert not (tmp_path / "runs" / "g").exists()


def test_a_start_stopped_before_its_texts_were_written_leaves_the_name_free(
        small_stages, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The texts and group.json arrive together: a start stopped before (Ctrl-C) left a folder
    that --run-name refused and --resume could not find."""
    from charrnn.fill import group

    a, _ = _corpora(tmp_path)
    root = tmp_path / "runs"

    def stopped(folder: Path, info: dict) -> None:
        raise KeyboardInterrupt

    real_write = group.write
    monkeypatch.setattr(group, "write", stopped)
    with pytest.raises(KeyboardInterrupt):
        train_group.start([str(a)], 600.0, root, "g")
    assert [p.name for p in root.iterdir()] == ["g"] and not any((root / "g").iterdir())
    monkeypatch.setattr(group, "write", real_write)
    folder = train_group.start([str(a)], 600.0, root, "g")
    assert group.read(folder)["stages"][0]["state"] == "pending"
    assert sorted(p.name for p in folder.iterdir()) == ["group.json", "heldout", "train"]


def test_the_live_view_shows_every_stage_above_the_training_view() -> None:
    import io

    from rich.console import Console

    from charrnn.tui.fill_train_view import FillTrainView

    info = {"max_time": 1200.0, "spent_s": 30.0, "stages": [
        {"role": "ngram", "run": "g-ngram", "state": "done", "used_s": 9.0},
        {"role": "fwd", "run": "g-fwd", "state": "running", "budget_s": 500.0, "used_s": 200.0},
        {"role": "bwd", "run": "g-bwd", "state": "pending"},
        {"role": "mask", "run": "g-mask", "state": "pending"}]}
    console = Console(file=io.StringIO(), width=100, height=40)
    view = FillTrainView("g", info, console=console)
    view.train({"step": 10, "epoch": 0.1, "loss": 5.5, "lr": 1e-2, "tokens_per_s": 4000.0,
                "elapsed": 30.0, "eta": 400.0})
    console.print(view.render())
    text = console.file.getvalue()
    assert "fill group g · 0m30s of 20m00s spent" in text and "done in 0m09s" in text
    assert "▶  forward LM   g-fwd" in text and "budget 8m20s, 5m00s left" in text and "fill model" in text
    assert "loss 5.5000" in text  # the training view of the running stage below


@pytest.mark.parametrize(("width", "height"), [(100, 22), (80, 28), (60, 16), (40, 12)])
def test_the_live_view_fits_a_short_terminal_under_its_stage_panel(width: int, height: int
                                                                   ) -> None:
    """The training block took the terminal's whole height under the 6-line panel: at 100x22
    the block was cut off part-way (and a block taller than the screen smears)."""
    import io

    from rich.console import Console

    from charrnn.tui.fill_train_view import FillTrainView

    info = {"max_time": 1200.0, "spent_s": 30.0, "stages": [
        {"role": "ngram", "run": "g-ngram", "state": "done", "used_s": 9.0},
        {"role": "fwd", "run": "g-fwd", "state": "running", "budget_s": 500.0, "used_s": 200.0},
        {"role": "bwd", "run": "g-bwd", "state": "pending"},
        {"role": "mask", "run": "g-mask", "state": "pending"}]}
    console = Console(file=io.StringIO(), width=width, height=height)
    view = FillTrainView("g", info, console=console)
    view.sample = (10, "to be or not\nto be\nthat is\nthe question")
    for step in range(10, 60, 10):
        view.train({"step": step, "epoch": 0.1, "loss": 5.5 - step / 100, "lr": 1e-2,
                    "tokens_per_s": 4000.0, "elapsed": 30.0, "eta": 400.0})
    view.eval({"step": 50, "elapsed": 31.0, "best": True, "val_loss": 5.0, "val_bpc": 2.0})
    lines = console.render_lines(view.render(), console.options, pad=False)
    assert len(lines) < height and "forward LM" in "".join(s.text for line in lines for s in line)


def test_the_live_view_shows_the_fill_models_evaluation() -> None:
    """The fill model reports its loss per hidden token and the share guessed right, no bits per
    character: the view shows what it has (it raised KeyError 'val_bpc' at the stage's end)."""
    import io

    from rich.console import Console

    from charrnn.tui.fill_train_view import FillTrainView

    info = {"max_time": 1200.0, "spent_s": 1100.0, "stages": [
        {"role": "ngram", "run": "g-ngram", "state": "done", "used_s": 9.0},
        {"role": "fwd", "run": "g-fwd", "state": "done", "used_s": 500.0},
        {"role": "bwd", "run": "g-bwd", "state": "done", "used_s": 500.0},
        {"role": "mask", "run": "g-mask", "state": "running", "budget_s": 100.0}]}
    console = Console(file=io.StringIO(), width=100, height=40)
    view = FillTrainView("g", info, console=console)
    view.train({"step": 10, "epoch": 0.1, "loss": 6.5, "lr": 1e-2, "tokens_per_s": 4000.0,
                "elapsed": 30.0, "eta": 40.0})
    view.eval({"step": 10, "elapsed": 31.0, "best": True, "val_loss": 6.0368,
               "val_accuracy": 0.0803})
    console.print(view.render())
    text = console.file.getvalue()
    assert "val 6.0368 (best 6.0368)" in text and "8.0% right" in text
    assert "✓  n-gram" in text and "[green]" not in text


def test_a_skipped_stage_leaves_its_share_to_the_stages_after_it() -> None:
    info = {"stages": [{"role": "ngram", "state": "done"}, {"role": "fwd", "state": "skipped"},
                       {"role": "bwd", "state": "pending"}, {"role": "mask", "state": "pending"}]}
    left = 200.0 - 2 * train_group.RESERVE_S
    budget = train_group._budget(info, info["stages"][2], time.time() + 200.0)
    assert budget == pytest.approx(left * 0.45 / 0.55, abs=0.5)


def test_the_time_a_stage_spends_is_booked_while_it_runs(small_stages, tmp_path: Path) -> None:
    """A group killed mid-stage (SIGKILL) resumes knowing what it spent up to its last line."""
    folder = train_group.start([str(p) for p in _corpora(tmp_path)], 120.0, tmp_path / "runs", "g")
    seen: list[float] = []

    class Watch(PlainReporter):
        def train(self, rec: dict) -> None:
            super().train(rec)
            time.sleep(0.05)
            seen.append(group.read(folder)["spent_s"])

    train_group.run(folder, lambda info, stage: Watch() if stage["role"] == "fwd"
                    else PlainReporter(), lambda line: None)
    assert len(seen) >= 2 and seen[-1] > seen[0] > 0


def test_the_mixtures_at_the_end_are_booked_to_the_budget(small_stages, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    """'ready in 68 s' from a process that took 94: the mixtures' tuning was not booked."""
    folder = train_group.start([str(p) for p in _corpora(tmp_path)], 120.0, tmp_path / "runs", "g")
    tune = train_group.mixture_weights

    def slow_tuning(*args):  # a larger corpus's EM: a second
        time.sleep(1.0)
        return tune(*args)

    monkeypatch.setattr(train_group, "mixture_weights", slow_tuning)
    result = train_group.run(folder, lambda info, stage: PlainReporter(), lambda line: None)
    stages = sum(s.get("used_s", 0.0) for s in group.read(folder)["stages"])
    assert result["spent_s"] >= stages + 0.8  # (both rounded to 0.1 s)


def test_a_group_with_nothing_trained_yet_says_to_continue_it(tmp_path: Path) -> None:
    a, b = _corpora(tmp_path)
    train_group.start([str(a), str(b)], 120.0, tmp_path / "runs", "g")  # killed before a stage
    result = run_cli("fill", "我打算__一辆旧汽车", "-m", "g", ok=False)
    assert result.exit_code == 2
    assert "fill group g has no trained model yet" in result.output
    assert "charrnn fill train --resume g" in result.output


def test_a_stage_that_starts_anew_gets_a_share_of_what_is_left(small_stages, tmp_path: Path
                                                               ) -> None:
    """A fill model stopped before its first save trains again from the start: with a share of
    the group's time left, not its old budget on top of the time it already spent."""
    folder = train_group.start([str(p) for p in _corpora(tmp_path)], 300.0, tmp_path / "runs", "g")
    info = group.read(folder)
    for stage in info["stages"][:3]:
        stage["state"] = "done"
    info["stages"][3].update(state="stopped", budget_s=500.0, used_s=190.0)
    info["spent_s"] = 200.0
    group.write(folder, info)
    assert group.left_to_do(folder, info) == ["fill model"]  # no "of 500 s left": it restarts
    lines: list[str] = []
    result = train_group.run(folder, cli_fill._stage_reporters("g", False, lines.append),
                             lines.append)
    assert result["outcome"] == "done"
    budget = group.read(folder)["stages"][3]["budget_s"]
    assert budget == pytest.approx(100.0 - train_group.RESERVE_S, abs=2.0)
    assert lines[0] == f"[4/4] fill model: run g-mask, {budget:.0f} s"


def test_a_fill_model_stopped_half_way_continues_from_its_last_save(small_stages, tmp_path: Path
                                                                   ) -> None:
    root = tmp_path / "runs"
    folder = train_group.start([str(p) for p in _corpora(tmp_path)], 120.0, root, "g")

    result = train_group.run(folder, _ctrl_c_in("mask"), [].append)
    assert result["outcome"] == "interrupted" and result["left"][0].startswith("fill model (")
    stopped = json.loads((root / "g-mask" / "last" / "checkpoint.json").read_text())
    info = group.read(folder)  # (with time to spare: a group short of it caps the stage)
    info["spent_s"] = 0.0
    group.write(folder, info)
    lines: list[str] = []
    result = train_group.run(folder, cli_fill._stage_reporters("g", False, lines.append),
                             lines.append)
    assert result["outcome"] == "done" and not result["left"]
    assert lines[0].startswith("[4/4] fill model: run g-mask, continued: ")
    resumed = json.loads((root / "g-mask" / "last" / "checkpoint.json").read_text())
    assert resumed["progress"]["step"] == 30 > stopped["progress"]["step"]
    assert resumed["train"]["max_time"] == stopped["train"]["max_time"]  # on its own schedule
    assert not (root / "g-mask-2").exists()


def test_a_group_in_training_is_refused_to_a_second_process(tmp_path: Path) -> None:
    """Two processes trained one group side by side (g-fwd and g-fwd-2), the last to write
    group.json winning."""
    import subprocess
    import sys

    root = tmp_path / "runs"
    folder = train_group.start([str(p) for p in _corpora(tmp_path)], 300.0, root, "g")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys, time; from charrnn import runlock\n"
         f"with runlock.writer({str(folder)!r}, 'fill group'):\n"
         "    print('held', flush=True); time.sleep(60)"], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        result = run_cli("fill", "train", "--resume", "g", "--plain", ok=False)
        assert result.exit_code == 2
        assert f"fill group g is being trained by process {holder.pid}" in result.output
    finally:
        holder.kill()
        holder.communicate()
    assert not (root / "g-ngram").exists()


def test_an_lm_killed_before_its_first_save_starts_anew_with_a_share_of_what_is_left(
        small_stages, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    folder = train_group.start([str(p) for p in _corpora(tmp_path)], 300.0, root, "g")
    info = group.read(folder)
    for stage in info["stages"]:
        stage["state"] = "done"
    info["stages"][1].update(state="running", budget_s=500.0, used_s=150.0)
    (root / "g-fwd").mkdir()  # its folder made, no last/ saved yet
    info["spent_s"] = 200.0
    group.write(folder, info)
    lines: list[str] = []
    train_group.run(folder, cli_fill._stage_reporters("g", False, lines.append), lines.append)
    stage = group.read(folder)["stages"][1]
    assert stage["run"] == "g-fwd" and stage["state"] == "done"
    assert stage["budget_s"] == pytest.approx(100.0 - train_group.RESERVE_S, abs=2.0)
    assert lines[0] == f"[2/4] forward LM: run g-fwd, {stage['budget_s']:.0f} s"


def test_a_damaged_group_record_is_one_clear_error_and_runs_lists_it_damaged(tmp_path: Path
                                                                            ) -> None:
    root = tmp_path / "runs"
    folder = train_group.start([str(p) for p in _corpora(tmp_path)], 300.0, root, "g")
    info = group.read(folder)
    info["stages"][1]["role"] = "lm2"  # a later version's stage, or a hand edit
    group.write(folder, info)
    with pytest.raises(UserError, match="damaged or from a later version"):
        group.read(folder)
    listed = run_cli("runs", "--out", root)
    assert "Traceback" not in listed.output and "fill groups" in listed.output
    assert "g damaged" in " ".join(listed.output.split())  # a row, not a group that vanished
    info["stages"][1]["role"], info["created"] = "fwd", None
    group.write(folder, info)
    assert group.groups(root) == [] and group.damaged(root) == [folder]


def test_fill_without_a_model_refuses_a_damaged_newest_group_not_answering_from_other_runs(
        small_text: Path, tmp_path: Path) -> None:
    """The runs that answered instead (an older LM here) were not the group just trained, and
    nothing said so."""
    root = tmp_path / "runs"
    run_cli("train", small_text, *TINY, "--max-steps", "2", "--run-name", "lm")
    folder = train_group.start([str(p) for p in _corpora(tmp_path)], 300.0, root, "g")
    (folder / group.FILE).write_text("{not json")
    result = run_cli("fill", "to __ or not", ok=False)
    assert result.exit_code == 2 and "fill group g, the newest under" in result.output
    assert "is damaged (group.json cannot be read)" in result.output
    run_cli("fill", "to __ or not", "-m", "lm")  # its runs by name still answer


def test_an_old_damaged_group_does_not_stop_fill_answering_from_newer_runs(
        small_text: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    folder = train_group.start([str(p) for p in _corpora(tmp_path)], 300.0, root, "g")
    (folder / group.FILE).write_text("{not json")
    day_ago = time.time() - 86400
    os.utime(folder / group.FILE, (day_ago, day_ago))
    run_cli("train", small_text, *TINY, "--max-steps", "2", "--run-name", "lm")
    run_cli("fill", "to __ or not")


def test_a_skipped_stage_is_no_stage_left_and_a_lost_run_is_said(small_stages, tmp_path: Path
                                                                  ) -> None:
    """`charrnn runs` listed a skipped fill model as left to train (the budget is spent: a
    resume only skips it again); a group that lost a run answered without a word."""
    root = tmp_path / "runs"
    a, b = _corpora(tmp_path)
    run_cli("fill", "train", a, b, "--max-time", "120", "--plain", "--run-name", "g")
    info = group.read(root / "g")  # as if the budget had run out before the fill model
    info["stages"][3].update(state="skipped", run="g-mask-never")
    info["spent_s"] = 115.0
    group.write(root / "g", info)
    assert group.left_to_do(root / "g", info) == [] and group.skipped(info) == ["fill model"]
    listed = " ".join(run_cli("runs", "--out", root).output.split())
    assert "— ; skipped: fill model" in listed or "—; skipped: fill model" in listed
    resumed = run_cli("fill", "train", "--resume", "g", "--plain").output
    assert "skipped: fill model" in resumed and "`charrnn fill TEXT` uses it" in resumed
    later = train_group.start([str(a)], 300.0, root, "h")  # a newer group, trained in part
    newer = group.read(later)
    newer["stages"][0]["state"] = "done"
    group.write(later, newer)
    again = run_cli("fill", "train", "--resume", "g", "--plain").output
    assert "`charrnn fill TEXT -m g` uses it (without -m: the newest group)" in again
    shutil.rmtree(root / "g-bwd")
    answer = run_cli("fill", "我打算__一辆旧汽车", "-m", "g", "--json")
    assert "note: fill group g lost backward LM (g-bwd) (the run folder is gone)" in answer.stderr
    assert "gone: backward LM (g-bwd)" in " ".join(run_cli("runs", "--out", root).output.split())


def test_a_budget_too_short_for_every_stage_goes_without_the_fill_model_before_an_lm() -> None:
    """A resumed group skipped its backward LM (19 s, under 20) and then gave the fill model 39 s:
    the bidirectional method then had no backward model."""
    now = time.time()
    info = {"stages": [{"role": "ngram", "state": "done"}, {"role": "fwd", "state": "done"},
                       {"role": "bwd", "state": "pending"}, {"role": "mask", "state": "pending"}]}
    bwd = train_group._budget(info, info["stages"][2], now + 55.0)
    assert bwd == pytest.approx(55.0 - train_group.RESERVE_S, abs=0.5)  # the fill model's too
    info["stages"][0]["state"] = "pending"  # a first start of 100 s: the LMs share it
    first = {"stages": [dict(s, state="pending") for s in info["stages"]]}
    fwd = train_group._budget(first, first["stages"][1], now + 94.0)
    assert fwd == pytest.approx((94.0 - 2 * train_group.RESERVE_S) / 2, abs=0.5)
    roomy = train_group._budget(first, first["stages"][1], now + 1000.0)  # every stage its share
    assert roomy == pytest.approx((1000.0 - 3 * train_group.RESERVE_S) * 0.45, abs=0.5)


def test_a_skipped_stage_tried_again_on_resume_shares_with_those_left() -> None:
    """A group resumed after a stage was skipped tries it again: with what is left, not a
    division by nothing or a multiple of the budget."""
    done, now = {"state": "done"}, time.time()
    info = {"stages": [{"role": "ngram", **done}, {"role": "fwd", **done}, {"role": "bwd", **done},
                       {"role": "mask", "state": "skipped"}]}
    assert train_group._budget(info, info["stages"][3], now + 100.0) == pytest.approx(85.0, abs=0.5)
    info = {"stages": [{"role": "ngram", **done}, {"role": "fwd", "state": "skipped"},
                       {"role": "bwd", **done}, {"role": "mask", "state": "stopped", "budget_s": 9.0}]}
    budget = train_group._budget(info, info["stages"][1], now + 100.0)
    assert budget == pytest.approx(70.0 * 0.45 / 0.55, abs=0.5)


def test_the_least_text_a_group_takes_is_one_batch_of_its_lms(tmp_path: Path) -> None:
    from charrnn.lm.batching import TBPTTStream

    need = TBPTTStream.min_tokens(train_group.LM.batch_size, train_group.LM.seq_len)

    def text_with_head(chars: int) -> str:  # one line: the held-out tail is cut where it falls
        n = chars
        while len(group.split_text("字" * n, train_group.HELDOUT)[0]) < chars:
            n += 1
        assert len(group.split_text("字" * n, train_group.HELDOUT)[0]) == chars
        return "字" * n

    with pytest.raises(UserError, match="fewer than one batch"):
        train_group._check_texts([(tmp_path / "a.txt", text_with_head(need - 1))])
    train_group._check_texts([(tmp_path / "a.txt", text_with_head(need))])
    TBPTTStream.check(need, train_group.LM.batch_size, train_group.LM.seq_len)  # the LM agrees
    with pytest.raises(UserError):
        TBPTTStream.check(need - 1, train_group.LM.batch_size, train_group.LM.seq_len)


def test_an_empty_file_in_a_corpus_folder_is_passed_over_as_preprocess_does(tmp_path: Path
                                                                           ) -> None:
    """`fill train FOLDER` refused the folder for one empty file in it, which preprocess and
    ngram train read past."""
    from charrnn.fill.train_group import _check_texts

    text = "我打算买一部新手机。\n" * 500
    kept = _check_texts([(tmp_path / "a.txt", text), (tmp_path / "empty.txt", " \n")])
    assert [path.name for path, _, _ in kept] == ["a.txt"]


def test_a_stage_continued_late_trains_no_longer_than_the_group_has_left(small_stages,
                                                                         tmp_path: Path) -> None:
    """A group stopped late in its backward LM continued it on the LM's own schedule as of its
    last save, on top of the time already booked after that save: 106 s of a 100 s budget."""
    root = tmp_path / "runs"
    folder = train_group.start([str(p) for p in _corpora(tmp_path)], 120.0, root, "g")
    assert train_group.run(folder, _ctrl_c_in("bwd"), [].append)["outcome"] == "interrupted"
    stopped = json.loads((root / "g-bwd" / "last" / "checkpoint.json").read_text())
    info = group.read(folder)  # the group's time nearly spent (booked after bwd's last save)
    info["spent_s"] = info["max_time"] - train_group.RESERVE_S - 5.0
    group.write(folder, info)
    lines: list[str] = []
    result = train_group.run(folder, cli_fill._stage_reporters("g", False, lines.append),
                             lines.append)
    assert result["outcome"] == "done" and result["skipped"] == ["fill model"]
    capped = re.match(r"\[3/4\] backward LM: run g-bwd, continued: (\d+) s \(what the group's "
                      r"budget has left for it; its own schedule had ", lines[0])
    assert capped and 3 <= int(capped.group(1)) <= 5, lines[0]  # (less where start-up was slow)
    resumed = json.loads((root / "g-bwd" / "last" / "checkpoint.json").read_text())
    assert resumed["train"]["max_time"] == pytest.approx(
        stopped["progress"]["elapsed"] + int(capped.group(1)), abs=1.0)
    assert resumed["train"]["max_time"] < stopped["train"]["max_time"]


def test_a_stop_while_the_mixtures_are_tuned_says_they_are_left_and_resumes(
        small_stages, tmp_path: Path, monkeypatch) -> None:
    """A Ctrl-C then said only 'interrupted': no resume line, and the group looked finished but
    for nothing named (fill went on with unmixed LMs)."""
    folder = train_group.start([str(p) for p in _corpora(tmp_path)], 120.0, tmp_path / "runs", "g")
    tune = train_group.mixture_weights

    def stopped(*args):
        raise KeyboardInterrupt

    monkeypatch.setattr(train_group, "mixture_weights", stopped)
    result = train_group.run(folder, lambda info, stage: PlainReporter(), [].append)
    assert result["outcome"] == "interrupted" and result["left"] == ["mixture weights"]
    info = group.read(folder)
    assert group.left_to_do(folder, info) == ["mixture weights"] and info["spent_s"] > 0
    monkeypatch.setenv("CHARRNN_RUNS", str(tmp_path / "runs"))  # fill says so: LMs unmixed
    said = run_cli("fill", "我打算__一辆旧汽车", "--json").stderr
    assert "note: fill group g is not finished (mixture weights still to train)" in said
    monkeypatch.setattr(train_group, "mixture_weights", tune)
    result = train_group.run(folder, lambda info, stage: PlainReporter(), [].append)
    assert result["outcome"] == "done" and set(result["mix"]) == {"fwd", "bwd"}
    assert group.left_to_do(folder, group.read(folder)) == []


def test_fill_says_when_it_passes_over_a_newer_group_with_nothing_trained(
        small_stages, tmp_path: Path, monkeypatch) -> None:
    """A group stopped in its first stage was passed over for an older one (maybe of another
    text) without a word."""
    root = tmp_path / "runs"
    corpora = [str(p) for p in _corpora(tmp_path)]
    old = train_group.start(corpora, 120.0, root, "old")
    train_group.run(old, lambda info, stage: PlainReporter(), [].append)
    time.sleep(0.01)  # (created after it)
    train_group.start(corpora, 120.0, root, "new")
    monkeypatch.setenv("CHARRNN_RUNS", str(root))
    result = run_cli("fill", "我打算__一辆旧汽车", "--json")
    assert "old-fwd" in json.loads(result.stdout)["models"]["fwd"]
    assert ("note: fill group new, newer, has no trained model yet (if it is not training now, "
            "`charrnn fill train --resume new` trains it): fill group old answers") in result.stderr


def test_a_stage_books_its_start_up_before_its_first_training_line(small_stages, tmp_path: Path
                                                                   ) -> None:
    """Preparing the data and building the model went unbooked until the first training line:
    a group killed before it, again and again, spent time its budget never saw."""
    folder = train_group.start([str(p) for p in _corpora(tmp_path)], 120.0, tmp_path / "runs", "g")
    seen: list[float] = []

    class Watch(PlainReporter):
        def __init__(self) -> None:
            super().__init__()
            seen.append(group.read(folder)["spent_s"])  # as booked when the stage began

        def train(self, rec: dict) -> None:
            if len(seen) == 1:  # the first line, before it books
                seen.append(group.read(folder)["spent_s"])
            super().train(rec)

    train_group.run(folder, lambda info, stage: Watch() if stage["role"] == "fwd"
                    else PlainReporter(), lambda line: None)
    assert len(seen) == 2 and seen[1] > seen[0]
