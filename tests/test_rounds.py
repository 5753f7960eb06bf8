"""Hand-computed timelines for synchronous rounds (3 clients)."""

import numpy as np

from simulator.core import outcomes as R
from simulator.core.cost import TaskCost, Timing, estimate

INF = np.inf


def timing(d, c, u):
    return Timing(np.array(d, float), np.array(c, float), np.array(u, float))


def test_cost_estimate_by_hand():
    # Prepare: 1 MB down at 8 Mbit/s (1 s) + 0.1 s RTT; 1e9 FLOPs at 1e9 FLOP/s;
    # 0.5 MB up at 4 Mbit/s.
    cost = TaskCost(np.array([1e6]), np.array([5e5]), np.array([1e9]), np.array([0.0]))
    # Execute
    t = estimate(np.array([8e6]), np.array([4e6]), np.array([0.1]), np.array([1e9]), cost)
    # Assert
    assert np.allclose(t.download_s, [1.1])
    assert np.allclose(t.compute_s, [1.0])
    assert np.allclose(t.upload_s, [1.1])


def test_all_complete_round_ends_at_slowest():
    t = timing([1, 2, 3], [10, 10, 10], [1, 1, 1])  # totals 12, 13, 14
    out = R.resolve_sync_round(t, 3, np.full(3, INF), np.full(3, INF))
    assert list(out.outcome) == [R.COMPLETED] * 3
    assert out.duration_s == 14
    assert list(out.stop_s) == [12, 13, 14]


def test_overcommit_keeps_first_k():
    t = timing([1, 2, 3], [10, 10, 10], [1, 1, 1])  # totals 12, 13, 14
    out = R.resolve_sync_round(t, 2, np.full(3, INF), np.full(3, INF))
    assert list(out.outcome) == [R.COMPLETED, R.COMPLETED, R.OVERCOMMITTED]
    assert out.duration_s == 13
    # The cancelled client worked until the round ended: 3 s download + 10 s compute.
    assert out.stop_s[2] == 13
    assert out.download_done_s[2] == 3 and out.compute_done_s[2] == 10 and out.upload_done_s[2] == 0


def test_deadline_cuts_stragglers():
    t = timing([1, 2, 30], [10, 10, 10], [1, 1, 1])  # totals 12, 13, 41
    out = R.resolve_sync_round(t, 3, np.full(3, INF), np.full(3, INF), deadline_s=20)
    assert list(out.outcome) == [R.COMPLETED, R.COMPLETED, R.STRAGGLER]
    assert out.duration_s == 20
    assert out.stop_s[2] == 20
    assert out.download_done_s[2] == 20 and out.compute_done_s[2] == 0


def test_dropout_mid_compute_and_offline():
    t = timing([1, 1, 1], [10, 10, 10], [1, 1, 1])  # totals 12
    drop = np.array([INF, 5.0, INF])
    offline = np.array([INF, INF, 7.5])
    out = R.resolve_sync_round(t, 3, drop, offline)
    assert list(out.outcome) == [R.COMPLETED, R.DROPPED, R.OFFLINE]
    assert out.duration_s == 12
    assert out.stop_s[1] == 5 and out.compute_done_s[1] == 4
    assert out.stop_s[2] == 7.5 and out.compute_done_s[2] == 6.5


def test_when_k_not_reached_round_ends_at_last_event():
    t = timing([1, 1, 1], [10, 10, 10], [1, 1, 1])
    drop = np.array([INF, 3.0, 4.0])
    out = R.resolve_sync_round(t, 3, drop, np.full(3, INF), deadline_s=100)
    assert list(out.outcome) == [R.COMPLETED, R.DROPPED, R.DROPPED]
    assert out.duration_s == 12  # no one left running: the server does not wait for the deadline


def test_infeasible_clients_never_start():
    t = timing([1, 1, 1], [10, 10, 10], [1, 1, 1])
    out = R.resolve_sync_round(t, 2, np.full(3, INF), np.full(3, INF),
                               infeasible=np.array([False, True, False]))
    assert list(out.outcome) == [R.COMPLETED, R.OUT_OF_MEMORY, R.COMPLETED]
    assert out.stop_s[1] == 0


def test_tie_at_kth_finish_broken_by_position():
    t = timing([1, 1, 1], [10, 10, 10], [1, 1, 1])
    out = R.resolve_sync_round(t, 2, np.full(3, INF), np.full(3, INF))
    assert list(out.outcome) == [R.COMPLETED, R.COMPLETED, R.OVERCOMMITTED]


def test_dropout_draw_is_exponential():
    g = np.random.default_rng(0)
    hz = np.full(200_000, 1 / 100.0)
    x = R.draw_dropout_after_s(hz, g)
    assert abs(x.mean() - 100) < 1.5
    assert np.all(np.isinf(R.draw_dropout_after_s(np.zeros(3), g)))
