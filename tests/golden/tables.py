"""Golden tables of the shipped scenarios: a hash per column of rounds.parquet and clients.parquet.

Every shipped scenario runs shortened (``rounds`` below, in-process executor) and each table column
except wall-clock ones is hashed, so a refactor that changes behaviour fails with the scenario,
table and column that moved. The runs happen in a child process with numpy's SIMD dispatch pinned
(``SIMD_ENV``), so the hashes are the same on AVX2 and AVX-512 machines. After an *intended*
change of numbers, regenerate with

    .venv/bin/python -m tests.golden.tables --update

and say in the commit and CHANGELOG which numbers changed and why.
"""

from __future__ import annotations

import argparse
import atexit
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parents[2]
HASHES = Path(__file__).with_name("hashes.json")
# The static clock (dynamics off, oracle estimates, per-client split server) of versions before the
# dynamic clock: kept so that switching dynamics off is proven to reproduce them bit for bit.
STATIC_HASHES = Path(__file__).with_name("static_hashes.json")
# What switches the clock back to the static one (tests/test_dynamics_static.py).
STATIC_OVERRIDES: dict[str, Any] = {"dynamics.enabled": False, "estimates.mode": "oracle",
                                    "capacity.split_server": "per_client"}
WALL_COLUMNS = {"wall_s"}  # the machine's clock, not the simulation's
# What torch training and float reductions produce: their last bits depend on the CPU's vector
# units (oneDNN kernels, numpy's SIMD summation order), so these are kept as values and compared
# within LEARNED_RTOL; every other column must match bit for bit.
LEARNED_COLUMNS = {"loss", "train_loss"}
LEARNED_RTOL = 1e-4
# numpy picks its SIMD kernels by CPU when it is imported: on AVX-512 machines (X86_V4) float64
# exp, log and power run numpy's own AVX-512 kernels, elsewhere the C library's, and their last
# bits differ, so clock columns (durations, energy, bytes cut by deadlines) moved by an ulp between
# an AVX-512 machine and an AVX2 one. Golden tables are computed with the dispatch pinned to the
# x86-64-v2 baseline (AVX2 and AVX-512 groups off; on an AVX2 machine that gave the same bits as
# AVX2 on), in a process of their own (compute()), so every x86-64 machine gives the same bits.
SIMD_ENV = {"NPY_DISABLE_CPU_FEATURES": "X86_V3 X86_V4 AVX512_ICL AVX512_SPR"}

# scenario file -> overrides that make it short (rounds) and in-process (identical on Ray:
# tests/test_execution_identity.py).
CASES: dict[str, dict[str, Any]] = {
    "quickstart": {"rounds": 4},
    "policy-comparison": {"rounds": 4},
    "sync-vs-fedbuff-sync": {"rounds": 4},
    "sync-vs-fedbuff-async": {"rounds": 6},
    "smart-home-hierarchical": {"rounds": 6},
    "healthcare-cross-silo": {"rounds": 4},
    "keyboard-cross-device": {"rounds": 4},
    "llm-7b-lora-fleet": {"rounds": 4},
    "llm-7b-compression": {"rounds": 3},
    "llm-lora-heterogeneous": {"rounds": 2},
    "llm-lora-rank-aggregation": {"rounds": 2},
    "byzantine-robust": {"rounds": 4},
}


def column_hash(s: pd.Series) -> str:
    h = hashlib.sha256(str(s.dtype).encode())
    values = s.to_numpy()
    if values.dtype.kind in "biufcmM":  # numbers and times: their exact bytes
        h.update(np.ascontiguousarray(values).tobytes())
    else:  # strings, categoricals, lists: their text (object arrays' bytes are pointers)
        h.update("\x1f".join(map(repr, s.tolist())).encode())
    return h.hexdigest()[:16]


def column_values(s: pd.Series) -> dict[str, Any]:
    v = s.to_numpy(dtype=float)
    return {"values": [None if np.isnan(x) else float(x) for x in v]}


def table_hashes(df: pd.DataFrame) -> dict[str, Any]:
    return {c: column_values(df[c]) if c in LEARNED_COLUMNS else column_hash(df[c])
            for c in df.columns if c not in WALL_COLUMNS}


def same_column(expected: Any, got: Any) -> bool:
    """A hash matches exactly; a learned column's values match within LEARNED_RTOL."""
    if isinstance(expected, dict) and isinstance(got, dict):
        a = np.array([np.nan if x is None else x for x in expected["values"]], dtype=float)
        b = np.array([np.nan if x is None else x for x in got["values"]], dtype=float)
        return a.shape == b.shape and bool(np.allclose(a, b, rtol=LEARNED_RTOL, atol=1e-9,
                                                       equal_nan=True))
    return bool(expected == got)


