"""preprocess: streamed ids on disk, contiguous tail splits, cached by content and options."""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from charrnn.data import Dataset, PreprocessOptions, find_dataset, prepare, preprocess
from charrnn.errors import UserError
from helpers import TINY, run_cli


def test_char_split_is_nanogpt_90_10_on_tiny_shakespeare(shakespeare: Path, tmp_path: Path) -> None:
    ds = preprocess([str(shakespeare)], tmp_path / "ds", PreprocessOptions(val_frac=0.1, test_frac=0))
    assert ds.tokens("train") == ds.chars("train") == 1_003_854
    assert ds.tokens("val") == 111_540
    assert ds.ids("train").dtype == np.uint8 and isinstance(ds.ids("train"), np.memmap)
    text = shakespeare.read_text(encoding="utf-8")
    assert ds.tokenizer.decode(ds.ids("val")[:200].tolist()) == text[1_003_854:1_004_054]


def test_word_level_cuts_splits_at_line_breaks_and_ends_lines_with_eos(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"w{i % 7} w{i % 3} end\n" for i in range(100)))
    ds = preprocess([str(corpus)], tmp_path / "ds", PreprocessOptions(level="word"))
    text = corpus.read_text()
    start = 0
    for split in ("train", "val", "test"):
        chars = ds.chars(split)
        assert chars % 10 == 0 and chars > 0  # every line is 10 characters: cuts fall on lines
        assert ds.tokenizer.decode(ds.ids(split).tolist()) == text[start : start + chars]
        start += chars
    assert start == len(text)


def test_separate_valid_and_test_files_and_min_count_unk(tmp_path: Path) -> None:
    train = tmp_path / "train.txt"
    train.write_text("a a a b b c\n" * 10)
    valid = tmp_path / "valid.txt"
    valid.write_text("a b zzz\n")
    ds = preprocess([str(train)], tmp_path / "ds", PreprocessOptions(
        level="word", valid=[str(valid)], test=[str(valid)], min_count=11))
    words = ds.tokenizer.token_strings()
    assert "a" in words and "b" in words and "c" not in words
    assert ds.tokenizer.decode(ds.ids("val").tolist()) == "a b <unk>\n"
    assert ds.tokens("train") == 70 and ds.meta["split_rule"]["val_files"] == [str(valid)]


def test_subword_dataset_round_trips_text(tmp_path: Path, shakespeare: Path) -> None:
    ds = preprocess([str(shakespeare)], tmp_path / "ds",
                    PreprocessOptions(level="subword", vocab_size=500))
    text = shakespeare.read_text(encoding="utf-8")
    decoded = ds.tokenizer.decode(ds.ids("train").tolist())
    assert decoded == text[: ds.chars("train")]
    assert ds.tokens("train") < ds.chars("train") * 0.7


def test_prepare_caches_by_content_and_options(small_text: Path) -> None:
    first = prepare([str(small_text)], PreprocessOptions())
    again = prepare([str(small_text)], PreprocessOptions())
    other = prepare([str(small_text)], PreprocessOptions(level="word"))
    assert first.root == again.root and first.root != other.root
    assert find_dataset(first.id).root == first.root
    small_text.write_text(small_text.read_text() + "more\n")
    assert prepare([str(small_text)], PreprocessOptions()).id != first.id


def test_truncated_dataset_is_reported(small_text: Path, tmp_path: Path) -> None:
    ds = preprocess([str(small_text)], tmp_path / "ds", PreprocessOptions())
    path = ds.root / "train.bin"
    path.write_bytes(path.read_bytes()[:-3])
    with pytest.raises(UserError, match="the dataset is cut short; preprocess the corpus into"):
        Dataset(ds.root).ids("train")


def test_a_damaged_cached_dataset_is_made_again_from_the_text(
        small_text: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """It was refused with 'preprocess again', which no command could do for a cache entry:
    preprocess needs --out, and train on the same text met the same damaged entry."""
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))  # (the session's stays whole)
    ds = prepare([str(small_text)], PreprocessOptions())
    val = ds.root / "val.bin"
    whole = val.read_bytes()
    val.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(UserError, match="cut short; give the command its text again .*or delete"):
        Dataset(ds.root).ids("val")
    again = prepare([str(small_text)], PreprocessOptions())
    assert again.root == ds.root and val.read_bytes() == whole
    val.write_bytes(whole + b"\0")  # longer than it says: damaged, not cut short
    with pytest.raises(UserError, match="the dataset is damaged; give the command its text"):
        Dataset(ds.root).ids("val")


