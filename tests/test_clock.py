"""The discrete-event core: ordering, tie-breaks, cancellation, and sync rounds on the loop."""

import math
import time

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulator.core import outcomes as R
from simulator.core.clock import (
    P_DEADLINE,
    P_FINISH,
    P_QUIT,
    EventLoop,
    phase_timeline,
    resolve_sync_round_events,
)
from simulator.core.cost import Timing

INF = math.inf


def timing(d, c, u):
    return Timing(np.array(d, float), np.array(c, float), np.array(u, float))


def test_events_pop_by_time_then_priority_then_schedule_order():
    # Prepare
    loop = EventLoop()
    loop.schedule(5.0, 1, "late")
    loop.schedule(1.0, 1, "b", priority=P_FINISH)
    loop.schedule(1.0, 1, "a", priority=P_QUIT)
    loop.schedule(1.0, 1, "c", priority=P_FINISH)  # same time and priority as "b": after it
    loop.schedule(1.0, 1, "d", priority=P_DEADLINE)
    # Execute
    order = []
    while (ev := loop.pop()) is not None:
        order.append((ev[0], ev[4]))
    # Assert
    assert order == [(1.0, "a"), (1.0, "b"), (1.0, "c"), (1.0, "d"), (5.0, "late")]
    assert loop.now == 5.0


def test_cancel_peek_and_past_events():
    loop = EventLoop(start_s=10.0)
    s1 = loop.schedule(11.0, 0, "x")
    loop.schedule(12.0, 0, "y")
    assert len(loop) == 2
    loop.cancel(s1)
    assert len(loop) == 1
    assert loop.peek_time() == 12.0
    assert loop.pop()[4] == "y"
    assert loop.pop() is None and loop.peek_time() == INF
    with pytest.raises(ValueError):
        loop.schedule(11.0, 0)  # the clock is at 12
    with pytest.raises(ValueError):
        loop.schedule(float("nan"), 0)


def test_run_until_and_early_stop():
    loop = EventLoop()
    for t in (1.0, 2.0, 3.0, 4.0):
        loop.schedule(t, 0, t)
    seen = []
    n = loop.run(lambda ev: seen.append(ev[4]), until_s=2.0)
    assert n == 2 and seen == [1.0, 2.0]
    n = loop.run(lambda ev: ev[4] == 3.0)  # stop after handling 3.0
    assert n == 1 and loop.now == 3.0 and len(loop) == 1


def test_throughput_is_reasonable():
    # Hold model: 1,000 pending events, each handled event schedules the next one. About 0.3-1.5 M
    # events/s depending on the machine (benchmarks/bench_analytic.py prints it); the bound here
    # is loose so that a loaded CI machine passes.
    loop = EventLoop()
    inc = iter(np.random.default_rng(0).random(101_000).tolist())
    for _ in range(1000):
        loop.schedule(next(inc), 0)
    sched = loop.schedule

    def handle(ev):
        nxt = next(inc, None)
        if nxt is not None:
            sched(ev[0] + nxt, 0)

    t0 = time.perf_counter()
    n = loop.run(handle)
    rate = n / (time.perf_counter() - t0)
    assert n == 101_000 and rate > 30_000


