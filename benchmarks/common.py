"""Shared helpers for the benchmarks: machine facts, memory readings, ratio tables.

Every benchmark measures FedFleet and its baseline side by side in the same run and prints the
ratio, because absolute timings on a shared machine move with the load (``load`` below says how
busy the machine was while it ran).
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # allow `python benchmarks/bench_x.py`
    sys.path.insert(0, str(ROOT))

QUICKSTART = ROOT / "scenarios" / "quickstart.yaml"


# --- machine --------------------------------------------------------------------------------
def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    import psutil

    try:
        usable = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        usable = os.cpu_count() or 1
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    from importlib import metadata

    versions = {}
    for name in ("torch", "ray", "numpy"):
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = "-"
    return {"nproc": usable, "cpu": cpu_model(),
            "ram_gib": psutil.virtual_memory().total / 2**30, "load_1min": load,
            "python": platform.python_version(), **versions}


def machine_line() -> str:
    m = machine()
    return (f"machine: {m['nproc']} cores ({m['cpu']}), {m['ram_gib']:.0f} GiB RAM, "
            f"load {m['load_1min']:.1f}; Python {m['python']}, torch {m['torch']}, "
            f"Ray {m['ray']}, numpy {m['numpy']}")


# --- memory ---------------------------------------------------------------------------------
def rss_mib(pid: int | None = None) -> float:
    import psutil

    return float(psutil.Process(pid or os.getpid()).memory_info().rss) / 2**20


def peak_rss_mib(pid: int | None = None) -> float:
    """Peak resident set (VmHWM) of a process on this machine; current RSS where unknown."""
    try:
        for line in Path(f"/proc/{pid or os.getpid()}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return float(line.split()[1]) / 1024.0
    except OSError:
        pass
    return rss_mib(pid)


# --- statistics -----------------------------------------------------------------------------
def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs)) if xs else float("nan")


def verdict(value: float, goal: float, higher_is_better: bool) -> str:
    if value != value:  # NaN
        return "n/a"
    ok = value >= goal if higher_is_better else value <= goal
    return "met" if ok else "NOT met"


# --- tables ---------------------------------------------------------------------------------
@dataclass
class Table:
    """A markdown table printed by a benchmark (run_all copies the output into the docs)."""

    title: str
    columns: list[str]
    rows: list[list[Any]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: Any) -> None:
        self.rows.append(list(cells))

    def render(self) -> str:
        def fmt(x: Any) -> str:
            if isinstance(x, float):
                if x != x:
                    return "n/a"
                if abs(x) >= 1000:
                    return f"{x:,.0f}"
                if abs(x) >= 10:
                    return f"{x:.1f}"
                return f"{x:.3g}" if abs(x) < 0.01 else f"{x:.2f}"
            return str(x)

        cells = [[fmt(c) for c in r] for r in self.rows]
        widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(self.columns)]

        def line(r: list[str]) -> str:
            return "| " + " | ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) + " |"

        out = [f"### {self.title}", "", line(self.columns),
               "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
        out += [line(r) for r in cells]
        out += [""] + [f"- {n}" for n in self.notes] if self.notes else []
        return "\n".join(out) + "\n"

    def print(self) -> None:
        print(self.render(), flush=True)


def ratio(a: float, b: float) -> float:
    return a / b if b else float("nan")


def quickstart_doc(**overrides: Any) -> dict[str, Any]:
    """The quickstart scenario (the reference workload) as a raw document, with dotted overrides."""
    from simulator.config.scenario import apply_overrides, read_yaml

    return apply_overrides(read_yaml(QUICKSTART), overrides)  # type: ignore[no-any-return]
