"""The CUDA-graph chunk engine on a real GPU (skipped without one; the `cuda` marker): K steps in
one graph give what the model gives step by step, a seed replays, the surplus, stops, NaN rows
and the live view's stats behave as on the CPU (tests/test_sampling_chunks.py), and the whole
command streams from the graph."""

from __future__ import annotations

import pytest
import torch

from charrnn.errors import UserError
from charrnn.lm.config import ModelConfig
from charrnn.lm.cudagraph import GraphEngine
from charrnn.lm.fastpath import ModuleStepper
from charrnn.lm.model import RNNLM
from charrnn.lm.sample import SampleOptions, Sampler
from helpers import TINY, run_cli

pytestmark = pytest.mark.cuda


def gpu_model(cell: str = "lstm", vocab: int = 50) -> RNNLM:
    torch.manual_seed(0)
    return RNNLM(ModelConfig(vocab, cell, layers=2, hidden=32)).to("cuda").eval()


def graph_stream(net: RNNLM, opts: SampleOptions, streams: int = 1, chunk: int = 16,
                 stats: bool = False):
    sampler = Sampler(net, torch.device("cuda"), opts, chunk=chunk)
    stream = sampler.tokens([1, 2, 3], streams, stats)
    assert isinstance(stream.engine, GraphEngine)
    return stream


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("streams", [1, 8])
def test_greedy_through_the_graph_is_the_module_step_by_step(cell: str, streams: int) -> None:
    net = gpu_model(cell)
    ids = graph_stream(net, SampleOptions(greedy=True), streams).take_all(40)
    plain = ModuleStepper(net, torch.device("cuda"))
    scores = plain.prime([1, 2, 3], streams)
    expected = []
    for _ in range(40):
        token = scores.argmax(-1)
        expected.append(token)
        scores = plain.step(token)
    assert torch.equal(ids, torch.stack(expected, 1).cpu())


def test_a_seeded_graph_sampler_replays_and_another_seed_differs() -> None:
    net = gpu_model()
    for opts in (SampleOptions(seed=7), SampleOptions(seed=7, top_k=5, temperature=0.8),
                 SampleOptions(seed=7, top_p=0.9)):
        a = graph_stream(net, opts, 4).take_all(100)
        assert torch.equal(a, graph_stream(net, opts, 4).take_all(100))
        other = SampleOptions(**{**opts.__dict__, "seed": 8})
        assert not torch.equal(a, graph_stream(net, other, 4).take_all(100))


def test_the_surplus_and_a_stop_mid_chunk_on_the_graph() -> None:
    net, cuda = gpu_model(), torch.device("cuda")
    whole = graph_stream(net, SampleOptions(seed=3)).take_all(52)
    stream = graph_stream(net, SampleOptions(seed=3))
    parts = [stream.take(n).ids for n in (5, 100, 100, 100, 4)]
    assert [p.size(1) for p in parts] == [5, 11, 16, 16, 4]
    handed = torch.cat(parts, 1)
    assert torch.equal(handed, whole)
    stream.stop()  # 12 tokens of this chunk left over and the next one running ahead: dropped
    reference = ModuleStepper(net, cuda)
    reference.prime([1, 2, 3])
    for token in handed[0].tolist():
        scores = reference.step(token)
    torch.testing.assert_close(stream.engine.scores[0], scores, atol=1e-4, rtol=1e-4)
    assert stream.take(100).ids.size(1) == 16  # a new chunk from there


def test_a_new_temperature_between_chunks_on_the_graph() -> None:
    opts = SampleOptions(seed=1)
    stream = graph_stream(gpu_model(), opts)
    stream.take(3)
    opts.temperature = 0.25
    assert stream.take(100).ids.size(1) == 16 and float(stream.engine.inv_temp) == 4.0


def test_nan_on_the_graph_is_one_error_and_the_context_survives() -> None:
    net = gpu_model()
    with torch.no_grad():
        net.head.bias.fill_(float("nan"))
    for opts in (SampleOptions(seed=0), SampleOptions(greedy=True)):
        with pytest.raises(UserError, match="probabilities are not finite at generated token 1:"):
            graph_stream(net, opts).take(5)
    assert torch.ones(3, device="cuda").sum().item() == 3.0  # no device-side assert


def test_graph_stats_match_the_cpu_engine_on_the_same_tokens() -> None:
    from charrnn.lm.decode import token_stats

    net = gpu_model()
    chunk = graph_stream(net, SampleOptions(greedy=True), stats=True).take(16)
    plain = ModuleStepper(net, torch.device("cuda"))
    scores = plain.prime([1, 2, 3])
    rows = []
    for token in chunk.ids[0].tolist():
        rows.append(scores[0].float())
        scores = plain.step(torch.tensor([token], device="cuda"))
    expected = token_stats(torch.stack(rows), chunk.ids[0].cuda()).cpu()
    torch.testing.assert_close(chunk.stats[0], expected, atol=1e-4, rtol=1e-4)


def test_cli_streams_exact_lengths_from_the_graph(small_text, tmp_path) -> None:
    run_cli("train", small_text, *TINY, "--cell", "lstm", "--device", "cuda", "--max-steps", "20",
            "--run-name", "g")
    for length in ("1", "65", "200"):
        out = run_cli("sample", "g", "--device", "cuda", "--seed", "5", "--length", length,
                      "--plain").output
        assert len(out) == int(length) + 1  # char level: one character a token, then "\n"
