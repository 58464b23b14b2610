"""The CLI shell (help, module entry, errors, debug) and the corpus registry."""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from charrnn import corpora
from charrnn.errors import UserError
from helpers import run_cli


def _charrnn(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "charrnn", *args], capture_output=True,
                          text=True, env={**os.environ, **(env or {})}, timeout=120)


def test_help_lists_commands_without_importing_torch() -> None:
    code = ("import sys\nfrom typer.testing import CliRunner\nfrom charrnn.cli.app import app\n"
            "r = CliRunner().invoke(app, ['--help'])\nassert r.exit_code == 0\n"
            "print('torch' in sys.modules)\nprint(r.output)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout
    assert out.startswith("False")
    for command in ("train", "sample", "eval", "preprocess", "corpus"):
        assert command in out


def test_python_dash_m_errors_are_one_line_and_exit_2(tmp_path: Path) -> None:
    proc = _charrnn("train", str(tmp_path / "missing.txt"))
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"charrnn: error: {tmp_path / 'missing.txt'} does not exist: check the path"


def test_charrnn_debug_shows_the_traceback(tmp_path: Path) -> None:
    proc = _charrnn("train", str(tmp_path / "missing.txt"), env={"CHARRNN_DEBUG": "1"})
    assert proc.returncode != 0 and "Traceback" in proc.stderr and "UserError" in proc.stderr


def test_default_corpus_is_embedded_and_offline() -> None:
    path = corpora.default_corpus()
    text = path.read_text(encoding="utf-8")
    assert len(text) > 100_000 and "statement" in text


def test_train_without_corpus_uses_the_default_corpus(tmp_path: Path) -> None:
    out = run_cli("train", "--hidden", "16", "--layers", "1", "--batch-size", "4", "--seq-len",
                  "16", "--max-steps", "3", "--plain", "--run-name", "d").output
    assert "train " in out and (tmp_path / "runs" / "d" / "last").is_dir()


def test_corpus_list_shows_the_registry() -> None:
    out = run_cli("corpus", "list").output
    for name in ("tinyshakespeare", "ptb", "enwik8", "text8", "wikitext-2"):
        assert name in out


def test_corpus_get_from_mirror_verifies_sha256(shared_corpora: Path) -> None:
    out = run_cli("corpus", "get", "ptb", "--mirror", shared_corpora).output
    paths = dict(line.split("\t") for line in out.strip().splitlines())
    assert set(paths) == {"main", "valid", "test"}
    data = Path(paths["test"]).read_bytes()
    assert hashlib.sha256(data).hexdigest() == corpora.lookup("ptb")["files"][2]["sha256"]


def test_corpus_get_refuses_a_file_with_the_wrong_hash(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tinyshakespeare.txt").write_text("not shakespeare\n")
    with pytest.raises(UserError, match="failed its sha256 check"):
        corpora.get("tinyshakespeare", str(mirror))
    assert not list((corpora.fsutil.cache_dir() / "corpora" / "tinyshakespeare").glob("*.txt"))


def test_unverified_entries_need_explicit_consent() -> None:
    result = run_cli("corpus", "get", "enwik8", ok=False)
    assert "--allow-unverified" in result.output


def test_an_unverified_corpus_fetched_prints_the_hash_it_promised(tmp_path: Path) -> None:
    """'--allow-unverified … (the hash seen is printed)': it was never printed."""
    import zipfile

    mirror = tmp_path / "mirror"
    mirror.mkdir()
    with zipfile.ZipFile(mirror / "enwik8.zip", "w") as archive:
        archive.writestr("enwik8", "hi\n")
    result = run_cli("corpus", "get", "enwik8", "--mirror", mirror, "--allow-unverified")
    assert f"its sha256 is {hashlib.sha256(b'hi' + bytes([10])).hexdigest()}" in result.stderr
    assert result.stdout.startswith("main\t")


def test_allow_unverified_is_refused_where_every_file_has_a_hash(shared_corpora: Path) -> None:
    result = run_cli("corpus", "get", "ptb", "--mirror", shared_corpora, "--allow-unverified",
                     ok=False)
    assert result.exit_code == 2 and "--allow-unverified does not apply" in result.output


def test_train_accepts_a_registry_name_with_mirror(shared_corpora: Path, tmp_path: Path) -> None:
    out = run_cli("train", "ptb", "--mirror", shared_corpora, "--level", "word", "--hidden", "16",
                  "--layers", "1", "--batch-size", "4", "--seq-len", "8", "--max-steps", "2",
                  "--eval-tokens", "200", "--plain", "--run-name", "ptb").output
    assert "word vocab 10000" in out and "val 73,760" in out


def test_preprocess_accepts_a_registry_name_with_mirror(shared_corpora: Path,
                                                       tmp_path: Path) -> None:
    """preprocess took no registry name ('does not exist: check the path') and had no --mirror
    that its error advised."""
    out = run_cli("preprocess", "ptb", "--mirror", shared_corpora, "--out", tmp_path / "ds").output
    assert "word vocab 10000" in out and "val 73,760 tokens" in out


def test_a_mirror_folder_that_does_not_exist_is_an_error(shared_corpora: Path,
                                                          tmp_path: Path) -> None:
    run_cli("corpus", "get", "tinyshakespeare", "--mirror", shared_corpora)  # now cached
    missing = tmp_path / "nonexist"
    for args in (["corpus", "get", "tinyshakespeare"], ["train", "tinyshakespeare", "--plain"]):
        result = run_cli(*args, "--mirror", missing, ok=False)
        assert result.exit_code == 2 and f"--mirror {missing} is not a folder" in result.output


def test_training_a_language_model_on_a_tagging_corpus_is_refused(tmp_path: Path) -> None:
    for args in (["train", "conll2000", "--plain"], ["ngram", "train", "conll2000"]):
        result = run_cli(*args, "--mirror", tmp_path, ok=False)
        assert result.exit_code == 2 and "conll2000 is a tagging corpus" in result.output
        assert "charrnn tag train" in result.output


def test_registry_corpus_takes_the_registry_level_unless_level_is_typed(shared_corpora: Path) -> None:
    from charrnn.data import PreprocessOptions

    opts = PreprocessOptions()  # nothing typed: ptb is word level with its own valid/test files
    paths = corpora.resolve_inputs(["ptb"], opts, str(shared_corpora))
    assert opts.level == "word" and Path(paths[0]).name == "ptb.train.txt"
    assert Path(opts.valid[0]).name == "ptb.valid.txt" and Path(opts.test[0]).name == "ptb.test.txt"
    chosen = PreprocessOptions(level="char")  # options a plan chose (`--level char` typed)
    corpora.resolve_inputs(["ptb"], chosen, str(shared_corpora), final=True)
    assert chosen.level == "char" and chosen.valid == []
    assert "char vocab" in run_cli("train", "ptb", "--mirror", shared_corpora, "--level", "char",
                                   "--hidden", "16", "--max-steps", "1", "--plain").output
    frac = PreprocessOptions(val_frac=0.1)  # a typed --val-frac cuts val from the tail instead
    corpora.resolve_inputs(["ptb"], frac, str(shared_corpora))
    assert frac.valid == [] and Path(frac.test[0]).name == "ptb.test.txt"
    both = PreprocessOptions()
    with pytest.raises(UserError, match=r"ptb \(word\), tinyshakespeare \(char\); pass level$"):
        corpora.resolve_inputs(["ptb", "tinyshakespeare"], both, str(shared_corpora))


def test_train_on_a_registry_name_without_level_uses_its_level(shared_corpora: Path) -> None:
    out = run_cli("train", "ptb", "--mirror", shared_corpora, "--hidden", "16", "--layers", "1",
                  "--batch-size", "4", "--seq-len", "8", "--max-steps", "2", "--eval-tokens",
                  "200", "--plain", "--run-name", "ptb").output
    assert "word vocab 10000" in out and "val 73,760" in out
    typed = run_cli("train", "ptb", "--mirror", shared_corpora, "--level", "char", "--hidden", "16",
                    "--layers", "1", "--batch-size", "4", "--seq-len", "8", "--max-steps", "2",
                    "--eval-tokens", "200", "--plain", "--run-name", "ptb-char").output
    assert "char vocab 50" in typed  # typed, even though char is the default value


def test_a_registry_run_resumes_with_its_corpus_given_again_at_its_own_level(
        shared_corpora: Path, tmp_path: Path) -> None:
    """The run's recorded --level char must win over the registry's word level, or the corpus
    given again is not the run's dataset and the resume is refused."""
    import shutil

    from charrnn import checkpoint
    from charrnn.data import find_dataset

    args = ["--mirror", shared_corpora, "--hidden", "16", "--layers", "1", "--batch-size", "4",
            "--seq-len", "8", "--eval-tokens", "200", "--plain"]
    run_cli("train", "ptb", *args, "--level", "char", "--max-steps", "2", "--run-name", "pc")
    ident = checkpoint.resolve("pc", tmp_path / "runs", prefer="last").meta["dataset"]["id"]
    shutil.rmtree(find_dataset(ident).root)
    out = run_cli("train", "ptb", "--mirror", shared_corpora, "--resume", "pc", "--max-steps",
                  "3", "--plain").output
    assert "resuming" in out and "done at step 3" in out


def test_zh_reviews_comes_from_the_mirror_sha256_checked(shared_corpora: Path) -> None:
    out = run_cli("corpus", "get", "zh-reviews", "--mirror", shared_corpora).output
    path = Path(dict(line.split("\t") for line in out.strip().splitlines())["main"])
    assert path.name == "zh_reviews.txt"
    assert hashlib.sha256(path.read_bytes()).hexdigest() == \
        corpora.lookup("zh-reviews")["files"][0]["sha256"]
    assert "zh-reviews" in run_cli("corpus", "list").output


def _derived_entry(tmp_path: Path, pos: str, neg: str) -> tuple[dict, Path]:
    """A registry entry made like zh-reviews from two small source files in a mirror."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "pos.txt").write_text(pos, encoding="utf-8")
    (mirror / "neg.txt").write_text(neg, encoding="utf-8")
    sha = {name: hashlib.sha256((mirror / name).read_bytes()).hexdigest()
           for name in ("pos.txt", "neg.txt")}
    expected = "好\n差\n不错\n太差了\n还行\n"
    entry = {"level": "char", "files": [{
        "name": "mixed.txt", "role": "main", "derive": "alternate_lines",
        "sha256": hashlib.sha256(expected.encode()).hexdigest(),
        "sources": [{"name": n, "sha256": sha[n], "url": f"https://example.invalid/{n}"}
                    for n in ("pos.txt", "neg.txt")]}]}
    return entry, mirror


def test_a_derived_corpus_is_made_from_its_checked_sources(tmp_path: Path,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    # Lines taken in turn, CR dropped, stripped, empty lines and repeats dropped (first kept).
    entry, mirror = _derived_entry(tmp_path, "好\r\n\n不错\n 还行 \n好\n", "差\n太差了\n")
    monkeypatch.setattr(corpora, "registry", lambda: {"mixed": entry})
    path = corpora.get("mixed", str(mirror))["main"]
    assert path.read_text(encoding="utf-8") == "好\n差\n不错\n太差了\n还行\n"
    (mirror / "neg.txt").write_text("changed\n", encoding="utf-8")  # a source that is not the one
    path.unlink()
    (path.parent / "neg.txt").unlink()
    with pytest.raises(UserError, match=r"neg.txt \(a source of mixed.txt\) failed its sha256"):
        corpora.get("mixed", str(mirror))


@pytest.mark.parametrize("command", [("train", "--max-steps", "1", "--plain"),
                                     ("ngram", "train"), ("fill", "train")])
def test_a_mirror_with_no_registry_name_among_the_inputs_is_refused(small_text: Path,
                                                                    tmp_path: Path, command) -> None:
    args = [*command[:2], small_text, *command[2:]] if command[0] in ("ngram", "fill") else \
        [command[0], small_text, *command[1:]]
    result = run_cli(*args, "--mirror", tmp_path, ok=False)
    assert result.exit_code == 2 and "no input names one: drop --mirror" in result.output


def test_a_damaged_deflate_stream_is_one_clear_error_and_leaves_no_partial_file(
        tmp_path: Path) -> None:
    """zlib's own error escaped as an internal error, and the partial file stayed."""
    import zipfile

    archive = tmp_path / "enwik8.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr("enwik8", "abcdefgh " * 20000)
    data = bytearray(archive.read_bytes())
    at = data.index(b"enwik8") + len("enwik8") + 5  # inside the compressed member
    data[at : at + 35] = b"\xff" * 35
    archive.write_bytes(bytes(data))
    out = tmp_path / "enwik8.tmp"
    with pytest.raises(UserError, match="is not a valid zip archive .*replace the mirror's copy"):
        corpora._extract(archive, "enwik8", out)
    assert not out.exists()


def test_an_empty_mirror_is_refused_not_taken_as_none() -> None:
    """--mirror '' fell back to $CHARRNN_MIRROR or a download without a word."""
    result = run_cli("corpus", "get", "tinyshakespeare", "--mirror", "", ok=False)
    assert result.exit_code == 2 and "--mirror is empty" in result.output


def test_a_corpus_fetch_that_fails_to_write_names_the_cache_file_and_leaves_no_part(
        tmp_path: Path, monkeypatch) -> None:
    """A full disk was said of the mirror's file, and a partial .tmp file stayed in the cache."""
    import errno
    import shutil

    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))  # (the session's may hold it)
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tinyshakespeare.txt").write_text("some text\n")

    def full(source, target, *args, **kwargs):
        Path(target).write_text("some")
        raise OSError(errno.ENOSPC, "No space left on device", str(source))

    monkeypatch.setattr(shutil, "copyfile", full)
    result = run_cli("corpus", "get", "tinyshakespeare", "--mirror", mirror, ok=False)
    assert result.exit_code == 2 and "could not write" in result.output
    assert "the disk may be full" in result.output
    cache = Path(os.environ["CHARRNN_CACHE"]) / "corpora"
    assert not [p for p in cache.rglob("*") if p.is_file()]


def test_a_mirror_file_that_cannot_be_read_is_not_blamed_on_the_cache(tmp_path: Path,
                                                                     monkeypatch) -> None:
    """A copy's read error was reported as 'could not write <cache>: the cache folder is not
    writable'."""
    import errno
    import shutil

    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "tinyshakespeare.txt").write_text("some text\n")

    def unreadable(source, target, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(source))

    monkeypatch.setattr(shutil, "copyfile", unreadable)
    result = run_cli("corpus", "get", "tinyshakespeare", "--mirror", mirror, ok=False)
    assert "could not write" not in result.output and "Permission denied" in result.output


def test_a_mirror_given_with_a_tilde_the_shell_left_is_the_home_folder(
        shakespeare: Path, tmp_path: Path, monkeypatch) -> None:
    """`--mirror=~/m` was checked expanded, then read unexpanded: 'not in the mirror ~/m'."""
    home = tmp_path / "home"
    (home / "m").mkdir(parents=True)
    shutil.copyfile(shakespeare, home / "m" / "tinyshakespeare.txt")
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path / "cache"))
    run_cli("corpus", "get", "tinyshakespeare", "--mirror=~/m")
