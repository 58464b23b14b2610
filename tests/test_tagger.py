"""Bidirectional taggers: scoring (conlleval, SIGHAN), data formats, train / eval / predict CLI."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from charrnn.errors import UserError
from charrnn.tag.data import bmes, read_conll, words_from_tags
from charrnn.tag.score import chunk_f1, chunks, word_f1
from helpers import run_cli

TAG_TINY = ["--hidden", "32", "--emb", "16", "--batch-size", "8", "--quiet", "--seed", "1"]


# ---- scoring ------------------------------------------------------------------------------------
def test_chunks_follow_conlleval_for_iob2_and_iob1() -> None:
    assert chunks("B-NP I-NP O B-VP I-VP B-NP".split()) == {(0, 2, "NP"), (3, 5, "VP"), (5, 6, "NP")}
    # IOB1: I- opens a chunk after O or another type; B- only separates two chunks of one type
    assert chunks("I-NP I-NP B-NP O I-VP I-PP".split()) == {(0, 2, "NP"), (2, 3, "NP"),
                                                            (4, 5, "VP"), (5, 6, "PP")}


def test_chunk_f1_counts_exact_spans_only() -> None:
    gold = [["B-NP", "I-NP", "O", "B-VP"]]
    pred = [["B-NP", "B-NP", "O", "B-VP"]]  # NP split in two: 1 of 3 predicted chunks right
    score = chunk_f1(gold, pred)
    assert (score["correct"], score["predicted"], score["gold"]) == (1, 3, 2)
    assert score["f1"] == pytest.approx(2 * (1 / 3) * (1 / 2) / (1 / 3 + 1 / 2))


def test_word_f1_is_sighan_span_matching() -> None:
    score = word_f1([["上海", "推", "迎"]], [["上", "海", "推", "迎"]])
    assert (score["correct"], score["predicted"], score["gold"]) == (2, 4, 3)
    assert word_f1([["ab"]], [["ab"]])["f1"] == 1.0


@given(st.lists(st.text(alphabet="abc中文", min_size=1, max_size=4), min_size=1, max_size=8))
def test_bmes_round_trips(words: list[str]) -> None:
    chars = [c for w in words for c in w]
    assert words_from_tags(chars, bmes(words)) == words


def test_conll_reader_reports_file_and_line(tmp_path: Path) -> None:
    path = tmp_path / "bad.txt"
    path.write_text("He PRP B-NP\nruns\n", encoding="utf-8")
    with pytest.raises(UserError, match=r"bad.txt:2: 1 column"):
        read_conll(str(path))


# ---- CLI ------------------------------------------------------------------------------------------
DET, NOUN, VERB, PREP = ["the", "a", "this"], ["cat", "dog", "car", "house", "tree", "plan"], \
    ["saw", "likes", "took", "made"], ["in", "on", "near"]


def _conll(path: Path, n: int, seed: int) -> Path:
    """Synthetic chunking data: DT NN → NP, VB → VP, IN → PP (words, POS, chunk)."""
    rng, lines = random.Random(seed), []
    for _ in range(n):
        rows = [(rng.choice(DET), "DT", "B-NP"), (rng.choice(NOUN), "NN", "I-NP"),
                (rng.choice(VERB), "VBD", "B-VP"), (rng.choice(DET), "DT", "B-NP"),
                (rng.choice(NOUN), "NN", "I-NP")]
        if rng.random() < 0.5:
            rows += [(rng.choice(PREP), "IN", "B-PP"), (rng.choice(DET), "DT", "B-NP"),
                     (rng.choice(NOUN), "NN", "I-NP")]
        lines += [" ".join(r) for r in rows] + [""]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def chunker(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """A word tagger with POS features, trained once for the module (a few seconds)."""
    root = tmp_path_factory.mktemp("tagger")
    train = _conll(root / "train.txt", 150, 0)
    run_cli("tag", "train", train, "--format", "conll", "--features", "1", *TAG_TINY,
            "--epochs", "4", "--out", root, "--run-name", "chunk")
    return root, _conll(root / "test.txt", 30, 1)


def test_tag_train_writes_a_tag_checkpoint_and_eval_reports_chunk_f1(chunker) -> None:
    root, test = chunker
    meta = json.loads((root / "chunk" / "best" / "checkpoint.json").read_text())
    assert meta["task"] == "tag" and meta["format"] == "charrnn-checkpoint"
    assert (root / "chunk" / "best" / "model.safetensors").is_file()
    result = json.loads(run_cli("tag", "eval", "chunk", test, "--json", "--out", root).output)
    assert result["score"] == "chunk" and result["f1"] > 0.9 and result["accuracy"] > 0.9
    line = run_cli("tag", "eval", "chunk", test, "--out", root).output
    assert "chunk F1" in line and "accuracy" in line


def test_predict_tags_conll_input_and_unseen_words(chunker, tmp_path: Path) -> None:
    root, _ = chunker
    text = "the DT\nzorblax NN\nsaw VBD\na DT\nfrumious NN\n"
    result = run_cli("tag", "predict", "chunk", "-", "--input", "conll", "--out", root, input=text)
    rows = [line.split("\t") for line in result.output.strip().split("\n")]
    assert [r[0] for r in rows] == ["the", "zorblax", "saw", "a", "frumious"]
    assert [r[-1] for r in rows] == ["B-NP", "I-NP", "B-VP", "B-NP", "I-NP"]


def test_a_word_tagger_refuses_a_segmenters_separator(chunker) -> None:
    root, _ = chunker
    for sep in ("/", " "):  # the default, typed, is refused too: it says nothing here
        result = run_cli("tag", "predict", "chunk", "-", "--input", "conll", "--sep", sep,
                         "--out", root, input="the DT\n", ok=False)
        assert result.exit_code == 2 and "--sep does not apply: this run is a word tagger" in \
            result.output


def test_a_word_tagger_writes_a_line_for_every_raw_line_even_empty_ones(tmp_path: Path) -> None:
    """Empty and blank lines were dropped: 4 lines in, 2 out, parallel files misaligned."""
    train = _conll(tmp_path / "train.txt", 40, 0)
    run_cli("tag", "train", train, "--format", "conll", *TAG_TINY, "--max-steps", "3",
            "--run-name", "words")
    raw = "the cat saw a dog\n\n   \na dog\n"
    inline = run_cli("tag", "predict", "words", "--output", "inline", input=raw).stdout
    lines = inline.split("\n")[:-1]
    assert len(lines) == 4 and lines[1:3] == ["", ""]
    assert [w.split("/")[0] for w in lines[3].split()] == ["a", "dog"]
    conll = run_cli("tag", "predict", "words", input=raw).stdout
    rows = conll.split("\n")[:-1]  # a blank line ends each input line's sentence, empty or not
    assert [r.split("\t")[0] for r in rows] == ["the", "cat", "saw", "a", "dog", "", "", "",
                                                "a", "dog", ""]


def test_predict_needs_conll_input_when_the_tagger_reads_features(chunker) -> None:
    root, _ = chunker
    result = run_cli("tag", "predict", "chunk", "--out", root, input="the cat saw a dog\n", ok=False)
    assert result.exit_code == 2 and "--input conll" in result.output


def test_segmenter_trains_and_segments_stdin(tmp_path: Path) -> None:
    words = ["我们", "喜欢", "学习", "中文", "今天", "天气", "很", "好", "的", "了"]
    rng = random.Random(0)
    lines = ["  ".join(rng.choice(words) for _ in range(rng.randint(3, 7))) for _ in range(300)]
    corpus = tmp_path / "seg.txt"
    corpus.write_text("\n".join(lines) + "\n", encoding="utf-8")
    run_cli("tag", "train", corpus, "--format", "segmented", *TAG_TINY, "--epochs", "6",
            "--run-name", "seg")
    out = run_cli("tag", "predict", "seg", input="我们喜欢学习\n今天天气很好\n").output
    assert out.split("\n")[:2] == ["我们 喜欢 学习", "今天 天气 很 好"]
    spaced = run_cli("tag", "predict", "seg", "--sep", "/", input="我们喜 欢学习\n").output
    assert spaced.strip() == "我们/喜/欢/学习"  # a space in the input is always a boundary
    for sep in ("", "\n"):  # words run together; more lines out than in
        refused = run_cli("tag", "predict", "seg", "--sep", sep, input="我们\n", ok=False)
        assert refused.exit_code == 2 and "give a separator of one line" in refused.output
    for other in (["--input", "conll"], ["--output", "inline"], ["--output", "conll"],
                  ["--input", "raw"]):  # a word tagger's options, at their defaults too
        refused = run_cli("tag", "predict", "seg", *other, input="我们\n", ok=False)
        assert refused.exit_code == 2 and "this run is a segmenter" in refused.output
    result = json.loads(run_cli("tag", "eval", "seg", corpus, "--json").output)
    assert result["score"] == "word" and result["f1"] > 0.95
    lm_eval = run_cli("eval", "seg", corpus, ok=False)  # not "N characters not in the vocabulary"
    assert lm_eval.exit_code == 2 and "seg is a tagger run: use `charrnn tag eval" in lm_eval.output
    _long_lines_are_tagged_in_windows(tmp_path / "runs", words)


def test_a_bmes_segmenter_read_from_conll_columns_is_scored_by_word_f1_and_keeps_its_best(
        tmp_path: Path) -> None:
    """B/M/E/S labels in CoNLL columns: validation was to improve F1, which only a segmented
    file's tagger computed, so no eval improved: no best/, and --patience stopped it early."""
    from charrnn.tag.data import bmes

    words = ["我们", "喜欢", "学习", "中文", "很", "好"]
    rng, rows = random.Random(0), []
    for _ in range(60):
        sentence = [rng.choice(words) for _ in range(rng.randint(2, 5))]
        chars = [c for w in sentence for c in w]
        rows += [f"{c}\t{t}" for c, t in zip(chars, bmes(sentence), strict=True)] + [""]
    corpus = tmp_path / "seg.conll"
    corpus.write_text("\n".join(rows), encoding="utf-8")
    run_cli("tag", "train", corpus, *TAG_TINY, "--max-steps", "8", "--eval-every", "2",
            "--patience", "2", "--run-name", "bmes")
    assert (tmp_path / "runs" / "bmes" / "best" / "checkpoint.json").is_file()
    result = json.loads(run_cli("tag", "eval", "bmes", corpus, "--json").output)
    assert result["score"] == "word" and "f1" in result


