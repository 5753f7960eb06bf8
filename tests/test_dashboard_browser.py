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


RUN_PANELS = [f"panel-{p}" for p in ("accuracy", "round-time", "timeline", "classes", "rates",
                                     "outcomes", "workload", "traffic", "population")]
COMPARE_PANELS = [f"panel-compare-{p}" for p in (
    "accuracy", "time-to-target", "round-duration", "waste-energy", "invitations", "classes",
    "fairness", "participation")]


@pytest.fixture(scope="module")
def small_sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped policy comparison, shortened: random vs Oort, 2 seeds, 8 rounds, 200
    clients (about 10 s)."""
    runs = tmp_path_factory.mktemp("sweep")
    cmd = [sys.executable, "-m", "simulator.cli.main", "sweep",
           "scenarios/policy-comparison.yaml", "--grid", "selection.policy=random,oort",
           "--seeds", "2", "--set", "rounds=8", "--set", "population.size=200",
           "--target-accuracy", "0.2", "--name", "pc", "--runs-dir", str(runs),
           "--no-dashboard", "--max-concurrent", "2"]
    proc = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return runs / "pc"


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
    panels = RUN_PANELS
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


def test_comparison_dashboard_renders(small_sweep: Path, driver, shots: list[Path],  # type: ignore[no-untyped-def]
                                      tmp_path: Path) -> None:
    """Every comparison panel holds data, the leaderboard sorts, per-seed lines appear on
    demand, no console error."""
    from dashboards import write_comparison_dashboard

    trials = sorted(p for p in small_sweep.iterdir() if (p / "manifest.json").exists())
    assert len(trials) == 4
    out = write_comparison_dashboard(trials, tmp_path / "cmp.html",
                                     labels=[t.name.split("_")[0] for t in trials],
                                     target_accuracy=0.2)
    driver.get_log("browser")
    driver.get(out.as_uri())
    n = len(COMPARE_PANELS)
    assert driver.execute_async_script(WAIT_PLOTS_JS, ".js-plotly-plot", n) == n
    _check_panels(driver, COMPARE_PANELS)
    # every subplot of the explaining panels has data (not just one trace per panel)
    for pid, kinds in (("compare-time-to-target", 3), ("compare-waste-energy", 2),
                       ("compare-round-duration", 2), ("compare-classes", 4),
                       ("compare-invitations", 2)):
        axes = driver.execute_script(
            "return Array.from(new Set(document.getElementById(arguments[0])._fullData"
            ".filter(t => t.visible === true && (t.y || []).length).map(t => t.xaxis)))",
            f"fig-{pid}")
        assert len(axes) == kinds, (pid, axes)
    # per-seed lines: hidden, then shown by the button
    seeds_js = ("return document.getElementById('fig-compare-accuracy')._fullData"
                ".filter(t => t.visible === true && t.line && t.line.dash === 'dot').length")
    assert driver.execute_script(seeds_js) == 0
    driver.execute_script(
        "const gd = document.getElementById('fig-compare-accuracy');"
        "const b = gd.layout.updatemenus[1].buttons[1]; Plotly.restyle(gd, b.args[0], b.args[1])")
    assert driver.execute_script(seeds_js) == 8  # 4 runs x (round, simulated time)
    # the leaderboard: one row per policy, sorted by time to target; a click sorts by accuracy
    rows_js = ("return Array.from(document.querySelectorAll('table.leaderboard tbody tr'))"
               ".map(r => r.cells[1].textContent)")
    first = driver.execute_script(rows_js)
    assert sorted(first) == ["policy-oort", "policy-random"]
    head = next(h for h in driver.find_elements("css selector", "table.leaderboard th")
                if h.text.startswith("final accuracy"))
    head.click()
    acc_js = ("const t = document.querySelector('table.leaderboard'); const i = Array.from("
              "t.tHead.rows[0].cells).findIndex(c => c.textContent.startsWith('final acc'));"
              "return Array.from(t.tBodies[0].rows).map(r => parseFloat(r.cells[i]"
              ".getAttribute('data-v')))")
    accs = driver.execute_script(acc_js)
    assert accs == sorted(accs, reverse=True)
    assert _severe(driver) == []
    _save(driver, shots, "comparison-dashboard")


LINK_JS = """
const done = arguments[arguments.length - 1];
const src = document.querySelector(arguments[0]), other = document.querySelector(arguments[1]);
const axis = arguments[2], lo = arguments[3], hi = arguments[4];
Plotly.relayout(src, {[axis + '.range']: [lo, hi]}).then(() => setTimeout(() => done({
  other: other.layout.xaxis.range, other2: (other.layout.xaxis2 || {}).range || null,
  linked: !!(src._fedfleetLinked && other._fedfleetLinked),
  replaced: !(document.contains(src) && document.contains(other))}), 400));
