"""Validate means it runs (issue 16, item 4): what `fedfleet validate` cannot run it refuses with
one line naming the field (exit 2); plugins are imported at validate time and, in a run, while
the scenario is parsed, before any executor (Ray) starts."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from simulator.cli.main import main
from tests.conftest import small_doc


def _cli(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str]]:
    capsys.readouterr()
    rc = main(argv)
    return rc, capsys.readouterr().err.splitlines()


def _scenario(tmp_path: Path, **over: Any) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(yaml.safe_dump(small_doc(**over)))
    return p


@pytest.mark.parametrize("over,field", [
    ({"data.dataset": "text", "model.kind": "mlp"}, "model.kind"),
    ({"plugins": ["os.system"], "selection.policy": "os.system"}, "selection.policy"),
], ids=["text-with-mlp", "os.system-as-policy"])
@pytest.mark.parametrize("command", ["validate", "run"])
def test_validate_refuses_what_cannot_run(tmp_path: Path, capsys: pytest.CaptureFixture[str],
                                          over: dict[str, Any], field: str,
                                          command: str) -> None:
    argv = [command, str(_scenario(tmp_path, **over))]
    if command == "run":
        argv += ["--runs-dir", str(tmp_path / "runs"), "--no-dashboard"]
    rc, lines = _cli(argv, capsys)
    assert rc == 2, lines
    assert len(lines) == 1 and lines[0].startswith(f"fedfleet: error: {field}: "), lines
    assert not (tmp_path / "runs").exists()


def test_a_plugin_is_imported_before_ray_starts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                capsys: pytest.CaptureFixture[str]) -> None:
    """A plugin whose import fails stops `fedfleet run` at once: one line naming plugins[0],
    and Ray is never started (ray.init is replaced by a tripwire)."""
    ray = pytest.importorskip("ray")
    (tmp_path / "fedfleet_broken_plugin.py").write_text("raise RuntimeError('plugin is broken')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fedfleet_broken_plugin", raising=False)
    started: list[Any] = []
    monkeypatch.setattr(ray, "init", lambda *a, **k: started.append(a) or None)
    sc = _scenario(tmp_path, plugins=["fedfleet_broken_plugin"],
                   **{"executor.kind": "ray", "executor.num_actors": 1})
    rc, lines = _cli(["run", str(sc), "--runs-dir", str(tmp_path / "runs"), "--no-dashboard"],
                     capsys)
    assert rc == 2, lines
    assert len(lines) == 1 and "plugins[0]" in lines[0] and "plugin is broken" in lines[0], lines
    assert started == []


def test_validate_imports_listed_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    marker = tmp_path / "marker"
    (tmp_path / "fedfleet_marker_plugin.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('x')\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fedfleet_marker_plugin", raising=False)
    rc, lines = _cli(["validate", str(_scenario(tmp_path, plugins=["fedfleet_marker_plugin"]))],
                     capsys)
    assert rc == 0, lines
    assert marker.exists()
