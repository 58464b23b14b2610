"""The stored n-gram model: flat numpy arrays plus JSON, never pickle.

    <run>/model/
        model.json    format, order, mode (stream | lines), special ids, tokenizer, discounts,
                      n-gram counts, offsets of each order in the flat arrays, the tokens
                      the training text never held (unseen), build info
        logp.npy      float32  ln p(last word | the others), one per n-gram
        backoff.npy   float32  ln back-off weight (0 where the n-gram is not a context)
        word.npy      int32    first word (order 1: the word itself)
        suffix.npy    int32    node of words 2..n (-1 for unigrams); sorted within an order
        prefix.npy    int32    node of words 1..n-1 (-1 for unigrams)

Word ids are the tokenizer's ids; `<s>` is vocab_size. With --lines, lmplz's `<unk>` (it has
probability mass, counted or not) is the tokenizer's own where it has one (word, subword), else
vocab_size + 1 (a char model's, never in the text): one `<unk>` either way, as lmplz has.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from charrnn import fsutil
from charrnn.cores import usable_cores
from charrnn.errors import UserError, option
from charrnn.tokenizers import Tokenizer, tokenizer_from_json

FORMAT, VERSION = "charrnn-ngram", 1
ARRAYS = ("logp", "backoff", "word", "suffix", "prefix")
MAX_ORDER = 12
PARALLEL_MIN = 1 << 20  # tokens: below this, threads cost more than they save
PARALLEL_STREAMS = 16  # fewer streams at once: their distributions on one thread (query.py)


@dataclass
class NGramModel:
    meta: dict
    logp: np.ndarray
    backoff: np.ndarray
    word: np.ndarray
    suffix: np.ndarray
    prefix: np.ndarray
    _tokenizer: Tokenizer | None = field(default=None, repr=False)
    _tables: tuple | None = field(default=None, repr=False)

    # -- what the model is ------------------------------------------------------------------
    @property
    def order(self) -> int:
        return int(self.meta["order"])

    @property
    def lines(self) -> bool:
        return self.meta["mode"] == "lines"

    @property
    def vocab_size(self) -> int:
        """Tokenizer ids (the words the model can write)."""
        return int(self.meta["vocab_size"])

    @property
    def bos(self) -> int:
        return int(self.meta["bos"])

    @property
    def unk(self) -> int | None:
        return self.meta.get("unk")

    @property
    def unseen(self) -> list[int]:
        """Tokenizer ids the training text never held (none recorded by an older charrnn or an
        imported ARPA file, whose words are all its vocabulary)."""
        return [int(x) for x in self.meta.get("unseen") or []]

    @property
    def words(self) -> int:
        """All word ids, including <s> (and a --lines char model's <unk>)."""
        return int(self.meta["offsets"][1])

    @property
    def offsets(self) -> np.ndarray:
        return np.asarray(self.meta["offsets"], dtype=np.int64)

    @property
    def num_ngrams(self) -> int:
        return int(self.meta["offsets"][-1])

    @property
    def tokenizer(self) -> Tokenizer:
        if self._tokenizer is None:
            self._tokenizer = tokenizer_from_json(self.meta["tokenizer"])
        return self._tokenizer

    @property
    def line_break(self) -> int | None:
        return self.meta.get("line_break")

    # -- derived lookup structures --------------------------------------------------------
    @property
    def tables(self) -> tuple[np.ndarray, np.ndarray]:
        """(rec, ext): the query tables built at load time (see query.py)."""
        if self._tables is None:
            from charrnn.jit import interrupts_held
            from charrnn.ngram.query import forward_tables

            top = int(self.meta["offsets"][-2])  # the first order-N node
            with interrupts_held():
                self._tables = forward_tables(self.suffix, self.prefix, self.logp, self.backoff,
                                              self.words, top)
        return self._tables

    def _kernel_args(self) -> tuple:
        """(order, bos, top, rec, recf, ext, extf) for the query kernels."""
        rec, ext = self.tables
        top = int(self.meta["offsets"][-2])
        return (self.order, self.bos, top, rec, rec.view(np.float32), ext, ext.view(np.float32))

    # -- text to model input -----------------------------------------------------------------
    def stream(self, ids: np.ndarray) -> tuple[np.ndarray, int]:
        """Tokenizer ids → (model input, first position to score).

        One-stream models score every token after the first, like `charrnn eval` (the first
        has no context); --lines models score every token of every line from `<s>`, like
        KenLM's query (the line break is `</s>`).
        """
        from charrnn.ngram.count import sentence_stream

        ids = np.asarray(ids).astype(np.int32, copy=False)
        if self.lines:
            return sentence_stream(ids, self.bos, self.line_break, True), 0
        return ids, 1

    def score_ids(self, ids: np.ndarray, threads: int | None = None) -> tuple[float, int]:
        """(total nats, tokens scored) of a text given as tokenizer ids."""
        from charrnn.jit import interrupts_held
        from charrnn.ngram.query import score_serial, score_total

        seq, first = self.stream(ids)
        if threads is None:
            threads = usable_cores()
        with interrupts_held():  # (a kernel's first call loads it: see interrupts_held)
            if threads <= 1 or seq.size < PARALLEL_MIN:
                total, scored = score_serial(seq, first, *self._kernel_args())
            else:
                total, scored = score_total(seq, first, *self._kernel_args(), threads * 4)
        return -float(total), int(scored)

    def token_logprobs(self, ids: np.ndarray) -> np.ndarray:
        """ln p of each scored token, in order (for tests and diagnostics)."""
        from charrnn.ngram.query import token_logprobs

        seq, first = self.stream(ids)
        out = token_logprobs(seq, first, *self._kernel_args())
        return out[~np.isnan(out)]

    def distribution(self, history: np.ndarray) -> np.ndarray:
        """p(x | history) over all word ids (model input ids, <s> allowed in the history)."""
        from charrnn.ngram.query import distribution, state_after

        _, bos, top, *tables = self._kernel_args()
        state = state_after(np.asarray(history, dtype=np.int32), bos, top, *tables)
        return distribution(state, self.words, bos, *tables, np.empty(self.words))

    def logp_after_first(self, ids: np.ndarray) -> np.ndarray:
        """ln p of ids[1:], one per token, as an RNN scores them (its first token is context):
        in --lines mode every token of a line is scored from `<s>` and the line break is
        `</s>`, so the scored tokens are the text's own, one for one."""
        out = self.token_logprobs(ids)
        return out[1:] if self.lines else out

    # -- streams of states (sampling side by side, mixtures) ------------------------------
    def start_states(self, history: np.ndarray, streams: int) -> np.ndarray:
        """`streams` copies of the state after reading tokenizer ids `history` (a --lines model
        after a line break, or with no history, starts at `<s>`)."""
        from charrnn.ngram.query import state_after

        _, bos, top, *tables = self._kernel_args()
        history = np.asarray(history, dtype=np.int32)
        if self.lines:
            breaks = np.flatnonzero(history == self.line_break)
            history = np.concatenate([[bos], history[breaks[-1] + 1 :] if breaks.size else history])
        elif history.size == 0:
            history = np.array([bos], np.int32)
        state = state_after(history.astype(np.int32), bos, top, *tables)
        return np.full(streams, state, dtype=np.int64)

    def next_distributions(self, states: np.ndarray) -> np.ndarray:
        """p(x | state) over the tokenizer's ids for each state: (B, vocab_size)."""
        from charrnn.ngram.query import distributions, distributions_serial

        _, bos, top, *tables = self._kernel_args()
        out = np.empty((len(states), self.words), np.float64)
        kernel = distributions if len(states) >= PARALLEL_STREAMS else distributions_serial
        return kernel(np.asarray(states, np.int64), self.words, bos, *tables, out)[
            :, : self.vocab_size]

    def advance(self, states: np.ndarray, tokens: np.ndarray) -> np.ndarray:
        from charrnn.ngram.query import advance

        _, bos, top, *tables = self._kernel_args()
        line_break = -1 if self.line_break is None else self.line_break
        return advance(np.asarray(states, np.int64), np.asarray(tokens, np.int64), line_break,
                       self.lines, bos, top, *tables)

    def continuation_logps(self, history, continuations) -> list[np.ndarray]:
        """ln p of each token of each continuation (tokenizer ids), all after `history`."""
        from charrnn.ngram.query import continuation_logps

        _, bos, top, *tables = self._kernel_args()
        state = self.start_states(np.asarray(history), 1)[0]
        lengths = np.array([len(c) for c in continuations], np.int64)
        seqs = np.zeros((len(continuations), max(1, int(lengths.max(initial=1)))), np.int32)
        for i, cont in enumerate(continuations):
            seqs[i, : len(cont)] = cont
        line_break = -1 if self.line_break is None else self.line_break
        out = continuation_logps(state, seqs, lengths, line_break, self.lines, bos, top, *tables)
        return [out[i, :n] for i, n in enumerate(lengths)]

    # -- storage ----------------------------------------------------------------------------
    def save(self, folder: Path) -> None:
        """Write model/ atomically (a reader sees the old model or the new one)."""
        with fsutil.atomic_dir(folder) as tmp:
            for name in ARRAYS:
                np.save(tmp / f"{name}.npy", np.ascontiguousarray(getattr(self, name)),
                        allow_pickle=False)
            fsutil.write_json_atomic(tmp / "model.json", self.meta)


def load(folder: Path) -> NGramModel:
    """Read model/ (memory-mapped), checking that every array is present and consistent."""
    from charrnn.ngram.checks import check_arrays, check_meta

    folder = Path(folder)
    fsutil.recover_dir(folder)
    meta = fsutil.read_json(folder / "model.json", f"n-gram model {folder}")
    if meta.get("format") != FORMAT:
        raise UserError(f"{folder / 'model.json'} is not a charrnn n-gram model")
    if meta.get("version") != VERSION:
        raise UserError(f"{folder} is n-gram model version {meta.get('version')}; this charrnn "
                        f"reads version {VERSION}: train it again")
    offsets = check_meta(folder, meta, MAX_ORDER)
    arrays = {}
    for name in ARRAYS:
        path = folder / f"{name}.npy"
        try:
            arrays[name] = np.load(path, mmap_mode="r", allow_pickle=False)
        except FileNotFoundError as exc:
            raise UserError(f"{folder} is missing {path.name}: the model is incomplete; "
                            "train it again") from exc
        except (OSError, ValueError, EOFError) as exc:  # EOFError: an empty file
            raise UserError(f"{path} is not a readable numpy array ({exc}): train again") from exc
    check_arrays(folder, arrays, offsets)
    tokenizer = tokenizer_from_json(meta["tokenizer"], str(folder / "model.json"),
                                    "the n-gram model is damaged: train it again")
    model = NGramModel(meta, **arrays, _tokenizer=tokenizer)
    if model.tokenizer.vocab_size != model.vocab_size:
        raise UserError(f"n-gram model {folder} is corrupt (its tokenizer has "
                        f"{model.tokenizer.vocab_size} tokens, the tables {model.vocab_size})")
    return model


def assemble(meta: dict, logp: list[np.ndarray], backoff: list[np.ndarray],
             words: int, tables: list) -> NGramModel:
    """Flat arrays from per-order ones (orders 2.. given as count.Order tables, local ids)."""
    sizes = [words] + [t.word.size for t in tables]
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    if offsets[-1] >= 2**31:
        raise UserError(f"{offsets[-1]:,} n-grams is more than this format holds (2^31): "
                        f"lower {option('order')} or pass {option('prune')}")
    word = np.concatenate([np.arange(words)] + [t.word for t in tables]).astype(np.int32)
    suffix = np.concatenate([np.full(words, -1)] + [t.suffix + offsets[n]
                                                    for n, t in enumerate(tables)])
    prefix = np.concatenate([np.full(words, -1)] + [t.prefix + offsets[n]
                                                    for n, t in enumerate(tables)])
    meta = {**meta, "format": FORMAT, "version": VERSION, "order": len(sizes),
            "offsets": [int(o) for o in offsets], "ngrams": [int(s) for s in sizes]}
    return NGramModel(meta, np.concatenate(logp).astype(np.float32),
                      np.concatenate(backoff).astype(np.float32), word,
                      suffix.astype(np.int32), prefix.astype(np.int32))
