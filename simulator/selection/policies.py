"""The smaller built-in selection policies: ``deadline``, ``power_of_choice``, ``fair``.

``random``, ``oort`` and ``tifl`` live in their own modules; all are registered by name in
simulator/core/registry.py ``POLICIES``. Each reads its parameters from
``selection.<policy>`` in the scenario (simulator/config/selection.py).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from simulator import InputError
from simulator.config.selection import DeadlineParams, FairParams, PowerOfChoiceParams
from simulator.core import outcomes as R
from simulator.fleet.population import Population
from simulator.selection.base import RoundContext, RoundFeedback
from simulator.selection.common import ColumnState, random_keys_smallest, weighted_sample


class DeadlineSelector(ColumnState):
    """FedCS: client selection under a round deadline (Nishio & Yonetani, "Client Selection for
    Federated Learning with Heterogeneous Resources in Mobile Edge", IEEE ICC 2019).

    FedCS asks a random share of clients for their resources, then greedily adds the client that
    lengthens the round least while the estimated round time still fits the deadline. In
    FedFleet clients download, train and upload in parallel, so a client fits when its own
    estimated download + compute + upload time (``ctx.estimate_s``, the cost model) is at most
    ``margin`` x the deadline, and "lengthens least" means fastest first: from the fitting
    candidates a random pool of ``pool_factor`` x n is drawn (FedCS's resource request) and its
    n fastest are taken. ``pool_factor`` 1 picks uniformly among the fitting clients. Never
    invites a client whose estimate exceeds the deadline, even if that leaves the round short.
    """

    def __init__(self, scenario: Any, population: Population,
                 params: DeadlineParams | None = None) -> None:
        self.p = params or (scenario.selection.deadline if scenario is not None
                            else DeadlineParams())
        self.scenario_deadline_s = getattr(scenario, "deadline_s", None)

    def deadline_s(self, ctx: RoundContext) -> float:
        d = self.p.deadline_s or ctx.deadline_s or self.scenario_deadline_s
        if d is None:
            raise InputError("selection.deadline.deadline_s", "policy 'deadline' needs a deadline "
                             "(set deadline_s or selection.deadline.deadline_s)")
        return float(d)

    def select(self, ctx: RoundContext, candidates: np.ndarray, n: int,
               rng: np.random.Generator) -> np.ndarray:
        cands = np.asarray(candidates, np.int64)
        if n <= 0 or cands.size == 0:
            return cands[:0]
        est = ctx.estimate_s(cands)
        fits = est <= self.p.margin * self.deadline_s(ctx)
        ids, est = cands[fits], est[fits]
        pool_n = min(ids.size, math.ceil(self.p.pool_factor * n))
        if pool_n < ids.size:
            pool = rng.choice(ids.size, size=pool_n, replace=False)
            ids, est = ids[pool], est[pool]
        if n < ids.size:
            keep = np.argsort(est, kind="stable")[:n]
            ids = ids[keep]
        return np.sort(ids)

    def observe(self, feedback: RoundFeedback) -> None:
        pass


class PowerOfChoiceSelector(ColumnState):
    """Power-of-choice (Cho, Wang & Joshi, "Towards Understanding Biased Client Selection in
    Federated Learning", AISTATS 2022).

    Samples ``d`` candidates without replacement with probability proportional to their data
    size, then keeps the n with the highest local loss. The paper has the d candidates evaluate
    the current global model on their data; FedFleet uses each client's *last known* training
    loss instead (no extra evaluation pass), and a client never trained counts as having the
    highest loss (so it is tried). ``d`` defaults to 2 x the clients invited per round.
    """

    _columns = ("last_loss",)

    def __init__(self, scenario: Any, population: Population,
                 params: PowerOfChoiceParams | None = None) -> None:
        self.p = params or (scenario.selection.power_of_choice if scenario is not None
                            else PowerOfChoiceParams())
        self.n_samples = np.asarray(population.n_samples, np.float64)
        self.last_loss = np.full(population.size, np.nan, np.float64)

    def select(self, ctx: RoundContext, candidates: np.ndarray, n: int,
               rng: np.random.Generator) -> np.ndarray:
        cands = np.asarray(candidates, np.int64)
        if n <= 0 or cands.size == 0:
            return cands[:0]
        d = min(max(self.p.d or 2 * n, n), cands.size)
        sampled = weighted_sample(cands, self.n_samples[cands], d, rng)
        loss = self.last_loss[sampled]
        key = np.where(np.isnan(loss), np.inf, loss)
        order = np.lexsort((rng.random(sampled.size), -key))  # highest loss first, random ties
        return np.sort(sampled[order[:n]])

    def observe(self, feedback: RoundFeedback) -> None:
        ids = np.asarray(feedback.client_ids, np.int64)
        done = (np.asarray(feedback.outcome) == R.COMPLETED) & np.isfinite(feedback.train_loss)
        self.last_loss[ids[done]] = feedback.train_loss[done]


class FairSelector(ColumnState):
    """Participation-quota fairness: the least-participated clients go first.

    Clients are ranked by ``count // quota`` (their participation band; ``count`` is completed
    rounds, or invitations with ``count: invited``), ties broken uniformly at random. With quota
    1 this is strict least-participated-first (round-robin over the available fleet); a larger
    quota lets a client take part up to ``quota`` times before everyone in its band has been
    served, which is random selection with a participation cap. A simple form of the
    participation-rate guarantee of Huang, Lin, Wu, He, Li & Zomaya, "An Efficiency-Boosting
    Client Selection Scheme for Federated Learning With Fairness Guarantee" (IEEE TPDS 2021).
    With ``count: completed`` a client that can never finish (too slow for the deadline, out of
    memory) stays in the lowest band and is re-invited
    every round; ``count: invited`` spreads invitations evenly instead.
    """

    _columns = ("count",)

    def __init__(self, scenario: Any, population: Population,
                 params: FairParams | None = None) -> None:
        self.p = params or (scenario.selection.fair if scenario is not None else FairParams())
        self.count = np.zeros(population.size, np.int64)

    def select(self, ctx: RoundContext, candidates: np.ndarray, n: int,
               rng: np.random.Generator) -> np.ndarray:
        cands = np.asarray(candidates, np.int64)
        if n <= 0 or cands.size == 0:
            return cands[:0]
        band = self.count[cands] // self.p.quota
        return np.sort(cands[random_keys_smallest(band, n, rng)])

    def observe(self, feedback: RoundFeedback) -> None:
        ids = np.asarray(feedback.client_ids, np.int64)
        if self.p.count == "completed":
            ids = ids[np.asarray(feedback.outcome) == R.COMPLETED]
        self.count[ids] += 1