def _long_lines_are_tagged_in_windows(root: Path, words: list[str]) -> None:
    """A line longer than a window is tagged window by window: stitched where each window reads
    the whole line, the labels are the whole line's; with little context, still one valid
    segmentation of the same text (one Viterbi over the stitched windows)."""
    from charrnn.tag import predict
    from charrnn.tag.data import Sentence, words_from_tags

    bundle = predict.load_tagger("seg", root, "cpu")
    rng = random.Random(1)
    text = "".join(rng.choice(words) for _ in range(300))
    (whole,) = bundle.predict([Sentence(list(text))])
    saved = predict.WINDOW, predict.CONTEXT
    try:
        predict.WINDOW, predict.CONTEXT = 37, len(text)
        assert bundle.predict([Sentence(list(text)), Sentence(list("我们"))])[0] == whole
        predict.WINDOW, predict.CONTEXT = 37, 5
        (short,) = bundle.predict([Sentence(list(text))])
    finally:
        predict.WINDOW, predict.CONTEXT = saved
    assert "".join(words_from_tags(list(text), short)) == text and len(short) == len(text)
    assert short[0] in "BS" and short[-1] in "ES"
    assert all((b in "ME") == (a in "BM") for a, b in zip(short, short[1:], strict=False))


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--features", "x"], "--features must be whole numbers"),
        (["--epochs", "0"], "--epochs must be a positive number"),
    ],
)
def test_bad_tag_train_options_are_one_line_errors(tmp_path: Path, args, message) -> None:
    train = _conll(tmp_path / "train.txt", 5, 0)
    result = run_cli("tag", "train", train, *args, "--quiet", ok=False)
    assert result.exit_code == 2 and message in result.output


