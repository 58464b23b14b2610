"""How often checkpoints are written: never more than a tenth of the run's time.

last/ is written at every evaluation and best/ whenever the metric improved, unless the previous
write was so recent that writing again would spend more than `SHARE` of the time since on I/O (a
~57M-parameter GPU model writes ~1.4 GB per checkpoint; evaluating every 10 s would otherwise spend
most of a short budget saving). A best/ that must wait is kept in host memory and written at the
next due point, and always at the end: an interrupted run loses at most the improvement since.
"""

from __future__ import annotations

import time

SHARE = 0.1


class SaveClock:
    def __init__(self, share: float = SHARE) -> None:
        self.share, self.cost, self.ended = share, 0.0, None

    def record(self, seconds: float) -> None:
        self.cost, self.ended = seconds, time.monotonic()

    def due(self) -> bool:
        if self.ended is None:
            return True
        return time.monotonic() - self.ended >= self.cost * (1 / self.share - 1)
