"""Sampling K tokens per call: the decoding maths, exact lengths, the surplus of a chunk, a stop
mid-chunk, seeds across chunk sizes and NaN rows. The CPU engine runs the same functions and the
same host logic as the CUDA graph (tests/test_cuda_sampling.py checks the graph itself)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from charrnn.errors import UserError
from charrnn.lm.config import ModelConfig
from charrnn.lm.decode import checked, gumbel_noise, pick, shape_scores, token_stats
from charrnn.lm.fastpath import ModuleStepper
from charrnn.lm.model import RNNLM
from charrnn.lm.sample import SampleOptions, Sampler
from charrnn.lm.tokenstream import TokenStream
from helpers import run_cli

CPU = torch.device("cpu")


def model(vocab: int = 20, cell: str = "lstm") -> RNNLM:
    torch.manual_seed(0)
    return RNNLM(ModelConfig(vocab, cell, layers=2, hidden=16)).eval()


def ids_of(opts: SampleOptions, chunk: int, length: int, net: RNNLM | None = None) -> list[int]:
    stream = Sampler(net or model(), CPU, opts, chunk=chunk).tokens([1, 2])
    return stream.take_all(length)[0].tolist()


# ---- the decoding maths ------------------------------------------------------------------------
def test_gumbel_max_draws_each_token_with_its_probability() -> None:
    logits = torch.tensor([2.0, 1.0, 0.0, -1.0, -3.0])
    draws = 40_000
    noise = gumbel_noise(torch.Generator().manual_seed(0), (draws, 5), CPU)
    _, ids = pick(shape_scores(logits.expand(draws, -1), 1 / 0.7, None, None), noise)
    seen = torch.bincount(ids, minlength=5).double() / draws
    expected = torch.softmax(logits.double() / 0.7, 0)
    sigma = (expected * (1 - expected) / draws).sqrt()
    assert ((seen - expected).abs() <= 5 * sigma + 1e-9).all(), (seen, expected)


def test_noise_drawn_as_one_block_is_the_noise_drawn_step_by_step() -> None:
    """What makes a CPU seed's text independent of the chunk size."""
    block = gumbel_noise(torch.Generator().manual_seed(3), (6, 2, 7), CPU)
    generator = torch.Generator().manual_seed(3)
    steps = torch.stack([gumbel_noise(generator, (2, 7), CPU) for _ in range(6)])
    assert torch.equal(block, steps)


def test_filtered_tokens_are_never_drawn() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(5000, -1)
    noise = gumbel_noise(torch.Generator().manual_seed(1), (5000, 4), CPU)
    for top_k, top_p, allowed in ((2, None, {0, 1}), (None, 0.81, {0, 1, 2}), (3, 0.6, {0, 1})):
        _, ids = pick(shape_scores(logits, 1.0, top_k, top_p), noise)
        assert set(ids.tolist()) == allowed


def test_rows_without_a_distribution_are_marked() -> None:
    scores = torch.tensor([[0.0, 1.0], [float("nan"), 1.0], [float("-inf"), float("-inf")],
                           [float("inf"), 0.0]])
    best, ids = pick(scores, None)
    assert checked(ids, best).tolist() == [1, -1, -1, -1]


def test_token_stats_are_the_probability_entropy_and_top_of_each_distribution() -> None:
    generator = torch.Generator().manual_seed(0)
    shaped = 3 * torch.randn(4, 3, 50, generator=generator)
    shaped[0, 0, :40] = float("-inf")  # a top-k-like mask: 0·log 0 counts as 0
    ids = torch.randint(0, 50, (4, 3), generator=generator)
    ids[0, 0] = 45
    stats = token_stats(shaped, ids)
    probs = torch.softmax(shaped, -1)
    assert torch.allclose(stats[..., 0], probs.gather(-1, ids[..., None])[..., 0])
    entropy = -(probs * probs.log().nan_to_num(neginf=0.0)).sum(-1) / math.log(2)
    assert torch.allclose(stats[..., 1], entropy, atol=1e-5)
    top = probs.topk(5, -1)
    assert torch.allclose(stats[..., 2:7], top.values)
    assert torch.equal(stats[..., 7:12].long(), top.indices)


# ---- chunks: lengths, surplus, stops ------------------------------------------------------------
@pytest.mark.parametrize("opts", [SampleOptions(seed=4), SampleOptions(seed=4, temperature=0.7,
                                  top_k=5), SampleOptions(seed=4, top_p=0.8),
                                  SampleOptions(greedy=True)])
