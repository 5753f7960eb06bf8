"""A sweep of 20 short trials: how much of its wall time goes into starting things.

Goal (issue 15): at most 10% of the sweep's wall time starting things (Ray, actors, imports,
building each run). The sweep is 2 policies x 10 seeds of the quickstart shortened to 10 rounds,
run by ``fedfleet sweep``'s own code (Ray Tune, one CPU per trial, actors reused across trials);
its start-up accounting is simulator/sweep/startup.py (an upper bound: it counts writing each
run's tables too). Beside it, measured in the same run, the simple thing a user would write: the
same 20 runs one after another in one process with the in-process executor. Both report wall
time, CPU-seconds and the peak RSS of their whole process tree (Ray workers included).
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path

from benchmarks.common import QUICKSTART, Table, load_line, machine_line, ratio, run_process_tree

ROUNDS = 30  # the quickstart as shipped: a short trial (~1-2 s of rounds)
POLICIES = ["random", "oort"]
SEEDS = 10

SWEEP = """
import json, sys
from simulator.sweep.run import run_sweep
res = run_sweep(sys.argv[1], [f"selection.policy={sys.argv[4]}"], seeds=int(sys.argv[5]),
                name="bench", runs_dir=sys.argv[2], sets={"rounds": int(sys.argv[3])},
                dashboard=False, log=lambda *a: None, backend=sys.argv[6])
assert not res.failures, res.failures
"""

LOOP = """
import sys, time
from simulator.config.scenario import load_scenario
from simulator.loop.runner import run_scenario
n = 0
for policy in sys.argv[4].split(","):
    for seed in range(int(sys.argv[5])):
        sc = load_scenario(sys.argv[1], overrides={"rounds": int(sys.argv[3]),
            "selection.policy": policy, "seed": 42 + seed, "executor.kind": "local"})
        run_scenario(sc, name=f"{policy}-{seed}", runs_dir=sys.argv[2], overwrite=True)
        n += 1
print(n)
"""


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seeds", type=int, default=SEEDS, help="seeds per policy (default 10)")
    a = ap.parse_args(argv)
    seeds = a.seeds
    print(machine_line())
    with tempfile.TemporaryDirectory() as tmp:
        args = [str(QUICKSTART), "", str(ROUNDS), ",".join(POLICIES), str(seeds)]
        sweep_args = list(args)
        sweep_args[1] = str(Path(tmp) / "sweep")
        loop_args = list(args)
        loop_args[1] = str(Path(tmp) / "loop")
        runs, metas = {}, {}
        for backend in ("processes", "ray"):
            a = [*sweep_args[:1], f"{sweep_args[1]}-{backend}", *sweep_args[2:], backend]
            runs[backend] = run_process_tree([sys.executable, "-c", SWEEP, *a])
            # run_process_tree keeps stdout to itself: read the sweep's own record instead
            metas[backend] = json.loads((Path(a[1]) / "bench" / "sweep.json").read_text())
        loop = run_process_tree([sys.executable, "-c", LOOP, *loop_args])
    trials = len(POLICIES) * seeds
    t = Table(f"Sweep of {trials} short trials ({len(POLICIES)} policies x {seeds} seeds, "
              f"quickstart at {ROUNDS} rounds)",
              ["path", "wall s", "CPU s", "peak RSS MiB (tree)", "processes"])
    names = {"processes": "fedfleet sweep --backend processes (default)",
             "ray": "fedfleet sweep --backend ray (Ray Tune)"}
    for backend, r in runs.items():
        t.add(names[backend], r.wall_s, r.cpu_s, r.peak_rss_mib, r.procs)
    t.add(f"plain loop: {trials} runs in one process", loop.wall_s, loop.cpu_s, loop.peak_rss_mib,
          loop.procs)
    for backend, r in runs.items():
        t.notes.append(f"{backend} / plain loop: wall {ratio(r.wall_s, loop.wall_s):.2f}x, "
                       f"CPU {ratio(r.cpu_s, loop.cpu_s):.2f}x; " + _startup(metas[backend]))
    t.notes.append(load_line())
    t.print()
    return 0


def _startup(meta: dict) -> str:
    st = meta.get("startup") or {}
    share = st.get("starting_share", float("nan"))
    return (
        f"starting things ({st.get('backend')} start {st.get('backend_s', float('nan')):.1f} s, "
        f"first trial "
        f"{st.get('first_trial_s', float('nan')):.1f} s, imports in trials "
        f"{st.get('trial_overhead_s', float('nan')):.1f} s over {st.get('slots')} slots): "
        f"{st.get('starting_s', float('nan')):.1f} s of the sweep's "
        f"{st.get('wall_s', float('nan')):.1f} s = {100 * share:.1f}% "
        f"(goal <= 10%: {'met' if share <= 0.10 else 'NOT met'}); rounds "
        f"{100 * st.get('rounds_share', float('nan')):.0f}% of slot time (run set-up and "
        f"writing {100 * st.get('setup_share', float('nan')):.0f}%); "
        f"{st.get('processes')} trial processes for {st.get('trials')} trials")


if __name__ == "__main__":
    sys.exit(main())
