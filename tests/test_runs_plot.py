"""`charrnn runs` (the table of runs) and `charrnn plot` (PNG curves)."""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

import pytest

from charrnn.lm.model import load_lm
from charrnn.runstats import read_metrics, safetensors_params, summary
from helpers import TINY, run_cli


def test_runs_lists_each_run_with_its_best_scores(tiny_run: Path, tmp_path: Path) -> None:
    root = tmp_path / "runs"
    shutil.copytree(tiny_run, root / "tiny")
    broken = root / "broken"  # a run that never got a checkpoint still gets its row
    broken.mkdir()
    (broken / "run.json").write_text(json.dumps({"kind": "rnn", "created": 1.0}))
    (root / "not-a-run").mkdir()
    out = run_cli("runs", "--out", root).output
    assert "tiny" in out and "broken" in out and "not-a-run" not in out
    assert summary(broken)["kind"] == "lm"  # a run.json of before 0.2 ("rnn") reads as today's
    row = summary(root / "tiny")
    _train, evals = read_metrics(root / "tiny")
    best = min(evals, key=lambda r: r["val_loss"])
    assert row["steps"] == 40 and row["level"] == "char" and row["kind"] == "lm"
    assert row["val_loss"] == best["val_loss"] and row["val_bpc"] == best["val_bpc"]
    assert f"{best['val_loss']:.4f}" in out and f"{best['val_bpc']:.4f}" in out
    from charrnn import checkpoint

    model = load_lm(checkpoint.resolve(str(root / "tiny"), root))
    assert row["params"] == sum(p.numel() for p in model.parameters())
    assert safetensors_params(root / "tiny" / "nope.safetensors") is None


