"""Two lanes making one CPU stream's chunks (charrnn/lm/cpulanes.py, cpukernel.run_chunk): the
same bits as one lane for every cell and option, through stops and NaN; the choice of lanes
measured as the caller sees it."""

from __future__ import annotations

import itertools
import os
import threading
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from test_cpustream import ALL_KERNEL, OPTIONS, SHAPES, model, session

from charrnn.cores import usable_cores
from charrnn.errors import UserError
from charrnn.lm import cpulanes, cpustream
from charrnn.lm.config import ModelConfig
from charrnn.lm.cpulanes import BLOCK, FIRST_REPROBE, REPROBE, LaneChoice
from charrnn.lm.model import RNNLM
from charrnn.lm.sample import SampleOptions, Sampler
from charrnn.lm.tokenstream import Chunk, TokenStream

# (cell, layers, hidden, emb, vocab): halves not multiples of 4, a lane with no rows of the
# head (vocab 5 < 8), one layer
ODD = [("lstm", 2, 10, 0, 30), ("gru", 1, 6, 0, 5), ("rnn", 1, 10, 6, 5)]


def always(monkeypatch, lanes: int) -> None:
    monkeypatch.setattr(LaneChoice, "lanes", lambda self: lanes)


def within(seconds: float, work) -> tuple[bool, BaseException | None]:
    """(whether `work()` returned within `seconds`, what it raised): a hang fails, not hangs."""
    raised: list[BaseException] = []

    def body() -> None:
        try:
            work()
        except BaseException as exc:  # noqa: BLE001  (handed to the test)
            raised.append(exc)

    thread = threading.Thread(target=body, daemon=True)
    thread.start()
    thread.join(seconds)
    return not thread.is_alive(), raised[0] if raised else None


def same_bits_either_way(net, opts: dict, monkeypatch) -> None:
    monkeypatch.setattr(cpustream, "PREFETCH", False)  # one lane would run a chunk ahead
    runs = {}
    for lanes in (1, 2):
        always(monkeypatch, lanes)
        runs[lanes] = session(net, opts, ALL_KERNEL, monkeypatch, chunk=15)  # odd: h in spare
    (ids, stats, one), (ids2, stats2, two) = runs[1], runs[2]
    assert ids.shape[1] > 90 and np.array_equal(ids, ids2) and np.array_equal(stats, stats2)
    for name in ("h", "c", "scores"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}-emb{s[1]}-tied{s[2]}")
@pytest.mark.parametrize("opts", OPTIONS, ids=["plain", "temp-topk", "topp", "greedy"])
def test_two_lanes_draw_the_bits_one_lane_draws(shape, opts, monkeypatch) -> None:
    same_bits_either_way(model(*shape), opts, monkeypatch)


@pytest.mark.parametrize("shape", ODD, ids=lambda s: f"{s[0]}-l{s[1]}-h{s[2]}-v{s[4]}")
def test_two_lanes_draw_the_same_bits_for_sizes_that_do_not_halve(shape, monkeypatch) -> None:
    cell, layers, hidden, emb, vocab = shape
    torch.manual_seed(0)
    net = RNNLM(ModelConfig(vocab, cell, layers=layers, hidden=hidden, emb=emb)).eval()
    same_bits_either_way(net, OPTIONS[1], monkeypatch)


def test_a_chunk_run_ahead_while_the_caller_draws_changes_no_token(monkeypatch) -> None:
    """The live view asks for the next chunk ahead of a frame: drawn on one lane in the worker
    where two lanes were chosen, forgotten by a stop or a new temperature, never measured."""
    net, opts = model(), OPTIONS[1]
    always(monkeypatch, 2)
    expected = session(net, opts, ALL_KERNEL, monkeypatch)
    started = []
    take = TokenStream.take

    def take_after_running_ahead(self, n):
        if self.engine.ahead is None and self.engine.lanes_next == 2:
            started.append(self.position)
        self.run_ahead()
        return take(self, n)

    monkeypatch.setattr(TokenStream, "take", take_after_running_ahead)
    ids, stats, engine = session(net, opts, ALL_KERNEL, monkeypatch)
    assert len(started) >= 3 and not engine.choice.seconds[1]
    assert np.array_equal(ids, expected[0]) and np.array_equal(stats, expected[1])