def test_tag_commands_refuse_language_model_runs(tiny_run: Path, tmp_path: Path) -> None:
    test = _conll(tmp_path / "t.txt", 2, 0)
    result = run_cli("tag", "eval", tiny_run, test, ok=False)
    assert result.exit_code == 2 and "not a tagger" in result.output


def test_sample_refuses_a_tagger_checkpoint(chunker) -> None:
    root, _ = chunker
    result = run_cli("sample", root / "chunk" / "best", ok=False)
    assert result.exit_code == 2 and "not a language model" in result.output


def test_lm_eval_commands_send_a_tagger_run_to_tag_eval(chunker) -> None:
    root, test = chunker
    for args in (["eval", "chunk", "--split", "test"], ["eval", root / "chunk" / "best", test],
                 ["ngram", "eval", "chunk", test]):
        result = run_cli(*args, "--out", root, ok=False)
        assert result.exit_code == 2, result.output
        assert "chunk is a tagger run: use `charrnn tag eval chunk FILE`" in result.output


def test_predict_offers_and_accepts_errors_replace(chunker, tmp_path: Path) -> None:
    root, _ = chunker
    latin1 = tmp_path / "latin1.txt"
    latin1.write_bytes(b"caf\xe9 NN\nthe DT\n")
    args = ("tag", "predict", "chunk", latin1, "--input", "conll", "--out", root)
    refused = run_cli(*args, ok=False)
    assert refused.exit_code == 2 and "--errors replace" in refused.output
    out = run_cli(*args, "--errors", "replace").output
    assert out.startswith("caf\ufffd\t")


