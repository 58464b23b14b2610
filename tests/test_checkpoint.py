"""Checkpoints: self-describing, atomic, never unpickled, every kind of damage a clear error."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import pytest

from charrnn import checkpoint, fsutil
from charrnn.errors import UserError
from charrnn.lm.model import load_lm
from helpers import flatten_like_cudnn, modules_loaded_by, run_cli


def _copy(run: Path, tmp_path: Path) -> Path:
    target = tmp_path / "copy"
    shutil.copytree(run, target)
    return target


def test_checkpoint_is_self_describing(tiny_run: Path) -> None:
    ckpt = checkpoint.resolve(str(tiny_run), tiny_run.parent)
    assert ckpt.folder.name == "best"
    model = load_lm(ckpt, "cpu")
    assert model.config.hidden == 32 and ckpt.tokenizer.vocab_size == model.config.vocab_size


def test_a_pickle_renamed_as_checkpoint_is_refused_without_unpickling(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = tmp_path / "model.ckpt"

    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    evil.write_bytes(pickle.dumps(Boom()))
    result = run_cli("sample", evil, ok=False)
    assert "never unpickles" in result.output and not marker.exists()


def test_truncated_weights_are_reported(tiny_run: Path, tmp_path: Path) -> None:
    run = _copy(tiny_run, tmp_path)
    weights = run / "best" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:100])
    result = run_cli("sample", run, "--length", "5", ok=False)
    assert "truncated or corrupt" in result.output and result.exit_code == 2


def test_checkpoints_without_their_json_are_named_damaged_and_never_to_delete(
        tiny_run: Path, tmp_path: Path) -> None:
    """The message for a run stopped before its first save advised `rm -r` the run: said of
    best/ and last/ whose weights were intact, following it lost them."""
    run = _copy(tiny_run, tmp_path)
    for sub in ("best", "last"):
        (run / sub / "checkpoint.json").unlink(missing_ok=True)
    result = run_cli("sample", run, "--length", "5", ok=False)
    assert result.exit_code == 2 and "no readable checkpoint" in result.output, result.output
    assert "rm -r" not in result.output and "they are left as they are" in result.output
    assert (run / "best" / "model.safetensors").is_file()


def test_weights_of_another_shape_are_a_mismatch_not_corruption(tiny_run: Path, tmp_path: Path) -> None:
    run = _copy(tiny_run, tmp_path)
    _edit_meta(run, "model", hidden=48)  # the file holds a 32-wide model
    result = run_cli("sample", run, "--length", "5", ok=False)
    assert result.exit_code == 2 and "corrupt" not in result.output, result.output
    assert "does not match its config (embed.weight is " in result.output
    # the cell is the machine's recipe (a GRU where bf16 is slow, an LSTM where it pays)
    cell = json.loads((run / "best" / "checkpoint.json").read_text())["model"]["cell"]
    gates = {"rnn": 1, "gru": 3, "lstm": 4}[cell]
    assert (f"rnn.weight_ih_l0 is {gates * 32}×32 in the file, {gates * 48}×48 by the config"
            in result.output), result.output


def test_unreadable_weights_say_so_not_corruption(tiny_run: Path, monkeypatch) -> None:
    from charrnn import weights

    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(weights, "safe_open", denied)
    result = run_cli("sample", tiny_run, "--length", "5", ok=False)
    assert result.exit_code == 2 and "cannot be read (Permission denied)" in result.output
    assert "corrupt" not in result.output


def test_a_huge_claimed_model_is_refused_from_the_weights_header_before_it_is_built(
        tiny_run: Path, tmp_path: Path, monkeypatch) -> None:
    """The H200 case: a config claiming 28.8 billion parameters fits a 141 GB device on paper.
    Building it would allocate ~115 GB on the host (here: an allocator error, 'out of memory');
    the weights file's header says at once that it is not this model."""
    import torch

    from charrnn import devices
    from charrnn.lm.model import RNNLM

    monkeypatch.setattr(devices, "device_memory", lambda device: 1 << 40)
    real_init = RNNLM.__init__

    def shapes_only(self, config) -> None:  # a regression fails here, not at the OOM killer
        assert config.hidden < 30_000 or torch.get_default_device().type == "meta", "built it"
        real_init(self, config)

    monkeypatch.setattr(RNNLM, "__init__", shapes_only)
    run = _copy(tiny_run, tmp_path)
    _edit_meta(run, "model", hidden=30_000, layers=4)
    commands = (["sample", run, "--length", "5", "--plain"], ["eval", run, "--split", "val"],
                ["train", "--resume", run, "--max-steps", "50"],
                ["train", tmp_path / "small.txt", "--init-from", run, "--max-steps", "2"])
    (tmp_path / "small.txt").write_text("some new text to fine-tune on\n" * 50)
    for args in commands:
        result = run_cli(*args, ok=False)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, (args, result.output)
        assert "does not match its config" in lines[0] and "by the config" in lines[0], lines[0]


@pytest.mark.parametrize(("key", "value", "message"), [
    ("format", "other-tool", "not a charrnn checkpoint"),
    ("version", 99, "checkpoint version 99"),
])
def test_other_format_or_version_is_refused(tiny_run, tmp_path, key, value, message) -> None:
    run = _copy(tiny_run, tmp_path)
    meta_path = run / "best" / "checkpoint.json"
    meta = json.loads(meta_path.read_text())
    meta[key] = value
    meta_path.write_text(json.dumps(meta))
    assert message in run_cli("sample", run, ok=False).output


def test_corrupt_json_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    run = _copy(tiny_run, tmp_path)
    (run / "best" / "checkpoint.json").write_text('{"format": "charrnn-ch')
    assert "not readable JSON" in run_cli("sample", run, ok=False).output


def test_failed_write_keeps_the_previous_checkpoint(tiny_run: Path, tmp_path: Path,
                                                    monkeypatch) -> None:
    run = _copy(tiny_run, tmp_path)
    before = (run / "last" / "model.safetensors").read_bytes()
    ckpt = checkpoint.resolve(str(run), run.parent, prefer="last")
    model = load_lm(ckpt)

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("safetensors.torch.save_file", disk_full)  # read when a write begins
    with pytest.raises(UserError, match="No space left.*previous copy is intact"):
        checkpoint.save(run / "last", model, {"model": {}}, None)
    assert (run / "last" / "model.safetensors").read_bytes() == before
    assert not list(run.glob("last.tmp-*"))


@pytest.mark.skipif(os.geteuid() == 0, reason="root ignores folder permissions")
def test_read_only_run_folder_is_a_clear_error(tiny_run: Path, tmp_path: Path) -> None:
    run = _copy(tiny_run, tmp_path)
    ckpt = checkpoint.resolve(str(run), run.parent, prefer="last")
    run.chmod(0o500)
    try:
        with pytest.raises(UserError, match="could not write"):
            checkpoint.save(run / "last", load_lm(ckpt), {"model": {}}, None)
    finally:
        run.chmod(0o700)


def test_interrupted_swap_is_recovered(tiny_run: Path, tmp_path: Path) -> None:
    run = _copy(tiny_run, tmp_path)
    os.replace(run / "best", run / "best.old")  # a crash between the two renames
    ckpt = checkpoint.resolve(str(run), run.parent)
    assert ckpt.folder == run / "best" and (run / "best" / "model.safetensors").is_file()


def test_checkpoint_named_relative_to_the_runs_root_is_that_checkpoint(tiny_run: Path) -> None:
    # cwd is the test's temp folder: "tiny/last" exists only under the runs root
    root = tiny_run.parent
    assert checkpoint.resolve("tiny/last", root, prefer="best").folder == tiny_run / "last"
    assert checkpoint.resolve("tiny/best", root, prefer="last").folder == tiny_run / "best"
    assert checkpoint.resolve("tiny", root, prefer="last").folder == tiny_run / "last"


def test_interrupted_swap_under_the_runs_root_is_recovered(tiny_run: Path, tmp_path: Path) -> None:
    root = tmp_path / "elsewhere"  # not under the cwd: found only through the runs root
    run = shutil.copytree(tiny_run, root / "copy")
    os.replace(run / "last", run / "last.old")  # a crash between the two renames
    assert checkpoint.resolve("copy/last", root, prefer="best").folder == root / "copy" / "last"