def test_chunks_run_ahead_for_a_frames_time_change_no_token(monkeypatch) -> None:
    """A chunk run ahead of a frame is as long as one lane takes for the frame (here 3, 6, 9
    tokens, or a whole chunk where the frame's time is not known): the same text as without
    frames, through stops and a new temperature."""
    net, opts = model(), OPTIONS[1]
    always(monkeypatch, 2)
    monkeypatch.setattr(cpustream, "AHEAD_STEP", 3)
    take, sizes = TokenStream.take, set()

    def reading(frames):
        def take_whole(self, n):  # n tokens, a frame before each chunk where frames are drawn
            parts = []
            while n > 0:
                self.engine.choice.seconds[1].extend([0.016] * BLOCK)  # one lane: 1 token/ms
                if frames is not None:
                    self.run_ahead(next(frames))
                    sizes.add(len(self.engine.ahead[1]) if self.engine.ahead else 0)
                parts.append(take(self, n))
                n -= len(parts[-1])
            return Chunk(np.concatenate([p.ids for p in parts], 1),
                         np.concatenate([p.stats for p in parts], 1))
        monkeypatch.setattr(TokenStream, "take", take_whole)
        return session(net, opts, ALL_KERNEL, monkeypatch)[:2]

    expected = reading(None)
    ids, stats = reading(itertools.cycle([0.0, 0.006, 0.009, None, 1.0]))
    assert sizes - {0} == {3, 6, 9, 16}
    assert ids.shape[1] > 90 and np.array_equal(ids, expected[0])
    assert np.array_equal(stats, expected[1])


def test_two_lanes_meet_their_end_together_on_nan(monkeypatch) -> None:
    """Both lanes see the NaN row and stop at it: no lane waits for the other for ever."""
    always(monkeypatch, 2)
    monkeypatch.setattr(cpustream, "TAKE_OVER", 0)
    stream = Sampler(model(), torch.device("cpu"), SampleOptions(seed=0), chunk=8).tokens([1])
    assert stream.take_all(16).shape[1] == 16
    stream.engine.weights.head_b[:] = np.nan
    taken = []
    assert within(60, lambda: taken.append(len(stream.take(8)))) == (True, None)
    assert taken == [1]
    with pytest.raises(UserError, match="probabilities are not finite"):
        stream.take(8)


def lane_call(net, lane_zero):
    """cpulanes.run of one 16-token two-lane chunk of `net`, lane 0 being `lane_zero`."""
    weights = cpustream.Weights.of(net)
    loaded, args, scratch = cpustream._load_kernel(weights, False)
    h = np.zeros((2, net.config.hidden), np.float32)
    vocab = net.config.vocab_size
    call = (*args, h, np.zeros_like(h), np.zeros(vocab, np.float32),
            np.ones((16, vocab), np.float32), np.float32(1.0), 0, 0.0, False,
            np.empty(16, np.int64), np.empty((0, 12), np.float32))

    def kernel(*whole):
        lane = whole[-7]
        return (lane_zero if lane == 0 else loaded)(*whole)

    return lambda: cpulanes.run(kernel, call, 2, scratch)


def test_a_lane_interrupted_before_the_kernel_frees_the_other(monkeypatch) -> None:
    """A Ctrl-C between handing lane 1 its work and lane 0 starting: lane 1 is let through
    (it would wait at its first meeting for ever), and the interrupt reaches the caller."""
    def interrupted(*args):
        raise KeyboardInterrupt

    done, raised = within(60, lane_call(model(), interrupted))
    assert done and isinstance(raised, KeyboardInterrupt)


