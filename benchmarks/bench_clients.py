"""Client updates per second per core: batched (many clients at once) vs sequential.

Reference workload (docs/performance.md): MLP 64-32-10, 50 samples per client, batch 16, one
local epoch, one torch thread. Three ways to train the same clients on the same data, timed
alternately in one process:

- batched: ``MLPWorkload.train`` with grouped bmm (128 to 2,048 clients per call);
- sequential: the same workload's fallback loop, one resident model reused for every client;
- naive: a fresh ``nn.Module`` and optimizer per client (what a plain simulator does).

Rates are per CPU-second of this process (``time.process_time``), so other load on a shared
machine slows the wall clock but not the rate much; wall rates are shown too. Shards are
generated once before timing ("warm"); the "cold" row includes generating them (Dirichlet
partition sampling), which is what a round over never-seen clients of a huge population pays.

    python -m benchmarks.bench_clients            # ~30 s on 2 cores
    python -m benchmarks.bench_clients --profile  # plus cProfile of the batched path
"""

from __future__ import annotations

import argparse
import cProfile
import io
import pstats
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from benchmarks.common import Table, machine_line, median, ratio, verdict

GOAL_PER_CORE = 15_000.0  # reference: ~16-21k/s per core for batched training (vmap/bmm)
SEQ_REFERENCE = 1_000.0  # reference: ~1k/s per core reusing one model


def scenario(population: int, gpu: bool = False) -> Any:
    from simulator.config.scenario import parse_scenario
    from tests.conftest import small_doc

    return parse_scenario(small_doc(**{"executor.num_gpus_per_actor": 1 if gpu else 0,
        "population.size": population, "clients_per_round": 10,
        "data.samples_per_client": 50, "data.size_sigma": 0.0,
        "model.hidden": [32], "training.batch_size": 16, "training.epochs": 1,
        "training.lr": 0.1, "executor.kind": "local"}))


def jobs_for(ids: np.ndarray, rnd: int = 0) -> Any:
    from simulator.core import rng
    from simulator.core.jobs import JobBatch

    seeds = np.array([rng.int_seed(7, rng.TRAINING, rnd, int(c)) for c in ids], np.uint64)
    return JobBatch(rnd, ids.astype(np.int64), seeds)


def naive_train(workload: Any, g: np.ndarray, ids: np.ndarray) -> None:
    """A fresh model and optimizer per client, as a plain per-client simulator would do."""
    import torch
    from torch import nn

    from simulator.workloads.mlp import build_mlp

    init = torch.from_numpy(g.astype(np.float32))
    for cid in ids:
        x, y = workload._client_data(int(cid))
        model = build_mlp(workload.sizes)
        nn.utils.vector_to_parameters(init.clone(), model.parameters())  # params view the vector
        opt = torch.optim.SGD(model.parameters(), lr=workload.lr)
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        perm = torch.randperm(len(yt))
        for s in range(0, len(yt), workload.batch):
            idx = perm[s:s + workload.batch]
            opt.zero_grad()
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
        nn.utils.parameters_to_vector(model.parameters()).detach().numpy()


def timed(fn: Callable[[], Any]) -> tuple[float, float]:
    w0, c0 = time.perf_counter(), time.process_time()
    fn()
    return time.process_time() - c0, time.perf_counter() - w0


