"""How many threads make one CPU stream's chunks: one lane, or two that split every product.

Two lanes (cpukernel.run_chunk) each take half of every product's rows and meet where the next
product reads the whole of the last; on two free cores a 2×256 LSTM's chunk then takes about
0.6 of one lane's time. But the second lane costs the caller its core: with one lane the next
chunk is drawn ahead in a worker while the caller writes or draws this one (cpustream.PREFETCH),
with two the caller waits for each. Which is faster depends on the machine, its load, the model
and what the caller does between chunks, so it is measured as the caller sees it — seconds from
one chunk handed to the next — in blocks of each kind, and measured again from time to time:

    chunks:  1 1 1 1 │ 2 2 2 2 │ the faster … │ the other ×4 │ the faster … │ the other ×4 │ …
             probe     probe                    at chunk 16, 32,           every REPROBE:
                                                64, 128 (counted again     the machine may
                                                after a pause) while one   have changed
                                                lane won or the two were
                                                close

Early again where one lane won or the kinds measured close, because a second core that was
idle can run slow for its first tens of milliseconds of work: on a 2-vCPU Zen 4 (2026-12-05)
two lanes took 8.3–8.6 ms a 128-token chunk, no faster than one lane, until one stall of
30–60 ms, then 4.2–4.4 ms for the rest of the stream (the threads on distinct CPUs throughout);
with only the probe at chunks 4–7, 20,000 tokens kept one lane in half the streams.

The text does not depend on the choice: each row's sum has the same bits either way (tested).
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable

import numpy as np

BLOCK = 4  # chunks per measured block of one kind
FIRST_REPROBE = 16  # the kind not in use measured again at this chunk, then at twice that, …
REPROBE = 256  # … up to here (while in doubt: _doubtful), then once every REPROBE chunks
CLOSE = 1.25  # medians within this ratio: measured again early

SYNC_STRIDE = 16  # int64s between the lanes' counters (cpukernel._meet): one 128-byte line each
RELEASED = 2**62  # a lane's counter past every meeting: the other then runs through alone
PAUSE = 8.0  # an interval this many times the faster kind's median is a pause, not a chunk

_workers: dict[str, object] = {}  # worker(name)
_two_lanes = threading.Lock()


class LaneChoice:
    """lanes() for each chunk started, in order; handed(lanes) when a chunk reaches the caller
    (its seconds since the last one are the cost of that chunk's kind); reset() after a stop."""

    def __init__(self, cores: int) -> None:
        self.cores, self.started, self.last = cores, 0, None
        self.woke = 0  # the chunk count at the stream's start or its last pause (or stop)
        self.probing: int | None = None  # the kind a block of measurement is of, and its end
        self.probe_end = 0
        self.seconds: dict[int, deque[float]] = {1: deque(maxlen=BLOCK), 2: deque(maxlen=BLOCK)}

    def lanes(self) -> int:
        if self.cores < 2:
            return 1
        n, self.started = self.started, self.started + 1
        if n < 2 * BLOCK:
            return 1 + n // BLOCK
        early = _early(n - self.woke) and self._doubtful()  # a core may still be waking
        if self.probing is None and (early or n % REPROBE == 0):
            self.probing, self.probe_end = 3 - self.best(), n + BLOCK
        if self.probing is not None and n < self.probe_end:  # kept while best() changes
            return self.probing
        self.probing = None
        return self.best()

    def best(self) -> int:
        """The kind whose last block handed chunks faster (1 until both are measured)."""
        one, two = (median(self.seconds[k]) for k in (1, 2))
        return 2 if two < one else 1

    def _doubtful(self) -> bool:
        """Worth measuring again early: one lane chosen (two may have met a waking core), or
        the kinds within CLOSE."""
        one, two = (median(self.seconds[k]) for k in (1, 2))
        return one <= two or max(one, two) < CLOSE * min(one, two)

    def handed(self, lanes: int, now: float) -> None:
        """A chunk of `lanes` reached the caller at `now` (lanes 0: not one to measure). An
        interval far longer than either kind takes is the caller pausing (the live view's
        space bar), not the chunk: it is not counted."""
        if lanes and self.last is not None:
            interval = now - self.last
            if interval < PAUSE * min(median(self.seconds[1]), median(self.seconds[2])):
                self.seconds[lanes].append(interval)
            else:  # the second core may have idled meanwhile: early measurements again
                self.woke = self.started
        self.last = now

    def reset(self) -> None:
        """A stop or a new prime: the next interval would include a pause, not a chunk."""
        self.last, self.woke = None, self.started


def _early(m: int) -> bool:
    """Whether the m-th chunk since a start or pause may measure the other kind early: each
    power of two from FIRST_REPROBE up to REPROBE (then only every REPROBE chunks)."""
    return FIRST_REPROBE <= m < REPROBE and m & (m - 1) == 0


def median(values: deque[float]) -> float:
    """A kind's median seconds a chunk (statistics.median's import costs the start-up 8 ms);
    inf for none."""
    ordered = sorted(values)
    middle = len(ordered) // 2
    if not ordered:
        return float("inf")
    return ordered[middle] if len(ordered) % 2 else (ordered[middle - 1] + ordered[middle]) / 2


def run(kernel: Callable, args: tuple, lanes: int, scratch: tuple[np.ndarray, ...]) -> None:
    """kernel(*args, lane, lanes, *scratch, sync): lane 1 in a worker thread, lane 0 here. One
    stream at a time has two lanes (another meanwhile gets one: three spinning threads on two
    cores would wait a time slice at each meeting)."""
    sync = np.zeros(2 * SYNC_STRIDE, np.int64)
    if lanes == 1 or not _two_lanes.acquire(blocking=False):
        kernel(*args, 0, 1, *scratch, sync)
        return
    try:
        other = None
        try:
            other = worker("charrnn-lane").submit(_lane_one, kernel, args, scratch, sync)
            kernel(*args, 0, 2, *scratch, sync)
        except BaseException:  # a Ctrl-C before lane 0 got to the kernel: free lane 1
            sync[0] = RELEASED
            raise
        finally:
            if other is not None:
                other.result()
    finally:
        _two_lanes.release()


def _lane_one(kernel: Callable, args: tuple, scratch: tuple, sync: np.ndarray) -> None:
    try:
        kernel(*args, 1, 2, *scratch, sync)
    except BaseException:  # lane 0 must not wait for ever at its next meeting
        sync[SYNC_STRIDE] = RELEASED
        raise


def worker(name: str):
    """A pool of one thread, made at its first use (the import costs 12 ms, which samples too
    short to reach the kernel do not pay): "charrnn-lane" runs every stream's lane 1,
    "charrnn-sample" the chunks drawn ahead (cpustream) — two threads, so that a lane never
    queues behind a chunk drawn ahead."""
    if name not in _workers:
        from concurrent.futures import ThreadPoolExecutor

        _workers[name] = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)
    return _workers[name]
