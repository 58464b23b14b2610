"""Configs read back from JSON (checkpoint.json, run.json): every field checked against its type
before the dataclass checks its range, so a damaged or hostile file is one clear error, never a
model of absurd size or a crash deep inside torch. Torch-free."""

from __future__ import annotations

import numbers
from dataclasses import MISSING, asdict, fields
from pathlib import PurePath
from typing import TypeVar

from charrnn.errors import UserError

T = TypeVar("T")


def is_int(value: object) -> bool:
    """A whole number (numpy's too), not a bool."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


_TYPES = {
    "int": is_int,
    "float": lambda v: isinstance(v, numbers.Real) and not isinstance(v, bool),
    "bool": lambda v: isinstance(v, bool),
    "str": lambda v: isinstance(v, str),
    "list[int]": lambda v: isinstance(v, list) and all(map(is_int, v)),
    "list[str]": lambda v: isinstance(v, list) and all(isinstance(x, str) for x in v),
}


def _misfit(value: object, annotation: str) -> bool:
    """Whether `value` is not of the field type `annotation` (an unlisted type: not checked)."""
    check = _TYPES.get(annotation.removesuffix(" | None"))
    return check is not None and not (check(value) or
                                      (annotation.endswith(" | None") and value is None))


def _plain(value: object, annotation: str) -> object:
    """A library caller's value as the field's own Python type where it is one in another guise
    (numpy's numbers, a tuple or one path for a list, a Path for a str): JSON and torch take
    only those. Anything else is returned as it is, for `_misfit` to judge."""
    kind = annotation.removesuffix(" | None")
    if isinstance(value, bool) or value is None:
        return value
    if kind == "int" and isinstance(value, numbers.Integral):
        return int(value)
    if kind == "float" and isinstance(value, numbers.Real):
        return value if isinstance(value, int) else float(value)
    if kind == "list[int]" and isinstance(value, (list, tuple)) and all(map(is_int, value)):
        return [int(v) for v in value]
    if kind == "list[str]":
        items = [value] if isinstance(value, (str, PurePath)) else value
        if isinstance(items, (list, tuple)) and all(isinstance(v, (str, PurePath)) for v in items):
            return [str(v) for v in items]
    return value


def check_types(config: object) -> None:
    """Every field of a config dataclass built in Python (a library call) of its declared type,
    made plain (`_plain`), before its ranges are checked: `hidden="32"` is one clear error, not a
    TypeError from a comparison or deep inside torch, and `np.int64(16)` is 16."""
    for f in fields(config):  # type: ignore[arg-type]
        value = _plain(getattr(config, f.name), str(f.type))
        if _misfit(value, str(f.type)):
            raise UserError(f"{type(config).__name__}: {f.name} must be {f.type}, not {value!r}")
        object.__setattr__(config, f.name, value)


def typed_config(cls: type[T], data: object, where: str) -> T:
    """`cls(**data)` for the fields `cls` knows, after checking each value's type; fields `data`
    lacks take their defaults (older files), a missing required field is an error."""
    if not isinstance(data, dict):
        raise UserError(f"{where} is not a JSON object: the file is damaged")
    known = {}
    for f in fields(cls):  # type: ignore[arg-type]
        if f.name not in data:
            if f.default is MISSING and f.default_factory is MISSING:
                raise UserError(f"{where} lacks {f.name!r}: the file is damaged")
            continue
        value, annotation = data[f.name], str(f.type)
        if _misfit(value, annotation):
            raise UserError(f"{where}: {f.name} must be {annotation}, not {value!r}: the file is "
                            "damaged")
        known[f.name] = value
    try:
        return cls(**known)
    except UserError as exc:  # a value out of range: say where it came from (a check this
        # version added refuses what an older one saved: not damage, but no way on either)
        raise UserError(f"{where}: {exc}: the file is damaged, or was written by an older "
                        "charrnn that allowed it (train a new run)") from exc


class JsonConfig:
    """A config dataclass as checkpoint.json holds it (`typed_config` reads one back checked)."""

    def to_json(self) -> dict:
        return asdict(self)  # type: ignore[call-overload]

    @classmethod
    def from_json(cls, data: dict):
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})  # type: ignore[attr-defined]
