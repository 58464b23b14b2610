"""How many cores this process may keep busy: its CPU affinity, and the container's CPU quota
(cgroup v2 `cpu.max`) where one is set. What torch's threads, the n-gram scorer's threads and
the sampler's two lanes are sized by; torch-free."""

from __future__ import annotations

import math
import os
from pathlib import Path

CPU_MAX = Path("/sys/fs/cgroup/cpu.max")  # "QUOTA PERIOD" in µs, or "max PERIOD"


def usable_cores(cpu_max: Path = CPU_MAX) -> int:
    """Affinity where the OS says (else every core), at most the quota rounded up."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") \
        else os.cpu_count() or 1
    try:
        quota, period = cpu_max.read_text().split()[:2]
        if quota != "max":
            cores = min(cores, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 here, or a file not as documented: the affinity stands
    return cores
