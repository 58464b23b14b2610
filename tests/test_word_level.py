"""Word level: the adaptive softmax, bfloat16 on the CPU, plain SGD."""

from __future__ import annotations

import io
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from charrnn.lm.config import ModelConfig, SampleOptions
from charrnn.lm.model import RNNLM
from charrnn.lm.plain import SEPARATOR
from charrnn.lm.softmax import cutoffs_from_counts, frequency_order
from helpers import SMALL_LINES, TINY, run_cli

WORDS = ["--level", "word", "--softmax", "adaptive", "--cutoffs", "8,20"]


def _adaptive(tied: bool) -> RNNLM:
    torch.manual_seed(0)
    config = ModelConfig(40, "lstm", 1, 16, 0, 0.0, tied, softmax="adaptive", cutoffs=[8, 20])
    model = RNNLM(config).eval()
    model.head.set_order(torch.randperm(40))  # any order: ids are not ranks
    return model


@pytest.mark.parametrize("tied", [True, False])
def test_adaptive_softmax_is_a_normalised_distribution(tied: bool) -> None:
    model = _adaptive(tied)
    ids = torch.randint(0, 40, (3, 7))
    with torch.no_grad():
        log_p, _ = model(ids)
        nll, _ = model(ids[:, :-1], None, ids[:, 1:])
    assert torch.allclose(log_p.exp().sum(-1), torch.ones(3, 7), atol=1e-5)
    picked = -log_p[:, :-1].gather(-1, ids[:, 1:, None]).reshape(-1)
    assert torch.allclose(nll, picked, atol=1e-5)  # the loss reads the same distribution


def test_tied_adaptive_shortlist_is_the_embedding_of_the_most_frequent_tokens() -> None:
    model = _adaptive(True)
    assert not hasattr(model.head, "shortlist")
    names = [n for n, _ in model.named_parameters()]
    assert "embed.weight" in names and not any("shortlist" in n for n in names)
    counts = np.array([5, 50, 0, 7])
    assert frequency_order(counts).tolist() == [1, 3, 0, 2]


def test_cutoffs_follow_the_training_frequencies() -> None:
    counts = np.array([1000, 500, 200, 100, 50, 30, 10, 5, 3, 1, 1, 1])
    cuts = cutoffs_from_counts(counts, (0.85, 0.97))
    assert cuts == [3, 5] and all(0 < c < len(counts) for c in cuts)
    assert cutoffs_from_counts(np.array([9, 1])) == [1]


@pytest.fixture
def words(tmp_path: Path) -> Path:
    path = tmp_path / "words.txt"
    path.write_text("\n".join(SMALL_LINES * 40) + "\n", encoding="utf-8")
    return path


def test_adaptive_word_run_trains_samples_scores_and_resumes(words: Path, tmp_path: Path) -> None:
    out = run_cli("train", words, *TINY, *WORDS, "--max-steps", "24", "--run-name", "a",
                  "--min-lr-ratio", "1").output
    assert "adaptive softmax [8, 20]" in out
    model = json.loads((tmp_path / "runs/a/best/checkpoint.json").read_text())["model"]
    assert model["softmax"] == "adaptive" and model["cutoffs"] == [8, 20]
    for mode in (["--temp", "0.7", "--seed", "1"], ["--top-k", "3", "--seed", "1"],
                 ["--top-p", "0.8", "--seed", "1"], ["--greedy"], ["--beam", "3"],
                 ["--num-samples", "2", "--seed", "1"]):
        assert run_cli("sample", "a", "--length", "8", *mode).output.strip()
    scored = json.loads(run_cli("eval", "a", "--split", "val", "--json").output)
    assert scored["precision"] == "fp32" and scored["perplexity"] > 1
    from charrnn.runstats import summary

    assert summary(tmp_path / "runs/a")["params"] == scored["params"]  # not the order buffers
    filled = json.loads(run_cli("fill", "the quick ___ fox", "-m", "a", "--json").output)
    assert filled["methods"]["forward"] and sum(f["prob"] for f in filled["methods"]["forward"]) <= 1
    run_cli("train", "--resume", "a", "--max-steps", "30", "--plain")


