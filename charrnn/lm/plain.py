"""Text in and out of a sampler, and `charrnn sample --plain` of one stream on a CPU without torch.

    prime text ─ encode_prime ─▶ ids ─ engine (tokenstream.Engine) ─▶ chunks ─ stream_text ─▶ text
                                        │
          CPU, one forward stream, full softmax:  cpustream.CPUStream over model.safetensors read
          with NumPy (cpu_tokens; the live view's streams too) — the engine the Sampler gives one
          CPU stream, so the same seed gives the same text either way; PyTorch is never
          imported, which is most of a start-up (importing torch alone took 2.6 s of the 2.8 s
          of `--length 1` on a 2-core AMD EPYC)
          anything else (a GPU, --num-samples, --beam, --mix, the adaptive softmax, a backward
          model, whose text is collected then reversed): sample.generate, with PyTorch
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from charrnn.errors import UserError, option
from charrnn.lm.config import ModelConfig, SampleOptions, lm_config
from charrnn.lm.tokenstream import TokenStream
from charrnn.tokenizers import prime_policy, prime_shown

if TYPE_CHECKING:
    from charrnn.lm import cpustream

# Printed between the samples of --num-samples N, so that where one ends is plain (nanoGPT prints
# this line; not after the last sample, so one sample's output is the text alone).
SEPARATOR = "\n" + "-" * 15 + "\n"


def seed_of(opts: SampleOptions) -> int:
    """--seed, or one from the clock."""
    return opts.seed if opts.seed is not None else int(time.time_ns() % (1 << 62))


class Prime(NamedTuple):
    """A sample's start: the ids the model reads, and the text as typed ("" for the line-break
    start of no prime, which shows nothing)."""
    ids: list[int]
    typed: str


def encode_prime(tokenizer, prime: str | None, unknown: str | None) -> Prime:
    """The prime's ids (an empty prime starts at a line break). Words the model lacks are its
    <unk>, as eval, score and fill read them (unless --unk skip)."""
    if prime:
        policy = prime_policy(tokenizer.level, unknown)
        ids = tokenizer.encode(prime, unknown=policy).tolist()
        if ids:
            return Prime(ids, prime)
        if not prime.strip():  # a word or subword model: whitespace alone is no token
            raise UserError(f"the prime is whitespace only, which a {tokenizer.level} model reads "
                            f"as no token: give text, or drop {option('prime')} to start at a line break")
        raise UserError(f"the prime has no token the model knows: give another {option('prime')}")
    start = tokenizer.line_break_id()
    return Prime([start if start is not None else 0], "")


def primed_decoder(tokenizer, prime: Prime):
    """(a stream decoder that has read the prime, the prime's text as shown): the first generated
    token then decodes as a continuation (a word after the prime gets its space)."""
    decoder = tokenizer.stream_decoder()
    if not prime.typed:  # a line-break start: the decoder is at a line start already
        return decoder, ""
    return decoder, prime_shown(decoder, tokenizer.level, prime.ids, prime.typed)


def stream_text(tokens: TokenStream, decoder, length: int, write: Callable[[str], None]) -> None:
    """Exactly `length` tokens of one stream, decoded and written a chunk at a time."""
    while length > 0:
        ids = tokens.take(length).ids[0].tolist()
        write("".join(map(decoder.feed, ids)))
        length -= len(ids)


def flushed(decoder) -> str:
    """What a decoder still holds at the end (a subword decoder's incomplete bytes)."""
    return decoder.flush() if hasattr(decoder, "flush") else ""


def without_torch(config: ModelConfig, opts: SampleOptions, num_samples: int, device: str,
                  mixing: bool) -> bool:
    """Whether `generate_on_cpu` serves this request (else sample.generate does)."""
    from charrnn.lm import cpustream

    return (num_samples == 1 and not opts.beam and not mixing
            and config.direction == "forward" and cpustream.eligible(config)
            and (device == "cpu" or (device == "auto" and not accelerator_visible())))


def accelerator_visible() -> bool:
    """Whether `--device auto` might find a GPU (then torch decides): an NVIDIA or AMD device
    node, or a Mac (MPS). No GPU is certain only without those."""
    nodes = ("/dev/nvidiactl", "/dev/nvidia0", "/dev/kfd", "/dev/dxg")
    return sys.platform == "darwin" or any(os.path.exists(node) for node in nodes)


NEVER = -1e4  # the output bias of a token sampling never writes: beside any other logit its
# probability is exp(-1e4) = 0 (a finite value: a probability times its log stays 0, not NaN)


def unwritten(ckpt) -> list[int]:
    """The tokens the run's training text never held (a subword vocabulary's byte pieces wrote
    control characters: ESC, NUL), as its checkpoint records them (a fine-tuned run's: what its
    parent's text did not hold either); none for a run trained before they were recorded."""
    return [int(x) for x in (ckpt.meta.get("dataset") or {}).get("unseen") or []]


def read_cpu_weights(ckpt) -> cpustream.Weights:
    """The checkpoint's weights as the CPU stream reads them (NumPy, no torch), its unwritten
    tokens never drawn."""
    from charrnn.lm import cpustream

    config = lm_config(ckpt)
    weights = ckpt.read_weights(lambda path: cpustream.Weights.from_file(Path(path), config))
    weights.head_b[unwritten(ckpt)] = NEVER
    return weights


def cpu_tokens(weights: cpustream.Weights, opts: SampleOptions, prime_ids: list[int], *, stats: bool = False,
               more: bool = False, chunk: int | None = None) -> TokenStream:
    """One forward stream's tokens after the prime, from NumPy and the kernel (cpustream.schedule
    says which draws where): `more` where the reader may go past opts.length (the live view's
    "more"), `chunk` a fixed chunk size (the text does not depend on it)."""
    from charrnn.lm import cpustream

    take_over, k = cpustream.schedule(opts.length, more)
    engine = cpustream.CPUStream(weights, opts, chunk or k, stats, seed_of(opts), take_over)
    engine.prime(prime_ids)
    return TokenStream(engine, opts)


def generate_on_cpu(ckpt, opts: SampleOptions, prime: str | None,
                    write: Callable[[str], None], unknown: str | None = None) -> None:
    """One forward stream's text, streamed to `write` (sample.generate's output, without torch)."""
    opts.validate()
    opts.check_combination(1)
    start = encode_prime(ckpt.tokenizer, prime, unknown)
    tokens = cpu_tokens(read_cpu_weights(ckpt), opts, start.ids)  # exactly --length is read
    decoder, shown = primed_decoder(ckpt.tokenizer, start)
    write(shown)
    stream_text(tokens, decoder, opts.length, write)
    write(flushed(decoder))