def test_a_stream_that_finds_two_lanes_taken_runs_on_one(monkeypatch) -> None:
    """Two streams at once: the second gets one lane, not a third spinning thread."""
    def no_second_thread(name):
        raise AssertionError(f"a second lane was asked for ({name})")

    from charrnn.lm import cpukernel

    monkeypatch.setattr(cpulanes, "worker", no_second_thread)
    with cpulanes._two_lanes:
        done, raised = within(60, lane_call(model(), cpukernel.run_chunk))
    assert (done, raised) == (True, None)


def test_a_real_stream_measures_both_kinds_but_not_numpy_or_the_kernels_load(
        monkeypatch) -> None:
    monkeypatch.setattr(cpustream, "TAKE_OVER", 64)
    ticks = itertools.count()  # a clock of one second a reading: every chunk takes as long
    monkeypatch.setattr(cpustream, "time", SimpleNamespace(perf_counter=lambda: next(ticks)))
    stream = Sampler(model(), torch.device("cpu"), SampleOptions(seed=0), chunk=8).tokens([1])
    choice = stream.engine.choice
    stream.take_all(64)  # NumPy's chunks: none measured
    assert not choice.seconds[1] and not choice.seconds[2]
    stream.take_all(8 * 2 * BLOCK)  # the two probes: the first chunk comes after the load
    if choice.cores >= 2:  # (a 1-core machine never tries two)
        assert len(choice.seconds[1]) == BLOCK - 1 and len(choice.seconds[2]) == BLOCK
    stream.take(3)
    stream.stop()
    assert choice.last is None  # the stop's pause is not measured


def test_running_ahead_waits_where_a_chunk_has_tokens_left_or_the_engine_cannot(
        monkeypatch) -> None:
    always(monkeypatch, 2)
    monkeypatch.setattr(cpustream, "TAKE_OVER", 0)
    stream = Sampler(model(), torch.device("cpu"), SampleOptions(seed=0), chunk=8).tokens([1])
    stream.take(3)
    stream.run_ahead()  # 5 tokens of this chunk are still to be handed out
    assert stream.engine.ahead is None
    stream.take(5)
    stream.run_ahead()
    assert stream.engine.ahead is not None
    pytorch = Sampler(model(), torch.device("cpu"), SampleOptions(seed=0), chunk=8,
                      compiled=False).tokens([1])
    pytorch.take(8)
    pytorch.run_ahead()  # StepEngine has no worker: nothing happens
    assert len(pytorch.take(8)) == 8


@pytest.mark.parametrize("chunk", [cpustream.CPU_CHUNK, cpustream.LONG_CHUNK])
def test_every_chunk_size_meets_the_take_over_at_a_chunks_start(chunk) -> None:
    """The kernel takes over where a chunk starts whatever its size, so the live view's and the
    Sampler's text is the same for `--length` 500 (32-token chunks) and 600 (128)."""
    assert cpustream.TAKE_OVER % chunk == 0


def kinds(choice: LaneChoice, chunks: int, seconds: dict[int, float]) -> list[int]:
    """The lanes chosen for `chunks` chunks whose kinds take `seconds` each, handed in turn."""
    chosen, clock = [], choice.last or 0.0
    for _ in range(chunks):
        lanes = choice.lanes()
        clock += seconds[lanes]
        choice.handed(lanes, clock)
        chosen.append(lanes)
    return chosen


def test_both_kinds_are_measured_then_the_faster_is_used() -> None:
    chosen = kinds(LaneChoice(cores=2), 2 * REPROBE + 2 * BLOCK, {1: 1.0, 2: 0.6})
    assert chosen[:2 * BLOCK] == [1] * BLOCK + [2] * BLOCK
    probes = [n for n in range(2 * BLOCK, len(chosen)) if chosen[n] == 1]  # measured again
    assert probes == [start + i for start in (REPROBE, 2 * REPROBE) for i in range(BLOCK)]


