"""The ``hierarchical`` trigger (clients -> edges -> cloud; a scenario with a ``hierarchy:``
block). The maths lives in ``simulator/loop/edges.py``.

One ``step`` is one *edge round*: every edge with online clients runs a synchronous round over its
own clients at its own clock (select -> plan -> estimate -> resolve -> train survivors -> edge
FedAvg); every ``edge_rounds_per_cloud_round``-th step then ends with a cloud round (backhaul
upload, the cloud waits for the slowest edge, weighted average, broadcast). Random streams are
keyed ``(seed, purpose, round, edge)``; with a single edge the edge key is dropped, so one edge
reproduces the flat engine's draws exactly.

The server chain runs at every edge aggregation (each edge is the server of its clients: secure
aggregation among them, central DP noise on their sum with the edge's share of k as the fixed
denominator); the scenario's strategy runs at the cloud on the samples-weighted mean of the edge
models (FedAvg there is the HierFAVG cloud average).
"""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from simulator import InputError
from simulator.aggregation.fedavg import FedAvg
from simulator.aggregation.strategy import AggregationContext, Contribution, ServerSums
from simulator.core import outcomes as rounds
from simulator.core import rng as R
from simulator.fleet.population import sample_population
from simulator.fleet.profiles import catalog
from simulator.loop import pipeline as P
from simulator.loop.edges import (
    assign_edges,
    cloud_average,
    cloud_round_times,
    shared_backhaul,
    split_per_edge,
    transfer_s,
)
from simulator.loop.records import client_columns, round_row

if TYPE_CHECKING:
    from simulator.loop.simulation import RoundReport, Simulation

EDGE_MODEL_BYTES_MAX = 8e9  # every edge keeps its own model copy in the driver


