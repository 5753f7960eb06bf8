"""What a real server knows of a client's speed (the ``estimates:`` block; no oracle).

A server knows each client's *declared* device class (its profile: peak and efficiency, memory,
link medians of the link type it checked in on) and what it *observed* of the client's past
tasks: how long each took from invitation to upload, or that it was still running when the round
closed (a lower bound). It never sees the client's own draw of compute speed or bandwidth, nor
this task's bandwidth, throttling or link: those stay inside the clock (simulator/fleet/
population.py, simulator/fleet/dynamics.py).

Estimate of client i's task with cost C (``estimate_s``):

    prior_i(C) = cost.estimate(C) on the declared columns of i's class and link type
    estimate_i(C) = prior_i(C) * exp(r_i)

``r_i`` is a running estimate of ``log(observed / prior)`` over i's completed tasks (weight
``estimates.weight`` on the newest); a task cut while still running (straggler, over-committed)
raises ``r_i`` to at least ``log(elapsed / prior)``; a client never observed takes its class's
mean ``r`` over observed clients (the class prior), else 0. Planners see the same declared
columns (:meth:`DurationEstimator.server_view`). ``estimates.mode: oracle`` restores the true
cost model (what selectors saw before this module).

State (per-client ``r`` and counts, per-class sums) is checkpointed with the simulation.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np

from simulator.core import outcomes as RD
from simulator.core.cost import TaskCost, estimate, estimate_clients
from simulator.fleet.population import LINK_TYPES, Population


class DurationEstimator:
    def __init__(self, sc: Any, pop: Population) -> None:
        cfg = sc.estimates
        self.oracle = cfg.mode == "oracle"
        self.weight = float(cfg.weight)
        self.pop = pop
        n, n_prof = pop.size, len(pop.profiles)
        self.log_ratio = np.full(n, np.nan)
        self.seen = np.zeros(n, np.int32)
        self.class_sum = np.zeros(n_prof)
        self.class_n = np.zeros(n_prof, np.int64)
        nl = len(LINK_TYPES)
        self.t_flops = np.array([p.compute.train_flops_per_s for p in pop.profiles])
        self.t_over = np.array([p.compute.step_overhead_s for p in pop.profiles])
        self.t_down = np.zeros((n_prof, nl))
        self.t_up = np.zeros((n_prof, nl))
        self.t_lat = np.zeros((n_prof, nl))
        for pi, prof in enumerate(pop.profiles):
            links = prof.network.links
            w = np.array([lk.share for lk in links])
            w = w / w.sum()
            # a link type the class does not list: the share-weighted geometric mean
            gd = float(np.exp(np.sum(w * np.log([lk.downlink_bits_per_s_median for lk in links]))))
            gu = float(np.exp(np.sum(w * np.log([lk.uplink_bits_per_s_median for lk in links]))))
            self.t_down[pi, :], self.t_up[pi, :] = gd, gu
            self.t_lat[pi, :] = float(np.sum(w * np.array([lk.latency_s for lk in links])))
            for lk in links:
                li = LINK_TYPES.index(lk.link)
                self.t_down[pi, li] = lk.downlink_bits_per_s_median
                self.t_up[pi, li] = lk.uplink_bits_per_s_median
                self.t_lat[pi, li] = lk.latency_s
        self._view: Population | None = None

    # --- what the server knows ------------------------------------------------------------------
    def declared(self, ids: np.ndarray) -> tuple[np.ndarray, ...]:
        """(downlink, uplink, latency, FLOP/s, step overhead) of ids' declared class and link."""
        p = self.pop.profile_idx[ids].astype(np.int64)
        li = self.pop.link_idx[ids].astype(np.int64)
        return self.t_down[p, li], self.t_up[p, li], self.t_lat[p, li], self.t_flops[p], \
            self.t_over[p]

    def server_view(self) -> Population:
        """The population as planners may see it: declared columns instead of the draws."""
        if self.oracle:
            return self.pop
        if self._view is None or self._view.n_samples is not self.pop.n_samples:
            ids = np.arange(self.pop.size)
            down, up, lat, flops, _ = self.declared(ids)
            self._view = replace(self.pop, train_flops_per_s=flops, downlink_bits_per_s=down,
                                 uplink_bits_per_s=up, latency_s=lat.astype(np.float32))
        return self._view

    def prior_s(self, ids: np.ndarray, cost: TaskCost) -> np.ndarray:
        """Class-prior seconds of ``cost`` (the oracle: the true static cost model)."""
        ids = np.asarray(ids, np.int64)
        if self.oracle:
            return estimate_clients(self.pop, ids, cost).total_s
        down, up, lat, flops, over = self.declared(ids)
        return estimate(down, up, lat, flops, cost, over).total_s

    def ratio(self, ids: np.ndarray) -> np.ndarray:
        r = self.log_ratio[ids]
        unseen = np.isnan(r)
        if unseen.any():
            p = self.pop.profile_idx[ids[unseen]].astype(np.int64)
            cls = np.where(self.class_n[p] > 0, self.class_sum[p] / np.maximum(self.class_n[p], 1),
                           0.0)
            r = r.copy()
            r[unseen] = cls
        return np.exp(r)

    def estimate_s(self, ids: np.ndarray, cost: TaskCost) -> np.ndarray:
        ids = np.asarray(ids, np.int64)
        prior = self.prior_s(ids, cost)
        return prior if self.oracle else prior * self.ratio(ids)

    # --- observations ---------------------------------------------------------------------------
    def observe(self, ids: np.ndarray, outcome: np.ndarray, elapsed_s: np.ndarray,
                prior_s: np.ndarray) -> np.ndarray:
        """Update from one round's outcomes; returns what the server now believes each task
        took: the observed duration of completed tasks, else the updated estimate."""
        ids = np.asarray(ids, np.int64)
        out = np.asarray(outcome)
        elapsed = np.asarray(elapsed_s, np.float64)
        prior = np.asarray(prior_s, np.float64)
        ok = np.isfinite(prior) & (prior > 0)
        done = (out == RD.COMPLETED) & ok & (elapsed > 0)
        cut = ((out == RD.STRAGGLER) | (out == RD.OVERCOMMITTED)) & ok & (elapsed > 0)
        with np.errstate(divide="ignore", invalid="ignore"):
            obs = np.log(elapsed / prior)
        for mask, censored in ((done, False), (cut, True)):
            if not mask.any():
                continue
            # a client twice in one batch (FedBuff): its observations in order
            for j in np.flatnonzero(mask) if _has_dupes(ids[mask]) else [np.flatnonzero(mask)]:
                c = ids[j]
                old = self.log_ratio[c]
                first = np.isnan(old)
                if censored:
                    new = np.where(first, obs[j], np.maximum(old, obs[j]))
                else:
                    new = np.where(first, obs[j], (1 - self.weight) * old + self.weight * obs[j])
                p = self.pop.profile_idx[c].astype(np.int64)
                np.add.at(self.class_sum, p, new - np.where(first, 0.0, old))
                np.add.at(self.class_n, p, first.astype(np.int64))
                self.log_ratio[c] = new
                self.seen[c] += 1
        believed = prior * self.ratio(ids) if not self.oracle else prior
        return np.where(out == RD.COMPLETED, elapsed, believed)

    # --- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"est__log_ratio": self.log_ratio.copy(), "est__seen": self.seen.copy(),
                "est__class_sum": self.class_sum.copy(), "est__class_n": self.class_n.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> dict[str, Any]:
        if "est__log_ratio" in state:
            self.log_ratio = np.asarray(state.pop("est__log_ratio"), np.float64).copy()
            self.seen = np.asarray(state.pop("est__seen"), np.int32).copy()
            self.class_sum = np.asarray(state.pop("est__class_sum"), np.float64).copy()
            self.class_n = np.asarray(state.pop("est__class_n"), np.int64).copy()
        return state


def _has_dupes(ids: np.ndarray) -> bool:
    return np.unique(ids).size != ids.size