def test_atomic_dir_removes_temp_on_error(tmp_path: Path) -> None:
    with pytest.raises(RuntimeError), fsutil.atomic_dir(tmp_path / "x") as tmp:
        (tmp / "f").write_text("partial")
        raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_a_failed_write_over_an_empty_folder_says_nothing_was_written(tmp_path: Path) -> None:
    """A fill group claims its name with an empty folder first: a failed write said 'the
    previous copy is intact' of it."""
    import errno

    (tmp_path / "g").mkdir()
    with pytest.raises(UserError, match="nothing of g/ was written"), \
            fsutil.atomic_dir(tmp_path / "g") as tmp:
        (tmp / "f").write_text("partial")
        raise OSError(errno.ENOSPC, "No space left on device")
    assert (tmp_path / "g").is_dir()


def test_a_json_write_that_fails_half_way_leaves_the_old_file_and_no_temp(tmp_path: Path) -> None:
    from charrnn.fsutil import write_json_atomic

    path = tmp_path / "run.json"
    write_json_atomic(path, {"kind": "lm"})
    with pytest.raises(TypeError):  # as a Ctrl-C half-way would: not an OSError
        write_json_atomic(path, {"kind": "lm", "bad": object()})
    assert json.loads(path.read_text()) == {"kind": "lm"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.json"]


def test_a_reader_recovering_between_the_two_renames_does_not_stop_the_writer(
        tmp_path: Path, monkeypatch) -> None:
    """A reader (sample, eval) opening the run between `last → last.old` and `tmp → last` saw
    no `last/` and brought `last.old` back: the writer's second rename then failed."""
    final = tmp_path / "last"
    with fsutil.atomic_dir(final) as tmp:
        (tmp / "f").write_text("one")
    real, reader_came = os.replace, []

    def replace(src, dst):
        if Path(dst) == final and not reader_came:  # the writer's second rename, first try
            reader_came.append(True)
            fsutil.recover_dir(final)  # what a reader does meanwhile
        return real(src, dst)

    monkeypatch.setattr(fsutil.os, "replace", replace)
    with fsutil.atomic_dir(final) as tmp:
        (tmp / "f").write_text("two")
    assert reader_came and (final / "f").read_text() == "two"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last"]


def test_an_atomic_file_write_keeps_links_and_writes_through_pipes(tmp_path: Path) -> None:
    """`ngram export --arpa /dev/stdout` (as root) replaced the /dev/stdout link with a file; a
    link was replaced instead of its target, and a FIFO by a file its reader never saw."""
    import threading

    target, link = tmp_path / "target.arpa", tmp_path / "link.arpa"
    target.write_text("old")
    link.symlink_to(target)
    with fsutil.atomic_file(link) as tmp:
        tmp.write_text("new")
    assert link.is_symlink() and target.read_text() == "new"
    fifo, got = tmp_path / "fifo", []
    os.mkfifo(fifo)
    reader = threading.Thread(target=lambda: got.append(fifo.read_text()), daemon=True)
    reader.start()
    with fsutil.atomic_file(fifo) as out:
        out.write_text("through")
    reader.join(10)
    assert got == ["through"] and not fifo.is_file()


def test_missing_run_is_a_clear_error(tmp_path: Path) -> None:
    result = run_cli("sample", "no-such-run", ok=False)
    assert "run 'no-such-run' not found" in result.output
    assert "no language model runs under" in run_cli("sample", ok=False).output
    gone = run_cli("fill", "a ___ b", "--out", tmp_path / "typo", ok=False).output
    assert f"no models to fill with under {tmp_path / 'typo'} (no such folder)" in gone


def test_resume_with_a_different_corpus_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    run = _copy(tiny_run, tmp_path)
    other = tmp_path / "other.txt"
    other.write_text("completely different text here\n" * 200)
    result = run_cli("train", other, "--resume", run, ok=False)
    assert "not the one run" in result.output


@pytest.mark.parametrize("tie", [False, True])
def test_weights_sharing_one_buffer_save_and_load_back(tmp_path: Path, tie: bool) -> None:
    import torch

    from charrnn.lm.model import RNNLM, ModelConfig

    model = RNNLM(ModelConfig(vocab_size=11, cell="lstm", layers=2, hidden=8, tie_weights=tie))
    flatten_like_cudnn(model.rnn)
    meta = {"model": model.config.to_json(), "tokenizer": {"level": "char"}, "task": "lm"}
    checkpoint.save(tmp_path / "best", model, meta, None)
    loaded = load_lm(checkpoint.Checkpoint(tmp_path / "best", meta), "cpu")
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, loaded.state_dict()[name]), name
    into = RNNLM(model.config)  # and into a module in that layout (a resumed run on CUDA)
    flatten_like_cudnn(into.rnn)
    checkpoint.Checkpoint(tmp_path / "best", meta).load_into(into)
    assert len({w.untyped_storage().data_ptr() for w in into.rnn._flat_weights}) == 1
    for name, tensor in model.state_dict().items():
        assert torch.equal(tensor, into.state_dict()[name]), name