class HierarchicalTrigger:
    name = "hierarchical"

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        sc, pop = sim.sc, sim.pop
        h = sc.hierarchy
        assert h is not None  # the schema requires the block for this trigger
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
            raise InputError("hierarchy.edges",
                             f"{h.edges} edge models of {sim.global_flat.size:,} parameters "
                             f"need {need / 1e9:.1f} GB in the driver (limit "
                             f"{EDGE_MODEL_BYTES_MAX / 1e9:.0f} GB): use fewer edges or "
                             "mode: analytic")
        self.edge_flat = np.tile(sim.global_flat, (h.edges, 1))  # [E, P]; P = 0 if analytic
        self.period_w = np.zeros(h.edges)  # samples trained per edge since the last cloud round
        self.cloud_eval: tuple[float, float] | None = None
        self.max_update_bytes = 0.0
        self.edge_strategy = FedAvg(sc)  # edges average their clients; the strategy is the cloud's

    def _key(self, e: int) -> tuple[int, ...]:
        return (e,) if self.n_edges > 1 else ()

    def _links(self, ids: np.ndarray) -> P.Links:
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
            self.cloud_eval = self.sim.evaluate()
        return self.cloud_eval

    # --- one edge round -------------------------------------------------------------------------
    def _edge_round(self, e: int, rnd: int, cand: np.ndarray) -> tuple[Any, ...]:
        sim, sc, pop = self.sim, self.sim.sc, self.sim.pop
        t_e, k = float(self.edge_clock[e]), int(self.k_edge[e])
        ctx = P.context(sim, rnd, t_e, k)
        n_invite = min(math.ceil(k * sc.overcommit - 1e-9), cand.size)
        ids = P.choose(sim, ctx, n_invite, R.stream(sc.seed, R.SELECTION, rnd, *self._key(e)),
                       candidates=cand)
        la = P.launch(sim, rnd, t_e, ids, R.stream(sc.seed, R.DROPOUT, rnd, *self._key(e)),
                      links=self._links(ids), key=(rnd, *self._key(e)),
                      fixed_links=self.h.client_link is not None, shared=sim.shared.edge)
        out, done = P.resolve_sync(sim, t_e, la, k)
        train_loss, train_loss_sq = P.nan_losses(len(ids))
        if sim.real and done.any():
            partial = P.train(sim, self.edge_flat[e], P.jobs(sim, rnd, ids, la.plan, done))
            agg = AggregationContext(rnd, sc.seed, sc.aggregation.server_lr, self.name,
                                     tier="edge", edge=e, noise_keys=(rnd, *self._key(e)),
                                     expected_clients=k)
            self.edge_flat[e] = sim.chain.aggregate(
                self.edge_flat[e], ServerSums([Contribution(partial, rnd)]), agg,
                strategy=self.edge_strategy)
            train_loss[done] = partial.loss_mean
            train_loss_sq[done] = partial.loss_sq_mean
        self.period_w[e] += float(pop.n_samples[ids[done]].sum())
        if done.any():
            self.max_update_bytes = max(self.max_update_bytes, float(
                np.max(np.broadcast_to(la.plan.cost.upload_bytes, done.shape)[done])))
        cols = client_columns(rnd, t_e, ids, pop, la.plan, la.timing, out, train_loss,
                              battery_fraction=la.battery)
        P.task_links(la, cols)
        sim.battery.drain(ids, cols["energy_j"], cols["stop_s"])
        cols["edge_id"] = np.full(len(ids), e, np.int64)
        self.edge_clock[e] = t_e + out.duration_s
        feedback = (ids, out.outcome, la.timing.total_s, train_loss, train_loss_sq, out.stop_s,
                    la.prior_s)
        return out, cols, feedback, done, la.charged

    def _cloud_round(self, rnd: int) -> dict[str, float]:
        sim = self.sim
        nbytes = self.h.model_bytes or getattr(sim.planner, "model_bytes", None) \
            or self.max_update_bytes
        ed = self.edges
        up_s = transfer_s(float(nbytes), ed.uplink_bits_per_s, ed.latency_s)
        down_s = transfer_s(float(nbytes), ed.downlink_bits_per_s, ed.latency_s)
        sending = self.period_w > 0
        ready = self.edge_clock.copy()
        cap = sim.sc.capacity
        if cap.server_ingress_bits_per_s is not None or cap.server_egress_bits_per_s is not None:
            up_s, down_s = shared_backhaul(float(nbytes), ready, sending, ed.uplink_bits_per_s,
                                           ed.downlink_bits_per_s, ed.latency_s,
                                           cap.server_ingress_bits_per_s,
                                           cap.server_egress_bits_per_s)
        t_cloud, arrival, resume = cloud_round_times(ready, up_s, down_s, sending)
        if sim.real and sending.any():
            g = sim.global_flat
            avg = cloud_average(self.edge_flat, self.period_w, g)
            agg = AggregationContext(rnd // self.h.edge_rounds_per_cloud_round, sim.sc.seed, 1.0,
                                     self.name, tier="cloud",
                                     expected_clients=int(sending.sum()))
            mean = avg.astype(np.float64) - g.astype(np.float64)
            sim.global_flat = sim.chain.strategy.apply(g, ServerSums(mean=mean), agg)
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

    def step(self, recorder: Any) -> RoundReport:
        from simulator.loop.simulation import RoundReport

        sim, pop, rnd = self.sim, self.sim.pop, self.sim.next_round
        wall0 = time.perf_counter()
        cands = [m[pop.available(float(self.edge_clock[e]), m)] if m.size else m
                 for e, m in enumerate(self.members)]
        active = [e for e in range(self.n_edges) if cands[e].size and self.k_edge[e] > 0]
        if not active:
            waits = [pop.seconds_until_online(float(self.edge_clock[e]), m).min()
                     for e, m in enumerate(self.members) if m.size]
            self.edge_clock += max(float(min(waits)), P.IDLE_STEP_S)
            sim.clock_s = float(self.edge_clock.max())
            return RoundReport(rnd, sim.clock_s, math.nan, 0)
        self._evaluate()  # the model clients download this round (cached)
        t0 = float(min(self.edge_clock[e] for e in active))
        outs, cols_list, feedback, released, charged = [], [], [], [], []
        for e in active:
            out, cols, fb, done, ch = self._edge_round(e, rnd, cands[e])
            outs.append(out)
            cols_list.append(cols)
            feedback.append(fb)
            released.append(done)
            charged.append(ch)
        edge_round_s = max(o.duration_s for o in outs)
        is_cloud = (rnd + 1) % self.h.edge_rounds_per_cloud_round == 0
        cloud = self._cloud_round(rnd) if is_cloud else {}
        acc, loss = self._evaluate()
        sim.accuracy = acc if sim.real else None
        for ids, outcome, total_s, tl, tl_sq, elapsed, prior in feedback:
            P.observe(sim, rnd, ids, outcome, total_s, tl, tl_sq, acc if sim.real else None,
                      elapsed, prior)
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
        dp = sim.privacy
        if dp is not None and dp.mode == "central":  # each edge samples its own online clients
            row["privacy_q"] = max(len(c["client_id"]) / cands[e].size
                                   for e, c in zip(active, cols_list, strict=True))
        states: list[Any] = []
        if charged and charged[0]:  # one merged state per charging step (secure aggregation)
            secagg = sim.secagg
            states = [secagg.merge([c[0] for c in charged])]
        sim.chain.record(rnd, cols["client_id"], np.concatenate(released), row, cols, states)
        recorder.append(row, cols)
        sim.clock_s = sim_end
        sim.next_round = rnd + 1
        return RoundReport(rnd, sim.clock_s, acc, row["completed"], loss)

    # --- checkpoint state (merged into the simulation's checkpoint under 'hier__' keys) ----------
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
