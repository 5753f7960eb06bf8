"""Population-size independence: steady round time from 1,000 to 1,000,000 clients.

The quickstart workload (real training, 100 clients per round, 130 invited) on the in-process
executor, so the numbers show the engine's own per-round cost plus training, without Ray's
(population-independent) call overhead. Only the population size changes. Setup (sampling the
population, client sizes, the availability index) is a one-time cost and reported apart.

At 10^5 clients and more the engine counts and samples online clients through
``simulator.fleet.availability.AvailabilityIndex`` (O(k) per round) instead of an O(N) mask; the
largest size also runs with the index switched off, to show what the O(N) path costs there.
Each size also runs without the hosts' shard cache (every shard generated when used), which
gives every size the same per-round work. All variants are built first and then advance one
round at a time in turn, so load swings on a shared machine hit them alike.

    python -m benchmarks.bench_population               # ~1 minute on 2 cores
    python -m benchmarks.bench_population --sizes 1000,100000 --rounds 15
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks.common import Table, machine_line, median, quickstart_doc, ratio, verdict

GOAL = 1.2  # steady round time at 10^6 clients / at 10^3 clients
WARMUP = 5


def population_doc(n: int, rounds: int) -> dict[str, Any]:
    return quickstart_doc(**{"population.size": n, "rounds": rounds, "executor.kind": "local",
                             "output.checkpoint_every": 0})


def shards_cached(sim: Any) -> int:
    w = getattr(getattr(sim.executor, "workload", None), "_cache", None)
    return len(w) if w is not None else 0


class Variant:
    """One simulation in the round-robin: a population size, shard cache on/off, index on/off."""

    def __init__(self, n: int, rounds: int, cache: bool = True, index: bool = True) -> None:
        from simulator.config.scenario import parse_scenario
        from simulator.loop.simulation import Simulation

        self.n, self.cache, self.index_on = n, cache, index
        t0 = time.perf_counter()
        self.sim = Simulation(parse_scenario(population_doc(n, rounds)))
        self.setup = time.perf_counter() - t0
        self.uses_index = self.sim.avail_index is not None and index
        if not index:
            self.sim.avail_index = None
        if not cache:  # MLPWorkload._client_data caches while the byte budget allows
            self.sim.executor.workload._cache_bytes = float("inf")
        self.times: list[float] = []
        self.generated: list[int] = []

    def step(self, rec: Any, keep: bool, prof: cProfile.Profile | None) -> None:
        before = shards_cached(self.sim)
        if prof is not None:
            prof.enable()
        t = time.perf_counter()
        self.sim.step(rec)
        dt = time.perf_counter() - t
        if prof is not None:
            prof.disable()
        if keep:
            self.times.append(dt)
            self.generated.append(shards_cached(self.sim) - before)


def run(sizes: list[int], rounds: int, profile: bool) -> tuple[list[Variant], str]:
    """All variants advance one round at a time in turn, so load swings hit them alike."""
    from simulator.io.recording import Recorder

    top = max(sizes)
    variants = [Variant(n, rounds, cache=c) for n in sizes for c in (True, False)]
    if top >= 100_000:
        variants.append(Variant(top, rounds, index=False))
    prof = cProfile.Profile() if profile else None
    with tempfile.TemporaryDirectory(prefix="fedfleet-pop-") as tmp:
        recs = []
        for i, _ in enumerate(variants):
            recs.append(Recorder(tmp, f"v{i}"))
            recs[-1].start()
        try:
            for r in range(rounds):
                for v, rec in zip(variants, recs, strict=True):
                    top_default = v.n == top and v.cache and v.index_on
                    v.step(rec, r >= WARMUP, prof if top_default and r >= WARMUP else None)
        finally:
            for v in variants:
                v.sim.close()
    text = ""
    if prof is not None:
        buf = io.StringIO()
        pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(10)
        lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
        start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
        text = "\n".join(lines[start:start + 11])
    return variants, text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="1000,10000,100000,1000000")
    ap.add_argument("--rounds", type=int, default=25)
    ap.add_argument("--profile", action="store_true", help="cProfile the largest size's rounds")
    args = ap.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]
    top_n = max(sizes)
    variants, profile_text = run(sizes, args.rounds, args.profile)
    res = {v.n: v for v in variants if v.cache and v.index_on}
    cold = {v.n: v for v in variants if not v.cache}
    off = [v for v in variants if not v.index_on]
    base, cold_base = median(res[sizes[0]].times), median(cold[sizes[0]].times)
    t = Table(f"Steady round time vs population size (quickstart workload, 100 clients per round, "
              f"in-process executor, median of rounds {WARMUP}-{args.rounds - 1})",
              ["population", "steady round (s)", f"x {sizes[0]:,}", "online/select path",
               "shards generated per round", "no shard cache (s)", f"x {sizes[0]:,} ",
               "setup (s)"])
    for n in sizes:
        r, c = res[n], cold[n]
        t.add(f"{n:,}", median(r.times), ratio(median(r.times), base),
              "index, O(k)" if r.uses_index else "mask, O(N)", float(np.mean(r.generated)),
              median(c.times), ratio(median(c.times), cold_base), r.setup)
    for v in off:
        t.add(f"{v.n:,} (index off)", median(v.times), ratio(median(v.times), base),
              "mask, O(N)", float(np.mean(v.generated)), "", "", v.setup)
    worst = ratio(median(res[top_n].times), base)
    worst_cold = ratio(median(cold[top_n].times), cold_base)
    t.notes = [f"goal: steady round at {top_n:,} clients <= {GOAL}x the {sizes[0]:,}-client "
               f"round: {worst:.2f}x -> {verdict(worst, GOAL, False)}; with every shard "
               f"generated when used (no cache, the same work at every size): {worst_cold:.2f}x "
               f"-> {verdict(worst_cold, GOAL, False)}",
               "shards generated per round: client data built this round; hosts cache shards "
               "(256 MiB), so a small population stops generating once its clients were seen "
               "while a large one generates ~100 per round",
               machine_line()]
    t.print()
    if profile_text:
        print(f"cProfile of the {top_n:,}-client steady rounds (own time):\n")
        print("```\n" + profile_text + "\n```\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
