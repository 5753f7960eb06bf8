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
hand-made clients); :class:`BufferedTrigger` (``aggregation.trigger: buffered``) plugs in the
simulation's population, selector, cost model, battery and executor through the round pipeline
(simulator/loop/pipeline.py), trains each buffered update from the version its client started
with, and hands the sums to the server chain and strategy (``fedbuff``: the staleness weights
above). Its whole state (event heap, tasks in flight, model versions they need) is checkpointed,
so buffered runs resume to identical tables.
"""

from __future__ import annotations

import math
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from simulator import FedFleetError
from simulator.aggregation import Partial
from simulator.aggregation.fedbuff import staleness_weight  # noqa: F401  (re-exported)
from simulator.aggregation.strategy import (
    AggregationContext,
    Contribution,
    ServerSums,
    step_model,
)
from simulator.config.scenario import FedBuffSettings
from simulator.core import outcomes as RD
from simulator.core import rng as R
from simulator.core.clock import P_DEADLINE, P_FINISH, P_QUIT, P_WAKE, EventLoop
from simulator.core.cost import TaskCost, Timing
from simulator.fleet.population import LINK_TYPES
from simulator.loop import pipeline as P
from simulator.loop.records import client_columns, round_row
from simulator.loop.shared import Shared
from simulator.planning import Plan

if TYPE_CHECKING:
    from simulator.loop.simulation import RoundReport, Simulation

WAKE = 100  # event kind: retry filling idle slots
MIN_RETRY_S = 1.0
MAX_IDLE_REFILLS = 10_000  # consecutive refills that start nothing while nothing runs


def combine_stale(global_flat: np.ndarray, parts: Sequence[tuple[float, Partial]],
                  server_lr: float = 1.0) -> np.ndarray:
    """global + lr * sum_g s_g S_g / sum_g W_g for explicit (s_g, partial) pairs, accumulated in
    the order given (``ServerSums.mean_update`` with a weight per contribution)."""
    contribs = [Contribution(p, version=i) for i, (_, p) in enumerate(parts)]
    ws = [float(w) for w, _ in parts]
    step = ServerSums(contribs).mean_update(lambda c: ws[c.version])
    return step_model(global_flat, step, server_lr)


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


# --- the trigger ------------------------------------------------------------------------------
ROW_COST = ("download_bytes", "upload_bytes", "train_flops", "memory_bytes")
TASK_FLOAT = ("start_s", "download_s", "compute_s", "upload_s", "end_rel_s", "stop_s", "loss",
              "loss_sq")
TASK_INT = ("id", "client", "version", "outcome", "staleness", "seq")


def plan_rows(plan: Plan, n: int) -> list[dict[str, Any]]:
    """Per-task plan values (a task keeps the plan row it was started with)."""
    cols: dict[str, np.ndarray] = {k: np.broadcast_to(np.asarray(getattr(plan.cost, k)), (n,))
                                   for k in ROW_COST}
    cols["infeasible"] = np.broadcast_to(np.asarray(plan.infeasible), (n,))
    cols["kind"] = np.broadcast_to(np.asarray(plan.kind), (n,))
    extra = {f"col:{k}": np.asarray(v) for k, v in plan.columns.items()}
    return [{**{k: v[j] for k, v in cols.items()}, **{k: v[j] for k, v in extra.items()}}
            for j in range(n)]


def stack_rows(tasks: list[Task]) -> Plan:
    """One Plan whose rows are the tasks' rows of the plans they were started with."""
    def col(key: str, dtype: Any = np.float64) -> np.ndarray:
        return np.array([x.ref[0][key] for x in tasks], dtype=dtype)

    cost = TaskCost(*(col(k) for k in ROW_COST))
    keys = [k for k in (tasks[0].ref[0] if tasks else {}) if k.startswith("col:")]
    return Plan(cost, col("infeasible", bool), col("kind", object),
                {k[4:]: col(k, None) for k in keys})


