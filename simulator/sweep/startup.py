"""Where a sweep's wall time went: starting things, setting up runs, simulating rounds.

Every trial reports wall-clock stamps (simulator/sweep/tune.py, simulator/sweep/pool.py):
``t_entered`` when the trial function was called (before FedFleet is imported in that process),
``t_run_start`` and ``t_run_end`` around ``run_scenario``, ``rounds_wall_s`` (the sum of the
run's per-round wall times from ``rounds.parquet``) and its process id. The sweep adds its own
stamps: backend start, backend ready, end.

    backend_s  = backend ready - backend start     (ray.init, or 0 when Ray was running; the
                                                    process pool's forkserver importing torch)
    first_s    = first trial entered - ready       (Tune's set-up, the first actor process)
    entry_s    = t_run_start - t_entered           (per trial: imports, parsing the variant)
    setup_s    = t_run_end - t_run_start - rounds  (per trial: building data, model and executor,
                                                    writing the tables: a plain loop pays it too)
    extra_s    = first trial of each process: setup_s - the median setup_s of the other trials
                 (what its first run paid for importing and building things that stay resident)
    slots      = the most trials running at once
    starting_s = backend_s + first_s + (sum(entry_s) + sum(extra_s)) / slots
    setup_share  = (sum(setup_s) - sum(extra_s)) / (slots x wall)
    rounds_share = sum(rounds) / (slots x wall)

``starting_s`` is what the issue calls starting things (Ray, actors, imports); the rest of the
wall time is run set-up and writing, rounds, and idle slots. Pure arithmetic: no ray or torch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class StartupReport:
    wall_s: float
    backend_s: float
    first_trial_s: float
    trial_overhead_s: float  # entry + first-run extra, summed over trials
    setup_s: float  # run set-up and writing beyond the first-run extra, summed over trials
    rounds_s: float  # summed over trials
    slots: int
    trials: int
    processes: int  # distinct trial processes (fewer than trials when actors are reused)
    backend: str = "ray"  # "ray" (Ray Tune) or "processes" (simulator/sweep/pool.py)

    @property
    def starting_s(self) -> float:
        return self.backend_s + self.first_trial_s + self.trial_overhead_s / max(self.slots, 1)

    @property
    def starting_share(self) -> float:
        return self.starting_s / self.wall_s if self.wall_s > 0 else float("nan")

    @property
    def setup_share(self) -> float:
        den = max(self.slots, 1) * self.wall_s
        return self.setup_s / den if den > 0 else float("nan")

    @property
    def rounds_share(self) -> float:
        den = max(self.slots, 1) * self.wall_s
        return self.rounds_s / den if den > 0 else float("nan")

    def line(self) -> str:
        return (f"{self.starting_s:.1f} s of {self.wall_s:.1f} s wall "
                f"({100 * self.starting_share:.0f}%) starting things ({self.backend} start "
                f"{self.backend_s:.1f} s, "
                f"first trial {self.first_trial_s:.1f} s, imports in trials "
                f"{self.trial_overhead_s:.1f} s over {self.slots} slots); run set-up and writing "
                f"{100 * self.setup_share:.0f}%, rounds {100 * self.rounds_share:.0f}% of slot "
                f"time; "
                f"{self.processes} trial processes for {self.trials} trials")

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "wall_s": self.wall_s, "backend_s": self.backend_s,
                "first_trial_s": self.first_trial_s,
                "trial_overhead_s": self.trial_overhead_s, "setup_s": self.setup_s,
                "rounds_s": self.rounds_s, "setup_share": self.setup_share,
                "slots": self.slots, "trials": self.trials, "processes": self.processes,
                "starting_s": self.starting_s, "starting_share": self.starting_share,
                "rounds_share": self.rounds_share}


STAMPS = ("t_entered", "t_run_start", "t_run_end", "rounds_wall_s")


def max_overlap(intervals: list[tuple[float, float]]) -> int:
    """The most intervals open at one instant (an interval ending where another starts does not
    overlap it)."""
    events = sorted([(a, 1) for a, _ in intervals] + [(b, -1) for _, b in intervals],
                    key=lambda e: (e[0], e[1]))
    best = cur = 0
    for _, d in events:
        cur += d
        best = max(best, cur)
    return best


def startup_report(metrics: list[dict[str, Any]], clock: dict[str, float]) -> StartupReport | None:
    """The report from the trials' final metrics and the sweep clock; None when no trial
    finished with its stamps (all stopped by a scheduler or failed)."""
    done = [m for m in metrics if all(isinstance(m.get(k), (int, float)) for k in STAMPS)]
    if not done:
        return None
    t0, ready, t_end = clock["t_start"], clock["t_ray_ready"], clock["t_end"]
    done = sorted(done, key=lambda m: m["t_entered"])
    setup = [max(0.0, m["t_run_end"] - m["t_run_start"] - m["rounds_wall_s"]) for m in done]
    seen: set[Any] = set()
    first = []
    for m in done:
        first.append(m.get("pid") not in seen)
        seen.add(m.get("pid"))
    later = sorted(x for x, f in zip(setup, first, strict=True) if not f)
    typical = later[len(later) // 2] if later else min(setup)
    extra = sum(max(0.0, x - typical) for x, f in zip(setup, first, strict=True) if f)
    entry = sum(m["t_run_start"] - m["t_entered"] for m in done)
    return StartupReport(
        wall_s=t_end - t0, backend_s=ready - t0,
        first_trial_s=max(0.0, min(m["t_entered"] for m in done) - ready),
        trial_overhead_s=entry + extra, setup_s=sum(setup) - extra,
        rounds_s=sum(m["rounds_wall_s"] for m in done),
        slots=max_overlap([(m["t_entered"], m["t_run_end"]) for m in done]),
        trials=len(done), processes=len({m.get("pid") for m in done}),
        backend=str(clock.get("backend", "ray")))