"""


def _linked_zoom(driver, src: str, other: str, axis: str, lo: float, hi: float  # type: ignore[no-untyped-def]
                 ) -> dict:
    """LINK_JS on the graphs as they are now. A live page may redraw a view with new graph
    nodes (linking.js attaches to them within 0.5 s): a try on nodes that were not linked yet
    or were replaced meanwhile is repeated, up to 5 times."""
    got: dict = {}
    for _ in range(5):
        got = driver.execute_async_script(LINK_JS, src, other, axis, lo, hi)
        if got["linked"] and not got["replaced"]:
            return got
        time.sleep(0.6)
    return got


def test_linked_zoom_and_round_click(real_run: Path, driver, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """Zooming the accuracy panel's time axis moves the traffic panel's two time axes; zooming
    the round-time panel moves the outcomes panel's round axis; a double click resets both;
    clicking a round opens it in the timeline."""
    from dashboards import write_run_dashboard

    out = write_run_dashboard(real_run, tmp_path / "run.html")
    driver.get_log("browser")
    driver.get(out.as_uri())
    n = len(RUN_PANELS)
    assert driver.execute_async_script(WAIT_PLOTS_JS, ".js-plotly-plot", n) == n
    time.sleep(0.8)  # linking.js attaches within 0.5 s
    got = driver.execute_async_script(LINK_JS, "#fig-accuracy", "#fig-traffic", "xaxis2",
                                      1.0, 3.0)
    assert got["other"] == pytest.approx([1.0, 3.0]) and got["other2"] == pytest.approx(
        [1.0, 3.0])
    got = driver.execute_async_script(LINK_JS, "#fig-round-time", "#fig-outcomes", "xaxis",
                                      0.5, 2.5)
    assert got["other"] == pytest.approx([0.5, 2.5])
    # the accuracy axis did not move with the round axis (different link keys)
    assert driver.execute_script(
        "return document.getElementById('fig-accuracy').layout.xaxis2.range") == pytest.approx(
        [1.0, 3.0])
    reset = driver.execute_async_script(
        "const done = arguments[0]; const a = document.getElementById('fig-accuracy');"
        "Plotly.relayout(a, {'xaxis2.autorange': true}).then(() => setTimeout(() => done("
        "document.getElementById('fig-traffic').layout.xaxis.autorange), 400))")
    assert reset is True
    # click round 3 in the round-time panel: the timeline shows round 3
    driver.execute_script("document.getElementById('fig-round-time').emit('plotly_click',"
                          " {points: [{x: 3}]})")
    time.sleep(0.5)
    tl = driver.execute_script(
        "const g = document.getElementById('fig-timeline');"
        "return [g.getAttribute('data-round'), g.layout.sliders[0].active, g.layout.title.text]")
    assert tl[0] == "3" and tl[1] == 3 and "round 3" in tl[2], tl
    assert _severe(driver) == []


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
        assert driver.execute_async_script(WAIT_PLOTS_JS, "#run-view .js-plotly-plot", 9) == 9
        labels = driver.execute_script(
            "return Array.from(document.querySelectorAll('#run-list label'))"
            ".map(l => l.innerText)")
        assert len(labels) == 2 and labels[0].startswith("live") and "running" in labels[0]
        _check_panels(driver, RUN_PANELS)
        # linked zoom in the live app too: accuracy's time axis moves the traffic panel's
        time.sleep(0.8)
        got = _linked_zoom(driver, "#panel-accuracy .js-plotly-plot",
                           "#panel-traffic .js-plotly-plot", "xaxis2", 0.5, 1.5)
        assert got["other"] == pytest.approx([0.5, 1.5]), got
        assert "2 of 5" in _wait_header(driver, "2 of 5")
        # mark the graphs: an incremental update keeps these nodes, a rebuild replaces them
        driver.execute_script("document.querySelectorAll('#run-view .js-plotly-plot')"
                              ".forEach(g => { g._fedfleetMark = 1; })")
        # two more rounds arrive: the page picks them up by itself
        _make_partial(real_run, runs / "live.partial", [(2, 3)])
        assert "4 of 5" in _wait_header(driver, "4 of 5")
        # the update was incremental: the same graph nodes, redrawn in place with the new data
        time.sleep(1.0)
        kept = driver.execute_script(
            "return Array.from(document.querySelectorAll('#run-view .js-plotly-plot'))"
            ".map(g => g._fedfleetMark === 1)")
        assert kept == [True] * 9, kept
        n_acc = driver.execute_script("return document.querySelector('#panel-accuracy "
                                      ".js-plotly-plot')._fullData[0].x.length")
        assert n_acc == 4
        _save(driver, shots, "live-app")
        # compare both runs
        for lab in driver.find_elements("css selector", "#compare-select label"):
            lab.click()
        next(t for t in driver.find_elements("css selector", "#tabs .tab")
             if t.text == "Compare").click()
        n = len(COMPARE_PANELS)
        assert driver.execute_async_script(WAIT_PLOTS_JS, "#compare-view .js-plotly-plot",
                                           n) == n
        # the leaderboard, re-sorted by the radio buttons
        rows = driver.find_elements("css selector", "#leaderboard tbody tr")
        assert len(rows) == 2
        next(lab for lab in driver.find_elements("css selector", "#lb-sort label")
             if lab.text == "fairness").click()
        jain_js = ("const t = document.querySelector('#leaderboard table'); const i = Array.from("
                   "t.tHead.rows[0].cells).findIndex(c => c.textContent.startsWith('fairness'));"
                   "return Array.from(t.tBodies[0].rows).map(r => parseFloat(r.cells[i]"
                   ".textContent))")
        deadline = time.time() + 10
        jain = driver.execute_script(jain_js)
        while jain != sorted(jain, reverse=True) and time.time() < deadline:
            time.sleep(0.25)
            jain = driver.execute_script(jain_js)
        assert jain == sorted(jain, reverse=True) and len(set(jain)) == 2, jain
        _save(driver, shots, "live-app-compare")
        assert _severe(driver) == []
    finally:
        driver.get("about:blank")  # the page stops polling before its server goes
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
        assert driver.execute_async_script(WAIT_PLOTS_JS, "#run-view .js-plotly-plot", 9) == 9
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
        driver.get("about:blank")  # the page stops polling before its server goes
        srv.stop()
