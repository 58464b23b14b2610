"""Checking a stored model before the kernels touch it.

The numba kernels do not bounds-check, so a damaged or hostile model folder must fail here
with a clear message rather than crash or read stray memory: every link points into the
order below, every word is a word, every number is finite, the dtypes are the stored ones.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from charrnn.errors import UserError

DTYPES = {"logp": np.float32, "backoff": np.float32, "word": np.int32, "suffix": np.int32,
          "prefix": np.int32}


def own_unk(vocab: int, unk: int | None) -> bool:
    """Whether a model's `<unk>` is one of its own after `<s>` (a char --lines model's, which no
    text holds), not the tokenizer's (a word or subword model's rare words)."""
    return unk == vocab + 1


def word_count(vocab: int, unk: int | None) -> int:
    """A model's words: the tokenizer's ids, `<s>`, and an `<unk>` of its own (own_unk)."""
    return vocab + (2 if own_unk(vocab, unk) else 1)


def _fail(folder: Path, what: str) -> UserError:
    return UserError(f"n-gram model {folder} is corrupt ({what}): train or import it again")


def check_meta(folder: Path, meta: dict, max_order: int) -> list[int]:
    """The offsets of each order, after checking the JSON fields the kernels rely on."""
    try:
        order, vocab, bos = int(meta["order"]), int(meta["vocab_size"]), int(meta["bos"])
        offsets = [int(o) for o in meta["offsets"]]
        unk = meta.get("unk")
        line_break = meta.get("line_break")
        mode = meta["mode"]
    except (KeyError, TypeError, ValueError) as exc:
        raise _fail(folder, f"model.json field {exc}") from exc
    words = word_count(vocab, unk)
    if not 1 <= order <= max_order or len(offsets) != order + 1 or offsets[0] != 0:
        raise _fail(folder, "order and offsets disagree")
    if any(b < a for a, b in zip(offsets, offsets[1:], strict=False)) or offsets[1] != words:
        raise _fail(folder, "offsets are not increasing from the vocabulary size")
    if offsets[-1] >= 2**31 or bos != vocab or not (
            unk is None or unk == vocab + 1 or (type(unk) is int and 0 <= unk < vocab)):
        raise _fail(folder, "special word ids are out of place")
    if mode not in ("stream", "lines") or (line_break is not None
                                           and not 0 <= int(line_break) < vocab):
        raise _fail(folder, "mode or line break")
    return offsets


def check_arrays(folder: Path, arrays: dict[str, np.ndarray], offsets: list[int]) -> None:
    total = offsets[-1]
    for name, dtype in DTYPES.items():
        array = arrays[name]
        if array.dtype != dtype or array.shape != (total,):
            raise _fail(folder, f"{name}.npy is {array.dtype}{list(array.shape)}, expected "
                                f"{np.dtype(dtype)}[{total}]")
    if not (np.isfinite(arrays["logp"]).all() and np.isfinite(arrays["backoff"]).all()):
        raise _fail(folder, "a probability or back-off is not a finite number")
    words = offsets[1]
    word, suffix, prefix = arrays["word"], arrays["suffix"], arrays["prefix"]
    if (suffix[:words] != -1).any() or (prefix[:words] != -1).any():
        raise _fail(folder, "unigram links")
    if ((word < 0) | (word >= words)).any():
        raise _fail(folder, "a word id is out of range")
    for n in range(2, len(offsets)):
        lo, hi = offsets[n - 2], offsets[n - 1]
        s, p = suffix[offsets[n - 1]:offsets[n]], prefix[offsets[n - 1]:offsets[n]]
        if s.size and (s.min() < lo or s.max() >= hi or p.min() < lo or p.max() >= hi
                       or (np.diff(s) < 0).any()):
            raise _fail(folder, f"the {n}-gram links do not point into the {n - 1}-grams")
