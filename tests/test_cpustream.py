"""One CPU stream without torch (charrnn/lm/cpustream.py, cpustep.py, cpukernel.py, plain.py):
NumPy and the compiled kernel draw the same tokens for every cell and option, the kernel takes
over at a fixed place (from the first token where a known length pays for its load), stops
rewind in both, NaN, the fall-back without the kernel, weights read
from the file, and `charrnn sample --plain` on a CPU never importing torch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from charrnn import checkpoint, weights
from charrnn.errors import UserError
from charrnn.lm import cpustream
from charrnn.lm.chunks import StepEngine
from charrnn.lm.config import ModelConfig
from charrnn.lm.model import RNNLM
from charrnn.lm.sample import SampleOptions, Sampler
from helpers import modules_loaded_by, run_cli

CPU = torch.device("cpu")
OPTIONS = [dict(seed=4), dict(seed=4, temperature=0.7, top_k=5), dict(seed=4, top_p=0.8),
           dict(greedy=True)]
SHAPES = [("lstm", 0, True), ("gru", 0, False), ("rnn", 0, True),
          ("lstm", 12, True),  # tied, emb ≠ hidden: a projection before the head
          ("gru", 12, False)]
ALL_NUMPY, ALL_KERNEL = 10**9, 0  # TAKE_OVER values: the kernel never / from the first chunk


def model(cell: str = "lstm", emb: int = 0, tied: bool = True, vocab: int = 30) -> RNNLM:
    torch.manual_seed(0)
    return RNNLM(ModelConfig(vocab, cell, layers=2, hidden=24, emb=emb, tie_weights=tied)).eval()


def session(net: RNNLM, opts: dict, take_over: int, monkeypatch, chunk: int = 16):
    """(ids, stats) of one stream read in uneven takes, with stops mid-chunk and a temperature
    change (the live view's moves), the kernel taking over at `take_over`."""
    monkeypatch.setattr(cpustream, "TAKE_OVER", take_over)
    options = SampleOptions(**opts)
    stream = Sampler(net, CPU, options, chunk=chunk).tokens([1, 2], stats=True)
    parts = [stream.take(n) for n in (11, 11, 30, 7)]
    stream.stop()  # 7 of a chunk kept: the rest forgotten, the state rewound
    parts += [stream.take(n) for n in (20, 3)]
    if not options.greedy:
        options.temperature = 0.5
    parts += [stream.take(n) for n in (40, 40, 9)]
    return (np.concatenate([p.ids for p in parts], 1), np.concatenate([p.stats for p in parts], 1),
            stream.engine)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}-emb{s[1]}-tied{s[2]}")
@pytest.mark.parametrize("opts", OPTIONS, ids=["plain", "temp-topk", "topp", "greedy"])
def test_the_kernel_draws_the_tokens_numpy_draws(shape, opts, monkeypatch) -> None:
    net = model(*shape)
    ids, stats, engine = session(net, opts, ALL_KERNEL, monkeypatch)
    expected_ids, expected_stats, reference = session(net, opts, ALL_NUMPY, monkeypatch)
    assert engine.kernel is not None and reference.kernel is None
    assert ids.shape == expected_ids.shape and ids.shape[1] > 90
    assert np.array_equal(ids, expected_ids)
    np.testing.assert_allclose(stats, expected_stats, atol=1e-5, rtol=1e-4)


def test_drawing_ahead_in_a_thread_changes_no_token(monkeypatch) -> None:
    """The kernel's next chunk is drawn while this one is read; a stop or a new temperature
    forgets it (its state and its noise): the text is the one drawn without running ahead."""
    net = model()
    ahead = session(net, OPTIONS[1], ALL_KERNEL, monkeypatch)
    monkeypatch.setattr(cpustream, "PREFETCH", False)
    in_turn = session(net, OPTIONS[1], ALL_KERNEL, monkeypatch)
    assert ahead[2].behind is not None and in_turn[2].behind is None
    assert np.array_equal(ahead[0], in_turn[0]) and np.array_equal(ahead[1], in_turn[1])


