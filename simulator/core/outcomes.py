"""Resolve a synchronous round in simulated time (pure numpy, no training).

The fate of every invited client is decided here first; only clients whose updates will be used
are then trained (design principle 2). Outcome codes are small ints stored in clients.parquet.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from simulator.core.cost import Timing

COMPLETED, DROPPED, OFFLINE, STRAGGLER, OVERCOMMITTED, OUT_OF_MEMORY, LOW_BATTERY = range(7)
OUTCOME_NAMES = (
    "completed",
    "dropped",
    "offline",
    "straggler",
    "overcommitted",
    "out_of_memory",
    "low_battery",
)


@dataclass(frozen=True)
class RoundOutcome:
    outcome: np.ndarray  # int8 per client, one of the codes above
    stop_s: np.ndarray  # seconds after round start when the client finished or stopped
    duration_s: float  # round length in simulated seconds
    download_done_s: np.ndarray  # seconds of each phase actually spent
    compute_done_s: np.ndarray
    upload_done_s: np.ndarray

    def count(self, code: int) -> int:
        return int(np.count_nonzero(self.outcome == code))


def draw_dropout_after_s(hazard_per_s: np.ndarray, g: np.random.Generator) -> np.ndarray:
    """Time to a mid-task dropout, exponential with the device's hazard (inf if hazard is 0)."""
    u = g.exponential(1.0, size=len(hazard_per_s))
    with np.errstate(divide="ignore"):
        return np.where(hazard_per_s > 0, u / np.maximum(hazard_per_s, 1e-300), np.inf)


def resolve_sync_round(
    timing: Timing,
    k: int,
    drop_after_s: np.ndarray,
    offline_after_s: np.ndarray,
    deadline_s: float | None = None,
    infeasible: np.ndarray | None = None,
) -> RoundOutcome:
    """Decide each invited client's outcome.

    - a client finishes at download+compute+upload unless it drops (hazard) or goes offline first;
    - over-commitment: the first ``k`` finishers (ties broken by position, i.e. client id) are
      kept and the round ends at the k-th finish; later finishers are ``overcommitted``;
    - a deadline cuts clients still busy at ``deadline_s`` (``straggler``); the round then ends
      at the deadline, or earlier when every client has already finished or stopped;
    - ``infeasible`` clients (marked by the planner, e.g. out of memory) never start.
    """
    n = len(timing.download_s)
    total = timing.total_s
    quit_at = np.minimum(drop_after_s, offline_after_s)
    blocked = np.zeros(n, bool) if infeasible is None else np.asarray(infeasible, bool)
    finishes = (quit_at >= total) & ~blocked
    event = np.where(finishes, total, quit_at)
    event = np.where(blocked, 0.0, event)
    limit = np.inf if deadline_s is None else float(deadline_s)

    in_time = finishes & (total <= limit)
    order = np.flatnonzero(in_time)
    order = order[np.argsort(total[order], kind="stable")]
    kept = order[:k]
    completed = np.zeros(n, bool)
    completed[kept] = True

    if kept.size == k and k > 0:
        end = float(total[kept[-1]])
    else:
        end = float(min(limit, event.max(initial=0.0)))

    outcome = np.full(n, COMPLETED, np.int8)
    still_busy = ~completed & ~blocked & (event > end)
    reached_k = kept.size == k
    cancelled_code = OVERCOMMITTED if reached_k else STRAGGLER
    outcome[still_busy] = cancelled_code
    # Finished in time but after the k-th: over-committed even if exactly at the end time.
    outcome[finishes & ~completed & ~still_busy] = cancelled_code
    stopped = ~finishes & ~blocked & ~still_busy
    outcome[stopped & (drop_after_s <= offline_after_s)] = DROPPED
    outcome[stopped & (drop_after_s > offline_after_s)] = OFFLINE
    outcome[blocked] = OUT_OF_MEMORY
    outcome[completed] = COMPLETED

    stop = np.where(completed, total, np.minimum(event, end))
    stop = np.where(blocked, 0.0, stop)
    d, c = timing.download_s, timing.compute_s
    dl_done = np.clip(stop, 0.0, d)
    c_done = np.clip(stop - d, 0.0, c)
    u_done = np.clip(stop - d - c, 0.0, timing.upload_s)
    return RoundOutcome(outcome, stop, end, dl_done, c_done, u_done)