def test_a_seed_gives_the_same_text_whatever_the_chunk_size(opts: SampleOptions) -> None:
    expected = ids_of(opts, 32, 100)
    assert len(expected) == 100
    for chunk in (1, 7, 64):
        assert ids_of(opts, chunk, 100) == expected


def test_take_hands_out_the_surplus_before_a_new_chunk() -> None:
    opts = SampleOptions(seed=9)
    whole = ids_of(opts, 16, 50)
    stream = Sampler(model(), CPU, opts, chunk=16).tokens([1, 2])
    parts = [stream.take(n).ids[0].tolist() for n in (5, 100, 3, 100, 100)]
    assert [len(p) for p in parts] == [5, 11, 3, 13, 16]  # never more than asked, nor a chunk
    assert sum(parts, []) == whole[:48]


def test_a_stop_mid_chunk_leaves_the_state_of_the_tokens_handed_out() -> None:
    net = model()
    stream = Sampler(net, CPU, SampleOptions(seed=2), chunk=16).tokens([1, 2])
    handed = stream.take(5).ids[0].tolist() + stream.take(16).ids[0].tolist()  # 5, then 11
    handed += stream.take(4).ids[0].tolist()  # 4 of the next chunk: 12 left over
    stream.stop()
    reference = ModuleStepper(net, CPU)
    reference.prime([1, 2])
    for token in handed:
        scores = reference.step(token)
    torch.testing.assert_close(torch.as_tensor(stream.engine.scores), scores, atol=1e-5,
                               rtol=1e-5)
    after = stream.take(100)
    assert len(after) == 16  # a new chunk from there, not the forgotten surplus


def test_a_new_temperature_drops_the_surplus_drawn_at_the_old_one() -> None:
    opts = SampleOptions(seed=1)
    stream = Sampler(model(), CPU, opts, chunk=16).tokens([1, 2])
    assert len(stream.take(3)) == 3
    opts.temperature = 0.5
    assert len(stream.take(100)) == 16 and stream.position == 19


def test_batched_streams_come_back_exactly_and_side_by_side() -> None:
    rows = Sampler(model(), CPU, SampleOptions(seed=5), chunk=8).sample_batch([1, 2], 3, 21)
    assert [len(r) for r in rows] == [21, 21, 21] and rows[0] != rows[1]
    again = Sampler(model(), CPU, SampleOptions(seed=5), chunk=8).sample_batch([1, 2], 3, 21)
    assert rows == again


def test_the_live_views_stats_come_with_the_tokens() -> None:
    stream = Sampler(model(), CPU, SampleOptions(seed=3, top_k=4), chunk=8).tokens([1], stats=True)
    chunk = stream.take(10)
    assert chunk.stats.shape == (1, 8, 12)
    stats = torch.as_tensor(chunk.stats)
    p, top_ids = stats[0, :, 0], stats[0, :, 7:].long()
    assert ((p > 0) & (p <= 1)).all()
    assert all(token in row for token, row in zip(chunk.ids[0].tolist(), top_ids.tolist(),
                                                  strict=True))  # top-4: the draw is among them


# ---- NaN ----------------------------------------------------------------------------------------
def test_nan_weights_stop_with_one_clear_error() -> None:
    net = model()
    with torch.no_grad():
        net.head.bias.fill_(float("nan"))
    for opts in (SampleOptions(seed=0), SampleOptions(greedy=True)):
        with pytest.raises(UserError, match="probabilities are not finite at generated token 1:"):
            Sampler(net, CPU, opts, chunk=8).tokens([1]).take(5)


def test_nan_mid_chunk_hands_out_the_tokens_before_it_then_stops() -> None:
    """Token 3's embedding is NaN and the head prefers it: the first draw is 3 (fine), the
    second comes from NaN scores."""
    net = model(vocab=6)
    with torch.no_grad():
        net.embed.weight[3] = float("nan")
        net.head.bias.zero_()
        net.head.bias[3] = 50.0
    stream = Sampler(net, CPU, SampleOptions(greedy=True), chunk=8).tokens([1])
    assert stream.take(5).ids[0].tolist() == [3]
    with pytest.raises(UserError, match="not finite at generated token 2:"):
        stream.take(5)


