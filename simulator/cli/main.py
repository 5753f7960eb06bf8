"""fedfleet command line: validate | run | resume | dashboard | runs | profiles | sweep | serve
| export.

Every user error is one line on stderr and exit code 2; no tracebacks for bad input.
"""

from __future__ import annotations

import argparse
import sys
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


def _finish(run_dir: Path, args: argparse.Namespace) -> None:
    """The end-of-run summary (simulator/cli/progress.py), then the dashboard."""
    from simulator.cli.progress import summary_lines

    html = None
    if not args.no_dashboard:
        from dashboards import write_run_dashboard

        html = write_run_dashboard(run_dir)
    for line in summary_lines(run_dir, getattr(args, "target_accuracy", None), html):
        print(line)
    sys.stdout.flush()


def _check_target(args: argparse.Namespace) -> None:
    t = getattr(args, "target_accuracy", None)
    if t is not None and not 0 < t <= 1:
        raise InputError("--target-accuracy", f"must be in (0, 1] (got {t:g})")
    if getattr(args, "log_every", 1) < 0:
        raise InputError("--log-every", f"must be 0 (off) or more (got {args.log_every})")


def cmd_run(args: argparse.Namespace) -> int:
    from simulator.cli.progress import RunProgress
    from simulator.config.scenario import validate_run_name
    from simulator.loop.runner import run_scenario

    _check_target(args)
    sc = _load(args.file, args.set)
    name = validate_run_name(sc.name if args.name is None else args.name)
    with RunProgress(sc.rounds, name, log_every=args.log_every) as prog:
        run_dir = run_scenario(sc, name=name, runs_dir=args.runs_dir, overwrite=args.overwrite,
                               on_round=prog.on_round)
    _finish(run_dir, args)
    return 0


def cmd_resume(args: argparse.Namespace) -> int:
    from simulator.cli.progress import RunProgress, resume_total
    from simulator.loop.runner import resume_run

    _check_target(args)
    name = Path(args.run).name.removesuffix(".partial")
    with RunProgress(resume_total(args.run), name, log_every=args.log_every) as prog:
        run_dir = resume_run(args.run, on_round=prog.on_round)
    _finish(run_dir, args)
    return 0


def cmd_dashboard(args: argparse.Namespace) -> int:
    from dashboards import write_comparison_dashboard, write_run_dashboard

    runs = [Path(r) for r in args.run]
    for run in runs:
        if not ((run / "manifest.json").exists() or (run / "parts").is_dir()):
            raise InputError("RUN", f"'{run}' is not a run directory (no manifest.json or parts/)")
    if len(runs) == 1 and not args.labels:
        _wrote(write_run_dashboard(runs[0], Path(args.out) if args.out else None), "dashboard of",
               runs)
        return 0
    labels = args.labels.split(",") if args.labels else None
    if labels is not None and len(labels) != len(runs):
        raise InputError("--labels", f"give one label per run ({len(runs)} runs, "
                                     f"{len(labels)} labels)")
    out = Path(args.out) if args.out else runs[0].parent / "comparison.html"
    _wrote(write_comparison_dashboard(runs, out, labels=labels, target_accuracy=args.target),
           "comparison of", runs)
    return 0


def _wrote(path: Path, what: str, runs: list[Path]) -> None:
    size = Path(path).stat().st_size
    names = ", ".join(r.name for r in runs[:4]) + (f" and {len(runs) - 4} more"
                                                     if len(runs) > 4 else "")
    print(f"wrote {path} ({size / 1e6:.1f} MB): {what} {names}")


def cmd_runs(args: argparse.Namespace) -> int:
    from simulator.cli.runs import list_runs, print_runs

    runs_dir = Path(args.runs_dir or "runs")
    if args.runs_dir is None and not runs_dir.exists():  # not named: ./runs need not exist yet
        print("no runs found (no 'runs' directory here; name one: fedfleet runs DIR)")
        return 0
    if not runs_dir.is_dir():
        what = "is not a directory" if runs_dir.exists() else "does not exist"
        raise InputError("RUNS_DIR", f"'{runs_dir}' {what}")
    print_runs(list_runs(runs_dir))
    return 0


def cmd_profiles(args: argparse.Namespace) -> int:
    from simulator.cli.profiles import profiles_main

    return profiles_main(args)


def _add_progress_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--target-accuracy", type=float, metavar="ACC",
                   help="report the simulated time to this accuracy in the final summary")
    p.add_argument("--log-every", type=int, default=1, metavar="N",
                   help="when stdout is not a terminal, a log line every N rounds (0: none)")


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
    _add_progress_args(r)
    r.set_defaults(func=cmd_run)

    rs = sub.add_parser("resume", help="finish an interrupted run from its last checkpoint",
                        formatter_class=raw, epilog="example:\n  fedfleet resume runs/quickstart")
    rs.add_argument("run")
    rs.add_argument("--no-dashboard", action="store_true", help="skip writing dashboard.html")
    _add_progress_args(rs)
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
    ls.add_argument("runs_dir", nargs="?", default=None,
                    help="a runs directory (default: ./runs); a missing one named is an error")
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

    for extra in ("sweep", "serve", "export"):
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
