"""Memory: one Ray actor hosting 10,000 clients, and the driver during a 10,000-client round.

An actor keeps one resident model and, per client, only what the method needs (here the cached
data shard); it never keeps per-client model copies. The driver receives one partial sum per
actor (fixed-point sums, streaming aggregation), never the 10,000 updates themselves.

Measured with psutil on the actor pid (``ClientHost.pid``): RSS of the idle actor (torch and the
workload loaded), after it trained all 10,000 of its clients once and twice, and its peak
(VmHWM); the driver's RSS is sampled every 5 ms during the round. A second actor hosting a
fifth as many clients gives the memory each extra client costs. The comparison columns give what
per-client model copies, or holding every update at once, would take.

    python -m benchmarks.bench_memory          # ~1 minute on 2 cores
"""

from __future__ import annotations

import argparse
import sys
import threading
import time
from typing import Any

import numpy as np

from benchmarks.common import Table, machine_line, peak_rss_mib, quickstart_doc, ratio, rss_mib

ACTOR_REFERENCE_MIB = 370.0  # reference: an actor with torch loaded uses ~370 MB RSS


class Sampler:
    """Max RSS of this process, sampled in a thread while a block runs."""

    def __init__(self, every_s: float = 0.005) -> None:
        self.every_s, self.peak, self._stop = every_s, rss_mib(), threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, rss_mib())
            time.sleep(self.every_s)

    def __enter__(self) -> Sampler:
        self._t.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._t.join()
        self.peak = max(self.peak, rss_mib())


def measure(n_clients: int) -> dict[str, Any]:
    import ray

    from simulator.config.scenario import parse_scenario
    from simulator.core import rng
    from simulator.core.jobs import JobBatch
    from simulator.execution.ray_pool import RayExecutor, init_ray

    sc = parse_scenario(quickstart_doc(**{
        "population.size": n_clients, "clients_per_round": 100, "executor.kind": "ray",
        "executor.num_actors": 1}))
    init_ray(None)
    ex = RayExecutor(sc, n_clients)
    try:
        g = ex.initial_state()
        pid = int(ray.get(ex.actors[0].pid.remote()))
        out: dict[str, Any] = {"n_params": ex.n_params, "actor_idle": rss_mib(pid)}
        ids = np.arange(n_clients, dtype=np.int64)
        for r in (0, 1):
            seeds = np.array([rng.int_seed(sc.seed, rng.TRAINING, r, int(c)) for c in ids],
                             np.uint64)
            jobs = JobBatch(r, ids, seeds, {})
            before = rss_mib()
            t0 = time.perf_counter()
            with Sampler() as s:
                part = ex.run(g, jobs)
            out[f"round{r}_s"] = time.perf_counter() - t0
            out[f"driver_growth{r}"] = s.peak - before
            out[f"actor_after{r}"] = rss_mib(pid)
        out["actor_peak"] = peak_rss_mib(pid)
        out["trained"] = int(part.client_ids.size)
        out["partial_mib"] = (part.sum_q.nbytes + part.weight.nbytes + part.client_ids.nbytes
                              + part.n_samples.nbytes + part.loss_mean.nbytes
                              + part.loss_sq_mean.nbytes) / 2**20
        from simulator.data import build_dataset

        ds = build_dataset(sc, n_clients)
        out["shard_mib"] = float(np.sum(ds.n_samples) * (ds.n_features * 4 + 8)) / 2**20
        out["index_mib"] = float(np.sum(ds.n_samples) * 8) / 2**20
    finally:
        ex.close()
        ray.shutdown()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--clients", type=int, default=10_000)
    args = ap.parse_args(argv)
    n = args.clients
    small = measure(n // 5)  # a second, smaller host: the difference is the per-client cost
    m = measure(n)
    p = m["n_params"]
    updates_mib = n * p * 8 / 2**20  # every client's float64 update held at once
    growth = m["actor_after1"] - m["actor_idle"]
    growth_small = small["actor_after1"] - small["actor_idle"]
    per_client_kib = (growth - growth_small) * 1024 / (n - n // 5)
    t = Table(f"Memory with {n:,} clients hosted by one actor (MLP 64-64-32-10, {p:,} parameters)",
              ["measure", "MiB", "compare with", "MiB ", "ratio"])
    t.add("actor RSS, idle (torch + workload loaded)", m["actor_idle"],
          "reference actor with torch", ACTOR_REFERENCE_MIB,
          ratio(m["actor_idle"], ACTOR_REFERENCE_MIB))
    t.add(f"actor RSS after training all {n:,} clients (round 1)", m["actor_after0"], "", "", "")
    t.add("actor RSS after round 2 (same clients)", m["actor_after1"], "", "", "")
    t.add("actor peak RSS (VmHWM)", m["actor_peak"], "", "", "")
    t.add(f"actor growth for {n:,} hosted clients", growth, "their shards as arrays",
          m["shard_mib"], ratio(growth, m["shard_mib"]))
    t.add("  of which the shard cache (row indices)", m["index_mib"], "", "", "")
    t.add(f"actor growth for {n // 5:,} hosted clients", growth_small, "", "", "")
    t.add(f"growth per extra hosted client, {n // 5:,} -> {n:,} (KiB)", per_client_kib,
          "per-client model copy (weights+grads, KiB)", p * 8 / 1024,
          ratio(per_client_kib, p * 8 / 1024))
    t.add(f"driver RSS growth during a {n:,}-client round", m["driver_growth0"],
          f"all {n:,} updates at once (float64)", updates_mib,
          ratio(max(m["driver_growth0"], 0.0), updates_mib))
    t.add("partial sum returned by the actor", m["partial_mib"], "", "", "")
    t.notes = ["most of the growth is fixed: training scratch for one group of 256 clients "
               "and memory the allocator keeps after freeing it",
               f"{n:,}-client rounds took {m['round0_s']:.1f} s (shards generated) and "
               f"{m['round1_s']:.1f} s (shards cached) on one actor",
               machine_line()]
    t.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