def test_a_damaged_dataset_is_one_clear_error(small_text: Path, tmp_path: Path) -> None:
    """meta.json without its keys, ids past the vocabulary, a missing split file: each says so
    (they were a KeyError, an IndexError deep in training, 'has -1 bytes')."""
    ds = preprocess([str(small_text)], tmp_path / "ds", PreprocessOptions())
    meta = json.loads((ds.root / "meta.json").read_text())
    (ds.root / "meta.json").write_text(json.dumps({k: meta[k] for k in ("format", "version")}))
    with pytest.raises(UserError, match="meta.json is damaged .*preprocess the corpus again"):
        Dataset(ds.root)
    (ds.root / "meta.json").write_text(json.dumps(meta))
    path = ds.root / "train.bin"
    path.write_bytes(bytes([255]) * path.stat().st_size)
    with pytest.raises(UserError, match="holds token id 255, past the vocabulary"):
        Dataset(ds.root).ids("train")
    path.unlink()
    with pytest.raises(UserError, match="train.bin is missing"):
        Dataset(ds.root).ids("train")
    result = run_cli("ngram", "train", ds.root, "--order", "2", ok=False)
    assert result.exit_code == 2 and "train.bin is missing" in result.output


def test_cli_preprocess_writes_meta_and_bins(small_text: Path, tmp_path: Path) -> None:
    result = run_cli("preprocess", small_text, "--out", tmp_path / "ds", "--level", "word",
                     "--max-vocab", "10")
    assert "word vocab 10" in result.output
    meta = json.loads((tmp_path / "ds" / "meta.json").read_text())
    assert meta["vocab_size"] == 10 and meta["dtype"] == "uint8"
    assert {s["sha256"] for s in meta["sources"]} and meta["split_rule"]["val_frac"] == 0.05
    for split in ("train", "val", "test"):
        assert (tmp_path / "ds" / f"{split}.bin").stat().st_size == meta["splits"][split]["tokens"]


def test_cli_preprocess_refuses_a_non_dataset_out_folder(small_text: Path, tmp_path: Path) -> None:
    out = tmp_path / "busy"
    out.mkdir()
    (out / "mine.txt").write_text("keep me")
    result = run_cli("preprocess", small_text, "--out", out, ok=False)
    assert "not a charrnn dataset" in result.output
    assert (out / "mine.txt").read_text() == "keep me"


@pytest.mark.parametrize("meta", ['{"name": "my web app"}', "not json"])
def test_cli_preprocess_keeps_a_project_that_merely_has_a_meta_json(
        small_text: Path, tmp_path: Path, meta: str) -> None:
    project = tmp_path / "proj"
    project.mkdir()
    (project / "meta.json").write_text(meta)
    result = run_cli("preprocess", small_text, "--out", project, ok=False)
    assert result.exit_code == 2 and "not a charrnn dataset" in result.output
    (project / "src").mkdir()
    result = run_cli("preprocess", small_text, "--out", project, ok=False)
    assert "holds files that are not a charrnn dataset's (src)" in result.output
    assert (project / "meta.json").read_text() == meta and (project / "src").is_dir()


def test_cli_preprocess_replaces_an_earlier_dataset_but_not_files_put_beside_it(
        small_text: Path, tmp_path: Path) -> None:
    ds = tmp_path / "ds"
    run_cli("preprocess", small_text, "--out", ds)
    run_cli("preprocess", small_text, "--out", ds, "--level", "word")
    assert Dataset(ds).tokenizer.level == "word"
    (ds / "notes.txt").write_text("mine")
    result = run_cli("preprocess", small_text, "--out", ds, ok=False)
    assert "(notes.txt)" in result.output and Dataset(ds).tokenizer.level == "word"


def test_bad_split_fractions_are_user_errors(small_text: Path) -> None:
    result = run_cli("preprocess", small_text, "--out", "x", "--val-frac", "0.6", "--test-frac",
                     "0.5", ok=False)
    assert "must leave some text" in result.output
    result = run_cli("preprocess", small_text, "--out", "x", "--level", "word", "--pattern", "",
                     ok=False)  # it was recorded as '' and read as the whitespace split
    assert result.exit_code == 2 and "--pattern '' matches no token" in result.output


@pytest.mark.parametrize("option", ["--valid", "--test"])
def test_empty_valid_or_test_file_is_an_error(small_text: Path, tmp_path: Path, option) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = run_cli("preprocess", small_text, option, empty, "--out", tmp_path / "d", ok=False)
    assert result.exit_code == 2 and f"{option} {empty}: file is empty" in result.output
    assert not (tmp_path / "d").exists()


