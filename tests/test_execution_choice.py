"""``executor.kind: auto``: in-process when Ray cannot pay off, Ray when large or a cluster is
named; the choice and its reason are logged and recorded in the manifest."""

import json
import logging

import pandas as pd
import pytest

from simulator.config.scenario import parse_scenario
from simulator.execution import choose as C
from simulator.loop.runner import run_scenario
from tests.conftest import small_doc


def _choice(monkeypatch, cores=2, **over):
    monkeypatch.setattr(C, "usable_cores", lambda: cores)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    return C.choose(parse_scenario(small_doc(**{"executor.kind": "auto", **over})))


def test_auto_is_the_default():
    doc = small_doc()
    del doc["executor"]
    assert parse_scenario(doc).executor.kind == "auto"


def test_small_run_stays_local(monkeypatch):
    ch = _choice(monkeypatch)
    assert ch.kind == "local" and ch.requested == "auto"
    assert "less than Ray" in ch.reason and ch.estimated_train_s < C.STARTUP_S


def test_quickstart_stays_local(monkeypatch):
    from simulator.config.scenario import load_scenario
    from tests.conftest import ROOT

    monkeypatch.setattr(C, "usable_cores", lambda: 2)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    assert C.choose(load_scenario(ROOT / "scenarios" / "quickstart.yaml")).kind == "local"


def test_large_run_goes_to_ray(monkeypatch):
    ch = _choice(monkeypatch, **{"rounds": 2000, "clients_per_round": 200,
                                 "population.size": 1000, "model.hidden": [512, 512],
                                 "data.samples_per_client": 500})
    assert ch.kind == "ray" and "more than Ray" in ch.reason


def test_one_core_stays_local_even_when_large(monkeypatch):
    ch = _choice(monkeypatch, cores=1, **{"rounds": 2000, "clients_per_round": 200,
                                          "population.size": 1000, "model.hidden": [512, 512]})
    assert ch.kind == "local" and "one core" in ch.reason


def test_named_cluster_goes_to_ray(monkeypatch):
    assert _choice(monkeypatch, **{"executor.address": "ray://head:10001"}).kind == "ray"
    monkeypatch.setenv("RAY_ADDRESS", "head:6379")
    ch = C.choose(parse_scenario(small_doc(**{"executor.kind": "auto"})))
    assert ch.kind == "ray" and "head:6379" in ch.reason


def test_explicit_kind_is_obeyed(monkeypatch):
    ch = _choice(monkeypatch, **{"executor.kind": "local", "rounds": 5000,
                                 "model.hidden": [1024, 1024]})
    assert ch.kind == "local" and ch.requested == "local"


def test_auto_run_logs_and_records_its_choice(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(C, "usable_cores", lambda: 2)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)
    with caplog.at_level(logging.INFO, logger="simulator"):
        run = run_scenario(parse_scenario(small_doc(**{"executor.kind": "auto"})), name="auto",
                           runs_dir=str(tmp_path))
    assert any("executor: local (auto:" in r.getMessage() for r in caplog.records)
    man = json.loads((run / "manifest.json").read_text())
    assert man["executor"]["kind"] == "local" and man["executor"]["requested"] == "auto"
    ref = run_scenario(parse_scenario(small_doc()), name="local", runs_dir=str(tmp_path))
    for t in ("rounds", "clients"):  # auto -> local gives the tables of kind: local
        a = pd.read_parquet(run / f"{t}.parquet").drop(columns=["wall_s"], errors="ignore")
        b = pd.read_parquet(ref / f"{t}.parquet").drop(columns=["wall_s"], errors="ignore")
        pd.testing.assert_frame_equal(a, b, check_exact=True)


@pytest.mark.parametrize("bad", ["spark", "Auto"])
def test_unknown_kind_is_refused(bad):
    from simulator.config.scenario import ScenarioError

    with pytest.raises(ScenarioError, match="executor.kind"):
        parse_scenario(small_doc(**{"executor.kind": bad}))
