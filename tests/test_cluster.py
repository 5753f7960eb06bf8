"""Cluster mode: a 2-node Ray cluster on this machine gives the same tables as one process.

The cluster runs in a subprocess (``ray.cluster_utils.Cluster``: a head and a worker node with
one CPU each) so it never meets the session Ray of the ``ray_session`` fixture. Each node carries
one unit of a custom resource and each actor asks for one, so the two actors must land on
different nodes; the scenario joins the cluster through ``executor.address``.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pandas as pd
import pytest

from simulator.config.scenario import parse_scenario
from simulator.loop.runner import run_scenario
from tests.conftest import ROOT, small_doc

pytest.importorskip("ray")

SLOT = "fedfleet_host"  # the custom resource: one per node

SCRIPT = textwrap.dedent(
    """
    import json, sys
    import ray
    from ray.cluster_utils import Cluster

    slot, doc_json, runs_dir, report = sys.argv[1:5]
    cluster = Cluster(initialize_head=True, head_node_args={
        "num_cpus": 1, "resources": {slot: 1}, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1, resources={slot: 1})
        cluster.wait_for_nodes()
        from simulator.execution import ray_pool
        from simulator.loop.runner import run_scenario
        from simulator.config.scenario import parse_scenario

        placements = []
        original_init = ray_pool.RayExecutor.__init__

        def init_and_record(self, *args, **kwargs):
            original_init(self, *args, **kwargs)
            placements.extend(ray.get([a.placement.remote() for a in self.actors]))

        ray_pool.RayExecutor.__init__ = init_and_record
        doc = json.loads(doc_json)
        doc["executor"]["address"] = cluster.address
        run_scenario(parse_scenario(doc), name="cluster", runs_dir=runs_dir)
        nodes = [n["NodeID"] for n in ray.nodes() if n["Alive"]]
        with open(report, "w") as f:
            json.dump({"placements": placements, "nodes": nodes}, f)
    finally:
        ray.shutdown()
        cluster.shutdown()
    """
)


def _tables(run_dir):
    rounds = pd.read_parquet(run_dir / "rounds.parquet").drop(columns=["wall_s"])
    clients = pd.read_parquet(run_dir / "clients.parquet")
    return rounds, clients


@pytest.mark.ray
@pytest.mark.slow
def test_two_node_cluster_matches_single_process(tmp_path):
    ray_over = {"executor.kind": "ray", "executor.num_actors": 2,
                "executor.num_cpus_per_actor": 1, "executor.resources": {SLOT: 1},
                "executor.scheduling": "spread"}
    doc = small_doc(**ray_over)
    report = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["RAY_DEDUP_LOGS"] = "0"
    proc = subprocess.run(
        [sys.executable, "-c", SCRIPT, SLOT, json.dumps(doc), str(tmp_path / "cluster"),
         str(report)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    info = json.loads(report.read_text())

    # Two nodes, one actor on each (the custom resource allows no other placement).
    assert len(info["nodes"]) == 2
    assert sorted(p["node_id"] for p in info["placements"]) == sorted(info["nodes"])
    assert all(p["device"] == "cpu" for p in info["placements"])

    local = run_scenario(parse_scenario(small_doc()), name="local", runs_dir=str(tmp_path))
    r0, c0 = _tables(local)
    r1, c1 = _tables(tmp_path / "cluster" / "cluster")
    assert r0["completed"].sum() > 0
    pd.testing.assert_frame_equal(r0, r1, check_exact=True)
    pd.testing.assert_frame_equal(c0, c1, check_exact=True)


def test_missing_custom_resource_is_a_clear_error():
    from simulator import FedFleetError
    from simulator.execution.ray_pool import check_resources

    ex = parse_scenario(small_doc(**{"executor.resources": {SLOT: 1},
                                     "executor.num_gpus_per_actor": 0})).executor
    check_resources({"CPU": 2.0, SLOT: 2.0}, 2, ex)  # enough: no error
    with pytest.raises(FedFleetError, match=f"executor.resources.{SLOT}: 2 actors"):
        check_resources({"CPU": 2.0, SLOT: 1.0}, 2, ex)
    gpu = parse_scenario(small_doc(**{"executor.num_gpus_per_actor": 0.5})).executor
    with pytest.raises(FedFleetError, match="executor.num_gpus_per_actor"):
        check_resources({"CPU": 2.0}, 2, gpu)


def test_spread_scheduling_is_a_scenario_option():
    sc = parse_scenario(small_doc(**{"executor.scheduling": "spread"}))
    assert sc.executor.scheduling == "spread"
    from simulator.config.scenario import ScenarioError

    with pytest.raises(ScenarioError, match="executor.scheduling"):
        parse_scenario(small_doc(**{"executor.scheduling": "pack"}))