def test_full_and_adaptive_choose_by_vocabulary_and_device(words: Path) -> None:
    out = run_cli("train", words, *TINY, "--level", "word", "--max-steps", "2").output
    assert "full softmax" in out  # --softmax auto: a few dozen words is no word vocabulary
    refused = run_cli("train", words, *TINY, "--softmax", "full", "--cutoffs", "8", ok=False)
    assert refused.exit_code == 2 and "--cutoffs applies to --softmax adaptive" in refused.output
    bad = run_cli("train", words, *TINY, *WORDS[:-1], "99999", "--max-steps", "2", ok=False)
    assert bad.exit_code == 2 and "--cutoffs must rise strictly" in bad.output


def _measured(monkeypatch, seconds: dict, unavailable: dict | None = None) -> list:
    """This machine's measurement, as given: what the plan decides from it is then the test's."""
    from charrnn.lm import speed

    calls: list = []

    def measure(config, batch, candidates, window=None, threads=0):
        calls.append(candidates)
        return speed.Measurement({k: v for k, v in seconds.items() if k in candidates},
                                   {k: v for k, v in (unavailable or {}).items() if k in candidates})

    monkeypatch.setattr(speed, "measure", measure)
    return calls


def test_precision_auto_is_the_measured_faster_and_the_header_says_by_how_much(
        words: Path, monkeypatch) -> None:
    _measured(monkeypatch, {"fp32 full": 2.0, "bf16 full": 1.0})  # (a GRU: bf16 runs on any CPU)
    out = run_cli("train", words, *TINY, "--cell", "gru", "--max-steps", "2").output
    assert "bf16 (machine: fp32 ran 0.50× the speed of bf16 on this model's step here" in out
    _measured(monkeypatch, {"fp32 full": 1.0, "bf16 full": 2.0})
    out = run_cli("train", words, *TINY, "--max-steps", "2").output
    assert "fp32 (machine: bf16 ran 0.50× the speed of fp32 on this model's step here)" in out
    _measured(monkeypatch, {"fp32 full": 1.0}, {"bf16 full": "could not create a primitive"})
    out = run_cli("train", words, *TINY, "--max-steps", "2").output
    assert "fp32 (machine: bf16 cannot run here (could not create a primitive))" in out
    _measured(monkeypatch, {"fp32 full": 1.0, "bf16 full": 0.95})  # within noise: exact fp32
    assert "fp32 (machine: bf16 ran 1.05× the speed of fp32" in run_cli(
        "train", words, *TINY, "--max-steps", "2").output


def test_typed_precision_is_kept_and_one_this_cpu_cannot_run_is_refused(words: Path,
                                                                        monkeypatch) -> None:
    calls = _measured(monkeypatch, {"fp32 full": 1.0, "bf16 full": 0.5})
    assert "fp32 (typed)" in run_cli("train", words, *TINY, "--max-steps", "2", "--precision",
                                     "fp32").output
    assert calls == []  # nothing left to measure
    gru = run_cli("train", words, *TINY, "--cell", "gru", "--max-steps", "2", "--precision",
                  "bf16").output
    assert "bf16 (typed; the GRU recurrence stays float32 on the CPU" in gru
    _measured(monkeypatch, {}, {"bf16 full": "could not create a primitive descriptor"})
    refused = run_cli("train", words, *TINY, "--precision", "bf16", "--max-steps", "2", ok=False)
    assert refused.exit_code == 2 and "cannot train this model in bf16: could not create" in \
        refused.output and "--precision fp32" in refused.output


def test_train_help_says_what_word_level_takes_instead() -> None:
    from charrnn.plan.rules import RECIPES

    shown = " ".join(run_cli("train", "--help").output.split())
    word = next(r for r in RECIPES if r.name.startswith("word level"))
    assert f"--batch-size {word.values['batch_size']}," in shown and "--no-tie-weights" in shown


