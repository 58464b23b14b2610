"""Reading corpora: files, folders, globs; every kind of bad input is a clear UserError."""

from __future__ import annotations

from pathlib import Path

import pytest

from charrnn.errors import UserError
from charrnn.inputs import CONVERT_OR_REPLACE, TextSource, expand_inputs, read_text
from helpers import run_cli


def test_directory_and_glob_expand_to_sorted_text_files(tmp_path: Path) -> None:
    folder = tmp_path / "texts"
    folder.mkdir()
    (folder / "b.txt").write_text("bee\n")
    (folder / "a.txt").write_text("ay\n")
    (folder / ".hidden").write_text("no\n")
    assert [p.name for p in expand_inputs([str(folder)])] == ["a.txt", "b.txt"]
    assert [p.name for p in expand_inputs([str(folder / "*.txt")])] == ["a.txt", "b.txt"]
    assert read_text([str(folder)]) == "ay\nbee\n"


def test_directory_skips_hidden_folders_below_it_but_not_itself(tmp_path: Path) -> None:
    folder = tmp_path / ".corpus"  # the folder the user named may itself be hidden
    (folder / ".git" / "hooks").mkdir(parents=True)
    (folder / "sub").mkdir()
    (folder / ".git" / "HEAD").write_text("ref: refs/heads/main\n")
    (folder / ".git" / "hooks" / "pre-commit").write_text("#!/bin/sh\n")
    (folder / "a.txt").write_text("ay\n")
    (folder / "sub" / "b.txt").write_text("bee\n")
    assert [p.relative_to(folder.resolve()).as_posix() for p in expand_inputs([str(folder)])] \
        == ["a.txt", "sub/b.txt"]


def test_files_without_final_newline_are_joined_by_one(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("first")
    (tmp_path / "b.txt").write_text("second")
    assert read_text([str(tmp_path / "a.txt"), str(tmp_path / "b.txt")]) == "first\nsecond"


def test_invalid_utf8_names_file_and_byte_offset(tmp_path: Path) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"hello w\xc3rld\n")
    with pytest.raises(UserError, match=r"bad\.txt: invalid UTF-8 at byte offset 7.*pass errors replace"):
        read_text([str(bad)], fix=CONVERT_OR_REPLACE)
    assert read_text([str(bad)], errors="replace") == "hello w\ufffdrld\n"


def test_invalid_utf8_advice_without_errors_option_says_how_to_convert(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    with pytest.raises(UserError, match=r"byte offset 3: convert it to UTF-8 \(e\.g\. iconv") as err:
        read_text([str(bad)])
    assert "--errors" not in str(err.value)
    # commands without --errors: `sample --prime-file` (read before any run is looked up)
    result = run_cli("sample", "--prime-file", bad, ok=False)
    assert result.exit_code == 2 and "iconv -f latin1 -t utf-8" in result.output
    assert "--errors" not in result.output
    # commands with --errors keep suggesting it: preprocess and eval FILE
    result = run_cli("preprocess", bad, "--out", tmp_path / "d", ok=False)
    assert "iconv" in result.output and "--errors replace" in result.output


def test_fill_eval_on_a_non_utf8_file_does_not_suggest_errors_option(tiny_run: Path,
                                                                      tmp_path: Path) -> None:
    bad = tmp_path / "latin1.txt"
    bad.write_bytes("caf\xe9 cr\xe8me\n".encode("latin-1"))
    result = run_cli("fill", "eval", bad, "-m", tiny_run, ok=False)
    assert result.exit_code == 2 and "convert it to UTF-8" in result.output
    assert "--errors" not in result.output


def test_invalid_utf8_offset_counts_across_chunks(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("charrnn.inputs.CHUNK_BYTES", 16)
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"a" * 40 + b"\xff" + b"b\n")
    with pytest.raises(UserError, match="byte offset 40"):
        read_text([str(bad)])


def test_a_file_cut_inside_a_character_gets_its_offset_and_fitting_advice(
        tmp_path: Path, monkeypatch) -> None:
    """`head -c` through Chinese text: reported at the file's size (not where the character
    starts), with advice only to convert from latin1, which garbles every Chinese character
    (kept second: a latin1 file's last é reads as a cut UTF-8 character too)."""
    cut = tmp_path / "cut.txt"
    cut.write_bytes("我的手机".encode()[:8])  # two whole characters, then 2 of the third's 3
    with pytest.raises(UserError, match="byte offset 6: the file ends inside a character") as err:
        read_text([str(cut)])
    assert "drop its partial last line; if the file is not UTF-8 at all, convert" in str(err.value)
    with pytest.raises(UserError, match="byte offset 6: .*, or pass errors replace to go on"):
        read_text([str(cut)], fix=CONVERT_OR_REPLACE)
    monkeypatch.setattr("charrnn.inputs.CHUNK_BYTES", 7)  # the character across two blocks
    bad = tmp_path / "mid.txt"
    bad.write_bytes("我的手".encode()[:7] + b"\xff" + "机\n".encode())
    with pytest.raises(UserError, match="byte offset 6: convert it"):
        read_text([str(bad)])


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda p: p.write_bytes(b"\x80\x04\x95pickle\x00data"), "pickle"),
        (lambda p: p.write_bytes(bytes(range(256))), "binary"),
        (lambda p: p.write_text("hello 你好\n", encoding="utf-16"), r"is UTF-16 text, not UTF-8: "
                                                                    r"convert it first \(iconv"),
        (lambda p: p.write_text("hello 你好\n", encoding="utf-32"), r"is UTF-32 text, not UTF-8"),
    ],
)
def test_binary_files_are_refused(tmp_path: Path, make, message: str) -> None:
    path = tmp_path / "thing.txt"
    make(path)
    with pytest.raises(UserError, match=message):
        read_text([str(path)])


