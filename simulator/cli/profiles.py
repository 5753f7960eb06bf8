"""`fedfleet profiles [list|import|calibrate]`."""

from __future__ import annotations

import argparse
import sys

from simulator import InputError


def _list(args: argparse.Namespace) -> int:
    from rich.console import Console
    from rich.table import Table

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
    Console(width=None if sys.stdout.isatty() else 160).print(t)
    return 0


def _import(args: argparse.Namespace) -> int:
    from simulator.fleet.traces import import_fedscale

    if len(args.paths) != 1 or not args.out:
        raise InputError("profiles import", "usage: fedfleet profiles import CAPACITY.pkl "
                         "[--behavior BEHAVIOR.pkl] --out OUT.parquet")
    summary = import_fedscale(args.paths[0], args.behavior, args.out)
    print(f"wrote {args.out}: " + ", ".join(f"{k}={v}" for k, v in summary.items()))
    return 0


def _calibrate(args: argparse.Namespace) -> int:
    from simulator.workloads.calibration import calibrate_main

    return calibrate_main(args)


def profiles_main(args: argparse.Namespace) -> int:
    return {"list": _list, "import": _import, "calibrate": _calibrate}[args.action](args)
