"""A module's weights ⇄ a safetensors file, for every task (LM, tagger, fill model).

    copy   state_dict ─→ CPU copies of their own, a tied weight once (under its first name),
           which checkpoint.write saves
    check  the file's header (names, shapes) against the module's: nothing is read or allocated,
           so a file that does not fit its config is refused before any model is built
    load   each tensor read on the host, one at a time, and copied into the live parameter:

               file ── get_tensor(name) ──→ host tensor ── copy_ ──→ parameter (any device)

The copy keeps the module's memory layout. That matters on CUDA: cuDNN's `flatten_parameters`
makes every RNN weight a view of one flat buffer, which safetensors' own `load_model` refuses
(tensors sharing storage without covering it) and which replacing the tensors would break.

Ties are found by identity (one Parameter under two names, as `head.weight = embed.weight`), which
also holds for a module built on the meta device; cuDNN's views of one buffer are distinct
Parameters, so they are saved (and loaded) one by one.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from safetensors import SafetensorError, safe_open

if TYPE_CHECKING:  # nothing here calls torch but `load`: check_shapes serves a torch-free reader
    import torch

Shapes = dict[str, tuple[int, ...]]


class Mismatch(ValueError):
    """The file's tensors are not the module's (what differs, in one line)."""


class NotFinite(ValueError):
    """A tensor of the file holds NaN or inf (its name): bytes damaged in place, which no
    header check sees, or weights saved from a run that diverged."""


def check_finite(name: str, values) -> None:
    """Refuse a float tensor (torch or NumPy) with NaN or inf in it."""
    import numpy as np

    if hasattr(values, "is_floating_point"):  # torch
        bad = values.is_floating_point() and not bool(values.isfinite().all())
    else:
        bad = np.issubdtype(values.dtype, np.floating) and not np.isfinite(values).all()
    if bad:
        raise NotFinite(name)


def all_finite(path: Path) -> bool:
    """Whether every float tensor of a whole safetensors file is finite (reads the weights;
    with torch, which reads every float type, bfloat16 too)."""
    try:
        with safe_open(str(path), "pt", device="cpu") as handle:
            for name in handle.keys():  # noqa: SIM118 - safe_open has no __iter__
                check_finite(name, handle.get_tensor(name))
    except (NotFinite, SafetensorError, OSError, ValueError, TypeError):
        return False
    return True


def layout(model: torch.nn.Module) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """(the tensors to save by name, each tied alias → the name it is saved under)."""
    tensors: dict[str, torch.Tensor] = {}
    aliases: dict[str, str] = {}
    first: dict[int, str] = {}
    for name, tensor in model.state_dict(keep_vars=True).items():
        if id(tensor) in first:
            aliases[name] = first[id(tensor)]
        else:
            first[id(tensor)] = name
            tensors[name] = tensor
    return tensors, aliases


def cpu_copies(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """What `save` writes: each tensor once, a contiguous CPU copy of its own."""
    return {name: tensor.detach().to("cpu", copy=True).contiguous()
            for name, tensor in layout(model)[0].items()}


def file_shapes(path: Path) -> Shapes:
    """Names and shapes from the header alone (SafetensorError for a damaged file)."""
    with safe_open(str(path), "numpy") as handle:  # the header only: any framework reads it
        return {name: tuple(handle.get_slice(name).get_shape()) for name in handle.keys()}


def check(path: Path, model: torch.nn.Module) -> None:
    """Mismatch unless the file holds exactly the module's tensors, shape for shape (a module
    built on the meta device will do: only names and shapes are compared)."""
    wanted, aliases = layout(model)
    check_shapes(path, {name: tuple(t.shape) for name, t in wanted.items()}, aliases)


def check_shapes(path: Path, wanted: Shapes, aliases: dict[str, str]) -> None:
    """`check` against names and shapes (each tied alias → the name it is saved under)."""
    saved = file_shapes(path)
    problems = [_saved_as(name, aliases, saved) for name in aliases]
    problems = [p for p in problems if p]
    missing = [n for n in wanted if n not in saved]
    unexpected = [n for n in saved if n not in wanted and n not in aliases]
    shapes = [f"{n} is {_dims(saved[n])} in the file, {_dims(shape)} by the config"
              for n, shape in wanted.items() if n in saved and tuple(shape) != saved[n]]
    if missing:
        problems.append(f"missing {', '.join(missing[:3])}" + (" …" if len(missing) > 3 else ""))
    if unexpected:
        problems.append(f"unexpected {', '.join(unexpected[:3])}"
                        + (" …" if len(unexpected) > 3 else ""))
    if problems or shapes:
        raise Mismatch("; ".join(shapes[:2] + problems))


def _saved_as(alias: str, aliases: dict[str, str], saved: Shapes) -> str:
    """A tied weight must be in the file once, under its first name ('' when it is)."""
    return f"{alias} is stored separately from {aliases[alias]}, which it is tied to" \
        if alias in saved else ""


def _dims(shape) -> str:
    return "×".join(map(str, shape)) or "a scalar"


def load(path: Path, model: torch.nn.Module) -> None:
    """Copy the file's tensors into the module's own (after `check`), one tensor at a time: the
    host holds one tensor, never the whole model, whatever device the module is on."""
    import torch

    check(path, model)
    wanted, _ = layout(model)
    with safe_open(str(path), "pt", device="cpu") as handle, torch.no_grad():
        for name, target in wanted.items():
            tensor = handle.get_tensor(name)
            check_finite(name, tensor)
            target.copy_(tensor)


__all__ = ["Mismatch", "NotFinite", "SafetensorError", "all_finite", "check", "check_finite",
           "check_shapes", "cpu_copies", "file_shapes", "layout", "load"]