def test_runs_prints_numbers_whole_in_80_columns_and_lists_damaged_runs(
        tiny_run: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    root = tmp_path / "runs"
    long_name = "a-very-long-run-name-for-the-big-experiment_2026-11-23_16-49-50"
    shutil.copytree(tiny_run, root / long_name)
    (root / "garbage").mkdir()
    (root / "garbage" / "run.json").write_text("{not json")
    out = run_cli("runs", "--out", root).output
    row = summary(root / long_name)
    assert f"{row['val_loss']:.4f}" in out and f"{row['val_bpc']:.4f}" in out
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80
    damaged = next(line for line in out.splitlines() if line.startswith("garbage"))
    assert "damaged" in damaged and "unreadable" in damaged


def test_runs_piped_keeps_every_row_whole(tiny_run: Path, tmp_path: Path, monkeypatch) -> None:
    """`charrnn runs | cat` folded names at 80 columns: '2026-12-06 / _19-37-57_ / ngram'."""
    monkeypatch.delenv("COLUMNS", raising=False)
    root = tmp_path / "runs"
    long_name = "a-very-long-run-name-for-the-big-experiment_2026-11-23_16-49-50"
    shutil.copytree(tiny_run, root / long_name)
    out = run_cli("runs", "--out", root).output
    row = next(line for line in out.splitlines() if long_name in line)
    assert f"{summary(root / long_name)['val_bpc']:.4f}" in row


@pytest.mark.parametrize("damage", ["checkpoint progress a list", "metrics step a string",
                                    "metrics val_loss null"])
def test_runs_and_plot_read_damaged_files_that_are_still_json_as_blank_cells(
        tiny_run: Path, tmp_path: Path, damage: str) -> None:
    """Each of these ended `runs` (and `plot`) in an internal error (exit 1)."""
    root = tmp_path / "runs"
    shutil.copytree(tiny_run, root / "r")
    if damage.startswith("checkpoint"):
        (root / "r/best/checkpoint.json").write_text('{"progress": [1], "tokenizer": "x"}')
    else:
        record = {"type": "eval", "step": "7", "val_loss": 1.0} if "step" in damage else \
            {"type": "eval", "step": 41, "val_loss": None, "val_bpc": "x"}
        with open(root / "r/metrics.jsonl", "a") as handle:
            handle.write(json.dumps(record) + "\n")
    row = summary(root / "r")
    assert row["steps"] == 40 and row["val_loss"] is not None
    assert "r " in run_cli("runs", "--out", root).output
    pytest.importorskip("matplotlib")
    run_cli("plot", "r", "--out", root, "--png", tmp_path / "r.png")
    assert (tmp_path / "r.png").stat().st_size > 0


@pytest.mark.parametrize("field, value", [("created", None), ("dataset", 5), ("kind", ["x"])])
def test_a_run_json_with_a_field_of_the_wrong_type_is_listed_as_damaged_not_a_crash(
        tiny_run: Path, tmp_path: Path, field: str, value: object) -> None:
    root = tmp_path / "runs"
    shutil.copytree(tiny_run, root / "good")
    shutil.copytree(tiny_run, root / "bad")
    info = json.loads((root / "bad/run.json").read_text())
    (root / "bad/run.json").write_text(json.dumps({**info, field: value}))
    rows = run_cli("runs", "--out", root).output.splitlines()
    assert any(row.startswith("good ") for row in rows)
    assert "damaged" in next(row for row in rows if row.startswith("bad "))
    assert run_cli("compare", "--out", root).exit_code == 0
    run_cli("sample", "--out", root, "--length", "5")  # the newest readable run
    result = run_cli("eval", "bad", "--out", root, ok=False)
    assert result.exit_code == 2 and f"its '{field}' is {json.dumps(value)}, not what this " \
        "version reads; `charrnn train --resume" in " ".join(result.output.split())
    run_cli("train", "--resume", "bad", "--out", root, "--max-steps", "41")
    assert run_cli("eval", "bad", "--out", root).exit_code == 0


def test_runs_on_an_empty_root_says_so(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    out = run_cli("runs", "--out", tmp_path / "empty").output
    assert "no runs under" in out


def test_plot_writes_a_png_for_several_runs(tiny_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    out = tmp_path / "plots" / "curves.png"
    result = run_cli("plot", tiny_run, str(tiny_run), "--png", out)
    assert str(out) in result.output
    data = out.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 10_000


def test_a_single_training_record_is_drawn_as_a_point() -> None:
    """One train record (a run stopped before its second log line) was a line with no length:
    nothing showed on the loss panel."""
    pytest.importorskip("matplotlib")
    from charrnn import plot

    plt = plot._pyplot()
    one = [("r", "lm", [{"step": 30, "loss": 3.9}], [{"step": 30, "val_loss": 3.7}])]
    many = [("r", "lm", [{"step": s, "loss": 3.9} for s in (10, 20)], [])]
    for curves, marker in ((one, "o"), (many, "None")):
        fig = plot._figure(plt, curves)
        assert fig.axes[0].lines[0].get_marker() == marker
        plt.close(fig)


def test_plot_errors_are_one_line(tiny_run: Path, tmp_path: Path) -> None:
    assert "not found" in run_cli("plot", "no-such-run", ok=False).output
    bare = tmp_path / "bare"
    bare.mkdir()
    (bare / "run.json").write_text(json.dumps({"kind": "rnn", "created": 1.0}))
    assert "has no metrics yet" in run_cli("plot", bare, ok=False).output
    assert f"--png {tmp_path / 'x.pdf'} must be a .png file" in \
        run_cli("plot", tiny_run, "--png", tmp_path / "x.pdf", ok=False).output
    empty = run_cli("plot", tiny_run, "--png", "", ok=False)  # was a ValueError from pathlib
    assert empty.exit_code == 2 and "--png needs a file name" in empty.output


def test_plot_without_matplotlib_says_how_to_install_it(tiny_run: Path, tmp_path: Path,
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib → ImportError
    result = run_cli("plot", tiny_run, "--png", tmp_path / "c.png", ok=False)
    assert result.exit_code == 2
    assert "pip install 'charrnn[plot]'" in result.output
    assert not (tmp_path / "c.png").exists()


def test_plot_refuses_to_overwrite_a_file_that_is_not_a_png(tiny_run: Path, tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    photo = tmp_path / "holiday.png"
    photo.write_bytes(b"\xff\xd8\xff\xe0 a JPEG with the wrong name")
    result = run_cli("plot", tiny_run, "--png", photo, ok=False)
    assert result.exit_code == 2 and str(photo) in result.output
    assert "not a PNG image" in result.output and "pick another --png path" in result.output
    assert photo.read_bytes() == b"\xff\xd8\xff\xe0 a JPEG with the wrong name"
    curves = tmp_path / "curves.png"
    run_cli("plot", tiny_run, "--png", curves)
    run_cli("plot", tiny_run, "--png", curves)  # re-plotting over our own PNG is fine
    assert curves.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".png") == ["curves.png",
                                                                                  "holiday.png"]
    assert not [p for p in tmp_path.iterdir() if ".tmp-" in p.name]


def test_a_fill_model_run_is_plotted_like_a_language_model(small_text: Path, tmp_path: Path
                                                            ) -> None:
    """It was refused ("only `charrnn train` records" curves), though `charrnn train --task
    fill` writes the same train and eval records."""
    run_cli("train", small_text, "--task", "fill", "--hidden", "16", "--layers", "1",
            "--batch-size", "4", "--seq-len", "16", "--max-steps", "4", "--log-every", "1",
            "--eval-every", "2", "--run-name", "fm")
    run_cli("plot", "fm", "--png", tmp_path / "fm.png")
    assert (tmp_path / "fm.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from charrnn.plot import loss_axis

    # Beside a language model its loss is per masked token, not per token: the legend says so.
    assert loss_axis(["fill"]) == ("nats / masked token", {"fill": ""})
    assert loss_axis(["lm", "fill"]) == ("nats / (masked token or token)",
                                         {"lm": " (per token)", "fill": " (per masked token)"})


def test_a_tagger_run_is_plotted_by_its_validation_score_and_apart_from_lms(tiny_run: Path,
                                                                           tmp_path: Path) -> None:
    """It was refused ("its evaluations score accuracy, which plot does not draw")."""
    from test_tagger import TAG_TINY, _conll

    from charrnn.plot import validation_points

    train = _conll(tmp_path / "train.txt", 60, 0)
    run_cli("tag", "train", train, "--format", "conll", *TAG_TINY, "--max-steps", "6",
            "--eval-every", "2", "--log-every", "1", "--run-name", "chunker")
    pytest.importorskip("matplotlib")
    run_cli("plot", "chunker", "--png", tmp_path / "t.png")
    assert (tmp_path / "t.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    train_records, evals = read_metrics(tmp_path / "runs/chunker", ("f1", "accuracy"))
    unit, points = validation_points("tag", evals)
    assert len(train_records) == 6 and unit == "F1"
    assert points == [(r["step"], r["f1"]) for r in evals] and [p[0] for p in points] == [2, 4, 6]
    assert validation_points("tag", [{"step": 2, "accuracy": 0.5}]) == ("accuracy", [(2, 0.5)])
    row = next(line for line in run_cli("runs").output.splitlines() if line.startswith("chunker"))
    assert f"F1 {max(p[1] for p in points):.4f}" in row and " word " in row  # was "—" and "—"
    mixed = run_cli("plot", "chunker", str(tiny_run), "--png", tmp_path / "m.png", ok=False)
    assert mixed.exit_code == 2 and "plot tagger runs apart from language models" in mixed.output


def test_plot_of_an_ngram_run_says_it_has_no_training_curves(tmp_path: Path) -> None:
    root = tmp_path / "runs"
    (root / "kn").mkdir(parents=True)
    (root / "kn" / "run.json").write_text(json.dumps({"kind": "ngram", "created": 1.0}))
    result = run_cli("plot", "kn", "--out", root, ok=False)
    assert result.exit_code == 2 and "plot draws the loss and bits-per-character curves of RNN " \
        "training; it has none" in result.output
    assert "charrnn compare" in result.output and "charrnn ngram eval kn" in result.output
    assert "--log-every" not in result.output


def test_a_named_run_without_checkpoint_says_to_remove_it_not_resume_it(small_text: Path,
                                                                       tmp_path: Path) -> None:
    root = tmp_path / "runs"
    failed = root / "m7"  # what a training that failed before its first checkpoint leaves
    failed.mkdir(parents=True)
    (failed / "run.json").write_text(json.dumps({"kind": "rnn", "created": 1.0}))
    (failed / "notes.txt").write_text("a file of the user's\n")  # (not charrnn's: kept)
    again = run_cli("train", small_text, "--run-name", "m7", "--out", root, "--max-steps", "1",
                    ok=False).output
    assert "no checkpoint" in again and f"rm -r {failed}" in again and "--resume" not in again
    resume = run_cli("train", "--resume", "m7", "--out", root, ok=False).output
    assert "no checkpoint" in resume and f"rm -r {failed}" in resume
    assert "train longer" not in resume
    (failed / "notes.txt").unlink()  # its run.json alone: nothing written, the name is free
    making = run_cli("train", "--resume", "m7", "--out", root, ok=False).output  # … only once
    assert "another start is making it at this moment" in making  # a start that wrote it just
    assert "free again" not in making  # now has yet to lock it: 'free' sent a second one in
    then = failed.stat().st_mtime - 60  # (once no start can be making it: runs.SETTLED_S)
    os.utime(failed / "run.json", (then, then))
    # (left so by a kill at start-up under torchrun, whose ranks keep SIGTERM's default)
    free = run_cli("train", "--resume", "m7", "--out", root, ok=False).output
    assert "train again with the same --run-name, which is free again" in " ".join(free.split())
    run_cli("train", small_text, "--run-name", "m7", "--out", root, "--max-steps", "1")
    assert (failed / "last" / "checkpoint.json").is_file()


def test_runs_with_a_root_that_is_no_folder_is_an_error_and_the_default_root_is_not(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "a.txt").write_text("x")
    for root, said in ((tmp_path / "nope", "does not exist"), (tmp_path / "a.txt", "is a file")):
        result = run_cli("runs", "--out", root, ok=False)
        assert result.exit_code == 2 and said in result.output
    monkeypatch.delenv("CHARRNN_RUNS")
    monkeypatch.chdir(tmp_path)  # no ./checkpoints yet: nothing trained, no mistake
    assert "no runs under checkpoints" in run_cli("runs").output


def test_an_option_read_as_a_run_name_says_the_run_name_is_missing(tiny_run: Path) -> None:
    """`train --resume --max-steps 9` took '--max-steps' as the run and said it was not found."""
    out = run_cli("train", "--resume", "--max-steps", "9", "--out", tiny_run.parent, ok=False)
    assert out.exit_code == 2 and "that is an option" in out.output


def test_runs_takes_the_best_scores_from_best_not_from_a_torn_metrics_log(
        tiny_run: Path, tmp_path: Path) -> None:
    """A kill during an append cost metrics.jsonl its best evaluation: `runs` showed a worse
    val loss than best/ holds."""
    run = tmp_path / "r"
    shutil.copytree(tiny_run, run)
    best = json.loads((run / "best" / "checkpoint.json").read_text())["metrics"]
    log = run / "metrics.jsonl"
    kept = [line for line in log.read_text().splitlines()
            if json.loads(line).get("val_loss") != best["val_loss"]]
    log.write_text("\n".join(kept) + "\n" + kept[-1][:15])  # the best's line gone, a torn tail
    row = summary(run)
    assert row["val_loss"] == best["val_loss"] and row["val_bpc"] == best["val_bpc"]


def test_a_resume_hint_names_the_runs_root_where_it_is_not_the_default(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The stopped lines of fill, tag and fill groups said `charrnn fill train --resume g`
    after a run under --out elsewhere: copied, it found no such run."""
    from charrnn import runs

    monkeypatch.setenv("CHARRNN_RUNS", str(tmp_path / "runs"))
    assert runs.out_suffix(tmp_path / "runs" / "g") == ""
    assert runs.out_suffix(tmp_path / "my runs" / "g") == f" --out '{tmp_path / 'my runs'}'"
    monkeypatch.delenv("CHARRNN_RUNS")
    monkeypatch.chdir(tmp_path)
    assert runs.out_suffix(Path("checkpoints/g")) == ""


def test_a_tilde_the_shell_left_in_an_output_path_is_the_home_folder(
        small_text: Path, tmp_path: Path, monkeypatch) -> None:
    """`--out=~/runs` (no expansion after `=`) made a folder named ~ in the current one."""
    home, here = tmp_path / "home", tmp_path / "here"
    home.mkdir()
    here.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(here)
    run_cli("ngram", "train", small_text, "--order", "2", "--out=~/runs", "--run-name", "n")
    run_cli("preprocess", small_text, "--out=~/ds")
    run_cli("ngram", "export", "n", "--out=~/runs", "--arpa=~/n.arpa")
    monkeypatch.setenv("CHARRNN_CACHE", "~/cache")
    run_cli("train", small_text, "--max-steps", "1", "--hidden", "8", "--out=~/runs")
    assert (home / "runs/n/run.json").is_file() and (home / "ds/meta.json").is_file()
    assert (home / "n.arpa").is_file() and (home / "cache/datasets").is_dir()
    assert not (here / "~").exists()


def test_runs_piped_keeps_a_cjk_name_on_one_line(small_text: Path, tmp_path: Path) -> None:
    """'中文模型' was capped at its length, not its width in cells: `charrnn runs | cat` showed
    中文 and 模型 on two lines, and `awk '{print $1}'` named no run."""
    run_cli("ngram", "train", small_text, "--order", "2", "--run-name", "中文模型")
    rows = run_cli("runs").output.splitlines()
    assert any(line.split()[:1] == ["中文模型"] for line in rows), rows


@pytest.mark.parametrize("columns", ["0", "10"])
def test_a_very_narrow_terminal_still_gets_the_cells_whole(small_text: Path, monkeypatch,
                                                           columns: str) -> None:
    """COLUMNS=0 printed nothing with exit 0, COLUMNS=10 only '…' cells."""
    run_cli("ngram", "train", small_text, "--order", "2", "--run-name", "narrow")
    monkeypatch.setenv("COLUMNS", columns)
    output = run_cli("runs").output
    assert "narrow" in output and "ngram" in output
    assert "tinyshakespeare" in run_cli("corpus", "list").output


def test_runs_refuses_a_charrnn_runs_that_names_a_file(small_text: Path, monkeypatch) -> None:
    """It said 'no runs under FILE' with exit 0."""
    monkeypatch.setenv("CHARRNN_RUNS", str(small_text))
    result = run_cli("runs", ok=False)
    assert result.exit_code == 2 and "$CHARRNN_RUNS is " in result.output


def test_a_narrow_but_usable_terminal_keeps_its_own_width(small_text: Path, monkeypatch) -> None:
    """The 60-column floor for unusable widths made a 50-column table wrap every row."""
    run_cli("ngram", "train", small_text, "--order", "2", "--run-name", "n")
    monkeypatch.setenv("COLUMNS", "50")
    assert max(len(line) for line in run_cli("runs").output.splitlines()) <= 50


def test_runs_on_an_ascii_output_marks_empty_cells_with_a_hyphen(small_text: Path,
                                                                tmp_path: Path) -> None:
    """PYTHONIOENCODING=ascii: `charrnn runs` with an n-gram run (no steps, no val) stopped with
    'standard output is ascii, which cannot hold —' and listed nothing."""
    import io

    from rich.console import Console

    from charrnn.tui.runs_table import print_runs

    run_cli("ngram", "train", small_text, "--order", "2", "--run-name", "plain", "--out",
            tmp_path / "runs")
    stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    assert print_runs(tmp_path / "runs", Console(file=stream, width=100)) == 1
    stream.seek(0)
    row = next(line for line in stream.read().splitlines() if line.startswith("plain"))
    assert row.split()[5:8] == ["-", "-", "-"], row



@pytest.mark.parametrize("left", ["metrics.jsonl", ".writer"])
def test_a_start_killed_before_its_first_save_leaves_its_name_free_at_once(
        small_text: Path, tmp_path: Path, left: str) -> None:
    """A kill -9 after its lock (or its first training lines) and before its first save: the
    name was 'being made by another start' for 10 s, or, with training lines logged, taken
    until the folder was removed by hand."""
    root = tmp_path / "runs"
    killed = root / "k"
    killed.mkdir(parents=True)
    (killed / "run.json").write_text(json.dumps({"kind": "lm", "name": "k", "created": 1.0}))
    (killed / left).write_text('{"type": "train", "step": 1, "loss": 3.0}\n' if "metrics" in left
                               else '{"pid": 1}')  # (the note a start writes once it holds it)
    said = run_cli("train", "--resume", "k", "--out", root, ok=False).output
    assert "which is free again" in " ".join(said.split()), said
    run_cli("train", small_text, *TINY, "--run-name", "k", "--out", root, "--max-steps", "1")
    assert (killed / "last" / "checkpoint.json").is_file()
