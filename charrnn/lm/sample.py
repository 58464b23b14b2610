"""Decoding: temperature, top-k, top-p (nucleus), greedy and beam search, streamed as it goes.

The prime is run through the model in one call; then each step feeds one token back with the
carried hidden state, K steps per call (chunks.py; on CUDA one graph replay, cudagraph.py; one
CPU stream in NumPy and a compiled kernel, cpustream.py), and the caller reads the tokens a
chunk at a time. Sampling is Gumbel-max with noise from a seeded generator (a torch.Generator,
decode.py; NumPy's PCG64 for the CPU stream), so the same seed gives the same text on the same
device and version.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import torch

from charrnn import checkpoint
from charrnn.configs import is_int
from charrnn.devices import device_memory, keeps_global_rng, resolve_device
from charrnn.errors import UserError, diverged, option
from charrnn.lm import cpustream
from charrnn.lm.chunks import StepEngine
from charrnn.lm.config import SampleOptions
from charrnn.lm.decode import shape_scores
from charrnn.lm.fastpath import last_scores, make_stepper, say_graphs_off
from charrnn.lm.model import RNNLM, load_lm
from charrnn.lm.plain import (
    NEVER,
    SEPARATOR,
    Prime,
    encode_prime,
    flushed,
    primed_decoder,
    seed_of,
    stream_text,
    unwritten,
)
from charrnn.lm.tokenstream import Engine, TokenStream
from charrnn.rnn.state import select_rows
from charrnn.tokenizers import prime_shown

if TYPE_CHECKING:
    from charrnn.evaluation.mix import Mixture, NGramSide

CUDA_CHUNK = 64  # tokens per chunk on CUDA (the CPU's: cpustream.CPU_CHUNK)


def filter_logits(logits: torch.Tensor, opts: SampleOptions) -> torch.Tensor:
    """Temperature, then top-k, then top-p; masked entries become -inf. logits: (B, V)."""
    return shape_scores(logits, 1.0 / opts.temperature, opts.top_k, opts.top_p)


class Token(NamedTuple):
    """One generated token of a stream; p and entropy (bits) of the distribution it was drawn
    from when asked for (stats=True), else None."""

    id: int
    p: float | None = None
    entropy: float | None = None


def chunk_size(device: torch.device) -> int:
    """Tokens per chunk: on CUDA enough to hide a host round trip behind a graph replay; on the
    CPU enough to make the per-chunk work (noise, stats, one write) negligible (a stream the
    kernel draws takes longer ones: cpustream.schedule)."""
    return CUDA_CHUNK if device.type == "cuda" else cpustream.CPU_CHUNK


def live_chunk_size(device: torch.device) -> int:
    """The live view's chunk where it samples with PyTorch's models (cpustream.LIVE_CHUNK on
    the CPU, as on its torch-free path); the text is the same (the noise is chunk-size free)."""
    return cpustream.LIVE_CHUNK if device.type == "cpu" else chunk_size(device)


class Sampler:
    """Generates token ids from a model, a chunk of K tokens at a time (the TUI drives the same
    object). `tokens()` is the interface every sampling mode reads; `stream()` one token at a
    time over it."""

    def __init__(self, model: RNNLM, device: torch.device, opts: SampleOptions,
                 compiled: bool = True, mixture: Mixture | None = None,
                 chunk: int | None = None, exact: bool = False) -> None:
        """`exact`: exactly opts.length tokens will be read (`charrnn sample`'s text), so a
        short sample is NumPy's throughout on the CPU; else the live view's "more" or a
        library caller may read on (cpustream.schedule)."""
        # Ranges only: the live view may change the temperature of a --greedy session.
        opts.check_ranges()
        device = torch.device(device)  # (a library caller's "cpu" as well)
        self.model, self.device, self.opts = model.eval(), device, opts
        self.compiled = compiled  # False: no CUDA graph, no CPU kernel (make_engine)
        self.mixture = mixture  # --mix: each step draws from the RNN ⊕ n-gram distribution
        self.take_over, cpu_chunk = cpustream.schedule(opts.length, more=not exact)
        self.chunk = chunk or (cpu_chunk if device.type == "cpu" else chunk_size(device))
        self.seed = seed_of(opts)
        self.generator = torch.Generator(device=device)

    @torch.inference_mode()
    def tokens(self, prime_ids: list[int], streams: int = 1, stats: bool = False) -> TokenStream:
        """`streams` continuations of the prime, read K tokens at a time (TokenStream.take)."""
        self._check_prime(prime_ids)
        side = self._ngram_side(prime_ids, streams)
        engine = make_engine(self.model, self.device, self.opts, streams, self.generator,
                             self.chunk, stats, side, self.compiled, self.seed, self.take_over)
        # Seeded after the engine is built: a CUDA graph's warm-up draws from the generator.
        self.generator.manual_seed(self.seed)
        engine.prime(prime_ids)
        return TokenStream(engine, self.opts)

    def _check_prime(self, prime_ids: list[int]) -> None:
        """The ids a library caller primes with: at least one (`generate` starts a prime-less
        sample at a line break), each a token of the model."""
        vocab = self.model.config.vocab_size
        if len(prime_ids) == 0:
            raise UserError("the prime has no token: give at least one (generate() starts a "
                            "sample without a prime at a line break)")
        bad = [i for i in prime_ids if not 0 <= int(i) < vocab]
        if bad:
            raise UserError(f"prime id {bad[0]} is no token of this model (ids 0 to {vocab - 1})")

    def _ngram_side(self, prime_ids: list[int], streams: int) -> NGramSide | None:
        return None if self.mixture is None else self.mixture.side(prime_ids, streams)

    def stream(self, prime_ids: list[int], stats: bool = False) -> Iterator[Token]:
        """One stream's tokens one at a time, forever (read a chunk at a time underneath)."""
        tokens = self.tokens(prime_ids, 1, stats)
        while True:
            chunk = tokens.take(tokens.engine.k)
            ids = chunk.ids[0].tolist()
            if chunk.stats is None:
                yield from (Token(i) for i in ids)
            else:
                figures = chunk.stats[0, :, :2].tolist()
                yield from (Token(i, p, h) for i, (p, h) in zip(ids, figures, strict=True))

    def sample_batch(self, prime_ids: list[int], streams: int, length: int) -> list[list[int]]:
        """`streams` independent continuations of the prime, generated side by side: one step
        advances every stream (a batched matrix product, or K steps in one CUDA-graph replay)."""
        return self.tokens(prime_ids, streams).take_all(length).tolist()

    @torch.inference_mode()
    def beam_search(self, prime_ids: list[int], width: int, length: int) -> list[int]:
        """The most probable continuation of `length` tokens found with `width` beams."""
        self._check_prime(prime_ids)
        ids = torch.tensor([prime_ids], dtype=torch.long, device=self.device)
        side = self._ngram_side(prime_ids, 1)
        logits, state = last_scores(self.model, ids)
        log_probs = torch.log_softmax((side.mix(logits) if side else logits).float(), dim=-1)
        scores = torch.zeros(1, device=self.device)
        history = torch.zeros(1, 0, dtype=torch.long, device=self.device)
        for _ in range(length):
            total = (scores[:, None] + log_probs).reshape(-1)
            top = torch.topk(total, min(width, total.numel()))
            beam_index = top.indices // log_probs.size(-1)
            token = top.indices % log_probs.size(-1)
            scores = top.values
            history = torch.cat([history[beam_index], token[:, None]], dim=1)
            state = select_rows(state, beam_index)
            logits, state = self.model(token[:, None], state)
            logits = logits[:, -1]
            if side:
                side.reorder(beam_index)
                side.advance(token)
                logits = side.mix(logits)
            log_probs = torch.log_softmax(logits.float(), dim=-1)
        if torch.isnan(scores[0]):  # one read at the end: NaN spreads to every later score
            raise diverged("in the beam search", sampling=True)
        return history[0].tolist()


def make_engine(model: RNNLM, device: torch.device, opts: SampleOptions, streams: int,
                generator: torch.Generator, k: int, stats: bool = False,
                side: NGramSide | None = None, compiled: bool = True,
                seed: int = 0, take_over: int | None = None) -> Engine:
    """The fastest chunk engine here: K steps in one CUDA graph on CUDA; one stream of a
    full-softmax model on the CPU in NumPy and a compiled kernel (cpustream.py, its noise seeded
    with `seed`, the kernel drawing from token `take_over`, TAKE_OVER where not given); else
    the fused step on the CPU, the module elsewhere. compiled=False (the training preview), or
    --mix, whose n-gram needs the host each step, keep to the Python-driven step."""
    compiled = compiled and side is None
    if device.type == "cpu" and compiled and streams == 1 and cpustream.eligible(model.config):
        return cpustream.CPUStream(cpustream.Weights.of(model), opts, k, stats, seed,
                                   take_over)
    if device.type == "cuda" and compiled:
        from charrnn.lm.cudagraph import GraphEngine  # only where CUDA is

        try:
            return GraphEngine(model, device, opts, streams, generator, k, stats)
        except RuntimeError as exc:  # capture unsupported here (old driver, debug mode …)
            say_graphs_off(exc)
    return StepEngine(make_stepper(model, device), device, opts, streams, generator, k, stats,
                      side)


@keeps_global_rng
def generate(ckpt: checkpoint.Checkpoint, opts: SampleOptions, prime: str | None,
             num_samples: int, write: Callable[[str], None], device: str = "auto",
             unknown: str | None = None,
             mixing: Callable[[RNNLM, torch.device], Mixture | None] | None = None) -> None:
    """`charrnn sample` (plain): stream each sample's text to `write` as tokens arrive. `mixing`
    makes the loaded model's --mix mixture (charrnn.evaluation.mix.mixture_of)."""
    if not isinstance(ckpt, checkpoint.Checkpoint):  # (a library caller's run name or path)
        raise UserError(f"generate takes a checkpoint, not {ckpt!r}: "
                        "charrnn.checkpoint.resolve(RUN, root) gives it")
    opts.validate()
    if not is_int(num_samples) or num_samples < 1:
        raise UserError(f"{option('num_samples')} must be ≥ 1, got {num_samples}")
    opts.check_combination(num_samples)
    opts.check_vocabulary(ckpt.tokenizer.vocab_size)
    dev = resolve_device(device)
    tokenizer = ckpt.tokenizer
    start = encode_prime(tokenizer, prime, unknown)
    model = load_lm(ckpt, dev)
    mixture = mixing(model, dev) if mixing is not None else None  # (tuned on the model as is)
    model.never_write(unwritten(ckpt), NEVER)
    backward = model.config.direction == "backward"
    if backward or (num_samples > 1 and not opts.beam):
        # A right-to-left model generates what comes *before* the prime: collect, then reverse.
        # Several samples are generated side by side, then printed in turn.
        collected: list[list[int]] = []
        generate_ids(model, dev, opts, start.ids[::-1] if backward else start.ids, num_samples,
                     collected.append, mixture)
        for index, ids in enumerate(collected):
            write(_backward_text(tokenizer, ids, start) if backward else
                  _forward_text(tokenizer, ids, start))
            write(SEPARATOR if index < num_samples - 1 else "")
        return
    for index in range(num_samples):  # one stream, or beam search (seeds seed, seed+1, …)
        seed = None if opts.seed is None else opts.seed + index
        sampler = Sampler(model, dev, SampleOptions(**{**opts.__dict__, "seed": seed}),
                          mixture=mixture, exact=True)
        decoder, shown = primed_decoder(tokenizer, start)
        write(shown)
        if opts.beam:
            write("".join(map(decoder.feed, sampler.beam_search(start.ids, opts.beam,
                                                                opts.length))))
        else:
            stream_text(sampler.tokens(start.ids), decoder, opts.length, write)
        write(flushed(decoder))
        write(SEPARATOR if index < num_samples - 1 else "")


def _forward_text(tokenizer, ids: list[int], start: Prime) -> str:
    """The prime as shown, then the generated ids."""
    decoder, shown = primed_decoder(tokenizer, start)
    return shown + "".join(map(decoder.feed, ids)) + flushed(decoder)


def _backward_text(tokenizer, ids: list[int], start: Prime) -> str:
    """A right-to-left model's ids (generated last first), then the prime as shown: decoded as one
    sequence, so a word model puts its space between them."""
    decoder = tokenizer.stream_decoder()
    before = "".join(map(decoder.feed, ids[::-1]))
    if not start.typed:
        return before + flushed(decoder)
    return before + prime_shown(decoder, tokenizer.level, start.ids, start.typed) + flushed(decoder)


def generate_ids(model: RNNLM, device: torch.device, opts: SampleOptions, prime_ids: list[int],
                 num_samples: int, collect: Callable[[list[int]], None],
                 mixture: Mixture | None = None) -> None:
    """Sample `num_samples` id sequences without decoding them: side by side in one batch (even
    one), or one after the other (seeds seed, seed+1, …) for beam search."""
    if not opts.beam:
        _require_streams_fit(model.config, device, num_samples, opts.length)
        sampler = Sampler(model, device, opts, mixture=mixture, exact=True)
        for ids in sampler.sample_batch(prime_ids, num_samples, opts.length):
            collect(ids)
        return
    for index in range(num_samples):
        seed = None if opts.seed is None else opts.seed + index
        sampler = Sampler(model, device, SampleOptions(**{**opts.__dict__, "seed": seed}),
                          mixture=mixture)
        collect(sampler.beam_search(prime_ids, opts.beam, opts.length))


def _require_streams_fit(config, device: torch.device, streams: int, length: int) -> None:
    """Streams side by side hold, each, the recurrent state and a few float32 copies of the next
    token's distribution on the device, and their text on the host until it is printed (a Python
    int per token): counted first, since a batch past the memory ends at the kernel's OOM killer,
    with no message. Half of each memory at most: the rest is the model's and the system's."""
    on_device = 4 * (4 * config.vocab_size + 8 * config.layers * config.hidden)
    per_token = 8 if config.vocab_size <= 257 else 36  # a list slot; Python keeps ints ≤ 256 once
    needs = {device: on_device} if device.type != "cpu" else {}
    needs[torch.device("cpu")] = per_token * length + (on_device if device.type == "cpu" else 0)
    for where, per_stream in needs.items():
        total = device_memory(where)
        if total is not None and streams * per_stream > total // 2:
            raise UserError(f"{option('num_samples')} {streams:,} side by side needs "
                            f"~{streams * per_stream / 1e9:,.1f} GB on {where}, more than half of "
                            f"its {total / 1e9:,.1f} GB: ask for fewer samples, or a shorter "
                            f"{option('length')}")


def sampling_speed(spec: str | None, root: Path, tokens: int = 300, device: str = "cpu",
                   mixing: Callable[[RNNLM, torch.device], Mixture | None] | None = None
                   ) -> float:
    """Tokens per second of plain sampling (used by `charrnn compare`; with `mixing`, as in
    generate, of sampling that mixture): after a warm-up (kernel choice, caches), the fastest of
    three windows, so that a busy moment does not decide it."""
    ckpt = checkpoint.resolve(spec, root)
    dev = resolve_device(device)
    model = load_lm(ckpt, dev)
    sampler = Sampler(model, dev, SampleOptions(seed=0),
                      mixture=mixing(model, dev) if mixing is not None else None)
    stream = sampler.tokens(encode_prime(ckpt.tokenizer, None, "error").ids)
    stream.take_all(sampler.chunk)
    window, best = max(1, tokens // 3), 0.0
    for _ in range(3):
        start = time.perf_counter()
        stream.take_all(window)
        best = max(best, window / (time.perf_counter() - start))
    return best