def test_bf16_training_resumes_exactly(words: Path, tmp_path: Path) -> None:
    # a GRU: its bf16 layers run on any CPU (oneDNN's bf16 LSTM needs AVX512 or better)
    args = [words, *TINY, "--cell", "gru", "--precision", "bf16", "--log-every", "1",
            "--min-lr-ratio", "1"]
    run_cli("train", *args, "--max-steps", "20", "--run-name", "whole")
    run_cli("train", *args, "--max-steps", "8", "--run-name", "cut")
    run_cli("train", "--resume", "cut", "--max-steps", "20", "--plain")

    def losses(run: str) -> dict:
        lines = (tmp_path / "runs" / run / "metrics.jsonl").read_text().splitlines()
        return {r["step"]: r["loss"] for r in map(json.loads, lines) if r["type"] == "train"}

    whole, cut = losses("whole"), losses("cut")
    assert all(cut[s] == pytest.approx(whole[s], rel=1e-6) for s in range(9, 21))


def test_cutoffs_that_auto_would_not_use_are_refused(small_text: Path, tmp_path: Path) -> None:
    result = run_cli("train", small_text, *TINY, "--cutoffs", "5,10", "--run-name", "c", ok=False)
    assert result.exit_code == 2 and "--softmax auto chose the full softmax" in result.output
    assert not (tmp_path / "runs/c").exists()
    comma = run_cli("train", small_text, *TINY, "--softmax", "adaptive", "--cutoffs", ",", ok=False)
    assert comma.exit_code == 2 and "(e.g. 2000,6000), not ','" in comma.output


@pytest.mark.parametrize("spec", ["10,,20", "10,20,"])
def test_cutoffs_with_an_empty_field_are_refused_not_read_without_it(small_text: Path,
                                                                     spec: str) -> None:
    result = run_cli("train", small_text, *TINY, "--softmax", "adaptive", "--cutoffs", spec,
                     ok=False)
    assert result.exit_code == 2 and f"(e.g. 2000,6000), not '{spec}'" in result.output


# ---- RNN ⊕ n-gram, and per-line scores ----------------------------------------------------------
@pytest.fixture
def pair(words: Path, tmp_path: Path) -> Path:
    """A word LM and a word 3-gram (--lines) counted on the same dataset."""
    run_cli("train", words, *TINY, "--level", "word", "--max-steps", "30", "--run-name", "lm")
    run_cli("ngram", "train", words, "--level", "word", "--order", "3", "--lines",
            "--run-name", "kn")
    return tmp_path / "runs"


def test_mixture_weight_is_tuned_on_val_stored_and_beats_or_ties_both(pair: Path) -> None:
    lm = json.loads(run_cli("eval", "lm", "--split", "test", "--json").output)
    tuning = run_cli("eval", "lm", "--split", "test", "--mix", "kn", "--json")
    assert "tuning λ" in tuning.stderr  # (seconds on a large split: said first)
    mixed = json.loads(tuning.stdout)
    mix = mixed["mix"]
    assert mix["tuned_on"] == "val" and 0 < mix["weight"] < 1 and mixed["kind"] == "mix"
    assert mix["lm_perplexity"] == pytest.approx(lm["perplexity"], rel=1e-6)
    assert mixed["perplexity"] <= min(mix["lm_perplexity"], mix["ngram_perplexity"]) * 1.05
    stored = json.loads((pair / "lm/mixes.json").read_text())
    assert [v["weight"] for v in stored.values()] == [pytest.approx(mix["weight"])]
    given = json.loads(run_cli("eval", "lm", "--split", "test", "--mix", "kn", "--mix-weight",
                               "1", "--json").stdout)
    assert given["perplexity"] == pytest.approx(lm["perplexity"], rel=1e-6)  # λ 1: the RNN alone


def test_a_mixture_weight_that_cannot_be_stored_is_tuned_and_used_all_the_same(pair: Path) -> None:
    (pair / "lm/mixes.json").mkdir()  # as unwritable as a read-only run folder, even for root
    mixed = json.loads(run_cli("eval", "lm", "--split", "test", "--mix", "kn", "--json").stdout)
    assert mixed["mix"]["tuned_on"] == "val" and 0 < mixed["mix"]["weight"] < 1


