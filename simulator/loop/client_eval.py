"""Client-side evaluation in the round pipeline (the ``evaluation:`` block; pure numpy).

Every trigger (sync, buffered, hierarchical, a plugin's) records a round with
``recorder.append(row, cols)``; :meth:`ClientEvaluation.wrap` puts itself in front of the
recorder (in :meth:`Simulation.step`), so the one place below adds the client columns to every
round row, whatever the trigger. In round ``r`` with ``r % client_every == 0`` a sample of
``clients_per_round`` clients, drawn from ``(seed, CLIENT_EVAL, r)`` among the clients that hold
out at least one sample, evaluates the round's new global model (``sim.global_flat`` as recorded)
on its own held-out split, on the executor host that holds its data; only scalars come back.

The draw depends on the seed and the round only: tables are identical on any executor layout and
after a resume. Client evaluation is a measurement: it is not charged simulated time, energy or
bytes (the round's ``duration_s``, ``sim_end_s`` are those of the run without it).

Columns (float64, NaN in rounds without client evaluation; ``clients_evaluated`` int64, 0):

- ``clients_evaluated``: clients whose held-out accuracy the statistics below summarise;
- ``client_acc_mean``, ``client_acc_median``, ``client_acc_p10`` (numpy's linear-interpolation
  10th percentile), ``client_acc_worst10`` (the mean accuracy of the ``ceil(n / 10)`` clients with
  the lowest accuracy), ``client_loss_mean``: the global model on each client's held-out split;
- ``personalized_acc_mean`` / ``_median`` / ``_p10`` / ``_worst10``, ``personalized_loss_mean``:
  the same after ``personalize_steps`` local fine-tuning steps (NaN when ``personalize_steps`` is
  0).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from simulator.config.evaluation import CLIENT_EVAL, PERSONALIZE
from simulator.core import rng as R

STATS = ("mean", "median", "p10", "worst10")
COLUMNS = ("clients_evaluated",
           *(f"client_acc_{s}" for s in STATS), "client_loss_mean",
           *(f"personalized_acc_{s}" for s in STATS), "personalized_loss_mean")


def worst_decile_mean(acc: np.ndarray) -> float:
    """Mean of the lowest ``ceil(n / 10)`` values (at least one); NaN for none."""
    a = np.sort(np.asarray(acc, np.float64))
    if a.size == 0:
        return math.nan
    return float(a[:max(1, math.ceil(a.size / 10))].mean())


def summarize(acc: np.ndarray, prefix: str) -> dict[str, float]:
    """``{prefix}_mean``, ``_median``, ``_p10``, ``_worst10`` of the finite values of ``acc``."""
    a = np.asarray(acc, np.float64)
    a = a[np.isfinite(a)]
    if a.size == 0:
        return {f"{prefix}_{s}": math.nan for s in STATS}
    return {f"{prefix}_mean": float(a.mean()), f"{prefix}_median": float(np.median(a)),
            f"{prefix}_p10": float(np.percentile(a, 10)),
            f"{prefix}_worst10": worst_decile_mean(a)}


def _mean(x: np.ndarray) -> float:
    x = x[np.isfinite(x)]
    return float(x.mean()) if x.size else math.nan


def row_of(table: np.ndarray) -> dict[str, Any]:
    """The rounds.parquet columns from the executor's ``[n, 4]`` table (loss, accuracy,
    personalised loss, personalised accuracy per client)."""
    t = np.asarray(table, np.float64).reshape(-1, 4)
    ok = np.isfinite(t[:, 1])
    t = t[ok]
    row: dict[str, Any] = {"clients_evaluated": int(ok.sum())}
    row.update(summarize(t[:, 1], "client_acc"))
    row["client_loss_mean"] = _mean(t[:, 0])
    row.update(summarize(t[:, 3], "personalized_acc"))
    row["personalized_loss_mean"] = _mean(t[:, 2])
    return {k: row[k] for k in COLUMNS}


def empty_row() -> dict[str, Any]:
    return {k: (0 if k == "clients_evaluated" else math.nan) for k in COLUMNS}


class ClientEvaluation:
    """Samples and evaluates clients for a simulation (``on`` is False when the block is off)."""

    def __init__(self, sim: Any) -> None:  # a simulator.loop.simulation.Simulation
        self.sim = sim
        ev = sim.sc.evaluation
        self.cfg = ev
        self.on = bool(sim.real and ev.on)
        self.last: dict[str, Any] = {}  # the last evaluated round's ids and per-client table
        n_test = getattr(sim.dataset, "n_test", None)
        holds = (np.asarray(n_test) >= 1) if self.on and n_test is not None else np.zeros(0, bool)
        # Every client holds out a sample (the usual case): draw from range(N), no id list
        # (the same draw as from the list of all ids; O(k) memory on huge populations).
        self.n_eligible = int(holds.sum())
        self.eligible: np.ndarray | None = None if holds.all() else np.flatnonzero(holds)

    def due(self, rnd: int) -> bool:
        return self.on and rnd % self.cfg.client_every == 0

    def sample(self, rnd: int) -> np.ndarray:
        """Sorted ids of round ``rnd``'s evaluated clients."""
        k = min(self.cfg.clients_per_round, self.n_eligible)
        g = R.stream(self.sim.sc.seed, CLIENT_EVAL, rnd)
        pool = self.n_eligible if self.eligible is None else self.eligible
        return np.sort(g.choice(pool, size=k, replace=False)).astype(np.int64)

    def seeds(self, rnd: int, ids: np.ndarray) -> np.ndarray:
        return np.array([R.int_seed(self.sim.sc.seed, PERSONALIZE, rnd, int(c)) for c in ids],
                        np.uint64)

    def row(self, rnd: int) -> dict[str, Any]:
        if not self.due(rnd):
            return empty_row()
        ids = self.sample(rnd)
        if ids.size == 0:
            return empty_row()
        table = self.sim.executor.evaluate_clients(self.sim.global_flat, ids,
                                                   self.seeds(rnd, ids),
                                                   self.cfg.personalize_steps)
        self.last = {"round": rnd, "client_ids": ids, "table": np.asarray(table)}
        return row_of(table)

    def wrap(self, recorder: Any) -> Any:
        return _Recording(recorder, self) if self.on else recorder


class _Recording:
    """The recorder with the client columns added to each round row."""

    def __init__(self, inner: Any, ev: ClientEvaluation) -> None:
        self._inner, self._ev = inner, ev

    def append(self, round_row: dict[str, Any], client_cols: dict[str, np.ndarray]) -> None:
        round_row.update(self._ev.row(int(round_row["round"])))
        self._inner.append(round_row, client_cols)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._inner, name)
