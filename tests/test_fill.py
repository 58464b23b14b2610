"""Fill in the blank: syntax, the right-context test, JSON, several blanks, n-gram, eval, REPL."""

from __future__ import annotations

import json
import os
import random
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from charrnn.errors import UserError
from charrnn.fill.config import FillOptions, SearchOptions
from charrnn.fill.engine import fill_template
from charrnn.fill.families import load_families
from charrnn.fill.syntax import escape, parse
from helpers import run_cli

LM_TINY = ["--hidden", "32", "--layers", "1", "--batch-size", "4", "--seq-len", "16",
           "--log-every", "50", "--eval-every", "100", "--plain", "--warmup", "5",
           "--val-frac", "0.1", "--test-frac", "0", "--max-steps", "150", "--lr", "0.01"]


def _corpus(path: Path, lines: list[str], repeats: int) -> Path:
    rng, out = random.Random(0), []
    for _ in range(repeats):
        rng.shuffle(lines)
        out += lines
    path.write_text("\n".join(out) + "\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def module_cache(tmp_path_factory: pytest.TempPathFactory):
    """Module fixtures train before the per-test cache is set: give them one of their own."""
    old = os.environ.get("CHARRNN_CACHE")
    os.environ["CHARRNN_CACHE"] = str(tmp_path_factory.mktemp("fill-cache"))
    yield
    if old is None:
        os.environ.pop("CHARRNN_CACHE", None)
    else:
        os.environ["CHARRNN_CACHE"] = old


@pytest.fixture(scope="module")
def word_runs(tmp_path_factory: pytest.TempPathFactory, module_cache) -> Path:
    """Word-level forward LM, backward LM, masked fill model and n-gram on a corpus where
    "i want to" is followed by "buy" three times as often as by "sell", and only the words
    after the blank ("a new …" / "a old …") tell which one fits."""
    root = tmp_path_factory.mktemp("fill-word")
    corpus = _corpus(root / "corpus.txt", ["i want to buy a new phone"] * 3 + [
        "i want to sell a old car", "you want to buy a new car", "we want to sell a old phone"], 40)
    # The masked model learns the both-sided cue more slowly than the LMs learn theirs.
    models = (("fwd", []), ("bwd", ["--direction", "backward"]),
              ("mask", ["--task", "fill", "--max-steps", "400"]))
    for name, extra in models:
        run_cli("train", corpus, "--level", "word", *LM_TINY, *extra, "--out", root, "--run-name", name)
    run_cli("ngram", "train", corpus, "--level", "word", "--order", "3", "--val-frac", "0.1",
            "--test-frac", "0", "--out", root, "--run-name", "ngram")
    return root


@pytest.fixture(scope="module")
def zh_runs(tmp_path_factory: pytest.TempPathFactory, module_cache) -> Path:
    """The issue's example, char level: 打算 is mostly followed by 买, but 一辆旧汽车 needs 卖."""
    root = tmp_path_factory.mktemp("fill-zh")
    corpus = _corpus(root / "corpus.txt", ["我打算买一部新手机"] * 3 + ["我打算卖一辆旧汽车"], 60)
    for name, extra in (("fwd", []), ("bwd", ["--direction", "backward"])):
        run_cli("train", corpus, *LM_TINY, *extra, "--out", root, "--run-name", name)
    return root


@pytest.fixture(scope="module")
def subword_runs(tmp_path_factory: pytest.TempPathFactory, module_cache) -> Path:
    """Subword LMs both ways, whose pieces carry the space before a word (▁buy)."""
    root = tmp_path_factory.mktemp("fill-subword")
    corpus = _corpus(root / "corpus.txt", ["i want to buy a new phone"] * 3 + [
        "i want to sell a old car", "you want to buy a new car", "we want to sell a old phone"], 40)
    for name, extra in (("fwd", []), ("bwd", ["--direction", "backward"])):
        run_cli("train", corpus, "--level", "subword", "--vocab-size", "300", *LM_TINY, *extra,
                "--out", root, "--run-name", name)
    return root


def _fill(root: Path, text: str, *args: str) -> dict:
    return json.loads(run_cli("fill", text, "--json", "--out", root, *args).output)


# ---- the test: the right-hand context decides ------------------------------------------------
def test_blank_decided_by_right_context_word_level(word_runs: Path) -> None:
    result = _fill(word_runs, "i want to {1} a old car", "-m", "fwd", "-m", "bwd", "-m", "mask",
                   "--method", "left", "--method", "bidirectional", "--mask-weight", "1")
    assert result["methods"]["left"][0]["fills"] == ["buy"]  # left context only: the usual word
    assert result["methods"]["bidirectional"][0]["fills"] == ["sell"]
    assert result["methods"]["bidirectional"][0]["text"] == "i want to sell a old car"


def test_the_left_baseline_follows_the_word_rule_of_an_unknown_length_blank(tmp_path: Path
                                                                             ) -> None:
    """--method left filled '这个___很好' with '，' and '。': the rule (no fill starts or ends
    with a mark) held for every method but it."""
    corpus = _corpus(tmp_path / "c.txt", ["我打算买一部新手机。很好。", "这个，很好。"], 40)
    run_cli("train", corpus, *LM_TINY, "--out", tmp_path, "--run-name", "fwd")
    result = _fill(tmp_path, "我打算买一部新手机___", "--method", "left", "--top-k", "20")
    fills = [f["fills"][0] for f in result["methods"]["left"]]
    assert fills and all(f[0] not in "，。" and f[-1] not in "，。" for f in fills), fills
    exact = _fill(tmp_path, "我打算买一部新手机{1}", "--method", "left")  # {N}: any token
    assert exact["methods"]["left"][0]["fills"] == ["。"]


def test_blank_decided_by_right_context_chinese_chars(zh_runs: Path) -> None:
    result = _fill(zh_runs, "我打算___一辆旧汽车", "--method", "left", "--method", "bidirectional")
    assert result["methods"]["left"][0]["fills"] == ["买"]
    assert result["methods"]["bidirectional"][0]["fills"] == ["卖"]
    assert result["models"] == {"fwd": "fwd", "bwd": "bwd"}  # found without --model


# ---- output --------------------------------------------------------------------------------------------
def test_json_output_has_ranked_normalised_fills(word_runs: Path) -> None:
    result = _fill(word_runs, "we want to ___ a old phone", "-m", "fwd", "-m", "bwd", "-m", "ngram",
                   "--top-k", "3")
    assert result["input"] == "we want to ___ a old phone" and result["blanks"] == 1
    assert set(result["methods"]) == {"bidirectional", "forward", "ngram"}
    for fills in result["methods"].values():
        probs = [f["prob"] for f in fills]
        assert len(fills) <= 3 and probs == sorted(probs, reverse=True) and sum(probs) <= 1 + 1e-9
        for f in fills:
            assert f["text"] == f"we want to {f['fills'][0]} a old phone"
    assert result["methods"]["ngram"][0]["fills"] == ["sell"]


def test_plain_output_lists_methods_and_filled_sentences(word_runs: Path) -> None:
    out = run_cli("fill", "i want to ___ a new phone", "-m", "fwd", "-m", "bwd", "--top-k", "2",
                  "--out", word_runs).output
    assert "bidirectional:" in out and "forward:" in out and "i want to buy a new phone" in out


def test_several_blanks_are_filled_jointly(word_runs: Path) -> None:
    result = _fill(word_runs, "i want to {1} a ___{1} car", "-m", "fwd", "-m", "bwd",
                   "--method", "bidirectional")
    best = result["methods"]["bidirectional"][0]
    assert len(best["fills"]) == 2 and best["text"].startswith("i want to ")
    assert best["fills"] in (["sell", "old"], ["buy", "new"])


# ---- syntax --------------------------------------------------------------------------------------------
def test_a_subword_word_blank_gets_words_without_a_space_of_their_own(subword_runs: Path) -> None:
    """sentencepiece's pieces start with the word's space: read as the fill's own, it doubled
    the space the text already has ("want to  buy")."""
    result = _fill(subword_runs, "i want to ___ a old car", "--top-k", "10")
    for fills in result["methods"].values():
        assert fills
        for fill in fills:
            assert fill["fills"][0] == fill["fills"][0].strip() != ""
            assert "  " not in fill["text"]


def test_blank_syntax_lengths() -> None:
    t = parse("a ____ b {3} c __{2,4} d")
    assert t.pieces == ["a ", " b ", " c ", " d"]
    assert [(b.min_len, b.max_len) for b in t.blanks] == [(1, None), (3, 3), (2, 4)]
    assert t.blanks[0].bounds(10) == (1, 10) and t.blanks[1].bounds(10) == (3, 3)
    assert parse(r"snake\_case ___ \{1}").pieces == ["snake_case ", " {1}"]


def test_an_open_blank_holds_at_least_its_minimum_up_to_the_default_bound() -> None:
    """'{2,}' was read as literal text, and the text then had no blank (or one fewer)."""
    t = parse("a {2,} b ___{3,} c")
    assert t.pieces == ["a ", " b ", " c"]
    assert [(b.min_len, b.max_len) for b in t.blanks] == [(2, None), (3, None)]
    assert t.blanks[0].bounds(10) == (2, 10) and t.blanks[1].bounds(2) == (3, 3)
    with pytest.raises(UserError, match="at least 1 token"):
        parse("a {0,} b")
    with pytest.raises(UserError, match="at most 64 tokens"):
        parse("a {65,} b")


def test_a_max_len_below_an_open_blanks_least_length_is_refused(tiny_run: Path) -> None:
    """Its bounds became (5, 5): the --max-len typed did nothing."""
    result = run_cli("fill", "a {5,} b", "--max-len", "3", "-m", tiny_run, ok=False)
    assert result.exit_code == 2 and "--max-len 3 is below the 5 tokens" in result.output


def test_a_backslash_before_text_that_is_no_markup_stays_in_the_text() -> None:
    """It was dropped: '这个\\很好__' was read (and shown) as '这个很好__'."""
    assert parse(r"这个\很好__ C:\new\\x").pieces == ["这个\\很好", " C:\\new\\x"]
    assert parse(escape(r"a\b_c{d}") + " ___").pieces == [r"a\b_c{d} ", ""]


@pytest.mark.parametrize(("text", "message"), [
    ("no blank here", "no blank in the text"),
    ("a {0} b", "at least 1 token"),
    ("a {5,2} b", "minimum length 5 is above the maximum 2"),
    ("a {100} b", "at most 64 tokens"),
    ("I will {,3} thee", "at character 7 is no blank: give the least length too"),  # (literal)
    ("I ___ {,3} thee", "is no blank"),  # (literal beside a blank, said nowhere)
])
def test_blank_syntax_errors(text: str, message: str) -> None:
    with pytest.raises(UserError, match=message):
        parse(text)


PIECE = st.text(alphabet=st.sampled_from(list("ab cde_{}\\,.é中\t")), max_size=12)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pieces=st.lists(PIECE, min_size=2, max_size=3))
def test_fill_never_changes_text_outside_the_blanks(tiny_run: Path, pieces: list[str]) -> None:
    template = parse("{1,2}".join(escape(p) for p in pieces))
    assert template.pieces == pieces
    families = load_families([str(tiny_run)], tiny_run.parent, "cpu")
    opts = FillOptions(top_k=3, unknown="skip", search=SearchOptions(beam=4, candidates=8))
    for fill in fill_template(template, families, "forward", opts):
        text, pos = fill.to_json(template)["text"], 0
        for piece, value in zip(pieces, [*fill.fills, ""], strict=True):
            assert text[pos : pos + len(piece)] == piece
            pos += len(piece)
            assert text[pos : pos + len(value)] == value and "\n" not in value
            pos += len(value)
        assert pos == len(text)


