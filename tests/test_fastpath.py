"""The fused CPU decoding step computes exactly what the model's forward computes."""

from __future__ import annotations

import inspect

import pytest
import torch

from charrnn.lm.config import ModelConfig
from charrnn.lm.cpustream import CPUStream
from charrnn.lm.fastpath import FusedCPUStepper, ModuleStepper
from charrnn.lm.model import RNNLM


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
    from charrnn.lm import sample

    torch.manual_seed(0)
    model = RNNLM(ModelConfig(20, "lstm", layers=2, hidden=16))
    opts = sample.SampleOptions(greedy=True, seed=0)
    single = sample.Sampler(model, torch.device("cpu"), opts).stream([3, 4])
    expected = [next(single)[0] for _ in range(25)]
    rows = sample.Sampler(model, torch.device("cpu"), opts).sample_batch([3, 4], 3, 25)
    assert rows == [expected] * 3


def test_the_pytorch_engine_uses_the_fused_step_on_cpu(monkeypatch) -> None:
    from charrnn.lm import sample

    model = RNNLM(ModelConfig(10, "lstm", layers=1, hidden=8))
    used = []
    real = sample.make_stepper
    monkeypatch.setattr(sample, "make_stepper", lambda m, d: used.append(real(m, d)) or used[-1])
    stream = sample.Sampler(model, torch.device("cpu"), sample.SampleOptions(seed=1),
                            compiled=False).stream([0])
    [next(stream) for _ in range(5)]
    assert isinstance(used[0], FusedCPUStepper)


def _engine(device: str, compiled: bool = True):
    """The chunk engine the sampler would pick for `device` (a CPU generator: the CUDA parts that
    run are faked or refused before they touch a GPU)."""
    from charrnn.lm import sample

    model = RNNLM(ModelConfig(10, "gru", layers=1, hidden=8))
    return sample.make_engine(model, torch.device(device), sample.SampleOptions(seed=0), 1,
                              torch.Generator(), 8, compiled=compiled)


def test_cuda_graph_capture_failure_falls_back_to_the_module(monkeypatch) -> None:
    from charrnn.lm import chunks, cudagraph

    def no_capture(self, *args, **kwargs):
        raise RuntimeError("CUDA graphs are not supported here")

    monkeypatch.setattr(cudagraph.GraphEngine, "__init__", no_capture)
    engine = _engine("cuda")
    assert isinstance(engine, chunks.StepEngine) and isinstance(engine.stepper, ModuleStepper)
    assert isinstance(_engine("cpu"), CPUStream)  # one CPU stream: NumPy and the kernel
    assert isinstance(_engine("cpu", compiled=False).stepper, FusedCPUStepper)


def test_cuda_graph_fallback_says_so_once_on_stderr(monkeypatch, capsys) -> None:
    """The fallback is slower, not wrong: one line on stderr per process, with the reason."""
    from charrnn.lm import cudagraph, fastpath

    def no_capture(self, *args, **kwargs):
        try:
            raise RuntimeError("CUDA error: operation not permitted when stream is capturing\n"
                               "CUDA kernel errors might be asynchronously reported")
        except RuntimeError as exc:  # what capture_end raises after a refused kernel says less
            raise RuntimeError("CUDA error: operation failed due to a previous error") from exc

    monkeypatch.setattr(fastpath, "_graphs_off_said", False, raising=False)
    monkeypatch.setattr(cudagraph.GraphEngine, "__init__", no_capture)
    for _ in range(3):
        assert isinstance(_engine("cuda:0").stepper, ModuleStepper)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 1 and "CUDA-graph sampling is off" in lines[0], lines
    assert "RuntimeError: CUDA error: operation not permitted when stream is capturing" in lines[0]


class _FakeStream:
    """Just enough of torch.cuda.Stream for torch's own StreamContext and torch.cuda.graph."""

    def __init__(self, name: str) -> None:
        self.name, self.device = name, torch.device("cuda", 0)

    def wait_stream(self, other) -> None:
        pass

    def __repr__(self) -> str:
        return f"<stream {self.name}>"


