"""Sweeps: run scenario variants x seeds with Ray Tune and compare them.

``fedfleet sweep FILE --grid selection.policy=random,oort --grid selection.oort.alpha=1,2
--seeds 3`` expands the grid's cross product, validates every variant's scenario *before*
starting Ray, runs each (variant, seed) as one Ray Tune trial (one CPU, ``executor.kind`` forced
to ``local``) into ``runs/<sweep>/<variant>_seed-<seed>/``, then writes

- ``sweep.parquet``: one row per trial: the grid overrides, seed, simulated time to the target
  accuracy, final accuracy, rounds, Jain's fairness index over per-client completed tasks
  (clients never completing count as zero), wasted device-seconds, bytes up/down, energy;
- ``comparison.html``: the comparison dashboard (``dashboards.write_comparison_dashboard``);
- ``sweep.json``: what was run; Ray Tune's own files go to ``_tune/``.

Deduplication: a grid key of one policy's parameter block (``selection.oort.alpha``) means
nothing for another policy, so a variant whose ``selection.policy`` is P drops the overrides of
the other built-in policies' blocks, and variants that become identical run once (``random``
with ``oort.alpha`` 1 and 2 is one variant). This module is Ray-free; simulator/sweep/tune.py
drives Ray Tune.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from simulator import InputError
from simulator.config.selection import BUILTIN_POLICIES
from simulator.config.scenario import RUN_NAME_RE, Scenario, ScenarioError, apply_overrides, parse_scenario
from simulator.sweep.results import jain_index, run_metrics, summarise

__all__ = ["SweepResult", "Variant", "expand", "jain_index", "parse_grid", "run_metrics",
           "run_sweep", "validate"]

KEY_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_RESERVED = {"seed": "use --seeds N to repeat each variant with seeds seed, seed+1, ...",
             "name": "run directories are named after the variants",
             "executor": "trials always run with executor.kind local (one CPU each)",
             "output": "use --runs-dir and --name"}
MAX_TRIALS = 10_000


@dataclass(frozen=True)
class Variant:
    """One trial: the grid overrides it applies, its seed, and where its run goes."""

    name: str  # run directory under the sweep directory
    label: str  # the variant without its seed (seeds of a label are grouped)
    overrides: dict[str, Any]
    seed: int


@dataclass
class SweepResult:
    sweep_dir: Path
    table: pd.DataFrame
    parquet: Path
    dashboard: Path | None
    failures: list[str] = field(default_factory=list)
    dropped: int = 0


# --- grid -----------------------------------------------------------------------------------------
def _split_values(text: str) -> list[str]:
    """Split on commas outside brackets: ``[64,32],[128]`` -> ``['[64,32]', '[128]']``."""
    out, depth, cur = [], 0, ""
    for ch in text:
        if ch in "[{":
            depth += 1
        elif ch in "]}":
            depth -= 1
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    out.append(cur)
    return [v.strip() for v in out]


def parse_grid(items: list[str] | None) -> dict[str, list[tuple[str, Any]]]:
    """``["k=v1,v2", ...]`` -> ``{k: [(raw, value), ...]}``; values parsed as YAML scalars."""
    grid: dict[str, list[tuple[str, Any]]] = {}
    for item in items or []:
        if "=" not in item:
            raise InputError("--grid", f"expected KEY=V1,V2,..., got {item!r} "
                             "(e.g. --grid selection.policy=random,oort)")
        key, _, text = item.partition("=")
        key = key.strip()
        if not KEY_RE.match(key):
            raise InputError("--grid", f"invalid key {key!r} (a dotted field path such as "
                             "selection.oort.alpha)")
        root = key.split(".")[0]
        if root in _RESERVED:
            raise InputError("--grid", f"{key} cannot be swept: {_RESERVED[root]}")
        if key in grid:
            raise InputError("--grid", f"{key} given twice (list all its values in one --grid)")
        raws = _split_values(text)
        if any(r == "" for r in raws):
            raise InputError("--grid", f"{key}: empty value in {text!r} (values are separated "
                             "by commas, e.g. 1,2,4)")
        values = []
        for raw in raws:
            try:
                values.append((raw, yaml.safe_load(raw)))
            except (yaml.YAMLError, ValueError, IndexError, AttributeError, TypeError):
                # PyYAML leaks plain exceptions on odd scalars (e.g. a 13th month in a date)
                raise InputError("--grid", f"{key}: cannot parse value {raw!r}") from None
        if len({r for r, _ in values}) != len(values):
            raise InputError("--grid", f"{key}: a value is listed twice in {text!r}")
        grid[key] = values
    return grid


def _short_keys(keys: list[str]) -> dict[str, str]:
    """Shortest unambiguous suffix of each key, for labels (``selection.oort.alpha`` -> alpha)."""
    out = {}
    for k in keys:
        parts = k.split(".")
        for n in range(1, len(parts) + 1):
            cand = ".".join(parts[-n:])
            if sum(1 for o in keys if o == cand or o.endswith("." + cand)) == 1:
                out[k] = cand
                break
    return out


def _policy_of(doc: dict[str, Any], overrides: dict[str, Any]) -> Any:
    if "selection.policy" in overrides:
        return overrides["selection.policy"]
    sel = doc.get("selection")
    return sel.get("policy", "random") if isinstance(sel, dict) else "random"


def _dirname(label: str) -> str:
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", label.replace("=", "-").replace(",", "_"))
    return s.strip("-._") or "base"


def expand(doc: dict[str, Any], grid: dict[str, list[tuple[str, Any]]],
           seeds: int) -> tuple[list[Variant], int]:
    """The grid's cross product x seeds, deduplicated; returns (variants, duplicates dropped)."""
    if not 1 <= seeds <= 1000:
        raise InputError("--seeds", f"must be between 1 and 1000 (got {seeds})")
    base_seed = doc.get("seed", 0) if isinstance(doc.get("seed", 0), int) else 0
    keys = list(grid)
    short = _short_keys(keys)
    n_combos = math.prod(len(v) for v in grid.values()) if grid else 1
    if n_combos * seeds > MAX_TRIALS:
        raise InputError("--grid", f"{n_combos * seeds} trials is too many (at most {MAX_TRIALS})")
    combos: list[list[tuple[str, tuple[str, Any]]]] = [[]]
    for k in keys:
        combos = [c + [(k, v)] for c in combos for v in grid[k]]
    variants: list[Variant] = []
    seen: set[str] = set()
    used_names: set[str] = set()
    dropped = 0
    for combo in combos:
        label, overrides = _label(doc, short, combo)
        if label in seen:
            dropped += seeds
            continue
        seen.add(label)
        for i in range(seeds):
            seed = base_seed + i
            name = f"{_dirname(label)}_seed-{seed}"
            if not RUN_NAME_RE.match(name) or name in used_names:
                name = f"v{len(variants):04d}_seed-{seed}"
            used_names.add(name)
            variants.append(Variant(name, label, overrides, seed))
    return variants, dropped


