"""The ``sync`` trigger: synchronous rounds (FedAvg's, and Bonawitz et al.'s production shape).

Each round invites ceil(k * overcommit) of the online clients, keeps the first k to finish
(within ``deadline_s`` when set) and aggregates once; the vectorised resolver
(simulator/core/outcomes.py) decides every fate before anyone is trained.
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from simulator.aggregation.strategy import AggregationContext, Contribution, ServerSums
from simulator.core import rng as R
from simulator.loop import pipeline as P

if TYPE_CHECKING:
    from simulator.loop.simulation import RoundReport, Simulation


class SyncTrigger:
    name = "sync"

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim

    def step(self, recorder: Any) -> RoundReport:
        from simulator.loop.simulation import RoundReport

        sim = self.sim
        sc, pop, rnd, t0 = sim.sc, sim.pop, sim.next_round, sim.clock_s
        wall0 = time.perf_counter()
        # Large populations: count and sample online clients in O(k) (fleet/availability.py).
        sparse = P.sparse_ok(sim)
        candidates = None if sparse else np.flatnonzero(pop.available(t0))
        n_online = sim.avail_index.count(t0) if sparse else int(candidates.size)  # type: ignore
        if n_online == 0:
            wait = pop.seconds_until_online(t0, np.arange(pop.size)).min()
            sim.clock_s = t0 + max(float(wait), P.IDLE_STEP_S)
            return RoundReport(rnd, sim.clock_s, math.nan, 0)
        ctx = P.context(sim, rnd, t0, sc.clients_per_round)
        ids = P.choose(sim, ctx, min(sc.selected_per_round, n_online),
                       R.stream(sc.seed, R.SELECTION, rnd), candidates=candidates,
                       n_online=n_online)
        la = P.launch(sim, rnd, t0, ids, R.stream(sc.seed, R.DROPOUT, rnd))
        out, done = P.resolve_sync(sim, t0, la, sc.clients_per_round)
        train_loss, train_loss_sq = P.nan_losses(len(ids))
        acc = loss = math.nan
        if sim.real and done.any():
            partial = P.train(sim, sim.global_flat, P.jobs(sim, rnd, ids, la.plan, done))
            agg = AggregationContext(rnd, sc.seed, sc.aggregation.server_lr, self.name,
                                     noise_keys=(rnd,), expected_clients=sc.clients_per_round)
            sim.global_flat = sim.chain.aggregate(sim.global_flat,
                                                  ServerSums([Contribution(partial, rnd)]), agg)
            train_loss[done] = partial.loss_mean
            train_loss_sq[done] = partial.loss_sq_mean
        if sim.real:
            acc, loss = sim.evaluate()
            sim.accuracy = acc
        P.observe(sim, rnd, ids, out.outcome, la.timing.total_s, train_loss, train_loss_sq,
                  acc if sim.real else None, out.stop_s, la.prior_s)
        row = P.record(sim, recorder, rnd, t0, n_online, la, out, done, train_loss, acc, loss,
                       time.perf_counter() - wall0)
        sim.clock_s = t0 + out.duration_s
        sim.next_round = rnd + 1
        return RoundReport(rnd, sim.clock_s, acc, row["completed"], loss)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass
