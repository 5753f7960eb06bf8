"""Sweep grids and their variants (running them: simulator/sweep/run.py).

Sweeps: run scenario variants x seeds with Ray Tune and compare them.

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

import math
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from simulator import InputError
from simulator.config.scenario import (
    RUN_NAME_RE,
    Scenario,
    ScenarioError,
    apply_overrides,
    parse_scenario,
)
from simulator.config.selection import BUILTIN_POLICIES

__all__ = ["SweepResult", "Variant", "expand", "parse_grid", "validate"]

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
    startup: Any = None  # simulator.sweep.startup.StartupReport, when any trial finished


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
