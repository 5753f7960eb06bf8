"""Heterogeneous-rank LoRA aggregation compared: HetLoRA (zero-padding), FlexLoRA (SVD), FLoRA
(stacking), on scenarios/llm-lora-rank-aggregation.yaml (300 clients of 8 device classes, ranks
16/8/4 by memory and deadline, tiny Llama really trained).

    python -m benchmarks.bench_lora_aggregation                 # 3 rules x 30 rounds x 2 seeds
    python -m benchmarks.bench_lora_aggregation --rounds 10 --seeds 1

Each rule runs with the same seeds (the same fleet, data and, until the first aggregation, the
same clients), on the in-process executor. Reported per rule: test loss and next-token accuracy
after the last round (mean over seeds, min-max), the best test loss, simulated time, and the
bytes down and up per round.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.common import ROOT, Table, load_line, machine_line

SCENARIO = ROOT / "scenarios" / "llm-lora-rank-aggregation.yaml"
RULES = {"HetLoRA (zero-padding)": None, "FlexLoRA (SVD)": "flexlora", "FLoRA (stacking)": "flora"}


def run(strategy: str | None, rounds: int, seed: int) -> Any:
    import pandas as pd

    from simulator.config.scenario import apply_overrides, parse_scenario, read_yaml
    from simulator.loop.runner import run_scenario

    over: dict[str, Any] = {"rounds": rounds, "seed": seed, "executor.kind": "local"}
    if strategy:
        over["aggregation.strategy"] = strategy
    sc = parse_scenario(apply_overrides(read_yaml(SCENARIO), over))
    with tempfile.TemporaryDirectory() as d:
        out = Path(run_scenario(sc, name="r", runs_dir=d))
        return pd.read_parquet(out / "rounds.parquet")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--seeds", type=int, default=2)
    args = ap.parse_args(argv)
    load0, t0 = load_line(), time.perf_counter()
    t = Table(f"Heterogeneous-rank LoRA aggregation ({args.rounds} rounds, {args.seeds} seeds, "
              "ranks 16/8/4)",
              ["rule", "final test loss", "final accuracy", "best test loss", "sim. time (min)",
               "down MB/round", "up MB/round", "wall s"])
    for label, strat in RULES.items():
        rows = []
        for s in range(args.seeds):
            w0 = time.perf_counter()
            r = run(strat, args.rounds, 5 + s)
            rows.append((float(r["loss"].iloc[-1]), float(r["accuracy"].iloc[-1]),
                         float(r["loss"].min()), float(r["sim_end_s"].iloc[-1]) / 60,
                         float(r["bytes_down"].mean()) / 1e6, float(r["bytes_up"].mean()) / 1e6,
                         time.perf_counter() - w0))
        a = np.array(rows)

        def cell(j: int, fmt: str, a: np.ndarray = a) -> str:
            m, lo, hi = a[:, j].mean(), a[:, j].min(), a[:, j].max()
            return f"{m:{fmt}}" if len(a) == 1 else f"{m:{fmt}} ({lo:{fmt}}-{hi:{fmt}})"

        t.add(label, cell(0, ".3f"), cell(1, ".3f"), cell(2, ".3f"), cell(3, ".2f"),
              cell(4, ".3f"), cell(5, ".3f"), f"{a[:, 6].sum():.0f}")
    t.notes += [f"seeds {', '.join(str(5 + s) for s in range(args.seeds))}; mean (min-max)",
                f"{time.perf_counter() - t0:.0f} s in all; {load0} before, {load_line()} after",
                machine_line()]
    t.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
