"""cuDNN's weight layout, emulated on the CPU: every RNN weight a view of one flat buffer.

On CUDA, `nn.RNNBase.flatten_parameters` (run when the module is built and after every move) packs
the weights into one buffer and makes each parameter a view of it:

    flat  [ weight_ih_l0 | weight_hh_l0 | bias_ih_l0 | bias_hh_l0 | weight_ih_l1 | … ]
             ▲ views ▲

A loader that replaces tensors, or one that refuses tensors sharing storage (safetensors'
`load_model`), fails there. The fixture below gives CPU modules the same layout, so that the real
command line — train, --resume, --init-from, sample, eval — is checked against it on any machine.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from torch import nn

from helpers import TINY, flatten_like_cudnn, run_cli

assert TINY[:4] == ["--hidden", "32", "--layers", "1"]  # the shape: a fine-tuned run keeps its own


@pytest.fixture
def cudnn_layout(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(nn.RNNBase, "flatten_parameters", flatten_like_cudnn)


def _shares_one_buffer(run: Path) -> None:
    """The fixture is in force: a model built now has its RNN weights in one buffer."""
    from charrnn import checkpoint
    from charrnn.lm.model import load_lm

    rnn = load_lm(checkpoint.resolve(str(run), run.parent)).rnn
    pointers = {w.untyped_storage().data_ptr() for w in rnn._flat_weights}
    assert len(pointers) == 1


def _losses(run: Path) -> dict[int, float]:
    records = map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
    return {r["step"]: r["loss"] for r in records if r["type"] == "train"}


CASES = {  # every cell, tying and softmax, in four runs
    "lstm-tied-full": ["--cell", "lstm", "--tie-weights", "--softmax", "full"],
    "lstm-untied-adaptive": ["--cell", "lstm", "--no-tie-weights", "--softmax", "adaptive"],
    "gru-tied-adaptive": ["--cell", "gru", "--tie-weights", "--softmax", "adaptive"],
    "gru-untied-full": ["--cell", "gru", "--no-tie-weights", "--softmax", "full"],
}


@pytest.mark.parametrize("case", CASES)
def test_resume_and_init_from_work_with_rnn_weights_in_one_buffer(
        cudnn_layout, small_text: Path, tmp_path: Path, case: str) -> None:
    # A flat lr after warmup (--min-lr-ratio 1): the cut run's schedule is the whole run's.
    args = [small_text, *TINY, *CASES[case], "--layers", "2", "--log-every", "1",
            "--min-lr-ratio", "1", "--precision", "fp32"]
    run_cli("train", *args, "--max-steps", "24", "--run-name", "whole")
    run_cli("train", *args, "--max-steps", "10", "--run-name", "cut")
    _shares_one_buffer(tmp_path / "runs/cut")
    run_cli("train", "--resume", "cut", "--max-steps", "24", "--plain")
    whole, cut = _losses(tmp_path / "runs/whole"), _losses(tmp_path / "runs/cut")
    assert sorted(cut) == list(range(1, 25))
    for step in range(11, 25):
        assert cut[step] == pytest.approx(whole[step], rel=1e-5, abs=1e-6), step
    run_cli("train", small_text, *TINY[4:], "--init-from", "whole", "--max-steps", "6",
            "--run-name", "child")
    child = json.loads(run_cli("eval", "child", "--split", "val", "--json").output)
    assert child["bits_per_char"] > 0
    assert run_cli("sample", "child", "--length", "20", "--seed", "1", "--plain").output
