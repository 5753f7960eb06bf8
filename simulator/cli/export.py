"""`fedfleet export RUN [RUN ...] --to tensorboard|mlflow|csv [--out DIR]`.

The writing is library code (simulator/io/export.py); this prints what was written and how to
open it. tensorboard and mlflow are imported only when this command runs.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from simulator.io.export import FORMATS

EPILOG = """examples:
  fedfleet export runs/quickstart --to tensorboard      # -> runs/quickstart/tensorboard
  tensorboard --logdir runs/quickstart/tensorboard
  fedfleet export runs/a runs/b --to mlflow --out mlruns
  MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri mlruns
  fedfleet export runs/quickstart --to csv --out quickstart-csv
  fedfleet export runs/quickstart --to mlflow --tracking-uri http://127.0.0.1:5000
"""

HOW_TO_OPEN = {
    "tensorboard": "tensorboard --logdir {out}",
    "mlflow": "MLFLOW_ALLOW_FILE_STORE=true mlflow ui --backend-store-uri {out}",
}


def cmd_export(args: argparse.Namespace) -> int:
    from simulator.io.export import export_runs

    res = export_runs([Path(r) for r in args.run], args.to,
                      Path(args.out) if args.out else None, overwrite=args.overwrite,
                      tracking_uri=args.tracking_uri, experiment=args.experiment)
    for name, detail in res["runs"].items():
        if args.to == "tensorboard":
            what = f"{detail} scalar events"
        elif args.to == "mlflow":
            what = f"MLflow run {detail} in experiment '{args.experiment}'"
        else:
            what = ", ".join(Path(p).name for p in detail)
        print(f"{name}: {what}")
    print(f"wrote {args.to} export to {res['out']}")
    how = HOW_TO_OPEN.get(args.to)
    if how and not args.tracking_uri:
        print("open it with: " + how.format(out=res["out"]))
    return 0


def add_parser(subparsers: Any) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "export", help="export runs to TensorBoard, MLflow or CSV",
        formatter_class=argparse.RawDescriptionHelpFormatter, epilog=EPILOG)
    p.add_argument("run", nargs="+", help="complete run directories")
    p.add_argument("--to", required=True, choices=FORMATS, help="output format")
    p.add_argument("--out", help="output directory (default for one run: RUN/tensorboard, "
                                 "RUN/mlruns or RUN/csv; required for several)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace an earlier export in --out (never any other directory)")
    p.add_argument("--experiment", default="fedfleet", help="MLflow experiment name")
    p.add_argument("--tracking-uri", metavar="URI",
                   help="MLflow tracking URI instead of a file store in --out "
                        "(sqlite:///mlflow.db, http://host:5000, ...)")
    p.set_defaults(func=cmd_export)
    return p