@pytest.mark.parametrize("fails_in", ["capture_begin", "capture_end"])
def test_failed_cuda_graph_capture_restores_the_current_stream(monkeypatch, capsys, fails_in) -> None:
    """torch.cuda.graph (the real one) makes the side stream current on enter and ends the capture
    before restoring it on exit: a capture_begin or capture_end that raises left the side stream
    current for the rest of the process. The CUDA calls below it are faked (streams, graph, device);
    the model itself (and the chunk's warm-up) runs on the CPU."""
    from charrnn.lm import cudagraph, fastpath

    default = _FakeStream("default")
    current = {"stream": default}
    registered = []

    class FakeGraph:
        def register_generator_state(self, generator) -> None:
            registered.append(generator)

        def capture_begin(self, *pool, **options) -> None:
            if fails_in == "capture_begin":
                raise RuntimeError("CUDA error: capture not supported")

        def capture_end(self) -> None:
            if fails_in == "capture_end":
                raise RuntimeError("CUDA error: operation failed due to a previous error")

    monkeypatch.setattr(fastpath, "_graphs_off_said", False, raising=False)
    monkeypatch.setattr(cudagraph, "cuda_device", lambda device: torch.device("cpu"))
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", lambda device: None)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: None)
    monkeypatch.setattr(torch._C, "_host_emptyCache", lambda: None, raising=False)
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: _FakeStream("side"))
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: current["stream"])
    monkeypatch.setattr(torch.cuda, "set_stream", lambda stream: current.update(stream=stream))
    monkeypatch.setattr(torch.cuda, "CUDAGraph", FakeGraph)
    engine = _engine("cuda:0")
    assert isinstance(engine.stepper, ModuleStepper)
    assert current["stream"] is default
    assert len(registered) == 1  # the sampler's own generator, registered before the capture
    assert "CUDA-graph sampling is off" in capsys.readouterr().err


def test_training_preview_never_captures_a_cuda_graph(monkeypatch) -> None:
    from charrnn.lm import cudagraph, sample
    from charrnn.lm.preview import preview_text
    from charrnn.tokenizers import CharTokenizer

    captured, asked = [], []
    monkeypatch.setattr(cudagraph.GraphEngine, "__init__", lambda *a, **k: captured.append(a))
    assert isinstance(_engine("cuda", compiled=False).stepper, ModuleStepper)
    assert captured == []
    real = sample.make_engine
    monkeypatch.setattr(sample, "make_engine", lambda *a, **k: asked.append(
        inspect.signature(real).bind(*a, **k).arguments["compiled"]) or real(*a, **k))
    tokenizer = CharTokenizer.build(["abcdefgh\n"])
    preview_text(RNNLM(ModelConfig(tokenizer.vocab_size, "gru", layers=1, hidden=8)),
                 torch.device("cpu"), tokenizer, tokens=5)
    assert asked == [False]


def test_graph_engine_gives_set_device_an_indexed_device(monkeypatch) -> None:
    """torch.cuda.set_device refuses plain "cuda" with a ValueError, which no fallback catches:
    every GPU sample crashed. Checked on the CPU up to the first CUDA call."""
    seen = []

    def set_device(device):
        seen.append(device)
        torch.cuda._utils._get_device_index(device)  # what the real one does first
        raise RuntimeError("no GPU here: stop before the first CUDA call")

    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    monkeypatch.setattr(torch.cuda, "set_device", set_device)
    assert isinstance(_engine("cuda").stepper, ModuleStepper)
    assert seen == [torch.device("cuda", 0)]


@pytest.mark.parametrize("name", ["cuda", "auto", "cuda:1"])
def test_resolved_cuda_device_always_has_an_index(monkeypatch, name: str) -> None:
    from charrnn.devices import resolve_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    expected = 1 if name == "cuda:1" else 0
    assert resolve_device(name) == torch.device("cuda", expected)