def test_sample_checkpoint_must_be_best_or_last(tiny_run: Path) -> None:
    # (a value other than best or last: tests/test_cli_main.py)
    run_cli("sample", tiny_run, "--checkpoint", "last", "--length", "5", "--plain")


def test_damaged_best_checkpoint_points_to_last(tiny_run: Path, tmp_path: Path) -> None:
    run = _copy(tiny_run, tmp_path)
    (run / "best" / "checkpoint.json").write_text('{"format": "charrnn-ch')
    result = run_cli("sample", run, "--length", "5", ok=False)
    assert "not readable JSON" in result.output and f"other checkpoint ({run}/last)" in result.output
    (run / "last" / "checkpoint.json").write_text('{"format": "charrnn-ch')  # both damaged
    for name in ("best", "last"):
        result = run_cli("sample", run / name, "--length", "5", ok=False)
        assert "not readable JSON" in result.output and "other checkpoint" not in result.output
    shutil.rmtree(run)
    run = _copy(tiny_run, tmp_path)
    (run / "best" / "model.safetensors").unlink()
    result = run_cli("sample", run, "--length", "5", ok=False)
    assert "missing model.safetensors" in result.output
    assert f"other checkpoint ({run}/last)" in result.output
    other = run / "last" / "model.safetensors"  # cut short too: not worth pointing to
    whole = other.read_bytes()
    for damaged in (whole[:-10], b"version https://git-lfs.github.com/spec/v1\noid sha256:ab\n",
                    (2).to_bytes(8, "little") + b"[]", b"\xff" * 8):
        other.write_bytes(damaged)  # (an LFS pointer's first 8 bytes read as a header length)
        result = run_cli("sample", run, "--length", "5", ok=False)
        assert result.exit_code == 2 and "missing model.safetensors" in result.output
        assert "other checkpoint" not in result.output
    shutil.rmtree(run / "last")  # no other checkpoint: nothing to point to
    result = run_cli("sample", run, "--length", "5", ok=False)
    assert "missing model.safetensors" in result.output and "other checkpoint" not in result.output


def test_resume_without_resume_state_says_what_is_missing_and_what_to_do(tiny_run: Path,
                                                                         tmp_path: Path) -> None:
    run = _copy(tiny_run, tmp_path)
    (run / "last" / "state.safetensors").unlink()
    message = run_cli("train", "--resume", run / "last", ok=False).output  # last/ named outright
    assert f"{run / 'last'} has no resume state (state.safetensors is missing)" in message
    assert f"--resume {run / 'best'}" in message and "resume from last/" not in message
    assert "from best/ (last/ is missing or damaged" in run_cli(  # the run: its whole best/
        "train", "--resume", run, "--max-steps", "50").output
    (run / "last" / "state.safetensors").unlink()
    (run / "best" / "state.safetensors").unlink()
    message = run_cli("train", "--resume", run, ok=False).output
    assert "charrnn sample" in message and "train a new run" in message
    assert "--resume" not in message


# ---- a damaged or hostile checkpoint.json: one line, exit 2, before anything is built -----------
def _edit_meta(run: Path, section: str, **changes) -> None:
    for name in ("best", "last"):
        path = run / name / "checkpoint.json"
        meta = json.loads(path.read_text())
        meta[section].update(changes)
        path.write_text(json.dumps(meta))


