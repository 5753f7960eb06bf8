"""Analytic-mode scale from 10^6 to 10^7 clients: memory, set-up and round time, as ratios.

The same engine run as benchmarks/bench_analytic.py (its ``child``: a five-class fleet,
10,000 invited per round, ResNet-18-sized clock proxy, recording on), each size in its own
process so that peak RSS is its own, interleaved: 1M, 10M, 1M, 10M (min of two). A
population-independent engine would show a round-time ratio near 1 and set-up and memory
ratios near 10 (linear in N: the per-client columns). Per-round figures include the first
round's one-time work (lazy imports, first index queries); a profile of rounds 2-6 at 10^7 gave
72 ms per round (recording included) against 58 ms at 10^6 over all rounds.

    python -m benchmarks.bench_scale                # ~1-2 minutes on 2 cores
    python -m benchmarks.bench_scale --rounds 20 --reps 1
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from benchmarks.common import ROOT, Table, load_line, machine_line, ratio

SIZES = (1_000_000, 10_000_000)


def run(population: int, rounds: int, per_round: int) -> dict:
    cmd = [sys.executable, "-m", "benchmarks.bench_analytic", "--child", "--population",
           str(population), "--per-round", str(per_round), "--rounds", str(rounds)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        raise RuntimeError(res.stderr[-2000:])
    return json.loads(res.stdout.strip().splitlines()[-1])  # type: ignore[no-any-return]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--per-round", type=int, default=10_000)
    ap.add_argument("--reps", type=int, default=2)
    a = ap.parse_args(argv)
    print(machine_line())
    got: dict[int, list[dict]] = {n: [] for n in SIZES}
    for _ in range(a.reps):
        for n in SIZES:
            got[n].append(run(n, a.rounds, a.per_round))

    def best(n: int, key: str, i: int | None = None) -> float:
        vals = [r[key][i] if i is not None else r[key] for r in got[n]]
        return min(vals)

    t = Table(f"Analytic scale: {a.per_round:,} invited per round, {a.rounds} rounds "
              f"(min of {a.reps})",
              ["clients", "set-up s", "set-up CPU s", "per round ms", "per round CPU ms",
               "peak RSS MiB"])
    for n in SIZES:
        t.add(f"{n:,}", best(n, "setup_s"), best(n, "cpu_s", 0),
              1e3 * best(n, "rounds_s") / a.rounds, 1e3 * best(n, "cpu_s", 1) / a.rounds,
              best(n, "peak_rss_mb"))
    lo, hi = SIZES
    t.notes += [
        f"10M / 1M: per-round wall {ratio(best(hi, 'rounds_s'), best(lo, 'rounds_s')):.2f}x, "
        f"per-round CPU {ratio(best(hi, 'cpu_s', 1), best(lo, 'cpu_s', 1)):.2f}x, set-up CPU "
        f"{ratio(best(hi, 'cpu_s', 0), best(lo, 'cpu_s', 0)):.1f}x, peak RSS "
        f"{ratio(best(hi, 'peak_rss_mb'), best(lo, 'peak_rss_mb')):.1f}x (10x the clients)",
        load_line()]
    t.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
