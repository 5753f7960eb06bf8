"""The bring-your-own scenarios (scenarios/byo/): their data files are generated in a temporary
directory by scenarios/byo/make_data.py (never committed); each validates and runs through the
command line with ``--set data.path=...``, and without its file validate refuses in one line."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from types import ModuleType

import pandas as pd
import pytest

from simulator.cli.main import main
from tests.conftest import ROOT

BYO = ROOT / "scenarios" / "byo"


def make_data() -> ModuleType:
    spec = importlib.util.spec_from_file_location("byo_make_data", BYO / "make_data.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _run(tmp_path: Path, file: str, *sets: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    argv = ["run", str(BYO / file), "--runs-dir", str(tmp_path / "runs"), "--no-dashboard",
            "--name", "small"]
    for s in sets:
        argv += ["--set", s]
    assert main(argv) == 0
    run = tmp_path / "runs" / "small"
    assert json.loads((run / "manifest.json").read_text())
    return pd.read_parquet(run / "rounds.parquet"), pd.read_parquet(run / "clients.parquet")


def test_credit_default_banks_one_client_per_bank(tmp_path: Path) -> None:
    csv = make_data().credit_default(tmp_path / "credit.csv", n=4000)
    assert main(["validate", str(BYO / "credit-default-banks.yaml"),
                 "--set", f"data.path={csv}"]) == 0
    r, c = _run(tmp_path, "credit-default-banks.yaml", f"data.path={csv}", "rounds=6")
    majority = float((pd.read_csv(csv)["default"] == "no").mean())
    assert r.accuracy.iloc[-1] > majority + 0.05  # learns more than the base rate
    assert c.client_id.nunique() <= 40 and set(c.device_class) <= {
        "cloud-a100", "edge-server-l4", "laptop-cpu"}


def test_shapes_cnn_phones_trains_on_the_npz(tmp_path: Path) -> None:
    npz = make_data().shapes(tmp_path / "shapes.npz", n=3000, n_test=400)
    r, c = _run(tmp_path, "shapes-cnn-phones.yaml", f"data.path={npz}", "rounds=10",
                "population.size=400", "clients_per_round=40")
    assert r.accuracy.iloc[-1] > 0.5  # four classes: chance is 0.25
    ok = c[c.outcome == "completed"]
    assert len(ok) > 0 and (ok.bytes_down > 0).all()


@pytest.mark.parametrize(("file", "name"), [("credit-default-banks.yaml", "credit-default.csv"),
                                            ("shapes-cnn-phones.yaml", "shapes.npz")])
def test_without_its_data_file_validate_names_data_path(
        file: str, name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)  # data/... is relative to the working directory: absent here
    capsys.readouterr()
    assert main(["validate", str(BYO / file)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"fedfleet: error: data.path: file not found: 'data/{name}'"]
