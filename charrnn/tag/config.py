"""The tagger's configs: its shape (`TaggerConfig`, saved in checkpoints) and how `charrnn tag train`
trains it (`TagTrainConfig`). Torch-free: the CLI reads its defaults from here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

from charrnn.configs import JsonConfig, check_types
from charrnn.errors import UserError, option
from charrnn.rnn.shape import check_cell, check_sizes
from charrnn.training.config import LoopConfig, require_at_least, require_fraction

FORMATS = ("conll", "segmented")
WIDTHS = ("hidden", "emb", "bigram_emb", "char_emb", "char_filters", "feature_emb")  # bounded


@dataclass
class TaggerConfig(JsonConfig):
    level: str  # "char" or "word"
    n_tokens: int
    n_labels: int
    cell: str = "lstm"
    layers: int = 1
    hidden: int = 200
    emb: int = 100
    dropout: float = 0.3
    n_bigrams: int = 0
    bigram_emb: int = 64
    n_chars: int = 0
    char_emb: int = 32
    char_filters: int = 64
    feature_sizes: list[int] = field(default_factory=list)
    feature_emb: int = 32

    def __post_init__(self) -> None:
        check_types(self)
        check_cell(self.cell)
        if self.level not in ("char", "word"):
            raise UserError(f"tagger level must be char or word, not {self.level!r}")
        require_at_least(self, 1, ("layers", "hidden", "emb", "n_tokens", "n_labels"))
        require_at_least(self, 0, ("n_bigrams", "bigram_emb", "n_chars", "char_emb",
                                   "char_filters", "feature_emb"))
        check_sizes(self, WIDTHS)
        if any(not (isinstance(n, int) and n >= 1) for n in self.feature_sizes):
            raise UserError(f"feature_sizes must be counts ≥ 1, got {self.feature_sizes}")
        require_fraction(self, ("dropout",))


@dataclass
class TagTrainConfig(LoopConfig):
    """`charrnn tag train`: a 1×128 BiLSTM, 64 sentences a step, AdamW at 4e-3, 10 epochs
    (bench/tag_cws.py and bench/tag_chunk.py measured these)."""

    format: str = "conll"
    label_column: int = -1
    features: list[int] = field(default_factory=list)
    cell: str = "lstm"
    layers: int = 1
    hidden: int = 128
    emb: int = 100
    dropout: float = 0.2
    bigram_emb: int = 64  # segmented: character bigram features (0: off)
    char_emb: int = 32  # conll: the char encoder of each word (char_filters 0: off)
    char_filters: int = 64
    feature_emb: int = 32
    min_count: int = 1
    token_dropout: float = 0.05  # training inputs replaced by <unk>, so unseen tokens mean something
    batch_size: int = 64
    val_frac: float = 0.05
    grad_clip: float = 5.0
    eval_every: int | None = None  # once an epoch
    precision: str = "fp32"  # the bars of bench/tag_*.py were measured so; auto: bf16 on a CPU

    DEFAULT_LR: ClassVar[dict[str, float]] = {"adamw": 4e-3, "adam": 4e-3, "rmsprop": 2e-3,
                                              "sgd": 1.0, "rprop": 1e-3}
    DEFAULT_MAX_STEPS: ClassVar[int | None] = None
    DEFAULT_EPOCHS: ClassVar[float | None] = 10

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.format not in FORMATS:
            raise UserError(f"{option('format')} must be conll or segmented, not {self.format!r}")
        check_cell(self.cell)
        require_at_least(self, 1, ("batch_size", "min_count", "layers", "hidden", "emb"))
        require_at_least(self, 0, ("bigram_emb", "char_filters", "char_emb", "feature_emb"))
        check_sizes(self, WIDTHS)  # (before the data is read for a model that cannot be)
        require_fraction(self, ("dropout", "token_dropout"))
        if self.label_column == 0:  # (checked here, at training: a saved tagger is not re-read)
            raise UserError(f"{option('label_column')} 0 is the tokens' column: the tagger would learn to "
                            "copy its input; give the column of the labels")
        bad = next((column for column in self.features if column <= 0), None)
        if bad is not None:
            why = ("column 0 is the token itself, which the tagger reads anyway" if bad == 0 else
                   "a column counted from the end would be another one in unlabelled text "
                   "(one column fewer)")
            raise UserError(f"{option('features')} {bad}: {why}; name the extra columns from 0 (the "
                            "token), e.g. 1 for the POS tag")
        if len(set(self.features)) != len(self.features):
            raise UserError(f"{option('features')} names a column twice ({self.features}): give each "
                            "column once")
        if self.char_filters and not self.char_emb:
            raise UserError(f"{option('char_emb')} 0 leaves the char CNN ({option('char_filters')}) no "
                            f"input: give {option('char_emb')} ≥ 1, or {option('char_filters')} 0 to turn "
                            "the CNN off")
        if self.features and not self.feature_emb:
            raise UserError(f"{option('feature_emb')} 0 gives the {option('features')} columns no "
                            f"embedding: give {option('feature_emb')} ≥ 1, or drop {option('features')}")
        if not 0 <= self.val_frac < 1:
            raise UserError(f"{option('val_frac')} must be in [0, 1), got {self.val_frac}")

    def model_config(self, level: str, n_tokens: int, n_labels: int, n_bigrams: int,
                     n_chars: int, feature_sizes: list[int]) -> TaggerConfig:
        return TaggerConfig(
            level, n_tokens, n_labels, self.cell, self.layers, self.hidden, self.emb,
            self.dropout, n_bigrams=n_bigrams if self.bigram_emb else 0,
            bigram_emb=self.bigram_emb, n_chars=n_chars if self.char_filters else 0,
            char_emb=self.char_emb, char_filters=self.char_filters,
            feature_sizes=feature_sizes, feature_emb=self.feature_emb)
