"""Token ids → an n-gram model; a dataset → a run folder (what `charrnn ngram train` does)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from charrnn import runs
from charrnn.configs import is_int
from charrnn.errors import UserError, option
from charrnn.ngram.checks import word_count
from charrnn.ngram.model import MAX_ORDER, NGramModel, assemble
from charrnn.tokenizers import UNK, Tokenizer

DEFAULT_ORDER = {"char": 7, "word": 3, "subword": 5}


def check_order(order: int) -> None:
    if not is_int(order) or not 1 <= order <= MAX_ORDER:
        raise UserError(f"{option('order')} must be between 1 and {MAX_ORDER}, got {order}")


def build_model(ids: np.ndarray, tokenizer: Tokenizer, order: int, lines: bool = False,
                prune: list[int] | None = None, fallback: bool = True,
                extra_meta: dict | None = None) -> NGramModel:
    """Count and estimate an interpolated modified Kneser-Ney model of `ids` (tokenizer ids).

    With `lines`, every line is a sentence with `<s>`/`</s>` (the line break), and `<unk>` is
    a word of its own, exactly as lmplz builds its vocabulary; otherwise the text is one
    stream, as the RNNs see it.
    """
    from charrnn.ngram.count import count_ngrams, sentence_stream
    from charrnn.ngram.count_packed import count_ngrams_packed, fits
    from charrnn.ngram.kneser_ney import check_prune, estimate

    check_order(order)
    order = int(order)  # (numpy's: a library caller's)
    prune = check_prune(prune, order) if prune else [0] * order
    vocab = tokenizer.vocab_size
    low, high = (int(ids.min()), int(ids.max())) if len(ids) else (0, 0)
    if not (0 <= low and high < vocab):  # (a library call's)
        raise UserError(f"token ids must be within the tokenizer's vocabulary, 0 to {vocab - 1}; "
                        f"got {low} to {high}")
    line_break = tokenizer.line_break_id()
    if lines and line_break is None:
        raise UserError(f"{option('lines')} splits the text at line breaks, but this corpus has none: "
                        f"drop {option('lines')}")
    bos, unk = vocab, (lines_unk(tokenizer) if lines else None)
    words = word_count(vocab, unk)
    started = time.perf_counter()
    if fits(words, order):  # memory grows with distinct n-grams, not with the corpus
        unigrams, tables = count_ngrams_packed(ids, order, words, bos, line_break, lines)
    else:  # keys too wide to pack (big vocabulary × high order): refine positions instead
        unigrams, tables = count_ngrams(sentence_stream(ids, bos, line_break, lines), order,
                                        words, bos)
    est = estimate(unigrams, tables, bos, words - 1, prune, fallback)
    meta = {
        "mode": "lines" if lines else "stream", "vocab_size": vocab, "bos": bos, "unk": unk,
        "line_break": line_break, "tokenizer": tokenizer.to_json(),
        "discounts": est.discounts, "discount_fallback_orders": est.fallback_orders,
        "prune": prune, "counts_unpruned": est.counts_unpruned,
        "train_tokens": int(len(ids)), **(extra_meta or {}),
        # tokens the text never held (a subword vocabulary's byte pieces): their share of the
        # interpolated uniform distribution scores text, but is nothing to write (sample.py)
        "unseen": [int(x) for x in np.flatnonzero(unigrams[:vocab] == 0)],
    }
    model = assemble(meta, est.logp, est.backoff, words, est.tables)
    model.meta["build_seconds"] = time.perf_counter() - started
    return model


def lines_unk(tokenizer: Tokenizer) -> int:
    """lmplz's `<unk>` of a --lines model: the tokenizer's `<unk>` (the word a word or subword
    model reads an unknown word as), else one of the model's own after `<s>` (a char model)."""
    strings = tokenizer.token_strings()
    return strings.index(UNK) if UNK in strings else tokenizer.vocab_size + 1


def train_run(dataset, order: int, lines: bool, prune: list[int], fallback: bool, root: Path,
              run_name: str | None) -> tuple[Path, NGramModel]:
    """Build on the dataset's train split and store it in a new run folder."""
    ids = dataset.ids("train")
    if len(ids) < 1:
        raise UserError("the dataset's train split is empty: give a longer corpus")
    started = time.perf_counter()
    extra = {"dataset": {"id": dataset.id, "level": dataset.tokenizer.level,
                         "splits": dataset.meta["splits"]}}
    model = build_model(np.asarray(ids), dataset.tokenizer, order, lines, prune, fallback, extra)
    info = {**extra, "config": {"order": order, "lines": lines, "prune": prune,
                                "discount_fallback": fallback}}
    folder = runs.new_run_dir(root, run_name, "ngram", info)
    model.meta["train_seconds"] = time.perf_counter() - started
    with runs.kept_if_written(folder):
        model.save(folder / "model")
    return folder, model
