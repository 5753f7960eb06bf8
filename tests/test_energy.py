"""Energy per task and the battery model (levels, drain, recharge, low_battery outcome)."""

import json

import numpy as np
import pandas as pd
import pytest

from simulator.config.scenario import parse_scenario
from simulator.fleet.energy import Battery, task_energy_j, window_overlap_s
from simulator.io.recording import Recorder
from simulator.loop.runner import run_scenario
from simulator.loop.simulation import Simulation, build_population
from tests.conftest import small_doc

H = 3600.0


def test_task_energy_by_hand():
    # 5 W x 10 s compute + 1.5 W x (2 + 4) s radio = 59 J; a client cut during download pays 2 s.
    e = task_energy_j(np.array([5.0, 5.0]), np.array([1.5, 1.5]), np.array([2.0, 2.0]),
                      np.array([10.0, 0.0]), np.array([4.0, 0.0]))
    assert e.tolist() == [59.0, 3.0]


def test_window_overlap_by_hand():
    start, length, always = np.array([22.0, 22.0, 0.0]), np.array([8.0, 8.0, 24.0]), \
        np.array([False, False, True])
    # [20 h, 26 h] against a 22:00+8 h window: 4 h. [0, 48 h]: 6 + 8 + 2 = 16 h. Always on: all.
    a = np.array([20 * H, 0.0, 5.0])
    out = window_overlap_s(a, 26 * H, start, length, always)
    assert out[0] == pytest.approx(4 * H)
    out = window_overlap_s(np.zeros(3), 48 * H, start, length, always)
    assert out[:2] == pytest.approx([16 * H, 16 * H]) and out[2] == 48 * H


def _sc(**over):
    return parse_scenario(small_doc(mode="analytic", **over))


def test_initial_levels_are_deterministic_and_mains_have_none():
    sc = _sc()
    pop, _ = build_population(sc)
    b1 = Battery.build(pop, sc.seed)
    b2 = Battery.build(pop, sc.seed)
    np.testing.assert_array_equal(b1.level_j, b2.level_j)
    frac = b1.fraction(0.0, np.arange(pop.size))
    has = np.array([pop.profiles[i].energy.battery_wh is not None for i in pop.profile_idx])
    assert has.any() and (~has).any()
    assert np.isnan(frac[~has]).all()
    assert (frac[has] >= 0.2).all() and (frac[has] <= 1.0).all()
    assert not b1.is_low(frac).any()  # threshold 0: nobody declines


def test_drain_and_recharge_in_window():
    sc = _sc()
    pop, _ = build_population(sc)
    cid = int(np.flatnonzero([pop.profiles[i].energy.battery_wh is not None
                              for i in pop.profile_idx])[0])
    b = Battery.build(pop, sc.seed, min_fraction=0.5, recharge_hours=2.0)
    cap = b.capacity_j[cid]
    b.level_j[cid] = 0.6 * cap
    ids = np.array([cid])
    b.drain(ids, np.array([0.2 * cap]), 0.0)  # 60% -> 40%: now below 50%
    assert b.fraction(0.0, ids)[0] == pytest.approx(0.4)
    assert b.is_low(b.fraction(0.0, ids))[0]
    # Recharge: 1 h inside its window at capacity/2h -> +50%, capped at 100%.
    start = float(pop.window_start_h[cid]) * H
    b.updated_s[cid] = start
    assert b.fraction(start + 1 * H, ids)[0] == pytest.approx(0.9)
    assert b.fraction(start + 3 * H, ids)[0] == pytest.approx(1.0)
    b.drain(ids, np.array([10 * cap]), start + 3 * H)
    assert b.fraction(start + 3 * H, ids)[0] == 0.0  # never below empty


def _outcomes(run):
    return (pd.read_parquet(run / "rounds.parquet"), pd.read_parquet(run / "clients.parquet"))


@pytest.mark.parametrize("method", ["fedavg", "fedbuff"])
def test_low_battery_clients_decline(tmp_path, method):
    over = {"population": {**small_doc()["population"], "min_battery_fraction": 0.6}}
    if method == "fedbuff":
        over["aggregation"] = {"method": "fedbuff",
                               "fedbuff": {"concurrency": 20, "buffer_size": 5}}
    sc = parse_scenario(small_doc(mode="analytic") | over)
    r, c = _outcomes(run_scenario(sc, name=method, runs_dir=str(tmp_path)))
    low = c[c.outcome == "low_battery"]
    assert len(low) > 0 and r["low_battery"].sum() == len(low)
    assert (low["battery_fraction"] < 0.6).all()
    assert (low[["bytes_down", "bytes_up", "energy_j"]] == 0).all().all()
    assert low["download_start_s"].isna().all() and (low["stop_s"] == low["start_s"]).all()
    worked = c[c.outcome != "low_battery"]
    assert not (worked["battery_fraction"] < 0.6).any()  # NaN (mains) or above the threshold


def test_batteries_drain_across_rounds_without_recharge(tmp_path):
    sc = parse_scenario(small_doc(mode="analytic", rounds=6, clients_per_round=60,
                                  overcommit=1.0, deadline_s=None))
    _, c = _outcomes(run_scenario(sc, name="drain", runs_dir=str(tmp_path)))
    c = c[c.battery_fraction.notna()].sort_values(["client_id", "round"])
    seen = c.groupby("client_id").filter(lambda g: len(g) > 1)
    assert len(seen) > 0
    for _, g in seen.groupby("client_id"):
        assert (np.diff(g["battery_fraction"].to_numpy()) <= 0).all()


def test_battery_state_survives_a_checkpoint(tmp_path):
    sc = _sc(rounds=4, output={"checkpoint_every": 2, "runs_dir": str(tmp_path)})
    rec = Recorder(tmp_path, "ck")
    rec.start()
    # as loop/runner.py does: the checkpoint records (and restore verifies) scenario.json's hash
    (rec.partial_dir / "scenario.json").write_text(json.dumps(sc.model_dump(mode="json")))
    sim = Simulation(sc)
    sim.step(rec)
    sim.step(rec)
    sim.checkpoint(rec)
    sim2 = Simulation(sc)
    sim2.restore(rec)
    np.testing.assert_array_equal(sim.battery.level_j, sim2.battery.level_j)
    np.testing.assert_array_equal(sim.battery.updated_s, sim2.battery.updated_s)
    assert not np.array_equal(sim.battery.level_j, Simulation(sc).battery.level_j)
