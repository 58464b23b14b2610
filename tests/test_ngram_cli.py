"""`charrnn ngram ...` and `charrnn compare` end to end (CliRunner on the charrnn app, as typed:
its commands' messages name flags)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from charrnn.cli.app import app
from charrnn.errors import UserError
from helpers import TINY, run_cli

REPO = Path(__file__).resolve().parents[1]
EVAL_FIELDS = {"run", "kind", "source", "tokens", "chars", "nats_per_token", "perplexity",
               "bits_per_char", "unknown_tokens", "unknown_rate", "skipped_chars"}


def ngram(*args, ok: bool = True):
    result = CliRunner().invoke(app, ["ngram", *(str(a) for a in args)])
    if ok:
        assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def user_error(*args) -> str:
    """A user mistake: one `charrnn: error:` line, exit code 2, no traceback. → the message."""
    result = ngram(*args, ok=False)
    assert result.exit_code == 2, result.output + repr(result.exception)
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("charrnn: error: "), result.output
    return lines[0]


def compare(*args):
    return CliRunner().invoke(app, ["compare", *(str(a) for a in args)])


def test_train_eval_sample_export_import(small_text: Path, tmp_path: Path):
    ngram("train", small_text, "--order", "4", "--run-name", "c4")
    result = json.loads(ngram("eval", "c4", "--json").output)
    assert set(result) == EVAL_FIELDS
    assert result["kind"] == "ngram" and result["source"] == "split:test"
    assert result["bits_per_char"] == pytest.approx(
        result["nats_per_token"] * result["tokens"] / result["chars"] / 0.6931471805599453)

    on_file = json.loads(ngram("eval", "c4", small_text, "--json").output)
    assert on_file["source"] == str(small_text) and on_file["chars"] == len(small_text.read_text())

    first = ngram("sample", "c4", "--length", "80", "--seed", "3", "--prime", "the ").output
    again = ngram("sample", "c4", "--length", "80", "--seed", "3", "--prime", "the ").output
    assert first == again and first.startswith("the ") and len(first) == len("the ") + 80 + 1
    assert ngram("sample", "--length", "20", "--temp", "0.5").output.strip()
    # the seeds `charrnn sample` takes: up to 2**63 - 1, each its own text
    big = [ngram("sample", "c4", "--length", "80", "--seed", str(seed)).output
           for seed in (2**40, 2**40, 2**40 + 1, 2**63 - 1)]
    assert big[0] == big[1] and len(set(big)) == 3
    refused = ngram("sample", "c4", "--seed", str(2**63), ok=False)
    assert refused.exit_code == 2 and "--seed must be in [0, 2**63)" in refused.output

    arpa = tmp_path / "c4.arpa"
    assert "4-grams" in ngram("export", "c4", "--arpa", arpa).output
    assert arpa.read_text(encoding="utf-8").startswith("# charrnn-ngram: ")
    ngram("import", arpa, "--run-name", "c4-arpa")
    imported = json.loads(ngram("eval", "c4-arpa", small_text, "--json").output)
    assert imported["nats_per_token"] == pytest.approx(on_file["nats_per_token"], rel=1e-6)


def test_word_lines_and_prune(small_text: Path):
    out = ngram("train", small_text, "--level", "word", "--lines", "--prune", "0 1",
                "--run-name", "w", "--json").output
    summary = json.loads(out)
    assert summary["order"] == 3 and summary["mode"] == "lines" and summary["level"] == "word"
    result = json.loads(ngram("eval", "w", "--split", "val", "--json").output)
    assert result["source"] == "split:val" and result["perplexity"] > 1


@pytest.mark.parametrize("args", [
    ["train", "{text}", "--order", "0"],
    ["train", "{text}", "--order", "13"],
    ["train", "{text}", "--prune", "1 0"],
    ["train", "{text}", "--prune", "many"],
    ["train", "{missing}"],
    ["eval", "nope", "{text}"],
    ["eval", "--json"],
    ["sample", "nope"],
    ["import", "{missing}"],
    ["import", "{text}"],
])
def test_bad_input_is_a_user_error(small_text: Path, tmp_path: Path, args: list[str]):
    fill = {"text": str(small_text), "missing": str(tmp_path / "missing.txt")}
    user_error(*[a.format(**fill) for a in args])


def test_bad_input_on_a_trained_run(small_text: Path, tmp_path: Path):
    ngram("train", small_text, "--order", "2", "--run-name", "r")
    user_error("eval", "r", small_text, "--split", "test")
    user_error("sample", "r", "--temp", "0")
    user_error("sample", "r", "--length", "0")
    assert "between 1 and 1,000,000,000,000" in user_error("sample", "r", "--length", str(2**64))
    user_error("sample", "r", "--prime", "λ")
    assert "neither a run" in str(user_error("eval", "no-such-run"))
    (tmp_path / "empty.txt").write_text("", encoding="utf-8")
    user_error("eval", "r", tmp_path / "empty.txt")
    rnn = Path(os.environ["CHARRNN_RUNS"]) / "fake-rnn"
    rnn.mkdir()
    (rnn / "run.json").write_text('{"kind": "rnn", "created": 0}', encoding="utf-8")
    assert "charrnn eval" in str(user_error("eval", "fake-rnn"))
    model = Path(os.environ["CHARRNN_RUNS"]) / "r" / "model"
    (model / "logp.npy").unlink()
    assert "missing logp.npy" in str(user_error("eval", "r"))
    (model / "logp.npy").write_bytes(b"\x80\x04 pickle?")
    user_error("eval", "r")
    (model / "logp.npy").write_bytes(b"")  # what a crash or a full disk leaves: numpy's EOFError
    assert "logp.npy is not a readable numpy array (No data left" in str(user_error("eval", "r"))


@pytest.mark.parametrize("damage", ["suffix", "word", "nan", "dtype", "offsets", "order", "vocab"])
def test_damaged_model_files_are_refused(small_text: Path, damage: str):
    """The kernels do not bounds-check: a damaged model must fail cleanly at load."""
    import numpy as np

    ngram("train", small_text, "--order", "3", "--run-name", "d")
    folder = Path(os.environ["CHARRNN_RUNS"]) / "d" / "model"
    meta = json.loads((folder / "model.json").read_text(encoding="utf-8"))
    arrays = {n: np.load(folder / f"{n}.npy") for n in ("suffix", "word", "logp")}
    if damage == "suffix":
        arrays["suffix"][-1] = 10**6
    elif damage == "word":
        arrays["word"][-1] = -5
    elif damage == "nan":
        arrays["logp"][3] = np.nan
    elif damage == "dtype":
        arrays["word"] = arrays["word"].astype(np.int64)
    elif damage == "offsets":
        meta["offsets"][1] += 1
    elif damage == "order":
        meta["order"] = 40
    else:
        meta["vocab_size"] += 1
    for name, array in arrays.items():
        np.save(folder / f"{name}.npy", array)
    (folder / "model.json").write_text(json.dumps(meta), encoding="utf-8")
    assert "corrupt" in str(user_error("eval", "d", small_text))


@pytest.mark.parametrize("entry", ["charrnn.cli.app:app", "charrnn.cli.ngram:ngram_app"])
def test_ngram_commands_never_import_torch(small_text: Path, tmp_path: Path, entry: str):
    """The commands as `charrnn ngram ...` runs them (and the n-gram app alone), fresh process."""
    module, name = entry.split(":")
    prefix = ["ngram"] if name == "app" else []
    script = f"""
