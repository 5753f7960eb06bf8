"""Dashboards in a real browser: headless Debian Chromium through selenium.

A 5-round quickstart run is made with the CLI; its HTML dashboard, a comparison and the live
app are opened and every panel must hold a rendered plot with data, with no SEVERE console
error. Screenshots go to a temporary folder, and to docs/img/ when FEDFLEET_SCREENSHOTS is set.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
REPO = Path(__file__).resolve().parents[1]

pytestmark = [
    pytest.mark.browser,
    pytest.mark.skipif(not (CHROMIUM.exists() and CHROMEDRIVER.exists()),
                       reason="needs /usr/bin/chromium and /usr/bin/chromedriver"),
]
selenium = pytest.importorskip("selenium")

PANEL_INFO_JS = """
return Array.from(document.querySelectorAll('.panel')).map(p => {
  const plots = Array.from(p.querySelectorAll('.js-plotly-plot'));
  // _fullData holds the decoded arrays (gd.data may keep base64 typed-array specs)
  return {id: p.id, plots: plots.length, points: plots.map(g => (g._fullData || [])
    .filter(t => t.visible === true).map(t => {
      const a = t.x || t.y || t.q1 || [];
      return a.length || 0;
    }))};
});
"""

WAIT_PLOTS_JS = """
const done = arguments[arguments.length - 1];
const sel = arguments[0], expected = arguments[1];
const t0 = performance.now();
(function check() {
  const ready = Array.from(document.querySelectorAll(sel))
      .filter(g => g._fullLayout && g.data && g.data.length);
  if (ready.length >= expected) done(ready.length);
  else if (performance.now() - t0 > 50000) done(ready.length);
  else setTimeout(check, 50);
})();
"""


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    dirs = [tmp_path_factory.mktemp("screenshots")]
    if os.environ.get("FEDFLEET_SCREENSHOTS"):
        dirs.append(REPO / "docs" / "img")
        dirs[-1].mkdir(parents=True, exist_ok=True)
    return dirs


def _save(driver, shots: list[Path], name: str, element=None) -> None:  # type: ignore[no-untyped-def]
    for d in shots:
        (element or driver).screenshot(str(d / f"{name}.png")) if element is not None else \
            driver.save_screenshot(str(d / f"{name}.png"))


@pytest.fixture(scope="module")
def real_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    runs = tmp_path_factory.mktemp("runs")
    cmd = [sys.executable, "-m", "simulator.cli.main", "run", "scenarios/quickstart.yaml",
           "--no-dashboard", "--runs-dir", str(runs), "--set", "rounds=5",
           "--set", "executor.kind=local"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    run = runs / "quickstart"
    assert (run / "manifest.json").exists()
    return run


@pytest.fixture(scope="module")
def driver():  # type: ignore[no-untyped-def]
    from dashboards.bench_load import close_driver, make_driver

    d = make_driver(1400, 1000)
    d.set_script_timeout(60)
    yield d
    close_driver(d)


def _severe(driver) -> list[dict]:  # type: ignore[no-untyped-def]
    return [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]


def _check_panels(driver, expected_ids: list[str]) -> None:  # type: ignore[no-untyped-def]
    info = driver.execute_script(PANEL_INFO_JS)
    assert [p["id"] for p in info] == expected_ids
    for p in info:
        assert p["plots"] >= 1, f"{p['id']}: no rendered plot"
        assert any(n > 0 for plot in p["points"] for n in plot), f"{p['id']}: no data"


def test_run_dashboard_renders(real_run: Path, driver, shots: list[Path]) -> None:  # type: ignore[no-untyped-def]
    from dashboards import write_run_dashboard

    out = write_run_dashboard(real_run)
    panels = ["panel-accuracy", "panel-round-time", "panel-timeline", "panel-rates",
              "panel-outcomes", "panel-workload", "panel-traffic", "panel-population"]
    driver.get_log("browser")  # drop anything logged before this page
    driver.get(out.as_uri())
    assert driver.execute_async_script(WAIT_PLOTS_JS, ".js-plotly-plot", len(panels)) == len(
        panels)
    _check_panels(driver, panels)
    # the timeline's slider switches rounds
    steps = driver.execute_script(
        "return document.getElementById('fig-timeline').layout.sliders[0].steps.length")
    assert steps == 5
    assert _severe(driver) == []
    _save(driver, shots, "run-dashboard")
    for pid in panels:
        el = driver.find_element("id", pid)
        driver.execute_script("arguments[0].scrollIntoView()", el)
        _save(driver, shots, pid.replace("panel-", "run-"), el)


def test_comparison_dashboard_renders(real_run: Path, driver, shots: list[Path],  # type: ignore[no-untyped-def]
                                      tmp_path: Path) -> None:
    from dashboards import write_comparison_dashboard

    out = write_comparison_dashboard([real_run, real_run], tmp_path / "cmp.html",
                                     labels=["quickstart", "quickstart"])
    panels = ["panel-compare-accuracy", "panel-compare-time-to-target",
              "panel-compare-fairness", "panel-compare-participation"]
    driver.get_log("browser")
    driver.get(out.as_uri())
    assert driver.execute_async_script(WAIT_PLOTS_JS, ".js-plotly-plot", 4) == 4
    _check_panels(driver, panels)
    assert _severe(driver) == []
    _save(driver, shots, "comparison-dashboard")


def _make_partial(src: Path, dst: Path, chunks: list[tuple[int, int]]) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    (dst / "parts").mkdir(parents=True, exist_ok=True)
    man = json.loads((src / "manifest.json").read_text())
    (dst / "scenario.json").write_text(json.dumps(man["scenario"]))
    for name in ("rounds", "clients"):
        t = pq.read_table(src / f"{name}.parquet")
        for a, b in chunks:
            keep = pc.and_(pc.greater_equal(t["round"], a), pc.less_equal(t["round"], b))
            tmp = dst / "parts" / f".{name}-{a:08d}-{b:08d}.parquet.tmp"
            pq.write_table(t.filter(keep), tmp)
            os.replace(tmp, dst / "parts" / f"{name}-{a:08d}-{b:08d}.parquet")


def _wait_header(driver, text: str, timeout_s: float = 45) -> str:  # type: ignore[no-untyped-def]
    js = "const h = document.querySelector('.runhead'); return h ? h.textContent : ''"
    deadline = time.time() + timeout_s
    head = driver.execute_script(js)
    while text not in head and time.time() < deadline:
        time.sleep(0.25)
        head = driver.execute_script(js)
    return head


def test_live_app(real_run: Path, driver, shots: list[Path], tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    import shutil

    from dashboards.app import start_server

    runs = tmp_path / "runs"
    shutil.copytree(real_run, runs / "quickstart")
    _make_partial(real_run, runs / "live.partial", [(0, 1)])
    srv = start_server(runs)
    try:
        driver.get_log("browser")
        driver.get(srv.url)
        # the unfinished run is shown first, with all its panels
        assert driver.execute_async_script(WAIT_PLOTS_JS, "#run-view .js-plotly-plot", 8) == 8
        labels = driver.execute_script(
            "return Array.from(document.querySelectorAll('#run-list label'))"
            ".map(l => l.innerText)")
        assert len(labels) == 2 and labels[0].startswith("live") and "running" in labels[0]
        _check_panels(driver, [f"panel-{p}" for p in (
            "accuracy", "round-time", "timeline", "rates", "outcomes", "workload", "traffic",
            "population")])
        assert "2 of 5" in _wait_header(driver, "2 of 5")
        # two more rounds arrive: the page picks them up by itself
        _make_partial(real_run, runs / "live.partial", [(2, 3)])
        assert "4 of 5" in _wait_header(driver, "4 of 5")
        _save(driver, shots, "live-app")
        # compare both runs
        for lab in driver.find_elements("css selector", "#compare-select label"):
            lab.click()
        next(t for t in driver.find_elements("css selector", "#tabs .tab")
             if t.text == "Compare").click()
        assert driver.execute_async_script(WAIT_PLOTS_JS, "#compare-view .js-plotly-plot", 4) == 4
        _save(driver, shots, "live-app-compare")
        assert _severe(driver) == []
    finally:
        srv.stop()


def _labels(driver) -> list[str]:  # type: ignore[no-untyped-def]
    return driver.execute_script(
        "return Array.from(document.querySelectorAll('#run-list label')).map(l => l.innerText)")


def _wait_labels(driver, pred, timeout_s: float = 30) -> list[str]:  # type: ignore[no-untyped-def]
    deadline = time.time() + timeout_s
    labels = _labels(driver)
    while not pred(labels) and time.time() < deadline:
        time.sleep(0.25)
        labels = _labels(driver)
    return labels


def _finish_partial(src: Path, partial: Path) -> Path:
    """What Recorder.finalize does: whole tables and a manifest, then the rename."""
    import shutil

    for name in ("rounds.parquet", "clients.parquet", "manifest.json"):
        shutil.copy(src / name, partial / name)
    shutil.rmtree(partial / "parts")
    final = partial.with_name(partial.name[: -len(".partial")])
    os.replace(partial, final)
    return final


def test_live_app_follows_runs_that_finish_and_start(real_run: Path, driver,  # type: ignore[no-untyped-def]
                                                      tmp_path: Path) -> None:
    """Issue 17: the list and badge follow a run that finishes while the page is open, a run
    started later appears without a reload, and dash_renderer logs no error."""
    import shutil

    from dashboards.app import start_server

    runs = tmp_path / "runs"
    shutil.copytree(real_run, runs / "quickstart")
    _make_partial(real_run, runs / "live.partial", [(0, 1)])
    srv = start_server(runs)
    try:
        driver.get_log("browser")
        driver.get(srv.url)
        assert driver.execute_async_script(WAIT_PLOTS_JS, "#run-view .js-plotly-plot", 8) == 8
        assert "2 of 5" in _wait_header(driver, "2 of 5")
        labels = _labels(driver)
        assert labels[0].startswith("live") and "running" in labels[0]
        # the run finishes (its .partial folder is renamed): badge and view follow
        _finish_partial(real_run, runs / "live.partial")
        labels = _wait_labels(driver, lambda ls: any(
            lab.startswith("live") and "running" not in lab for lab in ls))
        live = [lab for lab in labels if lab.startswith("live")]
        assert live and "running" not in live[0] and "%" in live[0], labels
        head = _wait_header(driver, "statuscomplete")
        assert "in progress" not in head and "statuscomplete" in head, head
        # a second run starts while the page is open: it appears, and the page keeps following
        _make_partial(real_run, runs / "second.partial", [(0, 0)])
        labels = _wait_labels(driver, lambda ls: any(lab.startswith("second") for lab in ls))
        assert any(lab.startswith("second") and "running" in lab for lab in labels), labels
        _make_partial(real_run, runs / "second.partial", [(1, 2)])
        labels = _wait_labels(driver, lambda ls: any("3/5" in lab for lab in ls))
        assert any(lab.startswith("second") and "3/5" in lab for lab in labels), labels
        time.sleep(1)
        assert _severe(driver) == []
    finally:
        srv.stop()
