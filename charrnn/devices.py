"""Device choice and mixed precision, in one place."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator

import torch

from charrnn.errors import UserError

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str) -> torch.device:
    """auto → cuda, then mps, then cpu; an unavailable explicit choice is a clear error."""
    kind = name.split(":")[0]
    if kind not in DEVICES:
        raise UserError(f"--device must be one of {', '.join(DEVICES)} (cuda:N too), not {name!r}")
    if kind == "auto":
        if torch.cuda.is_available():
            return cuda_device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UserError("--device cuda was asked for, but CUDA is not available here (no GPU, "
                            "or a CPU-only torch build): use --device cpu or auto")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"--device {name}: only {torch.cuda.device_count()} CUDA device(s)")
        return cuda_device(device)
    if kind == "mps" and not (getattr(torch.backends, "mps", None)
                              and torch.backends.mps.is_available()):
        raise UserError("--device mps was asked for, but Apple MPS is not available: use cpu")
    return torch.device(name)


def cuda_device(device: torch.device | str) -> torch.device:
    """A CUDA device with its index: plain "cuda" means the current GPU. torch.cuda.set_device and
    others refuse a device without an index (ValueError), so every CUDA device we hand out has one."""
    device = torch.device(device)
    if device.index is None:
        return torch.device("cuda", torch.cuda.current_device())
    return device


def host_to_device(array, device: torch.device) -> torch.Tensor:
    """A host array (numpy or CPU tensor) on `device`. On CUDA through pinned memory and without
    blocking: a copy from pageable memory waits for all the GPU's queued work, a sync per batch.
    (The caching host allocator keeps the pinned block until the copy has run.)"""
    tensor = torch.as_tensor(array)
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


def autocast(device: torch.device, enabled: bool = True) -> contextlib.AbstractContextManager:
    """float16 autocast on CUDA; full precision elsewhere.

    float16, not bfloat16: under any CUDA autocast PyTorch runs the cuDNN RNN kernel in float16
    (aten/src/ATen/cudnn/AutocastRNN.cpp casts to kHalf whatever dtype was asked for), so the
    recurrence is float16 either way. Naming it keeps the rest consistent and tells training to
    scale the loss (`loss_scaler`), so that small gradients are not flushed to zero in float16.
    """
    if enabled and device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.float16)
    return contextlib.nullcontext()


def loss_scaler(device: torch.device) -> torch.amp.GradScaler:
    """PyTorch's dynamic loss scaling where autocast computes in float16 (CUDA); a no-op elsewhere.
    With a fused optimizer it adds no host sync: the skip-on-overflow check stays on the GPU."""
    return torch.amp.GradScaler(device.type, enabled=device.type == "cuda")


# How allocators word "no memory": CUDA's OutOfMemoryError, and the CPU allocator's RuntimeError
# ("DefaultCPUAllocator: can't allocate memory" on Linux, "not enough memory" on Windows).
_OOM_WORDS = ("out of memory", "can't allocate memory", "cannot allocate memory",
              "not enough memory")


def is_out_of_memory(exc: BaseException) -> bool:
    text = str(exc).lower()
    return isinstance(exc, torch.OutOfMemoryError) or any(w in text for w in _OOM_WORDS)


# ---- will the model fit? ---------------------------------------------------------------------
# Bytes per parameter to train: float32 weights, gradients and two AdamW moments (the rollback
# snapshot and activations come on top), so a model above this certainly does not fit. To load one
# for sampling or scoring: its float32 weights.
TRAIN_BYTES_PER_PARAM = 16
LOAD_BYTES_PER_PARAM = 4


def device_memory(device: torch.device) -> int | None:
    """The device's total memory in bytes, or None where it cannot be told."""
    if device.type == "cuda":
        return torch.cuda.mem_get_info(device)[1]
    if device.type == "cpu":
        try:
            return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
        except (AttributeError, ValueError, OSError):  # no sysconf (Windows)
            return None
    return None


def too_big(params: int | None, device: torch.device, total: int | None = None,
            per_param: int = TRAIN_BYTES_PER_PARAM, advice: str | None = None) -> UserError:
    have = f" ({total / 1e9:,.1f} GB)" if total else ""
    size = ("more parameters than can be counted" if params is None else
            f"{params:,} parameters, ~{params * per_param / 1e9:,.1f} GB to "
            f"{'train' if per_param == TRAIN_BYTES_PER_PARAM else 'load'}")
    return UserError(f"the model ({size}) does not fit in memory on {device}{have}: "
                     f"{advice or 'use a smaller --hidden, --layers or --emb'}")


def count_parameters(build: Callable[[], torch.nn.Module]) -> int | None:
    """The parameter count of the model `build` makes, counted on the meta device (nothing is
    allocated); None when its sizes overflow even that (a hidden size of 10^12)."""
    try:
        with torch.device("meta"):
            return sum(p.numel() for p in build().parameters())
    except (RuntimeError, OverflowError):  # "Storage size calculation overflowed"
        return None


def require_fits(build: Callable[[], torch.nn.Module], device: torch.device,
                 per_param: int = TRAIN_BYTES_PER_PARAM, advice: str | None = None) -> int:
    """The parameter count of the model `build` makes, refused with a clear error when it cannot
    fit in the device's memory (training it: 16 bytes a parameter; loading it: 4). Counted on the
    meta device: a CPU allocation of terabytes fails with an allocator error, and a merely too
    large one may succeed through overcommit and end at the OOM killer."""
    params = count_parameters(build)
    total = device_memory(device)
    if params is None or (total is not None and params * per_param > total):
        raise too_big(params, device, total, per_param, advice)
    return params


@contextlib.contextmanager
def out_of_memory_is_too_big(params: int, device: torch.device) -> Iterator[None]:
    """Building the model and its optimizer: a model that fits on paper may still not fit beside
    what else is in memory; that allocation failure gets the same advice as require_fits."""
    try:
        yield
    except RuntimeError as exc:
        if is_out_of_memory(exc):
            raise too_big(params, device) from exc
        raise
