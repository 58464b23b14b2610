"""A parsed command line: every option's value, and which options the user typed.

What was typed matters in one place only, the plan: a typed option is honoured even where a
recipe or a registry corpus would choose otherwise, and refused where it does not apply. The
library never sees it.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from enum import Enum

AUTO_DEFAULTS = frozenset({"precision", "softmax", "device"})  # `auto` is their default


@dataclass(frozen=True)
class Request:
    values: dict[str, object]  # every option of the command (defaults included), plain values
    typed: frozenset[str]  # the ones given on the command line

    @classmethod
    def of(cls, values: dict[str, object], typed: frozenset[str] | set[str]) -> Request:
        return cls({k: _plain(v) for k, v in values.items()}, frozenset(typed))

    def __getitem__(self, name: str) -> object:
        return self.values[name]

    def get(self, name: str, default: object = None) -> object:
        return self.values.get(name, default)

    def typed_fields(self, cls: type) -> dict[str, object]:
        """The typed options that are fields of the config `cls`, with their values."""
        names = {f.name for f in fields(cls)}
        return {k: self.values[k] for k in self.typed if k in names}

    @property
    def chosen(self) -> frozenset[str]:
        """The typed options that choose a value: `auto` typed for an option whose default it is
        (--precision auto) leaves the choice to the plan, as the default does (typed, it
        skipped the recipe's precision and trained the other one)."""
        return frozenset(k for k in self.typed
                         if not (k in AUTO_DEFAULTS and self.values.get(k) == "auto"))

    def fields_of(self, cls: type) -> dict[str, object]:
        """Every option that is a field of `cls` (typed or not), for building it by keyword."""
        names = {f.name for f in fields(cls)}
        return {k: v for k, v in self.values.items() if k in names}


def _plain(value: object) -> object:
    """An option's value as the library takes it (an enum member → its string)."""
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value
