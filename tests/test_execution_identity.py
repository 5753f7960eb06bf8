"""Same scenario and seed: identical tables on local, Ray with 1, 2 and 4 actors."""

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
