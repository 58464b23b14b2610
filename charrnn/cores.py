"""How many cores this process may keep busy: its CPU affinity, and the container's CPU quota
(cgroup v2 `cpu.max`) where one is set. The n-gram scorer's threads and the speed cache's
machine name count them; the sampler's two lanes ask for whole ones. And whether torchrun
started it, with other processes sharing the work. Torch-free."""

from __future__ import annotations

import math
import os
from pathlib import Path


def under_torchrun() -> bool:
    """Started by torchrun: it sets TORCHELASTIC_RUN_ID for every rank, even of one process,
    and WORLD_SIZE (read without torch: `charrnn --help` and the n-gram commands import none)."""
    return "TORCHELASTIC_RUN_ID" in os.environ or \
        os.environ.get("WORLD_SIZE", "1").strip() not in ("", "0", "1")


def other_rank() -> str:
    """Under torchrun, this process's rank where it is not rank 0; else ""."""
    rank = os.environ.get("RANK", "0").strip() if under_torchrun() else "0"
    return "" if rank in ("", "0") else rank


CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # "QUOTA PERIOD" in µs, or "max PERIOD"


def usable_cores(cpu_max: Path = CPU_MAX, whole: bool = False) -> int:
    """Affinity where the OS says (else every core), at most the quota: rounded up for threads
    that sleep when idle, down (`whole`) for threads that spin while they wait — a lane on 1.5
    cores' quota would be throttled at every meeting."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            share = int(quota) / int(period)
            cores = min(cores, max(1, math.floor(share) if whole else math.ceil(share)))
    except (OSError, ValueError):
        pass  # no cgroup v2 here, or a file not as documented: the affinity stands
    return cores
