"""HTML dashboards written from run directories (no browser: see test_dashboard_browser)."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import pyarrow.parquet as pq
import pytest
from plotly.offline import get_plotlyjs

from dashboards import write_comparison_dashboard, write_run_dashboard
from dashboards.bench_load import make_synthetic_run
from dashboards.data import list_runs, load_run, signature

PANELS = ["accuracy", "round-time", "timeline", "rates", "outcomes", "workload", "traffic",
          "population"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("runs")
    make_synthetic_run(root / "a", population=300, rounds=20, per_round=40, seed=1)
    make_synthetic_run(root / "b", population=300, rounds=20, per_round=40, seed=2)
    make_synthetic_run(root / "c", population=300, rounds=15, per_round=40, seed=3)
    return root


def make_partial(src: Path, dst: Path, chunks: list[tuple[int, int]]) -> Path:
    """An unfinished run as the recorder leaves it: scenario.json and parts/ chunks."""
    (dst / "parts").mkdir(parents=True, exist_ok=True)
    man = json.loads((src / "manifest.json").read_text())
    (dst / "scenario.json").write_text(json.dumps(man["scenario"]))
    r, c = pq.read_table(src / "rounds.parquet"), pq.read_table(src / "clients.parquet")
    for a, b in chunks:
        tag = f"{a:08d}-{b:08d}"
        for name, t in (("rounds", r), ("clients", c)):
            keep = pc.and_(pc.greater_equal(t["round"], a), pc.less_equal(t["round"], b))
            pq.write_table(t.filter(keep), dst / "parts" / f"{name}-{tag}.parquet")
    return dst


def test_run_dashboard_is_self_contained(runs: Path, tmp_path: Path) -> None:
    run = tmp_path / "a"
    shutil.copytree(runs / "a", run)
    out = write_run_dashboard(run)
    assert out == run / "dashboard.html"
    html = out.read_text()
    for p in PANELS:
        assert f'<div class="panel" id="panel-{p}">' in html
    assert html.count(get_plotlyjs()[:200]) == 1  # plotly.js embedded exactly once
    assert "<script src=" not in html and 'src="http' not in html  # nothing loaded from outside
    assert "Population" in html and "a" in html
    assert not [p for p in run.iterdir() if p.name.startswith(".")]  # no temp file left


def test_run_dashboard_custom_out_and_header(runs: Path, tmp_path: Path) -> None:
    out = write_run_dashboard(runs / "a", tmp_path / "sub" / "x.html")
    html = out.read_text()
    assert out.exists() and not (runs / "a" / "dashboard.html").exists()
    for label in ("population", "rounds", "clients per round", "seed", "final accuracy",
                  "simulated time", "wall time"):
        assert f'<div class="k">{label}</div>' in html


def test_partial_run_reads_chunks(runs: Path, tmp_path: Path) -> None:
    part = make_partial(runs / "a", tmp_path / "a.partial", [(0, 4), (5, 9)])
    run = load_run(part)
    assert run.status == "running" and run.name == "a"
    assert run.rounds["round"].tolist() == list(range(10))
    assert sorted(run.clients["round"].unique()) == list(range(10))
    html = write_run_dashboard(part, tmp_path / "p.html").read_text()
    assert "10 of 20" in html and "latest accuracy" in html
    listed = {r["name"]: r for r in list_runs(tmp_path)}
    assert listed["a.partial"]["status"] == "running"
    assert listed["a.partial"]["rounds_done"] == 10


def test_signature_changes_with_new_chunks(runs: Path, tmp_path: Path) -> None:
    part = make_partial(runs / "a", tmp_path / "s.partial", [(0, 4)])
    before = signature(part)
    assert isinstance(before, str) and before == signature(part)  # JSON-safe and stable
    make_partial(runs / "a", part, [(5, 6)])
    assert signature(part) != before


def test_load_run_reads_only_needed_columns(runs: Path) -> None:
    run = load_run(runs / "a", ["round", "accuracy"], ["client_id", "outcome"])
    assert list(run.rounds.columns) == ["round", "accuracy"]
    assert list(run.clients.columns) == ["client_id", "outcome"]
    assert str(run.clients["outcome"].dtype) == "category"


def test_comparison_dashboard(runs: Path, tmp_path: Path) -> None:
    out = write_comparison_dashboard([runs / "a", runs / "b", runs / "c"], tmp_path / "cmp.html",
                                     labels=["random", "random", "other"], target_accuracy=0.5)
    html = out.read_text()
    for p in ("compare-accuracy", "compare-time-to-target", "compare-round-duration",
              "compare-waste-energy", "compare-invitations", "compare-classes",
              "compare-fairness", "compare-participation"):
        assert f'id="panel-{p}"' in html
    assert "random (mean of 2, 95% CI)" in html
    assert 'class="runs sortable leaderboard"' in html and "every run" in html
    assert html.count(get_plotlyjs()[:200]) == 1
    default = write_comparison_dashboard([runs / "a", runs / "b"], tmp_path / "d.html")
    assert "90% of the best final accuracy" in default.read_text()
    by_map = write_comparison_dashboard([runs / "a", runs / "b"], tmp_path / "m.html",
                                        labels={"a": "x", "b": "x"})
    assert "x (mean of 2, 95% CI)" in by_map.read_text()
    with pytest.raises(ValueError):
        write_comparison_dashboard([runs / "a", runs / "b"], tmp_path / "e.html", labels=["x"])


def test_dashboards_never_import_the_engine() -> None:
    code = ("import sys, dashboards, dashboards.app, dashboards.bench_load; "
            "print(sorted(m for m in sys.modules if m == 'simulator' or "
            "m.startswith('simulator.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=Path(__file__).resolve().parents[1])
    assert out.stdout.strip() == "[]"