def test_an_ngram_built_again_under_the_same_name_is_tuned_again(pair: Path, words: Path) -> None:
    first = json.loads(run_cli("eval", "lm", "--split", "test", "--mix", "kn", "--json").stdout)
    shutil.rmtree(pair / "kn")
    run_cli("ngram", "train", words, "--level", "word", "--order", "1", "--lines", "--run-name", "kn")
    again = json.loads(run_cli("eval", "lm", "--split", "test", "--mix", "kn", "--json").stdout)
    assert again["mix"]["weight"] != pytest.approx(first["mix"]["weight"])
    assert len(json.loads((pair / "lm/mixes.json").read_text())) == 2


def test_mix_takes_an_ngram_and_an_ngram_takes_no_lm_options(pair: Path, words: Path) -> None:
    result = run_cli("eval", "lm", "--mix", "lm", ok=False)
    assert result.exit_code == 2 and "--mix lm is a language model run: --mix takes an n-gram" \
        in result.output
    for extra in (["--device", "cpu"], ["--precision", "bf16"], ["--mix-weight", "0.3"],
                  ["--device", "auto"], ["--precision", "fp32"]):  # typed at the default too
        result = run_cli("score", "kn", words, *extra, ok=False)
        assert result.exit_code == 2 and "applies to language model runs; kn is an n-gram run" \
            in result.output, result.output


def test_mixing_needs_the_same_tokenizer(pair: Path, words: Path) -> None:
    run_cli("ngram", "train", words, "--order", "3", "--run-name", "chars")  # char level
    result = run_cli("eval", "lm", "--mix", "chars", ok=False)
    assert result.exit_code == 2 and "--mix chars: its tokenizer (char level" in result.output
    refused = run_cli("eval", "lm", "--mix-weight", "0.5", ok=False)
    assert "--mix-weight applies with --mix" in refused.output


def test_sampling_from_a_mixture_says_it_tunes_and_which_weight_it_uses(pair: Path) -> None:
    """A --mix sample was silent for the seconds λ was tuned, and never said which λ it used."""
    first = run_cli("sample", "lm", "--mix", "kn", "--length", "6", "--seed", "1")
    assert "tuning λ, the RNN's share of its mixture with kn" in first.stderr
    weight = json.loads((pair / "lm/mixes.json").read_text()).popitem()[1]["weight"]
    said = f"mixed per token with kn, λ {weight:.3g} (tuned on the validation text)"
    assert said in first.stderr and "λ" not in first.stdout
    again = run_cli("sample", "lm", "--mix", "kn", "--length", "6", "--seed", "1")
    assert "tuning" not in again.stderr and said in again.stderr
    from rich.console import Console

    from charrnn import checkpoint
    from charrnn.tui.keys import NoKeys
    from charrnn.tui.sample_app import live_sample

    con = Console(file=io.StringIO(), width=120, height=30, force_terminal=True)
    live_sample(checkpoint.resolve("lm", pair), SampleOptions(length=20, seed=1), None, "cpu",
                console=con, keys=NoKeys(), hold=False, mix="kn", root=pair)
    assert f"⊕ kn, λ {weight:.3g}" in con.file.getvalue()


def test_sampling_and_filling_from_the_mixture(pair: Path) -> None:
    for mode in (["--seed", "2"], ["--num-samples", "3", "--seed", "2"], ["--beam", "2"],
                 ["--greedy"]):
        out = run_cli("sample", "lm", "--mix", "kn", "--length", "6", *mode).output
        assert out.strip(), mode
    first = run_cli("sample", "lm", "--mix", "kn", "--length", "12", "--seed", "4").output
    assert first == run_cli("sample", "lm", "--mix", "kn", "--length", "12", "--seed", "4").output
    filled = json.loads(run_cli("fill", "the quick brown ___ jumps", "-m", "lm", "--mix", "kn",
                                "--json").stdout)
    assert "lm⊕kn" in filled["models"].values()
    assert filled["methods"]["forward"][0]["fills"]
    plain = run_cli("fill", "the quick brown ___ jumps", "-m", "lm", "--mix", "kn").output
    assert "forward (lm⊕kn):" in plain
    left = run_cli("fill", "the quick ___ fox", "-m", "lm", "--mix", "kn", "--method", "left",
                   ok=False)
    assert left.exit_code == 2 and "the left method reads only the text before it" in left.output


