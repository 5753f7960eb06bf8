"""Client updates per second per core: FedFleet batched vs a plain loop and a bmm reference.

Reference workload (docs/performance.md): MLP 64-32-10, 50 samples per client, batch 16, one
local epoch, one torch thread. Ways to train the same clients on the same data and batch order,
timed alternately (A B C D A B C D ...) in one process, the median of N reported:

- batched: ``MLPWorkload.train`` with grouped bmm (128 to 2,048 clients per call), everything
  included (batch plans, shard gather, fixed-point partial sums);
- bmm reference: a hand-written grouped-bmm SGD loop over inputs padded before timing (the
  kernels' own cost: the physical limit of batching these clients on this CPU);
- plain loop: what a user writes: ONE model and ONE SGD optimizer reused for every client;
- FedFleet sequential: the workload's own non-batched path (one resident model);
- naive: a fresh ``nn.Module`` and optimizer per client.

Rates are per CPU-second of this process (``time.process_time``), so other load on a shared
machine slows the wall clock but not the rate much; wall rates are shown too. Shards are
generated once before timing ("warm"); the "cold" row includes generating them (Dirichlet
partition sampling), which is what a round over never-seen clients of a huge population pays.

    python -m benchmarks.bench_clients            # ~40 s on 2 cores
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

from benchmarks.common import Table, load_line, machine_line, median, ratio, verdict

GOAL_PER_CORE = 15_000.0  # reference: ~16-21k/s per core for batched training (vmap/bmm)
GOAL_OF_BMM = 0.8  # FedFleet batched >= 0.8x the in-run hand-written bmm reference


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


def plain_train(workload: Any, g: np.ndarray, ids: np.ndarray, seeds: np.ndarray) -> None:
    """The best simple loop: one model and one SGD optimizer reused for every client."""
    import torch
    from torch import nn

    from simulator.workloads.mlp import batch_plan, build_mlp

    if not hasattr(workload, "_plain"):
        model = build_mlp(workload.sizes)
        workload._plain = (model, list(model.parameters()),
                           torch.optim.SGD(model.parameters(), lr=workload.lr))
    model, params, opt = workload._plain
    init = torch.from_numpy(g.astype(np.float32))
    for cid, seed in zip(ids, seeds, strict=True):
        with torch.no_grad():
            nn.utils.vector_to_parameters(init, params)  # copies into the resident parameters
        x, y = workload._client_data(int(cid))
        xt, yt = torch.from_numpy(x), torch.from_numpy(y)
        plan = batch_plan(len(yt), workload.epochs, workload.batch,
                          np.random.default_rng(int(seed)))
        for row in plan:
            idx = torch.from_numpy(row[row >= 0])
            opt.zero_grad(set_to_none=True)
            nn.functional.cross_entropy(model(xt[idx]), yt[idx]).backward()
            opt.step()
        nn.utils.parameters_to_vector(params).detach().numpy()


def padded_inputs(workload: Any, jobs: Any) -> tuple[Any, Any, Any]:
    """[steps, C, B] inputs, labels and masks of the jobs' clients (built before timing)."""
    import torch

    inputs = [workload._client_inputs(c, sd)
              for c, sd in zip(jobs.client_ids, jobs.seeds, strict=True)]
    steps = max(p[2].shape[0] for p in inputs)
    xs, ys, ms = workload._pad_group(inputs, steps)
    return torch.from_numpy(xs), torch.from_numpy(ys), torch.from_numpy(ms)


