"""sample and eval on a trained tiny model (trained once per session)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch

from charrnn.lm.sample import SEPARATOR, SampleOptions, filter_logits
from helpers import SMALL_LINES, TINY, run_cli


def test_same_seed_same_text_and_other_seed_other_text(tiny_run: Path) -> None:
    a = run_cli("sample", tiny_run, "--seed", "7", "--length", "80").output
    b = run_cli("sample", tiny_run, "--seed", "7", "--length", "80").output
    c = run_cli("sample", tiny_run, "--seed", "8", "--length", "80").output
    assert a == b and a != c and len(a) >= 80


def test_prime_is_printed_first_and_prime_file_works(tiny_run: Path, tmp_path: Path) -> None:
    out = run_cli("sample", tiny_run, "--prime", "the quick", "--length", "10", "--seed", "1").output
    assert out.startswith("the quick") and len(out) >= len("the quick") + 10
    prime = tmp_path / "prime.txt"
    prime.write_text("to be")
    out = run_cli("sample", tiny_run, "--prime-file", prime, "--length", "5", "--seed", "1").output
    assert out.startswith("to be")
    result = run_cli("sample", tiny_run, "--prime-file", tmp_path, ok=False)  # not every file
    assert result.exit_code == 2 and "is not a file: give one text file" in result.output
    # `-`: standard input, as eval and score read it (it said '- does not exist')
    out = run_cli("sample", tiny_run, "--prime-file", "-", "--length", "5", "--seed", "1",
                  input="to be").output
    assert out.startswith("to be")


def test_prime_with_unknown_characters_is_an_error_listing_them(tiny_run: Path) -> None:
    result = run_cli("sample", tiny_run, "--prime", "the Zürich 你", ok=False)
    assert result.exit_code == 2
    for char in ("'Z'", "'ü'", "'你'"):
        assert char in result.output
    ok = run_cli("sample", tiny_run, "--prime", "the Zürich", "--unk", "skip", "--length", "3")
    assert ok.output.startswith("the rich")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--temp", "0"], "--temp must be a positive number"),
        (["--temp", "nan"], "--temp must be a positive number"),
        # (1/temp overflowed: "the model's probabilities are NaN … the checkpoint's weights")
        (["--temp", "1e-45"], "--temp 1e-45 is below 1e-30, where dividing by it overflows"),
        (["--top-p", "1.5"], "--top-p must be in (0, 1), got 1.5"),
        (["--top-k", "0"], "--top-k must be ≥ 1"),
        (["--length", "-1"], "--length must be between 1 and 1,000,000,000,000, got -1"),
        (["--length", str(2**64)], "--length must be between 1 and 1,000,000,000,000"),
        (["--top-k", "100000"], "--top-k 100000 keeps every one of the model's"),  # (it was taken)
        # (a batch past the memory: the kernel's OOM killer ended the process, with no message)
        (["--num-samples", "10000000000", "--plain"], "--num-samples 10,000,000,000 side by side "
                                                      "needs"),
    ],
)
def test_nonsense_sampling_options_are_errors(tiny_run: Path, args, message) -> None:
    result = run_cli("sample", tiny_run, *args, ok=False)
    assert result.exit_code == 2 and message in result.output


def test_greedy_and_beam_are_deterministic_without_seed(tiny_run: Path) -> None:
    for mode in (["--greedy"], ["--beam", "3"]):
        a = run_cli("sample", tiny_run, *mode, "--length", "30").output
        assert a == run_cli("sample", tiny_run, *mode, "--length", "30").output


def test_num_samples_gives_that_many_samples(tiny_run: Path) -> None:
    out = run_cli("sample", tiny_run, "--prime", "X" if False else "the", "--length", "5",
                  "--num-samples", "3", "--seed", "1").output
    assert out.count("the") >= 3


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--beam", "5", "--num-samples", "2"], "--beam searches the most likely text, so "
                                                "--num-samples 2 would print the same text 2 times"),
        (["--greedy", "--num-samples", "3"], "--num-samples 3 would print the same text 3 times"),
        (["--greedy", "--seed", "3"], "--greedy takes no --seed"),
        (["--beam", "3", "--seed", "4"], "--beam takes no --seed"),
        (["--top-k", "1", "--temp", "0.3"], "--top-k 1 ignores --temp"),
        (["--top-k", "1", "--seed", "9"], "--top-k 1 takes no --seed"),
        (["--greedy", "--beam", "3"], "give --greedy or --beam, not both"),
        (["--greedy", "--temp", "0.5"], "--greedy ignores --temp"),
        (["--greedy", "--top-k", "3", "--top-p", "0.9"], "--greedy ignores --top-k / --top-p"),
        (["--beam", "2", "--temp", "0.7"], "--beam ignores --temp"),
    ],
)
def test_conflicting_decoding_options_are_errors(tiny_run: Path, args, message) -> None:
    result = run_cli("sample", tiny_run, *args, "--length", "5", ok=False)
    assert result.exit_code == 2 and message in result.output


def test_a_beam_wider_than_memory_allows_is_refused(tiny_run: Path) -> None:
    """--beam 100000000 crashed: 'internal error: RuntimeError: could not create a primitive'."""
    result = run_cli("sample", tiny_run, "--beam", "100000000", "--length", "5", ok=False)
    assert result.exit_code == 2 and "--beam must be between 1 and 1,024" in result.output
    run_cli("sample", tiny_run, "--beam", "1024", "--length", "2")


def test_a_typed_default_temperature_is_refused_with_greedy(tiny_run: Path) -> None:
    result = run_cli("sample", tiny_run, "--greedy", "--temp", "1.0", "--length", "5", ok=False)
    assert result.exit_code == 2 and "--greedy ignores --temp" in result.output
    run_cli("sample", tiny_run, "--greedy", "--length", "5")  # the default itself: no conflict


def test_a_library_temperature_of_one_does_not_conflict_with_greedy() -> None:
    from charrnn.errors import UserError

    SampleOptions(greedy=True, temperature=1.0).validate()
    with pytest.raises(UserError, match="ignores temperature"):
        SampleOptions(greedy=True, temperature=1.0).validate(given=frozenset({"temperature"}))


def test_checkpoint_asking_for_one_the_run_lacks_is_refused(tiny_run: Path, tmp_path: Path
                                                            ) -> None:
    import shutil

    run = tmp_path / "only-last"
    shutil.copytree(tiny_run, run)
    shutil.rmtree(run / "best")
    result = run_cli("sample", run, "--checkpoint", "best", "--length", "5", "--plain", ok=False)
    assert result.exit_code == 2 and "has no best/ checkpoint (it has last/)" in result.output
    run_cli("sample", run, "--length", "5", "--plain")  # not asked for: the one it has


def test_a_checkpoint_folder_and_checkpoint_asking_for_the_other_one_are_refused(tiny_run: Path
                                                                                 ) -> None:
    for folder, asked in (("last", "best"), ("best", "last")):
        result = run_cli("sample", tiny_run / folder, "--checkpoint", asked, "--length", "5",
                         "--plain", ok=False)
        assert result.exit_code == 2
        assert f"is the run's {folder} checkpoint and --checkpoint asks for {asked}" in result.output
        run_cli("sample", tiny_run / folder, "--checkpoint", folder, "--length", "5", "--plain")
        run_cli("sample", tiny_run / folder, "--length", "5", "--plain")


def test_word_level_sample_separates_the_prime_from_the_first_word(tmp_path: Path) -> None:
    corpus = tmp_path / "words.txt"
    corpus.write_text(" ".join(SMALL_LINES * 30) + "\n", encoding="utf-8")  # one line: few <eos>
    run_cli("train", corpus, "--level", "word", *TINY, "--max-steps", "20", "--run-name", "w")
    vocab = set(" ".join(SMALL_LINES).split()) | {"<unk>"}  # a model may draw <unk>, as any word
    for extra in ([], ["--num-samples", "3"]):  # streamed, and decoded after a batch
        out = run_cli("sample", "w", "--prime", "the quick", "--length", "8", "--seed", "3",
                      *extra).output
        for one in out.split(SEPARATOR):
            assert one.startswith("the quick") and set(one.split()) <= vocab, out


def test_top_k_and_top_p_filters_keep_the_right_tokens() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]]))
    kept = filter_logits(logits, SampleOptions(top_k=2)).isfinite()[0].tolist()
    assert kept == [True, True, False, False]
    kept = filter_logits(logits, SampleOptions(top_p=0.8)).isfinite()[0].tolist()
    assert kept == [True, True, False, False]
    kept = filter_logits(logits, SampleOptions(top_p=0.81)).isfinite()[0].tolist()
    assert kept == [True, True, True, False]


def test_newest_run_is_the_default(tiny_run: Path, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("CHARRNN_RUNS", str(tiny_run.parent))
    assert run_cli("sample", "--seed", "7", "--length", "20").output == \
        run_cli("sample", tiny_run, "--seed", "7", "--length", "20").output


def test_eval_split_json_fields_and_bits_per_char(tiny_run: Path) -> None:
    result = json.loads(run_cli("eval", tiny_run, "--split", "val", "--json").output)
    assert {"run", "kind", "source", "tokens", "chars", "nats_per_token", "perplexity",
            "bits_per_char"} <= set(result)
    assert result["source"] == "split:val" and result["tokens"] == result["chars"]
    assert result["perplexity"] == pytest.approx(math.exp(result["nats_per_token"]))
    assert result["bits_per_char"] == pytest.approx(result["nats_per_token"] / math.log(2))


def test_eval_on_a_file_scores_that_text(tiny_run: Path, tmp_path: Path) -> None:
    text = tmp_path / "other.txt"
    text.write_text("the lazy dog saves nine.\n" * 20)
    result = json.loads(run_cli("eval", tiny_run, text, "--json").output)
    assert result["source"] == str(text) and result["chars"] == len(text.read_text())
    unknown = tmp_path / "unknown.txt"
    unknown.write_text("QQQ the dog\n")
    assert "--unk skip" in run_cli("eval", tiny_run, unknown, ok=False).output
    unknown.write_bytes(b"the dog\r\n")
    assert "'\\r' (the text has Windows line ends: convert it with dos2unix); remove them" in \
        run_cli("eval", tiny_run, unknown, ok=False).output


def test_a_dataset_folder_given_as_the_text_to_score_is_refused(tiny_run: Path, small_text: Path,
                                                                tmp_path: Path) -> None:
    """It was read as text: its meta.json (the .bin files skipped) scored, exit 0."""
    run_cli("preprocess", small_text, "--out", tmp_path / "ds")
    run_cli("ngram", "train", small_text, "--order", "2", "--run-name", "kn")
    for args in (["eval", tiny_run, tmp_path / "ds"], ["ngram", "eval", "kn", tmp_path / "ds"],
                 ["compare", tiny_run, "kn", "--file", tmp_path / "ds"]):
        result = run_cli(*args, ok=False)
        assert result.exit_code == 2 and "is a preprocessed dataset (meta.json, train.bin), " \
            "not text: score" in result.output and "--split" in result.output, args
    for args in (["fill", "eval", tmp_path / "ds", "-m", tiny_run],
                 ["tag", "train", tmp_path / "ds", "--format", "segmented"]):
        result = run_cli(*args, ok=False)
        assert result.exit_code == 2 and "is a preprocessed dataset (meta.json, train.bin), " \
            "not text" in result.output, (args, result.output)


def test_eval_text_output_is_one_readable_line(tiny_run: Path) -> None:
    out = run_cli("eval", tiny_run, "--split", "test").output
    assert "perplexity" in out and "bits/char" in out and len(out.strip().splitlines()) == 1


def test_the_logged_val_loss_is_what_eval_gives_for_the_checkpoint(small_text: Path,
                                                                  tmp_path: Path) -> None:
    run_cli("train", small_text, *TINY, "--precision", "fp32", "--max-steps", "10",
            "--run-name", "v")
    lines = (tmp_path / "runs/v/metrics.jsonl").read_text().splitlines()
    logged = min(r["val_loss"] for r in map(json.loads, lines) if r["type"] == "eval")
    scored = json.loads(run_cli("eval", "v", "--split", "val", "--json").output)
    assert scored["nats_per_token"] == pytest.approx(logged, rel=1e-5)


@pytest.mark.parametrize("args", [
    ["eval", "RUN", "--unk", "skip"], ["eval", "RUN", "--split", "val", "--errors", "replace"],
    ["sample", "RUN", "--unk", "skip", "--length", "5", "--plain"],
    ["compare", "RUN", "--unk", "skip"],
    ["eval", "RUN", "--unk", "error"], ["sample", "RUN", "--unk", "error", "--length", "5"],
    ["eval", "RUN", "--split", "val", "--errors", "strict"],  # (typed at their defaults too)
])
def test_options_for_reading_your_text_are_refused_where_there_is_none(tiny_run: Path,
                                                                       args) -> None:
    """A run's own split and an unprimed sample read no text of the user's: --unk skip and
    --errors replace would change nothing."""
    result = run_cli(*[str(tiny_run) if a == "RUN" else a for a in args], ok=False)
    assert result.exit_code == 2 and "says how to read your text, and there is none here" in \
        result.output


def test_a_library_sampler_refuses_an_empty_prime_and_ids_outside_the_model(tiny_run: Path) -> None:
    """Sampler(...).tokens([]) ended in AttributeError, sample_batch([]) in a dtype error,
    [999] in IndexError, and [-1] was read as the last token."""
    from charrnn import checkpoint
    from charrnn.errors import UserError
    from charrnn.lm.model import load_lm
    from charrnn.lm.sample import Sampler

    model = load_lm(checkpoint.resolve(str(tiny_run), tiny_run.parent), "cpu")
    sampler = Sampler(model, "cpu", SampleOptions(seed=1, length=5))  # a device named, too
    for prime, said in (([], "the prime has no token"), ([999], "prime id 999 is no token"),
                        ([-1], "prime id -1 is no token")):
        with pytest.raises(UserError, match=said):
            sampler.tokens(prime).take_all(5)
        with pytest.raises(UserError, match=said):
            sampler.sample_batch(prime, 2, 5)
    assert len(sampler.sample_batch([0], 2, 5)[1]) == 5


def test_a_library_eval_given_a_file_and_a_split_is_refused(tiny_run: Path, tmp_path: Path) -> None:
    """evaluate_run(file=…, split="val") scored the file and said nothing of the split."""
    from charrnn.errors import UserError
    from charrnn.evaluation.lm import evaluate_run

    held = tmp_path / "held.txt"
    held.write_text("the quick brown fox.\n", encoding="utf-8")
    with pytest.raises(UserError, match="give a FILE or split, not both"):
        evaluate_run(str(tiny_run), tiny_run.parent, file=str(held), split="val", device="cpu")


def test_a_library_generate_refuses_a_top_k_that_keeps_every_token(tiny_run: Path) -> None:
    """The check was the CLI's alone: generate() took a top-k of the whole vocabulary."""
    from charrnn import checkpoint
    from charrnn.errors import UserError
    from charrnn.lm.sample import generate

    ckpt = checkpoint.resolve(str(tiny_run), tiny_run.parent)
    vocab = ckpt.tokenizer.vocab_size
    with pytest.raises(UserError, match=f"^top_k {vocab} keeps every one"):
        generate(ckpt, SampleOptions(length=5, top_k=vocab), None, 1, lambda text: None, "cpu")