def measure(sizes: tuple[int, ...], seq_clients: int, reps: int,
            gpu: bool = False) -> dict[str, Any]:
    import torch

    from simulator.workloads.mlp import MLPWorkload

    torch.set_num_threads(1)
    pop = max(max(sizes), seq_clients) * 2 + 1024
    w = MLPWorkload(scenario(pop, gpu), pop)
    g = w.initial_state()
    ids = {n: np.arange(n, dtype=np.int64) for n in sizes}
    seq_ids = np.arange(seq_clients, dtype=np.int64)
    cold = np.arange(pop - 512, pop, dtype=np.int64)  # never generated before its timing
    w.train(g, jobs_for(ids[max(sizes)]))  # warm: shards cached, torch kernels loaded
    cpu: dict[str, list[float]] = {}
    wall: dict[str, list[float]] = {}

    def record(key: str, n: int, fn: Callable[[], Any]) -> None:
        c, t = timed(fn)
        cpu.setdefault(key, []).append(n / c)
        wall.setdefault(key, []).append(n / t)

    cold_jobs = jobs_for(cold)
    c, t = timed(lambda: w.train(g, cold_jobs))  # once: the cache keeps them afterwards
    cpu["cold 512"], wall["cold 512"] = [512 / c], [512 / t]
    for rep in range(reps):  # alternate the modes so load changes hit all of them alike
        jobs = {n: jobs_for(ids[n], rep) for n in sizes}  # seeds come from the driver: untimed
        seq_jobs = jobs_for(seq_ids, rep)
        for n in sizes:
            w.batched = True
            record(f"batched {n}", n, lambda n=n, jobs=jobs: w.train(g, jobs[n]))
        w.batched = False
        record("sequential", seq_clients, lambda seq_jobs=seq_jobs: w.train(g, seq_jobs))
        w.batched = True
        record("naive", seq_clients, lambda: naive_train(w, g, seq_ids))
    return {"cpu": {k: median(v) for k, v in cpu.items()},
            "wall": {k: median(v) for k, v in wall.items()}, "workload": w, "g": g, "ids": ids}


def profile_batched(res: dict[str, Any], n: int, top: int = 12) -> str:
    w, g = res["workload"], res["g"]
    jobs = jobs_for(np.arange(n, dtype=np.int64), 99)
    prof = cProfile.Profile()
    prof.enable()
    w.train(g, jobs)
    prof.disable()
    buf = io.StringIO()
    pstats.Stats(prof, stream=buf).sort_stats("tottime").print_stats(top)
    lines = [ln for ln in buf.getvalue().splitlines() if ln.strip()]
    start = next(i for i, ln in enumerate(lines) if ln.lstrip().startswith("ncalls"))
    return "\n".join(lines[start:start + top + 1])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="128,512,2048", help="clients per batched call")
    ap.add_argument("--seq-clients", type=int, default=128)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--profile", action="store_true", help="print cProfile of the batched path")
    ap.add_argument("--gpu", action="store_true", help="batched clients on CUDA (as an actor "
                    "granted a GPU); sequential and naive stay on the CPU")
    args = ap.parse_args(argv)
    sizes = tuple(int(s) for s in args.sizes.split(","))
    res = measure(sizes, args.seq_clients, args.reps, args.gpu)
    cpu, wall = res["cpu"], res["wall"]
    seq = cpu["sequential"]
    where = f"on {res['workload'].device}" if args.gpu else "per core"
    t = Table(f"Client updates per second {where} (MLP 64-32-10, 50 samples, batch 16, 1 epoch)",
              ["mode", "clients per call", "updates/s per core", "updates/s wall",
               "x sequential", "x naive"])
    for n in sizes:
        k = f"batched {n}"
        t.add("batched (grouped bmm)", n, cpu[k], wall[k], ratio(cpu[k], seq),
              ratio(cpu[k], cpu["naive"]))
    t.add("batched, cold shards", 512, cpu["cold 512"], wall["cold 512"],
          ratio(cpu["cold 512"], seq), ratio(cpu["cold 512"], cpu["naive"]))
    t.add("sequential (one reused model)", args.seq_clients, seq, wall["sequential"], 1.0,
          ratio(seq, cpu["naive"]))
    t.add("naive (new model per client)", args.seq_clients, cpu["naive"], wall["naive"],
          ratio(cpu["naive"], seq), 1.0)
    best = max(cpu[f"batched {n}"] for n in sizes)
    t.notes = [
        f"goal: batched >= {GOAL_PER_CORE:,.0f} updates/s per core (reference machine): "
        f"{best:,.0f} -> {verdict(best, GOAL_PER_CORE, True)}; "
        f"batched/sequential {ratio(best, seq):.1f}x (reference ~16-20x)",
        f"sequential reference ~{SEQ_REFERENCE:,.0f}/s per core: measured {seq:,.0f}/s "
        f"({ratio(seq, SEQ_REFERENCE):.2f}x of it; a ratio well below 1 means a busy machine)",
        machine_line(),
    ]
    t.print()
    if args.profile or best < GOAL_PER_CORE:
        n = 512 if 512 in sizes else sizes[0]
        print(f"cProfile, batched train of {n} warm clients (top functions by own time):\n")
        print("```\n" + profile_batched(res, n) + "\n```\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
