"""Does the live app keep up with a 10k-client run at a 2 s refresh? Incremental vs full redraw.

    python -m benchmarks.bench_live [--seconds 15] [--per-round 1000]

A synthetic run (dashboards/bench_load.make_synthetic_run: 10,000 clients, --per-round invited
per round, 500 rounds) is served as an unfinished ``NAME.partial/`` with rounds 0-299 on disk;
then every 2 s a chunk of 10 more rounds is written, as the recorder does. Headless Chromium has
the run view open; the header's "N of 500" is sampled every 0.1 s. For the incremental app
(``make_app(incremental=True)``, the default) and the full-rebuild one (``incremental=False``)
it prints how many times the view changed, how far behind the files it ended (rounds on disk
minus rounds shown) and the median time from a chunk landing to the view showing it.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _chunk(src: Path, dst: Path, a: int, b: int) -> None:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    (dst / "parts").mkdir(parents=True, exist_ok=True)
    for name in ("rounds", "clients"):
        t = pq.read_table(src / f"{name}.parquet")
        keep = pc.and_(pc.greater_equal(t["round"], a), pc.less_equal(t["round"], b))
        tmp = dst / "parts" / f".{name}-{a:08d}-{b:08d}.parquet.tmp"
        pq.write_table(t.filter(keep), tmp)
        os.replace(tmp, dst / "parts" / f"{name}-{a:08d}-{b:08d}.parquet")


def measure(src: Path, work: Path, incremental: bool, seconds: float) -> dict[str, Any]:
    import json

    from dashboards.app import start_server
    from dashboards.bench_load import close_driver, make_driver

    runs = work / ("inc" if incremental else "full")
    shutil.rmtree(runs, ignore_errors=True)
    live = runs / "live.partial"
    (live / "parts").mkdir(parents=True)
    man = json.loads((src / "manifest.json").read_text())
    (live / "scenario.json").write_text(json.dumps(man.get("scenario", man)))
    _chunk(src, live, 0, 299)
    srv = start_server(runs, incremental=incremental)
    driver = make_driver(1400, 1000)
    head_js = "const h = document.querySelector('.runhead'); return h ? h.textContent : ''"
    try:
        driver.get(srv.url)
        deadline = time.time() + 120
        while "300 of" not in driver.execute_script(head_js) and time.time() < deadline:
            time.sleep(0.2)
        landed: dict[int, float] = {}  # rounds on disk -> when
        shown: list[tuple[float, int]] = []
        done, t0, next_chunk = 300, time.time(), time.time()
        last = 300
        while time.time() - t0 < seconds:
            now = time.time()
            if now >= next_chunk and done < 500:
                _chunk(src, live, done, done + 9)
                done += 10
                landed[done] = time.time()
                next_chunk += 2.0
            m = re.search(r"(\d[\d,]*) of 500", driver.execute_script(head_js) or "")
            if m:
                n = int(m.group(1).replace(",", ""))
                if n != last:
                    shown.append((time.time(), n))
                    last = n
            time.sleep(0.1)
        lags = [t - landed[n] for t, n in shown if n in landed]
        severe = [e for e in driver.get_log("browser") if e.get("level") == "SEVERE"]
        return {"incremental": incremental, "updates": len(shown), "chunks": len(landed),
                "behind_rounds": done - last,
                "median_lag_s": statistics.median(lags) if lags else float("nan"),
                "console_errors": len(severe),
                "first_error": severe[0]["message"][:300] if severe else ""}
    finally:
        close_driver(driver)
        srv.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=15.0)  # make bench stays under 10 min
    ap.add_argument("--per-round", type=int, default=1000)
    ap.add_argument("--incremental-only", action="store_true")
    args = ap.parse_args(argv)
    from dashboards.bench_load import make_synthetic_run

    with tempfile.TemporaryDirectory(prefix="fedfleet-live-") as tmp:
        src = Path(tmp) / "src"
        make_synthetic_run(src, population=10_000, rounds=500, per_round=args.per_round)
        for inc in (True, False)[: 1 if args.incremental_only else 2]:
            r = measure(src, Path(tmp), inc, args.seconds)
            print(f"{'incremental' if inc else 'full rebuild'}: {r['updates']} view updates for "
                  f"{r['chunks']} chunks in {args.seconds:.0f} s, ended {r['behind_rounds']} "
                  f"rounds behind, median chunk-to-view {r['median_lag_s']:.2f} s, "
                  f"{r['console_errors']} console errors {r['first_error']}", flush=True)
    time.sleep(5)  # let a callback still running in a server thread finish before exit
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
