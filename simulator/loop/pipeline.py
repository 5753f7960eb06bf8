"""The stages of the round pipeline, shared by every trigger (pure numpy; training goes through
the simulation's executor).

    launch: available -> select -> plan -> estimate -> draws -> battery (-> chain charges)
    resolve (the trigger's: a sync round, FedBuff's event loop, an edge round)
    train survivors -> server chain -> strategy
    observe -> record

Random streams are keyed ``(seed, purpose, key...)``: the trigger chooses the key (the round; a
FedBuff wave; the round and edge), so that every trigger is reproducible and resumable.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from simulator.aggregation import Partial
from simulator.core import outcomes as RD
from simulator.core import rng as R
from simulator.core.cost import Timing, estimate, estimate_clients
from simulator.core.jobs import JobBatch
from simulator.fleet.energy import mark_low_battery
from simulator.fleet.population import LINK_TYPES
from simulator.loop.records import client_columns, round_row
from simulator.planning import Plan
from simulator.selection import RoundContext, RoundFeedback

if TYPE_CHECKING:
    from simulator.loop.simulation import Simulation

IDLE_STEP_S = 600.0  # when nobody is online, the clock jumps ahead to the next window

Links = tuple[np.ndarray, np.ndarray, np.ndarray]  # downlink, uplink bits/s, latency s


@dataclass
class Launched:
    """Invited clients with their plan, timing and draws (arrays aligned with ``ids``)."""

    ids: np.ndarray
    plan: Plan
    timing: Timing
    drop_after_s: np.ndarray
    battery: np.ndarray  # charge fraction at launch
    low: np.ndarray  # declines at once: battery below the floor
    charged: list[Any] = field(default_factory=list)  # server-chain states (secure aggregation)
    prior_s: np.ndarray | None = None  # the server's class-prior estimate of each task
    link_idx: np.ndarray | None = None  # each task's link (it may change with the time of day)


def choose(sim: Simulation, ctx: RoundContext, n: int, rng: np.random.Generator, *,
           candidates: np.ndarray | None = None, n_online: int = 0,
           exclude: np.ndarray | None = None) -> np.ndarray:
    """The selector's picks, sorted. Without ``candidates`` the selector samples the
    availability index (large populations: O(n), never listing the online clients)."""
    if candidates is not None:
        return np.sort(sim.selector.select(ctx, candidates, n, rng))
    sparse = sim.selector.select_sparse
    if exclude is None:
        return np.sort(sparse(ctx, sim.avail_index, n, n_online, rng))
    return np.sort(sparse(ctx, sim.avail_index, n, n_online, rng, exclude=exclude))


def sparse_ok(sim: Simulation) -> bool:
    """Whether selection can use the availability index (big population, selector supports it)."""
    return sim.avail_index is not None and hasattr(sim.selector, "select_sparse")


def launch(sim: Simulation, rnd: int, t0: float, ids: np.ndarray, dropout_rng: np.random.Generator,
           links: Links | None = None, key: tuple[int, ...] | None = None,
           fixed_links: bool = False, shared: Any = None) -> Launched:
    """Plan (on what the server knows), time (the true clock: the client's draws, this task's
    dynamics and shared capacity), draw dropouts and batteries for invited ``ids``.

    ``key``: the trigger's stream key for the dynamics draws (default ``(rnd,)``);
    ``fixed_links``: the links given are not the client's own (a LAN to its edge) and do not
    change; ``shared``: the trigger's shared-capacity context (simulator/loop/shared.py)."""
    pop = sim.pop
    plan = sim.planner.plan(rnd, ids, sim.estimator.server_view())
    link_idx = pop.link_idx[ids]
    shared = sim.shared.server if shared is None else shared
    battery = sim.battery.fraction(t0, ids)
    low = sim.battery.is_low(battery)  # declines at once (simulator/fleet/energy.py)
    if not sim.dynamics.active and not sim.shared.needed(plan):  # the static clock
        if links is None:
            timing = estimate_clients(pop, ids, plan.cost)
            links = (pop.downlink_bits_per_s[ids], pop.uplink_bits_per_s[ids], pop.latency_s[ids])
        else:
            timing = estimate(*links, pop.train_flops_per_s[ids], plan.cost,
                              pop.per_profile(lambda q: q.compute.step_overhead_s, ids))
    else:
        if links is None:
            links = (pop.downlink_bits_per_s[ids], pop.uplink_bits_per_s[ids], pop.latency_s[ids])
        slow = np.ones(len(ids))
        if sim.dynamics.active:
            links, link_idx, slow = sim.dynamics.links(t0, ids, key or (rnd,), links, fixed_links)
        timing = sim.shared.timing(ids, plan, links, slow, shared, plan.infeasible | low)
    drop = RD.draw_dropout_after_s(pop.dropout_hazard_per_s[ids], dropout_rng)
    if sim.shared.links_shared(shared):
        timing = sim.shared.share_links(timing, links, plan, plan.infeasible | low, shared)
    charged: list[Any] = []
    if sim.chain.charges:  # Bonawitz et al. 2017: extra bytes, messages, PRG time
        plan, timing, charged = sim.chain.charge(plan, timing, *links, low)
    prior = sim.estimator.prior_s(ids, plan.cost)
    return Launched(ids, plan, timing, drop, battery, low, charged, prior, link_idx)