import sys
import typer
from typer.testing import CliRunner
from {module} import {name} as app
from charrnn.cli.ngram import compare_cmd
runner = CliRunner()
text, arpa = {str(small_text)!r}, {str(tmp_path / 'x.arpa')!r}
prefix = {prefix!r}
for args in (["train", text, "--order", "3", "--run-name", "t"], ["eval", "t", "--json"],
             ["sample", "t", "--length", "10"], ["export", "t", "--arpa", arpa],
             ["import", arpa]):
    result = runner.invoke(app, prefix + args)
    assert result.exit_code == 0, (args, result.output, result.exception)
compare = typer.Typer()
compare.command()(compare_cmd)
result = runner.invoke(compare, ["--json"])
assert result.exit_code == 0, (result.output, result.exception)
assert "torch" not in sys.modules, "torch was imported"
print("ok")
"""
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 0 and "ok" in done.stdout, done.stdout + done.stderr


def test_compare_ngram_runs(small_text: Path, tmp_path: Path):
    ngram("train", small_text, "--order", "2", "--run-name", "two")
    ngram("train", small_text, "--order", "5", "--run-name", "five")
    arpa = tmp_path / "five.arpa"
    ngram("export", "five", "--arpa", arpa)
    ngram("import", arpa, "--run-name", "copy")
    result = compare("--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    rows = report["results"]
    assert [r["run"] for r in rows][:1] in (["five"], ["copy"])
    assert [r["bits_per_char"] for r in rows] == sorted(r["bits_per_char"] for r in rows)
    assert {r["run"] for r in rows} == {"two", "five", "copy"}
    assert all(EVAL_FIELDS <= set(r) and r["sample_tokens_per_s"] > 0 for r in rows)

    table = compare("two", "five", "--file", small_text)
    assert table.exit_code == 0 and "two" in table.output and "5-gram" in table.output


def test_compare_rnn_and_ngram(tiny_run: Path, small_text: Path):
    """An LSTM and a 3-gram of the same text in one report (torch is imported for the RNN)."""
    ngram("train", small_text, "--order", "3", "--run-name", "tri")
    said = compare(str(tiny_run), "tri", "--json", "--file", small_text)
    assert "tuning λ" in said.stderr  # the mixture row's weight: seconds on a large split
    report = json.loads(said.stdout)
    kinds = {r["kind"]: r for r in report["results"]}
    assert set(kinds) == {"lm", "ngram", "mix"} and not report["skipped"]  # one dataset: a pair
    assert kinds["lm"]["size_unit"] == "params" and kinds["lm"]["size"] > 0
    assert kinds["lm"]["chars"] == kinds["ngram"]["chars"] == len(small_text.read_text())
    table = compare(str(tiny_run), "tri")
    assert table.exit_code == 0 and "tiny" in table.output and "3-gram" in table.output


def test_compare_skips_runs_without_their_dataset(small_text: Path, tmp_path: Path):
    arpa = tmp_path / "foreign.arpa"
    arpa.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-0.5\t</s>\n0\t<s>\n-0.3\tthe\n\n"
                    "\\end\\\n", encoding="utf-8")
    ngram("import", arpa, "--run-name", "foreign")
    ngram("train", small_text, "--order", "2", "--run-name", "mine")
    report = json.loads(compare("--json").stdout)
    assert [r["run"] for r in report["results"]] == ["mine"]
    assert report["skipped"][0]["run"] == "foreign"
    assert "imported model has no dataset split: use --file" in report["skipped"][0]["reason"]
    assert "imported and has no dataset split" in user_error("eval", "foreign", "--split", "test")
    with_file = json.loads(compare("--json", "--file", small_text).stdout)
    assert {r["run"] for r in with_file["results"]} == {"mine", "foreign"}


def test_compare_says_fill_and_tagger_runs_are_not_compared(small_text: Path):
    ngram("train", small_text, "--order", "2", "--run-name", "mine")
    for kind in ("fill", "tagger"):
        folder = Path(os.environ["CHARRNN_RUNS"]) / kind
        folder.mkdir()
        (folder / "run.json").write_text(f'{{"kind": "{kind}", "created": 1}}', encoding="utf-8")
    reasons = {s["run"]: s["reason"] for s in json.loads(compare("--json").stdout)["skipped"]}
    assert reasons["fill"].startswith("fill runs are not compared")
    assert reasons["tagger"].startswith("tagger runs are not compared")


def test_other_run_kinds_name_the_command_that_reads_them(small_text: Path):
    root = Path(os.environ["CHARRNN_RUNS"])
    for kind in ("fill", "tagger"):
        (root / kind).mkdir(parents=True)
        (root / kind / "run.json").write_text(f'{{"kind": "{kind}", "created": 1}}',
                                               encoding="utf-8")
    assert "tagger is a tagger run: use `charrnn tag eval tagger FILE`" in \
        user_error("eval", "tagger", small_text)
    assert "use `charrnn tag predict tagger`" in user_error("sample", "tagger")
    assert "fill is a fill run: use `charrnn fill eval" in user_error("eval", "fill", small_text)


def test_existing_run_name_does_not_suggest_resume(small_text: Path, tmp_path: Path):
    ngram("train", small_text, "--order", "2", "--run-name", "r")
    arpa = tmp_path / "r.arpa"
    ngram("export", "r", "--arpa", arpa)
    for args in (("train", small_text, "--order", "2"), ("import", arpa)):
        message = user_error(*args, "--run-name", "r")
        assert "already exists: pick another --run-name" in message and "--resume" not in message


def test_numba_cache_moves_when_the_package_is_read_only(tmp_path: Path, monkeypatch):
    from charrnn import jit as _jit

    monkeypatch.delenv("NUMBA_CACHE_DIR", raising=False)
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(_jit.os, "access", lambda path, mode: False)
    chosen = _jit.configure_cache(tmp_path)
    assert chosen == str(tmp_path / "cache" / "numba") and Path(chosen).is_dir()
    monkeypatch.setenv("NUMBA_CACHE_DIR", "/elsewhere")
    assert _jit.configure_cache(tmp_path) == "/elsewhere"


def test_long_samples_stream_in_chunks_and_stay_deterministic(small_text: Path):
    from charrnn.ngram.runs import load_run
    from charrnn.ngram.sample import CHUNK, sample_ids

    ngram("train", small_text, "--order", "3", "--run-name", "long")
    _, model = load_run("long", Path(os.environ["CHARRNN_RUNS"]))
    _, first = sample_ids(model, CHUNK + 100, seed=5)
    _, again = sample_ids(model, CHUNK + 100, seed=5)
    _, head = sample_ids(model, 100, seed=5)
    assert len(first) == CHUNK + 100 and (first == again).all() and (first[:100] == head).all()


def test_a_dataset_of_another_level_is_refused(small_text: Path, tmp_path: Path):
    from charrnn.cli.app import app

    done = CliRunner().invoke(app, ["preprocess", str(small_text), "--out", str(tmp_path / "ds")])
    assert done.exit_code == 0, done.output
    assert "char-level dataset" in str(user_error("train", tmp_path / "ds", "--level", "word"))


# ---- export never destroys a file it did not write ---------------------------------------------
def test_export_refuses_to_overwrite_a_file_that_is_not_arpa(small_text: Path, tmp_path: Path):
    ngram("train", small_text, "--order", "2", "--run-name", "kn")
    precious = tmp_path / "precious.txt"
    precious.write_text("my only copy of the corpus\n", encoding="utf-8")
    result = run_cli("ngram", "export", "kn", "--arpa", precious, ok=False)
    assert result.exit_code == 2 and str(precious) in result.output
    assert "not an ARPA file" in result.output and "pick another --arpa path" in result.output
    assert precious.read_text(encoding="utf-8") == "my only copy of the corpus\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".precious")] == []


def test_export_replaces_an_earlier_arpa_file(small_text: Path, tmp_path: Path):
    ngram("train", small_text, "--order", "2", "--run-name", "kn")
    ours, foreign = tmp_path / "ours.arpa", tmp_path / "kenlm.arpa"
    run_cli("ngram", "export", "kn", "--arpa", ours)
    first = ours.read_text(encoding="utf-8")
    run_cli("ngram", "export", "kn", "--arpa", ours)  # re-exporting over our own output is fine
    assert ours.read_text(encoding="utf-8") == first
    foreign.write_text("\n\\data\\\nngram 1=1\n\n\\1-grams:\n-1\t</s>\n\n\\end\\\n")  # lmplz style
    run_cli("ngram", "export", "kn", "--arpa", foreign)
    assert foreign.read_text(encoding="utf-8") == first


def test_export_keeps_a_replaced_files_mode_and_refuses_a_read_only_one(small_text: Path,
                                                                       tmp_path: Path):
    """The rename replaced a chmod 444 ARPA file, and a replaced file took the new one's mode."""
    ngram("train", small_text, "--order", "2", "--run-name", "kn")
    arpa = tmp_path / "k.arpa"
    run_cli("ngram", "export", "kn", "--arpa", arpa)
    arpa.chmod(0o640)
    run_cli("ngram", "export", "kn", "--arpa", arpa)
    assert arpa.stat().st_mode & 0o777 == 0o640
    arpa.chmod(0o444)
    result = run_cli("ngram", "export", "kn", "--arpa", arpa, ok=False)
    assert result.exit_code == 2 and "is read-only: charrnn will not replace it" in result.output


