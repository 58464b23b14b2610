"""What a score says about itself: `<unk>` shares, skipped characters, and texts too short to score
(eval, ngram eval and compare report them the same way)."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import pytest

from helpers import SMALL_LINES, TINY, run_cli


@pytest.fixture(scope="module")
def word_root(tmp_path_factory: pytest.TempPathFactory, session_cache: Path) -> Path:
    """A word RNN and a word 3-gram trained on the small text, no test split."""
    root = tmp_path_factory.mktemp("scores")
    corpus = root / "corpus.txt"
    corpus.write_text("\n".join(SMALL_LINES * 40) + "\n", encoding="utf-8")
    common = ["--level", "word", "--val-frac", "0.1", "--test-frac", "0", "--out", root]
    with pytest.MonkeyPatch.context() as env:  # the session's cache, where the tests look
        env.setenv("CHARRNN_CACHE", str(session_cache))
        run_cli("train", corpus, *common, *TINY, "--max-steps", "20", "--run-name", "rnn")
        run_cli("ngram", "train", corpus, *common, "--order", "3", "--run-name", "tri")
    return root


def _unknown_text(tmp_path: Path) -> Path:
    path = tmp_path / "other.txt"  # zebra, purple and cat are not in the vocabulary
    path.write_text("the quick zebra jumps over a purple cat\n", encoding="utf-8")
    return path


@pytest.mark.parametrize("command", [["eval", "rnn"], ["ngram", "eval", "tri"]])
def test_unknown_words_are_counted_and_said_to_flatter_the_score(word_root, tmp_path, command):
    text = _unknown_text(tmp_path)
    result = json.loads(run_cli(*command, text, "--json", "--out", word_root).output)
    assert result["unknown_tokens"] == 3 and result["unknown_rate"] == pytest.approx(3 / 9)  # + <eos>
    line = run_cli(*command, text, "--out", word_root).output
    assert "3 tokens (33.3%) are <unk>" in line and "optimistic" in line and line.count("\n") == 1


def test_characters_skipped_by_unk_skip_are_not_counted(tiny_run: Path, tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("the quick brown fox ☃☃☃☃ jumps over the lazy dog.\n", encoding="utf-8")
    result = json.loads(run_cli("eval", tiny_run, text, "--unk", "skip", "--json").output)
    assert result["skipped_chars"] == 4 and result["chars"] == len(text.read_text())
    expected = result["nats_per_token"] * result["tokens"] / math.log(2) / (result["chars"] - 4)
    assert result["bits_per_char"] == pytest.approx(expected)
    assert "4 characters outside the vocabulary skipped" in run_cli(
        "eval", tiny_run, text, "--unk", "skip").output
    # compare's table said nothing of them (<unk> shares had a column and a note)
    compared = run_cli("compare", tiny_run, "--file", text, "--unk", "skip", "--no-mix",
                       "--json", "--out", tiny_run.parent).stdout
    assert f"({tiny_run.name} 4, --unk skip)" in json.loads(compared)["note"]
    text.write_text("the quick brown fox ☃ jumps.\n", encoding="utf-8")
    assert "1 character outside the vocabulary skipped" in run_cli(
        "eval", tiny_run, text, "--unk", "skip").output


def test_score_counts_skipped_characters_as_oov_and_excludes_only_scored_ones(
        tiny_run: Path, tmp_path: Path) -> None:
    """Skipped characters are out of the tokens and the log10 already: "excluding OOVs" took
    them out a second time (49.39 became 664.88)."""
    text = tmp_path / "t.txt"
    text.write_text("the fox ☃☃\nabc\n", encoding="utf-8")
    lines = run_cli("score", tiny_run, text, "--unk", "skip", "--json").output.splitlines()
    total = json.loads(lines[-1])["total"]
    assert total["oov"] == 2 and total["tokens"] == len("the fox \nabc\n")
    assert total["perplexity_excluding_oov"] == pytest.approx(total["perplexity"])


def test_score_names_the_first_line_the_model_cannot_read(tiny_run: Path, tmp_path: Path) -> None:
    """Lines are scored shortest first: the error named the shortest bad line, not the first."""
    text = tmp_path / "t.txt"
    text.write_text("hello ☃☂☀★☆ there\nabc\n♞\n", encoding="utf-8")
    result = run_cli("score", tiny_run, text, ok=False)
    assert result.exit_code == 2
    assert "line 1: 5 characters not in the model's vocabulary" in result.output


def test_score_refuses_binary_and_utf16_text_as_eval_does(tiny_run: Path, tmp_path: Path) -> None:
    """A NUL byte was scored as part of a word (and written back to the terminal)."""
    text = tmp_path / "t.txt"
    for data, said in ((b"the cat\nthe fox\0 sat\n", "line 2 holds a NUL byte"),
                       ("the fox\n".encode("utf-16"), "is UTF-16 text, not UTF-8")):
        text.write_bytes(data)
        for source in ([text], ["-"]):
            result = run_cli("score", tiny_run, *source, ok=False, input=data)
            assert result.exit_code == 2 and said in result.output, result.output
        assert "not UTF-8" in run_cli("eval", tiny_run, text, ok=False).output


def test_score_of_a_folder_says_it_is_a_folder(tiny_run: Path, tmp_path: Path) -> None:
    """It said '… does not exist or is not a file' of a folder that exists."""
    said = run_cli("score", tiny_run, tmp_path, ok=False).output
    assert "is a folder: score reads one file" in said and "does not exist" not in said
    said = run_cli("score", tiny_run, tmp_path / "nope.txt", ok=False).output
    assert "nope.txt does not exist: give a text file" in said


def test_an_empty_file_is_named_in_the_error(tiny_run: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    result = run_cli("eval", tiny_run, empty, ok=False)
    assert result.exit_code == 2 and "empty.txt has no tokens" in result.output


def test_eval_of_one_token_says_why_and_points_to_score(tiny_run: Path, tmp_path: Path) -> None:
    """It said '1 token(s): at least 2 are needed', while `charrnn score` scores that token."""
    one = tmp_path / "one.txt"
    one.write_text("a", encoding="utf-8")
    said = run_cli("eval", tiny_run, one, ok=False).output
    assert "one.txt has 1 token: eval predicts each token from those before it" in said
    assert "`charrnn score` it" in said
    assert "1 line, 1 token, 0 OOV" in run_cli("score", tiny_run, one).output
    assert "standard input has no tokens" in run_cli("eval", tiny_run, "-", input="", ok=False
                                                     ).output  # (it said '- has no tokens')


def test_a_split_of_one_token_is_named_too_short_not_empty(tmp_path: Path) -> None:
    text = tmp_path / "hw.txt"
    text.write_text("hello world\n", encoding="utf-8")  # 5% of 12 characters: one test token
    run_cli("ngram", "train", text, "--order", "2", "--run-name", "hw")
    result = run_cli("ngram", "eval", "hw", "--split", "test", ok=False)
    assert result.exit_code == 2
    assert "the test split of this run's dataset has 1 token: at least 2 are needed" in \
        result.output and "empty" not in result.output


def test_an_empty_split_points_to_a_split_that_has_text(word_root: Path) -> None:
    for command in (["eval", "rnn"], ["ngram", "eval", "tri"]):
        result = run_cli(*command, "--split", "test", "--out", word_root, ok=False)
        assert "the test split of this run's dataset is empty" in result.output
        assert "--split train or --split val" in result.output, result.output


def test_compare_with_a_missing_file_is_one_short_error(word_root: Path) -> None:
    result = run_cli("compare", "--file", "nope.txt", "--out", word_root, ok=False)
    assert result.exit_code == 2 and result.output.count("nope.txt") == 1
    assert len(result.output) < 300


def test_compare_takes_a_file_or_a_split_not_both(word_root: Path, tmp_path: Path) -> None:
    text = tmp_path / "t.txt"
    text.write_text("the cat\n")
    result = run_cli("compare", "--file", text, "--split", "val", "--out", word_root, ok=False)
    assert result.exit_code == 2 and "give --file or --split, not both" in result.output


def test_compare_shows_and_explains_unknown_shares(word_root: Path, tmp_path: Path) -> None:
    text = _unknown_text(tmp_path)
    report = json.loads(run_cli("compare", "--file", text, "--json", "--no-mix", "--out",
                                word_root).output)
    assert {r["run"]: r["unknown_tokens"] for r in report["results"]} == {"rnn": 3, "tri": 3}
    assert "<unk> tokens (" in report["note"] and "rnn 33.3%" in report["note"]
    table = run_cli("compare", "--file", text, "--out", word_root).output
    assert "unk" in table and "33.3%" in table
    # --unk is for a compare's char runs: with none among them it would do nothing
    for unk in ("skip", "error"):
        refused = run_cli("compare", "--file", text, "--unk", unk, "--no-mix", "--out", word_root,
                          ok=False)
        assert refused.exit_code == 2 and "no run compared is char level" in refused.output


@pytest.mark.parametrize("unk", ["skip", "error"])  # (error, the char models' default, typed)
@pytest.mark.parametrize("command", [["eval", "rnn"], ["ngram", "eval", "tri"], ["score", "rnn"],
                                     ["score", "tri"]])
def test_unk_is_refused_for_a_word_model(word_root: Path, tmp_path: Path, command, unk) -> None:
    """A word model reads unknown words as its <unk>: there is nothing for --unk to decide."""
    result = run_cli(*command, _unknown_text(tmp_path), "--unk", unk, "--out", word_root,
                     ok=False)
    assert result.exit_code == 2
    assert "this word model reads unknown words as its <unk>: drop --unk" in result.output
    run_cli(*command, _unknown_text(tmp_path), "--out", word_root)


@pytest.mark.parametrize("command", [["sample", "rnn"], ["ngram", "sample", "tri"]])
def test_unk_skip_of_a_prime_is_refused_for_a_word_model_as_eval_refuses_it(
        word_root: Path, command) -> None:
    """sample dropped the unknown words of the prime where eval and score refuse the skip."""
    result = run_cli(*command, "--prime", "the zzqx company", "--unk", "skip", "--length", "5",
                     "--out", word_root, ok=False)
    assert result.exit_code == 2
    assert "this word model reads unknown words as its <unk>: drop --unk" in result.output
    run_cli(*command, "--prime", "the zzqx company", "--length", "5", "--out", word_root)


def test_fill_refuses_unk_skip_when_no_model_reads_characters(word_root: Path) -> None:
    for unk in ("skip", "error"):
        result = run_cli("fill", "the ___ cat", "--unk", unk, "--out", word_root, ok=False)
        assert result.exit_code == 2 and "drop --unk" in result.output


@pytest.mark.parametrize("run", ["rnn", "tri", "lines"])
def test_score_and_eval_agree_on_a_last_line_without_a_line_break(word_root: Path, tmp_path: Path,
                                                                   run: str) -> None:
    """`score` closed the last line with </s> where `eval` (and KenLM's query) do not: 9 tokens
    against eval's 8. (Lines are scored apart, so the totals agree where eval too reads each line
    from <s>: a --lines n-gram.)"""
    if run == "lines":
        run_cli("ngram", "train", word_root / "corpus.txt", "--level", "word", "--lines",
                "--order", "3", "--out", tmp_path, "--run-name", "lines")
    root = tmp_path if run == "lines" else word_root
    text = tmp_path / "open.txt"
    text.write_text("the quick brown fox\nthe early bird", encoding="utf-8")
    evaluate = ["eval", run] if run == "rnn" else ["ngram", "eval", run]
    whole = json.loads(run_cli(*evaluate, text, "--out", root, "--json").output)
    lines = run_cli("score", run, text, "--out", root, "--json").stdout.splitlines()
    total = json.loads(lines[-1])["total"]
    assert [json.loads(line)["tokens"] for line in lines[:-1]] == [5, 3]
    assert total["tokens"] == whole["tokens"] == 8
    if run == "lines":
        assert total["perplexity"] == pytest.approx(whole["perplexity"], rel=1e-6)


def test_eval_reads_standard_input_for_dash_and_refuses_a_folder(word_root: Path,
                                                                 tmp_path: Path) -> None:
    """'-' was 'does not exist' (score took it); a folder was read whole, every file below it."""
    text = "the quick brown fox jumps over the lazy dog.\n"
    (tmp_path / "a.txt").write_text(text, encoding="utf-8")
    for command in (["eval", "rnn"], ["ngram", "eval", "tri"]):
        piped = json.loads(run_cli(*command, "-", "--out", word_root, "--json", input=text).output)
        filed = json.loads(run_cli(*command, tmp_path / "a.txt", "--out", word_root,
                                   "--json").output)
        assert piped["source"] == "<stdin>" and piped["nats_per_token"] == filed["nats_per_token"]
        folder = run_cli(*command, tmp_path, "--out", word_root, ok=False)
        assert folder.exit_code == 2 and "is a folder: give a text file" in folder.output
    refused = run_cli("compare", "--file", "-", "--out", word_root, input=text, ok=False)
    assert refused.exit_code == 2 and "save standard input to one first" in refused.output


def test_a_mix_weight_to_tune_without_a_validation_split_says_there_is_none(
        tmp_path: Path) -> None:
    """It said the split 'is not in the cache: … train again', which would make none either."""
    corpus = tmp_path / "corpus.txt"
    corpus.write_text("\n".join(SMALL_LINES * 40) + "\n", encoding="utf-8")
    common = ["--level", "word", "--val-frac", "0", "--test-frac", "0.1"]
    at = TINY.index("--eval-every")  # (nothing to evaluate on)
    run_cli("train", corpus, *common, *TINY[:at], *TINY[at + 2:], "--max-steps", "2",
            "--run-name", "rnn")
    run_cli("ngram", "train", corpus, *common, "--order", "2", "--run-name", "bi")
    result = run_cli("eval", "rnn", "--mix", "bi", ok=False)
    assert result.exit_code == 2 and "rnn's data has none: give --mix-weight W" in result.output
    assert run_cli("eval", "rnn", "--mix", "bi", "--mix-weight", "0.5").exit_code == 0


def test_score_of_a_last_line_of_skipped_characters_only_is_no_crash(tmp_path: Path) -> None:
    """A last line with no line break, all of whose characters --unk skip drops, left the RNN
    scorer no token at all: an internal error (np.concatenate of nothing)."""
    corpus = tmp_path / "c.txt"
    corpus.write_text("\n".join(SMALL_LINES * 20) + "\n", encoding="utf-8")
    run_cli("train", corpus, *TINY, "--max-steps", "2", "--run-name", "c", "--out", tmp_path)
    text = tmp_path / "t.txt"
    text.write_text("☃", encoding="utf-8")  # (alone: no other line gives its group a width)
    result = run_cli("score", "c", text, "--unk", "skip", "--json", "--out", tmp_path, ok=None)
    scored = json.loads(result.stdout.splitlines()[0])
    assert scored["tokens"] == 0 and scored["oov"] == 1 and "internal" not in result.output


def test_a_whitespace_prime_of_a_word_model_and_an_empty_prime_file_say_what_they_are(
        word_root: Path, tmp_path: Path) -> None:
    """'   ' said 'no token the model knows' (a word model knows <unk>); an empty --prime-file was
    taken as no prime at all."""
    spaces = run_cli("sample", "rnn", "--prime", "   ", "--out", word_root, "--plain", ok=False)
    assert spaces.exit_code == 2 and "the prime is whitespace only, which a word model" in \
        spaces.output
    empty = tmp_path / "empty.txt"
    empty.write_text("", encoding="utf-8")
    result = run_cli("sample", "rnn", "--prime-file", empty, "--out", word_root, "--plain",
                     ok=False)
    assert result.exit_code == 2 and "empty.txt is empty" in result.output


def test_an_open_last_line_among_others_is_scored_as_kenlm_does_with_a_note(
        tiny_run: Path) -> None:
    """Scored without its </s> (KenLM's query does the same), it ranked above the same line
    closed, and nothing said so."""
    closed = run_cli("score", tiny_run, input="the cat\nthe cat\n")
    open_last = run_cli("score", tiny_run, input="the cat\nthe cat")
    first, last = (float(line.split("\t")[0]) for line in open_last.stdout.splitlines())
    assert last > first  # one token fewer charged
    assert "note: line 2 has no line break at its end" in open_last.output
    assert "note:" not in closed.output
    assert "note:" not in run_cli("score", tiny_run, input="the cat").output  # nothing to rank


def _run_with_a_different_last(tiny_run: Path, root: Path, name: str) -> Path:
    """A copy of tiny_run whose last/ weights differ from its best/'s."""
    from safetensors.numpy import load_file, save_file

    run = root / name
    shutil.copytree(tiny_run, run)
    weights = run / "last" / "model.safetensors"
    save_file({k: v * 0.7 for k, v in load_file(weights).items()}, weights)
    return run


def test_compare_scores_the_checkpoint_named_and_keeps_best_and_last_apart(
        tiny_run: Path, tmp_path: Path) -> None:
    """`compare RUN/last` scored RUN's best/ (its figures, its path in --json), and `compare
    RUN/best RUN/last` was one row."""
    run = _run_with_a_different_last(tiny_run, tmp_path / "runs", "r")
    last = json.loads(run_cli("eval", run / "last", "--json").stdout)["bits_per_char"]
    best = json.loads(run_cli("eval", run / "best", "--json").stdout)["bits_per_char"]
    assert abs(last - best) > 1e-3
    rows = json.loads(run_cli("compare", run / "best", run / "last", "--json").stdout)["results"]
    assert {r["run"]: r["bits_per_char"] for r in rows} == {"r/best": pytest.approx(best),
                                                            "r/last": pytest.approx(last)}
    assert {r["checkpoint"] for r in rows} == {str(run / "best"), str(run / "last")}
    once = json.loads(run_cli("compare", run, run / "best", "--json").stdout)["results"]
    assert [r["run"] for r in once] == ["r"]  # the same model named twice: one row
    copied = tmp_path / "ck"  # a checkpoint folder copied out of its run, as eval takes it
    shutil.copytree(run / "last", copied)
    rows = json.loads(run_cli("compare", copied, "--json").stdout)["results"]
    assert [(r["run"], r["bits_per_char"]) for r in rows] == [("ck", pytest.approx(last))]
    said = run_cli("score", copied / "checkpoint.json", input="hello world\n").output
    assert "1 line" in said


def test_a_run_whose_run_json_is_lost_is_listed_and_its_checkpoint_scored(
        tiny_run: Path, tmp_path: Path) -> None:
    """runs left it out, and score and compare said 'run lost/last not found' of its checkpoint
    folder, which eval and sample took."""
    root = tmp_path / "runs"
    shutil.copytree(tiny_run, root / "lost")
    (root / "lost" / "run.json").unlink()
    row = next(line for line in run_cli("runs", "--out", root).output.splitlines()
               if line.startswith("lost"))
    assert "damaged" in row and "no run.json" in row
    said = run_cli("score", "lost/last", "--out", root, input="hello world\n").output
    assert said.startswith("-") and "1 line" in said
    rows = json.loads(run_cli("compare", "lost/last", "--out", root, "--json").stdout)["results"]
    assert [r["run"] for r in rows] == ["lost/last"]
    alone = run_cli("compare", "--out", root, ok=False).output  # every run: said, not left out
    assert "lost" in alone and "is missing run.json" in alone and "train --resume" in alone


def test_a_model_whose_sums_overflow_is_one_error_in_eval_score_and_sample(
        tiny_run: Path, tmp_path: Path) -> None:
    """Finite weights so large that the scores overflow to NaN: eval printed 'nan nats/token'
    and score 'nan' with exit 0, sample NumPy's overflow warnings before its error line."""
    import numpy as np
    from safetensors.numpy import load_file, save_file

    run = tmp_path / "runs" / "huge"
    shutil.copytree(tiny_run, run)
    for sub in ("best", "last"):
        weights = run / sub / "model.safetensors"
        tensors = load_file(weights)
        tensors["embed.weight"] = np.sign(tensors["embed.weight"]) * np.float32(3e38)
        save_file(tensors, weights)
    for args in (["eval", run], ["score", run], ["sample", run, "--length", "20", "--plain"]):
        result = run_cli(*args, ok=False, input="hello world\n")
        said = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(said) <= 2, result.output  # (sample: its text)
        assert "probabilities are not finite" in said[-1] and "Warning" not in result.output


def test_a_missing_checkpoint_of_a_run_named_says_to_use_the_other(tiny_run: Path,
                                                                   tmp_path: Path) -> None:
    """eval r/best of a run with no best/ said ''r/best' is neither a run nor a file', and
    compare skipped it as 'missing run.json'."""
    root = tmp_path / "runs"
    shutil.copytree(tiny_run, root / "r")
    shutil.rmtree(root / "r" / "best")
    said = run_cli("eval", "r/best", "--out", root, ok=False).output
    assert "use the run's other checkpoint" in said and "neither a run" not in said, said
    skipped = json.loads(run_cli("compare", "r/best", "r/last", "--out", root, "--json"
                                 ).stdout)["skipped"]
    assert [s["run"] for s in skipped] == ["r/best"]
    assert "use the run's other checkpoint" in skipped[0]["reason"], skipped


def test_compare_keeps_its_bars_whole_in_80_columns(small_text: Path, tmp_path: Path,
                                                    monkeypatch) -> None:
    """Long names were cut alike ('a-rather-lo…'), and long rows could squeeze the bars."""
    root = tmp_path / "runs"
    for order in ("1", "3"):
        run_cli("ngram", "train", small_text, "--order", order, "--out", root, "--run-name",
                f"a-rather-long-name-for-the-order-{order}-model-of-the-corpus")
    monkeypatch.setenv("COLUMNS", "80")
    out = run_cli("compare", "--out", root).output
    bars = [line.rstrip().split()[-1] for line in out.splitlines() if "█" in line]
    assert len(bars) == 2 and len(bars[1]) == 8 > len(bars[0]), out
    assert "…" not in out  # the names folded, whole: they were cut alike, 'a-rather-lo…'