def test_failed_write_message_follows_the_error_and_the_previous_copy(tmp_path: Path,
                                                                      monkeypatch) -> None:
    import errno

    from charrnn import fsutil

    real_mkdir = Path.mkdir

    def fail(code: int):
        def mkdir(self, *args, **kwargs):  # only the temporary folder fails
            if ".tmp-" not in self.name:
                return real_mkdir(self, *args, **kwargs)
            raise OSError(code, "simulated")
        return mkdir

    monkeypatch.setattr(Path, "mkdir", fail(errno.EACCES))
    with pytest.raises(UserError) as denied, fsutil.atomic_dir(tmp_path / "new"):
        pass
    assert "nothing of new/ was written (the folder is not writable" in str(denied.value)
    assert "disk may be full" not in str(denied.value) and "previous copy" not in str(denied.value)
    monkeypatch.undo()
    (tmp_path / "old").mkdir()
    (tmp_path / "old" / "meta.json").write_text("{}")  # a copy with something in it to keep
    monkeypatch.setattr(Path, "mkdir", fail(errno.ENOSPC))
    with pytest.raises(UserError, match="previous copy is intact .the disk may be full: free some space"), \
            fsutil.atomic_dir(tmp_path / "old"):
        pass


def test_preprocess_refuses_a_dataset_folder_as_input(small_text: Path, tmp_path: Path) -> None:
    ds = tmp_path / "data" / "shakespeare"
    run_cli("preprocess", small_text, "--out", ds)
    before = {p.name: p.read_bytes() for p in ds.iterdir()}
    for out in (tmp_path / "data" / "other", ds):  # a new folder, and the dataset itself
        result = run_cli("preprocess", ds, "--out", out, ok=False)
        assert result.exit_code == 2 and len(result.output.strip().splitlines()) == 1
        assert (f"{ds} is a preprocessed dataset (meta.json, train.bin), not text: train on it "
                f"directly with `charrnn train {ds}`") in result.output
    assert not (tmp_path / "data" / "other").exists()
    assert {p.name: p.read_bytes() for p in ds.iterdir()} == before
    result = run_cli("preprocess", tmp_path / "data", "--out", tmp_path / "x", ok=False)
    assert f"{ds.resolve()} is a preprocessed dataset inside the input" in result.output


def test_preprocess_refuses_an_existing_file_as_out(small_text: Path, tmp_path: Path) -> None:
    precious = tmp_path / "precious.txt"
    precious.write_text("keep me\n")
    result = run_cli("preprocess", small_text, "--out", precious, ok=False)
    assert result.exit_code == 2
    assert f"--out {precious} is an existing file, not a folder" in result.output
    assert "give a new or empty folder" in result.output
    assert precious.read_text() == "keep me\n"


def test_preprocess_out_may_not_hold_an_input_or_lie_in_an_input_folder(tmp_path: Path) -> None:
    texts = tmp_path / "texts"
    texts.mkdir()
    (texts / "a.txt").write_text("some text here\n" * 50)
    result = run_cli("preprocess", texts / "a.txt", "--out", texts, ok=False)
    assert f"--out {texts} holds the input" in result.output
    result = run_cli("preprocess", texts, "--out", texts / "ds", ok=False)
    assert f"--out {texts / 'ds'} is inside the input folder {texts}" in result.output
    assert [p.name for p in texts.iterdir()] == ["a.txt"]


def test_meta_sha256_is_the_sha256_of_the_file_bytes(small_text: Path, tmp_path: Path) -> None:
    import hashlib

    ds = preprocess([str(small_text)], tmp_path / "ds", PreprocessOptions())
    assert ds.meta["sources"][0]["sha256"] == hashlib.sha256(small_text.read_bytes()).hexdigest()


@pytest.mark.parametrize("level", ["word", "subword"])
def test_splits_of_text_without_line_breaks_are_cut_at_whitespace(tmp_path: Path,
                                                                  level: str) -> None:
    from helpers import SMALL_LINES

    one = tmp_path / "one.txt"
    one.write_text(" ".join(SMALL_LINES * 150))  # one line, no line break at all (~34 KB)
    opts = PreprocessOptions(level=level, **({"vocab_size": 300} if level == "subword" else {}))
    ds = preprocess([str(one)], tmp_path / "ds", opts)
    text = one.read_text()
    start = 0
    for split in ("train", "val", "test"):
        piece = text[start: start + ds.chars(split)]
        assert ds.tokens(split) > 0 and ds.chars(split) > 0.5 * 0.05 * len(text)
        assert piece.endswith(" ") or split == "test"  # cut after a whitespace, not in a word
        if level == "subword":
            assert ds.tokenizer.decode(ds.ids(split).tolist()) == piece
        start += ds.chars(split)
    assert start == len(text)


