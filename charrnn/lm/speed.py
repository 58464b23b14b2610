"""How fast this machine trains a language model, in each setting: measured, never read from CPU flags.

CPU flags mislead: an Intel Xeon that reports AVX512-BF16 without AMX multiplies bfloat16 at half
its float32 speed, a Zen 4 at 2.8 times it. So `--precision auto` (and `--softmax auto` at word
level) time the real thing, briefly:

    for each candidate setting (fp32 / bf16 autocast; full / adaptive softmax):
        build the run's model (its cell, sizes, vocabulary, tying) in that setting
        one training step on (batch, a few time steps): forward, loss, backward
    alternate the candidates, keep each one's fastest round; stop early once one is clearly
    behind → seconds per step for each, and the ratios

A few rounds of a short window take a fraction of a second; the answer is cached per machine
(CPU model and cores), torch version and shape in <cache>/machine/, so the next run of that shape
reads it; a reading no CPU gives (one precision MAX_PRECISION_LEAD times ahead of the other: a
busy machine) is taken again and never cached, nor one taken while the load average was above
this process's cores and itself (the run header says so). Only the CPU is measured: on CUDA charrnn trains
under float16 autocast (cuDNN's RNNs run in float16 under any autocast) and with the full softmax.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from dataclasses import dataclass, field, replace

import torch

from charrnn import fsutil
from charrnn.cores import usable_cores
from charrnn.devices import autocast, is_out_of_memory, run_threads
from charrnn.errors import UserError, option

BF16_HOPELESS = 0.5  # bf16 matrix products below this share of fp32's: no bf16 model can win
WINDOW_STEPS = 4  # time steps of the measured window: enough for the recurrence to count
# Rounds of every candidate, alternated; each keeps its fastest (another process taking the cores
# slows some rounds, never speeds one up). From the third round on, a candidate whose fastest is
# this much slower than the best is dropped: its verdict will not change.
ROUNDS, SETTLED, CLEARLY_BEHIND = 6, 3, 1.6
MATMUL_PAIRS = 5  # fp32 / bf16 products alternated by bf16_matmul_speed
# bf16 against fp32 on one model, at most this many times faster or slower: beyond it (the
# extremes measured: 2.8× faster on a Zen 4, 2× slower on a Xeon without AMX) the machine was
# busy, not the CPU that fast or slow. Such a measurement is taken again, and never cached.
MAX_PRECISION_LEAD = 4.0


@dataclass
class Measurement:
    """Seconds of one training step (the measured window) per candidate, and the candidates this
    machine cannot run at all, with why (oneDNN has no bf16 LSTM kernel for a CPU without AVX512,
    say)."""

    seconds: dict[str, float]
    unavailable: dict[str, str] = field(default_factory=dict)
    cached: bool = False
    busy: bool = False  # taken while other work shared the cores: this run's only, not kept

    def fastest(self) -> str:
        return min(self.seconds, key=self.seconds.__getitem__)

    def ratio(self, slow: str, fast: str) -> float:
        """How many times faster `fast` ran than `slow` (e.g. 0.5: at half the speed)."""
        return self.seconds[slow] / self.seconds[fast]


def cpu_name() -> str:
    """The CPU model as the OS names it (lscpu's 'Model name'), and the cores this process has."""
    name = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    name = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return f"{name} × {usable_cores()}"


def measure(config, batch: int, candidates: dict[str, tuple],
            window: int | None = None, threads: int = 0) -> Measurement:
    """Time one training step of the LM `config` (a ModelConfig; its softmax and cut-offs are
    each candidate's) on `batch` streams of `window` time steps (None: WINDOW_STEPS), per
    candidate {name: (precision, softmax)}, on the run's `threads` (0: the process's). Cached.

    Not the thread count: timed in one process, switching threads between calls, one thread
    looked faster (1/0.87×) for a 2×256 GRU that trains 1.6× faster on two (AMD EPYC, 2 cores,
    2026-12-04), so `--threads 0` takes every core and a typed --threads decides otherwise."""
    with run_threads(threads):  # (a run on 1 thread was decided by 2 threads' reading)
        return _measured(config, batch, candidates, window or WINDOW_STEPS)


def _measured(config, batch: int, candidates: dict[str, tuple], window: int) -> Measurement:
    key = _key(config, batch, candidates, window)
    path = fsutil.cache_dir() / "machine" / f"{key}.json"
    try:
        saved = json.loads(path.read_text())
        return Measurement(saved["seconds"], saved["unavailable"], cached=True)
    except (OSError, ValueError, KeyError, TypeError):
        pass
    measured = _time_candidates(config, batch, candidates, window)
    if not plausible(measured, candidates):  # a busy moment: once more, each its fastest
        again = _time_candidates(config, batch, candidates, window)
        unavailable = {**measured.unavailable, **again.unavailable}
        measured = Measurement({k: min(v, again.seconds.get(k, v)) for k, v in
                                measured.seconds.items() if k not in unavailable}, unavailable)
        if not plausible(measured, candidates):
            return replace(measured, busy=True)  # this run's only: the next one measures again
    if machine_busy():  # (another training beside it: bf16's 1.35× lead read as 0.68×, and
        return replace(measured, busy=True)  # kept, every later run took the other recipe)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fsutil.write_json_atomic(path, {"cpu": cpu_name(), "torch": torch.__version__,
                                        "batch": batch, "seconds": measured.seconds,
                                        "unavailable": measured.unavailable})
    except Exception:  # a read-only cache only costs the next run its measurement again
        pass
    return measured