def test_a_word_prime_reads_unknown_words_as_unk_and_is_shown_as_typed(pair: Path) -> None:
    """The model reads <unk>, the user sees what they typed (it showed "the <unk> quick"), and a
    note says which words were read as <unk>; so in every sampling path."""
    from charrnn import checkpoint
    from charrnn.lm.sample import generate
    from charrnn.runs import runs_root

    typed = "The zyzzyva quick"

    def shown_as_typed(text: str) -> bool:  # then a generated word or a line break
        return text.startswith(typed) and text[len(typed)] in " \n"

    out = run_cli("sample", "lm", "--prime", typed, "--length", "4", "--seed", "1", "--plain")
    assert shown_as_typed(out.stdout)
    assert "2 words of the prime not in the model's vocabulary, read as <unk>: 'The', " \
        "'zyzzyva'" in out.stderr  # this model has no capitals
    refused = run_cli("sample", "lm", "--prime", typed, "--unk", "skip", ok=False)
    assert refused.stderr.startswith("charrnn: error: --unk skip") and "note" not in refused.stderr
    two = run_cli("sample", "lm", "--prime", typed, "--length", "4", "--num-samples", "2",
                  "--seed", "1").stdout.split(SEPARATOR)
    assert len(two) == 2 and all(map(shown_as_typed, two))
    assert shown_as_typed(run_cli("sample", "lm", "--prime", typed, "--length", "2", "--beam",
                                  "2").stdout)
    with_torch: list[str] = []  # the PyTorch sampler, as on a GPU
    generate(checkpoint.resolve("lm", runs_root()), SampleOptions(length=3, seed=1), typed + "\n",
             1, with_torch.append, "cpu")
    assert "".join(with_torch).startswith(typed + "\n")


def test_a_backward_word_sample_ends_with_the_prime_as_typed() -> None:
    from charrnn.lm.plain import encode_prime
    from charrnn.lm.sample import _backward_text
    from charrnn.tokenizers import WordTokenizer

    tok = WordTokenizer.build(["the quick brown fox\n"])
    start = encode_prime(tok, "Zorblax fox", None)
    generated = [tok.index["quick"], tok.index["the"]]  # right to left: the word nearest first
    assert _backward_text(tok, generated, start) == "the quick Zorblax fox"


def test_compare_adds_a_row_for_the_pair(pair: Path, tmp_path: Path) -> None:
    report = json.loads(run_cli("compare", "--json").stdout)
    kinds = {r["run"]: r["kind"] for r in report["results"]}
    assert kinds == {"lm": "lm", "kn": "ngram", "lm ⊕ kn": "mix"}
    assert {r["run"] for r in json.loads(run_cli("compare", "--no-mix", "--json").stdout)
            ["results"]} == {"lm", "kn"}
    run_cli("ngram", "export", "kn", "--arpa", tmp_path / "kn.arpa")
    run_cli("ngram", "import", tmp_path / "kn.arpa", "--run-name", "imported")
    rows = {r["run"]: r for r in json.loads(run_cli("compare", "--json").stdout)["results"]}
    assert rows["lm ⊕ kn"]["train_seconds"] > rows["lm"]["train_seconds"] > 0
    # its size is both models' (it showed the RNN's alone), its sampling speed measured (was "?")
    assert rows["lm ⊕ kn"]["ngram_size"] == rows["kn"]["size"] > 0
    assert rows["lm ⊕ kn"]["sample_tokens_per_s"] > 0
    table = run_cli("compare").output
    assert f"+ {rows['kn']['size']} ngr" in table or "k ngr" in table.split("⊕")[-1]
    assert rows["lm ⊕ imported"]["train_seconds"] is None  # not the LM's alone: unknown


