"""Soak: a long analytic run must not grow the driver's memory.

Runs ``--rounds`` (default 5,000) analytic rounds through
:class:`simulator.loop.simulation.Simulation` with a real :class:`simulator.io.recording.Recorder`
in a temporary directory, samples the driver's resident set size (psutil) every ``--every``
rounds, and compares the final RSS (and the peak after round 100) with the RSS at round 100.
Prints the ratios; exits 1 if the final ratio exceeds ``1 + --tolerance`` (default 10 %).

    python -m benchmarks.bench_soak                 # 5,000 rounds, ~1 minute on 2 cores
    python -m benchmarks.bench_soak --rounds 1000   # quicker look
"""

from __future__ import annotations

import argparse
import gc
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/bench_soak.py`
    sys.path.insert(0, str(ROOT))

from simulator.config.scenario import parse_scenario  # noqa: E402
from simulator.io.recording import Recorder  # noqa: E402
from simulator.loop.simulation import Simulation  # noqa: E402

REFERENCE_ROUND = 100


def soak_doc(rounds: int, population: int, per_round: int, checkpoint_every: int) -> dict[str, Any]:
    """A heterogeneous fleet with diurnal devices and drop-outs, simulated analytically."""
    return {
        "name": "soak",
        "seed": 11,
        "mode": "analytic",
        "population": {
            "size": population,
            "mix": [
                {"profile": "phone-lowend", "share": 0.3},
                {"profile": "phone-flagship", "share": 0.3},
                {"profile": "rpi4", "share": 0.2},
                {"profile": "laptop-cpu", "share": 0.15},
                {"profile": "edge-server-l4", "share": 0.05},
            ],
        },
        "data": {"dataset": "digits", "partition": "dirichlet", "samples_per_client": 30},
        "model": {"kind": "mlp", "hidden": [32],
                  "clock_proxy": {"params": 11.7e6, "train_flops_per_sample": 5.4e9}},
        "rounds": rounds,
        "clients_per_round": per_round,
        "overcommit": 1.3,
        "deadline_s": 600,
        "output": {"checkpoint_every": checkpoint_every},
    }


def rss_bytes() -> int:
    return int(psutil.Process().memory_info().rss)


def soak(rounds: int, population: int, per_round: int, checkpoint_every: int,
         every: int) -> dict[str, float]:
    sc = parse_scenario(soak_doc(rounds, population, per_round, checkpoint_every))
    samples: list[tuple[int, int]] = []
    with tempfile.TemporaryDirectory(prefix="fedfleet-soak-") as tmp:
        rec = Recorder(tmp, "soak")
        rec.start()
        sim = Simulation(sc)
        wall0 = time.perf_counter()
        try:
            while sim.next_round < rounds:
                sim.step(rec)
                r = sim.next_round
                if checkpoint_every and r % checkpoint_every == 0 and r < rounds:
                    sim.checkpoint(rec)
                if r in (REFERENCE_ROUND, rounds) or r % every == 0:
                    gc.collect()
                    samples.append((r, rss_bytes()))
            wall = time.perf_counter() - wall0
            rec.flush()
        finally:
            sim.close()
    ref = next(v for r, v in samples if r == REFERENCE_ROUND)
    after = [v for r, v in samples if r >= REFERENCE_ROUND]
    return {
        "rounds": rounds,
        "rss_round_100_mb": ref / 2**20,
        "rss_final_mb": samples[-1][1] / 2**20,
        "final_ratio": samples[-1][1] / ref,
        "peak_ratio": max(after) / ref,
        "rounds_per_s": rounds / wall,
        "samples": len(samples),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5000)
    ap.add_argument("--population", type=int, default=10_000)
    ap.add_argument("--per-round", type=int, default=100)
    ap.add_argument("--checkpoint-every", type=int, default=0,
                    help="also checkpoint every N rounds (0: never, the default)")
    ap.add_argument("--every", type=int, default=250, help="RSS sample interval in rounds")
    ap.add_argument("--tolerance", type=float, default=0.10)
    args = ap.parse_args(argv)
    if args.rounds <= REFERENCE_ROUND:
        ap.error(f"--rounds must exceed {REFERENCE_ROUND}")
    res = soak(args.rounds, args.population, args.per_round, args.checkpoint_every, args.every)
    ok = res["final_ratio"] <= 1 + args.tolerance
    print(f"soak: {res['rounds']} analytic rounds, {args.per_round} clients/round, "
          f"{res['rounds_per_s']:.0f} rounds/s")
    print(f"rss at round {REFERENCE_ROUND}: {res['rss_round_100_mb']:.1f} MiB; "
          f"final: {res['rss_final_mb']:.1f} MiB")
    print(f"final/round-{REFERENCE_ROUND} RSS ratio: {res['final_ratio']:.3f} "
          f"(peak {res['peak_ratio']:.3f}; limit {1 + args.tolerance:.2f}) "
          f"{'OK' if ok else 'FAIL'}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
