"""Reference workload: FedFleet on Ray vs a plain in-process FedAvg loop, side by side.

Workload (scenarios/quickstart.yaml): scikit-learn digits, MLP 64-64-32-10, 1,000 clients,
Dirichlet(0.5) shards, 100 clients per round (130 invited), 1 local epoch, batch 16, 10 rounds;
FedFleet runs 2 Ray actors with one core each.

The plain loop is what a naive simulator does: for every client a fresh torch model and SGD
optimizer, a Python loop over its mini-batches, then a float64 weighted average and a test-set
evaluation. It runs in its own process and trains, each round, exactly the clients FedFleet
trained (the survivors of its simulated round), on the same shards, from the same initial model
and in the same batch order, so the two final accuracies should agree.

- steady round: the rounds alternate (FedFleet round r, then plain round r) so load swings hit
  both; the median of rounds 2..9 is compared (goal: FedFleet <= 1.0x plain);
- end to end: each side as a fresh process from interpreter start to exit, FedFleet through
  ``python -m simulator.cli.main run`` (Ray start, actors, parquet output), the plain loop through
  ``--plain-e2e`` (goal: <= 1.5x);
- peak RSS (VmHWM) of the FedFleet driver, of each actor, and of the plain loop's process.

The plain loop uses one torch thread (on 2 cores, torch's default of 2 threads made these tiny
models slower, so one thread is the stronger baseline).

    python -m benchmarks.bench_reference          # ~1 minute on 2 cores
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import (
    ROOT,
    Table,
    machine_line,
    median,
    peak_rss_mib,
    quickstart_doc,
    ratio,
    verdict,
)

ROUNDS = 10
STEADY_FROM = 2  # rounds 0 and 1 warm caches and kernels
GOAL_STEADY = 1.0
GOAL_E2E = 1.5


def reference_doc(rounds: int = ROUNDS) -> dict[str, Any]:
    return quickstart_doc(**{"rounds": rounds, "executor.kind": "ray", "executor.num_actors": 2,
                             "output.checkpoint_every": 0})


# --- the plain loop -------------------------------------------------------------------------
class PlainFedAvg:
    """Per client: new model, new optimizer, mini-batch loop; FedAvg in float64."""

    def __init__(self, doc: dict[str, Any]) -> None:
        import torch

        from simulator.config.scenario import parse_scenario
        from simulator.core import rng as rngmod
        from simulator.data import build_dataset
        from simulator.workloads.mlp import batch_plan, build_mlp

        sc = parse_scenario(doc)
        torch.set_num_threads(1)  # tiny models: one thread is faster than two busy ones
        self.torch, self.build_mlp, self.batch_plan, self.rng = torch, build_mlp, batch_plan, rngmod
        ds = build_dataset(sc, sc.population.size)
        self.data = {}
        for c in range(sc.population.size):  # a naive simulator partitions everything up front
            x, y = ds.client_data(c)
            self.data[c] = (torch.from_numpy(x), torch.from_numpy(y))
        xt, yt = ds.test_data()
        self.test = (torch.from_numpy(xt), torch.from_numpy(yt))
        self.sizes = [ds.n_features, *sc.model.hidden, ds.n_classes]
        t = sc.training
        self.lr, self.epochs, self.batch = t.lr, t.epochs, t.batch_size
        self.seed = sc.seed
        torch.manual_seed(rngmod.int_seed(sc.seed, rngmod.INIT))  # FedFleet's initial model
        self.global_vec = torch.nn.utils.parameters_to_vector(
            build_mlp(self.sizes).parameters()).detach()

    def round(self, rnd: int, ids: list[int]) -> float:
        torch = self.torch
        nn = torch.nn
        total = torch.zeros_like(self.global_vec, dtype=torch.float64)
        n_total = 0
        for cid in ids:
            model = self.build_mlp(self.sizes)
            # vector_to_parameters makes the parameters views of the vector: copy it first
            nn.utils.vector_to_parameters(self.global_vec.clone(), model.parameters())
            opt = torch.optim.SGD(model.parameters(), lr=self.lr)
            x, y = self.data[cid]
            # FedFleet's batch order for this client and round, so both train the same way
            seed = self.rng.int_seed(self.seed, self.rng.TRAINING, rnd, cid)
            plan = self.batch_plan(len(y), self.epochs, self.batch, np.random.default_rng(seed))
            for row in plan:
                idx = torch.from_numpy(row[row >= 0])
                opt.zero_grad()
                nn.functional.cross_entropy(model(x[idx]), y[idx]).backward()
                opt.step()
            total += len(y) * nn.utils.parameters_to_vector(model.parameters()).detach().double()
            n_total += len(y)
        if n_total:
            self.global_vec = (total / n_total).float()
        model = self.build_mlp(self.sizes)
        nn.utils.vector_to_parameters(self.global_vec, model.parameters())
        with torch.no_grad():
            return float((model(self.test[0]).argmax(1) == self.test[1]).float().mean())


def plain_worker(conn: Any, doc: dict[str, Any]) -> None:
    """Child process: serve plain rounds on request; report its peak RSS at the end."""
    t0 = time.perf_counter()
    plain = PlainFedAvg(doc)
    conn.send(time.perf_counter() - t0)
    while True:
        msg = conn.recv()
        if msg is None:
            break
        rnd, ids = msg
        t = time.perf_counter()
        acc = plain.round(rnd, ids)
        conn.send((time.perf_counter() - t, acc))
    conn.send(peak_rss_mib())


# --- FedFleet, round by round -----------------------------------------------------------------
def _capturing_recorder(runs_dir: str) -> Any:
    from simulator.io.recording import Recorder

    class Capturing(Recorder):
        last: dict[str, np.ndarray] = {}

        def append(self, round_row: dict[str, Any], client_cols: dict[str, np.ndarray]) -> None:
            self.last = client_cols
            super().append(round_row, client_cols)

    rec = Capturing(runs_dir, "reference")
    rec.start()
    return rec


def side_by_side(rounds: int) -> dict[str, Any]:
    import ray

    from simulator.config.scenario import parse_scenario
    from simulator.loop.simulation import Simulation

    doc = reference_doc(rounds)
    ctx = mp.get_context("spawn")
    parent, child = ctx.Pipe()
    proc = ctx.Process(target=plain_worker, args=(child, doc), daemon=True)
    proc.start()
    plain_setup = parent.recv()
    out: dict[str, Any] = {"ff": [], "plain": [], "trained": [], "ids": []}
    with tempfile.TemporaryDirectory(prefix="fedfleet-bench-") as tmp:
        from simulator.execution.ray_pool import init_ray

        t0 = time.perf_counter()
        init_ray(None)
        out["ray_init"] = time.perf_counter() - t0
        sim = Simulation(parse_scenario(doc))  # the actors, the population, the initial model
        out["ff_setup"] = time.perf_counter() - t0
        out["plain_setup"] = plain_setup
        pids = ray.get([a.pid.remote() for a in sim.executor.actors])  # type: ignore[union-attr]
        rec = _capturing_recorder(tmp)
        try:
            for r in range(rounds):
                t = time.perf_counter()
                rep = sim.step(rec)
                out["ff"].append(time.perf_counter() - t)
                cols = rec.last
                ids = [int(c) for c, o in zip(cols["client_id"], cols["outcome"], strict=True)
                       if o == "completed"]
                parent.send((r, ids))
                dt, acc = parent.recv()
                out["plain"].append(dt)
                out["trained"].append(len(ids))
                out["ids"].append(ids)
                out["ff_acc"], out["plain_acc"] = rep.accuracy, acc
            out["actor_peak_mib"] = [peak_rss_mib(p) for p in pids]
            out["driver_peak_mib"] = peak_rss_mib()
        finally:
            sim.close()
            parent.send(None)
            out["plain_peak_mib"] = parent.recv()
            proc.join(timeout=30)
            ray.shutdown()
    return out


# --- end to end, each side as a fresh process -------------------------------------------------
def e2e_fedfleet(rounds: int) -> float:
    import yaml

    with tempfile.TemporaryDirectory(prefix="fedfleet-e2e-") as tmp:
        path = Path(tmp) / "reference.yaml"
        path.write_text(yaml.safe_dump(reference_doc(rounds)))
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-m", "simulator.cli.main", "run", str(path),
                        "--name", "e2e", "--runs-dir", tmp, "--no-dashboard"], cwd=ROOT, check=True,
                       capture_output=True)
        return time.perf_counter() - t0


def e2e_plain(ids_per_round: list[list[int]]) -> float:
    with tempfile.NamedTemporaryFile("w", suffix=".json", delete=False) as f:
        json.dump(ids_per_round, f)
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "benchmarks.bench_reference", "--plain-e2e", f.name],
                   cwd=ROOT, check=True, capture_output=True)
    Path(f.name).unlink()
    return time.perf_counter() - t0


def run_plain_e2e(path: str) -> int:
    ids_per_round = json.loads(Path(path).read_text())
    plain = PlainFedAvg(reference_doc(len(ids_per_round)))
    for r, ids in enumerate(ids_per_round):
        plain.round(r, ids)
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=ROUNDS)
    ap.add_argument("--e2e-reps", type=int, default=1, help="fresh-process runs per side")
    ap.add_argument("--plain-e2e", metavar="IDS_JSON", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.plain_e2e:
        return run_plain_e2e(args.plain_e2e)
    res = side_by_side(args.rounds)
    ff, pl = res["ff"][STEADY_FROM:], res["plain"][STEADY_FROM:]
    per_round = [a / b for a, b in zip(ff, pl, strict=True)]
    e2e_ff, e2e_pl = [], []
    for _ in range(args.e2e_reps):  # alternate the two sides
        e2e_ff.append(e2e_fedfleet(args.rounds))
        e2e_pl.append(e2e_plain(res["ids"]))
    steady = ratio(median(ff), median(pl))
    e2e = ratio(median(e2e_ff), median(e2e_pl))
    t = Table(f"Reference workload: FedFleet (Ray, 2 actors) vs plain FedAvg loop "
              f"({args.rounds} rounds, ~{int(np.mean(res['trained']))} clients trained per round)",
              ["measure", "FedFleet", "plain loop", "ratio", "goal", "status"])
    t.add(f"steady round, median of rounds {STEADY_FROM}-{args.rounds - 1} (s)", median(ff),
          median(pl), steady, f"<= {GOAL_STEADY}x", verdict(steady, GOAL_STEADY, False))
    t.add("median of per-round ratios", "", "", median(per_round), "", "")
    t.add("setup in the measuring process (s)", res["ff_setup"], res["plain_setup"],
          ratio(res["ff_setup"], res["plain_setup"]), "", "")
    t.add("  of which ray.init (s)", res["ray_init"], "", "", "", "")
    t.add("end to end, fresh process incl. Ray start (s)", median(e2e_ff), median(e2e_pl), e2e,
          f"<= {GOAL_E2E}x", verdict(e2e, GOAL_E2E, False))
    t.add("test accuracy after the last round", res["ff_acc"], res["plain_acc"],
          ratio(res["ff_acc"], res["plain_acc"]), "", "")
    t.add("peak RSS, FedFleet driver vs plain process (MiB)", res["driver_peak_mib"],
          res["plain_peak_mib"], ratio(res["driver_peak_mib"], res["plain_peak_mib"]), "", "")
    for i, m in enumerate(res["actor_peak_mib"]):
        t.add(f"peak RSS, actor {i} (MiB)", m, "", "", "", "")
    fixed = median(e2e_ff) - median(e2e_pl) - args.rounds * (median(ff) - median(pl))
    saving = median(pl) - median(ff)
    if saving > 0 and fixed > 0:
        t.notes.append(f"FedFleet's fixed start-up cost over the plain loop is ~{fixed:.1f} s "
                       f"(Ray, actor processes importing torch); each round saves "
                       f"{saving:.3f} s, so end to end breaks even after ~{fixed / saving:.0f} "
                       f"rounds at this workload")
    t.notes.append(machine_line())
    t.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
