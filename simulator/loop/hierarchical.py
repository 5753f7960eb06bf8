"""The hierarchical round loop (clients -> edges -> cloud), dispatched from ``engine.Simulation``
when the scenario has a ``hierarchy:`` block. The maths lives in ``simulator/loop/edges.py``.

One ``step`` is one *edge round*: every edge with online clients runs a synchronous round over its
own clients at its own clock (select -> plan -> estimate -> resolve -> train survivors -> edge
FedAvg); every ``edge_rounds_per_cloud_round``-th step then ends with a cloud round (backhaul
upload, the cloud waits for the slowest edge, weighted average, broadcast). Random streams are
keyed ``(seed, purpose, round, edge)``; with a single edge the edge key is dropped, so one edge
reproduces the flat engine's draws exactly.
"""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np

from simulator import InputError

from simulator.core import outcomes as rounds
from simulator.core import rng as R
from simulator.aggregation import apply_fedavg
from simulator.core.cost import estimate
from simulator.fleet.energy import mark_low_battery
from simulator.core.jobs import JobBatch
from simulator.loop.edges import (
    assign_edges,
    cloud_average,
    cloud_round_times,
    split_per_edge,
    transfer_s,
)
from simulator.fleet.population import sample_population
from simulator.fleet.profiles import catalog
from simulator.io.recording import Recorder
from simulator.loop.records import client_columns, round_row
from simulator.selection import RoundContext, RoundFeedback

IDLE_STEP_S = 600.0  # as in engine: nobody online anywhere -> the clock jumps ahead
EDGE_MODEL_BYTES_MAX = 8e9  # every edge keeps its own model copy in the driver