def machine_busy() -> bool:
    """More runnable work over the last minute than this process's cores and itself (another
    training, a test suite): a reading then tells how the cores were shared, not how fast they
    are. (The load average is the whole host's: in a container on a busy host, nothing is kept.)"""
    try:
        return os.getloadavg()[0] > usable_cores() + 1
    except (AttributeError, OSError):  # (no load average: Windows)
        return False


def plausible(measured: Measurement, candidates: dict[str, tuple]) -> bool:
    """No precision ahead of another (same softmax) by more than MAX_PRECISION_LEAD."""
    timed = {name: candidates[name] for name in measured.seconds}
    for a, (precision_a, softmax_a) in timed.items():
        for b, (precision_b, softmax_b) in timed.items():
            if softmax_a == softmax_b and precision_a != precision_b and \
                    measured.ratio(a, b) > MAX_PRECISION_LEAD:
                return False
    return True


def _key(config, batch: int, candidates: dict, window: int) -> str:
    # What changes no step's work is no key: dropouts, and the reading direction (a backward
    # LM reads reversed ids; timed apart, a fill group's pair got opposite precisions by noise).
    shape = {k: v for k, v in config.to_json().items()
             if k not in ("dropout", "weight_drop", "embed_drop", "locked_dropout", "direction")}
    text = json.dumps([cpu_name(), torch.__version__, torch.get_num_threads(), shape, batch,
                       sorted(candidates.items()), window], sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _time_candidates(config, batch: int, candidates: dict[str, tuple],
                     window: int) -> Measurement:
    from charrnn.lm.model import RNNLM  # the real model: what is timed is what will train

    cpu = torch.device("cpu")
    steps, unavailable = {}, {}
    gate = bf16_matmul_speed() if any(c[0] == "bf16" for c in candidates.values()) else 1.0
    if gate < BF16_HOPELESS:  # ruling bf16 out for good (cached): confirmed by a second look
        gate = max(gate, bf16_matmul_speed())
    for name, (precision, softmax) in candidates.items():
        if precision == "bf16" and gate < BF16_HOPELESS and len(candidates) > 1:
            # no bf16 arithmetic in this CPU: a bf16 model step would take seconds to time
            unavailable[name] = f"this CPU multiplies bfloat16 at {gate:.2f}× its float32 speed"
            continue
        model = RNNLM(replace(config, softmax=softmax, cutoffs=config.cutoffs if
                              softmax == "adaptive" else [], dropout=0.0))
        steps[name] = _step(model, batch, precision, cpu, window)
        try:  # a first, untimed call: allocations, oneDNN's kernel choice
            steps[name]()
        except RuntimeError as exc:  # e.g. "could not create a primitive descriptor"
            if is_out_of_memory(exc):  # no precision would help: the step is too big
                raise UserError(f"one training step of this model at {option('batch_size')} {batch} does "
                                f"not fit in this machine's memory: use a smaller {option('batch_size')} "
                                f"or {option('seq_len')}, or a smaller model") from exc
            unavailable[name] = " ".join(str(exc).split())[:200]
            del steps[name]
    best: dict[str, float] = {}
    for round_ in range(1, ROUNDS + 1 if steps else 0):
        for name in list(steps):
            started = time.perf_counter()
            steps[name]()
            best[name] = min(best.get(name, float("inf")), time.perf_counter() - started)
        fastest = min(best.values())
        if round_ >= SETTLED:
            for name in [n for n in steps if best[n] > CLEARLY_BEHIND * fastest]:
                del steps[name]
        if len(steps) == 1:
            break
    return Measurement(best, unavailable)


def _step(model, batch: int, precision: str, device: torch.device, window: int):
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(model.config.vocab_size, (batch, window + 1), generator=generator)
    inputs, targets = ids[:, :-1], ids[:, 1:]

    def run() -> None:
        with autocast(device, precision):
            loss = model(inputs, None, targets)[0].mean()
        loss.backward()
        model.zero_grad(set_to_none=True)

    return run


def bf16_matmul_speed() -> float:
    """bf16 matrix-product speed as a share of fp32's on this CPU, in tens of milliseconds: CPUs
    without bf16 arithmetic emulate it at a few percent of fp32, and are not timed further. Each
    dtype keeps its fastest of a few alternated products, and "hopeless" needs two pairs: one
    product slowed by another process looked like a CPU without bf16 (0.07× on a Zen 4)."""
    generator = torch.Generator().manual_seed(0)
    a = torch.randn(128, 512, generator=generator)
    b = torch.randn(512, 512, generator=generator)
    best: dict[torch.dtype, float] = {}
    for pair in range(1, MATMUL_PAIRS + 1):
        for dtype in (torch.float32, torch.bfloat16):
            x, y = a.to(dtype), b.to(dtype)
            started = time.perf_counter()
            x @ y
            best[dtype] = min(best.get(dtype, float("inf")), time.perf_counter() - started)
        if pair >= 2 and best[torch.bfloat16] > 10 * best[torch.float32]:
            break  # hopeless: no need to wait for more emulated products
    return best[torch.float32] / best[torch.bfloat16]
