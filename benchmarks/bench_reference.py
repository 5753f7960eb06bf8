"""Reference workload: FedFleet (auto -> in-process, and Ray with 2 actors) vs a plain FedAvg loop.

Workload (scenarios/quickstart.yaml): scikit-learn digits, MLP 64-64-32-10, 1,000 clients,
Dirichlet(0.5) shards, 100 clients per round (130 invited), 1 local epoch, batch 16.

The plain loop is the best simple thing a user would write: ONE torch model and ONE SGD
optimizer reused for every client (the global weights copied in before each client), a Python
loop over its mini-batches, a float64 weighted average and a test-set evaluation, on one torch
thread (on 2 cores, two threads made these tiny models slower); a client's shard is made on
first use (FedFleet's own partitioner) and kept. It trains, each round, exactly
the clients FedFleet trained (the survivors of its simulated round), on the same shards, from the
same initial model and in the same batch order, so the final accuracies agree.

- steady round: FedFleet local round r, FedFleet Ray-2 round r, plain round r, in turn; the
  median of rounds 2.. is compared, wall and CPU-seconds (the Ray side counts its actors' CPU);
- end to end: each side as a fresh process from interpreter start to exit, interleaved
  (A B C A B C ...), min of N: FedFleet through ``python -m simulator.cli.main run`` on the
  quickstart as shipped (``executor.kind: auto``, which picks in-process here; checkpoints and
  parquet tables written, no dashboard), FedFleet forced to Ray with 2 actors, and the plain loop
  (``--plain-e2e``); CPU-seconds and peak RSS of each whole process tree (Ray's raylet, GCS and
  actors included).

    python -m benchmarks.bench_reference          # ~1.5-2 minutes on 2 cores
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    QUICKSTART,
    Table,
    load_line,
    machine_line,
    median,
    quickstart_doc,
    ratio,
    run_process_tree,
    verdict,
)

ROUNDS = 30  # the quickstart as shipped
STEADY_FROM = 2  # rounds 0 and 1 warm caches and kernels
GOAL_STEADY = 1.0
GOAL_E2E = 1.2  # quickstart end to end vs the plain loop
GOAL_RAY = 1.5  # Ray with 2 actors vs in-process, steady round at 100 clients per round


def reference_doc(rounds: int = ROUNDS, **over: Any) -> dict[str, Any]:
    return quickstart_doc(**{"rounds": rounds, "output.checkpoint_every": 0, **over})


def ray_doc(rounds: int = ROUNDS) -> dict[str, Any]:
    return reference_doc(rounds, **{"executor.kind": "ray", "executor.num_actors": 2})


# --- the plain loop -------------------------------------------------------------------------
class PlainFedAvg:
    """One model and one optimizer reused for every client; FedAvg in float64."""

    def __init__(self, doc: dict[str, Any]) -> None:
        import torch

        from simulator.config.scenario import parse_scenario
        from simulator.core import rng as rngmod
        from simulator.data import build_dataset
        from simulator.workloads.mlp import batch_plan, build_mlp

        sc = parse_scenario(doc)
        torch.set_num_threads(1)  # tiny models: one thread is faster than two busy ones
        self.torch, self.batch_plan, self.rng = torch, batch_plan, rngmod
        self.ds = ds = build_dataset(sc, sc.population.size)
        self.data: dict[int, tuple[Any, Any]] = {}  # shards made on first use, then kept
        xt, yt = ds.test_data()
        self.test = (torch.from_numpy(xt), torch.from_numpy(yt))
        sizes = [ds.n_features, *sc.model.hidden, ds.n_classes]
        t = sc.training
        self.epochs, self.batch = t.epochs, t.batch_size
        self.seed = sc.seed
        torch.manual_seed(rngmod.int_seed(sc.seed, rngmod.INIT))  # FedFleet's initial model
        self.model = build_mlp(sizes)
        self.params = list(self.model.parameters())
        self.opt = torch.optim.SGD(self.params, lr=t.lr)  # stateless: safe to reuse
        self.global_vec = torch.nn.utils.parameters_to_vector(self.params).detach().clone()

    def _load(self, vec: Any) -> None:
        with self.torch.no_grad():
            i = 0
            for p in self.params:
                p.copy_(vec[i:i + p.numel()].view_as(p))
                i += p.numel()

    def round(self, rnd: int, ids: list[int]) -> float:
        torch = self.torch
        nn = torch.nn
        total = torch.zeros_like(self.global_vec, dtype=torch.float64)
        n_total = 0
        for cid in ids:
            self._load(self.global_vec)
            if cid not in self.data:
                x, y = self.ds.client_data(cid)
                self.data[cid] = (torch.from_numpy(x), torch.from_numpy(y))
            x, y = self.data[cid]
            # FedFleet's batch order for this client and round, so both train the same way
            seed = self.rng.int_seed(self.seed, self.rng.TRAINING, rnd, cid)
            plan = self.batch_plan(len(y), self.epochs, self.batch, np.random.default_rng(seed))
            for row in plan:
                idx = torch.from_numpy(row[row >= 0])
                self.opt.zero_grad(set_to_none=True)
                nn.functional.cross_entropy(self.model(x[idx]), y[idx]).backward()
                self.opt.step()
            total += len(y) * nn.utils.parameters_to_vector(self.params).detach().double()
            n_total += len(y)
        if n_total:
            self.global_vec = (total / n_total).float()
        self._load(self.global_vec)
        with torch.no_grad():
            return float((self.model(self.test[0]).argmax(1) == self.test[1]).float().mean())


def plain_worker(conn: Any, doc: dict[str, Any]) -> None:
    """Child process: serve plain rounds on request (wall and CPU-seconds of each)."""
    t0 = time.perf_counter()
    plain = PlainFedAvg(doc)
    conn.send(time.perf_counter() - t0)
    while True:
        msg = conn.recv()
        if msg is None:
            break
        rnd, ids = msg
        t, c = time.perf_counter(), time.process_time()
        acc = plain.round(rnd, ids)
        conn.send((time.perf_counter() - t, time.process_time() - c, acc))


# --- FedFleet, round by round -----------------------------------------------------------------
def _capturing_recorder(runs_dir: str, name: str) -> Any:
    from simulator.io.recording import Recorder

    class Capturing(Recorder):
        last: dict[str, np.ndarray] = {}

        def append(self, round_row: dict[str, Any], client_cols: dict[str, np.ndarray]) -> None:
            self.last = client_cols
            super().append(round_row, client_cols)

    rec = Capturing(runs_dir, name)
    rec.start()
    return rec


def _cpu_of(pids: list[int]) -> float:
    import psutil

    tot = 0.0
    for p in pids:
        t = psutil.Process(p).cpu_times()
        tot += t.user + t.system
    return tot


def side_by_side(rounds: int) -> dict[str, Any]:
    import os

    import ray

    from simulator.config.scenario import parse_scenario
    from simulator.execution.ray_pool import init_ray
    from simulator.loop.simulation import Simulation

    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=plain_worker, args=(child, reference_doc(rounds)), daemon=True)
    proc.start()
    out: dict[str, Any] = {k: [] for k in ("local", "ray", "plain", "local_cpu", "ray_cpu",
                                           "plain_cpu", "trained", "ids")}
    out["plain_setup"] = parent.recv()
    with tempfile.TemporaryDirectory(prefix="fedfleet-bench-") as tmp:
        t0 = time.perf_counter()
        local = Simulation(parse_scenario(reference_doc(rounds)))
        out["local_setup"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        init_ray(None)
        out["ray_init"] = time.perf_counter() - t0
        rsim = Simulation(parse_scenario(ray_doc(rounds)))
        pids = ray.get([a.pid.remote() for a in rsim.executor.actors])  # type: ignore[union-attr]
        out["ray_setup"] = time.perf_counter() - t0
        me = [os.getpid()]
        rl, rr = _capturing_recorder(tmp, "local"), _capturing_recorder(tmp, "ray")
        try:
            for r in range(rounds):
                t, c = time.perf_counter(), _cpu_of(me)
                rep = local.step(rl)
                out["local"].append(time.perf_counter() - t)
                out["local_cpu"].append(_cpu_of(me) - c)
                t, c = time.perf_counter(), _cpu_of(me + pids)
                rep_r = rsim.step(rr)
                out["ray"].append(time.perf_counter() - t)
                out["ray_cpu"].append(_cpu_of(me + pids) - c)
                cols = rl.last
                ids = [int(i) for i, o in zip(cols["client_id"], cols["outcome"], strict=True)
                       if o == "completed"]
                parent.send((r, ids))
                dt, dc, acc = parent.recv()
                out["plain"].append(dt)
                out["plain_cpu"].append(dc)
                out["trained"].append(len(ids))
                out["ids"].append(ids)
                out["ff_acc"], out["ray_acc"], out["plain_acc"] = (rep.accuracy, rep_r.accuracy,
                                                                   acc)
        finally:
            local.close()
            rsim.close()
            parent.send(None)
            proc.join(timeout=30)
            ray.shutdown()
    return out


# --- end to end, each side as a fresh process -------------------------------------------------
def e2e_fedfleet(rounds: int, ray_2: bool) -> Any:
    with tempfile.TemporaryDirectory(prefix="fedfleet-e2e-") as tmp:
        cmd = [sys.executable, "-m", "simulator.cli.main", "run", str(QUICKSTART),
               "--name", "e2e", "--runs-dir", tmp, "--no-dashboard", "--set", f"rounds={rounds}"]
        if ray_2:
            cmd += ["--set", "executor.kind=ray", "--set", "executor.num_actors=2"]
        return run_process_tree(cmd)


def e2e_plain(ids_path: str) -> Any:
    return run_process_tree([sys.executable, "-m", "benchmarks.bench_reference", "--plain-e2e",
                             ids_path])


def run_plain_e2e(path: str) -> int:
    ids_per_round = json.loads(Path(path).read_text())
    plain = PlainFedAvg(reference_doc(len(ids_per_round)))
    for r, ids in enumerate(ids_per_round):
        plain.round(r, ids)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--e2e-reps", type=int, default=2, help="fresh-process runs per side (min)")
    ap.add_argument("--ray-reps", type=int, default=2, help="fresh-process Ray-2 runs (min)")
    ap.add_argument("--plain-e2e", metavar="IDS_JSON", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.plain_e2e:
        return run_plain_e2e(args.plain_e2e)
    load_before = load_line()
    res = side_by_side(args.rounds)
    sl = slice(STEADY_FROM, None)
    lo, ry, pl = (median(res[k][sl]) for k in ("local", "ray", "plain"))
    loc, ryc, plc = (median(res[k][sl]) for k in ("local_cpu", "ray_cpu", "plain_cpu"))
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(res["ids"], f)
    try:
        runs: dict[str, list[Any]] = {"auto": [], "plain": [], "ray": []}
        for i in range(max(args.e2e_reps, args.ray_reps)):  # A B C A B C ...
            if i < args.e2e_reps:
                runs["auto"].append(e2e_fedfleet(args.rounds, False))
                runs["plain"].append(e2e_plain(f.name))
            if i < args.ray_reps:
                runs["ray"].append(e2e_fedfleet(args.rounds, True))
    finally:
        Path(f.name).unlink()
    best = {k: min(v, key=lambda r: r.wall_s) for k, v in runs.items()}
    cpu_min = {k: min(r.cpu_s for r in v) for k, v in runs.items()}
    rss = {k: max(r.peak_rss_mib for r in v) for k, v in runs.items()}
    e2e = ratio(best["auto"].wall_s, best["plain"].wall_s)
    ray_steady = ratio(ry, lo)
    n_tr = int(np.mean(res["trained"]))
    t = Table(f"Reference workload: FedFleet vs a plain FedAvg loop reusing one model "
              f"({args.rounds} rounds, ~{n_tr} clients trained per round)",
              ["measure", "FedFleet auto (local)", "FedFleet Ray-2", "plain loop",
               "local / plain", "Ray-2 / local", "goal", "status"])
    t.add(f"steady round wall, median of rounds {STEADY_FROM}-{args.rounds - 1} (s)", lo, ry, pl,
          ratio(lo, pl), ray_steady, f"local <= {GOAL_STEADY}x plain; Ray-2 <= {GOAL_RAY}x "
          "local", f"{verdict(ratio(lo, pl), GOAL_STEADY, False)}; "
          f"{verdict(ray_steady, GOAL_RAY, False)}")
    t.add("steady round CPU-s (Ray: driver + actors)", loc, ryc, plc, ratio(loc, plc),
          ratio(ryc, loc), "", "")
    t.add("setup in the measuring process (s)", res["local_setup"], res["ray_setup"],
          res["plain_setup"], ratio(res["local_setup"], res["plain_setup"]),
          ratio(res["ray_setup"], res["local_setup"]), "", "")
    t.add("  of which ray.init (s)", "", res["ray_init"], "", "", "", "", "")
    t.add(f"end to end wall, fresh process, min of {args.e2e_reps}/{args.ray_reps}/"
          f"{args.e2e_reps} (s)", best["auto"].wall_s, best["ray"].wall_s, best["plain"].wall_s,
          e2e, ratio(best["ray"].wall_s, best["auto"].wall_s), f"<= {GOAL_E2E}x plain",
          verdict(e2e, GOAL_E2E, False))
    t.add("end to end CPU-s, whole process tree (min)", cpu_min["auto"], cpu_min["ray"],
          cpu_min["plain"], ratio(cpu_min["auto"], cpu_min["plain"]),
          ratio(cpu_min["ray"], cpu_min["auto"]), "", "")
    t.add("peak RSS, whole process tree incl. Ray and actors (MiB, max)", rss["auto"],
          rss["ray"], rss["plain"], ratio(rss["auto"], rss["plain"]),
          ratio(rss["ray"], rss["auto"]), "", "")
    t.add("test accuracy after the last round", res["ff_acc"], res["ray_acc"], res["plain_acc"],
          ratio(res["ff_acc"], res["plain_acc"]), ratio(res["ray_acc"], res["ff_acc"]), "", "")
    t.notes += [
        f"end-to-end runs (wall s): auto {[round(r.wall_s, 2) for r in runs['auto']]}, "
        f"plain {[round(r.wall_s, 2) for r in runs['plain']]}, "
        f"Ray-2 {[round(r.wall_s, 2) for r in runs['ray']]}",
        "FedFleet end to end runs the quickstart as a user does (`fedfleet run "
        "scenarios/quickstart.yaml --no-dashboard`): validation, the simulated fleet and clock, "
        "parquet tables and checkpoints every 10 rounds; the plain loop only trains and "
        "evaluates",
        f"{load_before} before, {load_line()} after", machine_line()]
    t.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
