"""`fedfleet profiles [list|import|calibrate]`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from simulator import InputError


def _list(args: argparse.Namespace) -> int:
    from rich.table import Table

    from simulator.cli.tables import keep_whole, print_table
    from simulator.fleet.profiles import catalog

    t = Table(title="Device profiles")
    for col in ("name", "kind", "train TFLOP/s", "usable memory", "links (median up)",
                "availability", "dropout /h", "train W"):
        t.add_column(col)
    for name, p in sorted(catalog(args.profiles_dir).items()):
        links = ", ".join(f"{lk.link} {lk.uplink_bits_per_s_median / 1e6:.0f} Mb/s"
                          for lk in p.network.links)
        av = p.availability
        avail = "always" if av.pattern == "always" else (
            f"{av.window_hours:g} h from {int(av.window_start_hour):02d}:"
            f"{int(round(av.window_start_hour % 1 * 60)):02d}")
        t.add_row(name, p.kind, f"{p.compute.train_flops_per_s / 1e12:.3g}",
                  f"{p.memory.usable_bytes / 1e9:.1f} GB", links, avail,
                  f"{p.dropout.hazard_per_hour:g}", f"{p.energy.train_watts:g}")
    keep_whole(t, 0, 1)  # names and kinds are never cut ("phone-fla...")
    print_table(t)
    return 0


def _import(args: argparse.Namespace) -> int:
    from simulator.fleet.traces import import_fedscale

    if len(args.paths) != 1 or not args.out:
        raise InputError("profiles import", "usage: fedfleet profiles import CAPACITY.pkl "
                         "[--behavior BEHAVIOR.pkl] --out OUT.parquet")
    summary = import_fedscale(args.paths[0], args.behavior, args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


def calibrate_main(args: argparse.Namespace) -> int:
    """``args.paths[0]`` is the scenario, ``args.out`` the profile to write; prints a summary of
    each fit (simulator/workloads/calibration.py measures and writes)."""
    paths = list(getattr(args, "paths", []) or [])
    if len(paths) != 1 or not getattr(args, "out", None):
        raise InputError("profiles calibrate",
                         "usage: fedfleet profiles calibrate SCENARIO.yaml --out PROFILE.yaml")
    from simulator.config.scenario import load_scenario
    from simulator.workloads.calibration import calibrate

    sc = load_scenario(paths[0])
    budget = float(getattr(args, "budget_s", 0.0) or 6.0)
    calibrate(sc, args.out, budget, on_written=print_fit)
    return 0


def print_fit(fit: Any, path: Path) -> None:
    """The summary of one calibration fit (a ``calibration.Fit``) and where it was written."""
    print(f"{fit.device}: step overhead {fit.step_overhead_s * 1e3:.3f} ms, training "
          f"{fit.train_flops_per_s / 1e9:.2f} GFLOP/s, peak {fit.peak_flops_per_s / 1e9:.2f} "
          f"GFLOP/s (batch {fit.batch})")
    for s, p, t in fit.points:
        pred = fit.predict_step_s(p)
        print(f"  hidden {s[1:-1]!s:<14} {p:>10,} params  {t * 1e3:8.3f} ms/step  "
              f"model {pred * 1e3:8.3f} ms  ({100 * (pred - t) / t:+.1f}%)")
    print(f"wrote {path}")


def profiles_main(args: argparse.Namespace) -> int:
    return {"list": _list, "import": _import, "calibrate": calibrate_main}[args.action](args)
