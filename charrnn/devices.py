"""Device choice and mixed precision, in one place."""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterator

import torch

from charrnn.errors import RankError, UserError, option

DEVICES = ("auto", "cpu", "cuda", "mps")


def resolve_device(name: str) -> torch.device:
    """auto → cuda, then mps, then cpu; an unavailable explicit choice is a clear error."""
    kind = name.split(":")[0]
    index = name.partition(":")[2]
    # torch takes cpu:7 and ignores the 7; cpu:0 is the one CPU device (and runs saved it)
    if kind not in DEVICES or (kind != "cuda" and ":" in name and (kind == "auto" or index != "0")
                               ) or (kind == "cuda" and ":" in name and not index.isdigit()):
        raise UserError(f"{option('device')} must be one of {', '.join(DEVICES)} (cuda:N too), "
                        f"not {name!r}")
    if kind == "auto":
        if torch.cuda.is_available():
            return cuda_device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if kind == "cuda":
        if not torch.cuda.is_available():
            raise UserError(f"{option('device')} {name} was asked for, but CUDA is not available "
                            "here (no GPU, or a CPU-only torch build): use "
                            f"{option('device')} cpu or auto")
        device = torch.device(name)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UserError(f"{option('device')} {name}: only {torch.cuda.device_count()} CUDA "
                            "device(s)")
        return cuda_device(device)
    if kind == "mps" and not (getattr(torch.backends, "mps", None)
                              and torch.backends.mps.is_available()):
        raise UserError(f"{option('device')} mps was asked for, but Apple MPS is not available: "
                        "use cpu")
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


def resolve_precision(name: str, device: torch.device) -> tuple[str, str]:
    """(the precision training computes in: fp32 | bf16 | fp16, why) for a precision name.

    CUDA: float16 autocast with loss scaling (PyTorch runs cuDNN RNNs in float16 under any autocast,
    aten/src/ATen/cudnn/AutocastRNN.cpp), or fp32. CPU: what was asked; `auto` reaching the library
    undecided is float32 — the command line decides it by measuring the model on this machine
    (charrnn.plan.measured), never by CPU flags. Master weights, optimizer state and the loss stay
    float32 in every case."""
    if device.type == "cuda":
        if name == "bf16":
            raise UserError(f"{option('precision')} bf16 does not apply on CUDA: PyTorch runs cuDNN RNNs in "
                            "float16 under any autocast, which charrnn pairs with loss scaling "
                            f"({option('precision')} auto); use auto or fp32")
        return ("fp32", "asked for") if name == "fp32" else ("fp16", "CUDA: float16 autocast")
    if name == "auto":
        return "fp32", f"{device.type}: float32"
    return name, "asked for"


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def autocast(device: torch.device, precision: str = "fp32") -> contextlib.AbstractContextManager:
    """The autocast region of a precision from resolve_precision ("fp32": none)."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device.type, dtype=_DTYPES[precision])


def loss_scaler(device: torch.device, precision: str = "fp32") -> torch.amp.GradScaler:
    """PyTorch's dynamic loss scaling where autocast computes in float16 (CUDA): small gradients
    are not flushed to zero. A no-op elsewhere (bfloat16 has float32's range). With a fused
    optimizer it adds no host sync: the skip-on-overflow check stays on the GPU."""
    return torch.amp.GradScaler(device.type, enabled=precision == "fp16")


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
    smaller = f"use a smaller {option('hidden')}, {option('layers')} or {option('emb')}"
    size = ("more parameters than can be counted" if params is None else
            f"{params:,} parameters, ~{params * per_param / 1e9:,.1f} GB to "
            f"{'train' if per_param == TRAIN_BYTES_PER_PARAM else 'load'}")
    return UserError(f"the model ({size}) does not fit in memory on {device}{have}: "
                     f"{advice or smaller}")


def skeleton(build: Callable[[], torch.nn.Module]) -> torch.nn.Module | None:
    """The module `build` makes, on the meta device (shapes only, nothing allocated); None when
    its sizes overflow even that (a hidden size of 10^12)."""
    try:
        with torch.device("meta"):
            return build()
    except (RuntimeError, OverflowError):  # "Storage size calculation overflowed"
        return None


def count_parameters(build: Callable[[], torch.nn.Module]) -> int | None:
    """The parameter count of the model `build` makes, counted on the meta device."""
    model = skeleton(build)
    return None if model is None else sum(p.numel() for p in model.parameters())


def require_fits(build: Callable[[], torch.nn.Module], device: torch.device,
                 per_param: int = TRAIN_BYTES_PER_PARAM, advice: str | None = None) -> int:
    """The parameter count of the model `build` makes, refused with a clear error when it cannot
    fit in the device's memory (training it: 16 bytes a parameter; loading it: 4), nor, when it is
    built on the host first and then moved to a GPU, in the host's (4). Counted on the meta device:
    a CPU allocation of terabytes fails with an allocator error, and a merely too large one may
    succeed through overcommit and end at the OOM killer."""
    params = count_parameters(build)
    _require_bytes(params, per_param, device, advice)
    if device.type != "cpu":
        _require_bytes(params, LOAD_BYTES_PER_PARAM, torch.device("cpu"), advice)
    assert params is not None  # _require_bytes refuses None
    return params


def require_loadable(build: Callable[[], torch.nn.Module], device: torch.device,
                     advice: str) -> torch.nn.Module:
    """The model `build` makes, on the meta device, once it is sure to fit where a checkpoint
    loads it: its weights on `device` (built there), and on the host the largest tensor (the
    loader reads one tensor at a time)."""
    model = skeleton(build)
    tensors = [] if model is None else list(model.state_dict().values())
    params = None if model is None else sum(t.numel() for t in tensors)
    _require_bytes(params, LOAD_BYTES_PER_PARAM, device, advice)
    if device.type != "cpu" and tensors:
        largest = max(t.numel() for t in tensors)
        _require_bytes(largest, LOAD_BYTES_PER_PARAM, torch.device("cpu"), advice)
    assert model is not None
    return model


def _require_bytes(params: int | None, per_param: int, device: torch.device,
                   advice: str | None) -> None:
    total = device_memory(device)
    if params is None or (total is not None and params * per_param > total):
        raise too_big(params, device, total, per_param, advice)


@contextlib.contextmanager
def out_of_memory_is_too_big(params: int, device: torch.device) -> Iterator[None]:
    """Building the model and its optimizer: a model that fits on paper may still not fit beside
    what else is in memory; that allocation failure gets the same advice as require_fits."""
    try:
        yield
    except RuntimeError as exc:
        if is_out_of_memory(exc):  # (under torchrun: this rank's GPU, maybe its alone)
            raise RankError(str(too_big(params, device))) from exc
        raise


def keeps_global_rng(func: Callable) -> Callable:
    """A library entry point leaves torch's global random state as its caller had it: training
    seeds it with its config's seed, and building a model draws from it. (The CUDA device's
    state too where CUDA is already in use; one started inside the call is new anyway.)"""
    @functools.wraps(func)
    def kept(*args, **kwargs):
        devices = [torch.cuda.current_device()] if torch.cuda.is_initialized() else []
        with torch.random.fork_rng(devices=devices):
            return func(*args, **kwargs)
    return kept


@contextlib.contextmanager
def run_threads(threads: int) -> Iterator[None]:
    """torch on a run's `threads` threads meanwhile (0: as it is; at most the CPUs here: a run
    resumed on a smaller machine keeps its own count), the process's own again after."""
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(min(threads, os.cpu_count() or 1))
    try:
        yield
    finally:
        torch.set_num_threads(before)  # (a library caller's)