def test_label_or_feature_column_beyond_the_file_is_named(tmp_path: Path) -> None:
    train = _conll(tmp_path / "train.txt", 5, 0)
    result = run_cli("tag", "train", train, "--label-column", "7", "--quiet", ok=False)
    assert "the label column (--label-column 7) is beyond the line's 3 columns" in result.output
    result = run_cli("tag", "train", train, "--features", "4", "--quiet", ok=False)
    assert "feature column 4 (--features) is beyond the line's 3 column(s)" in result.output


def test_predict_refuses_binary_or_non_utf8_stdin(chunker) -> None:
    root, _ = chunker
    for data in (b"caf\xe9 au lait\n", b"\x80\x04\x95\x00\x00pickle"):
        result = run_cli("tag", "predict", "chunk", "-", "--input", "conll", "--out", root,
                         input=data, ok=False)
        assert result.exit_code == 2 and "<stdin>" in result.output


def test_tag_train_refuses_data_too_small_to_learn_from(tmp_path: Path) -> None:
    one = tmp_path / "one.txt"
    one.write_text("the DT B-NP\ncat NN I-NP\n", encoding="utf-8")
    result = run_cli("tag", "train", one, "--format", "conll", "--quiet", ok=False)
    assert result.exit_code == 2 and "1 sentence(s)" in result.output
    same = tmp_path / "same.txt"
    same.write_text("a X O\nb X O\n\nc X O\n\nd X O\n", encoding="utf-8")
    result = run_cli("tag", "train", same, "--format", "conll", "--quiet", ok=False)
    assert result.exit_code == 2 and "single label" in result.output


@pytest.mark.parametrize(("fmt", "args", "message"), [
    ("segmented", ["--features", "1"], "--features applies to --format conll"),
    ("segmented", ["--char-filters", "20"], "--char-filters applies to --format conll"),
    ("segmented", ["--label-column", "2"], "--label-column applies to --format conll"),
    ("conll", ["--bigram-emb", "16"], "--bigram-emb applies to --format segmented"),
    ("conll", ["--valid", "VALID", "--val-frac", "0.3"], "--val-frac does not apply with --valid"),
    ("conll", ["--feature-emb", "8"], "and none is given: add --features"),
    ("conll", ["--char-emb", "7", "--char-filters", "0"], "--char-filters 0 turns the CNN off"),
])
def test_an_option_of_the_other_data_format_is_refused(tmp_path: Path, fmt, args, message
                                                       ) -> None:
    data = tmp_path / "data.txt"
    data.write_text("the DT B-NP\ncat NN I-NP\n\n" * 5 if fmt == "conll" else "我 爱 北京\n" * 5,
                    encoding="utf-8")
    args = [str(data) if a == "VALID" else a for a in args]
    result = run_cli("tag", "train", data, "--format", fmt, *args, "--quiet", "--max-steps", "1",
                     ok=False)
    assert result.exit_code == 2 and message in result.output