def test_word_cut_moves_to_a_near_line_break_but_keeps_half_the_next_split(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("a b c d e f g h\n" * 10 + "word " * 400 + "\n")  # a long last line
    ds = preprocess([str(corpus)], tmp_path / "ds", PreprocessOptions(level="word"))
    total = len(corpus.read_text())
    assert ds.chars("val") >= int(0.05 * total) // 2 and ds.chars("test") > 0
    assert ds.chars("train") + ds.chars("val") + ds.chars("test") == total


def test_valid_file_takes_no_line_of_the_corpus(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"w{i % 7} w{i % 3} end\n" for i in range(100)))
    valid = tmp_path / "v.txt"
    valid.write_text("w1 w2 end\n")
    ds = preprocess([str(corpus)], tmp_path / "ds",
                    PreprocessOptions(level="word", valid=[str(valid)]))
    assert ds.chars("val") == 10 and ds.tokens("val") == 4
    assert ds.chars("train") + ds.chars("test") == 1000


def test_a_requested_split_too_small_for_one_character_is_an_error(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("tiny text\n")
    with pytest.raises(UserError, match=r"^val_frac 0.05 of 10 characters is not one character"):
        preprocess([str(corpus)], tmp_path / "ds", PreprocessOptions(level="word"))
    assert not (tmp_path / "ds").exists()


def test_word_split_of_whitespace_only_is_an_error_not_an_empty_split(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("word " * 200 + " " * 200)
    with pytest.raises(UserError, match="the val split came out empty"):
        preprocess([str(corpus)], tmp_path / "ds", PreprocessOptions(level="word"))
    assert not (tmp_path / "ds").exists()


def test_val_frac_with_a_valid_file_is_refused(small_text: Path, tmp_path: Path) -> None:
    result = run_cli("preprocess", small_text, "--valid", small_text, "--val-frac", "0.2",
                     "--out", tmp_path / "d", ok=False)
    assert "--val-frac does not apply with --valid" in result.output
    from charrnn.plan.preprocess import preprocess_options
    from charrnn.plan.request import Request

    values = {**asdict(PreprocessOptions()), "valid": [str(small_text)]}
    with pytest.raises(UserError, match="--val-frac does not apply with --valid"):
        # the default value, typed, is refused as well
        preprocess_options(Request.of(values, {"val_frac", "valid"}))


def test_dataset_folder_refuses_preprocess_options_it_was_not_made_with(tmp_path: Path) -> None:
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"w{i % 7} w{i % 3} end\n" for i in range(100)))
    ds = tmp_path / "ptb"
    preprocess([str(corpus)], ds, PreprocessOptions(level="word"))
    with pytest.raises(UserError, match=(
            f"^{ds} is a preprocessed word-level dataset: level subword does not apply "
            r"\(it was made with level word\); preprocess the text again with level subword")):
        prepare([str(ds)], PreprocessOptions(level="subword"))
    same = PreprocessOptions(level="word", val_frac=0.05)
    assert prepare([str(ds)], same).root == ds  # what the dataset has: fine
    other = tmp_path / "other.txt"
    other.write_text("w1 w2\n")
    result = run_cli("train", ds, "--valid", other, "--plain", ok=False)
    assert result.exit_code == 2 and f"--valid {other} does not apply" in result.output
    result = run_cli("train", ds, "--min-count", "2", "--plain", ok=False)
    assert "--min-count 2 does not apply (it was made with --min-count 1)" in result.output
    # typed on the command line, even though char is the default value
    result = run_cli("train", ds, "--level", "char", "--plain", ok=False)
    assert "is a preprocessed word-level dataset: --level char does not apply" in result.output
    result = run_cli("ngram", "train", ds, "--level", "char", ok=False)
    assert "is a preprocessed word-level dataset: --level char does not apply" in result.output
    # an option the dataset's level never reads: not "preprocess again with it"
    result = run_cli("train", ds, "--vocab-size", "100", "--plain", ok=False)
    assert result.exit_code == 2 and "word-level dataset, and --vocab-size applies at subword " \
        "level: drop it" in result.output
    for typed in (["--vocab-size", "2000"], ["--subword-model", "bpe"]):  # at their defaults
        result = run_cli("ngram", "train", ds, *typed, ok=False)
        assert result.exit_code == 2 and f"word-level dataset, and {typed[0]} applies at " \
            "subword level: drop it" in result.output


