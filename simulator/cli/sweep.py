"""``fedfleet sweep``: run scenario variants x seeds in parallel with Ray Tune and compare them."""

from __future__ import annotations

import argparse
import math
import sys
from typing import Any

EPILOG = """examples:
  fedfleet sweep scenarios/policy-comparison.yaml --grid selection.policy=random,oort --seeds 3
  fedfleet sweep scenarios/quickstart.yaml --grid selection.policy=random,oort,tifl \\
      --grid selection.oort.alpha=1,2 --seeds 2 --target-accuracy 0.8 --name policies

Each (variant, seed) is one trial with one CPU and executor.kind local, in a process pool
(--backend processes, the default for grid sweeps on one machine) or as a Ray Tune trial; its
run goes to RUNS_DIR/NAME/<variant>_seed-<seed>/. The sweep writes RUNS_DIR/NAME/sweep.parquet
(one row per trial) and RUNS_DIR/NAME/comparison.html. A grid key of one policy's block
(selection.oort.*) is dropped for variants running another policy, and variants that become
identical run once.
"""


def _fmt_s(s: float) -> str:
    if math.isnan(s):
        return "not reached"
    return f"{s:.0f} s" if s < 7200 else f"{s / 3600:.2f} h"


def _print_table(table: Any) -> None:
    cols = ["label", "seed", "status", "time_to_target_s", "final_accuracy", "jain_fairness",
            "sim_time_s"]
    if table.empty:
        return
    print(f"{'variant':40s} {'seed':>5s} {'time to target':>15s} {'final acc':>9s} "
          f"{'Jain':>6s} {'sim time':>12s}")
    for r in table[[c for c in cols if c in table.columns]].itertuples(index=False):
        if r.status != "ok":
            print(f"{r.label[:40]:40s} {r.seed:>5d} {r.status:>15s}")
            continue
        print(f"{r.label[:40]:40s} {r.seed:>5d} {_fmt_s(r.time_to_target_s):>15s} "
              f"{r.final_accuracy:9.3f} {r.jain_fairness:6.3f} {_fmt_s(r.sim_time_s):>12s}")


LEADERBOARD_SORT = {"time": "time_to_target_s", "accuracy": "final_accuracy",
                    "fairness": "jain", "energy": "energy_j"}


def leaderboard_text(table: Any, sort: str = "time") -> str:
    """The policy leaderboard of a sweep table (one row per label; dashboards/stats.py)."""
    import numpy as np
    import pandas as pd

    from dashboards.stats import leaderboard
    from dashboards.stats import leaderboard_text as text

    ok = table[table["status"] == "ok"] if len(table) else table
    if not len(ok):
        return ""
    per_run = pd.DataFrame({
        "group": ok["label"].astype(str),
        "time_to_target_s": ok["time_to_target_s"].astype(float),
        "rounds_to_target": ok["rounds_to_target"].where(ok["rounds_to_target"] >= 0,
                                                         np.nan).astype(float),
        "final_accuracy": ok["final_accuracy"].astype(float),
        "jain": ok["jain_fairness"].astype(float),
        "energy_j": ok["energy_j"].astype(float),
        "wasted_device_s": ok["wasted_device_s"].astype(float),
        "mean_round_s": ok["sim_time_s"].astype(float) / ok["rounds"].clip(lower=1),
    })
    return text(leaderboard(per_run, LEADERBOARD_SORT[sort]))


def cmd_sweep(args: argparse.Namespace) -> int:
    from simulator.cli.main import _parse_sets
    from simulator.sweep.run import run_sweep

    res = run_sweep(args.file, args.grid, seeds=args.seeds, name=args.name,
                    runs_dir=args.runs_dir, target_accuracy=args.target_accuracy,
                    max_concurrent=args.max_concurrent, search_alg=args.search_alg,
                    scheduler=args.scheduler, num_samples=args.num_samples,
                    sets=_parse_sets(args.set), overwrite=args.overwrite,
                    dashboard=not args.no_dashboard, log=lambda m: print(m, flush=True),
                    backend=args.backend)
    _print_table(res.table)
    board = leaderboard_text(res.table, args.sort_by)
    if board:
        print(f"\nleaderboard (by {args.sort_by}; mean ± 95% t-interval over seeds):")
        print(board)
        print()
    tgt = res.table["target_accuracy"].iloc[0] if len(res.table) else math.nan
    print(f"target accuracy: {tgt:.3f}" if not math.isnan(tgt)
          else "target accuracy: none (no accuracy)")
    print(f"results: {res.parquet}")
    if res.dashboard is not None:
        print(f"dashboard: {res.dashboard}")
    stopped = int((res.table["status"] == "stopped").sum()) if len(res.table) else 0
    if stopped:
        print(f"{stopped} trials were stopped early by the scheduler (status 'stopped')")
    if res.failures:
        for f in res.failures:
            print(f"fedfleet: error: trial {f}", file=sys.stderr)
        print(f"fedfleet: error: {len(res.failures)} of {len(res.table)} trials failed",
              file=sys.stderr)
        return 1
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "sweep", help="run scenario variants x seeds with Ray Tune and compare them",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("file", help="scenario file")
    p.add_argument("--grid", action="append", metavar="KEY=V1,V2",
                   help="a field and its values (repeat for a cross product)")
    p.add_argument("--seeds", type=int, default=1, metavar="N",
                   help="run each variant with seeds seed..seed+N-1 (default 1)")
    p.add_argument("--target-accuracy", type=float, metavar="ACC",
                   help="accuracy for time-to-target (default: 90%% of the best final accuracy)")
    p.add_argument("--name", help="sweep name (default: <scenario name>-sweep)")
    p.add_argument("--runs-dir", help="where the sweep goes (default: output.runs_dir, 'runs')")
    p.add_argument("--max-concurrent", type=int, metavar="N",
                   help="at most N trials at once (default: one per CPU)")
    p.add_argument("--search-alg", default="grid", metavar="NAME",
                   help="grid (default), random, or a Ray Tune searcher (optuna, hyperopt, ...) "
                        "sampling the grid's values")
    p.add_argument("--num-samples", type=int, metavar="N",
                   help="trials for a non-grid search algorithm (default: variants x seeds)")
    p.add_argument("--scheduler", default="fifo", metavar="NAME",
                   help="fifo (default) or a Ray Tune scheduler (async_hyperband, "
                        "median_stopping_rule, "
                        "...) on per-round accuracy; stopped trials are listed as such")
    p.add_argument("--set", action="append", metavar="KEY=VALUE",
                   help="override a field in every variant")
    p.add_argument("--overwrite", action="store_true", help="replace an existing sweep")
    p.add_argument("--no-dashboard", action="store_true", help="skip comparison.html")
    p.add_argument("--sort-by", default="time", choices=list(LEADERBOARD_SORT),
                   help="order of the leaderboard printed at the end (default: time to target)")
    p.add_argument("--backend", default="auto", choices=["auto", "processes", "ray"],
                   help="auto (default): a process pool (torch imported once, no Ray) for a grid "
                        "sweep on this machine, Ray Tune for searchers, schedulers or a cluster")
    p.set_defaults(func=cmd_sweep)
    return p