def test_features_that_are_the_label_column_are_refused(tmp_path: Path) -> None:
    train = _conll(tmp_path / "train.txt", 5, 0)  # columns: 0 word, 1 POS, 2 chunk label
    for args in (["--features", "2"], ["--features", "1", "--label-column", "1"]):
        result = run_cli("tag", "train", train, *args, "--quiet", ok=False)
        assert result.exit_code == 2 and "is the label column" in result.output, args
        assert "--features" in result.output and "--label-column" in result.output
    result = run_cli("tag", "train", train, "--features", "0", "--quiet", ok=False)
    assert result.exit_code == 2 and "column 0 is the token itself" in result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--features=-2"], "--features -2: a column counted from the end would be another one in "
                        "unlabelled text"),
    (["--features", "1,-1"], "--features -1: a column counted from the end"),
    (["--label-column=-3"], "--label-column -3 is column 0 of the file's 3, the tokens"),
])
def test_columns_counted_from_the_end_that_are_ambiguous_or_the_tokens_are_refused(
        tmp_path: Path, args: list[str], message: str) -> None:
    """--label-column -3 trained on the words as labels; --features -2 meant the POS column in
    training and the tokens in unlabelled text."""
    train = _conll(tmp_path / "train.txt", 5, 0)
    result = run_cli("tag", "train", train, *args, "--quiet", "--max-steps", "1", ok=False)
    assert result.exit_code == 2 and message in " ".join(result.output.split()), result.output


def test_a_conll_line_with_other_columns_than_the_file_is_refused_where_it_is(
        tmp_path: Path) -> None:
    """A missing tag made the POS tag the label (and an extra column made it the label)."""
    from charrnn.tag.data import read_conll

    for body, said in (("He PRP B-NP\nruns VBZ B-VP\n\nShe PRP\nsat VBD B-VP\n", ":4: 2 col"),
                       ("He PRP B-NP x\nruns VBZ B-VP\n", ":2: 3 col")):
        path = tmp_path / "bad.txt"
        path.write_text(body, encoding="utf-8")
        with pytest.raises(UserError, match=f"bad.txt{said}"):
            read_conll(str(path))


def test_a_folder_of_conll_files_never_joins_a_sentence_across_files(tmp_path: Path) -> None:
    """The files were joined with one line break: the last sentence of a file without a final
    blank line ran on into the next file's first."""
    from charrnn.tag.data import read_conll

    folder = tmp_path / "data"
    folder.mkdir()
    (folder / "a.txt").write_text("He PRP B-NP\nruns VBZ B-VP", encoding="utf-8")
    (folder / "b.txt").write_text("She PRP B-NP\nsat VBD B-VP\n", encoding="utf-8")
    assert [s.tokens for s in read_conll(str(folder))] == [["He", "runs"], ["She", "sat"]]
    (folder / "c.txt").write_text("x X\n", encoding="utf-8")  # its own columns: named
    with pytest.raises(UserError, match=r"c.txt:1: 2 column\(s\), and the first token line "
                       r"\(.*a.txt:1\) has 3"):
        read_conll(str(folder), features=[1])


