"""Ray Tune side of ``fedfleet sweep`` (imported only when a sweep runs).

Trials find the ``simulator`` package whether or not it is installed and whatever the worker's
working directory: the trainable is a closure (pickled by value) that puts the repository root on
``sys.path`` before importing anything from FedFleet, so it also works when Ray was started
before the sweep (e.g. by the test suite) and no ``runtime_env`` upload is needed.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simulator import InputError

GRID = "grid"
METRIC, MODE = "accuracy", "max"


def _tune_names() -> tuple[list[str], list[str]]:
    from ray.tune.schedulers import SCHEDULER_IMPORT
    from ray.tune.search import SEARCH_ALG_IMPORT

    return [GRID, *SEARCH_ALG_IMPORT], sorted(SCHEDULER_IMPORT)


def _create(flag: str, what: str, name: str, allowed: list[str], default: str,
            factory: Any) -> Any:
    """Tune object ``name`` from ``factory`` (metric and mode come from the TuneConfig); None for
    Tune's ``default``; a one-line InputError naming ``flag`` otherwise."""
    if name not in allowed:
        raise InputError(flag, f"unknown {what} '{name}' (allowed: {', '.join(allowed)})")
    if name == default:
        return None
    try:
        return factory(name)
    except (ImportError, AssertionError, ValueError, TypeError) as exc:
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(flag, f"cannot use '{name}': {msg}") from None


def make_search_alg(name: str) -> Any:
    """None for the grid (Tune's BasicVariantGenerator over grid_search), else a Searcher."""
    from ray.tune.search import create_searcher

    return _create("--search-alg", "search algorithm", name, _tune_names()[0], GRID,
                   create_searcher)


def make_scheduler(name: str) -> Any:
    from ray.tune.schedulers import create_scheduler

    return _create("--scheduler", "scheduler", name, _tune_names()[1], "fifo", create_scheduler)


def make_trainable(root: str) -> Callable[..., None]:
    def fedfleet_trial(config: dict[str, Any], spec: dict[str, Any]) -> None:
        import sys as _sys
        import time as _time

        entered = _time.time()  # before any FedFleet import: imports count as starting

        if root not in _sys.path:
            _sys.path.insert(0, root)
        from simulator.sweep.tune import run_trial

        run_trial(config, spec, entered)

    return fedfleet_trial


def run_trial(config: dict[str, Any], spec: dict[str, Any], entered: float | None = None) -> None:
    """Inside a Tune trial: run one variant's scenario into the sweep directory.

    The final report carries the trial's process id and wall-clock stamps (``t_entered``: the
    trainable was called, ``t_run_start``/``t_run_end``: the simulation itself) so that the
    sweep can say how much of its time went into starting things (simulator/sweep/startup.py).
    """
    from ray import tune

    from simulator.config.scenario import parse_scenario
    from simulator.loop.runner import run_scenario
    from simulator.sweep.grid import Variant, resolve_config, trial_doc

    v = resolve_config(config, spec)
    name = v.name
    if spec["search_alg"] != GRID:  # a searcher may sample a variant twice
        name = f"{v.name}_t{tune.get_context().get_trial_id()}"
    sc = parse_scenario(trial_doc(spec["doc"], Variant(**{**v.__dict__, "name": name})))

    def on_round(rep: Any) -> None:
        acc = 0.0 if math.isnan(rep.accuracy) else rep.accuracy
        tune.report({METRIC: acc, "sim_time_s": rep.sim_end_s, "round": rep.round})

    t_run_start = time.time()
    run_dir = run_scenario(sc, name=name, runs_dir=spec["sweep_dir"], overwrite=True,
                           on_round=on_round if spec["report_rounds"] else None)
    t_run_end = time.time()
    import pyarrow.parquet as pq

    rounds_wall = float(sum(pq.ParquetFile(run_dir / "rounds.parquet").read(
        columns=["wall_s"]).column("wall_s").to_pylist()))  # no pandas import
    import json

    manifest = json.loads((run_dir / "manifest.json").read_text())
    acc = manifest.get("final_accuracy")
    tune.report({METRIC: 0.0 if acc is None or math.isnan(acc) else acc,
                 "sim_time_s": manifest.get("sim_end_s"), "run_name": name, "label": v.label,
                 "seed": v.seed, "population": manifest.get("population"), "done": True,
                 "pid": os.getpid(), "t_entered": entered if entered is not None else t_run_start,
                 "t_run_start": t_run_start, "t_run_end": t_run_end,
                 "rounds_wall_s": rounds_wall})


