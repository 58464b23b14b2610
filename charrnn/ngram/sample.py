"""Generating text from an n-gram model: the full next-token distribution at every step."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from charrnn.errors import UserError, check_seed, option
from charrnn.jit import njit
from charrnn.ngram.checks import own_unk
from charrnn.ngram.model import NGramModel
from charrnn.ngram.query import distribution, state_after, step
from charrnn.tokenizers import prime_policy, prime_shown

CHUNK = 1 << 16  # tokens per kernel call: output is streamed, memory stays flat


@njit
def _start(hist, seed, bos, top, rec, recf, ext, extf):
    np.random.seed(seed)  # numba's generator: it carries on across the chunk calls below
    return state_after(hist, bos, top, rec, recf, ext, extf)


@njit
def _sample(state, length, temp, bos, top, rec, recf, ext, extf, unwritten, line_break, lines,
            words):
    out = np.empty(length, np.int32)
    dist = np.empty(words, np.float64)
    for i in range(length):
        distribution(state, words, bos, rec, recf, ext, extf, dist)
        for x in unwritten:
            dist[x] = 0.0
        if temp != 1.0:
            peak = dist.max()
            for x in range(words):
                if dist[x] > 0.0:
                    dist[x] = np.exp(np.log(dist[x] / peak) / temp)
        cum = np.cumsum(dist)
        pick = np.searchsorted(cum, np.random.random() * cum[-1], side="right")
        x = min(pick, words - 1)
        out[i] = x
        state = step(state, x, rec, recf, ext, extf, bos, top)[1]
        if lines and x == line_break:
            state = np.int64(bos)  # a new sentence starts after </s>
    return out, state


def prime_ids(model: NGramModel, prime: str | None, unknown: str) -> tuple[np.ndarray, np.ndarray]:
    """(tokenizer ids of the prime, model history); no prime starts after a line break."""
    tok = model.tokenizer
    if prime:
        ids = tok.encode(prime, unknown=prime_policy(tok.level, unknown))
        if len(ids) == 0:
            raise UserError(f"the prime has no token the model knows: give another {option('prime')}")
        seq, _ = model.stream(ids)
        if model.lines and ids[-1] == model.line_break:
            seq = np.append(seq, model.bos)
        return np.asarray(ids), seq.astype(np.int32)
    if model.lines or model.line_break is None:
        return np.zeros(0, np.int64), np.array([model.bos], np.int32)
    return np.zeros(0, np.int64), np.array([model.line_break], np.int32)


def sample_chunks(model: NGramModel, length: int, temp: float = 1.0, prime: str | None = None,
                  seed: int | None = None, unknown: str | None = None
                  ) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    """(prime ids, generated tokenizer ids in chunks); the same seed gives the same text."""
    from charrnn.lm.config import MAX_LENGTH  # (torch-free: the bound `charrnn sample` has)

    if not 1 <= length <= MAX_LENGTH:
        raise UserError(f"{option('length')} must be between 1 and {MAX_LENGTH:,}, got "
                        f"{length}")
    if not (np.isfinite(temp) and temp > 0):
        raise UserError(f"{option('temperature', 'temp')} must be a positive number, got {temp}")
    check_seed(seed)  # the range `charrnn sample` takes
    if seed is None:
        seed = int(np.random.default_rng().integers(2**31))
    # numba's generator takes 32 bits: a seed of up to 63 is folded, smaller ones are as they were
    seed = seed if seed < 2**32 else int(np.random.SeedSequence(seed).generate_state(1)[0])
    shown, hist = prime_ids(model, prime, unknown)
    _, bos, top, rec, recf, ext, extf = model._kernel_args()
    unwritten = unwritten_ids(model)
    line_break = -1 if model.line_break is None else model.line_break

    def chunks() -> Iterator[np.ndarray]:
        state = _start(hist, seed, bos, top, rec, recf, ext, extf)
        for start in range(0, length, CHUNK):
            out, state = _sample(state, min(CHUNK, length - start), float(temp), bos, top, rec,
                                 recf, ext, extf, unwritten, line_break,
                                 model.lines, model.words)
            yield out

    return shown, chunks()


def unwritten_ids(model: NGramModel) -> np.ndarray:
    """What sampling never writes: <unk> that no text holds (a char --lines model's own, or the
    word a foreign ARPA's <unk> became; a word model's, its rare words, is written as an RNN
    writes it), and tokens the training text never held (a subword model's unseen byte pieces
    wrote control characters: ESC, NUL)."""
    unk = model.unk if own_unk(model.vocab_size, model.unk) else model.meta.get("unk_word")
    return np.asarray(sorted({*model.unseen, *([] if unk is None else [int(unk)])}), np.int64)


def sample_ids(model: NGramModel, length: int, temp: float = 1.0, prime: str | None = None,
               seed: int | None = None, unknown: str | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(prime ids, generated tokenizer ids); the same seed gives the same text."""
    shown, chunks = sample_chunks(model, length, temp, prime, seed, unknown)
    return shown, np.concatenate(list(chunks))


def stream_text(model: NGramModel, length: int, temp: float = 1.0, prime: str | None = None,
                seed: int | None = None, unknown: str | None = None) -> Iterator[str]:
    """The prime (if any) followed by `length` sampled tokens, decoded piece by piece."""
    shown, chunks = sample_chunks(model, length, temp, prime, seed, unknown)
    decoder = model.tokenizer.stream_decoder()
    yield prime_shown(decoder, model.tokenizer.level, shown, prime or "")
    for out in chunks:
        yield "".join(decoder.feed(int(i)) for i in out)
    if hasattr(decoder, "flush"):
        yield decoder.flush()


def generate_text(model: NGramModel, length: int, temp: float = 1.0, prime: str | None = None,
                  seed: int | None = None, unknown: str | None = None) -> str:
    """The prime (if any) followed by `length` sampled tokens, decoded."""
    return "".join(stream_text(model, length, temp, prime, seed, unknown))


def sampling_speed(model: NGramModel, tokens: int = 2000) -> float:
    """Tokens per second of plain sampling (the compiled kernel, after a warm-up call)."""
    sample_ids(model, 8, seed=0)
    start = time.perf_counter()
    sample_ids(model, tokens, seed=0)
    return tokens / max(time.perf_counter() - start, 1e-9)
