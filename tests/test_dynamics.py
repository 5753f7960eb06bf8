"""Dynamics (simulator/fleet/dynamics.py): hand-computed bandwidth correlation, throttling,
background load, links by time of day, FLGo availability, determinism and resume."""

import math

import numpy as np
import pandas as pd
import pytest

from simulator.config.scenario import parse_scenario
from simulator.fleet import dynamics as D
from simulator.loop.runner import run_scenario
from simulator.loop.simulation import Simulation
from tests.conftest import small_doc


def _sim(**over):
    return Simulation(parse_scenario(small_doc(**{"mode": "analytic", **over})))


def test_ou_step_hand_computed_three_tasks():
    # sigma 0.5, tau 600 s; tasks at 0, 600 and 1200 s with eps = 1, 0, -1:
    # x1 = 0.5; x2 = 0.5 e^-1 = 0.18393972; x3 = x2 e^-1 - 0.5 sqrt(1 - e^-2) = -0.39726911
    x = np.zeros(1)
    got = []
    for dt, eps in ((math.nan, 1.0), (600.0, 0.0), (600.0, -1.0)):
        x = D.ou_step(x, np.array([dt]), 600.0, 0.5, np.array([eps]))
        got.append(float(x[0]))
    assert got == pytest.approx([0.5, 0.18393972, -0.39726911], abs=1e-8)


def test_correlated_bandwidth_on_a_three_task_client(monkeypatch):
    """One client, three launches 600 s apart: its links are its median x exp(x_t) with the OU
    values computed by hand from the (pinned) draws."""
    sim = _sim(**{"dynamics.bandwidth.sigma": 0.5, "dynamics.bandwidth.correlation_s": 600.0,
                  "dynamics.link.enabled": False, "dynamics.background.enabled": False,
                  "dynamics.thermal.enabled": False})
    eps = iter([1.0, 0.0, -1.0])
    monkeypatch.setattr(sim.dynamics, "draws", lambda key, n: (
        np.array([next(eps)]), np.ones(n), np.ones(n), np.ones(n)))
    c = np.array([3])
    base = (sim.pop.downlink_bits_per_s[c], sim.pop.uplink_bits_per_s[c], sim.pop.latency_s[c])
    factors = []
    for r, t in enumerate((0.0, 600.0, 1200.0)):
        (down, up, lat), _, slow = sim.dynamics.links(t, c, (r,), base)
        factors.append(float(down[0] / base[0][0]))
        assert up[0] / base[1][0] == pytest.approx(factors[-1], rel=1e-12)
        assert lat[0] == base[2][0] and slow[0] == 1.0
    assert factors == pytest.approx([math.exp(0.5), math.exp(0.18393972),
                                     math.exp(-0.39726911)], rel=1e-7)


def test_bandwidth_correlation_matches_exp_minus_dt_over_tau():
    sim = _sim(**{"population.size": 200})
    dyn = sim.dynamics
    ids = np.arange(200)
    base = (np.ones(200), np.ones(200), np.zeros(200))
    xs = []
    for r in range(40):  # 40 tasks per client, 900 s apart, tau 1800 s
        (down, _, _), _, _ = dyn.links(900.0 * r, ids, (r,), base, fixed_links=False)
        xs.append(np.log(down))
    x = np.array(xs)
    if dyn.link is not None:  # links may move; the OU state itself is what we check
        x = None
    lag = np.corrcoef(dyn.x, dyn.x)[0, 1]
    assert lag == pytest.approx(1.0)
    # the state: stationary std sigma, lag-1 correlation exp(-0.5)
    sim2 = _sim(**{"population.size": 200, "dynamics.link.enabled": False})
    xs = []
    for r in range(40):
        sim2.dynamics.links(900.0 * r, ids, (r,), base)
        xs.append(sim2.dynamics.x.copy())
    a = np.array(xs)
    assert a.std() == pytest.approx(0.35, rel=0.1)
    rho = np.corrcoef(a[:-1].ravel(), a[1:].ravel())[0, 1]
    assert rho == pytest.approx(math.exp(-0.5), abs=0.06)
    assert x is None or x.shape == (40, 200)