@pytest.mark.parametrize(("changes", "message"), [
    ({"hidden": 10**12}, "does not fit in memory"),  # overflowed torch's size computation
    ({"hidden": 30_000, "layers": 4}, "does not fit in memory on cpu"),  # ~tens of GB
    ({"hidden": "32"}, "hidden must be int, not '32'"),
    ({"hidden": True}, "hidden must be int, not True"),
    ({"dropout": 7.5}, "--dropout must be in [0, 1), got 7.5"),
    ({"cell": "transformer"}, "--cell must be one of"),
    ({"vocab_size": -1}, "--vocab-size must be ≥ 1"),
])
def test_a_checkpoint_claiming_an_impossible_model_is_one_line(tiny_run: Path, tmp_path: Path,
                                                               changes: dict, message: str) -> None:
    run = _copy(tiny_run, tmp_path)
    _edit_meta(run, "model", **changes)
    for args in (["sample", run, "--length", "5", "--plain"], ["eval", run, "--split", "val"]):
        result = run_cli(*args, ok=False)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1, result.output
        said = message
        if args[0] == "sample" and "fit in memory" in message:
            # Sampled on a CPU without torch: the file's shapes are checked against the config
            # first, and nothing is ever allocated by the config's word.
            said = "model.safetensors does not match its config (embed.weight is 31×32 in the file"
        assert lines[0].startswith("charrnn: error: ") and said in lines[0], lines[0]
    assert "checkpoint.json" in lines[0]


def test_a_damaged_train_section_is_refused_on_resume(tiny_run: Path, tmp_path: Path) -> None:
    run = _copy(tiny_run, tmp_path)
    _edit_meta(run, "train", batch_size="4")
    result = run_cli("train", "--resume", run, ok=False)
    assert result.exit_code == 2 and "batch_size must be int, not '4'" in result.output


def test_a_value_this_version_refuses_in_a_saved_config_may_be_an_older_charrnns(
        tiny_run: Path, tmp_path: Path) -> None:
    """A check added later (a tagger's --features -2, now refused) called an older run's
    checkpoint 'damaged' alone."""
    run = _copy(tiny_run, tmp_path)
    _edit_meta(run, "train", warmup=-1)
    result = run_cli("train", "--resume", run, ok=False)
    assert result.exit_code == 2 and "or was written by an older charrnn that allowed it" in \
        " ".join(result.output.split())


@pytest.mark.parametrize(("key", "value", "said"), [
    ("dataset", 5, "'dataset' section is not an object"),
    ("progress", 5, "'progress' section is not an object"),
    ("train", [], "'train' section is not an object"),
    ("tokenizer", {"level": "char", "chars": "ab"}, "its tokenizer has 2 tokens and its model 31"),
    ("tokenizer", {"level": "char", "chars": "aa"}, "a character listed twice"),
])
def test_a_checkpoint_section_of_the_wrong_shape_is_one_line(tiny_run: Path, tmp_path: Path,
                                                            key: str, value, said: str) -> None:
    run = _copy(tiny_run, tmp_path)
    for name in ("best", "last"):
        path = run / name / "checkpoint.json"
        path.write_text(json.dumps({**json.loads(path.read_text()), key: value}))
    commands = [["sample", run, "--length", "5", "--plain"], ["eval", run, "--split", "val"]]
    for args in commands + ([["train", "--resume", run]] if key != "tokenizer" else []):
        result = run_cli(*args, ok=False)
        lines = result.output.strip().splitlines()
        assert result.exit_code == 2 and len(lines) == 1 and said in lines[0], (args, result.output)


def test_hostile_tagger_and_fill_checkpoints_are_refused_too(tmp_path: Path) -> None:
    from charrnn import checkpoint
    from charrnn.fill.config import FillConfig
    from charrnn.fill.model import FillModel
    from charrnn.tag.config import TaggerConfig
    from charrnn.tag.model import Tagger

    for config, model in ((FillConfig, FillModel), (TaggerConfig, Tagger)):
        meta = {"task": "x", "tokenizer": {}, "model": {"vocab_size": 5, "level": "word",
                                                        "n_tokens": 5, "n_labels": 3,
                                                        "hidden": 10**9}}
        ckpt = checkpoint.Checkpoint(tmp_path, meta)
        with pytest.raises(UserError, match="does not fit in memory"):
            ckpt.build(config, model)
        meta["model"]["hidden"] = -4
        with pytest.raises(UserError, match="hidden must be ≥ 1"):
            ckpt.build(config, model)


def test_run_folders_of_before_the_rename_still_open(tiny_run: Path, tmp_path: Path) -> None:
    """run.json said "rnn" for language models (and "tagger" for taggers) before 0.2."""
    run = _copy(tiny_run, tmp_path)
    info = json.loads((run / "run.json").read_text())
    (run / "run.json").write_text(json.dumps({**info, "kind": "rnn"}))
    assert run_cli("sample", "copy", "--out", tmp_path, "--length", "5", "--plain").output.strip()
    scored = json.loads(run_cli("eval", "copy", "--out", tmp_path, "--split", "val", "--json").output)
    assert scored["kind"] == "lm"
    run_cli("train", "--resume", run, "--max-steps", "44", "--plain")
    assert "copy" in run_cli("runs", "--out", tmp_path).output
    assert run_cli("sample", "--out", tmp_path, "--length", "5", "--plain").exit_code == 0