def same_tables(expected: dict[str, Any], got: dict[str, Any]) -> list[str]:
    """The table/column names that moved (columns added or removed count as moved)."""
    moved = []
    for table in ("rounds", "clients"):
        exp, now = expected.get(table, {}), got.get(table, {})
        moved += [f"{table}.{c}" for c in sorted(set(exp) | set(now))
                  if c not in exp or c not in now or not same_column(exp[c], now[c])]
    return moved


def run_case(name: str, runs_dir: Path) -> dict[str, dict[str, Any]]:
    from simulator.config.scenario import load_scenario
    from simulator.loop.runner import run_scenario

    over = {"executor.kind": "local", **{k: v for k, v in CASES[name].items()}}
    sc = load_scenario(ROOT / "scenarios" / f"{name}.yaml", overrides=over)
    run = run_scenario(sc, name=name, runs_dir=str(runs_dir))
    return {t: table_hashes(pd.read_parquet(run / f"{t}.parquet")) for t in ("rounds", "clients")}


def load_hashes(path: Path = HASHES) -> dict[str, Any]:
    return json.loads(path.read_text())


def simd_pinned() -> bool:
    return all(os.environ.get(k) == v for k, v in SIMD_ENV.items())


class _Child:
    """``python -m tests.golden.tables --json`` in a child process with numpy's dispatch pinned
    (SIMD_ENV: numpy cannot change it once imported), writing into a temporary folder."""

    def __init__(self, cases: list[str], static: bool) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.dest = Path(self.tmp.name) / "hashes.json"
        cmd = [sys.executable, "-m", "tests.golden.tables", "--json", str(self.dest),
               *(["--static"] if static else []), *cases]
        self.proc = subprocess.Popen(cmd, cwd=ROOT, env={**os.environ, **SIMD_ENV},
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def result(self) -> dict[str, dict[str, dict[str, Any]]]:
        out, err = self.proc.communicate()
        try:
            if self.proc.returncode != 0:
                raise RuntimeError(f"golden tables failed to compute (exit "
                                   f"{self.proc.returncode}):\n{out[-4000:]}{err[-8000:]}")
            return json.loads(self.dest.read_text())
        finally:
            self.tmp.cleanup()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()
        self.tmp.cleanup()


_STARTED: dict[bool, _Child] = {}  # static -> its child, started and not yet collected


@atexit.register
def _stop_uncollected() -> None:  # e.g. only one of the two test modules ran
    for child in _STARTED.values():
        child.stop()
    _STARTED.clear()


def compute_all(static: bool) -> dict[str, dict[str, dict[str, Any]]]:
    """Every case's hashes, dynamic or static clock. The first call starts the child processes
    of both (they run side by side on a 2-core machine); the other's is collected later."""
    if simd_pinned():
        return compute(list(CASES), static)
    if static not in _STARTED:
        for st in (False, True):
            if st not in _STARTED:
                _STARTED[st] = _Child(list(CASES), st)
    return _STARTED.pop(static).result()


def compute(cases: list[str], static: bool = False) -> dict[str, dict[str, dict[str, Any]]]:
    """Each case's table hashes, computed in a process whose numpy dispatch is pinned (SIMD_ENV):
    this one if it already is, else a child process."""
    if not simd_pinned():
        return _Child(cases, static).result()
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in cases:
            if static:
                CASES[name] = {**CASES[name], **STATIC_OVERRIDES}
            out[name] = run_case(name, Path(tmp))
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--update", action="store_true", help="rewrite hashes.json")
    ap.add_argument("--static", action="store_true", help=(
        "the static clock (dynamics off, oracle estimates, per-client split server) against "
        "static_hashes.json (--update rewrites that file)"))
    ap.add_argument("--json", metavar="PATH", help="only write the computed hashes to PATH")
    ap.add_argument("cases", nargs="*", default=list(CASES))
    args = ap.parse_args(argv)
    got = compute(args.cases, args.static)
    if args.json:
        Path(args.json).write_text(json.dumps(got))
        return 0
    path = STATIC_HASHES if args.static else HASHES
    old = load_hashes(path) if path.exists() else {}
    new = {**old, **got}
    for name in args.cases:
        moved = same_tables(old.get(name, {}), new[name])
        print(f"{name}: {'unchanged' if not moved else 'CHANGED ' + ', '.join(moved)}")
    if args.update:
        path.write_text(json.dumps(new, indent=1, sort_keys=True) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
