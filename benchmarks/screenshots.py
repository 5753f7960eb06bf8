"""Regenerate the dashboard screenshots in README.md and docs/dashboards.md from real runs.

    python -m benchmarks.screenshots [--out docs/img] [--work DIR] [--seeds 3]

Runs `fedfleet run scenarios/quickstart.yaml` (30 rounds) and a `fedfleet sweep` of the shipped
scenarios/policy-comparison.yaml (random vs Oort, --seeds seeds, 120 rounds), writes their
dashboards, and photographs them in headless Debian Chromium (/usr/bin/chromium and
/usr/bin/chromedriver, through selenium: the test extra), 1400 px wide:

- run-dashboard.png: the quickstart page from the top (header, accuracy, round time, timeline)
- comparison.png: the sweep's comparison page from the top (leaderboard, accuracy, rounds vs
  time to target, round durations)
- comparison-classes.png, comparison-waste-energy.png: two comparison panels
- run-classes.png: the quickstart run's device-class drill-down

A page with a console error (SEVERE) stops the script.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _cli(*args: str) -> None:
    proc = subprocess.run([sys.executable, "-m", "simulator.cli.main", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=1800)
    if proc.returncode != 0:
        raise SystemExit(f"fedfleet {' '.join(args)} failed:\n{proc.stderr[-3000:]}")


def make_runs(work: Path, seeds: int) -> tuple[Path, list[Path]]:
    runs = work / "runs"
    _cli("run", "scenarios/quickstart.yaml", "--runs-dir", str(runs), "--name", "quickstart",
         "--no-dashboard", "--overwrite")
    _cli("sweep", "scenarios/policy-comparison.yaml", "--grid", "selection.policy=random,oort",
         "--seeds", str(seeds), "--target-accuracy", "0.8", "--name", "policy-comparison",
         "--runs-dir", str(runs), "--overwrite", "--no-dashboard")
    sweep = runs / "policy-comparison"
    trials = sorted(p for p in sweep.iterdir() if (p / "manifest.json").exists())
    return runs / "quickstart", trials


def _shoot(driver, url: str, n_plots: int, shots: dict[str, str | None], out: Path,  # type: ignore[no-untyped-def]
           page_height: int) -> None:
    wait = """
    const done = arguments[arguments.length - 1], n = arguments[0], t0 = performance.now();
    (function check() {
      const ready = Array.from(document.querySelectorAll('.js-plotly-plot'))
          .filter(g => g._fullLayout && g.data && g.data.length).length;
      if (ready >= n || performance.now() - t0 > 60000) done(ready);
      else setTimeout(check, 100);
    })();"""
    driver.set_window_size(1400, 1000)
    driver.get_log("browser")
    driver.get(url)
    driver.set_script_timeout(90)
    got = driver.execute_async_script(wait, n_plots)
    if got < n_plots:
        raise SystemExit(f"{url}: only {got} of {n_plots} plots rendered")
    time.sleep(1.0)
    severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
    if severe:
        raise SystemExit(f"{url}: console errors {severe}")
    for name, element_id in shots.items():
        if element_id is None:  # the page from the top, page_height tall
            driver.set_window_size(1400, page_height)
            driver.execute_script("window.scrollTo(0, 0)")
            time.sleep(0.8)  # plotly's responsive resize
            driver.save_screenshot(str(out / f"{name}.png"))
            driver.set_window_size(1400, 1000)
            time.sleep(0.5)
        else:
            el = driver.find_element("id", element_id)
            driver.execute_script("arguments[0].scrollIntoView()", el)
            time.sleep(0.3)
            el.screenshot(str(out / f"{name}.png"))
        print(f"wrote {out / (name + '.png')}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default=str(REPO / "docs" / "img"))
    ap.add_argument("--work", help="where the runs go (default: a temporary folder)")
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    from dashboards import write_comparison_dashboard, write_run_dashboard
    from dashboards.bench_load import close_driver, make_driver

    with tempfile.TemporaryDirectory(prefix="fedfleet-shots-") as tmp:
        work = Path(args.work) if args.work else Path(tmp)
        run, trials = make_runs(work, args.seeds)
        run_html = write_run_dashboard(run)
        cmp_html = write_comparison_dashboard(
            trials, work / "comparison.html",
            labels=[t.name.split("_")[0].replace("policy-", "") for t in trials],
            target_accuracy=0.8)
        driver = make_driver(1400, 1000)
        try:
            _shoot(driver, run_html.as_uri(), 9,
                   {"run-dashboard": None, "run-classes": "panel-classes"}, out, 2250)
            _shoot(driver, cmp_html.as_uri(), 8,
                   {"comparison": None, "comparison-classes": "panel-compare-classes",
                    "comparison-waste-energy": "panel-compare-waste-energy"}, out, 2000)
        finally:
            close_driver(driver)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
