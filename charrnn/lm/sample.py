"""Decoding: temperature, top-k, top-p (nucleus), greedy and beam search, streamed as it goes.

The prime is run through the model in one call; then each step feeds one token back with the
carried hidden state. Sampling draws from a seeded torch.Generator, so the same seed gives the
same text on the same device.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path

import torch

from charrnn import checkpoint
from charrnn.devices import resolve_device
from charrnn.errors import UserError
from charrnn.lm.config import SampleOptions
from charrnn.lm.fastpath import make_stepper
from charrnn.lm.mix import Mixture, NGramSide
from charrnn.lm.model import RNNLM, load_lm
from charrnn.lm.state import select_rows

# Printed between the samples of --num-samples N, so that where one ends is plain (nanoGPT prints
# this line; not after the last sample, so one sample's output is the text alone).
SEPARATOR = "\n" + "-" * 15 + "\n"


def filter_logits(logits: torch.Tensor, opts: SampleOptions) -> torch.Tensor:
    """Temperature, then top-k, then top-p; masked entries become -inf. logits: (B, V)."""
    logits = logits.float() / opts.temperature
    if opts.top_k is not None and opts.top_k < logits.size(-1):
        kth = torch.topk(logits, opts.top_k, dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if opts.top_p is not None and opts.top_p < 1:
        sorted_logits, order = torch.sort(logits, descending=True, dim=-1)
        cumulative = torch.softmax(sorted_logits, dim=-1).cumsum(-1)
        drop = cumulative - torch.softmax(sorted_logits, dim=-1) >= opts.top_p  # keep ≥ 1 token
        logits = logits.masked_fill(drop.scatter(-1, order, drop), float("-inf"))
    return logits


class Sampler:
    """Generates token ids from a model, one step at a time (the TUI drives the same object)."""

    def __init__(self, model: RNNLM, device: torch.device, opts: SampleOptions,
                 graphs: bool = True, mixture: Mixture | None = None) -> None:
        # Ranges only: the live view may change the temperature of a --greedy session.
        opts.check_ranges()
        self.model, self.device, self.opts, self.graphs = model.eval(), device, opts, graphs
        self.mixture = mixture  # --mix: each step draws from the RNN ⊕ n-gram distribution
        self.generator = torch.Generator(device=device)
        self.generator.manual_seed(opts.seed if opts.seed is not None else
                                   int(time.time_ns() % (1 << 62)))

    def _draw(self, logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """logits (B, V) → (tokens (B,), the distributions they were drawn from (B, V))."""
        if self.opts.greedy:
            probs = torch.softmax(logits.float(), dim=-1)
            return probs.argmax(dim=-1), probs
        probs = torch.softmax(filter_logits(logits, self.opts), dim=-1)
        return torch.multinomial(probs, 1, generator=self.generator).view(-1), probs

    @torch.inference_mode()
    def stream(self, prime_ids: list[int]) -> Iterator[tuple[int, torch.Tensor]]:
        """Yield (token id, probabilities over the vocabulary it was drawn from), forever.

        Options are read at every step, so a caller (the TUI) may change the temperature live.
        """
        stepper = make_stepper(self.model, self.device, graphs=self.graphs)
        side = self._ngram_side(prime_ids, 1)
        logits = stepper.prime(prime_ids)
        while True:
            tokens, probs = self._draw(side.mix(logits) if side else logits)
            token = int(tokens[0])  # the host needs it anyway, to write it
            if side:
                side.advance([token])
            yield token, probs[0]
            logits = stepper.step(token)[None]

    def _ngram_side(self, prime_ids: list[int], streams: int) -> NGramSide | None:
        return NGramSide(self.mixture, prime_ids, streams) if self.mixture else None

    @torch.inference_mode()
    def sample_batch(self, prime_ids: list[int], streams: int, length: int) -> list[list[int]]:
        """`streams` independent continuations of the prime, generated side by side.

        One step advances every stream (a batched matrix product, or one CUDA-graph replay);
        the tokens stay on the device and come back once, at the end (with --mix they visit
        the host each step: the n-gram's states live there).
        """
        stepper = make_stepper(self.model, self.device, streams, self.graphs)
        side = self._ngram_side(prime_ids, streams)  # its states live on the host
        logits = stepper.prime(prime_ids, streams)
        out = torch.empty(streams, length, dtype=torch.long, device=self.device)
        for i in range(length):
            tokens, _ = self._draw(side.mix(logits) if side else logits)
            out[:, i] = tokens
            if side:
                side.advance(tokens)
            logits = stepper.step(tokens)
        return out.tolist()

    @torch.inference_mode()
    def beam_search(self, prime_ids: list[int], width: int, length: int) -> list[int]:
        """The most probable continuation of `length` tokens found with `width` beams."""
        ids = torch.tensor([prime_ids], dtype=torch.long, device=self.device)
        side = self._ngram_side(prime_ids, 1)
        logits, state = self.model(ids)
        logits = logits[:, -1]
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
        return history[0].tolist()


def encode_prime(tokenizer, prime: str | None, unknown: str) -> tuple[list[int], bool]:
    """The prime's ids, and whether it is shown (an empty prime starts at a line break). Words the
    model lacks are its <unk>, as eval, score and fill read them (unless --unk skip)."""
    if prime:
        policy = "skip" if unknown == "skip" else "error" if tokenizer.level == "char" else "map"
        ids = tokenizer.encode(prime, unknown=policy).tolist()
        if ids:
            return ids, True
        raise UserError("the prime has no token the model knows: give another --prime")
    start = tokenizer.line_break_id()
    return [start if start is not None else 0], False


def primed_decoder(tokenizer, prime_ids: list[int], show_prime: bool):
    """(a stream decoder that has read the prime, the prime's text): the first generated token
    then decodes as a continuation (a word after the prime gets its space)."""
    decoder = tokenizer.stream_decoder()
    if not show_prime:  # a line-break start: the decoder is at a line start already
        return decoder, ""
    return decoder, "".join(decoder.feed(int(i)) for i in prime_ids)


def mixture_of(ckpt: checkpoint.Checkpoint, model: RNNLM, device: torch.device,
               spec: str | None, weight: float | None, root: Path | None) -> Mixture | None:
    """`--mix NGRAM_RUN [--mix-weight W]` of a loaded model (None without --mix)."""
    if spec is None:
        if weight is not None:
            raise UserError("--mix-weight applies with --mix NGRAM_RUN")
        return None
    from charrnn.lm.evaluate import token_nll
    from charrnn.lm.mix import mixture_for

    return mixture_for(ckpt, lambda ids: -token_nll(model, ids, device), spec, root, weight)


def generate(ckpt: checkpoint.Checkpoint, opts: SampleOptions, prime: str | None,
             num_samples: int, write: Callable[[str], None], device: str = "auto",
             unknown: str = "error", mix: str | None = None, mix_weight: float | None = None,
             root: Path | None = None) -> None:
    """`charrnn sample` (plain): stream each sample's text to `write` as tokens arrive."""
    opts.validate()
    if num_samples < 1:
        raise UserError(f"--num-samples must be ≥ 1, got {num_samples}")
    opts.check_combination(num_samples)
    dev = resolve_device(device)
    tokenizer = ckpt.tokenizer
    prime_ids, show_prime = encode_prime(tokenizer, prime, unknown)
    model = load_lm(ckpt, dev)
    mixture = mixture_of(ckpt, model, dev, mix, mix_weight, root)
    backward = model.config.direction == "backward"
    if backward or (num_samples > 1 and not opts.beam):
        # A right-to-left model generates what comes *before* the prime: collect, then reverse.
        # Several samples are generated side by side, then printed in turn.
        collected: list[list[int]] = []
        generate_ids(model, dev, opts, prime_ids[::-1] if backward else prime_ids, num_samples,
                     collected.append, mixture)
        shown = prime_ids if show_prime else []
        for index, ids in enumerate(collected):
            # Decoded as one sequence, so the tokenizer puts its separator (a word level space)
            # between the prime and the generated text.
            write(tokenizer.decode(ids[::-1] + shown) if backward else tokenizer.decode(shown + ids))
            write(SEPARATOR if index < num_samples - 1 else "")
        return
    for index in range(num_samples):
        seed = None if opts.seed is None else opts.seed + index
        sampler = Sampler(model, dev, SampleOptions(**{**opts.__dict__, "seed": seed}),
                          mixture=mixture)
        decoder, shown = primed_decoder(tokenizer, prime_ids, show_prime)
        write(shown)
        if opts.beam:
            for token in sampler.beam_search(prime_ids, opts.beam, opts.length):
                write(decoder.feed(token))
        else:
            stream = sampler.stream(prime_ids)
            for _ in range(opts.length):
                token, _probs = next(stream)
                write(decoder.feed(token))
        if hasattr(decoder, "flush"):
            write(decoder.flush())
        write(SEPARATOR if index < num_samples - 1 else "")


def generate_ids(model: RNNLM, device: torch.device, opts: SampleOptions, prime_ids: list[int],
                 num_samples: int, collect: Callable[[list[int]], None],
                 mixture: Mixture | None = None) -> None:
    """Sample `num_samples` id sequences without decoding them: side by side in one batch (the
    tokens stay on the device until the end, even for one), or one after the other (seeds seed,
    seed+1, …) for beam search."""
    if not opts.beam:
        sampler = Sampler(model, device, opts, mixture=mixture)
        for ids in sampler.sample_batch(prime_ids, num_samples, opts.length):
            collect(ids)
        return
    for index in range(num_samples):
        seed = None if opts.seed is None else opts.seed + index
        sampler = Sampler(model, device, SampleOptions(**{**opts.__dict__, "seed": seed}),
                          mixture=mixture)
        collect(sampler.beam_search(prime_ids, opts.beam, opts.length))


def sampling_speed(spec: str | None, root: Path, tokens: int = 300, device: str = "cpu") -> float:
    """Tokens per second of plain sampling (used by `charrnn compare`): after a warm-up (kernel
    choice, caches), the fastest of three windows, so that a busy moment does not decide it."""
    ckpt = checkpoint.resolve(spec, root)
    dev = resolve_device(device)
    sampler = Sampler(load_lm(ckpt, dev), dev, SampleOptions(seed=0))
    stream = sampler.stream(encode_prime(ckpt.tokenizer, None, "error")[0])
    for _ in range(20):
        next(stream)
    window, best = max(1, tokens // 3), 0.0
    for _ in range(3):
        start = time.perf_counter()
        for _ in range(window):
            next(stream)
        best = max(best, window / (time.perf_counter() - start))
    return best