def _label(doc: dict[str, Any], short: dict[str, str],
           combo: list[tuple[str, tuple[str, Any]]]) -> tuple[str, dict[str, Any]]:
    """Drop other policies' parameter overrides; label the rest ``alpha=1,policy=oort``."""
    policy = _policy_of(doc, {k: v for k, (_, v) in combo})
    keep = [(k, raw, v) for k, (raw, v) in combo
            if not (k.startswith("selection.") and len(k.split(".")) > 2
                    and k.split(".")[1] in BUILTIN_POLICIES and k.split(".")[1] != policy)]
    label = ",".join(f"{short[k]}={raw}" for k, raw, _ in keep) or "base"
    return label, {k: v for k, _, v in keep}


def resolve_config(config: dict[str, Any], spec: dict[str, Any]) -> Variant:
    """The variant a Tune trial's config stands for (grid: by name; searchers: by values)."""
    variants = {v["name"]: Variant(**v) for v in spec["variants"]}
    if "variant" in config:
        return variants[config["variant"]]
    keys = spec["grid_keys"]
    combo = [(k, (str(config[k]), yaml.safe_load(str(config[k])))) for k in keys]
    label, _ = _label(spec["doc"], _short_keys(keys), combo)
    for v in variants.values():
        if v.label == label and v.seed == int(config["seed"]):
            return v
    raise KeyError(f"no variant for {config}")  # pragma: no cover - spaces come from the grid


def trial_doc(doc: dict[str, Any], v: Variant) -> dict[str, Any]:
    """The scenario document a trial runs: base + overrides + seed, executor forced local."""
    return apply_overrides(doc, {**v.overrides, "seed": v.seed, "executor": {"kind": "local"}})


