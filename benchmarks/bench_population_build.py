"""Building a population: 100,000 clients must take under 2 s and under 200 MB (issue 2).

Measures the time and the resident-memory growth of
:func:`simulator.loop.simulation.build_population` for the quickstart mix (device columns plus the
dataset's client-size column; client shards are generated lazily, so nothing per client is
materialised) at 10^4, 10^5 and 10^6 clients,
and prints the ratio to a bare numpy baseline that draws the same number of log-normal columns.

    python -m benchmarks.bench_population_build
"""

from __future__ import annotations

import gc
import sys
import time
from pathlib import Path

import numpy as np
import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from simulator.config.scenario import load_scenario  # noqa: E402
from simulator.loop.simulation import build_population  # noqa: E402

N_COLUMNS = 12  # float columns the population holds per client


def _rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def bare_numpy(n: int) -> float:
    t0 = time.perf_counter()
    g = np.random.default_rng(0)
    cols = [np.exp(0.5 * g.standard_normal(n)) for _ in range(N_COLUMNS)]
    del cols
    return time.perf_counter() - t0


def main(argv: list[str] | None = None) -> int:
    sizes = [10_000, 100_000, 1_000_000]
    print(f"{'clients':>10} {'build s':>9} {'numpy s':>9} {'ratio':>7} {'RSS +MB':>8} "
          f"{'columns MB':>10}")
    ok = True
    # Warm-up: one-time imports (scikit-learn's digits loader) are not part of a build.
    build_population(load_scenario(ROOT / "scenarios" / "quickstart.yaml",
                                   {"population.size": 1000, "executor.kind": "local"}))
    for n in sizes:
        sc = load_scenario(ROOT / "scenarios" / "quickstart.yaml",
                           {"population.size": n, "executor.kind": "local"})
        before = _rss()
        t0 = time.perf_counter()
        pop, _dataset = build_population(sc)
        took = time.perf_counter() - t0
        grew = (_rss() - before) / 2**20
        base = bare_numpy(n)
        print(f"{n:>10,} {took:>9.3f} {base:>9.3f} {took / base:>7.1f} {grew:>8.1f} "
              f"{pop.nbytes() / 2**20:>10.1f}")
        if n == 100_000:
            ok = took < 2.0 and grew < 200
        del pop, _dataset
    print(f"goal (100,000 clients: < 2 s, < 200 MB): {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
