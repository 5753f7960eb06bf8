"""Analytic-mode scale: 1,000,000 clients, 10,000 invited per round, 100 rounds.

The engine's analytic path (availability, random selection, planning, cost model, dropout,
sync-round resolution, battery, per-client event log, parquet recording with chunked flushes)
runs in a child process so that its peak RSS is its own. It is compared with a bare numpy loop
that does the same estimate + resolve math inline on the same population columns (no planner,
no selector object, no recording). The discrete-event clock's throughput is printed too.

    python -m benchmarks.bench_analytic                    # the 1M x 10k x 100 case
    python -m benchmarks.bench_analytic --population 100000 --per-round 1000 --rounds 20
Goals: engine run (setup + rounds + final tables) < 20 s and peak RSS < 1.5 GB on 2 cores.
"""

from __future__ import annotations

import argparse
import itertools
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/bench_analytic.py`
    sys.path.insert(0, str(ROOT))

from simulator.core.clock import EventLoop  # noqa: E402 (after the sys.path bootstrap)

OVERCOMMIT = 1.25


def bench_doc(population: int, per_round: int, rounds: int) -> dict[str, Any]:
    k = round(per_round / OVERCOMMIT)
    return {
        "name": "bench-analytic", "seed": 3, "mode": "analytic",
        "population": {"size": population, "mix": [
            {"profile": "phone-lowend", "share": 0.30},
            {"profile": "phone-flagship", "share": 0.30},
            {"profile": "rpi4", "share": 0.15}, {"profile": "laptop-cpu", "share": 0.20},
            {"profile": "edge-server-l4", "share": 0.05}]},
        "data": {"dataset": "digits", "partition": "dirichlet", "alpha": 0.5,
                 "samples_per_client": 50},
        "model": {"kind": "mlp", "hidden": [64, 32], "clock_proxy": {
            "name": "resnet18", "params": 11.7e6, "train_flops_per_sample": 5.4e9}},
        "rounds": rounds, "clients_per_round": k, "overcommit": OVERCOMMIT, "deadline_s": 600,
        "output": {"runs_dir": "runs", "checkpoint_every": 0},
    }


def child(population: int, per_round: int, rounds: int) -> dict[str, Any]:
    """Run the engine (as simulator.loop.runner does) and report stage times and peak RSS."""
    from simulator.config.scenario import parse_scenario
    from simulator.io.recording import Recorder
    from simulator.loop.simulation import Simulation

    sc = parse_scenario(bench_doc(population, per_round, rounds))
    cpu = [time.process_time()]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        rec = Recorder(tmp, "bench")
        rec.start()
        sim = Simulation(sc)
        t1 = time.perf_counter()
        cpu.append(time.process_time())
        invited = 0
        while sim.next_round < sc.rounds:
            rep = sim.step(rec)
            invited += rep.completed
        t2 = time.perf_counter()
        cpu.append(time.process_time())
        final = rec.finalize({"name": "bench"})
        t3 = time.perf_counter()
        cpu.append(time.process_time())
        import pyarrow.parquet as pq

        rows = pq.ParquetFile(final / "clients.parquet").metadata.num_rows
        sizes = sum(f.stat().st_size for f in final.iterdir())
    return {"setup_s": t1 - t0, "rounds_s": t2 - t1, "finalize_s": t3 - t2, "total_s": t3 - t0,
            "cpu_s": [b - a for a, b in itertools.pairwise(cpu)] + [cpu[-1] - cpu[0]],
            "client_rows": rows, "completed": invited, "sim_end_s": sim.clock_s,
            "run_bytes": sizes,
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def bare_numpy(population: int, per_round: int, rounds: int) -> dict[str, float]:
    """The same per-round math, inline: availability, sampling, estimate, dropout, resolve."""
    from simulator.config.scenario import parse_scenario
    from simulator.loop.simulation import build_population

    sc = parse_scenario(bench_doc(population, per_round, rounds))
    pop, _ = build_population(sc)
    k, deadline = sc.clients_per_round, float(sc.deadline_s)
    model_bytes = 11.7e6 * 4
    flops_per_sample = 5.4e9
    hazard = pop.dropout_hazard_per_s
    t, t0, c0 = 0.0, time.perf_counter(), time.process_time()
    for rnd in range(rounds):
        hour = (t / 3600.0) % 24.0
        into = (hour - pop.window_start_h) % 24.0
        cand = np.flatnonzero(pop.always_on | (into < pop.window_len_h))
        g = np.random.default_rng([sc.seed, rnd])
        ids = np.sort(g.choice(cand, size=min(per_round, cand.size), replace=False))
        lat = pop.latency_s[ids].astype(np.float64)
        down = lat + model_bytes * 8 / pop.downlink_bits_per_s[ids]
        comp = flops_per_sample * pop.n_samples[ids] / pop.train_flops_per_s[ids]
        total = down + comp + lat + model_bytes * 8 / pop.uplink_bits_per_s[ids]
        drop = g.exponential(1.0, ids.size) / np.maximum(hazard[ids], 1e-300)
        left = np.where(pop.always_on[ids], np.inf,
                        (pop.window_len_h[ids] - into[ids]) * 3600.0)
        finishes = (np.minimum(drop, left) >= total) & (total <= deadline)
        ok = np.flatnonzero(finishes)
        if ok.size > k:
            kth = np.argpartition(total[ok], k - 1)[:k]
            end = float(total[ok][kth].max())
        else:
            end = deadline
        outcome = np.where(finishes & (total <= end), 0, 3).astype(np.int8)
        _ = np.minimum(np.minimum(drop, left), end), outcome
        t += end
    return {"rounds_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}


def clock_rate(n: int = 300_000, pending: int = 1000) -> tuple[float, float]:
    """Events/s of EventLoop in a hold model, and of bare heapq doing the same."""
    import heapq

    inc = np.random.default_rng(0).random(n + pending).tolist()
    loop = EventLoop()
    for x in inc[:pending]:
        loop.schedule(x, 0)
    it = iter(inc[pending:])
    sched = loop.schedule

    def handle(ev: Any) -> None:
        nxt = next(it, None)
        if nxt is not None:
            sched(ev[0] + nxt, 0)

    t0 = time.perf_counter()
    done = loop.run(handle)
    ours = done / (time.perf_counter() - t0)
    h = [(x, 0, i, 0, None) for i, x in enumerate(inc[:pending])]
    heapq.heapify(h)
    t0 = time.perf_counter()
    for i, x in enumerate(inc[pending:]):
        ev = heapq.heappop(h)
        heapq.heappush(h, (ev[0] + x, 0, pending + i, 0, None))
    while h:
        heapq.heappop(h)
    raw = (n + pending) / (time.perf_counter() - t0)
    return ours, raw


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--population", type=int, default=1_000_000)
    ap.add_argument("--per-round", type=int, default=10_000)
    ap.add_argument("--rounds", type=int, default=100)
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.child:
        print(json.dumps(child(a.population, a.per_round, a.rounds)))
        return 0
    cmd = [sys.executable, "-m", "benchmarks.bench_analytic", "--child", "--population",
           str(a.population), "--per-round", str(a.per_round), "--rounds", str(a.rounds)]
    res = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, check=False)
    if res.returncode != 0:
        print(res.stderr, file=sys.stderr)
        return 1
    eng = json.loads(res.stdout.strip().splitlines()[-1])
    bare = bare_numpy(a.population, a.per_round, a.rounds)
    ours, raw = clock_rate()

    def per(s: float) -> str:
        return f"{1e3 * s / a.rounds:8.1f} ms"

    print(f"{a.population:,} clients, {a.per_round:,} invited per round, {a.rounds} rounds "
          f"(analytic)\n")
    print(f"{'stage':<44}{'wall s':>9}{'per round':>12}{'CPU s':>9}")
    for label, s, c in (("engine setup (population, data sizes)", eng["setup_s"], eng["cpu_s"][0]),
                        ("engine rounds (incl. recording)", eng["rounds_s"], eng["cpu_s"][1]),
                        ("engine final tables (parquet combine)", eng["finalize_s"],
                         eng["cpu_s"][2]),
                        ("engine total", eng["total_s"], eng["cpu_s"][3]),
                        ("bare numpy, same estimate + resolve math", bare["rounds_s"],
                         bare["cpu_s"])):
        print(f"{label:<44}{s:>9.2f}{per(s):>12}{c:>9.2f}")
    print(f"{'ratio engine rounds / bare numpy':<44}{eng['rounds_s'] / bare['rounds_s']:>9.1f}x"
          f"{'':>12}{eng['cpu_s'][1] / bare['cpu_s']:>8.1f}x")
    print(f"{'peak RSS of the engine process':<44}{eng['peak_rss_mb']:>8.0f} MB")
    print(f"{'client rows written':<44}{eng['client_rows']:>9,}  "
          f"({eng['run_bytes'] / 1e6:.0f} MB on disk)")
    print(f"{'clock: events/s (1,000 pending)':<44}{ours:>9,.0f}  (bare heapq {raw:,.0f}; "
          f"ratio {raw / ours:.2f}x)")
    ok = eng["total_s"] < 20 and eng["peak_rss_mb"] < 1536
    print(f"\ngoal: total < 20 s and peak RSS < 1.5 GB: {'met' if ok else 'NOT met'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