def test_nan_weights_are_one_error_line_from_the_cli(tiny_run: Path, tmp_path: Path) -> None:
    import shutil

    from safetensors.torch import load_file, save_file

    run = tmp_path / "nan-run"
    shutil.copytree(tiny_run, run)
    weights = run / "best" / "model.safetensors"
    tensors = load_file(weights)
    name = next(n for n in tensors if n.startswith("head") and n.endswith("bias"))
    tensors[name] = torch.full_like(tensors[name], float("nan"))
    save_file(tensors, weights)
    for mode in ([], ["--num-samples", "2"], ["--greedy"], ["--beam", "2"]):
        result = run_cli("sample", run, "--length", "20", *mode, ok=False)
        assert result.exit_code == 2, result.output
        assert f"{weights} holds NaN or inf (in {name})" in result.output  # refused on load
        assert "Traceback" not in result.output


# ---- the CUDA graph engine's host logic, its CUDA calls faked ---------------------------------
class _ReplayGraph:
    """A CUDA graph stand-in: capture records nothing, replay runs the engine's body again (what
    a captured graph does to the same static tensors)."""

    body = None

    def register_generator_state(self, generator) -> None:
        pass

    def capture_begin(self, *pool, **options) -> None:
        pass

    def capture_end(self) -> None:
        pass

    def replay(self) -> None:
        with torch.inference_mode():
            self.body()


class _Stream:
    device = torch.device("cuda", 0)

    def wait_stream(self, other) -> None:
        pass


class _Event:
    def record(self) -> None:
        pass

    def synchronize(self) -> None:
        pass


@pytest.fixture
def cpu_graph_engine(monkeypatch):
    """GraphEngine on the CPU: every CUDA call it makes is faked, the tensors are real."""
    from charrnn.lm import cudagraph

    monkeypatch.setattr(cudagraph, "cuda_device", lambda device: CPU)
    monkeypatch.setattr(cudagraph, "pinned", lambda shape, dtype: torch.empty(shape, dtype=dtype))
    for name, fake in (("set_device", lambda device: None), ("synchronize", lambda d=None: None),
                       ("empty_cache", lambda: None), ("Stream", lambda device=None: _Stream()),
                       ("current_stream", lambda device=None: _Stream()),
                       ("set_stream", lambda stream: None), ("CUDAGraph", _ReplayGraph),
                       ("Event", _Event)):
        monkeypatch.setattr(torch.cuda, name, fake)
    monkeypatch.setattr(torch._C, "_host_emptyCache", lambda: None, raising=False)

    def make(net: RNNLM, opts: SampleOptions, streams: int = 1, stats: bool = False):
        generator = torch.Generator().manual_seed(opts.seed or 0)
        engine = cudagraph.GraphEngine(net, CPU, opts, streams, generator, 16, stats)
        engine.graph.body = engine._body
        generator.manual_seed(opts.seed or 0)
        engine.prime([1, 2])
        return TokenStream(engine, opts)

    return make


def _module_stream(net: RNNLM, opts: SampleOptions, streams: int = 1, stats: bool = False):
    from charrnn.lm.chunks import StepEngine

    generator = torch.Generator().manual_seed(opts.seed or 0)
    engine = StepEngine(ModuleStepper(net, CPU), CPU, opts, streams, generator, 16, stats)
    engine.prime([1, 2])
    return TokenStream(engine, opts)


@pytest.mark.parametrize("streams", [1, 3])
def test_the_graph_engine_draws_what_the_step_engine_draws(cpu_graph_engine, streams) -> None:
    """Double-buffered chunks (one running ahead), the same noise, the same tokens and stats."""
    net = model()
    opts = SampleOptions(seed=6, top_k=8, temperature=0.9)
    graph = cpu_graph_engine(net, opts, streams, stats=True)
    plain = _module_stream(net, opts, streams, stats=True)
    for n in (5, 40, 3, 16):
        a, b = graph.take(n), plain.take(n)
        assert torch.equal(a.ids, b.ids)
        torch.testing.assert_close(a.stats, b.stats)


def test_the_graph_engine_rewinds_a_stop_mid_chunk(cpu_graph_engine) -> None:
    net = model()
    stream = cpu_graph_engine(net, SampleOptions(seed=2))
    handed = stream.take_all(21)[0].tolist()  # a chunk and 5 of the next (one more in flight)
    stream.stop()
    reference = ModuleStepper(net, CPU)
    reference.prime([1, 2])
    for token in handed:
        scores = reference.step(token)
    torch.testing.assert_close(stream.engine.scores[0], scores)
    assert len(stream.take(100)) == 16


def test_the_graph_engine_marks_nan_and_feeds_on(cpu_graph_engine) -> None:
    net = model()
    with torch.no_grad():
        net.head.bias.fill_(float("nan"))
    with pytest.raises(UserError, match="not finite at generated token 1:"):
        cpu_graph_engine(net, SampleOptions(seed=0)).take(4)
