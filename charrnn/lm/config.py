"""The language model's configs: its shape (`ModelConfig`, saved in every checkpoint), how it is
trained (`TrainConfig`) and how it is sampled (`SampleOptions`). Torch-free: the CLI reads its
defaults from here."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from charrnn.configs import check_types
from charrnn.errors import UserError, check_seed, option
from charrnn.rnn.shape import RecurrentShape
from charrnn.training.config import LoopConfig, require_at_least, require_fraction

if TYPE_CHECKING:
    from charrnn.checkpoint import Checkpoint

DIRECTIONS = ("forward", "backward")
SOFTMAXES = ("auto", "full", "adaptive")
# The model's shape: a fine-tuned model keeps its parent's, whatever its config says.
SHAPE = ("cell", "layers", "hidden", "emb", "tie_weights", "direction", "softmax", "cutoffs")
# What a fine-tuned run keeps of its parent unless typed: the regularisers.
REGULARISERS = ("dropout", "weight_drop", "locked_dropout", "embed_drop")


MIN_TEMPERATURE = 1e-30  # below, scores ÷ temperature overflow float32 (the NaN said the weights)


@dataclass
class ModelConfig(RecurrentShape):
    """A language model (charrnn.lm.model.RNNLM)."""

    tie_weights: bool = False
    direction: str = "forward"  # "backward": trained on reversed text (right-to-left context)
    weight_drop: float = 0.0  # DropConnect on the recurrent matrices (weight_hh)
    locked_dropout: bool = False  # one input/output dropout mask per window, shared over time
    embed_drop: float = 0.0  # drop whole embedding rows (token types) per window
    softmax: str = "full"  # or "adaptive" (charrnn.lm.softmax)
    cutoffs: list[int] = field(default_factory=list)  # adaptive: cluster bounds in frequency ranks
    div_value: float = 4.0  # adaptive: each tail reads d / div_value^k dimensions

    def __post_init__(self) -> None:
        if self.direction not in DIRECTIONS:
            raise UserError(f"{option('direction')} must be forward or backward, not {self.direction!r}")
        super().__post_init__()
        require_fraction(self, ("weight_drop", "embed_drop"))
        if self.softmax not in ("full", "adaptive"):
            raise UserError(f"softmax must be full or adaptive, not {self.softmax!r}")
        if self.softmax == "adaptive":
            cuts = self.cutoffs
            if not cuts or cuts != sorted(set(cuts)) or cuts[0] < 1 or cuts[-1] >= self.vocab_size:
                raise UserError(f"{option('cutoffs')} must rise strictly, from 1 or more to below the "
                                f"vocabulary size {self.vocab_size}, got {cuts}")
            if not self.div_value > 1:
                raise UserError(f"div_value must be > 1, got {self.div_value}")


@dataclass
class TrainConfig(LoopConfig):
    """`charrnn train`: a 2×512 LSTM, tied, dropout 0.25, 32 streams × 64 steps, AdamW at 4e-3 —
    the best 10-minute CPU recipe measured on tiny Shakespeare (bench/train_shakespeare.py). On a
    CPU with bfloat16 it reads half the tokens a second of the 2×256 GRU of before, and still
    ends better (1.4163 vs 1.4575 nats/char); PyTorch runs LSTMs in bf16 there, GRUs not."""

    cell: str = "lstm"
    layers: int = 2
    hidden: int = 512
    emb: int = 0
    dropout: float = 0.25
    tie_weights: bool = True
    weight_drop: float = 0.0
    locked_dropout: bool = False
    embed_drop: float = 0.0
    direction: str = "forward"
    seq_len: int = 64
    batch_size: int = 32
    eval_tokens: int | None = None
    softmax: str = "auto"  # full | adaptive | auto (adaptive for big vocabularies on a CPU)
    cutoffs: list[int] = field(default_factory=list)  # adaptive: [] = from the frequencies

    def __post_init__(self) -> None:
        super().__post_init__()
        require_at_least(self, 1, ("seq_len", "batch_size"))
        if self.eval_tokens is not None and not self.eval_tokens >= 1:
            raise UserError(f"{option('eval_tokens')} must be a positive number, got {self.eval_tokens}")
        if self.softmax not in SOFTMAXES:
            raise UserError(f"{option('softmax')} must be one of {', '.join(SOFTMAXES)}, not "
                            f"{self.softmax!r}")
        if self.cutoffs and self.softmax == "full":
            raise UserError(f"{option('cutoffs')} applies to {option('softmax')} adaptive (or auto), "
                            "not full")

    def model_config(self, vocab_size: int, softmax: str = "full",
                     cutoffs: list[int] | None = None) -> ModelConfig:
        """The model of this config; `softmax` and `cutoffs` as resolved for the data and device
        (lm.train.model_config_for)."""
        return ModelConfig(vocab_size, self.cell, self.layers, self.hidden, self.emb,
                           self.dropout, self.tie_weights, self.direction, self.weight_drop,
                           self.locked_dropout, self.embed_drop, softmax, list(cutoffs or []))


def tbptt_min_tokens(batch: int, seq_len: int) -> int:
    """The fewest training tokens that make `batch` rows of one window (+1 target) each, after
    the epochs' shifts of up to `seq_len` (lm.batching.TBPTTStream reads them so)."""
    return seq_len + batch * (seq_len + 1)


