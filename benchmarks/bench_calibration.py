"""Calibration check: real client training on this machine vs the simulator's compute time.

1. Calibrate this machine on the quickstart scenario
   (``simulator.workloads.calibration.measure``: the workload's sequential trainer at
   hidden [64, 32] and wider copies, one thread, CPU time).
2. For each model size (hidden [64, 32] and [512, 256] by default), really train ``--clients``
   quickstart clients (their own data and sizes) one after another with the workload's
   sequential trainer, timing each client's CPU time (best of ``--repeats``).
3. Build the population with the calibrated profile and let the planner and ``cost.estimate``
   predict each client's compute seconds, as the engine does (clock proxy off: the model
   charged is the model trained).

Prints, per size: real and simulated totals, the error of the total and the median per-client
error, next to what a single FLOP/s figure measured on the smallest model alone would predict
(no step overhead). Goal: within 15 %.

    python -m benchmarks.bench_calibration               # ~1-2 minutes on 2 cores
    python -m benchmarks.bench_calibration --clients 50 --budget 3
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/bench_calibration.py`
    sys.path.insert(0, str(ROOT))

from simulator.config.scenario import load_scenario  # noqa: E402
from simulator.core import rng as R  # noqa: E402
from simulator.core.cost import dense_train_flops_per_sample, estimate  # noqa: E402
from simulator.loop.simulation import build_population  # noqa: E402
from simulator.planning import make_planner  # noqa: E402
from simulator.workloads.calibration import measure, profile_doc, with_hidden  # noqa: E402


def simulated_compute_s(sc: Any, profile_dir: Path, profile_name: str,
                        ids: np.ndarray) -> np.ndarray:
    """Compute seconds the engine would charge ``ids`` on the calibrated profile."""
    pop_cfg = sc.population.model_copy(update={
        "mix": (sc.population.mix[0].model_copy(update={"profile": profile_name, "share": 1.0}),),
        "profiles_dir": str(profile_dir)})
    sc_cal = sc.model_copy(update={"population": pop_cfg})
    pop, ds = build_population(sc_cal)
    plan = make_planner(sc_cal, pop, ds.n_features, ds.n_classes).plan(0, ids, pop)
    t = estimate(pop.downlink_bits_per_s[ids], pop.uplink_bits_per_s[ids], pop.latency_s[ids],
                 pop.train_flops_per_s[ids], plan.cost,
                 pop.per_profile(lambda q: q.compute.step_overhead_s, ids))
    return t.compute_s


def real_compute_s(sc: Any, ids: np.ndarray, repeats: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-client CPU seconds of real sequential training, and each client's sample count."""
    from simulator.workloads.mlp import MLPWorkload

    wl = MLPWorkload(sc, sc.population.size)
    flat = wl.initial_state()
    inputs = [wl._client_inputs(int(c), R.int_seed(sc.seed, R.TRAINING, 0, int(c))) for c in ids]
    wl._train_sequential(flat, inputs[:5])  # warm-up
    best = np.full(len(ids), np.inf)
    for _ in range(repeats):
        for j, inp in enumerate(inputs):
            t0 = time.thread_time()
            wl._train_sequential(flat, [inp])
            best[j] = min(best[j], time.thread_time() - t0)
    return best, np.array([len(inp[1]) for inp in inputs])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scenario", default=str(ROOT / "scenarios" / "quickstart.yaml"))
    ap.add_argument("--clients", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--budget", type=float, default=6.0, help="calibration CPU seconds")
    ap.add_argument("--sizes", default="64x32,512x256", help="hidden sizes to check")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(1)
    sc = load_scenario(args.scenario)
    sc = sc.model_copy(update={"executor": sc.executor.model_copy(update={"kind": "local"})})
    t0 = time.perf_counter()
    fit = measure(sc, "cpu", args.budget)
    doc = profile_doc(fit, "bench", time.strftime("%Y-%m-%d"), 8e9)
    doc["compute"]["spread_sigma"] = 0.0
    small = fit.points[0]
    naive_rate = dense_train_flops_per_sample(small[1]) * fit.batch / small[2]
    print(f"calibrated in {time.perf_counter() - t0:.0f} s: step overhead "
          f"{fit.step_overhead_s * 1e3:.3f} ms + FLOPs / {fit.train_flops_per_s / 1e9:.2f} GFLOP/s"
          f" (single-size figure at {small[0][1:-1]}: {naive_rate / 1e9:.2f} GFLOP/s)")
    ids = np.arange(min(args.clients, sc.population.size))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pdir = Path(tmp)
        (pdir / f"{doc['name']}.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
        for spec in args.sizes.split(","):
            hidden = [int(h) for h in spec.split("x")]
            sch = with_hidden(sc, hidden)
            real, n = real_compute_s(sch, ids, args.repeats)
            sim = simulated_compute_s(sch, pdir, doc["name"], ids)
            params = sum(a * b + b for a, b in zip([64, *hidden], [*hidden, 10], strict=True))
            naive = dense_train_flops_per_sample(params) * n * sch.training.epochs / naive_rate
            err = (sim.sum() - real.sum()) / real.sum()
            per = np.median(np.abs(sim - real) / real)
            nerr = (naive.sum() - real.sum()) / real.sum()
            rows.append((spec, params, real.sum(), sim.sum(), err, per, nerr))
    print(f"\n{'hidden':<10}{'params':>10}{'real s':>10}{'sim s':>10}{'error':>9}"
          f"{'median |err|':>14}{'1-figure error':>16}")
    for spec, params, r, s, e, p, ne in rows:
        print(f"{spec:<10}{params:>10,}{r:>10.3f}{s:>10.3f}{e:>+9.1%}{p:>14.1%}{ne:>+16.1%}")
    print(f"\n{len(ids)} quickstart clients per size, CPU time of one thread (best of "
          f"{args.repeats}); goal |error| <= 15%")
    return 0 if all(abs(r[4]) <= 0.15 for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
