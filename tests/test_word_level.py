"""Word level: the adaptive softmax, bfloat16 on the CPU, plain SGD."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from charrnn.lm.config import ModelConfig
from charrnn.lm.model import RNNLM
from charrnn.lm.softmax import AdaptiveSoftmax, cutoffs_from_counts, frequency_order
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
    for mode in (["--temp", "0.7"], ["--top-k", "3"], ["--top-p", "0.8"], ["--greedy"],
                 ["--beam", "3"], ["--num-samples", "2"]):
        assert run_cli("sample", "a", "--length", "8", "--seed", "1", *mode).output.strip()
    scored = json.loads(run_cli("eval", "a", "--split", "val", "--json").output)
    assert scored["precision"] == "fp32" and scored["perplexity"] > 1
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


def test_the_run_header_says_what_precision_was_chosen(words: Path) -> None:
    from charrnn.devices import cpu_bf16

    out = run_cli("train", words, *TINY, "--max-steps", "2").output
    expected = f"bf16 (auto: this CPU has {cpu_bf16()})" if cpu_bf16() else "fp32 (auto: no bf16"
    assert expected in out
    assert "fp32 (asked for)" in run_cli("train", words, *TINY, "--max-steps", "2", "--precision",
                                         "fp32").output


def test_bf16_training_resumes_exactly(words: Path, tmp_path: Path) -> None:
    args = [words, *TINY, "--precision", "bf16", "--log-every", "1", "--min-lr-ratio", "1"]
    run_cli("train", *args, "--max-steps", "20", "--run-name", "whole")
    run_cli("train", *args, "--max-steps", "8", "--run-name", "cut")
    run_cli("train", "--resume", "cut", "--max-steps", "20", "--plain")

    def losses(run: str) -> dict:
        lines = (tmp_path / "runs" / run / "metrics.jsonl").read_text().splitlines()
        return {r["step"]: r["loss"] for r in map(json.loads, lines) if r["type"] == "train"}

    whole, cut = losses("whole"), losses("cut")
    assert all(cut[s] == pytest.approx(whole[s], rel=1e-6) for s in range(9, 21))