def test_the_size_check_before_a_load_builds_every_model_kind_without_torchs_compiler() -> None:
    """The skeleton a checkpoint is checked against is built on the meta device, where torch runs
    normal_ and arange through Python references whose first use imports torch._dynamo and sympy
    (0.4–1.1 s of `charrnn fill`, `tag` and a word-level `sample`): every model kind skips them."""
    code = (
        "from charrnn.devices import skeleton\n"
        "from charrnn.lm.model import RNNLM, ModelConfig\n"
        "from charrnn.fill.model import FillModel, FillConfig\n"
        "from charrnn.tag.model import Tagger\n"
        "from charrnn.tag.config import TaggerConfig\n"
        "builds = [lambda: RNNLM(ModelConfig(3000, 'lstm', 1, 16, softmax='adaptive',\n"
        "                                    cutoffs=[100, 1000])),\n"
        "          lambda: FillModel(FillConfig(vocab_size=500)),\n"
        "          lambda: Tagger(TaggerConfig(level='char', n_tokens=50, n_labels=4,\n"
        "                                      n_bigrams=300)),\n"
        "          lambda: Tagger(TaggerConfig(level='word', n_tokens=50, n_labels=4, n_chars=40,\n"
        "                                      feature_sizes=[10]))]\n"
        "print(all(skeleton(build) is not None for build in builds))\n")
    stdout, (dynamo, sympy) = modules_loaded_by(code, "torch._dynamo", "sympy")
    assert stdout.strip() == "True" and not dynamo and not sympy


def test_resuming_a_named_best_behind_the_runs_last_is_refused_and_last_is_kept(
        small_text: Path, tmp_path: Path) -> None:
    """--resume RUN/best with last/ further on trained the steps after best/ again, over last/
    and metrics.jsonl, saying that last/ was missing."""
    from helpers import TINY

    run_cli("train", small_text, *TINY, "--max-steps", "10", "--run-name", "r")
    run = tmp_path / "runs" / "r"
    shutil.copytree(run / "best", tmp_path / "best_at_10")
    run_cli("train", "--resume", "r", "--max-steps", "20")
    shutil.rmtree(run / "best")
    shutil.copytree(tmp_path / "best_at_10", run / "best")  # best/ at step 10, last/ at 20
    metrics = (run / "metrics.jsonl").read_text()
    refused = run_cli("train", "--resume", str(run / "best"), "--max-steps", "30", ok=False)
    assert refused.exit_code == 2 and "trained on to step 20 (its last/)" in refused.output
    assert json.loads((run / "last" / "checkpoint.json").read_text())["progress"]["step"] == 20
    assert (run / "metrics.jsonl").read_text() == metrics
    out = run_cli("train", "--resume", "r", "--max-steps", "22").output
    assert "resuming" in out and "at step 20" in out


def test_a_library_caller_may_name_the_runs_root_as_a_string(tiny_run: Path) -> None:
    """checkpoint.resolve("tiny", "runs") was a TypeError (str / str)."""
    from charrnn import runs

    assert checkpoint.resolve(tiny_run.name, str(tiny_run.parent)).run_folder == tiny_run
    assert runs.resolve_run(tiny_run.name, str(tiny_run.parent)) == tiny_run