@pytest.mark.parametrize(("args", "message"), [
    (["--label-column", "0"], "--label-column 0 is the tokens' column: the tagger would learn"),
    (["--features", "1,1"], "--features names a column twice ([1, 1])"),
    (["--char-emb", "0"], "--char-emb 0 leaves the char CNN (--char-filters) no input"),
    (["--features", "1", "--feature-emb", "0"], "--feature-emb 0 gives the --features columns no"),
])
def test_columns_and_sizes_that_leave_an_input_empty_or_copied_are_refused(tmp_path: Path, args,
                                                                           message) -> None:
    """These trained (a tagger copying its words; a duplicate or empty input) or crashed deep in
    torch (--char-emb 0)."""
    train = _conll(tmp_path / "train.txt", 5, 0)
    result = run_cli("tag", "train", train, *args, "--quiet", "--max-steps", "1", ok=False)
    assert result.exit_code == 2 and message in result.output, result.output


@pytest.mark.parametrize(("args", "message"), [
    (["--format", "segmented", "--bigram-emb", "-1"], "--bigram-emb must be ≥ 0"),
    (["--char-filters", "-3"], "--char-filters must be ≥ 0"),
    (["--min-count", "0"], "--min-count must be ≥ 1"),
    (["--eval-every", "-2"], "--eval-every must be a positive number"),
])
def test_negative_tag_train_sizes_are_one_line_errors(tmp_path: Path, args, message) -> None:
    train = _conll(tmp_path / "train.txt", 5, 0)
    result = run_cli("tag", "train", train, *args, "--quiet", ok=False)
    assert result.exit_code == 2 and message in result.output, result.output


class _EveryCharAWord:
    """A segmenter that cuts after every character (the worst case for combining marks)."""

    meta = {"tag": {"features": [], "format": "segmented", "label_column": -1}}

    class encoder:  # noqa: N801 - stands in for the Encoder attribute
        level = "char"

    def predict(self, sentences):
        return [["S"] * len(s.tokens) for s in sentences]


def test_segmenter_keeps_combining_marks_and_joiners_with_their_base(monkeypatch) -> None:
    from charrnn.tag import predict as tagpredict

    monkeypatch.setattr(tagpredict, "load_tagger", lambda *args, **kwargs: _EveryCharAWord())
    text = "cafe\u0301 \U0001F469\u200d\U0001F4BBok\u0915\u094d\n"
    out = run_cli("tag", "predict", "seg", "--sep", "|", input=text).output
    assert out == "c|a|f|e\u0301|\U0001F469\u200d\U0001F4BB|o|k|\u0915\u094d\n"


@pytest.mark.parametrize(("text", "cut"), [
    ("中🇨🇳🇫🇷🇩国", "中|🇨🇳|🇫🇷|🇩|国"),  # flags pair indicators from the left
    ("🇦 🇧🇨", "🇦|🇧🇨"),  # ... within a spaced piece (🇦 and 🇧 paired across the space)
    ("旗\U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F旗",
     "旗|\U0001F3F4\U000E0067\U000E0062\U000E0073\U000E0063\U000E0074\U000E007F|旗"),
    ("\u1112\u1161\u11ab\uAC00\u11A8x", "\u1112\u1161\u11ab|\uAC00\u11A8|x"),  # jamo: L V T
])
def test_segmenter_never_cuts_a_flag_a_tag_sequence_or_a_hangul_syllable(monkeypatch, text: str,
                                                                          cut: str) -> None:
    """Regional-indicator pairs, emoji tag sequences and decomposed Hangul were cut apart."""
    from charrnn.tag import predict as tagpredict

    monkeypatch.setattr(tagpredict, "load_tagger", lambda *args, **kwargs: _EveryCharAWord())
    assert run_cli("tag", "predict", "seg", "--sep", "|", input=text + "\n").output == cut + "\n"


def test_tagger_runs_of_before_the_rename_still_open(chunker, tmp_path: Path) -> None:
    import shutil

    root, test = chunker
    shutil.copytree(root / "chunk", tmp_path / "old")
    info = json.loads((tmp_path / "old/run.json").read_text())
    (tmp_path / "old/run.json").write_text(json.dumps({**info, "kind": "tagger"}))
    result = json.loads(run_cli("tag", "eval", "old", test, "--json", "--out", tmp_path).output)
    assert result["f1"] > 0.9
    refused = run_cli("eval", "old", "--out", tmp_path, ok=False)
    assert "old is a tagger run: use `charrnn tag eval old FILE`" in refused.output


