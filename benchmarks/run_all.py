"""`make bench`: run every benchmark in benchmarks/ and print (and record) their ratio tables.

Every module ``benchmarks/bench_*.py`` (or any other module here) that defines a top-level
``main`` is run in its own Python process, so Ray instances, torch threads and peak-RSS readings
never leak from one benchmark into the next; ``main`` gets an empty argument list when it takes
one. Output is streamed as it comes and collected into ``runs/bench/<UTC stamp>/`` (one
``<benchmark>.md`` each plus ``summary.md``; ``runs/`` is untracked), and ``runs/bench/latest.md``
is the last run's report. Tracked files are never edited, unless asked: ``--write-docs`` also
replaces the generated part of docs/performance.md (between the ``bench:begin`` and
``bench:end`` markers) with the tables and the machine and load they ran at.

    python -m benchmarks.run_all                  # everything, ~6-9 minutes on 2 cores
    python -m benchmarks.run_all --only clients,population
    python -m benchmarks.run_all --write-docs     # the deliberate step that updates the docs
"""

from __future__ import annotations

import argparse
import ast
import os
import re
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from benchmarks.common import ROOT, load_line, machine_line

HERE = Path(__file__).resolve().parent
DOCS = ROOT / "docs" / "performance.md"
OUT = ROOT / "runs" / "bench"
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"
# Run order: the headline comparisons first; modules not listed follow alphabetically.
ORDER = ["bench_clients", "bench_reference", "bench_population", "bench_analytic",
         "bench_memory", "bench_soak", "bench_calibration"]
# not speed benchmarks: screenshots writes docs/img; the two studies compare what methods learn
# and cost (minutes each; their tables are in docs/large-models.md), run by hand
NOT_BENCHMARKS = {"__init__", "common", "run_all", "screenshots", "bench_lora_aggregation",
                  "bench_compression"}
RATIO_COLUMN = re.compile(r" / |ratio|speed-up|^x |ceiling")  # the columns a goal line repeats
TIMEOUT_S = 300  # per module; the whole run should stay under 10 minutes on 2 cores
NOISE = re.compile(r"Token authentication is enabled|^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+"
                   r"(INFO|WARNING)|^\(raylet\)|^\s*warnings\.warn")

RUNNER = """
import importlib, inspect, sys
mod = importlib.import_module("benchmarks." + sys.argv[1])
main = mod.main
rc = main(sys.argv[2:]) if inspect.signature(main).parameters else main()
sys.exit(rc if isinstance(rc, int) else 0)
"""


@dataclass
class Result:
    name: str
    rc: int
    seconds: float
    output: str


def has_main(path: Path) -> bool:
    try:
        tree = ast.parse(path.read_text(encoding="utf-8"))
    except (OSError, SyntaxError):
        return False
    return any(isinstance(n, ast.FunctionDef) and n.name == "main" for n in tree.body)


def discover() -> list[str]:
    found = [p.stem for p in HERE.glob("*.py") if p.stem not in NOT_BENCHMARKS and has_main(p)]
    rank = {n: i for i, n in enumerate(ORDER)}
    return sorted(found, key=lambda n: (rank.get(n, len(ORDER)), n))


def run_one(name: str, args: list[str], timeout_s: float) -> Result:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in [str(ROOT), env.get("PYTHONPATH", "")] if p)
    env.setdefault("PYTHONUNBUFFERED", "1")
    env.setdefault("RAY_DEDUP_LOGS", "0")
    print(f"\n=== {name} {' '.join(args)}".rstrip(), flush=True)
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", RUNNER, name, *args], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    lines: list[str] = []
    assert proc.stdout is not None
    watchdog = threading.Timer(timeout_s, proc.kill)  # a silent hang still ends
    watchdog.start()
    try:
        for line in proc.stdout:  # stream while it runs
            if NOISE.search(line):
                continue
            sys.stdout.write(line)
            sys.stdout.flush()
            lines.append(line)
        rc = proc.wait()
    finally:
        watchdog.cancel()
    if time.perf_counter() - t0 >= timeout_s and rc != 0:
        rc = 124
        lines.append(f"\n(stopped after {timeout_s:.0f} s)\n")
    return Result(name, rc, time.perf_counter() - t0, "".join(lines).strip() + "\n")


