"""Discrete-event core: a heap of ``(time, priority, seq, kind, data)`` entries (pure Python).

SimPy-like but minimal: there are no processes or generators, only timestamped events that a
consumer pops in order and handles. Ties are broken deterministically: equal times go by
``priority`` (lower first), then by ``seq``, the order in which events were scheduled. Nothing
else (no object identity, no hash order) decides the order, so a run is reproducible.

Priorities shared by the round resolvers (at one instant):

* ``P_QUIT``: a client drops out or goes offline;
* ``P_FINISH``: a client's upload completes;
* ``P_DEADLINE``: a deadline or cut-off fires;
* ``P_WAKE``: the server retries filling idle slots.

so a client that drops at exactly the instant the round closes counts as dropped, a client that
finishes exactly at the deadline is in time, and the server acts after every client event at that
instant. These are the rules the vectorised
:func:`simulator.core.outcomes.resolve_sync_round` applies;
:func:`resolve_sync_round_events` replays a sync round on this loop and must agree with it exactly
(tests/test_clock.py checks it on random rounds).

Cancellation is lazy (a set of cancelled ``seq``); popping skips them. Throughput is about
1-1.5 M scheduled-and-popped events/s on one core (benchmarks/bench_analytic.py prints it).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from heapq import heappop, heappush
from typing import Any

import numpy as np

from simulator.core import outcomes as R
from simulator.core.cost import Timing

P_QUIT, P_FINISH, P_DEADLINE, P_WAKE = 0, 1, 2, 3

Event = tuple[float, int, int, int, Any]  # (time_s, priority, seq, kind, data)


class EventLoop:
    """A min-heap of events with a monotone clock ``now`` (simulated seconds)."""

    __slots__ = ("_cancelled", "_heap", "_seq", "now")

    def __init__(self, start_s: float = 0.0) -> None:
        self.now = float(start_s)
        self._heap: list[Event] = []
        self._seq = 0
        self._cancelled: set[int] = set()

    def __len__(self) -> int:
        return len(self._heap) - len(self._cancelled)

    def schedule(self, at_s: float, kind: int, data: Any = None, priority: int = 0) -> int:
        """Add an event at absolute time ``at_s``; returns its ``seq`` (for :meth:`cancel`)."""
        if not at_s >= self.now:  # also rejects NaN
            raise ValueError(f"cannot schedule at {at_s!r}: the clock is already at {self.now}")
        seq = self._seq
        self._seq = seq + 1
        heappush(self._heap, (at_s, priority, seq, kind, data))
        return seq

    def schedule_in(self, delay_s: float, kind: int, data: Any = None, priority: int = 0) -> int:
        return self.schedule(self.now + delay_s, kind, data, priority)

    def cancel(self, seq: int) -> None:
        """Forget a scheduled event (lazily: it is skipped when it reaches the top)."""
        if 0 <= seq < self._seq:
            self._cancelled.add(seq)

    def _drop_cancelled(self) -> None:
        heap, cancelled = self._heap, self._cancelled
        while heap and heap[0][2] in cancelled:
            cancelled.discard(heappop(heap)[2])

    def peek_time(self) -> float:
        """Time of the next live event (``inf`` when none is left)."""
        if self._cancelled:
            self._drop_cancelled()
        return self._heap[0][0] if self._heap else math.inf

    def pop(self) -> Event | None:
        """Remove and return the next live event, advancing ``now`` to its time."""
        heap = self._heap
        if self._cancelled:
            self._drop_cancelled()
        if not heap:
            return None
        ev = heappop(heap)
        self.now = ev[0]
        return ev

    def run(self, handle: Callable[[Event], bool | None], until_s: float = math.inf) -> int:
        """Pop events up to ``until_s`` (inclusive) and pass each to ``handle``.

        Stops early when ``handle`` returns True. Returns the number of events handled. Kept
        tight (local names, no per-event allocation beyond the heap entry) for throughput.
        """
        heap, cancelled = self._heap, self._cancelled
        n = 0
        while heap:
            ev = heap[0]
            if ev[2] in cancelled:
                heappop(heap)
                cancelled.discard(ev[2])
                continue
            if ev[0] > until_s:
                break
            heappop(heap)
            self.now = ev[0]
            n += 1
            if handle(ev):
                break
        return n


# --- sync rounds on the event loop ------------------------------------------------------------
_UNKEPT = -2  # finished, but after the k needed (cancelled code decided at the end)


def resolve_sync_round_events(
    timing: Timing,
    k: int,
    drop_after_s: np.ndarray,
    offline_after_s: np.ndarray,
    deadline_s: float | None = None,
    infeasible: np.ndarray | None = None,
) -> R.RoundOutcome:
    """Event-driven replay of :func:`simulator.core.outcomes.resolve_sync_round` (same arguments).

    Each started client has one terminal event: its finish (upload done) if neither a dropout
    nor the end of its availability window comes first (a tie goes to finishing), else the
    earlier of the two (a tie goes to dropping). The deadline is one more event. The round ends
    at the k-th kept finish, at the deadline, or when no client is left running; clients still
    running then are cancelled (``overcommitted`` if k were reached, else ``straggler``).
    A loop over clients in Python: meant for tests and small rounds, not 10,000-client rounds.
    """
    n = len(timing.download_s)
    total = timing.total_s
    blocked = np.zeros(n, bool) if infeasible is None else np.asarray(infeasible, bool)
    loop = EventLoop()
    active = 0
    for i in range(n):
        if blocked[i]:
            continue
        active += 1
        quit_at = min(drop_after_s[i], offline_after_s[i])
        if quit_at >= total[i]:
            loop.schedule(float(total[i]), R.COMPLETED, i, P_FINISH)
        else:
            code = R.DROPPED if drop_after_s[i] <= offline_after_s[i] else R.OFFLINE
            loop.schedule(float(quit_at), code, i, P_QUIT)
    limit = math.inf if deadline_s is None else float(deadline_s)
    if math.isfinite(limit):
        loop.schedule(limit, -1, None, P_DEADLINE)

    outcome = np.full(n, -1, np.int64)
    stop = np.zeros(n)
    kept = 0
    end = 0.0
    while active > 0:
        ev = loop.pop()
        if ev is None:  # pragma: no cover - every active client has an event
            break
        t, _, _, kind, i = ev
        end = t
        if kind == -1:  # deadline
            break
        active -= 1
        stop[i] = t
        if kind == R.COMPLETED:
            if kept < k:
                outcome[i] = R.COMPLETED
                kept += 1
                if kept == k:
                    break
            else:
                outcome[i] = _UNKEPT
        else:
            outcome[i] = kind
    cancelled = R.OVERCOMMITTED if kept == k else R.STRAGGLER
    running = (outcome == -1) & ~blocked
    stop[running] = end
    outcome[running | (outcome == _UNKEPT)] = cancelled
    outcome[blocked] = R.OUT_OF_MEMORY
    stop[blocked] = 0.0
    d, c = timing.download_s, timing.compute_s
    return R.RoundOutcome(outcome.astype(np.int8), stop, float(end), np.clip(stop, 0.0, d),
                          np.clip(stop - d, 0.0, c), np.clip(stop - d - c, 0.0, timing.upload_s))


# --- per-client phase timeline ----------------------------------------------------------------
TIMELINE_COLUMNS = ("download_start_s", "download_end_s", "compute_start_s", "compute_end_s",
                    "upload_start_s", "upload_end_s")


def phase_timeline(
    start_s: np.ndarray, timing: Timing, stop_rel_s: np.ndarray, download_done_s: np.ndarray,
    compute_done_s: np.ndarray, upload_done_s: np.ndarray, started: np.ndarray,
) -> dict[str, np.ndarray]:
    """Absolute start/end of each phase (download, compute, upload); NaN where it never started.

    A client that started its task always started its download; compute (upload) started when
    the client was still working after its download (download + compute) time, or finished.
    A phase's end is its start plus the seconds actually spent in it, i.e. where it was cut.
    """
    d = timing.download_s
    c_off = d
    u_off = d + timing.compute_s
    finished = stop_rel_s >= timing.total_s
    cols: dict[str, np.ndarray] = {}
    for name, offset, done, ok in (
        ("download", np.zeros_like(d), download_done_s, started),
        ("compute", c_off, compute_done_s, started & (finished | (stop_rel_s > c_off))),
        ("upload", u_off, upload_done_s, started & (finished | (stop_rel_s > u_off))),
    ):
        s = start_s + offset
        cols[f"{name}_start_s"] = np.where(ok, s, np.nan)
        cols[f"{name}_end_s"] = np.where(ok, s + done, np.nan)
    return cols