def require_one_batch(tokens: int, batch: int, seq_len: int) -> None:
    """The training split must fill one batch: said before anything is sized by the batch (the
    precision measurement allocates one)."""
    if tokens < tbptt_min_tokens(batch, seq_len):
        raise UserError(
            f"the training split has {tokens:,} tokens, too few for one batch of "
            f"{batch}×{seq_len} (need ≥ {tbptt_min_tokens(batch, seq_len):,}): use a "
            f"smaller {option('batch_size')} or {option('seq_len')}, or more text")


@dataclass
class DataFacts:
    """What a new language model's config depends on in its data (a plan decides by them)."""

    level: str
    vocab: int
    train_tokens: int
    cutoffs: list[int]  # the adaptive softmax's clusters by the training frequencies
    has_validation: bool = True  # a validation split to evaluate on (lm.train: ≥ 2 tokens)


MAX_BEAM = 1024  # wider, the states outgrow memory before the most likely text changes
MAX_LENGTH = 10**12  # more tokens than any sample is read for: a bigger one is a typo


@dataclass
class SampleOptions:
    length: int = 500
    temperature: float = 1.0
    top_k: int | None = None
    top_p: float | None = None
    greedy: bool = False
    beam: int | None = None
    seed: int | None = None

    def validate(self, num_samples: int = 1, given: frozenset[str] = frozenset()) -> None:
        check_types(self)
        self.check_ranges()
        self.check_combination(num_samples, given)

    def check_combination(self, num_samples: int = 1, given: frozenset[str] = frozenset()) -> None:
        """Refuse options that another option would silently ignore. Defaults (temperature 1,
        no top-k / top-p) never conflict, so only values the user gave are refused: those that
        differ from the default, and the fields named in `given` (set by hand, even to 1.0)."""
        if self.greedy and self.beam is not None:
            raise UserError(f"give {option('greedy')} or {option('beam')}, not both ({option('beam')} 1 "
                            "is greedy decoding)")
        top1 = self.top_k == 1 and not self.greedy and self.beam is None  # greedy by another name
        shaping = [name for name, shapes in ((option("temperature", "temp"),
                                              self.temperature != 1.0 or "temperature" in given),
                                             (option("top_k"), self.top_k is not None and not top1),
                                             (option("top_p"), self.top_p is not None)) if shapes]
        mode = None
        if self.greedy:
            mode = (option("greedy"), "always takes the most likely token")
        elif self.beam is not None:
            mode = (option("beam"), "searches the most likely text")
        elif top1:
            mode = (f"{option('top_k')} 1", f"keeps only the most likely token, as {option('greedy')} does")
        if mode and shaping:
            given = " / ".join(shaping)
            raise UserError(f"{mode[0]} ignores {given} (it {mode[1]}): drop {given}, or drop "
                            f"{mode[0]} to sample")
        if mode and self.seed is not None:
            raise UserError(f"{mode[0]} takes no {option('seed')} (it {mode[1]}: the same text every "
                            f"time): drop {option('seed')}, or drop {mode[0]} to sample")
        if mode and num_samples > 1:
            raise UserError(f"{mode[0]} {mode[1]}, so {option('num_samples')} {num_samples} would print the "
                            f"same text {num_samples} times: drop one of them")

    def check_vocabulary(self, vocab_size: int) -> None:
        """What the model's vocabulary makes idle: a top-k that keeps every token."""
        if self.top_k is not None and self.top_k >= vocab_size:
            raise UserError(f"{option('top_k')} {self.top_k} keeps every one of the model's {vocab_size} "
                            f"tokens, so it filters nothing: give fewer than {vocab_size}, or "
                            "drop it")

    def check_ranges(self) -> None:
        if not 1 <= self.length <= MAX_LENGTH:  # (past 2**63 it overflowed into "forever")
            raise UserError(f"{option('length')} must be between 1 and {MAX_LENGTH:,}, got "
                            f"{self.length}")
        if not (math.isfinite(self.temperature) and self.temperature > 0):
            raise UserError(f"{option('temperature', 'temp')} must be a positive number, got "
                            f"{self.temperature}; use {option('greedy')} for argmax decoding")
        if self.temperature < MIN_TEMPERATURE:  # scores ÷ temp would overflow 32-bit floats
            raise UserError(f"{option('temperature', 'temp')} {self.temperature} is below "
                            f"{MIN_TEMPERATURE}, where dividing by it overflows; it samples the "
                            "most likely token anyway: "
                            f"use {option('greedy')}")
        if self.top_k is not None and self.top_k < 1:
            raise UserError(f"{option('top_k')} must be ≥ 1, got {self.top_k}")
        if self.top_p == 1:  # as a --top-k of the whole vocabulary is
            raise UserError(f"{option('top_p')} 1 keeps every token, so it changes nothing: drop "
                            "it, or give a share below 1 (e.g. 0.9)")
        if self.top_p is not None and not (0 < self.top_p < 1):
            raise UserError(f"{option('top_p')} must be in (0, 1), got {self.top_p}")
        if self.beam is not None:
            check_beam(self.beam)
        check_seed(self.seed)


def check_beam(beam: int) -> None:
    """A beam width that fits: sampling's and fill's beam searches alike."""
    if not 1 <= beam <= MAX_BEAM:
        raise UserError(f"{option('beam')} must be between 1 and {MAX_BEAM:,} (each beam carries a "
                        f"model state every step), got {beam:,}")


def lm_config(ckpt: Checkpoint) -> ModelConfig:
    """A language model checkpoint's config (checked); another task's checkpoint is refused."""
    ckpt.require_task("lm", f"use `charrnn {ckpt.task}` with it")
    return ckpt.config(ModelConfig)
