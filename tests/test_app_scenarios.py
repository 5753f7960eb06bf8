"""The application scenarios run end to end at a small size (``fedfleet run FILE --set ...``) and
their tables carry privacy spent, secure-aggregation overhead and the hierarchy."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.cli.main import main
from simulator.config.scenario import load_scenario

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def _run(tmp_path: Path, file: str, *sets: str) -> tuple[pd.DataFrame, pd.DataFrame, dict]:
    argv = ["run", str(SCENARIOS / file), "--runs-dir", str(tmp_path), "--no-dashboard",
            "--name", "small"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    run = tmp_path / "small"
    manifest = json.loads((run / "manifest.json").read_text())
    return (pd.read_parquet(run / "rounds.parquet"), pd.read_parquet(run / "clients.parquet"),
            manifest)


@pytest.mark.parametrize("file", ["keyboard-cross-device.yaml", "healthcare-cross-silo.yaml",
                                  "smart-home-hierarchical.yaml"])
def test_scenario_validates_and_states_its_question(file):
    sc = load_scenario(SCENARIOS / file)
    assert len(sc.description) > 80
    assert "Question:" in (SCENARIOS / file).read_text()


def test_keyboard_cross_device(tmp_path):
    r, c, _ = _run(tmp_path, "keyboard-cross-device.yaml", "population.size=3000", "rounds=3",
                   "clients_per_round=30")
    assert (c["link"] == "wifi").all()  # population.require_link
    assert (c["workload"] == "lora").all()
    # Privacy spent grows every round; secure aggregation adds bytes and seconds.
    assert r["epsilon"].is_monotonic_increasing and (r["epsilon"] > 0).all()
    assert np.isfinite(r["epsilon"]).all()
    assert (r["secagg_bytes_up"] > 0).all() and (r["secagg_participants"] == r["selected"]).all()
    assert r["secagg_failed"].dtype == bool
    assert (c["secagg_s"] > 0).all() and "epsilon" in c


def test_healthcare_cross_silo(tmp_path):
    r, c, m = _run(tmp_path, "healthcare-cross-silo.yaml", "rounds=3",
                   "data.samples_per_client=200")
    assert m["scenario"]["privacy"]["mode"] == "central"
    assert set(c["device_class"]) == {"cloud-a100", "edge-server-l4"}
    assert (r["selected"] == 10).all()  # every hospital, every round
    assert r["epsilon"].is_monotonic_increasing and r["accuracy"].notna().all()
    assert (~r["secagg_failed"]).all() and (r["secagg_threshold"] == 6).all()
    assert (r["secagg_server_s"] > 0).all()
    assert (c.loc[c["outcome"] == "completed", "secagg_bytes_up"] > 0).all()


def test_healthcare_secagg_fails_when_hospitals_drop(tmp_path):
    # A 2-second deadline only the 4 A100 sites meet (the L4 sites need ~3 s): 4 < t = 6.
    r, c, _ = _run(tmp_path, "healthcare-cross-silo.yaml", "rounds=2",
                   "data.samples_per_client=200", "deadline_s=2")
    assert (r["completed"] == 4).all() and r["secagg_failed"].all()
    assert r["accuracy"].nunique() == 1  # no model update
    assert c["train_loss"].isna().all()


def test_smart_home_hierarchical(tmp_path):
    r, c, _ = _run(tmp_path, "smart-home-hierarchical.yaml", "population.size=80",
                   "hierarchy.edges=10", "rounds=4", "clients_per_round=20",
                   "hierarchy.edge_rounds_per_cloud_round=2")
    assert r["tier"].tolist() == ["edge", "cloud", "edge", "cloud"]
    assert set(c["edge_id"]) <= set(range(10)) and c["edge_id"].nunique() > 1
    assert (c["edge_id"] == c["client_id"] * 10 // 80).all()  # assignment: block
    cloud = r[r["tier"] == "cloud"]
    assert (cloud["backhaul_s"] > 0).all() and (cloud["cloud_wait_s"] >= 0).all()
    assert (r["edge_round_s"] > 0).all() and r["accuracy"].notna().all()
