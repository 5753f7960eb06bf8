"""FedBuff: asynchronous buffered aggregation on the event loop (Nguyen et al., AISTATS 2022).

``C = concurrency`` clients train at once. When a task ends (upload done, dropout, availability
window closed, or per-task ``deadline_s`` cut) its slot is refilled at that instant from the
available idle clients (the selector picks). Every ``K = buffer_size`` arrived updates the server
aggregates, publishing model version v+1:

    new = global + server_lr * sum_i n_i s(tau_i) delta_i / sum_i n_i

with tau_i the versions published since client i started, s(tau) = 1/sqrt(1+tau) (``sqrt``) or
(1+tau)^-f (``polynomial``). Updates with tau > ``max_staleness`` are discarded on arrival
(recorded as ``straggler``). One row of rounds.parquet = one aggregation; a task is recorded in
the round during which it ended; tasks still running after the last aggregation are cancelled
(``overcommitted``). Semantics, tie-breaks and determinism: docs/clock.md.

:class:`FedBuffCore` is the pure event logic (no population, no training; unit-tested on 3-5
hand-made clients); :class:`FedBuffSimulation` plugs in the population, selector, cost model,
battery and executor, and trains each buffered update from the version its client started with.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulator import FedFleetError
from simulator.core import rng as R
from simulator.core import outcomes as RD
from simulator.aggregation import Partial
from simulator.aggregation.fedavg import SCALE
from simulator.core.clock import P_DEADLINE, P_FINISH, P_QUIT, P_WAKE, EventLoop
from simulator.core.cost import TaskCost, Timing, estimate_clients
from simulator.loop.simulation import IDLE_STEP_S, RoundReport, Simulation
from simulator.core.jobs import JobBatch
from simulator.planning import Plan
from simulator.io.recording import Recorder
from simulator.loop.records import client_columns, round_row
from simulator.config.scenario import FedBuffSettings, Scenario
from simulator.selection import RoundContext, RoundFeedback

WAKE = 100  # event kind: retry filling idle slots
MIN_RETRY_S = 1.0
MAX_IDLE_REFILLS = 10_000  # consecutive refills that start nothing while nothing runs


def staleness_weight(tau: int | np.ndarray, kind: str = "sqrt", exponent: float = 0.5) -> Any:
    """s(tau): 1/sqrt(1+tau) (FedScale's FedBuff) or (1+tau)^-exponent."""
    t = np.asarray(tau, np.float64)
    return 1.0 / np.sqrt(1.0 + t) if kind == "sqrt" else (1.0 + t) ** (-float(exponent))


def combine_stale(global_flat: np.ndarray, parts: Sequence[tuple[float, Partial]],
                  server_lr: float = 1.0) -> np.ndarray:
    """Apply staleness-weighted partial sums: global + lr * sum_g s_g S_g / sum_g W_g.

    Each partial's fixed-point sum S_g (exact, layout-independent) is scaled by its group's float
    weight s_g and accumulated in float64 *in the order given* (callers sort by start version),
    so the result is deterministic. With one group and s = 1 this equals ``apply_fedavg``.
    """
    num = np.zeros(global_flat.shape[0], np.float64)
    den = np.zeros(global_flat.shape[0], np.float64)
    for w, p in parts:
        num += float(w) * (p.sum_q.astype(np.float64) / SCALE)
        den += p.weight
    step = np.zeros_like(num)
    nz = den > 0
    step[nz] = num[nz] / den[nz]
    return (global_flat.astype(np.float64) + server_lr * step).astype(global_flat.dtype)


# --- the event logic --------------------------------------------------------------------------
@dataclass(slots=True)
class Task:
    id: int
    client: int
    start_s: float
    version: int  # global version the client trains from
    download_s: float
    compute_s: float
    upload_s: float
    ref: Any = None  # caller's payload
    end_rel_s: float = 0.0  # seconds after start when it ended (planned; cut if cancelled)
    outcome: int = -1
    stop_s: float = math.nan
    staleness: int = 0
    seq: int = -1
    loss: float = math.nan
    loss_sq: float = math.nan


@dataclass
class Launch:
    """Tasks to start now (aligned arrays); ``blocked`` >= 0 is an outcome code for a client
    that declines at once (out_of_memory, low_battery). ``retry_in_s``: when to try again if
    slots stay free (None: only when a running task ends)."""

    ids: np.ndarray
    timing: Timing
    drop_after_s: np.ndarray
    offline_after_s: np.ndarray
    blocked: np.ndarray
    refs: Sequence[Any] = ()
    retry_in_s: float | None = None
    candidates: int = 0


@dataclass
class Closed:
    """One aggregation: the updates it used and every task recorded in its round."""

    round: int
    start_s: float
    time_s: float
    used: list[Task]
    tasks: list[Task] = field(default_factory=list)
    final: bool = False
    candidates: int = 0


StartFn = Callable[[float, int, np.ndarray, int], Launch]  # (t, free slots, busy mask, version)


class FedBuffCore:
    def __init__(self, n_clients: int, concurrency: int, buffer_size: int, max_staleness: int,
                 rounds: int, start: StartFn, deadline_s: float | None = None,
                 on_end: Callable[[Task], None] | None = None) -> None:
        self.c, self.k, self.s_max, self.rounds = concurrency, buffer_size, max_staleness, rounds
        self.start, self.on_end = start, on_end
        self.limit = math.inf if deadline_s is None else float(deadline_s)
        self.loop = EventLoop()
        self.busy = np.zeros(n_clients, bool)
        self.in_flight: dict[int, Task] = {}
        self.buffer: list[Task] = []
        self.ended: list[Task] = []
        self.version = 0
        self.round_start_s = 0.0
        self.candidates = 0
        self._next_id = 0
        self._wake_at: float | None = None
        self._idle = 0
        self._started = False

    def needed_versions(self) -> set[int]:
        """Versions some running task trains from (plus the current one)."""
        return {t.version for t in self.in_flight.values()} | {self.version}

    def next_aggregation(self) -> Closed:
        if self.version >= self.rounds:
            raise FedFleetError("fedbuff: all rounds are done")
        if not self._started:
            self._started = True
            self._refill(self.loop.now)
        loop = self.loop
        while True:
            ev = loop.pop()
            if ev is None:
                raise FedFleetError("aggregation.fedbuff: no client is running and none can "
                                    "start (all unavailable, out of memory or low on battery)")
            t, _, _, kind, tid = ev
            if kind == WAKE:
                self._wake_at = None
                self._refill(t)
                continue
            task = self.in_flight.pop(tid)
            self._end(task, t, kind)
            if task.outcome == RD.COMPLETED:
                self.buffer.append(task)
                if len(self.buffer) >= self.k:
                    closed = self._close(t)
                    if not closed.final:
                        self._refill(t)
                    return closed
            if loop.peek_time() > t:  # refill once per instant, after all its events
                self._refill(t)

    def _end(self, task: Task, t: float, code: int) -> None:
        self.busy[task.client] = False
        task.stop_s = t
        task.staleness = self.version - task.version
        stale = code == RD.COMPLETED and task.staleness > self.s_max
        task.outcome = RD.STRAGGLER if stale else code
        if self.on_end is not None:
            self.on_end(task)
        if task.outcome != RD.COMPLETED:
            self.ended.append(task)

    def _close(self, t: float) -> Closed:
        final = self.version + 1 >= self.rounds
        if final:  # the run ends: nobody needs the running tasks any more
            for task in sorted(self.in_flight.values(), key=lambda x: x.id):
                self.loop.cancel(task.seq)
                task.end_rel_s = t - task.start_s
                self._end(task, t, RD.OVERCOMMITTED)
            self.in_flight.clear()
        tasks = sorted(self.buffer + self.ended, key=lambda x: (x.client, x.start_s, x.id))
        closed = Closed(self.version, self.round_start_s, t, self.buffer, tasks, final,
                        self.candidates)
        self.buffer, self.ended = [], []
        self.version += 1
        self.round_start_s = t
        return closed

    def _refill(self, t: float) -> None:
        free = self.c - len(self.in_flight)
        if free <= 0:
            return
        go = self.start(t, free, self.busy, self.version)
        self.candidates = go.candidates
        tm = go.timing
        total = tm.total_s
        quit_at = np.minimum(go.drop_after_s, go.offline_after_s)
        finish = (quit_at >= total) & (total <= self.limit)
        quits = ~finish & (quit_at <= self.limit)
        at = np.where(finish, total, np.where(quits, quit_at, self.limit))
        code = np.where(finish, RD.COMPLETED, np.where(
            quits, np.where(go.drop_after_s <= go.offline_after_s, RD.DROPPED, RD.OFFLINE),
            RD.STRAGGLER))
        prio = np.where(finish, P_FINISH, np.where(quits, P_QUIT, P_DEADLINE))
        for j in range(len(go.ids)):
            task = Task(self._next_id, int(go.ids[j]), t, self.version, float(tm.download_s[j]),
                        float(tm.compute_s[j]), float(tm.upload_s[j]),
                        go.refs[j] if len(go.refs) else None)
            self._next_id += 1
            if go.blocked[j] >= 0:  # declined at once: recorded, holds no slot
                task.stop_s, task.outcome = t, int(go.blocked[j])
                self.ended.append(task)
                continue
            task.end_rel_s = float(at[j])
            task.seq = self.loop.schedule(t + task.end_rel_s, int(code[j]), task.id, int(prio[j]))
            self.in_flight[task.id] = task
            self.busy[task.client] = True
        if len(self.in_flight) < self.c and go.retry_in_s is not None and self._wake_at is None:
            self._wake_at = t + max(float(go.retry_in_s), MIN_RETRY_S)
            self.loop.schedule(self._wake_at, WAKE, None, P_WAKE)
        self._idle = 0 if self.in_flight else self._idle + 1
        if self._idle > MAX_IDLE_REFILLS:
            raise FedFleetError(f"aggregation.fedbuff: no task could start in {MAX_IDLE_REFILLS} "
                                "tries (all candidates out of memory or low on battery?)")


# --- the simulation ---------------------------------------------------------------------------
class FedBuffSimulation(Simulation):
    """``aggregation.method: fedbuff``: one ``step`` = run the clock to the next aggregation."""

    def __init__(self, sc: Scenario) -> None:
        super().__init__(sc)
        self.cfg = sc.aggregation.fedbuff or FedBuffSettings()
        pop = self.pop
        self.core = FedBuffCore(pop.size, min(self.cfg.concurrency, pop.size), self.cfg.buffer_size,
                                self.cfg.max_staleness, sc.rounds, self._launch, sc.deadline_s,
                                self._on_end)
        self.versions: dict[int, np.ndarray] = {0: self.global_flat}
        self._wave = 0
        self._train_w = pop.profile_column(lambda p: p.energy.train_watts)
        self._radio_w = pop.profile_column(lambda p: p.energy.transmit_watts)

    # --- starting tasks -------------------------------------------------------------------------
    def _next_online_s(self, t: float, avail: np.ndarray, busy: np.ndarray) -> float:
        off = np.flatnonzero(~avail & ~busy)
        return float(self.pop.seconds_until_online(t, off).min()) if off.size else IDLE_STEP_S

    def _launch(self, t: float, n_free: int, busy: np.ndarray, version: int) -> Launch:
        sc, pop = self.sc, self.pop
        avail = pop.available(t)
        cand = np.flatnonzero(avail & ~busy)
        if cand.size == 0:
            z = np.zeros(0)
            return Launch(np.zeros(0, np.int64), Timing(z, z, z), z, z, np.zeros(0, np.int8),
                          retry_in_s=self._next_online_s(t, avail, busy))
        wave = self._wave
        self._wave += 1
        ctx = RoundContext(version, t, pop, self.cfg.buffer_size, sc.deadline_s,
                           self._estimate_fn(version), self.accuracy)
        n = min(n_free, cand.size)
        ids = np.sort(self.selector.select(ctx, cand, n, R.stream(sc.seed, R.SELECTION, wave)))
        plan = self.planner.plan(version, ids, pop)
        timing = estimate_clients(pop, ids, plan.cost)
        drop = RD.draw_dropout_after_s(pop.dropout_hazard_per_s[ids],
                                       R.stream(sc.seed, R.DROPOUT, wave))
        frac = self.battery.fraction(t, ids)
        blocked = np.where(self.battery.is_low(frac), RD.LOW_BATTERY,
                           np.where(plan.infeasible, RD.OUT_OF_MEMORY, -1)).astype(np.int8)
        refs = [(plan, j, float(frac[j])) for j in range(len(ids))]
        retry = None
        if len(ids) < n_free or (blocked >= 0).any():
            busy_now = busy.copy()
            busy_now[ids] = True
            retry = self._next_online_s(t, avail, busy_now)
        return Launch(ids, timing, drop, pop.seconds_until_offline(t, ids), blocked, refs,
                      retry, int(cand.size))

    def _on_end(self, task: Task) -> None:
        if not self.battery.any:
            return
        rel, d, c, cid = task.end_rel_s, task.download_s, task.compute_s, task.client
        radio_s = min(max(rel, 0.0), d) + min(max(rel - d - c, 0.0), task.upload_s)
        joules = self._train_w[cid] * min(max(rel - d, 0.0), c) + self._radio_w[cid] * radio_s
        self.battery.drain(np.array([cid]), np.array([joules]), task.stop_s)

    # --- training ------------------------------------------------------------------------------
    def _train(self, rnd: int, used: list[Task]) -> np.ndarray:
        """Train buffered updates from their start versions; combine with staleness weights."""
        groups: dict[tuple[int, int], list[Task]] = {}
        seen: Counter[tuple[int, int]] = Counter()
        for task in sorted(used, key=lambda x: (x.version, x.client, x.start_s, x.id)):
            occ = seen[(task.version, task.client)]  # a client twice from one version: 2 batches
            seen[(task.version, task.client)] += 1
            groups.setdefault((task.version, occ), []).append(task)
        parts: list[tuple[float, Partial]] = []
        for key in sorted(groups):
            g = sorted(groups[key], key=lambda x: x.client)
            ids = np.array([x.client for x in g], np.int64)
            seeds = np.array([R.int_seed(self.sc.seed, R.TRAINING, x.id, x.client) for x in g],
                             np.uint64)
            plan0 = g[0].ref[0]
            assignment = {k: np.array([x.ref[0].columns[k][x.ref[1]] for x in g])
                          for k in plan0.columns}
            assignment["kind"] = np.array([x.ref[0].kind[x.ref[1]] for x in g], dtype=object)
            part = self.executor.run(self.versions[key[0]],  # type: ignore[union-attr]
                                     JobBatch(rnd, ids, seeds, assignment)).sorted()
            for x, lo, lsq in zip(g, part.loss_mean, part.loss_sq_mean):
                x.loss, x.loss_sq = float(lo), float(lsq)
            cfg = self.cfg
            parts.append((float(staleness_weight(rnd - key[0], cfg.staleness,
                                                 cfg.staleness_exponent)), part))
        return combine_stale(self.global_flat, parts, self.sc.aggregation.server_lr)

    # --- one aggregation -----------------------------------------------------------------------
    def step(self, recorder: Recorder) -> RoundReport:
        wall0 = time.perf_counter()
        closed = self.core.next_aggregation()
        rnd, pop = closed.round, self.pop
        acc = loss = math.nan
        if self.real:
            self.global_flat = self._train(rnd, closed.used)
            self.versions[rnd + 1] = self.global_flat
            keep = {v for v in self.core.needed_versions() if v >= rnd + 1 - self.cfg.max_staleness}
            self.versions = {v: w for v, w in self.versions.items() if v in keep}
            acc, loss = self.executor.evaluate(self.global_flat)  # type: ignore[union-attr]
            self.accuracy = acc
        tasks = closed.tasks
        ids = np.array([x.client for x in tasks], np.int64)
        f = lambda name: np.array([getattr(x, name) for x in tasks], np.float64)
        timing = Timing(f("download_s"), f("compute_s"), f("upload_s"))
        rel, d, c = f("end_rel_s"), timing.download_s, timing.compute_s  # declined: rel 0
        out = RD.RoundOutcome(np.array([x.outcome for x in tasks], np.int8), rel,
                              closed.time_s - closed.start_s, np.clip(rel, 0.0, d),
                              np.clip(rel - d, 0.0, c), np.clip(rel - d - c, 0.0, timing.upload_s))
        loss_col = f("loss")
        cols = client_columns(rnd, closed.start_s, ids, pop, _stack_plans(tasks), timing, out,
                              loss_col,
                              start_s=f("start_s"),
                              model_version=np.array([x.version for x in tasks], np.int64),
                              staleness=np.array([x.staleness for x in tasks], np.int64),
                              battery_fraction=np.array([x.ref[2] for x in tasks], np.float64))
        self.selector.observe(RoundFeedback(rnd, ids, out.outcome, timing.total_s,
                                            pop.n_samples[ids], loss_col, f("loss_sq"),
                                            acc if self.real else None))
        row = round_row(rnd, closed.start_s, closed.candidates, out, cols, acc, loss,
                        time.perf_counter() - wall0)
        recorder.append(row, cols)
        self.clock_s = closed.time_s
        self.next_round = rnd + 1
        return RoundReport(rnd, self.clock_s, acc, row["completed"])

    def checkpoint(self, recorder: Recorder) -> None:
        raise FedFleetError("output.checkpoint_every: checkpoints are not supported with "
                            "aggregation.method fedbuff (set it to 0)")

    def restore(self, recorder: Recorder) -> None:
        self.checkpoint(recorder)


def _stack_plans(tasks: list[Task]) -> Plan:
    """One Plan whose rows are the tasks' rows of the plans they were started with."""
    def col(get: Callable[[Plan], np.ndarray], dtype: Any = np.float64) -> np.ndarray:
        return np.array([get(x.ref[0])[x.ref[1]] for x in tasks], dtype=dtype)

    def extra(key: str) -> np.ndarray:
        return col(lambda p: p.columns[key], None)

    cost = TaskCost(col(lambda p: p.cost.download_bytes), col(lambda p: p.cost.upload_bytes),
                    col(lambda p: p.cost.train_flops), col(lambda p: p.cost.memory_bytes))
    keys = tasks[0].ref[0].columns if tasks else {}
    return Plan(cost, col(lambda p: p.infeasible, bool), col(lambda p: p.kind, object),
                {k: extra(k) for k in keys})


def make_simulation(sc: Scenario) -> Simulation:
    """The scenario's round loop: synchronous (engine.Simulation) or FedBuff."""
    return FedBuffSimulation(sc) if sc.aggregation.method == "fedbuff" else Simulation(sc)