@pytest.mark.parametrize("take_over", [ALL_KERNEL, ALL_NUMPY], ids=["kernel", "numpy"])
def test_the_text_through_stops_does_not_depend_on_the_chunk_size(take_over,
                                                                   monkeypatch) -> None:
    """A stop keeps the noise of the tokens kept and no more: the i-th token draws with the
    generator's i-th row of noise whatever the chunks were (the live view's chunks drawn ahead
    of a frame are sized by the frame's time)."""
    monkeypatch.setattr(cpustream, "TAKE_OVER", take_over)
    texts = []
    for chunk in (5, 16, 128):
        stream = Sampler(model(), CPU, SampleOptions(seed=3), chunk=chunk).tokens([1])
        parts = [stream.take_all(23)]
        stream.stop()
        parts += [stream.take_all(41), stream.take_all(2)]
        stream.stop()
        parts.append(stream.take_all(60))
        texts.append(np.concatenate(parts, 1))
    assert all(np.array_equal(texts[0], text) for text in texts[1:])


@pytest.mark.parametrize("shape", SHAPES[:3], ids=lambda s: s[0])
def test_numpy_steps_the_models_own_scores(shape) -> None:
    net = model(*shape)
    stream = cpustream.CPUStream(cpustream.Weights.of(net), SampleOptions(), 8, False, 0)
    stream.prime([1, 2, 3])
    expected, _ = net(torch.tensor([[1, 2, 3]]))
    np.testing.assert_allclose(stream.scores, expected[0, -1].detach().numpy(), atol=1e-5)


def test_the_kernel_takes_over_at_a_fixed_place_in_the_stream(monkeypatch) -> None:
    monkeypatch.setattr(cpustream, "TAKE_OVER", 32)
    stream = Sampler(model(), CPU, SampleOptions(seed=1), chunk=16).tokens([1])
    for _ in range(3):  # three chunks, 5 tokens kept of each: the place counts tokens
        stream.take(5)
        stream.stop()
    stream.take(16)  # tokens 15–31: a chunk that ends by token 32 is NumPy's
    assert stream.engine.kernel is None
    stream.take(1)  # tokens 31–47: the kernel's
    assert stream.engine.kernel is not None


def test_noise_drawn_as_one_block_is_the_noise_drawn_row_by_row() -> None:
    block = np.random.Generator(np.random.PCG64(7)).standard_exponential((6, 50), np.float32)
    rows = np.random.Generator(np.random.PCG64(7))
    assert np.array_equal(block, np.stack([rows.standard_exponential(50, np.float32)
                                           for _ in range(6)]))


def test_nan_in_the_kernel_hands_out_the_tokens_before_it_then_stops(monkeypatch) -> None:
    monkeypatch.setattr(cpustream, "TAKE_OVER", 32)
    net = model()
    stream = Sampler(net, CPU, SampleOptions(seed=0), chunk=8).tokens([1])
    assert stream.take_all(32).shape[1] == 32  # NumPy's chunks
    stream.engine.weights.head_b[:] = np.nan  # the kernel reads the same arrays
    assert len(stream.take(8)) == 1  # its scores came from the last good step
    with pytest.raises(UserError, match="probabilities are not finite at generated token 34:"):
        stream.take(8)


def test_a_kernel_that_cannot_load_leaves_numpy_going(monkeypatch, capsys) -> None:
    from charrnn.lm import cpukernel, machinecode

    def refuse(*args):
        raise RuntimeError("no LLVM here")

    net = model()
    expected = session(net, OPTIONS[0], ALL_NUMPY, monkeypatch)[0]
    monkeypatch.setattr(machinecode, "kernel", refuse)
    monkeypatch.setattr(cpukernel, "run_chunk", refuse)
    monkeypatch.setattr(cpustream, "_said", set())
    ids, _, engine = session(net, OPTIONS[0], ALL_KERNEL, monkeypatch)
    assert engine.broken and np.array_equal(ids, expected)
    err = capsys.readouterr().err
    assert err.count("compiled CPU sampling step is off (RuntimeError: no LLVM here)") == 1