def test_line_scores_add_up_to_the_models_own_scores(pair: Path, words: Path, tmp_path) -> None:
    text = tmp_path / "lines.txt"
    text.write_text("the quick brown fox\nto be or not to be\nzyzzyva quick\n", encoding="utf-8")
    lines = [json.loads(x) for x in run_cli("score", "kn", text, "--json").output.splitlines()]
    total = lines.pop()["total"]
    assert [r["line"] for r in lines] == [1, 2, 3] and lines[2]["oov"] == 1
    ngram = json.loads(run_cli("ngram", "eval", "kn", text, "--json").output)
    assert total["tokens"] == ngram["tokens"] == 15  # 12 words + 3 line breaks (</s>)
    assert total["log10"] * math.log(10) == pytest.approx(-ngram["nats_per_token"] * 15, rel=1e-6)
    rnn = [json.loads(x) for x in run_cli("score", "lm", text, "--json").output.splitlines()]
    assert rnn[-1]["total"]["tokens"] == 15 and all(r["log10"] < 0 for r in rnn[:-1])
    piped = run_cli("score", "lm", "-", "--sort", input=text.read_text()).stdout.splitlines()
    assert [float(x.split("\t")[0]) for x in piped] == pytest.approx(sorted(
        (r["log10"] for r in rnn[:-1]), reverse=True), abs=1e-4)
    mixed = run_cli("score", "lm", text, "--mix", "kn", "--json").stdout.splitlines()
    assert len(mixed) == 4


def test_a_line_the_rnn_scores_equals_its_own_token_probabilities(pair: Path) -> None:
    from charrnn import checkpoint
    from charrnn.lm.model import load_lm
    from charrnn.runs import runs_root

    ckpt = checkpoint.resolve("lm", runs_root())
    model = load_lm(ckpt).eval()
    tok = ckpt.tokenizer
    ids = [tok.line_break_id(), *tok.encode("the quick brown fox").tolist(), tok.line_break_id()]
    with torch.no_grad():
        logits, _ = model(torch.tensor([ids[:-1]]))
    expected = torch.log_softmax(logits[0].float(), -1).gather(1, torch.tensor(ids[1:])[:, None])
    out = run_cli("score", "lm", "-", input="the quick brown fox\n").stdout
    assert float(out.split("\t")[0]) == pytest.approx(float(expected.sum()) / math.log(10), rel=1e-5)


def test_long_lines_are_scored_in_windows_and_groups_with_the_same_figures(pair: Path,
                                                                          monkeypatch) -> None:
    """A 50 MB line was scored in one call, padded beside 31 others: tens of GB, then an
    allocation error. Windows of a few tokens and groups of one line change no figure."""
    from charrnn.evaluation import linescore

    lines = "the quick brown fox\nto be or not to be the quick brown fox to be\nbe\n"
    whole = run_cli("score", "lm", "-", "--json", input=lines).stdout
    monkeypatch.setattr(linescore, "WINDOW", 3)
    monkeypatch.setattr(linescore, "GROUP_CHARS", 20)
    windowed = run_cli("score", "lm", "-", "--json", input=lines).stdout
    for a, b in zip(whole.splitlines(), windowed.splitlines(), strict=True):
        a, b = json.loads(a), json.loads(b)
        a, b = a.get("total", a), b.get("total", b)
        assert a["tokens"] == b["tokens"] and a["log10"] == pytest.approx(b["log10"], abs=1e-5)


def test_an_ngram_word_prime_reads_unknown_words_as_unk_and_shows_them_as_typed(pair: Path) -> None:
    out = run_cli("ngram", "sample", "kn", "--prime", "the zyzzyva quick", "--length", "4",
                  "--seed", "1")
    assert out.stdout.startswith("the zyzzyva quick") and "<unk>" not in out.stdout[:20]
    assert "'zyzzyva'" in out.stderr


