"""Shared capacity (pure numpy): the ``capacity:`` block (docs/clock.md, "Shared capacity").

* :func:`fluid_share`: transfers through one link of capacity C, each also limited by its own
  client's link, share C max-min fairly (water-filling; TCP-like flows on a bottleneck), with
  transfers starting at different times. Event-driven: O(n) events of O(n log n) each, so it
  is meant for rounds of up to a few thousand clients (off by default: ``null`` capacity).
* :func:`processor_share`: the split-learning server's throughput divided equally among the
  clients attached at once (egalitarian processor sharing, all starting together): with demands
  d_(1) <= ... <= d_(m) at the full rate, client j finishes at
  ``C_j = C_(j-1) + (d_(j) - d_(j-1)) * (m - j + 1)``; ``extra`` clients already attached count
  as competitors that never leave (FedBuff: tasks already running).
"""

from __future__ import annotations

import math

import numpy as np


def maxmin_rates(caps: np.ndarray, capacity: float) -> np.ndarray:
    """Max-min fair rates of flows with ``caps`` sharing ``capacity``."""
    caps = np.asarray(caps, np.float64)
    if caps.size == 0 or not math.isfinite(capacity) or caps.sum() <= capacity:
        return caps.copy()
    order = np.argsort(caps, kind="stable")
    s = caps[order]
    m = s.size
    prefix = np.concatenate([[0.0], np.cumsum(s)[:-1]])  # sum of the k smallest
    level = (capacity - prefix) / (m - np.arange(m))  # fair level if the k smallest are capped
    k = int(np.argmax(level <= s))  # first k whose level does not exceed the (k+1)-th cap
    return np.minimum(caps, level[k])


def fluid_share(start_s: np.ndarray, bits: np.ndarray, cap_bits_per_s: np.ndarray,
                capacity_bits_per_s: float | None) -> np.ndarray:
    """Finish time of each transfer (``bits`` from ``start_s`` at most ``cap``), all sharing
    ``capacity`` max-min fairly; without a capacity each runs at its own cap."""
    start = np.asarray(start_s, np.float64)
    bits = np.asarray(bits, np.float64)
    cap = np.asarray(cap_bits_per_s, np.float64)
    alone = start + bits / cap
    if capacity_bits_per_s is None or start.size == 0:
        return alone
    c = float(capacity_bits_per_s)
    n = start.size
    finish = np.where(bits <= 0, start, np.nan)
    left = bits.copy()
    pending = np.isnan(finish)
    order = np.argsort(start, kind="stable")
    t = float(start[order[0]]) if n else 0.0
    while pending.any():
        active = pending & (start <= t)
        ids = np.flatnonzero(active)
        later = start[pending & ~active]
        t_next = float(later.min()) if later.size else math.inf
        if ids.size == 0:
            t = t_next
            continue
        rate = maxmin_rates(cap[ids], c)
        with np.errstate(divide="ignore"):
            to_done = left[ids] / rate
        dt_done = float(to_done.min())
        if t + dt_done <= t_next:
            done = ids[to_done <= dt_done * (1 + 1e-12)]
            left[ids] -= rate * dt_done
            t += dt_done
            finish[done] = t
            left[done] = 0.0
            pending[done] = False
        else:
            left[ids] -= rate * (t_next - t)
            t = t_next
    return finish


def processor_share(demand_s: np.ndarray, extra: int = 0) -> np.ndarray:
    """Finish times of jobs (``demand_s`` seconds each alone) sharing one server equally, all
    starting at 0, with ``extra`` permanent competitors."""
    d = np.asarray(demand_s, np.float64)
    m = d.size
    if m == 0:
        return d.copy()
    order = np.argsort(d, kind="stable")
    s = d[order]
    inc = np.diff(np.concatenate([[0.0], s])) * (m - np.arange(m) + extra)
    out = np.empty(m)
    out[order] = np.cumsum(inc)
    return out