def test_eval_in_parallel_rows_is_the_sequential_likelihood(tiny_run: Path, monkeypatch) -> None:
    """Rows after the first started mid-text from a zero state, so their first targets scored
    worse than one sequential read would (PTB: perplexity 2758 for 2718): each row now reads the
    text before it first, unscored. Two rows and a read-in as long as the first row: the second
    row has read all the text before it, so the figures are the sequential ones exactly."""
    import numpy as np

    from charrnn import checkpoint
    from charrnn.lm import scoring
    from charrnn.lm.model import load_lm

    ckpt = checkpoint.resolve(str(tiny_run), tiny_run.parent)
    model = load_lm(ckpt, "cpu")
    ids = ckpt.tokenizer.encode("\n".join(SMALL_LINES * 20) + "\n")
    monkeypatch.setattr(scoring, "BURN_IN", len(ids))
    cpu = torch.device("cpu")
    one = scoring.token_nll(model, ids, cpu, streams=1, seq_len=64)
    rows = scoring.token_nll(model, ids, cpu, streams=2, seq_len=64)
    cold = scoring.token_nll(model, ids, cpu, streams=2, seq_len=64, burn_in=False)
    assert len(rows) == len(one) == len(ids) - 1
    np.testing.assert_allclose(rows, one, rtol=1e-5, atol=1e-5)
    assert not np.allclose(cold, one, rtol=1e-5, atol=1e-5)  # (what a zero state gave)


