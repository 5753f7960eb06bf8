"""The round loop: the one module that owns it.

One synchronous round:  available -> select -> plan -> estimate -> resolve (simulated time) ->
train survivors (executor) -> aggregate -> evaluate -> observe -> record.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from simulator import FedFleetError
from simulator.core import rng as R
from simulator.core import outcomes as rounds
from simulator.aggregation import apply_fedavg
from simulator.fleet.availability import AvailabilityIndex
from simulator.io.checkpoint import load_checkpoint, save_checkpoint
from simulator.core.cost import estimate_clients
from simulator.data import build_dataset
from simulator.fleet.eligibility import restrict_links
from simulator.fleet.energy import battery_for, mark_low_battery
from simulator.core.jobs import JobBatch
from simulator.execution import make_executor
from simulator.planning import make_planner
from simulator.fleet.population import Population, sample_population
from simulator.privacy import ServerPrivacy
from simulator.fleet.profiles import catalog
from simulator.io.recording import Recorder
from simulator.loop.records import client_columns, round_row
from simulator.config.scenario import Scenario
from simulator.privacy.secagg import make_secure_aggregator
from simulator.selection import RoundContext, RoundFeedback, make_selector

IDLE_STEP_S = 600.0  # when nobody is online, the clock jumps ahead to the next window


@dataclass
class RoundReport:
    round: int
    sim_end_s: float
    accuracy: float
    completed: int


def build_population(sc: Scenario) -> tuple[Population, Any]:
    profiles = catalog(sc.population.profiles_dir)
    mix = sc.population.mix
    pop = sample_population([profiles[m.profile] for m in mix], [m.share for m in mix],
                            sc.population.size, sc.seed)
    if sc.population.require_link:  # e.g. [wifi]: other clients never train
        restrict_links(pop, sc.population.require_link)
    if sc.mode == "analytic" and sc.model.kind == "transformer":  # sizes only, no corpus
        from simulator.planning.capability import analytic_dataset

        dataset: Any = analytic_dataset(sc, pop.size)
    else:
        dataset = build_dataset(sc, pop.size)
    pop.n_samples = np.asarray(dataset.n_samples, np.int64)
    return pop, dataset


class Simulation:
    def __init__(self, sc: Scenario) -> None:
        self.sc = sc
        self.real = sc.mode == "real"
        # The executor starts first, so Ray actors import torch while the driver samples clients.
        self.executor = make_executor(sc, sc.population.size) if self.real else None
        try:
            self.pop, dataset = build_population(sc)
        except BaseException:
            if self.executor is not None:
                self.executor.close()
            raise
        self.planner = make_planner(sc, self.pop, dataset.n_features, dataset.n_classes)
        self.selector = make_selector(sc, self.pop)
        self.avail_index = AvailabilityIndex.build(self.pop)  # None below 10^5 clients
        self.battery = battery_for(self.pop, sc)
        self.global_flat = self.executor.initial_state() if self.executor else np.zeros(0)
        self.clock_s = 0.0
        self.next_round = 0
        self.accuracy: float | None = None
        self.privacy = ServerPrivacy(sc, self.pop.size) if sc.privacy.mode != "none" else None
        self.secagg = make_secure_aggregator(sc)
        self.hier = None
        if sc.hierarchy is not None:  # clients -> edges -> cloud: its own loop
            from simulator.loop.hierarchical import HierarchyLoop

            self.hier = HierarchyLoop(self)

    def _estimate_fn(self, rnd: int) -> Callable[[np.ndarray], np.ndarray]:
        def est(ids: np.ndarray) -> np.ndarray:
            return estimate_clients(self.pop, ids, self.planner.plan(rnd, ids, self.pop).cost).total_s
        return est

    def step(self, recorder: Recorder) -> RoundReport:
        sc, pop, rnd, t0 = self.sc, self.pop, self.next_round, self.clock_s
        if self.hier is not None:
            return self.hier.step(recorder)
        wall0 = time.perf_counter()
        # Large populations: count and sample online clients in O(k) (simulator/fleet/availability.py).
        index = self.avail_index if hasattr(self.selector, "select_sparse") else None
        candidates = np.flatnonzero(pop.available(t0)) if index is None else np.zeros(0, np.int64)
        n_online = int(candidates.size) if index is None else index.count(t0)
        if n_online == 0:
            wait = pop.seconds_until_online(t0, np.arange(pop.size)).min()
            self.clock_s = t0 + max(float(wait), IDLE_STEP_S)
            return RoundReport(rnd, self.clock_s, math.nan, 0)
        ctx = RoundContext(rnd, t0, pop, sc.clients_per_round, sc.deadline_s,
                           self._estimate_fn(rnd), self.accuracy)
        n_invite = min(sc.selected_per_round, n_online)
        sel_rng = R.stream(sc.seed, R.SELECTION, rnd)
        if index is None:
            ids = self.selector.select(ctx, candidates, n_invite, sel_rng)
        else:
            sparse_select = getattr(self.selector, "select_sparse")
            ids = sparse_select(ctx, index, n_invite, n_online, sel_rng)
        ids = np.sort(ids)
        plan = self.planner.plan(rnd, ids, pop)
        timing = estimate_clients(pop, ids, plan.cost)
        drop_after = rounds.draw_dropout_after_s(pop.dropout_hazard_per_s[ids],
                                                 R.stream(sc.seed, R.DROPOUT, rnd))
        battery = self.battery.fraction(t0, ids)
        low = self.battery.is_low(battery)  # declines at once (simulator/fleet/energy.py)
        sa = None
        if self.secagg is not None:  # Bonawitz et al. 2017: extra bytes, messages, PRG time
            plan, timing, sa = self.secagg.charge(plan, timing, pop.downlink_bits_per_s[ids],
                                                  pop.uplink_bits_per_s[ids], pop.latency_s[ids], low)
        out = rounds.resolve_sync_round(timing, min(sc.clients_per_round, len(ids)), drop_after,
                                        pop.seconds_until_offline(t0, ids), sc.deadline_s,
                                        plan.infeasible | low)
        out = mark_low_battery(out, low)
        if sa is not None:
            out = self.secagg.settle(sa, out)  # threshold check; the server's unmasking time
        done = out.outcome == rounds.COMPLETED
        if sa is not None and sa.failed:
            done[:] = False  # the sum cannot be unmasked: no update is used (or trained)
        train_loss = np.full(len(ids), np.nan)
        train_loss_sq = np.full(len(ids), np.nan)
        acc = loss = math.nan
        if self.real and done.any():
            survivors = ids[done]
            seeds = np.array([R.int_seed(sc.seed, R.TRAINING, rnd, c) for c in survivors], np.uint64)
            assignment = {k: v[done] for k, v in plan.columns.items()}
            assignment["kind"] = plan.kind[done]
            jobs = JobBatch(rnd, survivors, seeds, assignment)
            partial = self.executor.run(self.global_flat, jobs).sorted()  # type: ignore[union-attr]
            if self.privacy is not None:  # DP-FedAvg: fixed denominator (+ noise when central)
                self.global_flat = self.privacy.aggregate(self.global_flat, partial, rnd,
                                                          sc.aggregation.server_lr)
            else:
                self.global_flat = apply_fedavg(self.global_flat, partial, sc.aggregation.server_lr)
            train_loss[done] = partial.loss_mean
            train_loss_sq[done] = partial.loss_sq_mean
        if self.real:
            acc, loss = self.executor.evaluate(self.global_flat)  # type: ignore[union-attr]
            self.accuracy = acc
        self.selector.observe(RoundFeedback(rnd, ids, out.outcome, timing.total_s,
                                            pop.n_samples[ids], train_loss, train_loss_sq,
                                            acc if self.real else None))
        cols = client_columns(rnd, t0, ids, pop, plan, timing, out, train_loss,
                              battery_fraction=battery)
        self.battery.drain(ids, cols["energy_j"], cols["stop_s"])
        row = round_row(rnd, t0, n_online, out, cols, acc, loss, time.perf_counter() - wall0)
        if sa is not None:
            self.secagg.record(sa, row, cols)
        if self.privacy is not None:
            self.privacy.record(rnd, ids, done, row, cols)
        recorder.append(row, cols)
        self.clock_s = t0 + out.duration_s
        self.next_round = rnd + 1
        return RoundReport(rnd, self.clock_s, acc, row["completed"])

    # --- checkpointing --------------------------------------------------------------------------
    def checkpoint(self, recorder: Recorder) -> None:
        recorder.flush()
        save_checkpoint(recorder.partial_dir, self.next_round, self.clock_s, self.accuracy,
                        self.global_flat, {**self.selector.state_dict(),
                                           **self.battery.state_dict(),
                                           **(self.privacy.state_dict() if self.privacy else {}),
                                           **(self.hier.state_dict() if self.hier else {})})

    def restore(self, recorder: Recorder) -> None:
        ck = load_checkpoint(recorder.partial_dir)
        if ck is None:
            raise FedFleetError(f"no checkpoint in '{recorder.partial_dir}' (nothing to resume; "
                                "set output.checkpoint_every to make runs resumable)")
        self.next_round, self.clock_s, self.accuracy = ck.next_round, ck.clock_s, ck.accuracy
        if self.real:
            self.global_flat = ck.global_flat
        state = self.battery.load_state_dict(ck.selector_state)
        for ext in (self.privacy, self.hier):
            if ext is not None:
                ext.load_state_dict(state)  # takes its own 'privacy__' / 'hier__' keys
        self.selector.load_state_dict(state)
        recorder.truncate_after(self.next_round - 1)

    def close(self) -> None:
        if self.executor is not None:
            self.executor.close()
