"""Shared fixtures: small scenarios and a Ray instance started once per session."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = ROOT.parent / "shared" / "data"


def small_doc(**over: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "name": "small",
        "seed": 7,
        "population": {
            "size": 200,
            "mix": [
                {"profile": "phone-lowend", "share": 0.4},
                {"profile": "phone-flagship", "share": 0.3},
                {"profile": "rpi4", "share": 0.2},
                {"profile": "edge-server-l4", "share": 0.1},
            ],
        },
        "data": {"dataset": "digits", "partition": "dirichlet", "alpha": 0.5,
                 "samples_per_client": 30},
        "model": {"kind": "mlp", "hidden": [32],
                  "clock_proxy": {"params": 5e6, "train_flops_per_sample": 2e9}},
        "training": {"epochs": 1, "batch_size": 16, "lr": 0.1},
        "rounds": 4,
        "clients_per_round": 20,
        "overcommit": 1.3,
        "deadline_s": 300,
        "executor": {"kind": "local"},
    }
    for k, v in over.items():
        node = doc
        parts = k.split(".")
        for p in parts[:-1]:
            node = node.setdefault(p, {})
        node[parts[-1]] = v
    return doc


@pytest.fixture(scope="session")
def ray_session():
    """One local Ray instance for the whole test session (2 CPUs, no dashboard)."""
    ray = pytest.importorskip("ray")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False,
                 configure_logging=False)
    yield ray
    ray.shutdown()