def test_a_failed_export_keeps_the_previous_arpa_file(small_text: Path, tmp_path: Path,
                                                      monkeypatch):
    from charrnn.ngram import arpa as arpa_module
    from charrnn.ngram.runs import load_run

    ngram("train", small_text, "--order", "2", "--run-name", "kn")
    _, model = load_run("kn", Path(os.environ["CHARRNN_RUNS"]))
    path = tmp_path / "out" / "model.arpa"
    path.parent.mkdir()
    arpa_module.export_arpa(model, path)
    before = path.read_bytes()

    def disk_full(values):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(arpa_module, "_log10_text", disk_full)
    with pytest.raises(UserError, match="No space left"):
        arpa_module.export_arpa(model, path)
    assert path.read_bytes() == before and [p.name for p in path.parent.iterdir()] == ["model.arpa"]


def test_export_of_an_rnn_run_says_export_is_for_ngram_runs(tiny_run: Path, tmp_path: Path):
    result = run_cli("ngram", "export", tiny_run, "--arpa", tmp_path / "x.arpa", ok=False)
    assert result.exit_code == 2 and "export applies to n-gram runs only" in result.output
    assert "charrnn eval" not in result.output and not (tmp_path / "x.arpa").exists()


def test_an_import_whose_model_cannot_be_written_leaves_no_run_and_can_be_run_again(
        small_text: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A full disk while saving left runs/NAME with only run.json, and the same command then
    said the run 'already exists but has no checkpoint'."""
    from charrnn.ngram.model import NGramModel

    root = tmp_path / "runs"
    run_cli("ngram", "train", small_text, "--order", "3", "--run-name", "a")
    run_cli("ngram", "export", "a", "--arpa", tmp_path / "a.arpa")
    real_save = NGramModel.save

    def disk_full(self, folder):
        raise OSError(28, "No space left on device", str(folder))

    monkeypatch.setattr(NGramModel, "save", disk_full)
    failed = run_cli("ngram", "import", tmp_path / "a.arpa", "--run-name", "b", ok=False)
    assert failed.exit_code == 2 and not (root / "b").exists()
    monkeypatch.setattr(NGramModel, "save", real_save)
    run_cli("ngram", "import", tmp_path / "a.arpa", "--run-name", "b")
    assert (root / "b" / "model").is_dir()


def test_a_run_name_whose_start_wrote_nothing_but_run_json_is_free_again(tmp_path: Path) -> None:
    """Ctrl-C during a run's start-up (preprocessing) left a folder with its run.json alone: the
    --run-name stayed taken and --resume had nothing to resume."""
    from charrnn import runs

    first = runs.new_run_dir(tmp_path, "x", "lm")
    with pytest.raises(UserError, match="already exists"):  # a start making it right now
        runs.new_run_dir(tmp_path, "x", "lm")  # (its lock not taken yet): never taken over
    then = first.stat().st_mtime - 2 * runs.SETTLED_S
    os.utime(first / "run.json", (then, then))
    assert runs.new_run_dir(tmp_path, "x", "lm") == first and (first / "run.json").is_file()
    (first / "metrics.jsonl").write_text("{}\n")  # training lines, no save: nothing to resume
    assert runs.new_run_dir(tmp_path, "x", "lm") == first and not (first / "metrics.jsonl").exists()
    (first / "best.tmp-1").mkdir()  # a first save cut short: kept for the user to look at
    os.utime(first / "run.json", (then, then))
    with pytest.raises(UserError, match="already exists"):
        runs.new_run_dir(tmp_path, "x", "lm")


def test_compare_names_a_run_once_refuses_a_mix_without_a_pair_and_says_how_to_train(
        small_text: Path, tmp_path: Path) -> None:
    """`compare c5 c5` listed the run twice; `compare --mix` with n-gram runs only was silently
    taken; 'no n-gram runs … (charrnn train)' named the wrong command; --arpa '' was '. is a
    folder'."""
    root = tmp_path / "runs"
    root.mkdir()
    missing = run_cli("ngram", "eval", ok=False)
    assert missing.exit_code == 2 and "train one first (charrnn ngram train)" in missing.output
    ngram("train", small_text, "--order", "3", "--run-name", "c3")
    report = json.loads(run_cli("compare", "c3", str(root / "c3"), "--json").stdout)
    assert [row["run"] for row in report["results"]] == ["c3"]
    refused = run_cli("compare", "c3", "--mix", ok=False)
    assert refused.exit_code == 2 and "drop --mix" in refused.output
    assert run_cli("compare", "c3", "--no-mix").exit_code == 0
    other = tmp_path / "other.txt"  # an RNN of another text: no pair either (it was ignored)
    other.write_text("a b c d e f g h\n" * 200, encoding="utf-8")
    run_cli("train", other, *TINY, "--max-steps", "2", "--run-name", "rnn")
    refused = run_cli("compare", "c3", "rnn", "--file", small_text, "--mix", ok=False)
    assert refused.exit_code == 2 and "share one: drop --mix" in refused.output
    empty = ngram("export", "c3", "--arpa", "", ok=False)
    assert empty.exit_code == 2 and "--arpa is empty" in empty.output


def test_export_to_standard_output_writes_the_arpa_there_and_a_closed_pipe_is_quiet(
        small_text: Path, tmp_path: Path):
    """`--arpa -` wrote a file named '-'; `--arpa /dev/stdout | head` said 'error: … Broken
    pipe' with exit 2 where every command stops quietly with 141."""
    import random

    rng = random.Random(0)  # ~17k trigrams: an ARPA text far larger than a pipe's buffer
    text = tmp_path / "letters.txt"
    text.write_text("".join(rng.choice("abcdefghijklmnopqrstuvwxyz \n") for _ in range(200_000)))
    ngram("train", text, "--order", "3", "--run-name", "kn")
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    whole = subprocess.run([sys.executable, "-m", "charrnn", "ngram", "export", "kn", "--arpa",
                            "-"], capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=120)
    assert whole.returncode == 0 and whole.stdout.startswith("# charrnn-ngram: ")
    assert "3-grams" in whole.stderr and not (tmp_path / "-").exists()
    notes = tmp_path / "notes.txt"  # `>> notes.txt`: appended to, not refused nor replaced
    notes.write_text("my notes\n")
    with open(notes, "a") as appended:
        subprocess.run([sys.executable, "-m", "charrnn", "ngram", "export", "kn", "--arpa", "-"],
                       stdout=appended, env=env, cwd=tmp_path, timeout=120, check=True)
    assert notes.read_text() == "my notes\n" + whole.stdout
    for target in ("-", "/dev/stdout"):
        cut = subprocess.run(f"{sys.executable} -m charrnn ngram export kn --arpa {target} "
                             "| head -c 10 >/dev/null; echo ${PIPESTATUS[0]} >&2", shell=True,
                             executable="/bin/bash", capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=120)
        assert cut.stderr.strip() == "141", cut.stderr


def test_a_file_where_an_output_folder_should_be_is_named(small_text: Path, tmp_path: Path):
    ngram("train", small_text, "--order", "2", "--run-name", "kn")
    said = user_error("export", "kn", "--arpa", small_text / "x.arpa")
    assert f"{small_text} is a file, not a folder" in said


def test_eval_of_standard_input_alone_reads_it_with_the_newest_run(small_text: Path):
    """`ngram eval -` was refused ("'-' is neither a run … nor a file"); `ngram eval RUN -`
    and `charrnn eval -` took it."""
    ngram("train", small_text, "--order", "2", "--run-name", "kn")
    result = CliRunner().invoke(app, ["ngram", "eval", "-", "--json"], input="the king is here\n")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["run"] == "kn" and json.loads(result.output)["tokens"] > 0


def test_compare_of_every_run_names_a_damaged_one_it_skips(small_text: Path, tmp_path: Path):
    """A run whose run.json was cut short was left out of the table without a word."""
    ngram("train", small_text, "--order", "2", "--run-name", "two")
    ngram("train", small_text, "--order", "3", "--run-name", "three")
    info = tmp_path / "runs" / "three" / "run.json"
    info.write_text(info.read_text()[:20])
    result = compare("--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert [r["run"] for r in report["results"]] == ["two"]
    assert [s["run"] for s in report["skipped"]] == ["three"]
    assert "skipped three:" in compare().output


def test_an_arpa_file_named_gz_is_written_gzipped_and_read_back(small_text: Path,
                                                                tmp_path: Path):
    """export --arpa m.arpa.gz wrote plain text, and import refused gzip ('gunzip it first'),
    though KenLM reads model.arpa.gz."""
    import gzip

    ngram("train", small_text, "--order", "3", "--lines", "--run-name", "kn")
    run_cli("ngram", "export", "kn", "--arpa", tmp_path / "m.arpa.gz")
    assert (tmp_path / "m.arpa.gz").read_bytes()[:2] == b"\x1f\x8b"
    run_cli("ngram", "export", "kn", "--arpa", tmp_path / "m.arpa")
    assert gzip.decompress((tmp_path / "m.arpa.gz").read_bytes()).decode() == \
        (tmp_path / "m.arpa").read_text(encoding="utf-8")
    run_cli("ngram", "import", tmp_path / "m.arpa.gz", "--run-name", "back")
    assert run_cli("ngram", "eval", "back", small_text).output.split(":", 1)[1] == \
        run_cli("ngram", "eval", "kn", small_text).output.split(":", 1)[1]
    (tmp_path / "cut.gz").write_bytes((tmp_path / "m.arpa.gz").read_bytes()[:60])
    result = run_cli("ngram", "import", tmp_path / "cut.gz", ok=False)
    assert result.exit_code == 2 and "the gzip stream is damaged or cut short" in result.output


@pytest.mark.parametrize(("args", "said"), [
    (["--prune", ""], "--prune is empty"),  # (it pruned nothing, silently)
    (["--order", "1", "--prune", "0 1"], "give one threshold, 0 (an order-1 model's unigrams"),
])
def test_prune_messages_for_an_empty_value_and_an_order_one_model(small_text: Path,
                                                                  args: list[str], said: str):
    result = run_cli("ngram", "train", small_text, *args, ok=False)
    assert result.exit_code == 2 and said in result.output


def test_import_names_a_line_with_too_many_words_and_export_an_empty_arpa_path(
        small_text: Path, tmp_path: Path):
    """They said 'bad number in 2-gram line' and '(got '.')'."""
    bad = tmp_path / "bad.arpa"
    bad.write_text("\\data\\\nngram 1=3\nngram 2=1\n\n\\1-grams:\n-1\t<s>\t-0.1\n-0.5\ta\t-0.1\n"
                   "-0.5\t</s>\n\n\\2-grams:\n-0.2\t<s> a a\n\n\\end\\\n")
    result = run_cli("ngram", "import", bad, ok=False)
    assert result.exit_code == 2 and "has 3 words; the 2-grams have 2" in result.output
    ngram("train", small_text, "--order", "2", "--run-name", "kn")
    result = run_cli("ngram", "export", "kn", "--arpa", "", ok=False)
    assert result.exit_code == 2 and "--arpa is empty" in result.output


def test_export_to_dev_stdout_keeps_the_summary_out_of_the_arpa_stream(small_text: Path):
    """`--arpa /dev/stdout | tail -1` ended the stream with the summary line."""
    import subprocess

    ngram("train", small_text, "--order", "2", "--run-name", "kn")
    done = subprocess.run([sys.executable, "-m", "charrnn", "ngram", "export", "kn", "--arpa",
                           "/dev/stdout"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and done.stdout.rstrip().endswith("\\end\\")
    assert "/dev/stdout: " in done.stderr
