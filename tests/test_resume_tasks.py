"""--resume of the stateless tasks: a fill model (`charrnn train --resume`) and a tagger
(`charrnn tag train --resume`) continue exactly, as a language model does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from helpers import TINY, run_cli

# A flat learning rate after warm-up, so a run stopped early follows the longer run's schedule.
FLAT = ["--min-lr-ratio", "1", "--log-every", "1"]


def _losses(run: Path) -> dict[int, float]:
    records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return {r["step"]: r["loss"] for r in records if r["type"] == "train"}


def _same_after(whole: Path, split: Path, first: int, last: int) -> None:
    a, b = _losses(whole), _losses(split)
    assert sorted(b) == list(range(1, last + 1))
    for step in range(first, last + 1):
        assert b[step] == pytest.approx(a[step], rel=1e-5, abs=1e-6), step


def test_a_fill_model_resumed_follows_the_uninterrupted_loss_curve(small_text: Path,
                                                                   tmp_path: Path) -> None:
    args = [small_text, "--task", "fill", *TINY, *FLAT, "--dropout", "0.2"]
    run_cli("train", *args, "--max-steps", "24", "--run-name", "whole")
    run_cli("train", *args, "--max-steps", "10", "--run-name", "split")
    result = run_cli("train", "--resume", "split", "--max-steps", "24")
    assert "resuming" in result.output and "at step 10 | cpu | fill model" in result.output
    assert result.output.count("| cpu") == 1  # (the device was said twice)
    _same_after(tmp_path / "runs/whole", tmp_path / "runs/split", 11, 24)
    meta = json.loads((tmp_path / "runs/split/last/checkpoint.json").read_text())
    assert meta["task"] == "fill" and meta["progress"]["step"] == 24


def test_a_new_fill_model_says_and_records_the_settings_typed(small_text: Path,
                                                               tmp_path: Path) -> None:
    """A language model's header has a settings line; --task fill's had none."""
    result = run_cli("train", small_text, "--task", "fill", *TINY, "--max-steps", "2",
                     "--dropout", "0.2", "--run-name", "m")
    line = next(x for x in result.output.splitlines() if x.startswith("settings: "))
    assert "dropout 0.2" in line and "max-steps 2" in line and line.endswith("(typed)")
    sources = json.loads((tmp_path / "runs/m/run.json").read_text())["sources"]
    assert sources["dropout"] == "typed"


def test_a_resumed_fill_model_refuses_language_model_options_and_another_task(
        small_text: Path) -> None:
    run_cli("train", small_text, "--task", "fill", *TINY, "--max-steps", "4", "--run-name", "m")
    result = run_cli("train", "--resume", "m", "--tie-weights", ok=False)
    assert result.exit_code == 2 and "--tie-weights does not apply to --task fill" in result.output
    result = run_cli("train", "--resume", "m", "--hidden", "64", ok=False)
    assert result.exit_code == 2 and "--hidden 64 (the run has 32)" in result.output
    run_cli("train", small_text, *TINY, "--max-steps", "4", "--run-name", "lm")
    result = run_cli("train", "--resume", "lm", "--task", "fill", ok=False)
    assert result.exit_code == 2 and "run lm is a language model" in result.output


def test_a_fill_model_refuses_evaluation_options_its_data_gives_no_window_for(
        small_text: Path, tmp_path: Path) -> None:
    """--val-frac 0 in a dataset folder, or a validation split shorter than one window: the
    options typed for evaluations were ignored with a note (the guess read only what was typed)."""
    run_cli("preprocess", small_text, "--out", tmp_path / "ds", "--val-frac", "0")
    result = run_cli("train", tmp_path / "ds", "--task", "fill", *TINY, "--eval-every", "2",
                     "--run-name", "a", ok=False)
    assert result.exit_code == 2 and "--eval-every: the data has no validation split" in \
        result.output and not (tmp_path / "runs/a").exists()
    at = TINY.index("--eval-every")  # 13 validation characters, fewer than one window:
    short = [small_text, "--task", "fill", *TINY[:at], *TINY[at + 2:], "--val-frac", "0.001",
             "--seq-len", "64"]
    result = run_cli("train", *short, "--patience", "2", "--run-name", "b", ok=False)
    assert result.exit_code == 2 and "--patience: the data has no validation split" in result.output
    assert "a fill model's one --seq-len window" in result.output
    run_cli("train", *short, "--max-steps", "2", "--run-name", "b")
    result = run_cli("train", "--resume", "b", "--max-steps", "4", "--patience", "2", ok=False)
    assert result.exit_code == 2 and "--patience: the data has no validation split" in result.output


# ---- the tagger ---------------------------------------------------------------------------------
TAG = ["--format", "conll", "--features", "1", "--hidden", "32", "--emb", "16", "--batch-size",
       "8", "--quiet", "--seed", "1", "--token-dropout", "0.2", "--dropout", "0.3", "--warmup",
       "5", *FLAT]


def test_a_tagger_resumed_follows_the_uninterrupted_loss_curve(tmp_path: Path) -> None:
    from test_tagger import _conll

    train = _conll(tmp_path / "train.txt", 120, 0)  # 114 train sentences: 15 steps an epoch
    run_cli("tag", "train", train, *TAG, "--max-steps", "40", "--run-name", "whole")
    run_cli("tag", "train", train, *TAG, "--max-steps", "20", "--run-name", "split")
    result = json.loads(run_cli("tag", "train", "--resume", "split", "--max-steps", "40",
                                "--json").stdout)
    assert result["step"] == 40
    # The last evaluation's scores apart and named so (beside best_val they read as the run's).
    assert "accuracy" not in result and result["last_eval"]["accuracy"] >= 0
    _same_after(tmp_path / "runs/whole", tmp_path / "runs/split", 21, 40)


def test_a_tagger_resumes_from_its_text_given_again_and_refuses_other_text(tmp_path: Path) -> None:
    from test_tagger import _conll

    train = _conll(tmp_path / "train.txt", 60, 0)
    run_cli("tag", "train", train, *TAG, "--max-steps", "4", "--run-name", "t")
    moved = train.rename(tmp_path / "moved.txt")
    gone = run_cli("tag", "train", "--resume", "t", "--max-steps", "8", ok=False)
    assert gone.exit_code == 2 and "which is gone: give the same text again as DATA" in gone.output
    other = _conll(tmp_path / "other.txt", 60, 1)
    result = run_cli("tag", "train", other, "--resume", "t", "--max-steps", "8", ok=False)
    assert result.exit_code == 2 and "is not what run t trained on" in result.output
    run_cli("tag", "train", moved, "--resume", "t", "--max-steps", "8")
    assert json.loads((tmp_path / "runs/t/last/checkpoint.json").read_text())["progress"][
        "step"] == 8


def test_a_resumed_tagger_keeps_its_settings_and_folder(tmp_path: Path) -> None:
    from test_tagger import _conll

    train = _conll(tmp_path / "train.txt", 60, 0)
    run_cli("tag", "train", train, *TAG, "--max-steps", "4", "--run-name", "t")
    for extra, said in ((["--hidden", "64"], "--hidden 64 (the run has 32)"),
                        (["--features", "1,2"], "--features [1, 2] (the run has [1])"),
                        (["--run-name", "u"], "a resumed run keeps its folder"),
                        (["--valid", train], "so it takes none; drop --valid"),
                        (["--max-steps", "3"], "has spent its budget, --max-steps 3")):
        result = run_cli("tag", "train", "--resume", "t", *extra, ok=False)
        assert result.exit_code == 2 and said in result.output, (extra, result.output)
    assert run_cli("tag", "train", ok=False).exit_code == 2
    again = run_cli("tag", "train", train, *TAG, "--run-name", "t", ok=False)
    assert "or continue it with `charrnn tag train --resume t`" in again.output


def test_a_resumed_tagger_with_a_valid_file_refuses_a_val_frac(tmp_path: Path) -> None:
    """--val-frac 0.05 (its default's neighbour) on a run validated on --valid was taken and
    ignored; 0.2 said the data differed."""
    from test_tagger import _conll

    train, valid = _conll(tmp_path / "train.txt", 60, 0), _conll(tmp_path / "valid.txt", 10, 1)
    run_cli("tag", "train", train, "--valid", valid, *TAG, "--max-steps", "2", "--run-name", "v")
    result = run_cli("tag", "train", "--resume", "v", "--val-frac", "0.05", "--max-steps", "3",
                     ok=False)
    assert result.exit_code == 2 and "validation sentences are its --valid file's" in result.output


def test_a_stop_saves_without_an_evaluation_so_best_and_patience_are_the_whole_runs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stop's own evaluation counted towards --patience: a Ctrl-C at step 13 of a run that
    stops early at step 16 became an early stop there (exit 0, no resume hint)."""
    from test_tagger import _conll

    from charrnn.training.loop import Loop

    train = _conll(tmp_path / "train.txt", 120, 0)
    args = [*TAG, "--max-steps", "60", "--eval-every", "4", "--patience", "2", "--lr", "0.2"]
    whole = json.loads(run_cli("tag", "train", train, *args, "--run-name", "whole",
                               "--json").stdout)
    assert whole["outcome"] == "early-stopped" and whole["step"] < 60
    real_step = Loop.step

    def stop_at(self):
        loss = real_step(self)
        if self.progress.step == whole["step"] - 3:
            self.stop.requested = True
        return loss

    monkeypatch.setattr(Loop, "step", stop_at)
    cut = run_cli("tag", "train", train, *args, "--run-name", "cut", "--json", ok=False)
    assert cut.exit_code == 130 and json.loads(cut.stdout)["outcome"] == "interrupted"
    monkeypatch.setattr(Loop, "step", real_step)
    resumed = json.loads(run_cli("tag", "train", "--resume", "cut", "--json").stdout)
    assert (resumed["outcome"], resumed["step"]) == (whole["outcome"], whole["step"])

    def evals(run: str) -> list[int]:
        lines = (tmp_path / "runs" / run / "metrics.jsonl").read_text().splitlines()
        return [r["step"] for r in map(json.loads, lines) if r["type"] == "eval"]

    assert evals("cut") == evals("whole")
    best = [json.loads((tmp_path / "runs" / r / "best/checkpoint.json").read_text())["progress"]
            ["step"] for r in ("whole", "cut")]
    assert best[0] == best[1]


def test_a_resumed_tagger_records_where_it_read_and_mends_its_run_json(tmp_path: Path) -> None:
    """It kept the old path (every later resume asked for DATA again) and a damaged run.json."""
    from test_tagger import _conll

    train = _conll(tmp_path / "train.txt", 60, 0)
    run_cli("tag", "train", train, *TAG, "--max-steps", "4", "--run-name", "t")
    moved = train.rename(tmp_path / "moved.txt")
    (tmp_path / "runs/t/run.json").write_text("{", encoding="utf-8")
    result = run_cli("tag", "train", moved, "--resume", "t", "--max-steps", "6")
    assert "run.json was unreadable: written again from the checkpoint" in result.output
    assert json.loads((tmp_path / "runs/t/run.json").read_text())["kind"] == "tag"
    run_cli("tag", "train", "--resume", "t", "--max-steps", "8")  # from where it read last
    assert json.loads((tmp_path / "runs/t/last/checkpoint.json").read_text())["data"]["train"][
        "path"] == str(moved.resolve())


def test_a_resumed_tagger_without_validation_refuses_patience(tmp_path: Path) -> None:
    from test_tagger import _conll

    train = _conll(tmp_path / "train.txt", 60, 0)
    run_cli("tag", "train", train, *TAG, "--val-frac", "0", "--max-steps", "4", "--run-name", "t")
    result = run_cli("tag", "train", "--resume", "t", "--max-steps", "6", "--patience", "2",
                     ok=False)
    assert result.exit_code == 2 and "--patience: the data has no validation split" in result.output


def test_a_resume_from_best_says_so_and_a_fill_group_is_named_as_one(small_text: Path,
                                                                     tmp_path: Path) -> None:
    import shutil

    run_cli("train", small_text, "--task", "fill", *TINY, "--max-steps", "10", "--run-name", "m")
    shutil.rmtree(tmp_path / "runs/m/last")
    result = run_cli("train", "--resume", "m", "--max-steps", "12")
    assert "at step 10 from best/ (last/ is missing or damaged: the steps after it are trained again)" in \
        result.output
    run_cli("train", small_text, *TINY, "--max-steps", "10", "--run-name", "d")
    last = tmp_path / "runs/d/last"  # damaged, not missing: it was an error naming the damage
    for steps, damage in ((11, lambda: (last / "state.safetensors").write_bytes(b"\0" * 100)),
                          (12, lambda: (last / "checkpoint.json").write_text("", encoding="utf-8"))):
        damage()
        result = run_cli("train", "--resume", "d", "--max-steps", steps)
        assert "from best/ (last/ is missing or damaged" in result.output
        shutil.rmtree(last, ignore_errors=True)
        shutil.copytree(tmp_path / "runs/d/best", last)  # (the resume saved a whole last/)
    (last / "checkpoint.json").write_text("", encoding="utf-8")
    named = run_cli("train", "--resume", tmp_path / "runs/d/last", "--max-steps", "13", ok=False)
    assert named.exit_code == 2 and "not readable JSON" in named.output  # asked for: its error
    (tmp_path / "runs/g").mkdir()
    (tmp_path / "runs/g/group.json").write_text("{}", encoding="utf-8")
    for command in (["train", "--resume", "g"], ["tag", "train", "--resume", "g"]):
        refused = run_cli(*command, ok=False)
        assert refused.exit_code == 2 and "g is a fill group, not a run" in refused.output
        assert "`charrnn fill train --resume g` continues it" in refused.output


def test_a_finished_run_refuses_a_patience_it_would_never_use(small_text: Path,
                                                               tmp_path: Path) -> None:
    """--patience typed on a run whose budget is spent said "done" and changed nothing."""
    from test_tagger import _conll

    run_cli("train", small_text, "--task", "fill", *TINY, "--max-steps", "4", "--run-name", "m")
    result = run_cli("train", "--resume", "m", "--patience", "2", ok=False)
    assert result.exit_code == 2 and "has spent its budget, --max-steps 4" in result.output
    # the bound spent is not the one typed: said as the run's own (it read as the --epochs typed)
    assert "(the run's own: a resume keeps it beside the --patience typed)" in result.output
    result = run_cli("train", "--resume", "m", "--epochs", "1", ok=False)
    assert "--max-steps 4 (it is at step 4) (the run's own: a resume keeps it beside the "\
        "--epochs typed)" in result.output
    train = _conll(tmp_path / "train.txt", 30, 0)
    run_cli("tag", "train", train, "--format", "conll", "--hidden", "8", "--emb", "8",
            "--char-filters", "0", "--quiet", "--run-name", "t")  # 10 epochs, the default
    result = run_cli("tag", "train", "--resume", "t", "--patience", "2", ok=False)
    assert result.exit_code == 2 and "--epochs 10 (the default)" in result.output


@pytest.mark.parametrize(("field", "value", "said"), [
    ("step", -5, "progress.step is -5"),  # it resumed "at step -5", from warm-up
    ("pos", 100000, "progress.pos 100000 is past the"),  # an internal RuntimeError
    ("elapsed", float("nan"), "progress.elapsed is nan"),  # --max-time never stopped it
])
def test_a_damaged_progress_field_is_a_one_line_error_naming_it(small_text: Path, tmp_path: Path,
                                                                field, value, said) -> None:
    run_cli("train", small_text, *TINY, "--max-steps", "4", "--run-name", "r")
    for name in ("best", "last"):
        meta = tmp_path / "runs/r" / name / "checkpoint.json"
        data = json.loads(meta.read_text())
        data["progress"][field] = value
        meta.write_text(json.dumps(data))
    result = run_cli("train", "--resume", "r", "--max-steps", "8", ok=False)
    assert result.exit_code == 2 and said in result.output and "internal" not in result.output


def test_a_resume_with_a_new_budget_says_the_schedule_moves_with_it(small_text: Path,
                                                                    tmp_path: Path) -> None:
    """The lr of a run ended at its floor rose again (6.00e-04 to 8.53e-04), and nothing said so."""
    run_cli("train", small_text, *TINY, "--max-steps", "10", "--run-name", "r")
    moved = run_cli("train", "--resume", "r", "--max-steps", "20").output.splitlines()[0]
    assert "budget changed: the lr schedule spans the new one (lr " in moved, moved
    same = run_cli("train", "--resume", "r", "--max-steps", "20", ok=False).output
    assert "budget changed" not in same  # (spent: refused, and no change to speak of)
    kept = run_cli("train", "--resume", "r").output  # the run's own budget: nothing to say
    assert "budget changed" not in kept


def test_a_quiet_tagger_resume_from_best_still_says_so_and_names_the_device_once(
        tmp_path: Path) -> None:
    """--quiet hid that the steps after best/ are trained again; the resume line said
    '| cpu |' twice."""
    import shutil

    from test_tagger import _conll

    train = _conll(tmp_path / "train.txt", 60, 0)
    run_cli("tag", "train", train, *TAG, "--max-steps", "4", "--run-name", "t")
    loud = run_cli("tag", "train", "--resume", "t", "--max-steps", "5").output
    assert loud.count("| cpu") == 1, loud
    shutil.rmtree(tmp_path / "runs/t/last")
    quiet = run_cli("tag", "train", "--resume", "t", "--max-steps", "6", "--quiet")
    assert "note: resuming from best/ (last/ is missing or damaged" in quiet.stderr


def test_a_damaged_resume_state_names_the_command_that_resumes_from_best(small_text: Path,
                                                                        tmp_path: Path) -> None:
    """It said 'resume from the run's other checkpoint' and left the user to find how."""
    run_cli("train", small_text, *TINY, "--max-steps", "10", "--run-name", "d")
    meta = tmp_path / "runs/d/last/checkpoint.json"
    saved = json.loads(meta.read_text())
    saved["progress"]["step"] = -5
    meta.write_text(json.dumps(saved))
    result = run_cli("train", "--resume", "d", "--max-steps", "12", ok=False)
    assert "resume state is incomplete or damaged (progress.step is -5" in result.output
    assert f"(--resume {tmp_path / 'runs/d/best'}; it restarts from its own step)" in result.output


def test_a_run_folder_that_lost_its_run_json_says_how_to_write_it_again(tiny_run: Path,
                                                                       tmp_path: Path) -> None:
    """eval RUN --split val said 'give a FILE or --split, not both' (the folder read as FILE),
    and --resume RUN 'not found' without naming RUN/last, which works."""
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(tiny_run, run)
    (run / "run.json").unlink()
    for command in (["eval", run, "--split", "val"], ["train", "--resume", run]):
        result = run_cli(*command, ok=False)
        assert result.exit_code == 2 and f"{run} has no run.json (lost or removed)" in \
            result.output and f"`charrnn train --resume {run / 'last'}` writes it again" in \
            result.output, result.output
    run_cli("train", "--resume", run / "last", "--max-steps", "41")
    assert "split:val" in run_cli("eval", run, "--split", "val").output


def test_a_resume_by_path_refuses_an_out_that_does_not_hold_the_run(small_text: Path,
                                                                     tmp_path: Path) -> None:
    """--out was ignored: the run went on in its own folder, not in the root typed."""
    run_cli("train", small_text, *TINY, "--max-steps", "2", "--run-name", "m")
    result = run_cli("train", "--resume", tmp_path / "runs/m", "--out", tmp_path / "other",
                     "--max-steps", "3", ok=False)
    assert result.exit_code == 2 and "is not in it, and a resumed run stays in its own folder" \
        in result.output
    assert not (tmp_path / "other").exists()
    run_cli("train", "--resume", tmp_path / "runs/m", "--out", tmp_path / "runs", "--max-steps", "3")
