"""Measure dashboard generation and page-load time on large synthetic runs.

    python -m dashboards.bench_load                 # both sizes, results as a table
    python -m dashboards.bench_load --sizes typical --keep /tmp/bench

For each size it writes a synthetic run directory following the declared parquet schemas
(10,000-client population, 500 rounds; ``typical``: 130 invited per round = 65,000 client rows;
``stress``: all 10,000 invited every round = 5,000,000 client rows), times
``write_run_dashboard`` and then loads the HTML in headless Chromium, timing from navigation
start until every ``.js-plotly-plot`` holds data: the first load in a fresh browser profile
(nothing cached: what a reader sees opening the file) and the median of ``--loads`` reloads
(Chromium then reuses its compiled-code cache for the embedded plotly.js).
Needs /usr/bin/chromium and /usr/bin/chromedriver (Debian) and selenium for the load timing.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

CLASSES = ["phone-lowend", "phone-flagship", "rpi4", "laptop-cpu", "edge-server-l4"]
SHARES = [0.30, 0.30, 0.15, 0.20, 0.05]
GFLOPS = [3.0, 12.0, 1.5, 40.0, 400.0]  # effective training throughput (GFLOP/s)
LINKS = ["wifi", "4g", "5g", "3g", "ethernet"]
OUTCOMES = ["completed", "dropped", "offline", "straggler", "overcommitted", "out_of_memory"]
WORKLOADS = ["full", "lora", "partial"]
SIZES = {"typical": 130, "stress": 10_000}

CHROME_FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                "--disable-background-networking", "--disable-quic", "--no-first-run",
                "--disable-component-update", "--disable-sync", "--window-size=1400,1000"]

# Resolves with performance.now() (ms since navigation start) once every plot has data.
WAIT_RENDERED_JS = """
const done = arguments[arguments.length - 1];
const expected = arguments[0];
function check() {
  const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
  const ready = plots.length >= expected
      && plots.every(p => p._fullLayout && p.data && p.data.length);
  if (ready) { requestAnimationFrame(() => done(performance.now())); }
  else { setTimeout(check, 10); }
}
check();
"""


def _string_array(codes: np.ndarray, names: list[str]) -> pa.Array:
    return pa.DictionaryArray.from_arrays(pa.array(codes.astype(np.int32)),
                                          pa.array(names)).cast(pa.string())


def make_synthetic_run(run_dir: Path, population: int = 10_000, rounds: int = 500,
                       per_round: int = 130, seed: int = 0) -> dict[str, Any]:
    """Write a synthetic complete run (rounds.parquet, clients.parquet, manifest.json)."""
    g = np.random.default_rng(seed)
    run_dir.mkdir(parents=True, exist_ok=True)
    cls = g.choice(len(CLASSES), size=population, p=SHARES)
    link = g.choice(len(LINKS), size=population, p=[0.55, 0.25, 0.08, 0.02, 0.10])
    down_bps = np.array([80e6, 30e6, 150e6, 3e6, 400e6])[link] * g.lognormal(0, 0.6, population)
    up_bps = down_bps * 0.35
    speed = np.array(GFLOPS)[cls] * 1e9 * g.lognormal(0, 0.3, population)
    n_samples = np.maximum(5, g.lognormal(3.9, 0.5, population)).astype(np.int64)
    mem_ok = np.where(cls == 0, g.random(population) > 0.15, True)
    model_bytes, flops_per_sample = 46.8e6, 5.4e9
    target = max(1, int(round(per_round / 1.3)))
    cols: dict[str, list[np.ndarray]] = {k: [] for k in (
        "round", "client_id", "device_class", "link", "outcome", "workload", "n_samples",
        "start_s", "stop_s", "download_s", "compute_s", "upload_s", "bytes_down", "bytes_up",
        "energy_j", "memory_bytes", "train_loss", "download_start_s", "download_end_s",
        "compute_start_s", "compute_end_s", "upload_start_s", "upload_end_s", "model_version",
        "staleness", "battery_fraction", "rank")}
    rows: list[dict[str, Any]] = []
    t0, acc = 0.0, 0.1
    for r in range(rounds):
        ids = np.sort(g.choice(population, size=min(per_round, population), replace=False))
        n = len(ids)
        wl = np.where(cls[ids] == 0, 1, np.where(cls[ids] == 2, 2, 0))
        scale = np.array([1.0, 0.05, 0.5])[wl]
        d = model_bytes / down_bps[ids] * 8 + 0.02
        c = n_samples[ids] * flops_per_sample * np.array([1.0, 0.7, 0.5])[wl] / speed[ids]
        u = model_bytes * scale / up_bps[ids] * 8 + 0.02
        total = d + c + u
        quit_at = g.exponential(4000.0, n)
        infeasible = ~mem_ok[ids]
        finishes = (quit_at >= total) & ~infeasible
        order = np.flatnonzero(finishes)[np.argsort(total[finishes], kind="stable")]
        kept = order[:target]
        end = float(total[kept[-1]]) if len(kept) == target else float(min(600.0, total.max()))
        out = np.full(n, 4)  # overcommitted
        out[~finishes] = np.where(g.random((~finishes).sum()) < 0.8, 1, 2)
        out[infeasible] = 5
        out[kept] = 0
        if len(kept) < target:
            out[(out == 4)] = 3
        stop = np.where(out == 0, total, np.minimum(np.where(finishes, total, quit_at), end))
        stop = np.where(infeasible, 0.0, stop)
        frac_d = np.clip(stop / d, 0, 1)
        frac_u = np.clip((stop - d - c) / u, 0, 1)
        energy = 3.0 * np.clip(stop - d, 0, c) + 1.5 * (np.clip(stop, 0, d) + frac_u * u)
        cols["round"].append(np.full(n, r))
        cols["client_id"].append(ids)
        cols["device_class"].append(cls[ids])
        cols["link"].append(link[ids])
        cols["outcome"].append(out)
        cols["workload"].append(wl)
        cols["n_samples"].append(n_samples[ids])
        cols["start_s"].append(np.full(n, t0))
        cols["stop_s"].append(t0 + stop)
        cols["download_s"].append(d)
        cols["compute_s"].append(c)
        cols["upload_s"].append(u)
        cols["bytes_down"].append(model_bytes * frac_d)
        cols["bytes_up"].append(model_bytes * scale * frac_u)
        cols["energy_j"].append(energy)
        cols["memory_bytes"].append(np.full(n, 9.4e7))
        cols["train_loss"].append(np.where(out == 0, 2.3 * np.exp(-r / 150), np.nan))
        # event log: absolute phase start/end, NaN for a phase never started
        started = ~infeasible
        for name, off, length in (("download", 0.0, d), ("compute", d, c), ("upload", d + c, u)):
            ok = started & ((stop > off) | ((name == "download") & started))
            cols[f"{name}_start_s"].append(np.where(ok, t0 + off, np.nan))
            cols[f"{name}_end_s"].append(np.where(ok, t0 + np.minimum(off + length, stop),
                                                  np.nan))
        cols["model_version"].append(np.full(n, r))
        cols["staleness"].append(np.zeros(n, np.int64))
        cols["battery_fraction"].append(np.where(cls[ids] <= 1, g.uniform(0.2, 1.0, n), np.nan))
        cols["rank"].append(np.where(wl == 1, g.choice([4, 8, 16], n), 0))
        acc = acc + (0.95 - acc) * 0.012 + g.normal(0, 0.004)
        cnt = np.bincount(out, minlength=6)
        rows.append({"round": r, "sim_start_s": t0, "sim_end_s": t0 + end, "duration_s": end,
                     "wall_s": 0.05, "candidates": population // 2, "selected": n,
                     "completed": cnt[0], "dropped": cnt[1], "offline": cnt[2],
                     "straggled": cnt[3], "overcommitted": cnt[4], "out_of_memory": cnt[5],
                     "accuracy": acc, "loss": 2.3 * (1 - acc), "train_loss": 2.3 * (1 - acc),
                     "bytes_down": float(cols["bytes_down"][-1].sum()),
                     "bytes_up": float(cols["bytes_up"][-1].sum()),
                     "energy_j": float(energy.sum()),
                     "wasted_device_s": float(stop[out != 0].sum())})
        t0 += end
    cat = {k: np.concatenate(v) for k, v in cols.items()}
    arrays = {}
    for k, v in cat.items():
        names = {"device_class": CLASSES, "link": LINKS, "outcome": OUTCOMES,
                 "workload": WORKLOADS}.get(k)
        arrays[k] = _string_array(v, names) if names else pa.array(v)
    pq.write_table(pa.table(arrays), run_dir / "clients.parquet", compression="zstd")
    pq.write_table(pa.Table.from_pylist(rows), run_dir / "rounds.parquet", compression="zstd")
    manifest = {"name": run_dir.name, "scenario": {
        "name": run_dir.name, "description": f"Synthetic benchmark run: {population:,} clients, "
        f"{rounds} rounds, {per_round:,} invited per round.", "seed": seed,
        "population": {"size": population}, "rounds": rounds, "clients_per_round": target,
        "overcommit": 1.3, "deadline_s": 600.0, "selection": {"policy": "random"},
        "aggregation": {"method": "fedavg"}}, "seed": seed, "rounds": rounds,
        "population": population, "sim_end_s": t0, "final_accuracy": acc, "wall_s": 0.05 * rounds,
        "tables": {"rounds.parquet": rounds, "clients.parquet": int(len(cat["round"]))},
        "status": "complete"}
    (run_dir / "manifest.json").write_text(json.dumps(manifest, indent=2, default=float))
    return manifest


def make_driver(width: int = 1400, height: int = 1000):  # type: ignore[no-untyped-def]
    """Headless Debian Chromium through selenium, with browser console logging on."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    opts = webdriver.ChromeOptions()
    opts.binary_location = "/usr/bin/chromium"
    for f in CHROME_FLAGS:
        opts.add_argument(f)
    opts.add_argument(f"--window-size={width},{height}")
    profile = tempfile.mkdtemp(prefix="fedfleet-chrome-")
    opts.add_argument(f"--user-data-dir={profile}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    try:
        driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=opts)
    except Exception:
        shutil.rmtree(profile, ignore_errors=True)
        raise
    driver.fedfleet_profile = profile  # type: ignore[attr-defined]  # for close_driver
    return driver