class HierarchyLoop:
    def __init__(self, sim: Any) -> None:
        self.sim = sim
        sc, pop = sim.sc, sim.pop
        h = sc.hierarchy
        self.h = h
        self.n_edges = h.edges
        self.edge_of = assign_edges(pop.size, h.edges, h.assignment)
        sizes = np.bincount(self.edge_of, minlength=h.edges)
        order = np.argsort(self.edge_of, kind="stable")
        self.members = np.split(order, np.cumsum(sizes)[:-1])
        self.k_edge = split_per_edge(sc.clients_per_round, sizes)
        prof = catalog(sc.population.profiles_dir)[h.edge_profile]
        # Edge aggregators are drawn like clients (own bandwidth spread), from their own stream.
        self.edges = sample_population([prof], [1.0], h.edges, R.int_seed(sc.seed, R.POPULATION, 1))
        self.edge_clock = np.zeros(h.edges)
        need = h.edges * sim.global_flat.nbytes
        if sim.real and need > EDGE_MODEL_BYTES_MAX:
            raise InputError("hierarchy.edges", f"{h.edges} edge models of {sim.global_flat.size:,} "
                             f"parameters need {need / 1e9:.1f} GB in the driver (limit "
                             f"{EDGE_MODEL_BYTES_MAX / 1e9:.0f} GB): use fewer edges or mode: analytic")
        self.edge_flat = np.tile(sim.global_flat, (h.edges, 1))  # [E, P]; P = 0 if analytic
        self.period_w = np.zeros(h.edges)  # samples trained per edge since the last cloud round
        self.cloud_eval: tuple[float, float] | None = None
        self.max_update_bytes = 0.0

    def _key(self, e: int) -> tuple[int, ...]:
        return (e,) if self.n_edges > 1 else ()

    def _links(self, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        cl, pop = self.h.client_link, self.sim.pop
        if cl is None:
            return pop.downlink_bits_per_s[ids], pop.uplink_bits_per_s[ids], pop.latency_s[ids]
        n = len(ids)
        return (np.full(n, cl.downlink_bits_per_s), np.full(n, cl.uplink_bits_per_s),
                np.full(n, cl.latency_s))

    def _evaluate(self) -> tuple[float, float]:
        if not self.sim.real:
            return math.nan, math.nan
        if self.cloud_eval is None:
            self.cloud_eval = self.sim.executor.evaluate(self.sim.global_flat)
        return self.cloud_eval

    # --- one edge round -------------------------------------------------------------------------
    def _edge_round(self, e: int, rnd: int, cand: np.ndarray) -> tuple[Any, ...]:
        sim, sc, pop = self.sim, self.sim.sc, self.sim.pop
        t_e, k = float(self.edge_clock[e]), int(self.k_edge[e])
        ctx = RoundContext(rnd, t_e, pop, k, sc.deadline_s, sim._estimate_fn(rnd), sim.accuracy)
        n_invite = min(math.ceil(k * sc.overcommit - 1e-9), cand.size)
        ids = np.sort(sim.selector.select(ctx, cand, n_invite,
                                          R.stream(sc.seed, R.SELECTION, rnd, *self._key(e))))
        plan = sim.planner.plan(rnd, ids, pop)
        down, up, lat = self._links(ids)
        timing = estimate(down, up, lat, pop.train_flops_per_s[ids], plan.cost,
                          pop.per_profile(lambda q: q.compute.step_overhead_s, ids))
        drop_after = rounds.draw_dropout_after_s(
            pop.dropout_hazard_per_s[ids], R.stream(sc.seed, R.DROPOUT, rnd, *self._key(e)))
        battery = sim.battery.fraction(t_e, ids)
        low = sim.battery.is_low(battery)
        out = rounds.resolve_sync_round(timing, min(k, len(ids)), drop_after,
                                        pop.seconds_until_offline(t_e, ids), sc.deadline_s,
                                        plan.infeasible | low)
        out = mark_low_battery(out, low)
        done = out.outcome == rounds.COMPLETED
        train_loss = np.full(len(ids), np.nan)
        train_loss_sq = np.full(len(ids), np.nan)
        if sim.real and done.any():
            survivors = ids[done]
            seeds = np.array([R.int_seed(sc.seed, R.TRAINING, rnd, c) for c in survivors], np.uint64)
            assignment = {key: v[done] for key, v in plan.columns.items()}
            assignment["kind"] = plan.kind[done]
            partial = sim.executor.run(self.edge_flat[e], JobBatch(rnd, survivors, seeds, assignment))
            partial = partial.sorted()
            self.edge_flat[e] = apply_fedavg(self.edge_flat[e], partial, sc.aggregation.server_lr)
            train_loss[done] = partial.loss_mean
            train_loss_sq[done] = partial.loss_sq_mean
        self.period_w[e] += float(pop.n_samples[ids[done]].sum())
        if done.any():
            self.max_update_bytes = max(self.max_update_bytes, float(
                np.max(np.broadcast_to(plan.cost.upload_bytes, done.shape)[done])))
        cols = client_columns(rnd, t_e, ids, pop, plan, timing, out, train_loss,
                              battery_fraction=battery)
        sim.battery.drain(ids, cols["energy_j"], cols["stop_s"])
        cols["edge_id"] = np.full(len(ids), e, np.int64)
        self.edge_clock[e] = t_e + out.duration_s
        feedback = (ids, out.outcome, timing.total_s, train_loss, train_loss_sq)
        return out, cols, feedback

    def _cloud_round(self) -> dict[str, float]:
        sim = self.sim
        nbytes = self.h.model_bytes or getattr(sim.planner, "model_bytes", None) \
            or self.max_update_bytes
        ed = self.edges
        up_s = transfer_s(float(nbytes), ed.uplink_bits_per_s, ed.latency_s)
        down_s = transfer_s(float(nbytes), ed.downlink_bits_per_s, ed.latency_s)
        sending = self.period_w > 0
        ready = self.edge_clock.copy()
        t_cloud, arrival, resume = cloud_round_times(ready, up_s, down_s, sending)
        if sim.real and sending.any():
            sim.global_flat = cloud_average(self.edge_flat, self.period_w, sim.global_flat)
            self.edge_flat[:] = sim.global_flat
            self.cloud_eval = None
        self.edge_clock = resume
        self.period_w[:] = 0.0
        n_send = int(sending.sum())
        return {
            "backhaul_s": float((up_s + down_s)[sending].max(initial=0.0)),
            "cloud_wait_s": float(t_cloud - np.nanmin(arrival)) if n_send else 0.0,
            "cloud_aggregate_s": t_cloud,
            "backhaul_bytes": 2.0 * float(nbytes) * n_send,
            "edges_sent": n_send,
        }

    def step(self, recorder: Recorder) -> Any:
        from simulator.loop.simulation import RoundReport

        sim, pop, rnd = self.sim, self.sim.pop, self.sim.next_round
        wall0 = time.perf_counter()
        cands = [m[pop.available(float(self.edge_clock[e]), m)] if m.size else m
                 for e, m in enumerate(self.members)]
        active = [e for e in range(self.n_edges) if cands[e].size and self.k_edge[e] > 0]
        if not active:
            waits = [pop.seconds_until_online(float(self.edge_clock[e]), m).min()
                     for e, m in enumerate(self.members) if m.size]
            self.edge_clock += max(float(min(waits)), IDLE_STEP_S)
            sim.clock_s = float(self.edge_clock.max())
            return RoundReport(rnd, sim.clock_s, math.nan, 0)
        self._evaluate()  # the model clients download this round (cached)
        t0 = float(min(self.edge_clock[e] for e in active))
        outs, cols_list, feedback = [], [], []
        for e in active:
            out, cols, fb = self._edge_round(e, rnd, cands[e])
            outs.append(out)
            cols_list.append(cols)
            feedback.append(fb)
        edge_round_s = max(o.duration_s for o in outs)
        is_cloud = (rnd + 1) % self.h.edge_rounds_per_cloud_round == 0
        cloud = self._cloud_round() if is_cloud else {}
        acc, loss = self._evaluate()
        sim.accuracy = acc if sim.real else None
        for ids, outcome, total_s, tl, tl_sq in feedback:
            sim.selector.observe(RoundFeedback(rnd, ids, outcome, total_s, pop.n_samples[ids], tl,
                                               tl_sq, acc if sim.real else None))
        cols = {k: np.concatenate([c[k] for c in cols_list]) for k in cols_list[0]}
        sim_end = float(self.edge_clock.max())
        merged = rounds.RoundOutcome(
            np.concatenate([o.outcome for o in outs]), np.concatenate([o.stop_s for o in outs]),
            sim_end - t0, *(np.concatenate([getattr(o, f) for o in outs])
                            for f in ("download_done_s", "compute_done_s", "upload_done_s")))
        n_cand = int(sum(cands[e].size for e in active))
        row = round_row(rnd, t0, n_cand, merged, cols, acc, loss, time.perf_counter() - wall0)
        row.update({
            "tier": "cloud" if is_cloud else "edge",
            "cloud_round": rnd // self.h.edge_rounds_per_cloud_round,
            "edges_active": len(active),
            "edge_round_s": float(edge_round_s),
            "backhaul_s": cloud.get("backhaul_s", 0.0),
            "cloud_wait_s": cloud.get("cloud_wait_s", 0.0),
            "backhaul_bytes": cloud.get("backhaul_bytes", 0.0),
        })
        recorder.append(row, cols)
        sim.clock_s = sim_end
        sim.next_round = rnd + 1
        return RoundReport(rnd, sim.clock_s, acc, row["completed"])

    # --- checkpoint state (merged into the engine's checkpoint under 'hier__' keys) ---------------
    def state_dict(self) -> dict[str, Any]:
        state: dict[str, Any] = {"hier__edge_clock": self.edge_clock.copy(),
                                 "hier__period_w": self.period_w.copy(),
                                 "hier__max_update_bytes": self.max_update_bytes}
        if self.sim.real:
            state["hier__edge_flat"] = self.edge_flat.copy()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "hier__edge_clock" not in state:
            return
        self.edge_clock = np.asarray(state.pop("hier__edge_clock"), np.float64).copy()
        self.period_w = np.asarray(state.pop("hier__period_w"), np.float64).copy()
        self.max_update_bytes = float(state.pop("hier__max_update_bytes", 0.0))
        flat = state.pop("hier__edge_flat", None)
        if flat is not None and self.sim.real:
            self.edge_flat = np.asarray(flat).copy()
        self.cloud_eval = None