def _repo_root() -> str:
    import simulator

    return str(Path(simulator.__file__).resolve().parent.parent)


def _start_ray() -> bool:
    """Start a local Ray if none is running; True when this call started it."""
    import ray

    if ray.is_initialized():
        return False
    addr = os.environ.get("RAY_ADDRESS")
    kw: dict[str, Any] = {"include_dashboard": False, "log_to_driver": False,
                          "configure_logging": False}
    if addr:
        from simulator.execution.ray_pool import join_ray

        join_ray(ray, addr, **kw)  # token authentication when the cluster needs it
        return True
    try:  # "local": never join some other session's cluster found on this machine
        ray.init(address="local", num_cpus=os.cpu_count() or 1, **kw)
    except (ConnectionError, RuntimeError, ValueError) as exc:
        from simulator import FedFleetError

        raise FedFleetError(f"cannot start or join Ray ({exc})") from None
    return True


def run_tune(spec: dict[str, Any], param_space: dict[str, Any], num_samples: int,
             max_concurrent: int | None, search_alg: Any, scheduler: Any,
             tune_dir: Path, log: Callable[[str], None],
             ) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run the trials; returns one dict per trial (config, metrics, error) and the sweep's
    wall-clock stamps (start, Ray ready, end)."""
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
    import ray
    from ray import tune
    from ray.tune.error import TuneError

    from simulator import FedFleetError

    t_sweep = time.time()
    started = _start_ray()
    t_ray = time.time()
    total = num_samples * (math.prod(len(v["grid_search"]) for v in param_space.values()
                                     if isinstance(v, dict) and "grid_search" in v) or 1)

    t0 = time.monotonic()

    def tag() -> str:
        """``[done/total, elapsed, ETA]``: the ETA assumes the remaining trials take as long."""
        done = Progress.done
        spent = time.monotonic() - t0
        eta = spent / done * (total - done) if done else float("nan")
        return f"[{done}/{total}, {spent:.0f} s elapsed, ETA {eta:.0f} s]"

    class Progress(tune.Callback):
        done = 0

        def on_trial_complete(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            Progress.done += 1
            m = trial.last_result or {}
            if "run_name" not in m:  # a scheduler stopped it
                log(f"{tag()} trial {trial.trial_id} stopped by the scheduler "
                    f"after round {m.get('round', -1) + 1} (accuracy {m.get(METRIC, 0.0):.3f})")
                return
            log(f"{tag()} {m['run_name']}: final accuracy "
                f"{m.get(METRIC, float('nan')):.3f}, simulated {m.get('sim_time_s') or 0:.0f} s")

        def on_trial_error(self, iteration: int, trials: list, trial: Any, **info: Any) -> None:
            Progress.done += 1
            log(f"{tag()} trial {trial.trial_id} failed")

    trainable = tune.with_resources(
        tune.with_parameters(make_trainable(_repo_root()), spec=spec), {"cpu": 1})
    tuner = tune.Tuner(
        trainable,
        param_space=param_space,
        tune_config=tune.TuneConfig(
            num_samples=num_samples, max_concurrent_trials=max_concurrent,
            search_alg=search_alg, scheduler=scheduler, reuse_actors=True,
            metric=METRIC if (search_alg or scheduler) else None,
            mode=MODE if (search_alg or scheduler) else None),
        run_config=tune.RunConfig(name="tune", storage_path=str(tune_dir.resolve()), verbose=0,
                                  callbacks=[Progress()], log_to_file=True),
    )
    try:
        try:
            grid = tuner.fit()
        except (ValueError, TypeError, RuntimeError, TuneError) as exc:
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
            raise FedFleetError(f"Ray Tune could not run the sweep: {first}") from None
        out = []
        for res in grid:  # type: ignore[attr-defined]  # ResultGrid defines __getitem__/__len__
            err = ""
            if res.error is not None:
                lines = [ln for ln in str(res.error).strip().splitlines() if ln.strip()]
                err = lines[-1].strip() if lines else type(res.error).__name__
            out.append({"config": dict(res.config or {}), "metrics": dict(res.metrics or {}),
                        "error": err})
        clock = {"t_start": t_sweep, "t_ray_ready": t_ray, "t_end": time.time(),
                 "ray_started_here": started, "backend": "ray"}
        return out, clock
    finally:
        if started:
            ray.shutdown()
        sys.stdout.flush()