def test_a_measurement_no_cpu_could_give_is_taken_again_and_never_cached(monkeypatch,
                                                                        tmp_path) -> None:
    """fp32 47 ms against bf16 1.6 ms (a busy machine's reading) was cached for good: every later
    run of that shape on that machine took its verdict."""
    from charrnn.lm import speed

    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path))  # this test's own measurement cache
    readings = iter([{"fp32 full": 0.047, "bf16 full": 0.0016},   # the busy moment
                     {"fp32 full": 0.040, "bf16 full": 0.0020},   # still busy: not cached
                     {"fp32 full": 0.0020, "bf16 full": 0.0017},  # a quiet one
                     {"fp32 full": 0.0021, "bf16 full": 0.0018}])
    monkeypatch.setattr(speed, "_time_candidates", lambda *args: speed.Measurement(next(readings)))
    config = ModelConfig(vocab_size=40, cell="lstm", layers=1, hidden=64)
    both = {"fp32 full": ("fp32", "full"), "bf16 full": ("bf16", "full")}
    first = speed.measure(config, 4, both)
    assert first.seconds == {"fp32 full": 0.040, "bf16 full": 0.0016} and not first.cached
    second = speed.measure(config, 4, both)  # measured again: nothing was cached
    assert second.seconds == {"fp32 full": 0.0020, "bf16 full": 0.0017} and not second.cached
    assert speed.measure(config, 4, both).cached


def test_a_measurement_taken_again_keeps_no_timing_of_a_setting_found_unavailable(
        monkeypatch, tmp_path) -> None:
    from charrnn.lm import speed

    monkeypatch.setenv("CHARRNN_CACHE", str(tmp_path))  # this test's own measurement cache

    readings = iter([speed.Measurement({"fp32 full": 0.047, "bf16 full": 0.0016}),
                     speed.Measurement({"fp32 full": 0.002}, {"bf16 full": "no bf16 here"})])
    monkeypatch.setattr(speed, "_time_candidates", lambda *args: next(readings))
    config = ModelConfig(vocab_size=40, cell="lstm", layers=1, hidden=64)
    both = {"fp32 full": ("fp32", "full"), "bf16 full": ("bf16", "full")}
    measured = speed.measure(config, 4, both)
    assert measured.seconds == {"fp32 full": 0.002} and "bf16 full" in measured.unavailable


def test_one_slow_bf16_product_does_not_rule_bf16_out(monkeypatch) -> None:
    """The gate broke off after its first pair when bf16 looked 10× slower: one product slowed
    by another process read as a CPU without bf16 arithmetic (0.07× on a Zen 4), cached."""
    import conftest
    import torch

    from charrnn.lm import speed

    # the real gate (conftest makes every machine one without bf16)
    monkeypatch.setattr(speed, "bf16_matmul_speed", conftest.REAL_BF16_MATMUL_SPEED)
    clock = iter([0.0, 0.001, 0.0, 0.05,  # pair 1: fp32 1 ms, bf16 50 ms (a busy moment)
                  0.0, 0.001, 0.0, 0.0008] + [0.0, 0.001, 0.0, 0.0008] * 3)
    monkeypatch.setattr(speed.time, "perf_counter", lambda: next(clock))
    monkeypatch.setattr(torch.Tensor, "__matmul__", lambda x, y: x)
    assert speed.bf16_matmul_speed() == pytest.approx(0.001 / 0.0008)


def test_a_step_too_big_for_memory_in_the_measurement_says_so(monkeypatch) -> None:
    """It said 'this CPU cannot train this model in fp32 … use --precision fp32'."""
    from charrnn.errors import UserError
    from charrnn.lm import speed

    def step(*args):
        def run():
            raise RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: not "
                               "enough memory: you tried to allocate 12800000000 bytes")
        return run

    monkeypatch.setattr(speed, "_step", step)
    config = ModelConfig(vocab_size=40, cell="lstm", layers=1, hidden=8)
    with pytest.raises(UserError, match="one training step of this model at batch_size 4 does "
                                        "not fit in this machine's memory"):
        speed._time_candidates(config, 4, {"fp32 full": ("fp32", "full")}, 16)
