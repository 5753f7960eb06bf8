"""Same scenario and seed: identical tables on local, Ray with 1, 2 and 4 actors (and with the
clock's dynamics and shared capacity on, on every trigger, local vs Ray with 2 actors)."""

import numpy as np
import pandas as pd
import pytest

from simulator.config.scenario import parse_scenario
from simulator.loop.runner import run_scenario
from tests.conftest import small_doc

WALL = ["wall_s"]


def _tables(tmp_path, name, **over):
    sc = parse_scenario(small_doc(**over))
    run = run_scenario(sc, name=name, runs_dir=str(tmp_path))
    r = pd.read_parquet(run / "rounds.parquet").drop(columns=WALL)
    c = pd.read_parquet(run / "clients.parquet")
    return r, c


@pytest.mark.ray
def test_local_and_ray_actors_identical(tmp_path, ray_session):
    r0, c0 = _tables(tmp_path, "local")
    assert r0["completed"].sum() > 0 and r0["accuracy"].notna().all()
    for n in (1, 2, 4):
        r, c = _tables(tmp_path, f"ray{n}", **{"executor.kind": "ray", "executor.num_actors": n,
                                                "executor.num_cpus_per_actor": 2 / n})
        pd.testing.assert_frame_equal(r0, r, check_exact=True)
        pd.testing.assert_frame_equal(c0, c, check_exact=True)


# Every dynamic on (docs/clock.md): correlated bandwidth, throttling, background load, links by
# time of day, FLGo 'sln' availability; the server's link shared both ways; central DP (its
# per-round sampling rate comes from who is online, which the dynamics move).
DYNAMIC = {"dynamics.availability.mode": "sln", "dynamics.availability.beta": 0.1,
           "dynamics.availability.slot_s": 600.0, "capacity.server_egress_bits_per_s": 8e7,
           "capacity.server_ingress_bits_per_s": 4e7,
           "privacy": {"mode": "central", "clip_norm": 1.0, "noise_multiplier": 0.5}}
EDGE_MIX = [{"profile": "edge-server-l4", "share": 0.3}, {"profile": "rpi4", "share": 0.4},
            {"profile": "jetson-orin-nano", "share": 0.3}]
TRIGGERS = {
    "sync": {},
    "buffered": {"aggregation.method": "fedbuff",
                 "aggregation.fedbuff": {"concurrency": 12, "buffer_size": 4,
                                         "max_staleness": 3}},
    "hierarchical": {"population.mix": EDGE_MIX,
                     "hierarchy": {"edges": 4, "edge_profile": "edge-server-l4",
                                   "edge_rounds_per_cloud_round": 2}},
}


@pytest.mark.ray
@pytest.mark.parametrize("trigger", sorted(TRIGGERS))
def test_dynamics_on_identical_on_local_and_ray(tmp_path, ray_session, trigger):
    over = {**DYNAMIC, **TRIGGERS[trigger]}
    r0, c0 = _tables(tmp_path, "local", **over)
    assert r0["completed"].sum() > 0 and r0["accuracy"].notna().all()
    assert np.isfinite(r0["epsilon"]).all() and (r0["epsilon"] > 0).all()
    # the dynamics really move the clock here (else this would only repeat the test above)
    _, cs = _tables(tmp_path, "static", **over, **{"dynamics.enabled": False})
    assert len(c0) != len(cs) or not np.array_equal(c0["download_s"], cs["download_s"])
    r, c = _tables(tmp_path, "ray2", **over, **{"executor.kind": "ray", "executor.num_actors": 2,
                                                 "executor.num_cpus_per_actor": 1})
    pd.testing.assert_frame_equal(r0, r, check_exact=True)
    pd.testing.assert_frame_equal(c0, c, check_exact=True)


@pytest.mark.ray
def test_too_many_actors_is_a_clear_error(tmp_path, ray_session):
    from simulator import FedFleetError

    with pytest.raises(FedFleetError, match="executor.num_actors"):
        _tables(tmp_path, "big", **{"executor.kind": "ray", "executor.num_actors": 3})
    assert not (tmp_path / "big").exists() and not (tmp_path / "big.partial").exists()


def test_rerun_is_identical(tmp_path):
    r1, c1 = _tables(tmp_path, "a")
    r2, c2 = _tables(tmp_path, "b")
    pd.testing.assert_frame_equal(r1, r2, check_exact=True)
    pd.testing.assert_frame_equal(c1, c2, check_exact=True)


def test_different_seed_differs(tmp_path):
    r1, _ = _tables(tmp_path, "a")
    r2, _ = _tables(tmp_path, "b", seed=8)
    assert not r1.equals(r2)
