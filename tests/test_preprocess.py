"""preprocess: streamed ids on disk, contiguous tail splits, cached by content and options."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from charrnn.data import Dataset, PreprocessOptions, find_dataset, prepare, preprocess
from charrnn.errors import UserError
from helpers import run_cli


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
    with pytest.raises(UserError, match="truncated"):
        Dataset(ds.root).ids("train")


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


def test_bad_split_fractions_are_user_errors(small_text: Path) -> None:
    result = run_cli("preprocess", small_text, "--out", "x", "--val-frac", "0.6", "--test-frac",
                     "0.5", ok=False)
    assert "must leave some text" in result.output


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
    assert "nothing was written (the folder is not writable" in str(denied.value)
    assert "disk space" not in str(denied.value) and "previous copy" not in str(denied.value)
    monkeypatch.undo()
    (tmp_path / "old").mkdir()
    monkeypatch.setattr(Path, "mkdir", fail(errno.ENOSPC))
    with pytest.raises(UserError, match="previous copy is intact .free some disk space"), \
            fsutil.atomic_dir(tmp_path / "old"):
        pass