def test_adaptive_heads_many_streams_and_the_preview_keep_the_pytorch_engine() -> None:
    adaptive = RNNLM(ModelConfig(40, "lstm", layers=1, hidden=8, softmax="adaptive",
                                 cutoffs=[10])).eval()
    assert isinstance(Sampler(adaptive, CPU, SampleOptions()).tokens([1]).engine, StepEngine)
    assert isinstance(Sampler(model(), CPU, SampleOptions()).tokens([1], 3).engine, StepEngine)
    assert isinstance(Sampler(model(), CPU, SampleOptions(), compiled=False).tokens([1]).engine,
                      StepEngine)


@pytest.mark.parametrize("config", [ModelConfig(30, "lstm", 2, 24, 12, tie_weights=True),
                                    ModelConfig(30, "gru", 1, 24, 0, tie_weights=False),
                                    ModelConfig(30, "rnn", 3, 16, 16, tie_weights=True)])
def test_the_expected_shapes_and_the_parameter_count_are_the_models(config) -> None:
    saved, aliases = weights.layout(RNNLM(config))
    assert cpustream.expected_shapes(config) == (
        {name: tuple(t.shape) for name, t in saved.items()}, aliases)

    assert cpustream.parameter_count(config) == sum(p.numel() for p in RNNLM(config).parameters())


def test_weights_read_from_the_file_are_the_models(tmp_path: Path) -> None:
    net = model("lstm", 12, True)
    checkpoint.save(tmp_path / "best", net, {"task": "lm", "model": net.config.__dict__}, None)
    read = cpustream.Weights.from_file(tmp_path / "best" / checkpoint.WEIGHTS, net.config)
    live = cpustream.Weights.of(net)
    for got, want in zip(read.kernel_args()[1:], live.kernel_args()[1:], strict=True):
        assert np.array_equal(got, want)


def test_plain_sampling_on_a_cpu_never_imports_torch(tiny_run: Path) -> None:
    code = ("import sys\nfrom charrnn.cli import main\n"
            f"sys.argv = ['charrnn', 'sample', {str(tiny_run)!r}, '--length', '40', '--plain',"
            " '--seed', '3', '--device', 'cpu']\n"
            "try:\n    main()\nexcept SystemExit:\n    pass\n")
    stdout, loaded = modules_loaded_by(code, "torch", "numba")
    assert loaded == [False, False]
    from charrnn.lm.sample import generate  # the PyTorch path, whose Sampler has the same engine

    text: list[str] = []
    generate(checkpoint.resolve(str(tiny_run), tiny_run), SampleOptions(length=40, seed=3),
             None, 1, text.append, "cpu")
    assert stdout == "".join(text) + "\n" and len(stdout) > 40


def test_a_weights_file_that_does_not_fit_is_one_error_line(tiny_run: Path, tmp_path) -> None:
    import shutil

    broken = tmp_path / "run"
    shutil.copytree(tiny_run, broken)
    folder = checkpoint.resolve(str(broken), tmp_path).folder
    other = RNNLM(ModelConfig(7, "gru", 1, 8))
    checkpoint.save(folder, other, checkpoint.open_checkpoint(folder).meta, None)
    result = run_cli("sample", str(folder), "--length", "5", "--plain", "--device", "cpu",
                     ok=False)
    assert result.exit_code == 2
    assert "does not match its config (embed.weight is 7×8 in the file" in result.output
    assert "Traceback" not in result.output and len(result.output.strip().splitlines()) == 1


def test_a_longer_sample_begins_with_the_shorter_one(tiny_run: Path, monkeypatch) -> None:
    """A sample the kernel draws from its first token is read in longer chunks: the text is
    NumPy's, so `--length 200` (NumPy's) is the start of `--length 600` (the kernel's)."""
    from charrnn.lm.plain import generate_on_cpu

    monkeypatch.setattr(cpustream, "KERNEL_PAYS", 256)
    ckpt = checkpoint.resolve(str(tiny_run), tiny_run)
    texts, engines = [], spy_engines(monkeypatch)
    for length in (200, 600):
        parts: list[str] = []
        generate_on_cpu(ckpt, SampleOptions(length=length, seed=5), None, parts.append)
        texts.append("".join(parts))
    assert [e.kernel is not None for e in engines] == [False, True]
    assert [e.k for e in engines] == [cpustream.CPU_CHUNK, cpustream.LONG_CHUNK]
    assert len(texts[1]) >= 600 and texts[1].startswith(texts[0])