def resolve_sync(sim: Simulation, t0: float, la: Launched, k: int) -> tuple[RD.RoundOutcome,
                                                                             np.ndarray]:
    """A synchronous round in simulated time (the vectorised resolver); returns the outcome
    and which clients' updates are used."""
    out = RD.resolve_sync_round(la.timing, min(k, len(la.ids)), la.drop_after_s,
                                sim.pop.seconds_until_offline(t0, la.ids), sim.sc.deadline_s,
                                la.plan.infeasible | la.low)
    out = mark_low_battery(out, la.low)
    out = sim.chain.settle(la.charged, out)  # threshold check; the server's unmasking time
    done = out.outcome == RD.COMPLETED
    if sim.chain.failed(la.charged):
        done[:] = False  # the sum cannot be unmasked: no update is used (or trained)
    return out, done


def jobs(sim: Simulation, rnd: int, ids: np.ndarray, plan: Plan, mask: np.ndarray,
         seed_keys: list[tuple[int, int]] | None = None, version: int | None = None) -> JobBatch:
    """Training jobs of ``ids[mask]``; seeds from ``(seed, TRAINING, rnd, client)`` unless
    ``seed_keys`` gives each job's key. ``version``: the model version they start from (default
    ``rnd``), for strategies that hand each job its own columns (SCAFFOLD's offsets)."""
    sel = ids[mask]
    keys = seed_keys if seed_keys is not None else [(rnd, int(c)) for c in sel]
    seeds = np.array([R.int_seed(sim.sc.seed, R.TRAINING, *k) for k in keys], np.uint64)
    assignment = {k: v[mask] for k, v in plan.columns.items()}
    assignment["kind"] = plan.kind[mask]
    if (adv := sim.chain.step_named("adversary")) is not None:  # the workload runs the attack
        assignment["byzantine"] = adv.assign(sel)
    if (cols := getattr(sim.chain.strategy, "job_columns", None)) is not None:
        assignment.update(cols(sel, rnd if version is None else version, sim.global_flat.size))
    return JobBatch(rnd, sel, seeds, assignment)


def train(sim: Simulation, base_flat: np.ndarray, batch: JobBatch) -> Partial:
    """Train a batch from ``base_flat``; per-client stats in client-id order."""
    return sim.executor.run(base_flat, batch).sorted()


def observe(sim: Simulation, rnd: int, ids: np.ndarray, outcome: np.ndarray, total_s: np.ndarray,
            loss: np.ndarray, loss_sq: np.ndarray, accuracy: float | None,
            elapsed_s: np.ndarray | None = None, prior_s: np.ndarray | None = None) -> None:
    """Feed the round back: the estimator learns from what the server observed (``elapsed_s``:
    seconds from start to finish or to the cut, with the class priors ``prior_s``); selectors
    get the observed duration of completed tasks and the estimator's belief for the others.
    (``estimates.mode: oracle``: the true ``total_s`` of every task, as before.)"""
    duration = total_s
    if not sim.estimator.oracle and elapsed_s is not None and prior_s is not None:
        duration = sim.estimator.observe(ids, outcome, elapsed_s, prior_s)
    sim.selector.observe(RoundFeedback(rnd, ids, outcome, duration, sim.pop.n_samples[ids], loss,
                                       loss_sq, accuracy))


def context(sim: Simulation, rnd: int, t: float, k: int) -> RoundContext:
    return RoundContext(rnd, t, sim.pop, k, sim.sc.deadline_s, sim.estimate_fn(rnd), sim.accuracy)


def task_links(la: Launched, cols: dict[str, np.ndarray]) -> None:
    """clients.parquet ``link``: the link each task used (dynamics may move it)."""
    if la.link_idx is not None:
        cols["link"] = np.array(LINK_TYPES, dtype=object)[la.link_idx]


def record(sim: Simulation, recorder: Any, rnd: int, t0: float, n_candidates: int, la: Launched,
           out: RD.RoundOutcome, released: np.ndarray, train_loss: np.ndarray, acc: float,
           loss: float, wall_s: float, extra_cols: dict[str, np.ndarray] | None = None,
           drain: bool = True) -> dict[str, Any]:
    """clients.parquet columns and the rounds.parquet row of a launched, resolved round."""
    cols = client_columns(rnd, t0, la.ids, sim.pop, la.plan, la.timing, out, train_loss,
                          battery_fraction=la.battery)
    task_links(la, cols)
    if drain:
        sim.battery.drain(la.ids, cols["energy_j"], cols["stop_s"])
    if extra_cols:
        cols.update(extra_cols)
    row = round_row(rnd, t0, n_candidates, out, cols, acc, loss, wall_s)
    sim.chain.record(rnd, la.ids, released, row, cols, la.charged)
    recorder.append(row, cols)
    return row


def nan_losses(n: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full(n, np.nan), np.full(n, np.nan)


NAN = math.nan
