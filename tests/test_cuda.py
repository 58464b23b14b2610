"""The CUDA paths end to end, as a user runs them (skipped without a GPU; bench/gpu_suite.sh runs
them on a lent one): fp16 autocast + loss scaling, cuDNN weights saved as CPU copies, resume on
the GPU, a GPU checkpoint read on the CPU, CUDA-graph sampling, the AWD regularisers under cuDNN,
taggers and the fill model on the GPU, and NCCL through torchrun."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers import SMALL_LINES, TINY, run_cli

pytestmark = pytest.mark.cuda


def _records(run: Path, kind: str) -> list[dict]:
    lines = (run / "metrics.jsonl").read_text().splitlines()
    return [r for r in map(json.loads, lines) if r["type"] == kind]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cuda_run_trains_saves_resumes_and_its_checkpoint_serves_the_cpu(small_text, tmp_path, cell):
    # A flat learning rate after warmup (--min-lr-ratio 1), so the cut run's schedule (a 30-step
    # cosine) is the whole run's (a 60-step one), as in tests/test_train.py's resume tests; and no
    # dropout, whose cuDNN state a checkpoint does not hold (the AWD test below trains and resumes
    # with it): the resumed curve then differs from the whole one by fp16 rounding and atomics only.
    args = [small_text, *TINY, "--cell", cell, "--layers", "2", "--device", "cuda", "--log-every", "1",
            "--min-lr-ratio", "1", "--dropout", "0"]
    run_cli("train", *args, "--max-steps", "60", "--run-name", "whole")
    run_cli("train", *args, "--max-steps", "30", "--run-name", "cut")
    run_cli("train", "--resume", "cut", "--max-steps", "60", "--device", "cuda", "--plain")
    whole, cut = _records(tmp_path / "runs/whole", "train"), _records(tmp_path / "runs/cut", "train")
    assert {r["step"]: r["lr"] for r in cut} == pytest.approx({r["step"]: r["lr"] for r in whole})
    whole, cut = ({r["step"]: r["loss"] for r in records} for records in (whole, cut))
    assert all(math.isfinite(v) for v in whole.values()) and whole[60] < whole[1]
    assert sorted(cut) == list(range(1, 61))
    for step in range(31, 61):
        assert cut[step] == pytest.approx(whole[step], rel=0.02, abs=1e-3), step
    state = json.loads((tmp_path / "runs/whole/last/checkpoint.json").read_text())
    assert state["loss_scale"]["scale"] > 0  # fp16 autocast runs with dynamic loss scaling
    cpu = json.loads(run_cli("eval", "whole", "--split", "val", "--device", "cpu", "--json").output)
    gpu = json.loads(run_cli("eval", "whole", "--split", "val", "--device", "cuda", "--json").output)
    assert cpu["nats_per_token"] == pytest.approx(gpu["nats_per_token"], rel=5e-3)  # fp16 on GPU
    text = run_cli("sample", "whole", "--device", "cpu", "--seed", "1", "--length", "40").output
    assert len(text) >= 40


def test_cuda_graph_sampling_is_seeded_streamed_and_batched(small_text, tmp_path):
    run_cli("train", small_text, *TINY, "--cell", "lstm", "--device", "cuda", "--max-steps", "40",
            "--run-name", "g")
    one = ["sample", "g", "--device", "cuda", "--seed", "5", "--length", "200", "--plain"]
    a, b = run_cli(*one).output, run_cli(*one).output
    assert a == b and len(a) >= 200
    other = run_cli("sample", "g", "--device", "cuda", "--seed", "6", "--length", "200").output
    assert other != a
    many = run_cli("sample", "g", "--device", "cuda", "--seed", "5", "--length", "50",
                   "--num-samples", "8").output
    assert len(many) >= 8 * 50
    for mode in (["--greedy"], ["--beam", "4"], ["--top-k", "5"], ["--top-p", "0.9"]):
        assert run_cli("sample", "g", "--device", "cuda", "--length", "30", *mode).output


def test_cuda_awd_regularisers_train_and_resume(small_text, tmp_path):
    awd = ["--cell", "lstm", "--layers", "2", "--weight-drop", "0.3", "--locked-dropout",
           "--embed-drop", "0.1", "--dropout", "0.3", "--tie-weights", "--emb", "16"]
    run_cli("train", small_text, *TINY, *awd, "--device", "cuda", "--max-steps", "30",
            "--run-name", "awd")
    run_cli("train", "--resume", "awd", "--max-steps", "40", "--device", "cuda", "--plain")
    losses = [r["loss"] for r in _records(tmp_path / "runs/awd", "train")]
    assert losses and all(math.isfinite(v) for v in losses)
    assert max(r["step"] for r in _records(tmp_path / "runs/awd", "train")) == 40


def test_cuda_word_and_subword_levels(small_text, tmp_path):
    for name, level in (("w", ["--level", "word"]), ("s", ["--level", "subword", "--vocab-size", "300"])):
        run_cli("train", small_text, *TINY, *level, "--device", "cuda", "--max-steps", "20",
                "--run-name", name)
        result = json.loads(run_cli("eval", name, "--split", "val", "--device", "cuda", "--json").output)
        assert math.isfinite(result["bits_per_char"])


def test_cuda_tagger_and_fill_model(tmp_path):
    corpus = tmp_path / "seg.txt"
    corpus.write_text("\n".join(["我们  喜欢  学习", "今天  天气  很  好"] * 150) + "\n", encoding="utf-8")
    run_cli("tag", "train", corpus, "--format", "segmented", "--hidden", "32", "--emb", "16",
            "--epochs", "3", "--quiet", "--device", "cuda", "--run-name", "seg")
    assert run_cli("tag", "predict", "seg", input="我们喜欢学习\n").output.strip()
    step = json.loads((tmp_path / "runs/seg/last/checkpoint.json").read_text())["progress"]["step"]
    run_cli("tag", "train", "--resume", "seg", "--epochs", "4", "--quiet", "--device", "cuda")
    text = tmp_path / "fill.txt"
    text.write_text("\n".join(SMALL_LINES * 40) + "\n", encoding="utf-8")
    run_cli("train", text, *TINY, "--task", "fill", "--device", "cuda", "--max-steps", "20",
            "--run-name", "mask")
    result = json.loads(run_cli("fill", "the quick ___ fox", "-m", "mask", "--json").output)
    assert result
    run_cli("train", "--resume", "mask", "--max-steps", "30", "--device", "cuda")
    for run, steps in (("seg", step // 3 * 4), ("mask", 30)):  # resumed on the GPU (cuDNN's
        # layout kept), each to its new budget
        saved = json.loads((tmp_path / "runs" / run / "last/checkpoint.json").read_text())
        assert saved["progress"]["step"] == steps


def test_torchrun_on_one_gpu_trains_through_nccl_and_ddp(small_text, tmp_path):
    """One process under torchrun joins an NCCL process group and trains through DDP (a second
    rank on the same GPU is refused by NCCL, so more ranks need a machine with several GPUs)."""
    env = {**os.environ, "CHARRNN_RUNS": str(tmp_path / "runs")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1",
         "--master_port", str(29600 + os.getpid() % 1000), "-m", "charrnn", "train",
         str(small_text), *TINY, "--device", "cuda", "--max-steps", "10", "--run-name", "tr"],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "× 1 process (DDP)" in proc.stdout
    assert (tmp_path / "runs/tr/last/model.safetensors").is_file()


def test_more_torchrun_ranks_than_gpus_is_one_clear_line(small_text, tmp_path):
    import torch

    ranks = torch.cuda.device_count() + 1
    env = {**os.environ, "CHARRNN_RUNS": str(tmp_path / "runs")}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(ranks),
         "--master_port", str(29700 + os.getpid() % 1000), "-m", "charrnn", "train",
         str(small_text), *TINY, "--device", "cuda", "--max-steps", "5", "--run-name", "two"],
        env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0
    # (torchrun adds its own report of a failed child; the rank's own words are one line)
    assert "charrnn: error: ranks 0 and " in proc.stderr and "would share one GPU" in proc.stderr
    assert "Duplicate GPU" not in proc.stderr, proc.stderr