def test_two_lanes_slow_at_first_are_taken_once_they_are_fast() -> None:
    """A core that was idle: two lanes no faster than one for the first probe (close: measured
    again early), then twice as fast — seen at chunk FIRST_REPROBE, not REPROBE; then no longer
    close, so not measured again before REPROBE."""
    choice = LaneChoice(cores=2)
    first = kinds(choice, FIRST_REPROBE, {1: 1.0, 2: 1.05})
    assert set(first[2 * BLOCK:]) == {1}
    later = kinds(choice, REPROBE - FIRST_REPROBE, {1: 1.0, 2: 0.5})
    assert later[:BLOCK] == [2] * BLOCK and set(later[BLOCK:]) == {2}


def test_one_lane_stays_where_two_are_slower_or_one_core_is_free() -> None:
    slower = kinds(LaneChoice(cores=2), REPROBE, {1: 1.0, 2: 1.5})
    early = (REPROBE // FIRST_REPROBE).bit_length() - 1  # measured again at 16, 32, 64, 128
    assert slower.count(2) == BLOCK * (1 + early) and slower[FIRST_REPROBE] == 2
    close = kinds(LaneChoice(cores=2), REPROBE, {1: 1.0, 2: 0.9})  # two lanes, barely
    assert close.count(1) == BLOCK * (1 + early) and close[FIRST_REPROBE] == 1
    assert set(kinds(LaneChoice(cores=1), 50, {1: 1.0, 2: 0.1})) == {1}


def test_a_machine_that_got_busy_is_seen_at_the_next_measurement() -> None:
    choice = LaneChoice(cores=2)
    kinds(choice, REPROBE - 1, {1: 1.0, 2: 0.6})
    later = kinds(choice, REPROBE, {1: 1.0, 2: 3.0})  # the second core taken by something else
    assert set(later[2 * BLOCK:]) == {1}  # the kind in use is measured all the time


def test_after_a_pause_slow_two_lanes_are_measured_again_early() -> None:
    """The live view paused (space): the second core idles, and two lanes, the faster before,
    run slow for a while after — measured again at 16 chunks after the pause, not at 512."""
    choice = LaneChoice(cores=2)
    kinds(choice, 300, {1: 1.0, 2: 0.6})
    choice.handed(2, choice.last + 60.0)  # a minute's pause
    slow = kinds(choice, FIRST_REPROBE, {1: 1.0, 2: 1.05})
    assert slow[-1] == 1  # two lanes looked slower: one taken
    woken = kinds(choice, 2 * FIRST_REPROBE, {1: 1.0, 2: 0.6})
    assert set(woken[BLOCK:]) == {2}


def test_an_interval_far_longer_than_either_kind_is_a_pause_not_a_chunk() -> None:
    choice = LaneChoice(cores=2)
    kinds(choice, 2 * BLOCK, {1: 1.0, 2: 0.6})
    before = list(choice.seconds[2])
    choice.handed(2, choice.last + 60.0)  # the live view paused for a minute
    assert list(choice.seconds[2]) == before


def test_a_stop_is_not_measured() -> None:
    choice = LaneChoice(cores=2)
    choice.handed(1, 0.0)
    choice.reset()  # a stop, or a new prime
    choice.handed(1, 100.0)
    assert not choice.seconds[1]


def test_usable_cores_counts_this_process_cores() -> None:
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)


@pytest.mark.parametrize(("text", "threads", "lanes"), [
    ("150000 100000", 2, 1), ("250000 100000", 3, 2), ("50000 100000", 1, 1),
    ("max 100000", None, None), ("garbled", None, None)])
def test_a_containers_cpu_quota_caps_the_cores(tmp_path, text, threads, lanes) -> None:
    """Threads that sleep may share a part of a core; spinning lanes ask for whole ones."""
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(text + "\n")
    free = usable_cores(tmp_path / "absent")
    assert usable_cores(cpu_max) == (free if threads is None else min(free, threads))
    assert usable_cores(cpu_max, whole=True) == (free if lanes is None else min(free, lanes))