def close_driver(driver) -> None:  # type: ignore[no-untyped-def]
    """Quit the browser and delete its throw-away profile."""
    try:
        driver.quit()
    finally:
        shutil.rmtree(getattr(driver, "fedfleet_profile", ""), ignore_errors=True)


def time_page_load(driver, url: str, expected_plots: int, timeout_s: float = 60) -> float:  # type: ignore[no-untyped-def]
    """Seconds from navigation start until every plot on ``url`` has rendered data."""
    driver.set_script_timeout(timeout_s)
    driver.get(url)
    return float(driver.execute_async_script(WAIT_RENDERED_JS, expected_plots)) / 1000.0


def page_marks(driver) -> dict[str, float]:  # type: ignore[no-untyped-def]
    """The page's ``fedfleet:*`` performance marks, in seconds since navigation start."""
    marks = driver.execute_script(
        "return performance.getEntriesByType('mark').filter(m => m.name.startsWith('fedfleet:'))"
        ".map(m => [m.name.slice(9), m.startTime])")
    return {name: t / 1000.0 for name, t in marks}


def bench(sizes: list[str], keep: Path | None, loads: int) -> list[dict[str, Any]]:
    from dashboards import write_run_dashboard
    from dashboards.data import CLIENT_READ

    root = keep or Path(tempfile.mkdtemp(prefix="fedfleet-bench-"))
    results = []
    try:
        for size in sizes:
            run_dir = root / f"synthetic-{size}"
            t = time.perf_counter()
            man = make_synthetic_run(run_dir, per_round=SIZES[size])
            t_gen = time.perf_counter() - t
            t = time.perf_counter()
            pq.read_table(run_dir / "clients.parquet",
                          columns=[c for c in CLIENT_READ
                                   if c in pq.read_schema(run_dir / "clients.parquet").names])
            t_read = time.perf_counter() - t
            t, c = time.perf_counter(), time.process_time()
            html = write_run_dashboard(run_dir)
            t_html, c_html = time.perf_counter() - t, time.process_time() - c
            n_plots = html.read_text().count('class="panel"')
            cold, warm, marks = float("nan"), [], {}
            try:
                driver = make_driver()  # a fresh profile: nothing cached, as for a first visit
            except Exception as exc:  # noqa: BLE001 - no browser: report generation only
                print(f"no browser ({exc.__class__.__name__}); skipping load timing")
                driver = None
            if driver is not None:
                try:
                    url = html.resolve().as_uri()
                    cold = time_page_load(driver, url, n_plots)
                    marks = page_marks(driver)
                    warm = [time_page_load(driver, url, n_plots) for _ in range(loads)]
                finally:
                    close_driver(driver)
            results.append({"size": size, "client_rows": man["tables"]["clients.parquet"],
                            "synth_s": t_gen, "read_s": t_read, "html_s": t_html,
                            "html_cpu_s": c_html,
                            "html_mb": html.stat().st_size / 1e6, "cold_load_s": cold,
                            "cold_marks": marks,
                            "warm_load_s": statistics.median(warm) if warm else float("nan")})
    finally:
        if keep is None:
            shutil.rmtree(root, ignore_errors=True)
    return results


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dashboards.bench_load", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--sizes", nargs="+", default=list(SIZES), choices=list(SIZES))
    ap.add_argument("--keep", type=Path, help="keep the synthetic runs in this directory")
    ap.add_argument("--loads", type=int, default=3,
                    help="repeat page loads after the first, cold one (median reported)")
    args = ap.parse_args(argv)
    load0 = os.getloadavg()[0]
    res = bench(args.sizes, args.keep, args.loads)
    print(f"{os.cpu_count()} CPUs; 1-minute load average {load0:.1f} before, "
          f"{os.getloadavg()[0]:.1f} after (other work on the machine slows every number)")
    print(f"{'size':<8} {'client rows':>12} {'read cols':>10} {'write HTML':>11} {'(CPU)':>7} "
          f"{'HTML':>8} {'first load':>11} {'reload':>8}")
    for r in res:
        print(f"{r['size']:<8} {r['client_rows']:>12,} {r['read_s']:>9.2f}s {r['html_s']:>10.2f}s "
              f"{r['html_cpu_s']:>6.2f}s {r['html_mb']:>6.1f}MB {r['cold_load_s']:>10.2f}s "
              f"{r['warm_load_s']:>7.2f}s")
    for r in res:
        if r["cold_marks"]:
            steps = ", ".join(f"{k} {v:.2f}" for k, v in r["cold_marks"].items())
            print(f"{r['size']} first load, s since navigation start: {steps}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