def test_search_options_are_refused_where_every_blank_tries_the_whole_vocabulary(
        tiny_run: Path, tmp_path: Path) -> None:
    """A one-character blank of a small char vocabulary tries every character: no beam ran, so
    --beam and --candidates changed nothing there."""
    for args in (["th{1} quick", "--beam", "8"], ["th{1} quick", "--beam", "8", "--candidates", "9"],
                 ["eval", tmp_path / "held.txt", "--blanks", "2", "--unit", "char", "--beam", "8"]):
        (tmp_path / "held.txt").write_text("the quick brown fox\n" * 3)
        result = run_cli("fill", *args, "-m", "tiny", "--out", tiny_run.parent, ok=False)
        assert result.exit_code == 2 and "every blank here is one token on a vocabulary small " \
            "enough to try whole" in result.output
    root = ["-m", "tiny", "--out", tiny_run.parent, "--beam", "8", "--json"]
    run_cli("fill", "th___ quick", *root)  # a blank of unknown length searches
    run_cli("fill", "th{1} quick", *root, "--method", "left")  # and so does the left-only baseline


# ---- n-gram, eval, REPL ------------------------------------------------------------------------------------
def test_fill_eval_reports_top1_and_top5_for_every_method(word_runs: Path, tiny_run: Path,
                                                          tmp_path: Path) -> None:
    held_out = tmp_path / "held.txt"
    held_out.write_text("i want to sell a old car\nyou want to buy a new car\n" * 3)
    result = json.loads(run_cli("fill", "eval", held_out, "--blanks", "6", "-m", "fwd", "-m", "bwd",
                                "-m", "mask", "-m", "ngram", "--json", "--quiet",
                                "--out", word_runs).output)
    assert set(result["methods"]) == {"bidirectional", "forward", "ngram"} and result["blanks"] == 6
    for r in result["methods"].values():
        assert 0 <= r["top1"] <= r["top5"] <= 1 and r["cases"] == 6
    plain = run_cli("fill", "eval", held_out, "--blanks", "3", "--unit", "char", "-m", tiny_run,
                    "--quiet").output  # (a char model: a word one cannot fill a char blank)
    assert "forward" in plain and "top-1" in plain
    fewer = run_cli("fill", "eval", held_out, "--blanks", "500", "-m", "fwd", "--out", word_runs)
    assert "holds 42 words to hide, fewer than --blanks 500: each of them is a blank" in \
        fewer.output  # (it capped the count silently)


