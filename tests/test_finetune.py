"""Fine-tuning (`charrnn train NEWTEXT --init-from RUN`): a new run from a trained one."""

from __future__ import annotations

import json
import math
import random
from pathlib import Path

import pytest
import torch

from charrnn import checkpoint
from charrnn.data import find_dataset
from charrnn.lm import finetune
from charrnn.lm.config import TrainConfig
from charrnn.lm.model import load_lm
from helpers import SMALL_LINES, TINY, run_cli


@pytest.fixture
def code(tmp_path: Path) -> Path:
    """Text full of characters English prose lacks: digits, brackets, operators."""
    rng = random.Random(0)
    path = tmp_path / "code.txt"
    path.write_text("".join(f"x[{i}] = ({rng.randint(0, 99)} + {rng.randint(0, 9)}) * 7;\n"
                            for i in range(300)), encoding="utf-8")
    return path


@pytest.fixture
def parent(small_text: Path, tmp_path: Path) -> Path:
    run_cli("train", small_text, *TINY, "--max-steps", "20", "--run-name", "parent")
    return tmp_path / "runs" / "parent"


def _train_lines(run: Path) -> dict[int, float]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return {r["step"]: r["loss"] for r in map(json.loads, lines) if r["type"] == "train"}


@pytest.mark.parametrize("model", [["--cell", "lstm"], ["--no-tie-weights", "--cell", "rnn"],
                                   ["--level", "word", "--softmax", "adaptive", "--cutoffs", "5,12",
                                    "--no-tie-weights"],
                                   ["--direction", "backward"]])
def test_growth_keeps_every_old_row_bit_identical(small_text: Path, tmp_path: Path, model) -> None:
    run_cli("train", small_text, *TINY, *model, "--max-steps", "4", "--run-name", "p")
    parent = finetune.open_parent("p", tmp_path / "runs")
    old = load_lm(parent.ckpt)
    config, state = finetune.grown_model(parent, parent.config.vocab_size + 3, TrainConfig())
    assert config.vocab_size == old.config.vocab_size + 3
    vocab = old.config.vocab_size
    for name, before in old.state_dict().items():
        after = state[name]
        if after.shape == before.shape:
            assert torch.equal(after, before), name
        else:  # a grown vocabulary: the old rows come first, untouched
            assert after.shape[0] == before.shape[0] + 3 and torch.equal(after[: len(before)], before)
    if old.adaptive:
        assert state["head.order"][vocab:].tolist() == [vocab, vocab + 1, vocab + 2]


def test_new_characters_are_added_and_the_fine_tuned_run_is_an_ordinary_run(
        parent: Path, code: Path, tmp_path: Path) -> None:
    args = [code, "--init-from", "parent", *TINY, "--log-every", "1", "--min-lr-ratio", "1"]
    out = run_cli("train", *args, "--max-steps", "20", "--run-name", "child").output
    added = sorted(set(code.read_text()) - set("\n".join(SMALL_LINES)))
    assert f"{len(added)} token(s) added to its vocabulary" in out
    info = json.loads((tmp_path / "runs/child/run.json").read_text())
    assert info["init_from"]["run"] == "parent" and info["init_from"]["added_tokens"] == len(added)
    assert "lm ← parent" in run_cli("runs").output
    assert set(run_cli("sample", "child", "--length", "200", "--seed", "1").output) - set(
        "\n".join(SMALL_LINES))  # it writes characters the parent could not
    assert json.loads(run_cli("eval", "child", "--split", "val", "--json").output)["perplexity"] > 1
    run_cli("train", *args, "--max-steps", "8", "--run-name", "cut")
    run_cli("train", "--resume", "cut", "--max-steps", "20", "--plain")
    whole, cut = _train_lines(tmp_path / "runs/child"), _train_lines(tmp_path / "runs/cut")
    assert all(cut[s] == pytest.approx(whole[s], rel=1e-6) for s in range(9, 21))


def test_bits_per_char_of_a_skipping_run_count_only_the_characters_kept(parent: Path, code: Path,
                                                                         tmp_path) -> None:
    made = run_cli("train", code, "--init-from", "parent", *TINY, "--unk", "skip", "--max-steps",
                   "2", "--run-name", "skip").output
    assert "its vocabulary as it was" in made and "0 token(s) added" not in made
    score = json.loads(run_cli("eval", "skip", "--split", "val", "--json").output)
    kept = score["tokens"]  # one id per character kept
    assert score["skipped_chars"] == score["chars"] - kept > 0
    bits = score["nats_per_token"] * score["tokens"] / math.log(2)
    assert score["bits_per_char"] == pytest.approx(bits / kept)
    assert "characters outside the vocabulary skipped" in run_cli("eval", "skip", "--split",
                                                                  "val").output