def test_a_long_prime_is_scored_at_its_last_position_only(monkeypatch) -> None:
    """The torch path (--num-samples, --beam, --mix) computed scores at every prime position: a
    300 KB prime of a 3,000-piece model peaked at 1.3 GB."""
    from charrnn.lm.config import ModelConfig
    from charrnn.lm.fastpath import make_stepper
    from charrnn.lm.model import RNNLM

    torch.manual_seed(0)
    model = RNNLM(ModelConfig(300, "gru", layers=1, hidden=16)).eval()
    ids = list(range(300)) * 3
    with torch.inference_mode():
        whole = model(torch.tensor([ids]))[0][:, -1]
    read = []
    real = model.scores
    monkeypatch.setattr(model, "scores", lambda features: read.append(features.shape[1]) or
                        real(features))
    with torch.inference_mode():
        primed = make_stepper(model, torch.device("cpu")).prime(ids, 2)
    assert read == [1] and torch.allclose(primed, whole.expand(2, -1), atol=1e-6)


def test_command_line_text_that_is_not_utf8_is_named_so(tiny_run: Path) -> None:
    """A prime or fill TEXT with bytes that are not UTF-8 (a latin1 terminal) was read as
    unknown characters '\\udce7', a model's problem, not the input's."""
    bad = "Fi\udce7"  # what Python makes of the bytes b"Fi\xe7" in argv
    result = run_cli("sample", tiny_run, "--prime", bad, "--length", "3", ok=False)
    assert result.exit_code == 2 and "--prime is not UTF-8 text (byte 0xE7 after 'Fi')" in \
        result.output
    result = run_cli("fill", bad + " ___", "-m", tiny_run, ok=False)
    assert result.exit_code == 2 and "TEXT is not UTF-8 text (byte 0xE7" in result.output


