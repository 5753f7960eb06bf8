"""Strategies that read every individual update run on every model kind that validate accepts
for them (before: validate accepted Krum / median / trimmed mean / FedNova / q-FedAvg with a cnn
or a transformer, and the run crashed with "needs individual client updates, which this
aggregation does not carry"); SCAFFOLD, which needs a per-client state only the MLP keeps, is
refused for the other kinds in one line instead of crashing in local training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator import InputError
from simulator.config.scenario import apply_overrides, parse_scenario, read_yaml
from simulator.loop.runner import run_scenario

ROOT = Path(__file__).resolve().parents[1]
pytest.importorskip("torch")


def _run(tmp_path: Path, path: str, **over: object) -> pd.DataFrame:
    doc = apply_overrides(read_yaml(ROOT / path), {"rounds": 2, "executor.kind": "local", **over})
    run = run_scenario(parse_scenario(doc), name="r", runs_dir=str(tmp_path))
    return pd.read_parquet(Path(run) / "rounds.parquet")


@pytest.mark.parametrize("strategy", ["krum", "median"])
def test_update_reading_rules_run_on_a_cnn(tmp_path: Path, strategy: str) -> None:
    rounds = _run(tmp_path, "scenarios/quickstart.yaml", **{
        "model.kind": "cnn", "aggregation.strategy": strategy, "population.size": 60,
        "clients_per_round": 6})
    assert len(rounds) == 2 and np.isfinite(rounds["accuracy"]).all()


def test_update_reading_rules_run_on_a_transformer(tmp_path: Path) -> None:
    rounds = _run(tmp_path, "scenarios/llm-lora-heterogeneous.yaml", **{
        "aggregation.strategy": "trimmed_mean", "population.size": 30, "clients_per_round": 5,
        "model.workloads.order": ["lora"]})
    assert len(rounds) == 2 and np.isfinite(rounds["loss"]).all()


def test_scaffold_is_refused_for_models_without_client_state(tmp_path: Path) -> None:
    doc = apply_overrides(read_yaml(ROOT / "scenarios/quickstart.yaml"), {
        "model.kind": "cnn", "aggregation.strategy": "scaffold", "rounds": 1})
    with pytest.raises(InputError, match="aggregation.strategy.*allowed: mlp"):
        run_scenario(parse_scenario(doc), name="r", runs_dir=str(tmp_path))
