"""The configs of fill in the blank: the masked model's shape (`FillConfig`, saved in checkpoints),
how `charrnn train --task fill` trains it (`FillTrainConfig`), and how `charrnn fill` searches
(`SearchOptions`, `FillOptions`). Torch-free: the CLI reads its defaults from here.

The training defaults are those of `charrnn train` for every option the two share, so one command
line serves both tasks; an LM-only option typed with --task fill is an error (cli.train)."""

from __future__ import annotations

from dataclasses import dataclass, field

from charrnn.configs import check_types
from charrnn.errors import UserError, option
from charrnn.rnn.shape import RecurrentShape, check_cell
from charrnn.tokenizers.base import check_unknown_policy
from charrnn.training.config import LoopConfig, require_at_least, require_fraction


@dataclass
class FillConfig(RecurrentShape):
    """The masked BiRNN (charrnn.fill.model.FillModel)."""

    @property
    def mask_id(self) -> int:
        return self.vocab_size  # one id past the tokenizer's


@dataclass
class FillTrainConfig(LoopConfig):
    cell: str = "lstm"
    layers: int = 2
    hidden: int = 512
    emb: int = 0
    dropout: float = 0.25
    seq_len: int = 64  # the window a training example is cut from
    batch_size: int = 32

    def __post_init__(self) -> None:
        super().__post_init__()
        check_cell(self.cell)
        require_at_least(self, 1, ("seq_len", "batch_size", "layers", "hidden"))
        require_at_least(self, 0, ("emb",))
        require_fraction(self, ("dropout",))

    def model_config(self, vocab_size: int) -> FillConfig:
        return FillConfig(vocab_size, self.cell, self.layers, self.hidden, self.emb, self.dropout)


MAX_CANDIDATES = 4096


@dataclass
class SearchOptions:
    beam: int = 16  # beam width of every proposal search
    candidates: int = 48  # candidates rescored per blank, from each proposer (forward, backward, masked)
    context: int = 64  # tokens of conditioning context read on each side
    lookahead: int = 24  # tokens on the far side of the blank scored with each candidate
    enumerate_below: int = 256  # one-token blanks: try the whole vocabulary when it is this small
    mask_weight: float = 0.0  # the masked model's weight in the mean of log scores (an LM: 1)

    def __post_init__(self) -> None:
        from charrnn.lm.config import check_beam

        check_types(self)
        if not (self.beam >= 1 and self.candidates >= 1):
            raise UserError(f"{option('beam')} and {option('candidates')} must be ≥ 1")
        check_beam(self.beam)
        if self.candidates > MAX_CANDIDATES:  # (the left baseline searches that wide)
            raise UserError(f"{option('candidates')} must be between 1 and {MAX_CANDIDATES:,} (each "
                            f"is rescored, and the left baseline searches that many beams), got "
                            f"{self.candidates:,}")
        if not 0 <= self.mask_weight <= 10:
            raise UserError(f"{option('mask_weight')} must be between 0 and 10, got {self.mask_weight}")


@dataclass
class FillOptions:
    top_k: int = 5
    max_len: int | None = None  # unknown-length bound (default per tokenizer level)
    # Characters outside a char model's vocabulary: error or skip (None: not asked, an error;
    # a word or subword model, which has none, refuses either where it is asked).
    unknown: str | None = None
    wrap: bool = True  # the text is a whole line: line breaks around it where the model has them
    search: SearchOptions = field(default_factory=SearchOptions)

    def validate(self) -> None:
        if self.top_k < 1:
            raise UserError(f"{option('top_k')} must be ≥ 1, got {self.top_k}")
        from charrnn.fill.syntax import MAX_BLANK

        if self.max_len is not None and not 1 <= self.max_len <= MAX_BLANK:
            raise UserError(f"{option('max_len')} must be between 1 and {MAX_BLANK}, got {self.max_len}")
        check_unknown_policy(self.unknown)
