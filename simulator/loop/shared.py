"""True task timing with dynamics and shared capacity (the ``capacity:`` block; docs/clock.md).

:class:`SharedClock` is what :func:`simulator.loop.pipeline.launch` calls when the clock is not
the static one: it times each task on the client's own draws and this task's links, applies the
dynamics' compute slow-downs to the client's *local* work only, divides the split-learning
server among the split clients attached at once (``capacity.split_server: shared``) and shares
the server's (or an edge's) link among concurrent transfers.

Split plans (simulator/planning/capability.py) fold the server's work into the client's FLOPs as
``server_wait_s x FLOP/s``, at the rate the planner saw; here that part is taken out again
(``server_wait_s`` = server seconds + one round trip per step) so that the local work runs at the
client's true rate, the server part at the server's share and the round trips at this task's
latency.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from simulator.core.cost import BITS_PER_BYTE, Timing, estimate
from simulator.fleet.capacity import fluid_share, processor_share
from simulator.planning import Plan


@dataclass(frozen=True)
class Shared:
    """Capacities a launch shares: link bits/s (None: unlimited), split tasks already running."""

    egress_bits_per_s: float | None = None
    ingress_bits_per_s: float | None = None
    split_running: int = 0


class SharedClock:
    def __init__(self, sim: Any) -> None:  # a Simulation (not imported: it imports us)
        self.sim = sim
        cap = sim.sc.capacity
        self.split_shared = cap.split_server == "shared"
        sc = sim.sc
        per_client = float(getattr(getattr(sc.model, "workloads", None),
                                   "split_server_flops_per_s", 2e12))
        fb = sc.aggregation.fedbuff
        cohort = fb.concurrency if sc.trigger == "buffered" and fb is not None \
            else sc.clients_per_round
        total = cap.split_server_flops_per_s or per_client * cohort
        # a client's server seconds at its per-client rate -> seconds of the whole server
        self.split_scale = per_client / total
        self.server = Shared(cap.server_egress_bits_per_s, cap.server_ingress_bits_per_s)
        self.edge = Shared(cap.edge_link_bits_per_s, cap.edge_link_bits_per_s)

    @staticmethod
    def split_wait(plan: Plan) -> np.ndarray | None:
        w = plan.columns.get("server_wait_s")
        if w is None:
            return None
        w = np.asarray(w, np.float64)
        return w if (w > 0).any() else None

    def needed(self, plan: Plan) -> bool:
        """Whether split timing must be redone (the static clock otherwise)."""
        if self.split_wait(plan) is None:
            return False
        return self.split_shared or not self.sim.estimator.oracle

    def timing(self, ids: np.ndarray, plan: Plan, links: Any, slow: np.ndarray,
               shared: Shared | None, blocked: np.ndarray | None = None) -> Timing:
        sim, pop = self.sim, self.sim.pop
        fps = pop.train_flops_per_s[ids]
        over = pop.per_profile(lambda q: q.compute.step_overhead_s, ids)
        base = estimate(links[0], links[1], links[2], fps, plan.cost, over)
        dyn = sim.dynamics
        wait = self.split_wait(plan)
        if wait is None:
            return dyn.timing(ids, base, slow) if dyn.active else base
        from simulator.planning.llm_cost import steps_per_round

        sc = sim.sc
        view = sim.estimator.server_view()
        split = wait > 0
        steps = steps_per_round(pop.n_samples[ids], sc.training.batch_size, sc.training.epochs)
        rtt_plan = np.where(split, steps * view.latency_s[ids].astype(np.float64), 0.0)
        server_s = np.maximum(wait - rtt_plan, 0.0)
        local_flops = np.asarray(plan.cost.train_flops, np.float64) - wait * \
            view.train_flops_per_s[ids]
        local_s = np.maximum(local_flops, 0.0) / fps
        if dyn.active:
            local_s = dyn.compute_s(ids, local_s, slow)
        if self.split_shared:
            attached = split & ~(plan.infeasible if blocked is None else blocked)
            running = shared.split_running if shared is not None else 0
            server_s = server_s.copy()
            server_s[attached] = processor_share(server_s[attached] * self.split_scale, running)
        rtt = np.where(split, steps * np.asarray(links[2], np.float64), 0.0)
        return Timing(base.download_s, local_s + server_s + rtt, base.upload_s)

    # --- shared links ---------------------------------------------------------------------------
    @staticmethod
    def links_shared(shared: Shared | None) -> bool:
        return shared is not None and (shared.egress_bits_per_s is not None
                                       or shared.ingress_bits_per_s is not None)

    def share_links(self, timing: Timing, links: Any, plan: Plan, blocked: np.ndarray,
                    shared: Shared) -> Timing:
        """Downloads share the egress from t=0 (after one round trip), uploads the ingress from
        when each client is ready; blocked clients move nothing."""
        go = np.flatnonzero(~np.asarray(blocked, bool))
        down, comp, up = (np.array(a, np.float64, copy=True) for a in
                          (timing.download_s, timing.compute_s, timing.upload_s))
        if go.size == 0:
            return timing
        n = len(down)
        lat = np.asarray(links[2], np.float64)[go]
        bits_d = np.broadcast_to(np.asarray(plan.cost.download_bytes, np.float64), (n,))[go]
        bits_u = np.broadcast_to(np.asarray(plan.cost.upload_bytes, np.float64), (n,))[go]
        down_go = fluid_share(lat, bits_d * BITS_PER_BYTE,
                              np.asarray(links[0], np.float64)[go], shared.egress_bits_per_s)
        down[go] = down_go
        start_up = down_go + comp[go] + lat
        up_end = fluid_share(start_up, bits_u * BITS_PER_BYTE,
                             np.asarray(links[1], np.float64)[go], shared.ingress_bits_per_s)
        up[go] = up_end - (down_go + comp[go])
        return Timing(down, comp, up)
