"""Hierarchical FL (HierFAVG): pure maths on hand-made numbers; one edge equals flat FedAvg;
two-tier timing; tier/edge columns; checkpoint and resume."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st

from simulator.config.scenario import ScenarioError, parse_scenario
from simulator.loop.edges import (
    assign_edges,
    cloud_average,
    cloud_round_times,
    split_per_edge,
    transfer_s,
)
from simulator.loop.runner import resume_run, run_scenario
from tests.conftest import small_doc

ALWAYS_ON = {"population.mix": [{"profile": "edge-server-l4", "share": 0.3},
                                {"profile": "rpi4", "share": 0.4},
                                {"profile": "jetson-orin-nano", "share": 0.3}]}
WALL = ["wall_s"]


def _run(tmp_path, name, **over):
    run = run_scenario(parse_scenario(small_doc(**over)), name=name, runs_dir=str(tmp_path))
    return pd.read_parquet(run / "rounds.parquet"), pd.read_parquet(run / "clients.parquet")


# --- pure functions ------------------------------------------------------------------------------
def test_assign_edges():
    assert assign_edges(7, 3).tolist() == [0, 1, 2, 0, 1, 2, 0]
    assert assign_edges(7, 3, "block").tolist() == [0, 0, 0, 1, 1, 2, 2]


@given(st.integers(1, 500), st.lists(st.integers(0, 200), min_size=1, max_size=30))
def test_split_per_edge(k, sizes):
    sizes = np.array(sizes)
    out = split_per_edge(k, sizes)
    assert (out <= sizes).all() and (out[sizes > 0] >= 1).all() and (out[sizes == 0] == 0).all()
    if k <= sizes.sum() and k >= (sizes > 0).sum():
        assert out.sum() >= min(k, sizes.sum()) - (sizes > 0).sum()


def test_split_is_k_for_one_edge_and_proportional():
    assert split_per_edge(20, np.array([200])).tolist() == [20]
    assert split_per_edge(10, np.array([50, 30, 20])).tolist() == [5, 3, 2]


def test_cloud_round_waits_for_slowest_edge():
    ready = np.array([10.0, 40.0, 25.0])
    up = np.array([5.0, 2.0, 1.0])
    down = np.array([1.0, 1.0, 3.0])
    t, arrival, resume = cloud_round_times(ready, up, down, np.array([True, True, False]))
    assert t == 42.0  # edge 1 ready at 40 + 2 s upload
    assert arrival[0] == 15.0 and np.isnan(arrival[2])
    assert resume.tolist() == [43.0, 43.0, 45.0]
    # nobody sends: the cloud only waits for the last edge to finish
    t, _, _ = cloud_round_times(ready, up, down, np.zeros(3, bool))
    assert t == 40.0


def test_transfer_s():
    assert transfer_s(1e6, np.array([8e6]), np.array([0.1])).tolist() == [1.1]


def test_cloud_average_exact_for_one_edge_and_weighted():
    rs = np.random.default_rng(1)
    m = rs.normal(size=(3, 50)).astype(np.float32)
    g = np.zeros(50, np.float32)
    assert np.array_equal(cloud_average(m[:1], np.array([37.0]), g), m[0])
    assert np.array_equal(cloud_average(m, np.array([0.0, 5.0, 0.0]), g), m[1])
    expect = (m[0] * 1 + m[1] * 3).astype(np.float64) / 4
    assert np.allclose(cloud_average(m, np.array([1.0, 3.0, 0.0]), g), expect, atol=1e-6)
    assert np.array_equal(cloud_average(m, np.zeros(3), g), g)


# --- engine --------------------------------------------------------------------------------------
def test_one_edge_equals_flat_fedavg(tmp_path):
    # The static clock: with dynamics the edge's clock runs ahead of the flat one by the backhaul,
    # so time-correlated bandwidth (and time-of-day links) differ by construction.
    static = {**ALWAYS_ON, "dynamics.enabled": False}
    r0, c0 = _run(tmp_path, "flat", **static)
    r1, c1 = _run(tmp_path, "hier", **static, hierarchy={"edges": 1, "edge_profile": "rpi5"})
    for col in ("accuracy", "loss", "train_loss", "completed", "dropped", "straggled",
                "overcommitted", "bytes_up", "bytes_down"):
        pd.testing.assert_series_equal(r0[col], r1[col], check_exact=True)
    for col in ("client_id", "outcome", "train_loss", "download_s", "compute_s", "upload_s"):
        pd.testing.assert_series_equal(c0[col], c1[col], check_exact=True)
    assert (r1["tier"] == "cloud").all() and (c1["edge_id"] == 0).all()
    # The hierarchy adds the backhaul to the clock: the edge -> cloud upload and the broadcast.
    assert (r1["backhaul_s"] > 0).all()
    assert np.allclose(r1["duration_s"], r0["duration_s"] + r1["backhaul_s"])


def test_two_tier_timing_and_columns(tmp_path):
    h = {"edges": 4, "edge_profile": "edge-server-l4", "edge_rounds_per_cloud_round": 3}
    r, c = _run(tmp_path, "h4", **ALWAYS_ON, rounds=6, hierarchy=h)
    assert r["tier"].tolist() == ["edge", "edge", "cloud"] * 2
    assert r["cloud_round"].tolist() == [0, 0, 0, 1, 1, 1]
    assert (c["edge_id"] == c["client_id"] % 4).all()
    assert set(c["edge_id"]) == {0, 1, 2, 3}
    edge = r[r["tier"] == "edge"]
    assert (edge["backhaul_s"] == 0).all() and (edge["cloud_wait_s"] == 0).all()
    cloud = r[r["tier"] == "cloud"]
    assert (cloud["backhaul_s"] > 0).all() and (cloud["backhaul_bytes"] > 0).all()
    # Cloud rounds end after every client of the period stopped and every edge got the model.
    for cr, grp in c.groupby(c["round"] // 3):
        end = r.loc[r["cloud_round"] == cr, "sim_end_s"].iloc[-1]
        assert end > grp["stop_s"].max()
    # Edges run at their own pace between cloud rounds: start times differ by edge.
    first = c[c["round"] == 1].groupby("edge_id")["start_s"].first()
    assert first.nunique() > 1
    # ...and all start together after a cloud round (up to their own download).
    assert r["sim_end_s"].is_monotonic_increasing
    # Accuracy only changes at cloud rounds (the global model is the cloud's).
    acc = r["accuracy"].to_numpy()
    assert acc[0] == acc[1] and acc[3] == acc[4]


def test_client_link_override_speeds_up_transfers(tmp_path):
    h = {"edges": 2, "edge_profile": "rpi5"}
    _, c_wan = _run(tmp_path, "wan", **ALWAYS_ON, rounds=1, hierarchy=h)
    lan = dict(h, client_link={"downlink_bits_per_s": 5e8, "uplink_bits_per_s": 5e8,
                               "latency_s": 0.002})
    _, c_lan = _run(tmp_path, "lan", **ALWAYS_ON, rounds=1, hierarchy=lan)
    assert c_lan["upload_s"].mean() < c_wan["upload_s"].mean()
    expect = 0.002 + c_lan["bytes_down"].where(c_lan["outcome"] == "completed") * 8 / 5e8
    done = c_lan["outcome"] == "completed"
    assert np.allclose(c_lan.loc[done, "download_s"], expect[done])


def test_analytic_mode_runs(tmp_path):
    r, _ = _run(tmp_path, "an", mode="analytic", rounds=4,
                hierarchy={"edges": 3, "edge_profile": "rpi5", "edge_rounds_per_cloud_round": 2})
    assert r["tier"].tolist() == ["edge", "cloud", "edge", "cloud"] and r["accuracy"].isna().all()


def test_bad_hierarchy_blocks():
    with pytest.raises(ScenarioError, match="hierarchy.edge_profile"):
        parse_scenario(small_doc(hierarchy={"edges": 2, "edge_profile": "mainframe"}))
    with pytest.raises(ScenarioError, match="hierarchy.edges"):
        parse_scenario(small_doc(hierarchy={"edges": 500, "edge_profile": "rpi5"}))
    with pytest.raises(ScenarioError, match="aggregation.trigger: 'hierarchical' needs"):
        parse_scenario(small_doc(**{"aggregation.trigger": "hierarchical"}))
    with pytest.raises(ScenarioError, match="hierarchy: used only by the hierarchical trigger"):
        parse_scenario(small_doc(hierarchy={"edges": 2, "edge_profile": "rpi5"},
                                 **{"aggregation.trigger": "sync"}))
    # central DP and secure aggregation are declared by the hierarchical trigger: accepted
    parse_scenario(small_doc(hierarchy={"edges": 2, "edge_profile": "rpi5"},
                             privacy={"mode": "central"}, secure_aggregation={"enabled": True}))


class _Stop(Exception):
    pass


@pytest.mark.parametrize("over", [
    {"hierarchy": {"edges": 3, "edge_profile": "rpi5", "edge_rounds_per_cloud_round": 3}},
    {"privacy": {"mode": "local", "noise_multiplier": 0.5}},
])
def test_resume_continues_exactly(tmp_path, over):
    base = dict(ALWAYS_ON, rounds=6, **over)
    r0, c0 = _run(tmp_path / "a", "full", **base)

    def stop_at_4(rep):
        if rep.round == 3:
            raise _Stop

    sc = parse_scenario(small_doc(**base, **{"output.checkpoint_every": 2}))
    with pytest.raises(_Stop):
        run_scenario(sc, name="cut", runs_dir=str(tmp_path / "b"), on_round=stop_at_4)
    run = resume_run(tmp_path / "b" / "cut")
    r1 = pd.read_parquet(run / "rounds.parquet")
    c1 = pd.read_parquet(run / "clients.parquet")
    cols = [k for k in r0.columns if k not in WALL]
    pd.testing.assert_frame_equal(r0[cols], r1[cols], check_exact=True)
    pd.testing.assert_frame_equal(c0, c1, check_exact=True)