def test_unknown_characters_can_be_dropped_or_refused(parent: Path, code: Path, tmp_path) -> None:
    run_cli("train", code, "--init-from", "parent", *TINY, "--unk", "skip", "--max-steps", "2",
            "--run-name", "skip")
    meta = json.loads((tmp_path / "runs/skip/best/checkpoint.json").read_text())
    old = json.loads((parent / "best/checkpoint.json").read_text())
    assert meta["tokenizer"] == old["tokenizer"]  # nothing added
    refused = run_cli("train", code, "--init-from", "parent", *TINY, "--unk", "error",
                      "--run-name", "e", ok=False)
    assert refused.exit_code == 2 and "character(s) the model never saw" in refused.output
    assert not (tmp_path / "runs/e").exists()


def test_new_words_are_unk_unless_the_vocabulary_grows(small_text: Path, tmp_path: Path) -> None:
    run_cli("train", small_text, *TINY, "--level", "word", "--max-steps", "4", "--run-name", "w")
    new = tmp_path / "new.txt"
    new.write_text("the zebra jumps over the zebra and the yak\n" * 60, encoding="utf-8")
    run_cli("train", new, "--init-from", "w", *TINY, "--max-steps", "2", "--run-name", "same")
    run_cli("train", new, "--init-from", "w", *TINY, "--grow-vocab", "1", "--max-steps", "2",
            "--run-name", "grown")

    def words(run: str) -> list[str]:
        return checkpoint.resolve(run, tmp_path / "runs").tokenizer.token_strings()

    assert words("same") == words("w")
    assert words("grown") == [*words("w"), "zebra"]  # the most frequent new word


def test_a_run_resumes_with_its_corpus_given_again_without_its_options_typed_again(
        small_text: Path, tmp_path: Path) -> None:
    """Once its cached dataset is gone, the corpus given again is the way back: it is read with
    the options the run's checkpoint records, and a fine-tuned run with its parent's tokenizer
    grown as it was (before, neither could ever match the run's dataset id)."""
    import shutil

    new = tmp_path / "new.txt"
    new.write_text("the zebra jumps over the zebra and the yak\n" * 60, encoding="utf-8")
    run_cli("train", small_text, *TINY, "--level", "word", "--min-count", "2", "--max-steps",
            "4", "--run-name", "w")
    run_cli("train", new, "--init-from", "w", *TINY, "--grow-vocab", "1", "--max-steps", "2",
            "--run-name", "grown")
    for run in ("w", "grown"):  # their datasets gone from the cache
        ident = checkpoint.resolve(run, tmp_path / "runs", prefer="last").meta["dataset"]["id"]
        shutil.rmtree(find_dataset(ident).root)
    out = run_cli("train", small_text, "--resume", "w", "--max-steps", "6").output
    assert "resuming" in out and "done at step 6" in out
    out = run_cli("train", new, "--resume", "grown", "--max-steps", "4").output
    assert "resuming" in out and "done at step 4" in out
    refused = run_cli("train", small_text, "--resume", "w", "--min-count", "1", ok=False)
    assert refused.exit_code == 2 and "dataset id differs" in refused.output