@pytest.mark.parametrize(("command", "args", "message"), [
    (("preprocess",), ["--max-vocab", "5"], "--max-vocab applies at word level, and this text is "
                                            "read at char level"),
    (("train",), ["--max-steps", "1", "--vocab-size", "500"], "--vocab-size applies at subword level"),
    (("train",), ["--max-steps", "1", "--level", "subword", "--min-count", "3"],
     "--min-count applies at word level"),
    (("preprocess",), ["--level", "subword", "--lower"], "--lower applies at char and word level"),
    (("ngram", "train"), ["--pattern", r"\w+"], "--pattern applies at word level"),
])
def test_a_tokenizer_option_of_another_level_is_refused(small_text: Path, tmp_path: Path, command,
                                                        args, message) -> None:
    """What the text's level does not read would be ignored (the run made as if not typed)."""
    result = run_cli(*command, small_text, *args, "--out", tmp_path / "out", ok=False)
    assert result.exit_code == 2 and message in result.output
    assert not (tmp_path / "out").exists()


def test_a_library_option_of_another_level_is_refused_not_recorded_unread(tmp_path: Path) -> None:
    """PreprocessOptions(level="subword", lower=True) made a cased subword dataset whose
    meta.json said lower: true."""
    from charrnn.data import PreprocessOptions, preprocess
    from charrnn.errors import UserError

    text = tmp_path / "t.txt"
    text.write_text("The Cat sat on the Mat.\n" * 50, encoding="utf-8")
    for level, option in (("subword", {"lower": True}), ("char", {"min_count": 2}),
                          ("word", {"vocab_size": 500})):
        with pytest.raises(UserError, match=f"applies at .* level, and this text is read at "
                                            f"{level} level"):
            preprocess([str(text)], tmp_path / level, PreprocessOptions(level=level, **option))
        assert not (tmp_path / level).exists()


def test_a_run_whose_dataset_folder_was_preprocessed_over_says_so(small_text: Path,
                                                                 tmp_path: Path) -> None:
    """Its --resume and eval said the dataset was 'no longer in the cache', of a dataset that
    had never been in the cache: it was a folder, written over since."""
    text = tmp_path / "own.txt"  # a text of this test's own: no other test caches its dataset
    text.write_text(small_text.read_text() + "a line only this test has\n", encoding="utf-8")
    run_cli("preprocess", text, "--out", tmp_path / "ds", "--level", "word")
    run_cli("train", tmp_path / "ds", *TINY, "--max-steps", "2", "--run-name", "onds")
    run_cli("preprocess", text, "--out", tmp_path / "ds")  # char level now, same folder
    for args in (["train", "--resume", "onds", "--max-steps", "4"], ["eval", "onds"]):
        result = run_cli(*args, ok=False)
        assert result.exit_code == 2 and f"was the folder {tmp_path / 'ds'}, which another " \
            "preprocess has written over since" in result.output, result.output


def test_an_empty_train_split_asks_for_smaller_fractions(tmp_path: Path) -> None:
    """It advised 'a larger fraction', which empties the train split further."""
    corpus = tmp_path / "two.txt"
    corpus.write_text("ab\n")
    with pytest.raises(UserError, match="the train split came out empty .*smaller val/test "
                                        "fractions") as caught:
        preprocess([str(corpus)], tmp_path / "ds",
                   PreprocessOptions(val_frac=0.34, test_frac=0.34))
    assert "larger" not in str(caught.value)


def test_a_file_in_two_splits_is_refused(small_text: Path, tmp_path: Path) -> None:
    """`--valid` of the training file gave a validation of 200,000 tokens it had trained on."""
    with pytest.raises(UserError, match="is in the training text and in the validation text"):
        preprocess([str(small_text)], tmp_path / "a", PreprocessOptions(valid=[str(small_text)]))
    with pytest.raises(UserError, match="is in the training text and in the test text"):
        folder = tmp_path / "texts"  # (by way of its folder)
        folder.mkdir()
        (folder / "a.txt").write_text(small_text.read_text())
        preprocess([str(folder)], tmp_path / "b", PreprocessOptions(test=[str(folder / "a.txt")]))
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("make", [os.link, shutil.copyfile], ids=["hard link", "copy"])
def test_a_link_or_copy_of_the_training_file_as_another_split_is_refused(
        small_text: Path, tmp_path: Path, make) -> None:
    """Only the resolved paths were compared: a hard link or a copy was taken as new text."""
    make(small_text, tmp_path / "again.txt")
    with pytest.raises(UserError, match=r"again.txt \(validation\) holds the same text as the "
                                        f"training file {small_text}"):
        preprocess([str(small_text)], tmp_path / "a",
                   PreprocessOptions(valid=[str(tmp_path / "again.txt")]))


