"""Running a sweep: the sweep directory, the Ray Tune trials (simulator/sweep/tune.py), the
results table (simulator/sweep/results.py) and the comparison dashboard. Variants and their
grid come from simulator/sweep/grid.py."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from simulator import InputError
from simulator.config.scenario import apply_overrides, parse_scenario
from simulator.sweep.grid import (
    SweepResult,
    Variant,
    expand,
    parse_grid,
    resolve_config,
    validate,
    variants_json,
)
from simulator.sweep.results import jain_index, run_metrics, summarise  # noqa: F401
from simulator.sweep.startup import startup_report


def _prepare_dir(runs_dir: str, name: str, overwrite: bool) -> Path:
    import shutil

    d = Path(runs_dir) / name
    if d.exists():
        if not overwrite:
            raise InputError("--name", f"sweep '{name}' already exists in '{runs_dir}' "
                             "(use --overwrite or another --name)")
        if not (d / "sweep.json").exists():
            raise InputError("--name", f"'{d}' exists and is not a sweep directory; "
                             "choose another --name")
        shutil.rmtree(d)
    d.mkdir(parents=True)
    return d


def run_sweep(file: str | Path, grid_items: list[str] | None, seeds: int = 1,
              name: str | None = None, runs_dir: str | None = None,
              target_accuracy: float | None = None, max_concurrent: int | None = None,
              search_alg: str = "grid", scheduler: str = "fifo", num_samples: int | None = None,
              sets: dict[str, Any] | None = None, overwrite: bool = False,
              dashboard: bool = True, log: Any = print, backend: str = "auto") -> SweepResult:
    """Validate everything, run the trials (a process pool or Ray Tune: ``backend``, see
    simulator/sweep/pool.py), write sweep.parquet and the dashboard."""
    from simulator.config.scenario import read_yaml, validate_run_name
    from simulator.io.recording import atomic_write_bytes, atomic_write_table
    from simulator.sweep.pool import choose_backend, prestart

    backend, why = choose_backend(backend, search_alg, scheduler)
    if backend == "processes":
        prestart()  # torch imports in the forkserver while the variants are validated

    doc = read_yaml(file)
    if sets:
        doc = apply_overrides(doc, sets)
    base = parse_scenario(doc)  # base-file problems read as for `fedfleet run`
    grid = parse_grid(grid_items)
    variants, dropped = expand(doc, grid, seeds)
    validate(doc, grid, seeds)
    name = validate_run_name(name or f"{base.name}-sweep")
    if target_accuracy is not None and not 0 < target_accuracy <= 1:
        raise InputError("--target-accuracy", f"must be in (0, 1] (got {target_accuracy:g})")
    if max_concurrent is not None and max_concurrent < 1:
        raise InputError("--max-concurrent", f"must be at least 1 (got {max_concurrent})")
    if num_samples is not None and num_samples < 1:
        raise InputError("--num-samples", f"must be at least 1 (got {num_samples})")
    if backend == "ray":
        from simulator.sweep import tune as T

        search, sched = T.make_search_alg(search_alg), T.make_scheduler(scheduler)
    else:
        search, sched = None, None
    runs_dir = runs_dir or base.output.runs_dir
    sweep_dir = _prepare_dir(runs_dir, name, overwrite)
    keys = list(grid)
    spec = {"doc": doc, "variants": variants_json(variants), "grid_keys": keys,
            "sweep_dir": str(sweep_dir.resolve()), "search_alg": search_alg,
            "report_rounds": scheduler != "fifo"}
    meta = {"name": name, "file": str(file),
            "grid": {k: [r for r, _ in v] for k, v in grid.items()},
            "seeds": seeds, "sets": sets or {}, "search_alg": search_alg, "scheduler": scheduler,
            "target_accuracy": target_accuracy, "duplicates_dropped": dropped,
            "variants": spec["variants"], "backend": {"kind": backend, "reason": why}}
    atomic_write_bytes(sweep_dir / "sweep.json", json.dumps(meta, indent=2, default=str).encode())
    samples = 1 if search is None else num_samples or len(variants)
    log(f"sweep '{name}': {len(variants) if search is None else samples} trials "
        f"({len({v.label for v in variants})} variants x {seeds} seeds"
        f"{f'; {dropped} duplicate trials dropped' if dropped else ''}) -> {sweep_dir}")
    log(f"sweep '{name}': backend {backend} ({why})")
    if backend == "processes":
        from simulator.sweep.pool import run_pool

        results, clock = run_pool(spec, max_concurrent, log)
    else:
        from ray import tune

        if search is None:
            space: dict[str, Any] = {"variant": tune.grid_search([v.name for v in variants])}
        else:
            space = {k: tune.choice([r for r, _ in grid[k]]) for k in keys}
            space["seed"] = tune.choice(sorted({v.seed for v in variants}))
        results, clock = T.run_tune(spec, space, samples, max_concurrent, search, sched,
                                    sweep_dir / "_tune", log)
    by_name = {v.name: v for v in variants}
    records: list[tuple[Variant, Path | None, str]] = []
    for res in results:
        m, cfg = res["metrics"], res["config"]
        run_name = m.get("run_name")
        d = sweep_dir / run_name if run_name else None
        ok = d is not None and (d / "manifest.json").exists()
        v = by_name[cfg["variant"]] if "variant" in cfg else resolve_config(cfg, spec)
        if run_name:
            v = Variant(run_name, v.label, v.overrides, v.seed)
        records.append((v, d if ok else None, res["error"]))  # no dir, no error: stopped
    records.sort(key=lambda r: (r[0].label, r[0].seed, r[0].name))
    table, target = summarise(records, keys, target_accuracy)
    parquet = sweep_dir / "sweep.parquet"
    import pyarrow as pa

    atomic_write_table(parquet, pa.Table.from_pandas(table, preserve_index=False))
    failures = [f"{v.name}: {err}" for v, d, err in records if d is None and err]
    startup = startup_report([r["metrics"] for r in results], clock)
    if startup is not None:
        log(f"sweep '{name}': {startup.line()}")
        meta["startup"] = startup.as_dict()
        atomic_write_bytes(sweep_dir / "sweep.json",
                           json.dumps(meta, indent=2, default=str).encode())
    html = _dashboard(records, sweep_dir, target, log) if dashboard else None
    return SweepResult(sweep_dir, table, parquet, html, failures, dropped, startup)


def _dashboard(records: list[tuple[Variant, Path | None, str]], sweep_dir: Path, target: float,
               log: Any) -> Path | None:
    done = [(v, d) for v, d, _ in records if d is not None]
    if not done:
        return None
    try:
        from dashboards import write_comparison_dashboard
    except ImportError as exc:
        log(f"comparison dashboard skipped: the dashboards package is not importable ({exc})")
        return None
    return Path(write_comparison_dashboard(
        [d for _, d in done], sweep_dir / "comparison.html", labels=[v.label for v, _ in done],
        target_accuracy=None if math.isnan(target) else target))
