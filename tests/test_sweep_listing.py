"""Issue 17: trials of a sweep nested under runs/NAME/ are listed by `fedfleet runs` and by the
live app, grouped by label (policy) and seed."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from tests.conftest import small_doc


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import simulator

    root = tmp_path_factory.mktemp("runs")
    simulator.run(small_doc(rounds=2, name="solo"), runs_dir=root)
    sweep = root / "pol"
    variants = []
    for label, seed, name in (("oort", 2, "t3"), ("random", 1, "t0"), ("oort", 1, "t1"),
                              ("random", 2, "t2")):
        shutil.copytree(root / "solo", sweep / name)
        variants.append({"name": name, "label": label, "overrides": {}, "seed": seed})
    (sweep / "_tune").mkdir()
    (sweep / "sweep.json").write_text(json.dumps({"variants": variants}))
    return root


def test_fedfleet_runs_lists_sweep_trials_grouped(runs: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from simulator.cli.main import main
    from simulator.io.runs_index import list_runs

    rows = list_runs(runs)
    trials = [(r["name"], r["label"], r["seed"]) for r in rows if "sweep" in r]
    assert trials == [("pol/t1", "oort", 1), ("pol/t3", "oort", 2), ("pol/t0", "random", 1),
                      ("pol/t2", "random", 2)]
    assert [r["name"] for r in rows if "sweep" not in r] == ["solo"]
    assert main(["runs", str(runs)]) == 0
    out = capsys.readouterr().out
    assert "pol/t1" in out and "oort" in out and "label" in out


def test_live_app_lists_and_groups_sweep_trials(runs: Path) -> None:
    from dashboards.data import list_runs, load_run

    names = [r["name"] for r in list_runs(runs)]
    assert names == ["pol/t1", "pol/t3", "pol/t0", "pol/t2", "solo"]
    assert load_run(runs / "pol" / "t3").group == "oort"
    assert load_run(runs / "solo").group is None