class BufferedTrigger:
    """``aggregation.trigger: buffered``: one ``step`` = run the clock to the next aggregation."""

    name = "buffered"

    def __init__(self, sim: Simulation) -> None:
        self.sim = sim
        sc, pop = sim.sc, sim.pop
        self.cfg = sc.aggregation.fedbuff or FedBuffSettings()
        self.core = self._new_core()
        self.versions: dict[int, np.ndarray] = {0: sim.global_flat}
        self._wave = 0
        self._train_w = pop.profile_column(lambda p: p.energy.train_watts)
        self._radio_w = pop.profile_column(lambda p: p.energy.transmit_watts)

    def _new_core(self) -> FedBuffCore:
        sim = self.sim
        return FedBuffCore(sim.pop.size, min(self.cfg.concurrency, sim.pop.size),
                           self.cfg.buffer_size, self.cfg.max_staleness, sim.sc.rounds,
                           self._launch, sim.sc.deadline_s, self._on_end)

    # --- starting tasks -------------------------------------------------------------------------
    def _next_online_s(self, t: float, avail: np.ndarray, busy: np.ndarray) -> float:
        off = np.flatnonzero(~avail & ~busy)
        return float(self.sim.pop.seconds_until_online(t, off).min()) if off.size \
            else P.IDLE_STEP_S

    def _candidates(self, t: float, n_free: int, busy: np.ndarray
                    ) -> tuple[np.ndarray | None, int, np.ndarray | None]:
        """(candidates, how many, availability mask). Large populations: the count from the
        availability index minus the busy clients online, no list (sparse selection)."""
        sim = self.sim
        if P.sparse_ok(sim) and sim.avail_index is not None:
            busy_ids = np.flatnonzero(busy) if len(self.core.in_flight) else np.zeros(0, np.int64)
            n_free_online = sim.avail_index.count(t) - int(
                np.count_nonzero(sim.pop.available(t, busy_ids)))
            if n_free_online > n_free:  # enough: sample without listing
                return None, n_free_online, None
        avail = sim.pop.available(t)
        cand = np.flatnonzero(avail & ~busy)
        return cand, int(cand.size), avail

    def _launch(self, t: float, n_free: int, busy: np.ndarray, version: int) -> Launch:
        sim = self.sim
        sc, pop = sim.sc, sim.pop
        cand, n_cand, avail = self._candidates(t, n_free, busy)
        if n_cand == 0:
            z = np.zeros(0)
            assert avail is not None
            return Launch(np.zeros(0, np.int64), Timing(z, z, z), z, z, np.zeros(0, np.int8),
                          retry_in_s=self._next_online_s(t, avail, busy))
        wave = self._wave
        self._wave += 1
        ctx = P.context(sim, version, t, self.cfg.buffer_size)
        n = min(n_free, n_cand)
        ids = P.choose(sim, ctx, n, R.stream(sc.seed, R.SELECTION, wave), candidates=cand,
                       n_online=n_cand, exclude=busy if cand is None else None)
        running = sum(1 for x in self.core.in_flight.values()
                      if float(x.ref[0].get("col:server_wait_s", 0.0)) > 0)
        shared = Shared(sc.capacity.server_egress_bits_per_s,
                        sc.capacity.server_ingress_bits_per_s, running)
        la = P.launch(sim, version, t, ids, R.stream(sc.seed, R.DROPOUT, wave), key=(wave,),
                      shared=shared)
        blocked = np.where(la.low, RD.LOW_BATTERY,
                           np.where(la.plan.infeasible, RD.OUT_OF_MEMORY, -1)).astype(np.int8)
        rows = plan_rows(la.plan, len(ids))
        for j, row in enumerate(rows):  # what the server believed, the link the task used
            row["prior_s"] = float(la.prior_s[j]) if la.prior_s is not None else math.nan
            row["task_link"] = int(la.link_idx[j]) if la.link_idx is not None else -1
        refs = [(row, float(la.battery[j])) for j, row in enumerate(rows)]
        retry = None
        if len(ids) < n_free or (blocked >= 0).any():
            busy_now = busy.copy()
            busy_now[ids] = True
            retry = self._next_online_s(t, pop.available(t) if avail is None else avail, busy_now)
        return Launch(ids, la.timing, la.drop_after_s, pop.seconds_until_offline(t, ids), blocked,
                      refs, retry, n_cand)

    def _on_end(self, task: Task) -> None:
        sim = self.sim
        if not sim.battery.any:
            return
        rel, d, c, cid = task.end_rel_s, task.download_s, task.compute_s, task.client
        radio_s = min(max(rel, 0.0), d) + min(max(rel - d - c, 0.0), task.upload_s)
        joules = self._train_w[cid] * min(max(rel - d, 0.0), c) + self._radio_w[cid] * radio_s
        sim.battery.drain(np.array([cid]), np.array([joules]), task.stop_s)

    # --- training -------------------------------------------------------------------------------
    def _train(self, rnd: int, used: list[Task]) -> np.ndarray:
        """Train buffered updates from their start versions; hand the sums to the chain."""
        sim = self.sim
        groups: dict[tuple[int, int], list[Task]] = {}
        seen: Counter[tuple[int, int]] = Counter()
        for task in sorted(used, key=lambda x: (x.version, x.client, x.start_s, x.id)):
            occ = seen[(task.version, task.client)]  # a client twice from one version: 2 batches
            seen[(task.version, task.client)] += 1
            groups.setdefault((task.version, occ), []).append(task)
        contribs: list[Contribution] = []
        for key in sorted(groups):
            g = sorted(groups[key], key=lambda x: x.client)
            ids = np.array([x.client for x in g], np.int64)
            batch = P.jobs(sim, rnd, ids, stack_rows(g), np.ones(len(g), bool),
                           seed_keys=[(x.id, x.client) for x in g], version=key[0])
            part = P.train(sim, self.versions[key[0]], batch)
            for x, lo, lsq in zip(g, part.loss_mean, part.loss_sq_mean, strict=True):
                x.loss, x.loss_sq = float(lo), float(lsq)
            contribs.append(Contribution(part, key[0], rnd - key[0]))
        agg = AggregationContext(rnd, sim.sc.seed, sim.sc.aggregation.server_lr, self.name,
                                 noise_keys=(rnd,), expected_clients=self.cfg.buffer_size)
        return sim.chain.aggregate(sim.global_flat, ServerSums(contribs), agg)

    # --- one aggregation ------------------------------------------------------------------------
    def step(self, recorder: Any) -> RoundReport:
        from simulator.loop.simulation import RoundReport

        sim = self.sim
        wall0 = time.perf_counter()
        closed = self.core.next_aggregation()
        rnd, pop = closed.round, sim.pop
        acc = loss = math.nan
        if sim.real:
            sim.global_flat = self._train(rnd, closed.used)
            self.versions[rnd + 1] = sim.global_flat
            keep = {v for v in self.core.needed_versions() if v >= rnd + 1 - self.cfg.max_staleness}
            self.versions = {v: w for v, w in self.versions.items() if v in keep}
            acc, loss = sim.evaluate()
            sim.accuracy = acc
        tasks = closed.tasks
        ids = np.array([x.client for x in tasks], np.int64)

        def f(name: str) -> np.ndarray:
            return np.array([getattr(x, name) for x in tasks], np.float64)

        timing = Timing(f("download_s"), f("compute_s"), f("upload_s"))
        rel, d, c = f("end_rel_s"), timing.download_s, timing.compute_s  # declined: rel 0
        out = RD.RoundOutcome(np.array([x.outcome for x in tasks], np.int8), rel,
                              closed.time_s - closed.start_s, np.clip(rel, 0.0, d),
                              np.clip(rel - d, 0.0, c), np.clip(rel - d - c, 0.0, timing.upload_s))
        loss_col = f("loss")
        cols = client_columns(rnd, closed.start_s, ids, pop, stack_rows(tasks), timing, out,
                              loss_col,
                              start_s=f("start_s"),
                              model_version=np.array([x.version for x in tasks], np.int64),
                              staleness=np.array([x.staleness for x in tasks], np.int64),
                              battery_fraction=np.array([x.ref[1] for x in tasks], np.float64))
        links = np.array([int(x.ref[0].get("task_link", -1)) for x in tasks], np.int64)
        if (links >= 0).all() and len(tasks):
            cols["link"] = np.array(LINK_TYPES, dtype=object)[links]
        prior = np.array([float(x.ref[0].get("prior_s", math.nan)) for x in tasks], np.float64)
        P.observe(sim, rnd, ids, out.outcome, timing.total_s, loss_col, f("loss_sq"),
                  acc if sim.real else None, rel, prior)
        row = round_row(rnd, closed.start_s, closed.candidates, out, cols, acc, loss,
                        time.perf_counter() - wall0)
        used = {x.id for x in closed.used}
        sim.chain.record(rnd, ids, np.array([x.id in used for x in tasks], bool), row, cols, [])
        recorder.append(row, cols)
        sim.clock_s = closed.time_s
        sim.next_round = rnd + 1
        return RoundReport(rnd, sim.clock_s, acc, row["completed"], loss)

    # --- checkpoints ----------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        core = self.core
        st: dict[str, Any] = {
            "buf__wave": self._wave, "buf__version": core.version,
            "buf__round_start_s": core.round_start_s, "buf__candidates": core.candidates,
            "buf__next_id": core._next_id, "buf__wake_at": core._wake_at, "buf__idle": core._idle,
            "buf__started": core._started, "buf__now": core.loop.now,
            "buf__seq": core.loop._seq, "buf__cancelled": sorted(core.loop._cancelled),
        }
        heap = core.loop._heap
        st["buf__heap_f"] = np.array([e[0] for e in heap], np.float64)
        st["buf__heap_i"] = np.array([(e[1], e[2], e[3], -1 if e[4] is None else e[4])
                                      for e in heap], np.int64).reshape(-1, 4)
        for group, tasks in (("flight", list(core.in_flight.values())), ("buffer", core.buffer),
                             ("ended", core.ended)):
            st[f"buf__{group}_f"] = np.array([[getattr(t, k) for k in TASK_FLOAT] for t in tasks],
                                             np.float64).reshape(-1, len(TASK_FLOAT))
            st[f"buf__{group}_i"] = np.array([[getattr(t, k) for k in TASK_INT] for t in tasks],
                                             np.int64).reshape(-1, len(TASK_INT))
            st[f"buf__{group}_battery"] = np.array([t.ref[1] for t in tasks], np.float64)
            keys = list(tasks[0].ref[0]) if tasks else []
            st[f"buf__{group}_rowkeys"] = keys
            for i, k in enumerate(keys):
                col = np.array([t.ref[0][k] for t in tasks])
                st[f"buf__{group}_row{i}"] = col.astype(str) if col.dtype == object else col
        if self.sim.real:
            st["buf__versions"] = sorted(self.versions)
            for v, w in self.versions.items():
                st[f"buf__model_{v}"] = w
        return st

    def load_state_dict(self, state: dict[str, Any]) -> None:
        if "buf__version" not in state:
            return
        st = {k: state.pop(k) for k in list(state) if k.startswith("buf__")}
        core = self.core = self._new_core()
        self._wave = int(st["buf__wave"])
        core.version, core.round_start_s = int(st["buf__version"]), float(st["buf__round_start_s"])
        core.candidates, core._next_id = int(st["buf__candidates"]), int(st["buf__next_id"])
        wake = st["buf__wake_at"]
        core._wake_at = None if wake is None else float(wake)
        core._idle, core._started = int(st["buf__idle"]), bool(st["buf__started"])
        core.loop.now, core.loop._seq = float(st["buf__now"]), int(st["buf__seq"])
        core.loop._cancelled = {int(x) for x in st["buf__cancelled"]}
        hf, hi = np.asarray(st["buf__heap_f"]), np.asarray(st["buf__heap_i"]).reshape(-1, 4)
        core.loop._heap = [(float(hf[j]), int(hi[j, 0]), int(hi[j, 1]), int(hi[j, 2]),
                            None if hi[j, 3] < 0 else int(hi[j, 3])) for j in range(len(hf))]
        groups: dict[str, list[Task]] = {}
        for group in ("flight", "buffer", "ended"):
            fl = np.asarray(st[f"buf__{group}_f"]).reshape(-1, len(TASK_FLOAT))
            it = np.asarray(st[f"buf__{group}_i"]).reshape(-1, len(TASK_INT))
            battery = np.asarray(st[f"buf__{group}_battery"])
            keys = list(st[f"buf__{group}_rowkeys"])
            cols = [np.asarray(st[f"buf__{group}_row{i}"]) for i in range(len(keys))]
            tasks = []
            for j in range(len(fl)):
                ints = dict(zip(TASK_INT, (int(x) for x in it[j]), strict=True))
                floats = dict(zip(TASK_FLOAT, (float(x) for x in fl[j]), strict=True))
                row = {k: (str(c[j]) if c.dtype.kind == "U" else c[j])
                       for k, c in zip(keys, cols, strict=True)}
                t = Task(ints["id"], ints["client"], floats["start_s"], ints["version"],
                         floats["download_s"], floats["compute_s"], floats["upload_s"],
                         (row, float(battery[j])))
                for k in TASK_FLOAT[4:]:
                    setattr(t, k, floats[k])
                for k in ("outcome", "staleness", "seq"):
                    setattr(t, k, ints[k])
                tasks.append(t)
            groups[group] = tasks
        core.in_flight = {t.id: t for t in groups["flight"]}
        core.buffer, core.ended = groups["buffer"], groups["ended"]
        core.busy[:] = False
        for t in groups["flight"]:
            core.busy[t.client] = True
        if self.sim.real:
            self.versions = {int(v): np.asarray(st[f"buf__model_{int(v)}"]).copy()
                             for v in st["buf__versions"]}