def test_thermal_and_background_slow_compute():
    assert D.throttled_compute_s(np.array([100.0, 400.0]), 300.0, 0.5).tolist() == [100.0, 500.0]
    sim = _sim(**{"dynamics.background.probability": 1.0, "dynamics.background.min_fraction": 0.5,
                  "dynamics.background.max_fraction": 0.5, "dynamics.thermal.enabled": False})
    pop = sim.pop
    ids = np.arange(pop.size)
    _, _, slow = sim.dynamics.links(0.0, ids, (0,), (np.ones(pop.size),) * 3)
    kinds = np.array([pop.profiles[i].kind for i in pop.profile_idx])
    assert np.all(slow[kinds == "phone"] == 2.0) and np.all(slow[kinds != "phone"] == 1.0)


def test_links_follow_the_time_of_day_and_keep_the_daily_wifi_share():
    assert D.day_wifi_probability(0.623, 0.9, 9.0) == pytest.approx((24 * 0.623 - 8.1) / 15)
    sim = _sim(**{"population.size": 4000, "dynamics.bandwidth.enabled": False})
    pop, dyn = sim.pop, sim.dynamics
    ids = np.flatnonzero(dyn.switchable)
    assert ids.size > 1000
    base = (pop.downlink_bits_per_s[ids], pop.uplink_bits_per_s[ids], pop.latency_s[ids])
    wifi = []
    tz = pop.tz_offset_h[ids]
    night_at = []
    for h in range(24):
        _, link, _ = dyn.links(h * 3600.0, ids, (h,), base)
        wifi.append(link == 0)
        local = (h + tz) % 24
        night_at.append(D.night_mask(local, 22.0, 7.0))
    w, n = np.array(wifi), np.array(night_at)
    assert w[n].mean() == pytest.approx(0.9, abs=0.03)
    share = np.mean([sum(lk.share for lk in pop.profiles[p].network.links if lk.link == "wifi")
                     for p in pop.profile_idx[ids]])
    assert w.mean() == pytest.approx(share, abs=0.03)
    # a client that keeps its own link keeps its own draw
    _, link, _ = dyn.links(0.0, ids, (99,), base)
    (down, _, _), link, _ = dyn.links(0.0, ids, (99,), base)
    same = link == pop.link_idx[ids]
    assert np.array_equal(down[same], base[0][same])


def test_flgo_modes_and_a_consistent_gate():
    n = np.array([10, 40, 160])
    g = np.random.default_rng(0)
    assert D.flgo_probabilities("homo", None, n, g).tolist() == [0.8] * 3
    assert D.flgo_probabilities("mdf", 0.5, n, g).tolist() == pytest.approx([0.25, 0.5, 1.0])
    assert D.flgo_probabilities("ldf", 0.5, n, g).tolist() == pytest.approx([1.0, 0.5, 0.25])
    assert D.flgo_probabilities("window", None, n, g) is None
    sim = _sim(**{"population.size": 500, "dynamics.availability.mode": "homo",
                  "dynamics.availability.beta": 0.5})
    pop = sim.pop
    on = pop.available(5000.0)
    ids = np.array([400, 3, 77, 3])
    assert np.array_equal(pop.available(5000.0, ids), on[ids])  # any subset, any order
    windows = pop.always_on | (((5000.0 / 3600 - pop.window_start_h) % 24) < pop.window_len_h)
    assert on[windows].mean() == pytest.approx(0.5, abs=0.08)
    assert not on[~windows].any()


def _tables(tmp_path, name, **over):
    run = run_scenario(parse_scenario(small_doc(**over)), name=name, runs_dir=str(tmp_path))
    return (pd.read_parquet(run / "rounds.parquet").drop(columns=["wall_s"]),
            pd.read_parquet(run / "clients.parquet"))


def test_dynamics_on_is_deterministic_and_changes_the_clock(tmp_path):
    r1, c1 = _tables(tmp_path, "a", mode="analytic")
    r2, c2 = _tables(tmp_path, "b", mode="analytic")
    pd.testing.assert_frame_equal(r1, r2, check_exact=True)
    pd.testing.assert_frame_equal(c1, c2, check_exact=True)
    r3, c3 = _tables(tmp_path, "c", mode="analytic", **{"dynamics.enabled": False})
    assert not np.allclose(c1["download_s"], c3["download_s"])
