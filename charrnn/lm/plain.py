"""Text in and out of a sampler, and `charrnn sample --plain` of one stream on a CPU without torch.

    prime text ─ encode_prime ─▶ ids ─ engine (tokenstream.Engine) ─▶ chunks ─ stream_text ─▶ text
                                        │
          CPU, one forward stream, full softmax:  cpustream.CPUStream over model.safetensors read
          with NumPy — the engine the Sampler gives one CPU stream too, so the same seed gives the
          same text either way; PyTorch is never imported, which is most of a start-up (importing
          torch alone took 2.6 s of the 2.8 s of `--length 1` on a 2-core AMD EPYC)
          anything else (a GPU, --num-samples, --beam, --mix, the adaptive softmax, a backward
          model, whose text is collected then reversed): sample.generate, with PyTorch
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from pathlib import Path

from charrnn.errors import UserError
from charrnn.lm.config import ModelConfig, SampleOptions, lm_config
from charrnn.lm.tokenstream import TokenStream

# Printed between the samples of --num-samples N, so that where one ends is plain (nanoGPT prints
# this line; not after the last sample, so one sample's output is the text alone).
SEPARATOR = "\n" + "-" * 15 + "\n"


def seed_of(opts: SampleOptions) -> int:
    """--seed, or one from the clock."""
    return opts.seed if opts.seed is not None else int(time.time_ns() % (1 << 62))


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


def stream_text(tokens: TokenStream, decoder, length: int, write: Callable[[str], None]) -> None:
    """Exactly `length` tokens of one stream, decoded and written a chunk at a time."""
    while length > 0:
        ids = tokens.take(length).ids[0].tolist()
        write("".join(map(decoder.feed, ids)))
        length -= len(ids)


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


def generate_on_cpu(ckpt, opts: SampleOptions, prime: str | None,
                    write: Callable[[str], None], unknown: str = "error") -> None:
    """One forward stream's text, streamed to `write` (sample.generate's output, without torch)."""
    from charrnn.lm import cpustream

    opts.validate()
    opts.check_combination(1)
    config, tokenizer = lm_config(ckpt), ckpt.tokenizer
    prime_ids, show_prime = encode_prime(tokenizer, prime, unknown)
    weights = ckpt.read_weights(lambda path: cpustream.Weights.from_file(Path(path), config))
    take_over, k = cpustream.schedule(opts.length)  # the length is known: no stop comes early
    engine = cpustream.CPUStream(weights, opts, k, False, seed_of(opts), take_over)
    engine.prime(prime_ids)
    decoder, shown = primed_decoder(tokenizer, prime_ids, show_prime)
    write(shown)
    stream_text(TokenStream(engine, opts), decoder, opts.length, write)
    if hasattr(decoder, "flush"):
        write(decoder.flush())