def test_device_is_refused_where_only_an_ngram_fills(word_runs: Path, tmp_path: Path) -> None:
    """The n-gram fills on the CPU: --device moved nothing there."""
    held_out = tmp_path / "held.txt"
    held_out.write_text("i want to sell a old car\n" * 3)
    for args in (["i want to ___ a new car"], ["eval", held_out, "--blanks", "2", "--quiet"]):
        result = run_cli("fill", *args, "-m", "ngram", "--device", "cpu", "--out", word_runs,
                         ok=False)
        assert result.exit_code == 2
        assert "--device cpu places the RNNs, and only an n-gram fills here" in result.output
        only_ngram = run_cli("fill", *args, "-m", "ngram", "-m", "fwd", "--method", "ngram",
                             "--device", "cpu", "--out", word_runs, ok=False)
        assert only_ngram.exit_code == 2 and "only an n-gram fills here" in only_ngram.output
        run_cli("fill", *args, "-m", "ngram", "-m", "fwd", "--device", "cpu", "--out", word_runs)


def test_fill_eval_segmented_hides_whole_words(zh_runs: Path, tmp_path: Path) -> None:
    held_out = tmp_path / "seg.txt"
    held_out.write_text("我  打算  卖  一  辆  旧  汽车\n我  打算  买  一  部  新  手机\n")
    result = json.loads(run_cli("fill", "eval", held_out, "--blanks", "4", "--segmented",
                                "--json", "--quiet", "--out", zh_runs).output)
    assert result["blanks"] == 4 and result["methods"]["bidirectional"]["top5"] > 0


