"""The process-pool backend of ``fedfleet sweep``: grid sweeps on one machine without Ray.

A sweep of short trials on one machine spends most of its time starting things when it goes
through Ray Tune: ``ray.init``, Tune's set-up, then every trial process importing torch and
building its workload (benchmarks/bench_sweep.py measured 73% at load 10 on 2 cores). This
backend starts a ``forkserver`` that imports torch and FedFleet's workloads *once*; each worker
forked from it (one per slot, reused for all its trials, so data and model caches stay resident)
starts with those imports done. Trials run exactly as in a Tune trial: the variant's scenario
with ``executor.kind: local`` and one torch thread (what Ray gives a one-CPU trial), so the run
tables are the same on either backend (tests/test_sweep.py).

``backend: auto`` (the default) takes this pool for a grid search with the fifo scheduler when
no cluster is named (``RAY_ADDRESS``); searchers, schedulers and clusters need Ray Tune.
No ray import here; torch is only named for the forkserver to preload.
"""

from __future__ import annotations

import math
import multiprocessing as mp
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simulator import InputError

BACKENDS = ("auto", "processes", "ray")
PRELOAD = ["torch", "simulator.loop.runner", "simulator.workloads", "simulator.data.base"]


def choose_backend(requested: str, search_alg: str, scheduler: str) -> tuple[str, str]:
    """(backend, why) for ``--backend``; refuses a pool where only Ray Tune can run the sweep."""
    if requested not in BACKENDS:
        raise InputError("--backend", f"must be one of {', '.join(BACKENDS)} (got '{requested}')")
    needs_tune = [why for cond, why in (
        (search_alg != "grid", f"--search-alg {search_alg}"),
        (scheduler != "fifo", f"--scheduler {scheduler}"),
        (bool(os.environ.get("RAY_ADDRESS")), "RAY_ADDRESS names a cluster")) if cond]
    if requested == "processes":
        if needs_tune:
            raise InputError("--backend", f"processes cannot run a sweep with "
                             f"{' and '.join(needs_tune)}: use --backend ray or auto")
        return "processes", "--backend processes"
    if requested == "ray":
        return "ray", "--backend ray"
    if needs_tune:
        return "ray", f"Ray Tune: {' and '.join(needs_tune)}"
    return "processes", ("a grid sweep on this machine: a process pool with torch imported once "
                         "starts in a fraction of Ray's time")


def _context() -> Any:
    methods = mp.get_all_start_methods()
    ctx = mp.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        ctx.set_forkserver_preload(PRELOAD)
    return ctx


def prestart() -> None:
    """Start the forkserver now, so that its imports (torch: 1-15 s with the machine's load)
    overlap the sweep's validation of its variants instead of following it. Returns at once."""
    if "forkserver" not in mp.get_all_start_methods():
        return
    _context()
    from multiprocessing import forkserver

    forkserver.ensure_running()


def _init_worker(root: str) -> None:
    if root not in sys.path:
        sys.path.insert(0, root)
    import torch

    torch.set_num_threads(1)  # what Ray gives a trial with one CPU (OMP_NUM_THREADS=1)


def _trial(job: tuple[dict[str, Any], dict[str, Any]]) -> dict[str, Any]:
    """In a worker: run one variant; the report a Tune trial makes (simulator/sweep/tune.py)."""
    entered = time.time()
    variant, spec = job
    try:
        import json

        import pyarrow.parquet as pq

        from simulator.config.scenario import parse_scenario
        from simulator.loop.runner import run_scenario
        from simulator.sweep.grid import Variant, trial_doc

        v = Variant(**variant)
        sc = parse_scenario(trial_doc(spec["doc"], v))
        t_run_start = time.time()
        run_dir = run_scenario(sc, name=v.name, runs_dir=spec["sweep_dir"], overwrite=True)
        t_run_end = time.time()
        rounds_wall = float(sum(pq.ParquetFile(run_dir / "rounds.parquet").read(
            columns=["wall_s"]).column("wall_s").to_pylist()))  # no pandas import
        manifest = json.loads((run_dir / "manifest.json").read_text())
        acc = manifest.get("final_accuracy")
        metrics = {"accuracy": 0.0 if acc is None or math.isnan(acc) else acc,
                   "sim_time_s": manifest.get("sim_end_s"), "run_name": v.name,
                   "label": v.label, "seed": v.seed, "population": manifest.get("population"),
                   "done": True, "pid": os.getpid(), "t_entered": entered,
                   "t_run_start": t_run_start, "t_run_end": t_run_end,
                   "rounds_wall_s": rounds_wall}
        return {"config": {"variant": v.name}, "metrics": metrics, "error": ""}
    except Exception as exc:  # one trial failing never stops the others (as in Tune)
        lines = [ln for ln in str(exc).strip().splitlines() if ln.strip()]
        err = f"{type(exc).__name__}: {lines[-1].strip()}" if lines else type(exc).__name__
        return {"config": {"variant": variant["name"]}, "metrics": {}, "error": err}


def run_pool(spec: dict[str, Any], max_concurrent: int | None, log: Callable[[str], None],
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run every variant of ``spec`` in a forkserver pool; returns the trials' reports (as
    simulator.sweep.tune.run_tune does) and the sweep's wall-clock stamps."""
    import simulator
    from simulator.execution.choose import usable_cores

    root = str(Path(simulator.__file__).resolve().parent.parent)  # found without installing

    variants = spec["variants"]
    slots = max(1, min(max_concurrent or usable_cores(), len(variants)))
    t0 = time.time()
    ctx = _context()
    out: list[dict[str, Any]] = []
    with ctx.Pool(slots, initializer=_init_worker, initargs=(root,)) as pool:
        ready = time.time()
        jobs = [(v, spec) for v in variants]
        for res in pool.imap_unordered(_trial, jobs):
            out.append(res)
            done, spent = len(out), time.time() - t0
            eta = spent / done * (len(jobs) - done)
            tag = f"[{done}/{len(jobs)}, {spent:.0f} s elapsed, ETA {eta:.0f} s]"
            m = res["metrics"]
            if res["error"]:
                log(f"{tag} trial {res['config']['variant']} failed: {res['error']}")
            else:
                log(f"{tag} {m['run_name']}: final accuracy {m['accuracy']:.3f}, "
                    f"simulated {m.get('sim_time_s') or 0:.0f} s")
    return out, {"t_start": t0, "t_ray_ready": ready, "t_end": time.time(),
                 "backend": "processes", "slots": slots}