def test_batches_come_longest_first_so_packing_needs_no_reorder() -> None:
    """pack_padded_sequence(enforce_sorted=False) copies its order to the GPU from pageable
    memory (a host sync per batch): collate sorts, the tagger packs as given."""
    import numpy as np
    import torch

    from charrnn.tag.predict import collate

    items = [{"tokens": np.arange(1, n + 1)} for n in (2, 5, 3)]
    batch = collate(items, torch.device("cpu"))
    assert batch["lengths"].tolist() == [5, 3, 2] and batch["order"] == [1, 2, 0]
    assert batch["tokens"][0].tolist() == [1, 2, 3, 4, 5]


def test_the_birnn_packs_sorted_batches_without_reordering(monkeypatch) -> None:
    import numpy as np
    import torch

    from charrnn.rnn import layers
    from charrnn.tag.predict import collate

    seen = []
    real = layers.pack_padded_sequence
    monkeypatch.setattr(layers, "pack_padded_sequence",
                        lambda *a, **k: seen.append(k["enforce_sorted"]) or real(*a, **k))
    rnn = layers.BiRNN("lstm", 4, 3, 1, 0.0)
    batch = collate([{"tokens": np.ones(n, dtype=np.int64)} for n in (2, 5, 3)], torch.device("cpu"))
    rnn(torch.randn(3, 5, 4), batch["lengths"])
    rnn(torch.randn(3, 5, 4), torch.tensor([2, 5, 3]))  # unsorted (the fill scorer): PyTorch sorts
    assert seen == [True, False]


@given(st.integers(0, 2**32 - 1))
def test_viterbi_finds_the_best_path_the_constraints_allow(seed: int) -> None:
    """Against every path of a few small sentences, scored by brute force."""
    import itertools

    import torch

    from charrnn.tag.model import allowed_transitions, viterbi

    labels = ["B", "E", "M", "S"]
    ok = allowed_transitions(labels, [])
    gen = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([5, 1, 3])
    log_probs = torch.randn(3, 5, 4, generator=gen).log_softmax(-1)
    for b, length in enumerate(lengths.tolist()):
        def fits(path: tuple[int, ...]) -> bool:
            return bool(ok[4, path[0]] and ok[5, path[-1]]
                        and all(ok[i, j] for i, j in zip(path, path[1:], strict=False)))

        best = max((p for p in itertools.product(range(4), repeat=length) if fits(p)),
                   key=lambda p: float(sum(log_probs[b, t, lab] for t, lab in enumerate(p))))
        assert tuple(viterbi(log_probs, lengths, ok)[b]) == best


def test_tag_train_reads_its_data_from_standard_input(tmp_path: Path) -> None:
    """'-' was 'does not exist', though a run records standard input as where it read."""
    text = _conll(tmp_path / "train.txt", 20, 0).read_text(encoding="utf-8")
    run_cli("tag", "train", "-", *TAG_TINY, "--max-steps", "2", "--run-name", "piped", input=text)
    again = run_cli("tag", "train", "--resume", "piped", "--max-steps", "3", ok=False)
    assert again.exit_code == 2 and "from standard input: give the same text again" in again.output
    run_cli("tag", "train", "-", "--resume", "piped", "--max-steps", "3", input=text)


def test_predict_reads_one_file_not_a_folder(chunker, tmp_path: Path) -> None:
    """A folder given as FILE was read whole, every file under it run together (a stray binary
    file among them stopped it)."""
    root, _ = chunker
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "a.txt").write_text("the cat\n")
    refused = run_cli("tag", "predict", "chunk", folder, "--out", root, ok=False)
    assert refused.exit_code == 2 and "is not a file: tag predict reads one text file" in \
        refused.output


def test_a_registry_name_as_training_data_says_how_to_get_its_files(tmp_path: Path) -> None:
    refused = run_cli("tag", "train", "conll2000", "--out", tmp_path, ok=False)
    assert refused.exit_code == 2 and "`charrnn corpus get conll2000`" in refused.output