def test_interactive_prompt(word_runs: Path) -> None:
    lines = ("i want to ___ a old car\n:k 2\n:models\n:bogus\n:method ngram\n:method forward\n"
             ":unk skip\n{1} want\n:q\n")
    result = run_cli("fill", "-i", "-m", "fwd", "-m", "bwd", "-m", "ngram", "--out", word_runs,
                     input=lines)
    out = result.output
    assert "sell" in out and "top-k 2" in out and "fwd" in out and "bwd" in out
    assert "unknown command :bogus" in out and "method forward" in out and "ngram" in out
    assert "method ngram" in out and ":method picks" not in out  # as --method ngram starts
    assert ":unk skip says how a char model reads characters it lacks" in out  # word models
    # Under each table: how long each method took, and which models answered.
    assert "bidirectional " in out and " s · ngram " in out and "models: fwd fwd, bwd bwd, ngram ngram" in out


def test_the_prompt_keeps_its_models_and_speaks_its_own_commands(word_runs: Path) -> None:
    """:model without -m dropped every model found (the newest runs) for the one given; errors
    named --model; --method ngram showed two n-gram columns; --method left where it cannot run
    started and failed on every line."""
    lines = ":model fwd\n:models\n:q\n"
    out = " ".join(run_cli("fill", "-i", "--out", word_runs, input=lines).output.split())
    assert ":model adds a run to those given with -m" in out and "bwd bwd" in out
    lines = ":method forward\ni want to ___ a old car\n:q\n"
    out = run_cli("fill", "-i", "-m", "bwd", "--out", word_runs, input=lines).output
    assert "add :model RUN" in out and "--model" not in out
    out = run_cli("fill", "-i", "-m", "ngram", "--method", "ngram", "--out", word_runs,
                  input="i want to ___ a old car\n:q\n").output
    header = next(line for line in out.splitlines() if "ngram" in line and "models:" not in line)
    assert header.count("ngram") == 1
    refused = run_cli("fill", "-i", "-m", "bwd", "--method", "left", "--out", word_runs,
                      input=":q\n", ok=False)
    assert refused.exit_code == 2 and "needs a forward LM" in refused.output


def test_ctrl_c_during_a_fill_drops_it_and_the_prompt_goes_on(word_runs: Path) -> None:
    import io

    from rich.console import Console

    from charrnn.tui.fill_repl import Repl

    families = load_families(["fwd", "bwd"], word_runs)
    repl = Repl(families, lambda specs: families, ["fwd", "bwd"], FillOptions(), None,
                console=Console(file=io.StringIO()))
    asked = iter(["i want to ___ a old car", ":k 1", ":q"])

    def slow(line: str) -> None:
        raise KeyboardInterrupt  # Ctrl-C while the fill runs

    repl.show = slow
    repl.run(read=lambda prompt: next(asked))
    assert repl.opts.top_k == 1 and "interrupted" in repl.console.file.getvalue()


def test_unknown_characters_on_both_sides_of_the_blank_are_named_at_once(zh_runs: Path) -> None:
    result = run_cli("fill", "这本书__好看", "--out", zh_runs, ok=False)
    assert result.exit_code == 2
    assert all(f"'{c}'" in result.output for c in "这本书好看"), result.output


def test_the_prompt_says_how_to_skip_characters_the_model_lacks(zh_runs: Path) -> None:
    lines = "我打算___一辆旧飞机\n:unk skip\n我打算___一辆旧飞机\n:q\n"
    out = " ".join(run_cli("fill", "-i", "--out", zh_runs, input=lines).output.split())
    assert "not in the model's vocabulary" in out and "type :unk skip" in out
    assert "--unk skip" not in out and "characters the model does not know: skip" in out
    assert "卖" in out.split("does not know: skip")[1]  # the second try fills


@pytest.mark.parametrize(("args", "message"), [
    (["no blank"], "no blank in the text"),
    ([], "give a TEXT with blanks, or -i"),
    (["a ___", "-i"], "not both"),
    (["a ___", "--top-k", "0"], "--top-k must be ≥ 1"),
    (["a ___", "--method", "ngram", "-m", "fwd"], "needs an n-gram run"),
    (["a ___", "-m", "nosuchrun"], "run 'nosuchrun' not found"),
    (["a ___", "--mask-weight", "-1"], "--mask-weight must be between 0 and 10"),
    (["-i", "--json"], "--json prints the fills of one TEXT"),
    (["-i", "--method", "forward", "--method", "ngram"], "the prompt (-i) shows one method"),
    (["a ___", "--method", "ngram", "--mix", "ngram"], "--method ngram reads no LM"),
    (["a ___", "-m", "fwd", "-m", "bwd", "--mask-weight", "1"], "and none is loaded"),
    (["a ___", "--method", "forward", "--mask-weight", "1"], "which is not asked for"),
    (["a ___", "-m", "fwd", "--mask-weight", "0"], "and none is loaded"),  # typed, default
    (["a {1}", "-m", "mask", "--mask-weight", "1"], "none is loaded beside it"),  # no effect
    (["i want to ___ a old car", "-m", "mask"], "a fill model alone scores a fill given its "
                                                  "length"),  # each length got a third
    (["a {1} b {2}", "--max-len", "3"], "--max-len bounds blanks of unknown length"),
    (["eval", "FILE", "--unit", "char", "--max-len", "2"], "--unit char hides one character"),
])
def test_fill_errors_are_one_line(word_runs: Path, args: list[str], message: str) -> None:
    args = [str(word_runs / "corpus.txt") if a == "FILE" else a for a in args]
    result = run_cli("fill", *args, "--out", word_runs, ok=False)
    assert result.exit_code == 2 and message in result.output