def goals(output: str) -> list[str]:
    """Every goal a benchmark's output states, one line each: the rows of its tables that have
    a ``goal`` and a ``status`` column (first cells, the goal, the status), and its other lines
    that name a goal and say ``met`` / ``NOT met``."""
    found: list[str] = []
    header: list[str] | None = None
    for line in output.splitlines():
        text = line.strip()
        if text.startswith("|") and text.endswith("|"):
            cells = [c.strip() for c in text.strip("|").split("|")]
            if set("".join(cells)) <= set("-: "):
                continue
            if header is None:
                header = [c.lower() for c in cells]
                continue
            if "goal" in header and "status" in header and len(cells) == len(header):
                gi, si = header.index("goal"), header.index("status")
                if cells[gi] or cells[si]:
                    lead = ", ".join([cells[0]] + [f"{c} {h}" for h, c in zip(
                        header[1:], cells[1:], strict=True) if h.startswith("clients") and c])
                    ratios = ", ".join(f"{h} {c}" for h, c in zip(header, cells, strict=True)
                                       if c and RATIO_COLUMN.search(h))
                    found.append(f"{lead}: {ratios}; goal {cells[gi]} -> {cells[si]}")
            continue
        header = None
        if "goal" in text.lower() and re.search(r"\bmet\b", text):
            found.append(text.lstrip("- "))
    return found


def render(results: list[Result], total_s: float) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    out = [BEGIN, "", f"Generated by `python -m benchmarks.run_all --write-docs` on {stamp}, "
           f"{total_s:.0f} s in all; {load_line()} at the end.", "", machine_line(), ""]
    out += ["| benchmark | seconds | exit |", "|---|---|---|"]
    out += [f"| {r.name} | {r.seconds:.0f} | {r.rc} |" for r in results]
    stated = [(r.name, g) for r in results for g in goals(r.output)]
    if stated:
        out += ["", "Goals, as each benchmark states them (ratios measured in this run):", ""]
        out += [f"- `{name}`: {g}" for name, g in stated]
    for r in results:
        out += ["", f"## `{r.name}`", "", r.output.strip()]
    out += ["", END]
    return "\n".join(out) + "\n"


def update_docs(block: str, path: Path = DOCS) -> None:
    text = path.read_text(encoding="utf-8") if path.exists() else "# Performance\n\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        tail = rest.split(END, 1)[1]
        text = head + block.rstrip("\n") + tail
    else:
        text = text.rstrip("\n") + "\n\n" + block
    tmp = path.with_suffix(".md.tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", help="comma-separated names (with or without 'bench_')")
    ap.add_argument("--write-docs", action="store_true",
                    help="also replace the generated tables in docs/performance.md")
    ap.add_argument("--no-docs", action="store_true", help=argparse.SUPPRESS)  # the default now
    ap.add_argument("--out", default=str(OUT), help="where the tables go (default runs/bench)")
    ap.add_argument("--timeout", type=float, default=TIMEOUT_S, help="seconds per benchmark")
    args = ap.parse_args(argv)
    names = discover()
    if args.only:
        want = {w if w.startswith("bench_") else f"bench_{w}" for w in args.only.split(",")}
        names = [n for n in names if n in want or n.removeprefix("bench_") in want]
    print(machine_line(), flush=True)
    print(load_line(), flush=True)
    print(f"benchmarks: {', '.join(names)}", flush=True)
    t0 = time.perf_counter()
    results = [run_one(n, [], args.timeout) for n in names]
    total = time.perf_counter() - t0
    print("\n=== summary", flush=True)
    for r in results:
        print(f"{r.name:24s} {r.seconds:6.0f} s  exit {r.rc}", flush=True)
    over = "  (over the 10-minute budget)" if total > 600 else ""
    print(f"{'total':24s} {total:6.0f} s{over}")
    print("\n=== goals", flush=True)
    for r in results:
        for g in goals(r.output):
            print(f"{r.name}: {g}", flush=True)
    if results:
        block = render(results, total)
        out = Path(args.out) / datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
        out.mkdir(parents=True, exist_ok=True)
        for r in results:
            (out / f"{r.name}.md").write_text(r.output, encoding="utf-8")
        (out / "summary.md").write_text(block, encoding="utf-8")
        (out.parent / "latest.md").write_text(block, encoding="utf-8")
        print(f"tables written to {out}", flush=True)
        if args.write_docs:
            update_docs(block, DOCS)
            print(f"tables written to {DOCS}", flush=True)
    return 0 if all(r.rc == 0 for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