def spy_engines(monkeypatch) -> list[cpustream.CPUStream]:
    """The CPUStreams built from now on, as they are built."""
    built: list[cpustream.CPUStream] = []
    real = cpustream.CPUStream.__init__

    def init(self, *args, **kwargs) -> None:
        real(self, *args, **kwargs)
        built.append(self)

    monkeypatch.setattr(cpustream.CPUStream, "__init__", init)
    return built


@pytest.mark.parametrize("length", [1, 300, 512, 513, 600])
def test_a_plain_sample_numpy_draws_faster_never_loads_the_kernel(tiny_run: Path, monkeypatch,
                                                                   length: int) -> None:
    """Up to KERNEL_PAYS tokens NumPy is quicker than loading the kernel: it draws them all
    (before, a sample past the take-over paid the load for its last tokens)."""
    from charrnn.lm.plain import generate_on_cpu

    monkeypatch.setattr(cpustream, "_load_kernel", lambda *a: pytest.fail("kernel loaded"))
    engines = spy_engines(monkeypatch)
    text: list[str] = []
    generate_on_cpu(checkpoint.resolve(str(tiny_run), tiny_run),
                    SampleOptions(length=length, seed=2), None, text.append)
    assert len("".join(text)) >= length and engines[0].take_over == cpustream.NEVER


def test_a_plain_sample_longer_than_kernel_pays_is_the_kernels_from_its_first_token(
        tiny_run: Path, monkeypatch) -> None:
    """Its length is known and the load is paid anyway, so no token is left to NumPy's slower
    steps."""
    from charrnn.lm.plain import generate_on_cpu

    numpy_tokens: list[int] = []
    real_steps = cpustream.CPUStream._numpy_steps
    monkeypatch.setattr(cpustream.CPUStream, "_numpy_steps", lambda self, noise, n, stats: (
        numpy_tokens.append(n), real_steps(self, noise, n, stats))[1])
    engines = spy_engines(monkeypatch)
    generate_on_cpu(checkpoint.resolve(str(tiny_run), tiny_run),
                    SampleOptions(length=cpustream.KERNEL_PAYS + 1, seed=2), None, lambda _: None)
    assert engines[0].kernel is not None and engines[0].take_over == 0
    assert numpy_tokens == []


@pytest.mark.parametrize("length, take_over, chunk", [
    (500, "TAKE_OVER", cpustream.CPU_CHUNK), (600, "TAKE_OVER", cpustream.LONG_CHUNK),
    (601, 0, cpustream.LONG_CHUNK)])
def test_a_stream_that_may_be_read_further_keeps_numpy_until_the_take_over(length, take_over,
                                                                           chunk) -> None:
    """The live view and the Sampler may read past --length ("more"): up to KERNEL_PAYS they
    step NumPy for TAKE_OVER tokens, so a short look never pays the load; beyond it the kernel
    draws from the first token, as for --plain."""
    engine = Sampler(model(), CPU, SampleOptions(length=length)).tokens([1]).engine
    assert engine.take_over == (cpustream.TAKE_OVER if take_over == "TAKE_OVER" else take_over)
    assert engine.k == chunk


def test_the_pytorch_paths_exact_sample_never_loads_the_kernel_where_numpy_is_quicker(
        tiny_run: Path, monkeypatch) -> None:
    """`sample.generate` (a backward model, or --device auto where a GPU device node exists)
    reads exactly --length tokens, as --plain does: 550 of them are NumPy's throughout."""
    from charrnn.lm.sample import generate

    monkeypatch.setattr(cpustream, "_load_kernel", lambda *a: pytest.fail("kernel loaded"))
    engines = spy_engines(monkeypatch)
    text: list[str] = []
    generate(checkpoint.resolve(str(tiny_run), tiny_run), SampleOptions(length=550, seed=2),
             None, 1, text.append, "cpu")
    assert len("".join(text)) >= 550 and engines[0].take_over == cpustream.NEVER