def test_unknown_characters_are_an_error_unless_skipped(zh_runs: Path) -> None:
    result = run_cli("fill", "我打算___Z", "--out", zh_runs, ok=False)
    assert result.exit_code == 2 and "'Z'" in result.output
    run_cli("fill", "我打算___Z", "--unk", "skip", "--out", zh_runs)


def test_masked_model_alone_fills_both_sided(word_runs: Path) -> None:
    result = _fill(word_runs, "i want to {1} a old car", "-m", "mask", "--method", "bidirectional")
    assert result["methods"]["bidirectional"][0]["fills"] == ["sell"]


def test_train_task_fill_makes_a_fill_run(word_runs: Path) -> None:
    meta = json.loads((word_runs / "mask" / "best" / "checkpoint.json").read_text())
    assert meta["task"] == "fill" and meta["model"]["vocab_size"] > 5
    assert json.loads((word_runs / "mask" / "run.json").read_text())["kind"] == "fill"
    result = run_cli("sample", word_runs / "mask", ok=False)
    assert result.exit_code == 2 and "not a language model" in result.output
    result = run_cli("eval", "mask", "--split", "val", "--out", word_runs, ok=False)
    assert result.exit_code == 2 and "mask is a fill run: use `charrnn fill eval" in result.output


def test_default_models_skip_an_imported_ngram_run_without_dataset(word_runs: Path,
                                                                   tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(word_runs / "fwd", root / "fwd")
    arpa = tmp_path / "foreign.arpa"  # a foreign ARPA file: its run records "dataset": null
    arpa.write_text("\\data\\\nngram 1=3\n\n\\1-grams:\n-0.5\t</s>\n0\t<s>\n-0.3\tbuy\n\n"
                    "\\end\\\n", encoding="utf-8")
    run_cli("ngram", "import", arpa, "--run-name", "foreign", "--out", root)
    result = _fill(root, "i want to ___ a new phone")
    assert list(result["methods"]) == ["forward"]  # the LM alone: the n-gram is not picked


def test_a_runs_folder_with_an_ngram_alone_fills_with_it(word_runs: Path, tmp_path: Path) -> None:
    """It was refused: 'no language model runs under …', while the ngram method could answer."""
    import shutil

    root = tmp_path / "runs"
    shutil.copytree(word_runs / "ngram", root / "ngram")
    result = _fill(root, "i want to ___ a new phone")
    assert list(result["methods"]) == ["ngram"] and result["methods"]["ngram"][0]["fills"]
    empty = run_cli("fill", "a ___ b", "--out", tmp_path / "none", ok=False)
    assert "no models to fill with under" in empty.output  # nothing at all: how to get them
    assert "`charrnn fill train CORPUS` trains every one fill uses" in empty.output


# ---- option values and the "where" of errors ---------------------------------------------------------
@pytest.mark.parametrize(("args", "message"), [
    (["--context", "-5"], "--context must be ≥ 1"),
    (["--context", "0"], "--context must be ≥ 1"),
    (["--blanks", "0"], "--blanks must be ≥ 1"),
    (["--max-len", "0"], "--max-len must be between 1 and 64"),
    (["--beam", "0"], "--beam and --candidates must be ≥ 1"),
    (["--beam", "100000000"], "--beam must be between 1 and 1,024"),
    (["--candidates", "100000000"], "--candidates must be between 1 and 4,096"),
    (["--seed", "-1"], "--seed must be in [0, 2**63)"),
])
def test_fill_eval_refuses_option_values_out_of_range(word_runs: Path, tmp_path: Path, args,
                                                      message) -> None:
    held_out = tmp_path / "held.txt"
    held_out.write_text("i want to sell a old car\n")
    result = run_cli("fill", "eval", held_out, *args, "-m", "fwd", "--quiet", "--out", word_runs,
                     ok=False)
    assert result.exit_code == 2 and message in result.output, result.output


def test_fill_eval_of_a_file_without_words_names_the_file(word_runs: Path, tmp_path: Path) -> None:
    empty = tmp_path / "emptyf.txt"
    empty.write_text(" \n\n")
    result = run_cli("fill", "eval", empty, "-m", "fwd", "--quiet", "--out", word_runs, ok=False)
    assert result.exit_code == 2 and f"{empty} has no words to hide" in result.output


def test_fill_eval_of_unsegmented_chinese_by_words_says_how_to_cut_it(zh_runs: Path,
                                                                      tmp_path: Path) -> None:
    held_out = tmp_path / "zh.txt"
    held_out.write_text("我打算卖一辆旧汽车，我打算买一部新手机。\n" * 3, encoding="utf-8")
    result = run_cli("fill", "eval", held_out, "--quiet", "--out", zh_runs, ok=False)
    assert result.exit_code == 2 and "written without spaces between words" in result.output
    assert "--unit char" in result.output and len(result.output.strip().splitlines()) == 1
    nothing = run_cli("fill", "eval", held_out, "--out", tmp_path / "none", ok=False)
    assert "written without spaces" in nothing.output  # said before models are looked for
    chars = json.loads(run_cli("fill", "eval", held_out, "--unit", "char", "--blanks", "3",
                               "--json", "--quiet", "--out", zh_runs).output)
    assert chars["blanks"] == 3


def test_fill_eval_segmented_refuses_text_it_would_score_as_zeros_or_strip(tmp_path: Path
                                                                           ) -> None:
    """Unsegmented Chinese with --segmented scored 0.000 for every method (no word to hide);
    English lost its spaces."""
    zh, en = tmp_path / "zh.txt", tmp_path / "en.txt"
    zh.write_text("我打算卖一辆旧汽车，我打算买一部新手机。\n" * 3, encoding="utf-8")
    en.write_text("the quick brown fox jumps over the lazy dog\n" * 3, encoding="utf-8")
    for file, said in ((zh, "has no spaces between its words"),
                       (en, "is not written in Chinese or Japanese")):
        result = run_cli("fill", "eval", file, "--segmented", "--out", tmp_path / "none", ok=False)
        assert result.exit_code == 2 and said in result.output, result.output


def test_fill_eval_stopped_half_way_shows_the_methods_it_scored(word_runs: Path,
                                                                monkeypatch) -> None:
    """Ctrl-C during the second method printed only 'interrupted': the first's score was lost."""
    from charrnn.fill import evaluate

    real = evaluate.fill_template

    def stopped_in_forward(template, families, method, opts):
        if method == "forward":
            raise KeyboardInterrupt
        return real(template, families, method, opts)

    monkeypatch.setattr(evaluate, "fill_template", stopped_in_forward)
    result = run_cli("fill", "eval", word_runs / "corpus.txt", "--blanks", "3", "--quiet",
                     "--method", "bidirectional", "--method", "forward", "--out", word_runs,
                     ok=False)
    assert "3 word blanks, stopped; scored before the stop:" in result.output
    assert "bidirectional" in result.output and "forward  " not in result.output


def test_fill_with_models_of_different_corpora_names_the_runs(word_runs: Path, zh_runs: Path,
                                                              tmp_path: Path) -> None:
    other = str(zh_runs / "bwd")
    result = run_cli("fill", "i want to ___ a old car", "-m", "fwd", "-m", other,
                     "--out", word_runs, ok=False)
    assert result.exit_code == 2 and "vocabularies differ" in result.output
    assert "fwd" in result.output and other in result.output
    run_cli("ngram", "train", zh_runs / "corpus.txt", "--order", "2", "--out", tmp_path,
            "--run-name", "zhkn")
    kn = str(tmp_path / "zhkn")
    result = run_cli("fill", "i want to ___ a old car", "-m", "fwd", "-m", kn, "--out", word_runs,
                     ok=False)
    assert result.exit_code == 2 and "vocabularies differ" in result.output
    assert "fwd" in result.output and kn in result.output and "not in the model" not in result.output


def test_the_first_prompt_comes_after_the_ngram_tables_and_kernels_are_loaded(
        word_runs: Path) -> None:
    """So the first answer is as quick as the next ones (it took 3 s, they 0.5, in a fill group
    on the reviews)."""
    import io

    from rich.console import Console

    from charrnn.tui.fill_repl import Repl

    families = load_families(["fwd", "bwd", "ngram"], word_runs)
    ngram = families["ngram"].ngram.model
    built_at_prompt = []

    def read(prompt: str) -> str:
        built_at_prompt.append(ngram._tables is not None)
        raise EOFError

    assert ngram._tables is None  # built on first use
    Repl(families, lambda specs: families, [], FillOptions(), None,
         console=Console(file=io.StringIO())).run(read=read)
    assert built_at_prompt == [True]


def test_interactive_top_k_zero_is_refused_and_the_old_k_kept(word_runs: Path) -> None:
    lines = ":k 2\n:k 0\ni want to ___ a old car\n:q\n"
    out = run_cli("fill", "-i", "-m", "fwd", "--out", word_runs, input=lines).output
    assert ":k takes a number ≥ 1, not '0'" in out and "--top-k must be" not in out
    assert "sell" in out or "buy" in out


def test_method_help_says_left_is_asked_for_not_default() -> None:
    from charrnn.cli.fill import Method

    text = Method.__metadata__[0].help
    assert "left" in text and "--method left" in text and "every method the models allow)" not in text


# ---- the end of the text, and what a word is ----------------------------------------------------------
@pytest.fixture(scope="module")
def zh_period_ngram(tmp_path_factory: pytest.TempPathFactory, module_cache) -> Path:
    """Every line ends with 。: a text typed without it still ends there, at a boundary."""
    root = tmp_path_factory.mktemp("fill-period")
    corpus = _corpus(root / "corpus.txt", ["他很喜欢它。", "她很喜欢它。", "我很喜欢这本书。",
                                           "这本书很好。"], 30)
    run_cli("ngram", "train", corpus, "--order", "3", "--val-frac", "0.1", "--test-frac", "0",
            "--out", root, "--run-name", "kn")
    return root


def test_a_blank_at_the_end_of_the_text_is_followed_by_a_boundary(zh_period_ngram: Path) -> None:
    # Read as "它 then the line ends" the n-gram would rather put 。 in the blank; the text
    # stopping there means a boundary (。 too) comes next, so the word itself wins.
    result = _fill(zh_period_ngram, "他很喜欢{1}", "-m", "kn", "--top-k", "3")
    assert result["methods"]["ngram"][0]["fills"] == ["它"]


def test_an_unknown_length_fill_neither_starts_nor_ends_with_punctuation(zh_period_ngram: Path
                                                                          ) -> None:
    result = _fill(zh_period_ngram, "我很喜欢__", "-m", "kn", "--top-k", "5")
    fills = [f["fills"][0] for f in result["methods"]["ngram"]]
    assert fills[0] in ("它", "这本书") and not any(f[0] in "。\n" or f[-1] in "。\n" for f in fills)
    exact = _fill(zh_period_ngram, "这本书很{2}", "-m", "kn", "--top-k", "5")  # asked for 2 tokens
    assert any(f["fills"][0].endswith("。") for f in exact["methods"]["ngram"])


def test_fill_eval_cuts_unsegmented_chinese_into_lexicon_words(zh_runs: Path, tmp_path: Path
                                                                ) -> None:
    from charrnn.fill.evaluate import longest_match

    assert longest_match("我打算卖一辆旧汽车。", {"打算", "汽车", "一辆"}) == \
        "我  打算  卖  一辆  旧  汽车  。"
    lexicon = tmp_path / "seg.txt"
    lexicon.write_text("我  打算  买  一  部  新  手机\n", encoding="utf-8")
    held_out = tmp_path / "held.txt"
    held_out.write_text("我打算卖一辆旧汽车。\n我打算买一部新手机。\n", encoding="utf-8")
    result = json.loads(run_cli("fill", "eval", held_out, "--blanks", "50", "--lexicon", lexicon,
                                "--json", "--quiet", "--out", zh_runs).output)
    # 8 + 7 words by longest match (卖辆旧汽车: not in the lexicon, one character each); no 。
    assert result["blanks"] == 15 and result["lexicon"] == str(lexicon)
    refused = run_cli("fill", "eval", held_out, "--unit", "char", "--lexicon", lexicon,
                      "--out", zh_runs, ok=False)
    assert refused.exit_code == 2 and "--lexicon cuts an unsegmented FILE" in refused.output
    spaced = tmp_path / "en.txt"  # it cut English by the lexicon too, and changed the scores
    spaced.write_text("i want to buy a new phone\n" * 3, encoding="utf-8")
    refused = run_cli("fill", "eval", spaced, "--lexicon", lexicon, "--out", zh_runs, ok=False)
    assert refused.exit_code == 2 and "written with spaces between words" in refused.output
    from charrnn.fill.evaluate import cases_of

    thai, thai_words = tmp_path / "th.txt", tmp_path / "th_seg.txt"  # spaces between phrases
    thai.write_text("ฉันอยากซื้อโทรศัพท์ใหม่ ฉันอยากขายรถเก่า\n" * 2, encoding="utf-8")
    thai_words.write_text("ฉัน อยาก ซื้อ โทรศัพท์ ใหม่ ขาย รถ เก่า\n", encoding="utf-8")
    assert len(cases_of(str(thai), 50, lexicon=str(thai_words))) == 20



def test_a_fills_probability_does_not_depend_on_top_k(word_runs: Path) -> None:
    """Normalised over the candidates found, not over the few shown."""
    text, models = "we want to ___ a old phone", ["-m", "fwd", "-m", "bwd", "-m", "ngram"]
    one = _fill(word_runs, text, *models, "--top-k", "1")["methods"]
    many = _fill(word_runs, text, *models, "--top-k", "20")["methods"]
    for method in one:
        assert one[method][0]["fills"] == many[method][0]["fills"]
        assert one[method][0]["prob"] == pytest.approx(many[method][0]["prob"])
        assert sum(f["prob"] for f in many[method]) <= 1 + 1e-9


def test_no_model_to_fill_with_is_one_clear_error(tiny_run: Path, tmp_path: Path) -> None:
    """The newest LM's checkpoints unreadable, so no model is taken: the models allow no method
    (a StopIteration escaped as an internal error)."""
    import shutil

    run = tmp_path / "runs" / "broken"
    shutil.copytree(tiny_run, run)
    for name in ("best", "last"):
        (run / name / "checkpoint.json").write_text("{not json")
    result = run_cli("fill", "the ___ sat", ok=False)
    assert result.exit_code == 2 and "internal error" not in result.output


def test_char_blanks_with_a_word_model_are_refused_not_scored_zero(word_runs: Path,
                                                                   tmp_path: Path) -> None:
    """A word model's token is never one character: every char blank scored top-1 0.000."""
    held_out = tmp_path / "held.txt"
    held_out.write_text("i want to sell a old car\n")
    result = run_cli("fill", "eval", held_out, "--unit", "char", "-m", "fwd", "--quiet",
                     "--out", word_runs, ok=False)
    assert result.exit_code == 2
    assert "--unit char hides one character, and the" in result.output
    assert "models read words" in result.output


def test_a_narrow_beam_keeps_to_the_word_rule_inside_the_search(zh_period_ngram: Path) -> None:
    """--beam 1 answered 'no fill found': the one beam took 。 (what most often follows 它),
    and the word rule then threw it away after the search."""
    result = _fill(zh_period_ngram, "他很喜欢它__", "-m", "kn", "--beam", "1", "--top-k", "3")
    fills = [f["fills"][0] for f in result["methods"]["ngram"]]
    assert fills and not any(f[0] in "。\n" or f[-1] in "。\n" for f in fills), fills


def test_a_word_model_fill_neither_starts_nor_ends_with_an_attached_mark() -> None:
    """A word model's tokens carry their punctuation ('farewell.', "'though"): such fills broke
    the rule that a fill of words neither starts nor ends with a mark."""
    from charrnn.fill.families import Family
    from charrnn.tokenizers.word import WordTokenizer

    tok = WordTokenizer.build(["farewell. 'though it is so , friend\n"])
    index = {s: i for i, s in enumerate(tok.token_strings())}
    edges = Family(tok).word_edges
    assert index["farewell."] in edges.last and index["farewell."] not in edges.first
    assert index["'though"] in edges.first and index["'though"] not in edges.last
    assert index[","] in edges.first and index["friend"] not in edges.first | edges.last


def test_every_beam_search_keeps_out_the_edge_tokens_even_one_beam_wide() -> None:
    """The LM's, the n-gram's and the masked model's searches ban a fill's first and last tokens
    inside the search; a right-to-left search takes the rule reversed."""
    import numpy as np
    import torch

    from charrnn.fill.search import Edges, LMScorer, MaskScorer
    from charrnn.lm.config import ModelConfig
    from charrnn.lm.model import RNNLM

    torch.manual_seed(0)
    edges = Edges(first=frozenset(range(5)), last=frozenset({5}))  # start with 5, never end so
    lm = LMScorer(RNNLM(ModelConfig(vocab_size=6, cell="gru", layers=1, hidden=8)),
                  torch.device("cpu"), banned=[])
    found = [c for c, _ in lm.beam([0], 1, 2, 1, edges)]
    assert len(found) == 1 and found[0][0] == 5 and len(found[0]) == 2 and found[0][1] != 5
    rows = np.log(np.random.default_rng(0).dirichlet(np.ones(6), size=3))
    masked = [c for c, _ in MaskScorer.beam({3: rows}, 2, edges)]
    assert masked and all(c[0] == 5 and c[-1] != 5 for c in masked)
    assert edges.reversed() == Edges(first=frozenset({5}), last=frozenset(range(5)))


def test_fill_eval_refuses_blanks_no_model_can_write_and_notes_some(zh_runs: Path,
                                                                   tmp_path: Path) -> None:
    """Chinese models on text of other characters scored 0.000 for every method, and said
    nothing; hidden characters outside the vocabulary went unsaid too."""
    foreign = tmp_path / "foreign.txt"
    foreign.write_text("他们喜欢吃苹果和香蕉。\n" * 3, encoding="utf-8")
    refused = run_cli("fill", "eval", foreign, "--unit", "char", "--out", zh_runs, ok=False)
    assert refused.exit_code == 2
    assert "can be written by the bidirectional and forward methods' models" in refused.output
    some = tmp_path / "some.txt"
    some.write_text("我打算买一部新手机\n我打算买苹果\n", encoding="utf-8")
    said = run_cli("fill", "eval", some, "--unit", "char", "--blanks", "15", "--out", zh_runs
                   ).output
    assert said.count("note: 2 of the 15 chars hidden are outside the bidirectional and "
                      "forward methods' vocabulary") == 1


def test_fill_eval_refuses_a_lexicon_without_spaces(zh_runs: Path, tmp_path: Path) -> None:
    """An unsegmented lexicon made each line one 'word': every blank hid a whole line."""
    lexicon = tmp_path / "lex.txt"
    lexicon.write_text("我打算买一部新手机\n", encoding="utf-8")
    held_out = tmp_path / "held.txt"
    held_out.write_text("我打算卖一辆旧汽车。\n", encoding="utf-8")
    refused = run_cli("fill", "eval", held_out, "--lexicon", lexicon, "--out", zh_runs, ok=False)
    assert refused.exit_code == 2 and "has no spaces between its words" in refused.output
    lexicon.write_text("我\n打算\n卖\n一辆\n旧\n汽车\n", encoding="utf-8")  # one word a line
    result = json.loads(run_cli("fill", "eval", held_out, "--lexicon", lexicon, "--json",
                                "--quiet", "--out", zh_runs).output)
    assert result["blanks"] == 6


def test_small_shares_of_several_blanks_keep_two_significant_digits(word_runs: Path) -> None:
    """The joint fills of several blanks each hold a small share: every row showed 0.0%."""
    from charrnn.fill.engine import shown_prob

    assert [shown_prob(p) for p in (0.621, 0.0009, 2.1e-5, 3e-9)] == [
        " 62.1%", "0.090%", "0.002%", "<0.001%"]
    out = run_cli("fill", "i ___ to ___ a ___ ___", "-m", "fwd", "-m", "bwd", "--top-k", "5",
                  "--out", word_runs).output
    shares = re.findall(r"^\s+\d+\.\s+(\S+%)", out, flags=re.M)
    assert len(shares) == 10 and "0.0%" not in shares, out  # (two methods, five each)


def test_the_prompt_shows_a_window_of_a_long_line_around_its_blank(word_runs: Path) -> None:
    """A line of 11,000 characters was printed whole in every cell of the table."""
    line = "i want to buy a new phone " * 100 + "i want to ___ a new car\n:q\n"
    out = run_cli("fill", "-i", "-m", "fwd", "--top-k", "3", "--out", word_runs, input=line).output
    assert "…" in out and out.count("phone") < 60, out.count("phone")