def test_a_run_resumed_from_another_folder_reads_its_relative_valid_file_where_it_was(
        small_text: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--valid v.txt typed in one folder: a resume from another, with the dataset gone from the
    cache, reads that folder's v.txt (before: the other folder's, or none)."""
    import shutil

    made, elsewhere = tmp_path / "made", tmp_path / "elsewhere"
    made.mkdir(), elsewhere.mkdir()
    (made / "v.txt").write_text("the cat sat on the mat and the dog.\n" * 20, encoding="utf-8")
    (elsewhere / "v.txt").write_text("quite other words here.\n" * 20, encoding="utf-8")
    monkeypatch.chdir(made)
    run_cli("train", small_text, "--valid", "v.txt", *TINY, "--max-steps", "4", "--run-name", "r")
    ident = checkpoint.resolve("r", tmp_path / "runs", prefer="last").meta["dataset"]["id"]
    shutil.rmtree(find_dataset(ident).root)
    monkeypatch.chdir(elsewhere)
    out = run_cli("train", small_text, "--resume", "r", "--max-steps", "6").output
    assert "resuming" in out and "done at step 6" in out


def test_a_word_level_child_takes_the_word_recipe_under_its_parents_shape(small_text: Path,
                                                                           tmp_path: Path) -> None:
    run_cli("train", small_text, *TINY, "--level", "word", "--tie-weights", "--dropout", "0.1",
            "--max-steps", "2", "--run-name", "w")
    run_cli("train", small_text, "--init-from", "w", *TINY, "--max-steps", "2", "--run-name", "c")
    child = json.loads((tmp_path / "runs/c/run.json").read_text())["config"]
    assert (child["grad_clip"], child["weight_decay"], child["lr"]) == (0.25, 0.1, 4e-3)
    assert child["tie_weights"] is True and child["dropout"] == 0.1  # the parent's, not the recipe's


def test_subword_runs_keep_their_sentencepiece_model(small_text: Path, code: Path, tmp_path) -> None:
    run_cli("train", small_text, *TINY, "--level", "subword", "--vocab-size", "300",
            "--max-steps", "2", "--run-name", "sp")
    run_cli("train", code, "--init-from", "sp", *TINY, "--max-steps", "2", "--run-name", "sp2")
    tokenizers = [json.loads((tmp_path / f"runs/{r}/best/checkpoint.json").read_text())["tokenizer"]
                  for r in ("sp", "sp2")]
    assert tokenizers[0] == tokenizers[1]
    refused = run_cli("train", code, "--init-from", "sp", *TINY, "--unk", "skip", ok=False)
    assert refused.exit_code == 2 and "nothing is unknown; drop --unk" in refused.output


def test_typed_shape_options_that_match_the_parent_in_effect_are_accepted(parent: Path,
                                                                          code: Path) -> None:
    # the parent's emb 0 is its hidden size (32); --softmax auto leaves the choice to the parent
    run_cli("train", code, "--init-from", "parent", *TINY, "--emb", "32", "--softmax", "auto",
            "--tie-weights", "--max-steps", "2", "--run-name", "same")
    sources = json.loads((parent.parent / "same/run.json").read_text())["sources"]
    assert sources["emb"] == "parent"  # emb 0 is recorded, the parent's spelling: not "typed"
    refused = run_cli("train", code, "--init-from", "parent", *TINY, "--no-tie-weights", ok=False)
    assert "--no-tie-weights (it has --tie-weights)" in refused.output


def test_a_resumed_run_refuses_what_it_would_ignore(parent: Path, code: Path) -> None:
    run_cli("train", code, "--init-from", "parent", *TINY, "--max-steps", "2", "--run-name", "c")
    for extra, said in ((["--unk", "skip"], "--unk: a resumed run keeps the tokenizer"),
                        (["--level", "word"], "--level: a resumed run reads its own dataset"),
                        (["--lr", "1e-3"], "--lr 0.001 (the run has 0.006)")):
        result = run_cli("train", "--resume", "c", *extra, ok=False)
        assert result.exit_code == 2 and said in result.output, result.output
    run_cli("train", "--resume", "c", "--lr", "6e-3", "--max-steps", "3")  # its own lr, typed


def test_unk_error_counts_the_words_left_after_growing(small_text: Path, tmp_path: Path) -> None:
    run_cli("train", small_text, *TINY, "--level", "word", "--max-steps", "2", "--run-name", "w")
    new = tmp_path / "new.txt"
    new.write_text("zebra zebra yak the\n" * 20, encoding="utf-8")
    refused = run_cli("train", new, "--init-from", "w", *TINY, "--grow-vocab", "1", "--unk",
                      "error", ok=False)
    assert "1 word(s) the model never saw after --grow-vocab 1 (e.g. 'yak')" in refused.output
    run_cli("train", new, "--init-from", "w", *TINY, "--grow-vocab", "2", "--unk", "error",
            "--max-steps", "2", "--run-name", "g")


@pytest.mark.parametrize(("extra", "message"), [
    (["--hidden", "64"], "--hidden 64 (it has 32)"),
    (["--hidden", "32", "--min-count", "2"], "--min-count does not apply with --init-from"),
    (["--level", "word"], "--level word (it reads char tokens)"),
    (["--grow-vocab", "5"], "--grow-vocab applies to word-level runs"),
    (["--resume", "parent"], "give one of them"),
])
def test_fine_tuning_refuses_what_it_cannot_honour(parent: Path, code: Path, tmp_path: Path,
                                                   extra, message) -> None:
    result = run_cli("train", code, "--init-from", "parent", *TINY, *extra, "--run-name", "x",
                     ok=False)
    assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "runs/x").exists()


def test_what_is_not_a_language_model_is_refused(parent: Path, small_text: Path, code: Path,
                                                 tmp_path: Path) -> None:
    run_cli("ngram", "train", small_text, "--order", "2", "--run-name", "kn")
    run_cli("train", small_text, "--task", "fill", "--hidden", "16", "--layers", "1",
            "--batch-size", "4", "--seq-len", "16", "--max-steps", "2", "--plain",
            "--run-name", "mask")
    for spec, message in (("kn", "--init-from kn is an n-gram run"),
                          ("mask", "--init-from mask is a fill-model run"),
                          ("nope", "run 'nope' not found")):
        result = run_cli("train", code, "--init-from", spec, *TINY, "--run-name", "x", ok=False)
        assert result.exit_code == 2 and message in result.output, result.output
    (parent / "best/model.safetensors").write_bytes(b"not a model")
    damaged = run_cli("train", code, "--init-from", "parent/best", *TINY, "--run-name", "x", ok=False)
    assert damaged.exit_code == 2 and "truncated or corrupt" in damaged.output
    assert not (tmp_path / "runs/x").exists()


def test_empty_or_too_short_new_text_is_refused(parent: Path, tmp_path: Path) -> None:
    empty, short = tmp_path / "empty.txt", tmp_path / "short.txt"
    empty.write_text("", encoding="utf-8")
    short.write_text("the end\n" * 9, encoding="utf-8")
    for text, message in ((empty, "input is empty"), (short, "too few for one batch")):
        result = run_cli("train", text, "--init-from", "parent", *TINY, "--run-name", "x", ok=False)
        assert result.exit_code == 2 and message in result.output, result.output
    assert not (tmp_path / "runs/x").exists()
    unk = run_cli("train", short, *TINY, "--unk", "skip", ok=False)
    assert unk.exit_code == 2 and "--unk does not apply to a run without --init-from" in unk.output


def test_a_library_fine_tune_records_the_model_it_trains(small_text: Path, tmp_path: Path) -> None:
    """From Python, with a default TrainConfig, the parent's 1×32 GRU trained while run.json and
    the checkpoint said a 2×512 LSTM."""
    from charrnn.data import PreprocessOptions
    from charrnn.lm.job import TrainJob
    from charrnn.training.reporters import SilentReporter

    run_cli("train", small_text, *TINY, "--cell", "gru", "--max-steps", "2", "--run-name", "p")
    job = TrainJob(tmp_path / "runs")
    parent = job.open_parent("p")
    job.open_device("cpu")
    dataset = job.prepare([str(small_text)], PreprocessOptions(),
                          finetune.given_tokenizer(parent, "add", 0))
    job.start(dataset, TrainConfig(max_steps=2, batch_size=4, seq_len=16, device="cpu"), "ft",
              reporter=SilentReporter(), parent=parent)
    recorded = json.loads((tmp_path / "runs/ft/run.json").read_text())["config"]
    trained = json.loads((tmp_path / "runs/ft/last/checkpoint.json").read_text())["model"]
    assert (recorded["cell"], recorded["layers"], recorded["hidden"]) == ("gru", 1, 32)
    assert (trained["cell"], trained["layers"], trained["hidden"]) == ("gru", 1, 32)


def test_a_typed_split_file_with_a_tilde_is_read_from_home(small_text: Path, tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """--valid=~/v.txt (no shell expansion after '=') became /cwd/~/v.txt once typed split
    files were made absolute."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "v.txt").write_text("the cat sat on the mat.\n" * 20, encoding="utf-8")
    monkeypatch.setenv("HOME", str(home))
    run_cli("train", small_text, "--valid=~/v.txt", *TINY, "--max-steps", "2", "--run-name", "t")


def test_grow_vocab_typed_at_its_default_is_refused_for_a_char_parent(parent: Path, code: Path,
                                                                     tmp_path) -> None:
    """--grow-vocab 0 (its default, typed) went through, where --grow-vocab 5 was refused."""
    result = run_cli("train", code, "--init-from", "parent", *TINY, "--grow-vocab", "0",
                     "--run-name", "g", ok=False)
    assert result.exit_code == 2 and "--grow-vocab applies to word-level runs" in result.output
    assert not (tmp_path / "runs/g").exists()