def test_a_run_begun_before_burned_in_rows_keeps_its_validation_figure_when_resumed(
        small_text: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Its best/ was scored from zero-state rows: scored with read-in rows after the resume, the
    first evaluation would look better by construction and replace best/ (and reset patience)."""
    from charrnn.lm import train as lm_train
    from helpers import TINY

    run_cli("train", small_text, *TINY, "--max-steps", "10", "--run-name", "old")
    last = tmp_path / "runs" / "old" / "last" / "checkpoint.json"
    meta = json.loads(last.read_text())
    assert meta["progress"]["cold_rows"] is False  # a new run reads the rows in
    del meta["progress"]["cold_rows"]  # as a checkpoint of before records it
    last.write_text(json.dumps(meta))
    asked, real = [], lm_train.score_ids
    monkeypatch.setattr(lm_train, "score_ids", lambda *a, **k: asked.append(k["burn_in"]) or
                        real(*a, **k))
    run_cli("train", "--resume", "old", "--max-steps", "20")
    assert asked and not any(asked)
    assert json.loads(last.read_text())["progress"]["cold_rows"] is True


def _damage_in_place(path: Path) -> None:
    """Bytes of the last tensor overwritten, the file's size and header kept: no check of the
    header sees it (0xFF bytes are NaN in float32)."""
    data = bytearray(path.read_bytes())
    data[-40:-8] = b"\xff" * 32
    path.write_bytes(bytes(data))


def test_weights_damaged_in_place_are_refused_naming_the_tensor_and_resume_takes_best(
        tiny_run: Path, tmp_path: Path) -> None:
    """They loaded: eval printed 'nan nats/token' with exit 0, and a resume rolled back five
    times before blaming the learning rate."""
    run = _copy(tiny_run, tmp_path)
    _damage_in_place(run / "last" / "model.safetensors")
    for command in (["eval", run / "last"], ["sample", run, "--checkpoint", "last",
                                               "--length", "5", "--plain"]):
        result = run_cli(*command, ok=False)
        assert result.exit_code == 2 and f"{run / 'last' / 'model.safetensors'} holds NaN or " \
            "inf (in " in result.output, result.output
        assert f"use the run's other checkpoint ({run / 'best'})" in result.output
    assert "from best/ (last/ is missing or damaged" in run_cli(
        "train", "--resume", run, "--max-steps", "50").output


def test_a_lock_file_made_a_folder_is_refused_not_left_unlocked(tmp_path: Path) -> None:
    """A .writer folder made the lock look unwritable (read-only): no lock was taken, and two
    trainers wrote one run at once."""
    from charrnn import runlock
    from charrnn.errors import UserError

    (tmp_path / runlock.LOCK_FILE).mkdir()
    with pytest.raises(UserError, match=r"\.writer is a folder, where the file that marks"):
        with runlock.writer(tmp_path):
            pass


def test_best_named_outright_is_not_refused_for_a_last_that_cannot_be_resumed(
        tiny_run: Path, tmp_path: Path) -> None:
    """With last/ damaged in place, --resume RUN/best was refused ('give the run to go on from
    last/'), and the run itself resumed from best/ all the same."""
    run = _copy(tiny_run, tmp_path)
    meta = run / "last" / "checkpoint.json"
    saved = json.loads(meta.read_text())
    best = saved["progress"]["step"]
    saved["progress"]["step"] = best + 10  # last/ further on: best/ named outright is refused
    meta.write_text(json.dumps(saved))
    assert "resuming best/ would train the steps after it" in run_cli(
        "train", "--resume", run / "best", "--max-steps", str(best + 1), ok=False).output
    _damage_in_place(run / "last" / "model.safetensors")  # … unless last/ cannot be resumed
    assert f"resuming {run} at step {best}" in run_cli(
        "train", "--resume", run / "best", "--max-steps", str(best + 1)).output


def test_a_short_write_as_safetensors_words_it_is_taken_for_a_full_disk() -> None:
    """'could not write F/n/model: 118007 requested and 75744 written' said nothing of space."""
    from charrnn.fsutil import write_advice

    advice = write_advice(OSError("failed to write: 118007 requested and 75744 written"))
    assert advice.startswith("the disk may be full: free some space or choose another")


def test_a_damaged_tokenizer_in_a_checkpoint_names_the_file_and_the_other_checkpoint(
        tiny_run: Path, tmp_path: Path) -> None:
    """It said 'stored char tokenizer is malformed (…): re-run preprocess': no file, and advice
    that does not mend a checkpoint."""
    run = tmp_path / "r"
    shutil.copytree(tiny_run, run)
    meta = run / "best" / "checkpoint.json"
    saved = json.loads(meta.read_text())
    chars = saved["tokenizer"]["chars"]
    saved["tokenizer"]["chars"] = chars[0] + chars[0] + chars[2:]
    meta.write_text(json.dumps(saved))
    result = run_cli("sample", run, "--length", "5", ok=False)
    assert result.exit_code == 2
    assert f"{meta}: stored char tokenizer is malformed (a character listed twice)" in result.output
    assert f"use the run's other checkpoint ({run / 'last'})" in result.output
    assert "re-run preprocess" not in result.output
