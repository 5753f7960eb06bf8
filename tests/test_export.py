"""`fedfleet export`: TensorBoard event files read back by TensorBoard's own EventAccumulator, an
MLflow file store read back by MlflowClient, CSV read back by pandas; values equal
rounds.parquet. Existing output is never overwritten unless asked, and then only an export."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from simulator.cli.main import main
from simulator.config.scenario import parse_scenario
from simulator.io import export as X
from simulator.loop.runner import run_scenario
from tests.conftest import small_doc

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("runs")
    real = run_scenario(parse_scenario(small_doc(name="real", rounds=4)), runs_dir=str(base))
    ana = run_scenario(parse_scenario(small_doc(name="ana", mode="analytic", rounds=5, seed=3)),
                       runs_dir=str(base))
    return {"real": real, "ana": ana}


def _rounds(run: Path) -> pd.DataFrame:
    return pd.read_parquet(run / "rounds.parquet")


def _scalars(rounds: pd.DataFrame) -> list[str]:
    return [c for c in rounds.columns
            if c != "round" and pd.api.types.is_numeric_dtype(rounds[c].dtype)]


def test_tensorboard_reads_back_every_scalar(runs: dict[str, Path], tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "tb"
    assert main(["export", str(runs["real"]), "--to", "tensorboard", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote tensorboard export to {out}" in printed
    acc = EventAccumulator(str(out), size_guidance={"scalars": 0})
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    r = _rounds(runs["real"])
    cols = _scalars(r)
    assert {"accuracy", "loss", "train_loss", "duration_s", "bytes_up", "bytes_down", "energy_j",
            "wasted_device_s", "completed"} <= set(cols)
    assert tags == {f"round/{c}" for c in cols} | {f"sim_time/{c}" for c in cols}
    t0 = X.start_epoch(json.loads((runs["real"] / "manifest.json").read_text()), runs["real"])
    for c in cols:
        by_round = acc.Scalars(f"round/{c}")
        assert [e.step for e in by_round] == list(r["round"])
        assert [e.value for e in by_round] == [float(np.float32(v)) for v in r[c]]
        assert [e.wall_time for e in by_round] == pytest.approx(list(t0 + r["sim_end_s"]),
                                                                abs=1e-3)
        by_time = acc.Scalars(f"sim_time/{c}")
        assert [e.step for e in by_time] == [int(round(s)) for s in r["sim_end_s"]]
        assert [e.value for e in by_time] == [e.value for e in by_round]


def test_tensorboard_leaves_out_unevaluated_rounds(runs: dict[str, Path], tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    X.export_runs([runs["ana"]], "tensorboard", tmp_path / "tb")
    acc = EventAccumulator(str(tmp_path / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert "round/accuracy" not in tags and "round/duration_s" in tags  # all NaN in analytic
    assert len(acc.Scalars("round/duration_s")) == 5


def test_mlflow_store_reads_back_with_mlflow_client(runs: dict[str, Path], tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch,
                                                    capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("mlflow")
    from mlflow.tracking import MlflowClient

    out = tmp_path / "mlruns"
    assert main(["export", str(runs["real"]), str(runs["ana"]), "--to", "mlflow",
                 "--out", str(out), "--experiment", "fleet"]) == 0
    assert "MLflow run" in capsys.readouterr().out
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3: file store opt-in
    client = MlflowClient(tracking_uri=out.resolve().as_uri())
    exp = client.get_experiment_by_name("fleet")
    assert exp is not None
    found = {r.info.run_name: r for r in client.search_runs([exp.experiment_id])}
    assert set(found) == {"real", "ana"}
    for name, run in runs.items():
        info = found[name]
        assert info.info.status == "FINISHED"
        r = _rounds(run)
        man = json.loads((run / "manifest.json").read_text())
        t0 = X.start_epoch(man, run)
        for c in _scalars(r):
            hist = sorted(client.get_metric_history(info.info.run_id, c), key=lambda m: m.step)
            keep = r[~r[c].isna()]
            assert [m.step for m in hist] == list(keep["round"]), c
            assert [m.value for m in hist] == list(keep[c].astype(float)), c  # exact
            assert [m.timestamp for m in hist] == [int(round((t0 + s) * 1000))
                                                  for s in keep["sim_end_s"]]
        params = info.data.params
        assert params["seed"] == str(man["scenario"]["seed"])
        assert params["rounds"] == str(man["rounds"])
        assert params["population.mix.0.profile"] == "phone-lowend"
        assert info.data.tags["fedfleet.run_dir"] == str(run.resolve())
        arts = {a.path for a in client.list_artifacts(info.info.run_id)}
        assert arts == {"manifest.json", "rounds.parquet"}
    assert "accuracy" not in found["ana"].data.metrics  # analytic: never evaluated
    # Every directory in the store is an MLflow experiment (nothing MLflow calls malformed).
    dirs = [d for d in out.iterdir() if d.is_dir() and d.name != ".trash"]
    assert dirs and all((d / "meta.yaml").exists() for d in dirs), sorted(d.name for d in dirs)


def test_csv_equals_the_parquet_tables(runs: dict[str, Path], tmp_path: Path) -> None:
    run = runs["real"]
    X.export_runs([run], "csv", tmp_path / "csv")
    for name in ("rounds", "clients"):
        got = pd.read_csv(tmp_path / "csv" / f"{name}.csv", keep_default_na=True)
        want = pd.read_parquet(run / f"{name}.parquet")
        assert list(got.columns) == list(want.columns)
        for c in want.columns:
            if pd.api.types.is_float_dtype(want[c].dtype):
                np.testing.assert_array_equal(got[c].to_numpy(float), want[c].to_numpy(float))
            else:
                assert list(got[c].fillna("").astype(str)) == list(want[c].fillna("").astype(str))
    assert json.loads((tmp_path / "csv" / "manifest.json").read_text()) == json.loads(
        (run / "manifest.json").read_text())


def test_default_out_is_inside_the_run_and_never_overwritten(
        runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    import shutil

    run = tmp_path / "copy"
    shutil.copytree(runs["ana"], run)
    assert main(["export", str(run), "--to", "csv"]) == 0
    first = (run / "csv" / "rounds.csv").read_text()
    (run / "csv" / "note.txt").write_text("mine")
    capsys.readouterr()
    assert main(["export", str(run), "--to", "csv"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "already exists" in err and "--overwrite" in err
    assert (run / "csv" / "note.txt").read_text() == "mine"
    assert main(["export", str(run), "--to", "csv", "--overwrite"]) == 0  # an earlier export
    assert (run / "csv" / "rounds.csv").read_text() == first
    assert not (run / "csv" / "note.txt").exists()
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []


def test_overwrite_never_replaces_a_directory_that_is_not_an_export(
        runs: dict[str, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    mine = tmp_path / "important"
    mine.mkdir()
    (mine / "thesis.tex").write_text("years of work")
    for fmt in X.FORMATS:
        assert main(["export", str(runs["ana"]), "--to", fmt, "--out", str(mine),
                     "--overwrite"]) == 2
        assert "is not a fedfleet export" in capsys.readouterr().err
    assert [p.name for p in mine.iterdir()] == ["thesis.tex"]
    assert main(["export", str(runs["ana"]), "--to", "csv", "--out", str(mine / "thesis.tex"),
                 "--overwrite"]) == 2


def test_a_failed_overwrite_keeps_the_earlier_export(runs: dict[str, Path], tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    out = tmp_path / "csv"
    X.export_runs([runs["ana"]], "csv", out)
    before = sorted(p.name for p in out.iterdir())

    def boom(run: Path, dst: Path) -> list[Path]:
        (dst / "rounds.csv").write_text("half")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(X, "write_csv", boom)
    with pytest.raises(X.FedFleetError, match="No space left"):
        X.export_runs([runs["ana"]], "csv", out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == before
    assert (out / "rounds.csv").read_text() != "half"
    assert [p.name for p in tmp_path.iterdir()] == ["csv"]


def test_several_runs_go_to_subdirectories(runs: dict[str, Path], tmp_path: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_multiplexer import EventMultiplexer

    assert main(["export", str(runs["real"]), str(runs["ana"]), "--to", "tensorboard"]) == 2
    assert "--out: required when exporting several runs" in capsys.readouterr().err
    out = tmp_path / "tb"
    X.export_runs([runs["real"], runs["ana"]], "tensorboard", out)
    mux = EventMultiplexer().AddRunsFromDirectory(str(out))
    mux.Reload()
    assert set(mux.Runs()) == {"real", "ana"}
    assert len(mux.Scalars("real", "round/accuracy")) == 4


def test_bad_input_is_one_line(runs: dict[str, Path], tmp_path: Path,
                               capsys: pytest.CaptureFixture[str]) -> None:
    partial = tmp_path / "x.partial"
    (partial / "parts").mkdir(parents=True)
    cases = [
        (["export", str(tmp_path / "missing"), "--to", "csv"], "does not exist"),
        (["export", str(partial), "--to", "csv"], "fedfleet resume"),
        (["export", str(runs["ana"]), "--to", "csv", "--tracking-uri", "sqlite:///x.db"],
         "only with --to mlflow"),
    ]
    for argv, needle in cases:
        assert main(argv) == 2, argv
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and needle in err, err


def test_a_missing_library_is_one_line(runs: dict[str, Path], tmp_path: Path,
                                       monkeypatch: pytest.MonkeyPatch,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name == "mlflow" else real(name, *a))
    assert main(["export", str(runs["ana"]), "--to", "mlflow", "--out", str(tmp_path / "m")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "needs the 'mlflow-skinny' package" in err
    assert not (tmp_path / "m").exists()


def test_the_core_does_not_import_tensorboard_or_mlflow() -> None:
    code = ("import sys, simulator.io.export, simulator.cli.main as m; m.build_parser(); "
            "print(sorted(k for k in ('mlflow', 'tensorboard', 'torch') if k in sys.modules))")
    res = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "[]"


def test_flatten_scenario_for_params() -> None:
    flat = X.flatten({"a": {"b": 1, "c": [1, 2]}, "mix": [{"p": "x"}], "n": None,
                      "long": "y" * 9000})
    assert flat == {"a.b": "1", "a.c": "[1, 2]", "mix.0.p": "x", "n": "None",
                    "long": "y" * X.MLFLOW_PARAM_MAX}
    assert not math.isnan(X.start_epoch({"started_at": "2026-12-07T05:00:00+00:00"}, Path(".")))
