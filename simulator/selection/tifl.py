"""TiFL: tier-based selection (Chai, Ali, Zawad, Truex, Anwar, Baracaldo, Zhou, Ludwig, Yan &
Cheng, "TiFL: A Tier-based Federated Learning System", HPDC'20).

- Profiling: on the first round every client's task duration is estimated with the cost model
  (TiFL measures it with a few profiling rounds) and clients are split into ``tiers`` tiers of
  (near) equal size by that latency, tier 0 the fastest.
- Each round one tier is drawn with the current tier probabilities and the round's clients are
  sampled uniformly from that tier's available clients (when the tier has too few, the nearest
  tiers by latency fill in). ``credits`` optionally limits how often each tier may be drawn
  (TiFL's Credits_t); once every tier's credits are spent the limit is lifted.
- Adaptive tier selection (TiFL Algorithm 2): every ``interval`` rounds the tiers are ranked by
  accuracy and re-weighted linearly toward the least accurate, the worst tier getting weight
  ``tiers`` and the best weight 1 (normalised).

Accuracy proxy: FedFleet evaluates only the global model, on a central test set, so it has no
per-tier accuracy. The *mean training loss* of each tier's completed clients over the interval
stands in for it (a higher loss is treated as a lower accuracy); a tier not trained during the
interval keeps its previous loss, and a tier never trained counts as the least accurate. Runs
without training losses (``mode: analytic``) keep uniform tier probabilities.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.config.selection import TiflParams
from simulator.core import outcomes as R
from simulator.fleet.population import Population
from simulator.selection.base import RoundContext, RoundFeedback
from simulator.selection.common import ColumnState, random_keys_smallest


class TiflSelector(ColumnState):
    _columns = ("tier", "probs", "credits_left", "tier_loss", "window_loss", "window_count")
    _scalars = ("profiled",)

    def __init__(self, scenario: Any, population: Population,
                 params: TiflParams | None = None) -> None:
        self.p = params or (scenario.selection.tifl if scenario is not None else TiflParams())
        n, t = population.size, min(self.p.tiers, population.size)
        self.n_tiers = t
        self.tier = np.zeros(n, np.int16)
        self.profiled = False
        self.probs = np.full(t, 1.0 / t)
        credits = self.p.credits if self.p.credits is not None else -1
        self.credits_left = np.full(t, credits, np.int64)  # -1: unlimited
        self.tier_loss = np.full(t, np.nan)  # accuracy proxy per tier (last interval's mean loss)
        self.window_loss = np.zeros(t)
        self.window_count = np.zeros(t, np.int64)

    def _variable_columns(self) -> tuple[str, ...]:
        return ("probs", "credits_left", "tier_loss", "window_loss", "window_count")

    def assign_tiers(self, estimated_s: np.ndarray) -> None:
        """Equal-size latency tiers: rank by estimated duration (stable), cut into n_tiers."""
        n = len(estimated_s)
        order = np.argsort(estimated_s, kind="stable")
        self.tier[order] = (np.arange(n, dtype=np.int64) * self.n_tiers // n).astype(np.int16)
        self.profiled = True

    def select(self, ctx: RoundContext, candidates: np.ndarray, n: int,
               rng: np.random.Generator) -> np.ndarray:
        cands = np.asarray(candidates, np.int64)
        if not self.profiled:
            self.assign_tiers(ctx.estimate_s(np.arange(self.tier.shape[0], dtype=np.int64)))
        if n <= 0 or cands.size == 0:
            return cands[:0]
        tiers = self.tier[cands].astype(np.int64)
        present = np.bincount(tiers, minlength=self.n_tiers) > 0
        p = self.probs * present
        limited = (self.credits_left == 0) & present
        if (p * ~limited).sum() > 0:
            p = p * ~limited
        j = int(rng.choice(self.n_tiers, p=p / p.sum()))
        if self.credits_left[j] > 0:
            self.credits_left[j] -= 1
        pick = random_keys_smallest(np.abs(tiers - j), n, rng)
        return np.sort(cands[pick])

    def observe(self, feedback: RoundFeedback) -> None:
        ids = np.asarray(feedback.client_ids, np.int64)
        done = (np.asarray(feedback.outcome) == R.COMPLETED) & np.isfinite(feedback.train_loss)
        if done.any():
            t = self.tier[ids[done]].astype(np.int64)
            np.add.at(self.window_loss, t, feedback.train_loss[done])
            np.add.at(self.window_count, t, 1)
        if (feedback.round + 1) % self.p.interval == 0:
            self.reweight()

    def reweight(self) -> None:
        seen = self.window_count > 0
        if not seen.any() and np.isnan(self.tier_loss).all():
            return
        self.tier_loss[seen] = self.window_loss[seen] / self.window_count[seen]
        self.window_loss[:] = 0.0
        self.window_count[:] = 0
        loss = np.where(np.isnan(self.tier_loss), np.inf, self.tier_loss)
        rank = np.empty(self.n_tiers, np.int64)  # 0: highest loss = least accurate
        rank[np.argsort(-loss, kind="stable")] = np.arange(self.n_tiers)
        w = (self.n_tiers - rank).astype(np.float64)
        self.probs = w / w.sum()
