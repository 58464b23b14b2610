"""Two lanes making one CPU stream's chunks (charrnn/lm/cpulanes.py, cpukernel.run_chunk): the
same bits as one lane for every cell and option, through stops and NaN; the choice of lanes
measured as the caller sees it."""

from __future__ import annotations

import os

import numpy as np
import pytest
import torch
from test_cpustream import ALL_KERNEL, OPTIONS, SHAPES, model, session

from charrnn.cores import usable_cores
from charrnn.errors import UserError
from charrnn.lm import cpustream
from charrnn.lm.cpulanes import BLOCK, REPROBE, LaneChoice
from charrnn.lm.sample import SampleOptions, Sampler
from charrnn.lm.tokenstream import TokenStream


def always(monkeypatch, lanes: int) -> None:
    monkeypatch.setattr(LaneChoice, "lanes", lambda self: lanes)


@pytest.mark.parametrize("shape", SHAPES, ids=lambda s: f"{s[0]}-emb{s[1]}-tied{s[2]}")
@pytest.mark.parametrize("opts", OPTIONS, ids=["plain", "temp-topk", "topp", "greedy"])
def test_two_lanes_draw_the_bits_one_lane_draws(shape, opts, monkeypatch) -> None:
    net = model(*shape)
    monkeypatch.setattr(cpustream, "PREFETCH", False)  # one lane would run a chunk ahead
    runs = {}
    for lanes in (1, 2):
        always(monkeypatch, lanes)
        runs[lanes] = session(net, opts, ALL_KERNEL, monkeypatch, chunk=15)  # odd: h in spare
    (ids, stats, one), (ids2, stats2, two) = runs[1], runs[2]
    assert ids.shape[1] > 90 and np.array_equal(ids, ids2) and np.array_equal(stats, stats2)
    for name in ("h", "c", "scores"):
        assert np.array_equal(getattr(one, name), getattr(two, name)), name


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


def test_two_lanes_meet_their_end_together_on_nan(monkeypatch) -> None:
    """Both lanes see the NaN row and stop at it: no lane waits for the other for ever."""
    always(monkeypatch, 2)
    monkeypatch.setattr(cpustream, "TAKE_OVER", 0)
    stream = Sampler(model(), torch.device("cpu"), SampleOptions(seed=0), chunk=8).tokens([1])
    assert stream.take_all(16).shape[1] == 16
    stream.engine.weights.head_b[:] = np.nan
    assert len(stream.take(8)) == 1
    with pytest.raises(UserError, match="probabilities are NaN"):
        stream.take(8)


def kinds(choice: LaneChoice, chunks: int, seconds: dict[int, float]) -> list[int]:
    """The lanes chosen for `chunks` chunks whose kinds take `seconds` each, handed in turn."""
    chosen, clock = [], 0.0
    for _ in range(chunks):
        lanes = choice.lanes()
        clock += seconds[lanes]
        choice.handed(lanes, clock)
        chosen.append(lanes)
    return chosen


def test_both_kinds_are_measured_then_the_faster_is_used() -> None:
    chosen = kinds(LaneChoice(cores=2), REPROBE + 2 * BLOCK, {1: 1.0, 2: 0.6})
    assert chosen[:2 * BLOCK] == [1] * BLOCK + [2] * BLOCK
    assert set(chosen[2 * BLOCK:REPROBE]) == {2}
    assert chosen[REPROBE:REPROBE + BLOCK] == [1] * BLOCK  # measured again, still slower
    assert set(chosen[REPROBE + BLOCK:]) == {2}


def test_one_lane_stays_where_two_are_slower_or_one_core_is_free() -> None:
    slower = kinds(LaneChoice(cores=2), REPROBE, {1: 1.0, 2: 1.5})
    assert set(slower[2 * BLOCK:]) == {1}
    assert set(kinds(LaneChoice(cores=1), 50, {1: 1.0, 2: 0.1})) == {1}


def test_a_machine_that_got_busy_is_seen_at_the_next_measurement() -> None:
    choice = LaneChoice(cores=2)
    kinds(choice, REPROBE - 1, {1: 1.0, 2: 0.6})
    later = kinds(choice, REPROBE, {1: 1.0, 2: 3.0})  # the second core taken by something else
    assert set(later[2 * BLOCK:]) == {1}  # the kind in use is measured all the time


def test_a_pause_between_chunks_is_not_measured() -> None:
    choice = LaneChoice(cores=2)
    choice.handed(1, 0.0)
    choice.reset()  # a stop: the live view paused, or a new prime
    choice.handed(1, 100.0)
    assert not choice.seconds[1]


def test_usable_cores_counts_this_process_cores() -> None:
    assert 1 <= usable_cores() <= (os.cpu_count() or 1)


@pytest.mark.parametrize(("text", "expected"), [("150000 100000", 2), ("50000 100000", 1),
                                                ("max 100000", None), ("garbled", None)])
def test_a_containers_cpu_quota_caps_the_cores(tmp_path, text, expected) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text(text + "\n")
    free = usable_cores(tmp_path / "absent")
    assert usable_cores(cpu_max) == (free if expected is None else min(free, expected))