def _control_bytes(text: str) -> list[str]:
    import unicodedata

    return [c for c in text if unicodedata.category(c) == "Cc" and c not in "\n\t"]


def test_a_subword_run_never_samples_a_piece_its_text_did_not_hold(small_text: Path,
                                                                   tmp_path: Path) -> None:
    """The byte pieces of a subword vocabulary that the text never held kept some probability:
    a young model at --temp 2 wrote ESC, NUL and other control bytes to the terminal."""
    root = tmp_path / "runs"
    run_cli("train", small_text, *TINY, "--max-steps", "20", "--level", "subword",
            "--vocab-size", "300", "--out", root, "--run-name", "sw")
    meta = json.loads((root / "sw" / "best" / "checkpoint.json").read_text())
    assert len(meta["dataset"]["unseen"]) > 100  # (most byte pieces)
    for extra in ([], ["--num-samples", "2"]):  # the torch-free stream, and PyTorch's model
        text = run_cli("sample", root / "sw", "--length", "3000", "--temp", "2", "--seed", "1",
                       "--plain", *extra).stdout
        assert len(text) > 1000 and not _control_bytes(text), _control_bytes(text)[:5]
    run_cli("ngram", "train", small_text, "--order", "3", "--level", "subword", "--vocab-size",
            "300", "--out", root, "--run-name", "kn")  # mixed: its own unseen share left out
    text = run_cli("sample", root / "sw", "--length", "3000", "--temp", "2", "--seed", "1",
                   "--plain", "--mix", "kn", "--mix-weight", "0.5", "--out", root).stdout
    assert len(text) > 1000 and not _control_bytes(text), _control_bytes(text)[:5]
    run_cli("train", small_text, *TINY, "--max-steps", "20", "--level", "subword",
            "--vocab-size", "300", "--softmax", "adaptive", "--cutoffs", "100,200", "--out", root,
            "--run-name", "swa")  # (the adaptive head: a subword vocabulary of 5,000 or more)
    text = run_cli("sample", root / "swa", "--length", "3000", "--temp", "2", "--seed", "1",
                   "--plain").stdout
    assert len(text) > 1000 and not _control_bytes(text), _control_bytes(text)[:5]
    run_cli("train", "--resume", root / "sw", "--max-steps", "25")
    resumed = json.loads((root / "sw" / "last" / "checkpoint.json").read_text())
    assert resumed["dataset"]["unseen"] == meta["dataset"]["unseen"]
    run_cli("train", small_text, *TINY, "--max-steps", "5", "--init-from", root / "sw",
            "--out", root, "--run-name", "ft")  # what neither its parent's text nor this held
    assert json.loads((root / "ft" / "best" / "checkpoint.json").read_text()
                      )["dataset"]["unseen"] == meta["dataset"]["unseen"]  # (the same text)
