"""What every recurrent model here has (torch-free): a vocabulary, a cell, stacked layers, sizes,
dropout — the part of a config that language models, taggers and the fill model share."""

from __future__ import annotations

from dataclasses import dataclass

from charrnn.configs import JsonConfig, check_types
from charrnn.errors import UserError, option
from charrnn.training.config import require_at_least, require_fraction

CELLS = ("rnn", "lstm", "gru")
MAX_LAYERS = 1000  # deeper than any stack trained: a bigger number is a typo
# Units of a layer: past 2**63 torch's sizes overflow (an internal error). Below this bound the
# memory check refuses what does not fit, naming the memory; past it the number is a typo.
MAX_WIDTH = 10**15


def check_cell(cell: str) -> None:
    if cell not in CELLS:
        raise UserError(f"{option('cell')} must be one of {', '.join(CELLS)}, not {cell!r}")


def check_sizes(config: object, widths: tuple[str, ...]) -> None:
    """A stack no deeper than MAX_LAYERS (deeper ones fitted in memory, then took minutes, or
    hours, to build: the memory check builds a skeleton) and layers no wider than MAX_WIDTH
    (past 2**63 torch's own sizes overflow: an internal error)."""
    layers = config.layers
    if layers > MAX_LAYERS:
        raise UserError(f"{option('layers')} must be at most {MAX_LAYERS}, got {layers}")
    for name in widths:
        if getattr(config, name) > MAX_WIDTH:
            raise UserError(f"{option(name)} must be at most {MAX_WIDTH:,}, got "
                            f"{getattr(config, name):,}")


@dataclass
class RecurrentShape(JsonConfig):
    """What every recurrent model here has: a vocabulary, a cell, stacked layers, sizes, dropout."""

    vocab_size: int
    cell: str = "lstm"
    layers: int = 2
    hidden: int = 256
    emb: int = 0  # 0: same as hidden
    dropout: float = 0.1

    def __post_init__(self) -> None:
        check_types(self)
        check_cell(self.cell)
        require_at_least(self, 1, ("layers", "hidden", "vocab_size"))
        require_at_least(self, 0, ("emb",))
        check_sizes(self, ("hidden", "emb"))
        require_fraction(self, ("dropout",))

    @property
    def emb_size(self) -> int:
        return self.emb or self.hidden
