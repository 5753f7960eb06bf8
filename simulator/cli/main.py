"""fedfleet command line: validate | run | resume | dashboard | runs | profiles | sweep | serve.

Every user error is one line on stderr and exit code 2; no tracebacks for bad input.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from simulator import FedFleetError, InputError
from simulator.config.scenario import ScenarioError

EXIT_USAGE = 2

EPILOG_RUN = """examples:
  fedfleet run scenarios/quickstart.yaml
  fedfleet run scenarios/quickstart.yaml --name try2 --set rounds=5 --set executor.kind=ray
"""


def _err(msg: str) -> None:
    print(f"fedfleet: error: {msg}", file=sys.stderr)


def _parse_sets(items: list[str] | None) -> dict[str, Any]:
    import yaml

    out: dict[str, Any] = {}
    for item in items or []:
        if "=" not in item:
            raise InputError("--set", f"expected KEY=VALUE, got {item!r} (e.g. --set rounds=5)")
        k, v = item.split("=", 1)
        try:
            out[k.strip()] = yaml.safe_load(v)
        except Exception:  # YAMLError, or ValueError/IndexError leaked by PyYAML: keep the text
            out[k.strip()] = v
    return out


def _load(path: str, sets: list[str] | None = None):  # type: ignore[no-untyped-def]
    from simulator.config.scenario import load_scenario

    return load_scenario(path, _parse_sets(sets))


def cmd_validate(args: argparse.Namespace) -> int:
    """Parse the scenario, then build every part that needs no training: population, dataset
    (or, analytic, the client sizes), planner, selector, battery and the server chain. A part that
    cannot be built is the usual one-line error (exit 2), before any run is started."""
    from simulator.loop.simulation import build_parts

    sc = _load(args.file, args.set)
    build_parts(sc)
    print(f"{args.file}: ok ({sc.population.size} clients, {sc.rounds} rounds, "
          f"{sc.clients_per_round} per round, mode {sc.mode}, executor {sc.executor.kind})")
    return 0


def _progress_runner(total: int, label: str) -> tuple[Any, Callable[..., None]]:
    from rich.progress import (
        BarColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    prog = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(),
        TextColumn("round {task.completed}/{task.total}"),
        TextColumn("sim {task.fields[sim]}"), TextColumn("acc {task.fields[acc]}"),
        TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
        disable=not sys.stderr.isatty() and os.environ.get("FEDFLEET_PROGRESS") != "1",
    )
    task = prog.add_task(label, total=total, sim="0s", acc="-")

    def on_round(rep: Any) -> None:
        acc = "-" if rep.accuracy != rep.accuracy else f"{rep.accuracy:.3f}"
        prog.update(task, completed=rep.round + 1, sim=_fmt_s(rep.sim_end_s), acc=acc)

    return prog, on_round


def _fmt_s(s: float) -> str:
    if s < 120:
        return f"{s:.1f}s"
    if s < 7200:
        return f"{s / 60:.1f}min"
    return f"{s / 3600:.2f}h"


def _finish(run_dir: Path, no_dashboard: bool) -> None:
    print(f"run written to {run_dir}")
    if not no_dashboard:
        from dashboards import write_run_dashboard

        html = write_run_dashboard(run_dir)
        print(f"dashboard: {html}")


def cmd_run(args: argparse.Namespace) -> int:
    from simulator.config.scenario import validate_run_name
    from simulator.loop.runner import run_scenario

    sc = _load(args.file, args.set)
    name = validate_run_name(sc.name if args.name is None else args.name)
    prog, on_round = _progress_runner(sc.rounds, name)
    with prog:
        run_dir = run_scenario(sc, name=name, runs_dir=args.runs_dir, overwrite=args.overwrite,
                               on_round=on_round)
    _finish(run_dir, args.no_dashboard)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from simulator.loop.runner import resume_run

    prog, on_round = _progress_runner(0, Path(args.run).name)
    with prog:
        run_dir = resume_run(args.run, on_round=on_round)
    _finish(run_dir, args.no_dashboard)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from dashboards import write_comparison_dashboard, write_run_dashboard

    runs = [Path(r) for r in args.run]
    for run in runs:
        if not ((run / "manifest.json").exists() or (run / "parts").is_dir()):
            raise InputError("RUN", f"'{run}' is not a run directory (no manifest.json or parts/)")
    if len(runs) == 1 and not args.labels:
        print(write_run_dashboard(runs[0], Path(args.out) if args.out else None))
        return 0
    labels = args.labels.split(",") if args.labels else None
    if labels is not None and len(labels) != len(runs):
        raise InputError("--labels", f"give one label per run ({len(runs)} runs, "
                                     f"{len(labels)} labels)")
    out = Path(args.out) if args.out else runs[0].parent / "comparison.html"
    print(write_comparison_dashboard(runs, out, labels=labels, target_accuracy=args.target))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from simulator.cli.runs import list_runs, print_runs

    if not Path(args.runs_dir).is_dir():
        raise InputError("RUNS_DIR", f"'{args.runs_dir}' is not a directory "
                                     "(run a scenario first, or pass the folder that holds runs)")
    print_runs(list_runs(Path(args.runs_dir)))
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    from simulator.cli.profiles import profiles_main

    return profiles_main(args)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="fedfleet",
        description="Simulate federated learning over heterogeneous device fleets.",
        epilog="Start with: fedfleet run scenarios/quickstart.yaml",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sub = p.add_subparsers(dest="command", metavar="COMMAND")
    raw = argparse.RawDescriptionHelpFormatter

    v = sub.add_parser("validate", help="check a scenario file", formatter_class=raw,
                       epilog="example:\n  fedfleet validate scenarios/quickstart.yaml")
    v.add_argument("file")
    v.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field")
    v.set_defaults(func=cmd_validate)

    r = sub.add_parser("run", help="run a scenario", formatter_class=raw, epilog=EPILOG_RUN)
    r.add_argument("file")
    r.add_argument("--name", help="run name (default: the scenario's name)")
    r.add_argument("--runs-dir", help="where runs go (default: output.runs_dir, 'runs')")
    r.add_argument("--set", action="append", metavar="KEY=VALUE", help="override a field")
    r.add_argument("--overwrite", action="store_true", help="replace an existing run")
    r.add_argument("--no-dashboard", action="store_true", help="skip writing dashboard.html")
    r.set_defaults(func=cmd_run)

    rs = sub.add_parser("resume", help="finish an interrupted run from its last checkpoint",
                        formatter_class=raw, epilog="example:\n  fedfleet resume runs/quickstart")
    rs.add_argument("run")
    rs.add_argument("--no-dashboard", action="store_true")
    rs.set_defaults(func=cmd_resume)

    d = sub.add_parser("dashboard", help="write a run's HTML dashboard, or compare runs",
                       formatter_class=raw,
                       epilog="examples:\n  fedfleet dashboard runs/quickstart\n"
                              "  fedfleet dashboard runs/a runs/b --labels sync,fedbuff "
                              "--out compare.html")
    d.add_argument("run", nargs="+", help="one run (single-run dashboard) or several (comparison)")
    d.add_argument("--out", help="output HTML path (default: RUN/dashboard.html or "
                                 "RUNS_DIR/comparison.html)")
    d.add_argument("--labels", help="comma-separated label per run; equal labels are grouped")
    d.add_argument("--target", type=float, help="target accuracy for time-to-accuracy")
    d.set_defaults(func=cmd_dashboard)

    ls = sub.add_parser("runs", help="list runs with their key results", formatter_class=raw,
                        epilog="example:\n  fedfleet runs runs/")
    ls.add_argument("runs_dir", nargs="?", default="runs")
    ls.set_defaults(func=cmd_runs)

    pr = sub.add_parser("profiles", help="list, import or calibrate device profiles",
                        formatter_class=raw,
                        epilog="examples:\n  fedfleet profiles\n"
                               "  fedfleet profiles import capacity.pkl --behavior traces.pkl "
                               "--out fleet.parquet")
    pr.add_argument("action", nargs="?", default="list", choices=["list", "import", "calibrate"])
    pr.add_argument("paths", nargs="*")
    pr.add_argument("--behavior", help="FedScale behaviour trace pickle (import)")
    pr.add_argument("--out", help="output path")
    pr.add_argument("--profiles-dir", help="extra profile directory")
    pr.set_defaults(func=cmd_profiles)

    for extra in ("sweep", "serve"):
        try:
            mod = __import__(f"simulator.cli.{extra}", fromlist=["add_parser"])
        except ImportError:
            continue
        mod.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args) or 0)
    except ScenarioError as exc:
        for line in exc.lines:
            _err(line)
        return EXIT_USAGE
    except FedFleetError as exc:
        _err(str(exc))
        return EXIT_USAGE
    except KeyboardInterrupt:
        _err("interrupted; a run with checkpoints can be finished with `fedfleet resume`")
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