def bmm_reference(workload: Any, g: np.ndarray, xs: Any, ys: Any, ms: Any) -> Any:
    """Hand-written grouped SGD for C clients at once: bmm forward, hand-derived backward, one
    in-place update per tensor; inputs already padded. Returns the final weights [C, P]."""
    import torch

    c = xs.shape[1]
    g0 = workload._unflatten(torch.from_numpy(g.astype(np.float32)))
    nl = len(workload.sizes) - 1
    ws = [g0[f"{2 * i}.weight"].unsqueeze(0).repeat(c, 1, 1) for i in range(nl)]
    bs = [g0[f"{2 * i}.bias"].unsqueeze(0).repeat(c, 1) for i in range(nl)]
    lr = workload.lr
    for s in range(xs.shape[0]):
        m = ms[s]  # [C, B]
        hs = [xs[s]]
        for i in range(nl - 1):
            hs.append(torch.relu(torch.baddbmm(bs[i].unsqueeze(1), hs[-1], ws[i].transpose(1, 2))))
        z = torch.baddbmm(bs[-1].unsqueeze(1), hs[-1], ws[-1].transpose(1, 2))  # [C, B, K]
        dz = torch.softmax(z, dim=2)
        dz.scatter_add_(2, ys[s].unsqueeze(2), torch.full_like(m, -1.0).unsqueeze(2))
        dz.mul_((m / m.sum(1, keepdim=True).clamp(min=1.0)).unsqueeze(2))
        for i in range(nl - 1, -1, -1):
            gw, gb = torch.bmm(dz.transpose(1, 2), hs[i]), dz.sum(1)
            if i > 0:
                dz = torch.bmm(dz, ws[i]) * (hs[i] > 0)
            ws[i].sub_(gw, alpha=lr)
            bs[i].sub_(gb, alpha=lr)
    return torch.cat([t.reshape(c, -1) for i in range(nl) for t in (ws[i], bs[i])], dim=1)


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
            xs, ys, ms = padded_inputs(w, jobs[n])
            # A B B A: whichever runs first after another mode finds colder caches, so each
            # side is timed once in each position (the median then sees both alike)
            for first in ("batched", "bmm", "bmm", "batched"):
                if first == "batched":
                    record(f"batched {n}", n, lambda n=n, jobs=jobs: w.train(g, jobs[n]))
                else:
                    record(f"bmm {n}", n,
                           lambda xs=xs, ys=ys, ms=ms: bmm_reference(w, g, xs, ys, ms))
        record("plain", seq_clients,
               lambda seq_jobs=seq_jobs: plain_train(w, g, seq_ids, seq_jobs.seeds))
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
    base = cpu["plain"]
    where = f"on {res['workload'].device}" if args.gpu else "per core"
    t = Table(f"Client updates per second {where} (MLP 64-32-10, 50 samples, batch 16, 1 epoch)",
              ["mode", "clients per call", "updates/s per CPU-s", "updates/s wall",
               "x plain loop", "x bmm reference"])
    for n in sizes:
        k = f"batched {n}"
        t.add("FedFleet batched (grouped bmm, all included)", n, cpu[k], wall[k],
              ratio(cpu[k], base), ratio(cpu[k], cpu[f"bmm {n}"]))
        t.add("  hand-written bmm reference (kernels only)", n, cpu[f"bmm {n}"],
              wall[f"bmm {n}"], ratio(cpu[f"bmm {n}"], base), 1.0)
    t.add("FedFleet batched, cold shards", 512, cpu["cold 512"], wall["cold 512"],
          ratio(cpu["cold 512"], base), "")
    t.add("plain loop (one reused model + optimizer)", args.seq_clients, base, wall["plain"],
          1.0, "")
    t.add("FedFleet sequential (batched: false)", args.seq_clients, cpu["sequential"],
          wall["sequential"], ratio(cpu["sequential"], base), "")
    t.add("naive (new model + optimizer per client)", args.seq_clients, cpu["naive"],
          wall["naive"], ratio(cpu["naive"], base), "")
    best = max(cpu[f"batched {n}"] for n in sizes)
    of_bmm = min(ratio(cpu[f"batched {n}"], cpu[f"bmm {n}"]) for n in sizes)
    t.notes = [
        f"goal: batched >= {GOAL_OF_BMM}x the in-run bmm reference at every size: worst "
        f"{of_bmm:.2f}x -> {verdict(of_bmm, GOAL_OF_BMM, True)}",
        f"batched best {best:,.0f} updates/s per CPU-s = {ratio(best, base):.1f}x the plain "
        f"loop (the reference machine's ~{GOAL_PER_CORE:,.0f}/s per core: "
        f"{verdict(best, GOAL_PER_CORE, True)})",
        f"FedFleet sequential / naive = {ratio(cpu['sequential'], cpu['naive']):.2f}x "
        f"(must be >= 1: {verdict(ratio(cpu['sequential'], cpu['naive']), 1.0, True)}); "
        f"median of {args.reps} interleaved repetitions (batched and bmm timed A-B-B-A in each)",
        f"{load_line()}", machine_line(),
    ]
    t.print()
    if args.profile or best < GOAL_PER_CORE:
        n = 512 if 512 in sizes else sizes[0]
        print(f"cProfile, batched train of {n} warm clients (top functions by own time):\n")
        print("```\n" + profile_batched(res, n) + "\n```\n", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
