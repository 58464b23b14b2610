"""The fused CPU decoding step computes exactly what the model's forward computes."""

from __future__ import annotations

import pytest
import torch

from charrnn.fastpath import FusedCPUStepper, ModuleStepper
from charrnn.models import RNNLM, ModelConfig


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
@pytest.mark.parametrize("tie", [False, True])
def test_fused_cpu_step_matches_module_forward(cell: str, tie: bool) -> None:
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(50, cell, layers=3, hidden=24, emb=16, dropout=0.3, tie_weights=tie))
    model.eval()
    fused, plain = FusedCPUStepper(model), ModuleStepper(model, torch.device("cpu"))
    torch.testing.assert_close(fused.prime([1, 2, 3]), plain.prime([1, 2, 3]))
    for token in (4, 0, 49, 7, 7, 3):
        torch.testing.assert_close(fused.step(token), plain.step(token), atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("cell", ["lstm", "gru", "rnn"])
def test_batched_fused_step_matches_module_forward_row_by_row(cell: str) -> None:
    torch.manual_seed(0)
    model = RNNLM(ModelConfig(30, cell, layers=2, hidden=16)).eval()
    fused, plain = FusedCPUStepper(model), ModuleStepper(model, torch.device("cpu"))
    torch.testing.assert_close(fused.prime([5, 6], batch=4), plain.prime([5, 6], batch=4))
    for tokens in ([1, 2, 3, 4], [0, 0, 29, 7], [9, 8, 7, 6]):
        step = torch.tensor(tokens)
        torch.testing.assert_close(fused.step(step), plain.step(step), atol=1e-5, rtol=1e-5)


def test_batched_greedy_sampling_gives_the_single_stream_text_in_every_row() -> None:
    from charrnn import sample

    torch.manual_seed(0)
    model = RNNLM(ModelConfig(20, "lstm", layers=2, hidden=16))
    opts = sample.SampleOptions(greedy=True, seed=0)
    single = sample.Sampler(model, torch.device("cpu"), opts).stream([3, 4])
    expected = [next(single)[0] for _ in range(25)]
    rows = sample.Sampler(model, torch.device("cpu"), opts).sample_batch([3, 4], 3, 25)
    assert rows == [expected] * 3


def test_sampler_uses_the_fused_path_on_cpu(monkeypatch) -> None:
    from charrnn import sample

    model = RNNLM(ModelConfig(10, "lstm", layers=1, hidden=8))
    used = []
    real = sample.make_stepper
    monkeypatch.setattr(sample, "make_stepper", lambda m, d, b=1: used.append(real(m, d, b)) or used[-1])
    stream = sample.Sampler(model, torch.device("cpu"), sample.SampleOptions(seed=1)).stream([0])
    [next(stream) for _ in range(5)]
    assert isinstance(used[0], FusedCPUStepper)


def test_cuda_graph_capture_failure_falls_back_to_the_module(monkeypatch) -> None:
    from charrnn import fastpath

    def no_capture(self, model, device, batch=1):
        raise RuntimeError("CUDA graphs are not supported here")

    monkeypatch.setattr(fastpath.CUDAGraphStepper, "__init__", no_capture)
    model = RNNLM(ModelConfig(10, "gru", layers=1, hidden=8))
    stepper = fastpath.make_stepper(model, torch.device("cuda"))
    assert isinstance(stepper, ModuleStepper)
    assert isinstance(fastpath.make_stepper(model, torch.device("cpu")), FusedCPUStepper)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_cuda_graph_step_matches_module_forward(cell: str) -> None:
    from charrnn.fastpath import CUDAGraphStepper

    device = torch.device("cuda")
    model = RNNLM(ModelConfig(50, cell, layers=2, hidden=32)).to(device).eval()
    for batch in (1, 8):
        graph, plain = CUDAGraphStepper(model, device, batch), ModuleStepper(model, device)
        torch.testing.assert_close(graph.prime([1, 2, 3], batch), plain.prime([1, 2, 3], batch))
        for token in (4, 0, 49, 7):
            step = torch.full((batch,), token, device=device)
            torch.testing.assert_close(graph.step(step).clone(), plain.step(step), atol=1e-4,
                                       rtol=1e-4)