def test_eval_of_a_file_without_the_taggers_columns_says_what_the_tagger_reads(
        chunker, tmp_path: Path) -> None:
    """A file without the POS column was told to change --features and --label-column, which
    tag eval does not take (they belong to training)."""
    root, test = chunker
    cut = tmp_path / "no_pos.txt"
    cut.write_text("\n".join(" ".join(line.split()[::2]) for line in test.read_text().split("\n")))
    refused = run_cli("tag", "eval", "chunk", cut, "--out", root, ok=False)
    assert refused.exit_code == 2 and "--features" not in refused.output
    assert "this tagger reads tokens in column 0, features in column 1, labels in column -1 " \
        "(the last), as its training file had" in refused.output


def test_resume_tagger_given_a_language_model_says_what_it_holds(tiny_run: Path,
                                                                 tmp_path: Path) -> None:
    """It said the checkpoint was 'saved by a version that did not record its data'."""
    from charrnn import checkpoint
    from charrnn.tag.config import TagTrainConfig
    from charrnn.tag.train import resume_tagger

    with pytest.raises(UserError, match="holds a language model, not a tagger"):
        resume_tagger(checkpoint.resolve(str(tiny_run), tiny_run.parent), TagTrainConfig(),
                      tmp_path)


@pytest.mark.parametrize("split", ["--valid", "--test"])
def test_the_training_sentences_given_as_another_split_are_refused(tmp_path: Path,
                                                                  split: str) -> None:
    """tag train c.txt --valid c.txt trained and reported F1 on its own training sentences."""
    train = _conll(tmp_path / "train.txt", 20, 1)
    shutil.copyfile(train, tmp_path / "copy.txt")
    for again in (train, tmp_path / "copy.txt"):
        result = run_cli("tag", "train", train, "--format", "conll", *TAG_TINY, "--max-steps",
                         "1", split, again, ok=False)
        assert result.exit_code == 2 and "holds the training sentences" in result.output


@pytest.mark.parametrize(("option", "value"), [("--layers", "1000000000000"),
                                               ("--char-emb", "100000000000000000")])
def test_a_tagger_too_deep_or_too_wide_to_build_is_refused_before_the_data(
        tmp_path: Path, option: str, value: str) -> None:
    """--layers 1e12 ran at 100% CPU for 20 minutes building the memory check's skeleton."""
    result = run_cli("tag", "train", tmp_path / "not-read.txt", option, value, ok=False)
    assert result.exit_code == 2 and f"{option} must be at most" in result.output


def test_a_tagger_without_best_says_its_last_is_scored(tmp_path: Path) -> None:
    """A run stopped before its first evaluation was scored from last/ without a word, where
    the help promises the best checkpoint by validation score."""
    train = _conll(tmp_path / "train.txt", 40, 1)
    run_cli("tag", "train", train, "--format", "conll", *TAG_TINY, "--max-steps", "2",
            "--eval-every", "1000", "--run-name", "nb")
    shutil.rmtree(tmp_path / "runs/nb/best", ignore_errors=True)  # as if stopped before it
    result = run_cli("tag", "eval", "nb", train)
    assert "run nb has no best/ checkpoint" in result.output
    assert "has no best/" not in run_cli("tag", "eval", "nb/last", train).output


def test_a_validation_file_of_tokens_the_training_data_lacks_is_noted(tmp_path: Path) -> None:
    """A CoNLL file given as --valid to a segmented-text tagger was read without a word and
    scored F1 0.05."""
    seg = tmp_path / "seg.txt"
    seg.write_text("我 的 手机\n我们 的 老师\n手机 坏 了\n" * 20, encoding="utf-8")
    conll = _conll(tmp_path / "conll.txt", 10, 2)
    result = run_cli("tag", "train", seg, "--format", "segmented", "--max-steps", "1",
                     "--valid", conll, "--run-name", "t")
    assert "note: 100% of the validation tokens never occur in the training data" in result.output
    result = run_cli("tag", "train", seg, "--format", "segmented", "--max-steps", "1",
                     "--run-name", "u")
    assert "never occur" not in result.output