def validate(doc: dict[str, Any], grid: dict[str, list[tuple[str, Any]]],
             seeds: int = 1) -> None:
    """Parse the scenario of every grid combination before any Ray work, *before*
    deduplication, so a misspelt key in another policy's block is still an error; one line
    naming the variant and the field."""
    keys = list(grid)
    short = _short_keys(keys)
    combos: list[list[tuple[str, tuple[str, Any]]]] = [[]]
    for k in keys:
        combos = [c + [(k, v)] for c in combos for v in grid[k]]
    base_seed = doc.get("seed", 0) if isinstance(doc.get("seed", 0), int) else 0
    for combo in combos:
        label = ",".join(f"{short[k]}={raw}" for k, (raw, _) in combo) or "base"
        v = Variant("check", label, {k: val for k, (_, val) in combo}, base_seed + seeds - 1)
        try:
            sc = parse_scenario(trial_doc(doc, v))
        except ScenarioError as exc:
            more = f" (and {len(exc.lines) - 1} more)" if len(exc.lines) > 1 else ""
            raise InputError("--grid", f"variant {label}: {exc.lines[0]}{more}") from None
        _check_plugin(sc)


def _check_plugin(sc: Scenario) -> None:
    import importlib

    name = sc.selection.policy
    if name in BUILTIN_POLICIES:
        return
    mod, _, cls = name.rpartition(".")
    try:
        getattr(importlib.import_module(mod), cls)
    except (ImportError, AttributeError) as exc:
        raise InputError("selection.policy", f"cannot import plugin '{name}' ({exc})") from None


def variants_json(variants: list[Variant]) -> list[dict[str, Any]]:
    return [asdict(v) for v in variants]


# --- driver ---------------------------------------------------------------------------------------
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
              dashboard: bool = True, log: Any = print) -> SweepResult:
    """Validate everything, run the trials with Ray Tune, write sweep.parquet and the dashboard."""
    from simulator.io.recording import atomic_write_bytes, atomic_write_table
    from simulator.config.scenario import read_yaml, validate_run_name

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
    from simulator.sweep import tune as T

    search, sched = T.make_search_alg(search_alg), T.make_scheduler(scheduler)
    runs_dir = runs_dir or base.output.runs_dir
    sweep_dir = _prepare_dir(runs_dir, name, overwrite)
    keys = list(grid)
    spec = {"doc": doc, "variants": variants_json(variants), "grid_keys": keys,
            "sweep_dir": str(sweep_dir.resolve()), "search_alg": search_alg,
            "report_rounds": scheduler != "fifo"}
    meta = {"name": name, "file": str(file), "grid": {k: [r for r, _ in v] for k, v in grid.items()},
            "seeds": seeds, "sets": sets or {}, "search_alg": search_alg, "scheduler": scheduler,
            "target_accuracy": target_accuracy, "duplicates_dropped": dropped,
            "variants": spec["variants"]}
    atomic_write_bytes(sweep_dir / "sweep.json", json.dumps(meta, indent=2, default=str).encode())
    from ray import tune

    if search is None:
        space: dict[str, Any] = {"variant": tune.grid_search([v.name for v in variants])}
        samples = 1
    else:
        space = {k: tune.choice([r for r, _ in grid[k]]) for k in keys}
        space["seed"] = tune.choice(sorted({v.seed for v in variants}))
        samples = num_samples or len(variants)
    log(f"sweep '{name}': {len(variants) if search is None else samples} trials "
        f"({len({v.label for v in variants})} variants x {seeds} seeds"
        f"{f'; {dropped} duplicate trials dropped' if dropped else ''}) -> {sweep_dir}")
    results = T.run_tune(spec, space, samples, max_concurrent, search, sched,
                         sweep_dir / "_tune", log)
    by_name = {v.name: v for v in variants}
    records: list[tuple[Variant, Path | None, str]] = []
    for res in results:
        m, cfg = res["metrics"], res["config"]
        run_name = m.get("run_name")
        d = sweep_dir / run_name if run_name else None
        ok = d is not None and (d / "manifest.json").exists()
        if "variant" in cfg:
            v = by_name[cfg["variant"]]
        else:
            v = resolve_config(cfg, spec)
        if run_name:
            v = Variant(run_name, v.label, v.overrides, v.seed)
        records.append((v, d if ok else None, res["error"]))  # no dir, no error: stopped
    records.sort(key=lambda r: (r[0].label, r[0].seed, r[0].name))
    table, target = summarise(records, keys, target_accuracy)
    parquet = sweep_dir / "sweep.parquet"
    import pyarrow as pa

    atomic_write_table(parquet, pa.Table.from_pandas(table, preserve_index=False))
    failures = [f"{v.name}: {err}" for v, d, err in records if d is None and err]
    html = _dashboard(records, sweep_dir, target, log) if dashboard else None
    return SweepResult(sweep_dir, table, parquet, html, failures, dropped)


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
