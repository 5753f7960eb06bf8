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


# --- whole process trees: CPU-seconds and peak RSS, actors included ---------------------------
def load_line() -> str:
    """The 1/5/15-minute load averages, printed beside every speed figure."""
    if not hasattr(os, "getloadavg"):
        return "load n/a"
    a, b, c = os.getloadavg()
    return f"load {a:.2f}/{b:.2f}/{c:.2f} on {machine()['nproc']} cores"


def self_and_children_cpu_s() -> float:
    """User+system CPU-seconds of this process plus its waited-for children (getrusage)."""
    import resource

    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime


class TreeMonitor:
    """Samples a process and all its descendants (Ray's raylet, GCS and actors included) every
    ``interval`` s in a thread: the peak of the tree's summed RSS, and the CPU-seconds of every
    process seen (its last reading; a process ending between samples loses at most one
    interval). Use as a context manager around the work; ``root`` defaults to this process."""

    def __init__(self, root: int | None = None, interval: float = 0.05) -> None:
        self.root = root or os.getpid()
        self.interval = interval
        self.peak_rss_mib = 0.0
        self.peak_procs = 0
        self._cpu: dict[int, float] = {}
        self._cpu0: dict[int, float] = {}
        self._stop = False
        self._thread: Any = None

    def _sample(self) -> None:
        import psutil

        try:
            root = psutil.Process(self.root)
            procs = [root, *root.children(recursive=True)]
        except psutil.Error:
            return
        total = 0.0
        for p in procs:
            try:
                with p.oneshot():
                    total += p.memory_info().rss
                    t = p.cpu_times()
                    self._cpu[p.pid] = t.user + t.system
            except psutil.Error:
                continue
        self.peak_rss_mib = max(self.peak_rss_mib, total / 2**20)
        self.peak_procs = max(self.peak_procs, len(procs))

    def _loop(self) -> None:
        import time as _time

        while not self._stop:
            self._sample()
            _time.sleep(self.interval)

    def __enter__(self) -> TreeMonitor:
        import threading

        self._sample()
        self._cpu0 = dict(self._cpu)
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._sample()
        self._stop = True
        self._thread.join()

    @property
    def cpu_s(self) -> float:
        """CPU-seconds the tree spent while monitored (processes started before: their delta)."""
        return sum(v - self._cpu0.get(pid, 0.0) for pid, v in self._cpu.items())


@dataclass
class ProcessRun:
    wall_s: float
    cpu_s: float
    peak_rss_mib: float
    procs: int


def run_process_tree(cmd: list[str], cwd: Path = ROOT, env: dict[str, str] | None = None
                     ) -> ProcessRun:
    """Run ``cmd`` to completion: its wall time, the CPU-seconds of its whole tree (the larger of
    getrusage(RUSAGE_CHILDREN)'s delta and the sampled sum: processes that a Ray shutdown kills
    are never waited for, so getrusage misses them) and the tree's peak summed RSS."""
    import subprocess
    import time as _time

    e = dict(os.environ if env is None else env)
    e["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), e.get("PYTHONPATH", "")] if p)
    r0 = _children_cpu()
    t0 = _time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=cwd, env=e, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    with TreeMonitor(proc.pid) as mon:
        out, _ = proc.communicate()
    wall = _time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{out[-2000:]}")
    cpu = max(_children_cpu() - r0, mon.cpu_s)
    return ProcessRun(wall, cpu, mon.peak_rss_mib, mon.peak_procs)


def _children_cpu() -> float:
    import resource

    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return c.ru_utime + c.ru_stime


def interleaved(fns: dict[str, Any], reps: int) -> dict[str, list[Any]]:
    """Call every function once per repetition, in turn (ABAB...), so that load swings on a
    shared machine hit every side alike; returns each side's results in order."""
    out: dict[str, list[Any]] = {k: [] for k in fns}
    for _ in range(reps):
        for k, f in fns.items():
            out[k].append(f())
    return out