def test_empty_or_merely_equal_sized_files_in_both_splits_are_no_leak(tmp_path: Path) -> None:
    """An empty notes.txt on both sides stopped preprocessing after the copy check came in."""
    for split, text in (("train", "one two three\n" * 400), ("valid", "four five six\n" * 20)):
        (tmp_path / split).mkdir()
        (tmp_path / split / "notes.txt").write_text("")
        (tmp_path / split / "text.txt").write_text(text)
    (tmp_path / "train" / "same-size.txt").write_text("x" * 280)  # as valid/text.txt, not it
    preprocess([str(tmp_path / "train")], tmp_path / "ds",
               PreprocessOptions(valid=[str(tmp_path / "valid")]))


def test_a_cache_that_cannot_be_written_names_charrnn_cache_not_out(tmp_path: Path) -> None:
    """A read-only cache was answered with 'the folder is not writable: choose another --out'
    (--out was writable, and is not where the cache goes)."""
    import errno

    from charrnn import fsutil

    refused = OSError(errno.EROFS, "Read-only file system")
    cached = fsutil.write_advice(refused, fsutil.cache_dir() / "datasets" / "abc")
    assert cached == "the cache folder is not writable: set CHARRNN_CACHE to another folder"
    assert fsutil.write_advice(refused, tmp_path / "runs" / "r").endswith("choose another out")


def test_a_cache_index_that_cannot_be_written_does_not_fail_preprocess_out(
        small_text: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The dataset was written, then the command failed on the cache's index (a folder here;
    read-only alike)."""
    from charrnn import fsutil

    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    (fsutil.cache_dir() / "datasets" / "index.json").mkdir(parents=True)
    result = run_cli("preprocess", small_text, "--out", tmp_path / "ds")
    assert result.exit_code == 0 and (tmp_path / "ds" / "meta.json").is_file()


def test_ids_damaged_in_place_in_the_cache_say_to_delete_it_first(
        small_text: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its sizes right, a cache hit reuses it: 'give the text again' led back to the error."""
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    ds = prepare([str(small_text)], PreprocessOptions())
    train = ds.root / "train.bin"
    train.write_bytes(b"\xff" * train.stat().st_size)
    with pytest.raises(UserError, match=f"delete {ds.root}, then give the command its text"):
        Dataset(ds.root).ids("train")


def test_a_dataset_made_with_split_files_refuses_split_fractions(small_text: Path,
                                                                 tmp_path: Path) -> None:
    """It said '--val-frac 0.2 does not apply (it was made with --val-frac 0.05)', the default
    recorded beside the file, and advised that fraction; --val-frac 0.05 was taken silently."""
    valid, test = tmp_path / "v.txt", tmp_path / "t.txt"
    valid.write_text("some text to validate on\n" * 20, encoding="utf-8")
    test.write_text("some text to test on\n" * 20, encoding="utf-8")
    run_cli("preprocess", small_text, "--valid", valid, "--test", test, "--out", tmp_path / "ds")
    for args in (["--val-frac", "0.2"], ["--val-frac", "0.05"], ["--test-frac", "0.05"]):
        result = run_cli("train", tmp_path / "ds", *args, "--max-steps", "1", ok=False)
        made = "--valid" if "val" in args[0] else "--test"
        assert result.exit_code == 2, result.output
        assert f"was made with {made} " in result.output
        assert f"{args[0]} does not apply; drop it" in result.output


def test_an_out_no_folder_can_be_made_at_names_the_option(small_text: Path, tmp_path: Path) -> None:
    """'cannot create x: File exists' and 'File name too long (xxxx…)' named no option."""
    afile = tmp_path / "afile"
    afile.write_text("x")
    for out, said in ((afile / "ds", f"--out {afile / 'ds'}: {afile} is a file, not a folder"),
                      (tmp_path / ("x" * 300), "a name in it is 300 bytes")):
        result = run_cli("preprocess", small_text, "--out", out, ok=False)
        assert result.exit_code == 2 and said in result.output, result.output