def test_missing_path_and_empty_directory_and_unmatched_glob(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        expand_inputs([str(tmp_path / "nope.txt")])
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError, match="holds no text files"):
        expand_inputs([str(tmp_path / "empty")])
    with pytest.raises(UserError, match="no files match"):
        expand_inputs([str(tmp_path / "*.none")])


def test_chunks_end_on_line_breaks_or_whitespace(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr("charrnn.inputs.CHUNK_BYTES", 10)
    path = tmp_path / "lines.txt"
    path.write_text("one two\nthree four five\nsix\n")
    chunks = list(TextSource([path]).chunks())
    assert "".join(chunks) == "one two\nthree four five\nsix\n"
    assert all(c[-1].isspace() for c in chunks)  # long lines are cut at whitespace, never in a word


def test_cli_bad_input_is_one_line_error_with_exit_2(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    result = run_cli("train", empty, ok=False)
    assert result.exit_code == 2
    assert "input is empty" in result.output
    assert "Traceback" not in result.output
    assert len(result.output.strip().splitlines()) == 1


@pytest.mark.parametrize("args", [
    ("preprocess", "", "--out", "ds"),            # the corpus
    ("train", "{text}", "--valid", "", "--max-steps", "1"),  # a split file: made absolute
    ("train", "{text}", "--test", " ", "--max-steps", "1"),
    ("score", "", "{text}"),                      # the run of an eval command
    ("eval", "", "{text}"),                       # the file of an eval command
    ("sample", ""),
])
def test_an_empty_path_is_refused_not_read_as_the_current_folder(
        tmp_path: Path, monkeypatch, args: tuple[str, ...]) -> None:
    # Path("") is ".": the corpus folder itself (and everything in it) was read as text
    monkeypatch.chdir(tmp_path)
    (tmp_path / "text.txt").write_text("one two three\n" * 50)
    result = run_cli(*(a.format(text="text.txt") for a in args), ok=False)
    assert result.exit_code == 2, result.output
    # (phrases with a space: the test's tmp_path holds "empty_path")
    assert "empty path" in result.output or "name is empty" in result.output, result.output
    assert "Traceback" not in result.output and not (tmp_path / "ds").exists()


def test_an_existing_file_whose_name_looks_like_a_pattern_is_read_as_itself(tmp_path: Path
                                                                            ) -> None:
    """'d[1].txt' was globbed (no match: 'check the pattern'), and 'x*.txt' read xtra.txt too."""
    for name in ("d[1].txt", "x*.txt", "what?.txt"):
        (tmp_path / name).write_text("text\n")
    (tmp_path / "xtra.txt").write_text("other\n")
    for name in ("d[1].txt", "x*.txt", "what?.txt"):
        assert expand_inputs([str(tmp_path / name)]) == [tmp_path / name]
    assert len(expand_inputs([str(tmp_path / "x?ra.txt")])) == 1  # a pattern still matches


def test_a_linked_folder_inside_a_corpus_folder_is_read_once_and_a_loop_ends(tmp_path: Path
                                                                            ) -> None:
    """A symlinked subfolder was skipped silently (a top-level link was followed)."""
    corpus, elsewhere = tmp_path / "corpus", tmp_path / "elsewhere"
    corpus.mkdir()
    elsewhere.mkdir()
    (corpus / "a.txt").write_text("a\n")
    (elsewhere / "b.txt").write_text("b\n")
    (corpus / "more").symlink_to(elsewhere)
    (elsewhere / "loop").symlink_to(corpus)
    found = expand_inputs([str(corpus)])
    assert sorted(p.name for p in found) == ["a.txt", "b.txt"]


def test_a_dash_where_no_standard_input_is_read_says_so(tmp_path: Path, monkeypatch) -> None:
    """`charrnn train -` said "- does not exist: check the path"."""
    monkeypatch.chdir(tmp_path)
    with pytest.raises(UserError, match="reads files, not standard input"):
        expand_inputs(["-"])
    (tmp_path / "t.txt").write_text("one two three\n" * 100)
    result = run_cli("train", "t.txt", "--valid", "-", ok=False)  # (made absolute first)
    assert result.exit_code == 2 and "--valid '-': this reads files" in result.output
    (tmp_path / "-").write_text("a file named -\n")  # (one that exists is itself)
    assert expand_inputs(["-"]) == [(tmp_path / "-").resolve()]