# --- sync rounds: the event loop agrees with the vectorised resolver ---------------------------
def _same(a: R.RoundOutcome, b: R.RoundOutcome) -> None:
    assert list(a.outcome) == list(b.outcome)
    assert a.duration_s == b.duration_s
    for name in ("stop_s", "download_done_s", "compute_done_s", "upload_done_s"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_hand_timelines_on_the_event_loop():
    # sync: all complete, the round ends at the slowest (totals 12, 13, 14)
    t = timing([1, 2, 3], [10, 10, 10], [1, 1, 1])
    out = resolve_sync_round_events(t, 3, np.full(3, INF), np.full(3, INF))
    assert list(out.outcome) == [R.COMPLETED] * 3 and out.duration_s == 14
    # over-commit: keep the first 2; the third was 3 s into download + 10 s into compute
    out = resolve_sync_round_events(t, 2, np.full(3, INF), np.full(3, INF))
    assert list(out.outcome) == [R.COMPLETED, R.COMPLETED, R.OVERCOMMITTED]
    assert out.duration_s == 13 and out.compute_done_s[2] == 10 and out.upload_done_s[2] == 0
    # deadline 20 cuts a 41 s client during its download
    t = timing([1, 2, 30], [10, 10, 10], [1, 1, 1])
    out = resolve_sync_round_events(t, 3, np.full(3, INF), np.full(3, INF), deadline_s=20)
    assert list(out.outcome) == [R.COMPLETED, R.COMPLETED, R.STRAGGLER]
    assert out.duration_s == 20 and out.download_done_s[2] == 20
    # mid-task dropout at 5 s (4 s into compute) and window closing at 7.5 s
    t = timing([1, 1, 1], [10, 10, 10], [1, 1, 1])
    out = resolve_sync_round_events(t, 3, np.array([INF, 5.0, INF]), np.array([INF, INF, 7.5]))
    assert list(out.outcome) == [R.COMPLETED, R.DROPPED, R.OFFLINE]
    assert out.stop_s[1] == 5 and out.compute_done_s[1] == 4 and out.compute_done_s[2] == 6.5
    assert out.duration_s == 12


def test_drop_at_the_closing_instant_counts_as_dropped():
    # Client 1 drops at exactly the k-th finish (13 s): dropped, not over-committed.
    t = timing([1, 2, 3], [10, 10, 10], [1, 1, 1])
    args = (t, 1, np.array([INF, 12.0, INF]), np.full(3, INF))
    ev, vec = resolve_sync_round_events(*args), R.resolve_sync_round(*args)
    _same(ev, vec)
    assert list(ev.outcome) == [R.COMPLETED, R.DROPPED, R.OVERCOMMITTED]


_times = st.one_of(st.sampled_from([0.0, 0.5, 1.0, 2.0, 3.0, 5.0]),
                   st.floats(0.0, 50.0, allow_nan=False))
_quits = st.one_of(st.just(INF), _times, st.floats(0.0, 100.0))


@settings(max_examples=400, deadline=None)
@given(data=st.data(), n=st.integers(0, 9))
def test_event_loop_equals_vectorised_resolver(data, n):
    d = np.array(data.draw(st.lists(_times, min_size=n, max_size=n)), float)
    c = np.array(data.draw(st.lists(_times, min_size=n, max_size=n)), float)
    u = np.array(data.draw(st.lists(_times, min_size=n, max_size=n)), float)
    drop = np.array(data.draw(st.lists(_quits, min_size=n, max_size=n)), float)
    off = np.array(data.draw(st.lists(_quits, min_size=n, max_size=n)), float)
    blocked = np.array(data.draw(st.lists(st.booleans(), min_size=n, max_size=n)), bool)
    k = data.draw(st.integers(0, n))
    deadline = data.draw(st.one_of(st.none(), _times.filter(lambda x: x > 0)))
    t = Timing(d, c, u)
    _same(resolve_sync_round_events(t, k, drop, off, deadline, blocked),
          R.resolve_sync_round(t, k, drop, off, deadline, blocked))


def test_phase_timeline_by_hand():
    # Starts at 100 s; phases 2 / 10 / 3 s. Client 0 completes; client 1 drops 5 s in (3 s into
    # compute, upload never started); client 2 never started (out of memory).
    t = timing([2, 2, 2], [10, 10, 10], [3, 3, 3])
    stop = np.array([15.0, 5.0, 0.0])
    cols = phase_timeline(np.full(3, 100.0), t, stop, np.array([2, 2, 0.0]),
                          np.array([10, 3, 0.0]), np.array([3, 0, 0.0]),
                          np.array([True, True, False]))
    assert cols["download_start_s"][:2].tolist() == [100, 100]
    assert cols["download_end_s"][:2].tolist() == [102, 102]
    assert cols["compute_start_s"][:2].tolist() == [102, 102]
    assert cols["compute_end_s"][:2].tolist() == [112, 105]
    assert cols["upload_start_s"][0] == 112 and cols["upload_end_s"][0] == 115
    assert np.isnan(cols["upload_start_s"][1]) and np.isnan(cols["upload_end_s"][1])
    assert all(np.isnan(v[2]) for v in cols.values())
