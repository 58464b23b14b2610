"""Optimizers by name, with one rule for weight decay, and what of their state follows the machine.

Weight decay applies to matrices only: biases, norms and embedding tables are not shrunk (as in
nanoGPT; the rows of rare tokens would only shrink). A tied output matrix is the embedding, so it
is not decayed either.
"""

from __future__ import annotations

import functools

import torch
from torch import nn

from charrnn.training.config import RPROP_STEPS, LoopConfig

# Settings of how an optimizer computes, not what: they follow this machine, not the checkpoint
# (a CPU-trained run resumed on CUDA gets the fused kernel, and the other way round).
KERNEL_KEYS = ("fused", "foreach", "capturable")
BETAS = (0.9, 0.99)
# Rprop (Riedmiller & Braun 1993) moves each weight by a step of its own, grown ×1.2 while its
# gradient keeps its sign and halved when the sign flips; the gradient's size is never used, so
# weight decay and clipping change nothing (the plan refuses them). It is a full-batch method: a
# sign flip means "stepped over a minimum" only when each gradient is the whole objective's, which
# holds when one step covers the training text (--batch-size × --seq-len ≥ its tokens, the small
# corpora of the tutorials that use it); on smaller batches it follows each batch's noisy sign and
# its steps shrink. Steps stay within [1e-6, 0.05]: a weight of an RNN moved by 50 (torch's
# default bound) saturates every gate.


def param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    tables = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    params = list(model.parameters())  # tied parameters once
    decay = [p for p in params if p.dim() >= 2 and id(p) not in tables]
    keep = [p for p in params if not (p.dim() >= 2 and id(p) not in tables)]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": keep, "weight_decay": 0.0}]


def make_optimizer(model: nn.Module, cfg: LoopConfig, device: torch.device) -> torch.optim.Optimizer:
    """The optimizer `cfg.optim` names, fused where PyTorch has the kernel (CUDA, and the CPU since
    torch 2.4: one loop over all parameters instead of one small op each, ~20% of a word-level
    CPU step)."""
    groups = param_groups(model, cfg.weight_decay)
    fused = _fused_on(device.type)
    lr = cfg.base_lr
    if cfg.optim == "adamw":
        return torch.optim.AdamW(groups, lr=lr, betas=BETAS, fused=fused)
    if cfg.optim == "adam":
        return torch.optim.Adam(groups, lr=lr, betas=BETAS, fused=fused)
    if cfg.optim == "rprop":  # resilient backpropagation: see RPROP_STEPS
        return torch.optim.Rprop(groups, lr=lr, etas=(0.5, 1.2), step_sizes=RPROP_STEPS)
    if cfg.optim == "rmsprop":  # char-rnn's optimiser (alpha = decay rate 0.95); not fused, so
        # on CUDA the loss scaler reads its overflow flag back once a step
        return torch.optim.RMSprop(groups, lr=lr, alpha=0.95, momentum=cfg.momentum)
    return torch.optim.SGD(groups, lr=lr, momentum=cfg.momentum, fused=fused)


def with_kernels(saved: list[dict], current: list[dict]) -> list[dict]:
    """Saved parameter groups with this machine's kernel settings."""
    if len(saved) != len(current):
        return saved  # load_state_dict says what does not fit
    return [{**old, **{k: new[k] for k in KERNEL_KEYS if k in new}}
            for old, new in zip(saved, current, strict=True)]


def optimizer_tensors(optimizer: torch.optim.Optimizer) -> dict[str, torch.Tensor]:
    """The optimizer's per-parameter state as flat named tensors (safetensors holds no dicts)."""
    return {f"optim.{pid}.{key}": torch.as_tensor(value)
            for pid, entry in optimizer.state_dict()["state"].items()
            for key, value in entry.items()}


def load_optimizer(optimizer: torch.optim.Optimizer, tensors: dict[str, torch.Tensor],
                   param_groups_saved: list[dict]) -> None:
    """The inverse of optimizer_tensors (raises KeyError/ValueError/RuntimeError on a misfit)."""
    state: dict[int, dict] = {}
    for name, value in tensors.items():
        if name.startswith("optim."):
            _, pid, key = name.split(".", 2)
            # As loaded: load_state_dict puts each value where its parameter's policy wants it (a
            # non-fused Adam keeps `step` on the CPU: on the GPU it would cost a host sync per
            # parameter per step).
            state.setdefault(int(pid), {})[key] = value
    optimizer.load_state_dict({"state": state, "param_groups": with_kernels(
        param_groups_saved, optimizer.param_groups)})


@functools.cache
def _fused_on(device_type: str) -> bool:
    """Whether this torch has fused Adam/AdamW/SGD kernels for the device (CPU: torch >= 2.4)."""
    if device_type != "cpu":
        return device_type == "cuda"
    probe = torch.zeros(1, requires_grad=True)
    try:
        torch.optim.SGD([probe], lr=0.1, fused=True)
        torch.optim.AdamW([probe], lr=0.1, fused=True)
    except (RuntimeError, ValueError, TypeError):
        return False
    return True
