"""Oort: guided participant selection (Lai, Zhu, Madhyastha & Chowdhury, OSDI'21).

Paper: "Oort: Efficient Federated Learning via Guided Participant Selection", OSDI 2021;
reference code github.com/SymbioticLab/Oort (also FedScale's ``oort`` sampler).

Per client (population-sized columns):

- statistical utility ``U_i = |B_i| * sqrt(mean(loss^2))`` from its last completed round
  (``|B_i|`` its sample count, the loss moments from the training feedback);
- its last observed (or, before that, estimated) duration ``t_i``, the round it was last
  invited ``t_last_i`` (1-based) and its completed participations.

Each round ``t`` (1-based):

- explored candidates score ``(norm(min(U_i, clip)) + sqrt(c * ln(t) / t_last_i)) *
  (T / t_i)^alpha`` (the penalty only when ``t_i > T``), where ``norm`` maps utilities to [0, 1]
  over the candidates with ``U > 0``, ``clip`` is their ``clip_bound`` quantile and ``T`` is the
  preferred round duration: the ``preferred_percentile`` of the candidates' durations;
- a fraction ``max(exploration_factor * exploration_decay^round, exploration_floor)`` of the
  picks goes to never-invited candidates, weighted by data size times the same duration penalty
  on their *estimated* duration, drawn from the best ``sample_window`` x picks (faster first);
- the rest exploits: a pool of every candidate scoring at least ``cut_off`` x the k-th best
  score (and at least ``pool_factor`` x k candidates) is sampled with probability proportional
  to score;
- the pacer: every ``pacer_step`` rounds, when the exploited utility of the last window is
  within 10% of the window before, ``T``'s percentile rises by ``pacer_delta`` (admit slower
  clients); when it changed more than 5x, it falls by ``pacer_delta``;
- optionally, clients with ``blacklist_after`` completed participations are no longer exploited.

Departures from the reference code (documented choices): a negative normalised utility is
clipped at 0 rather than taking ``abs``; a client invited but not completing keeps its last
utility (0 if none) and counts as explored, so a device that always straggles scores only its
staleness bonus times its duration penalty; a client that cannot fit the workload in memory
gets an infinite duration (score 0).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from simulator.config.selection import OortParams
from simulator.core import outcomes as R
from simulator.fleet.population import Population
from simulator.selection.base import RoundContext, RoundFeedback
from simulator.selection.common import ColumnState, top_k, uniform_sample, weighted_sample


def _params(scenario: Any, params: OortParams | None) -> OortParams:
    if params is not None:
        return params
    return scenario.selection.oort if scenario is not None else OortParams()


class OortSelector(ColumnState):
    _columns = ("utility", "duration_s", "last_round", "completed", "explored", "last_exploit")
    _scalars = ("percentile", "history")

    def __init__(self, scenario: Any, population: Population,
                 params: OortParams | None = None) -> None:
        self.p = _params(scenario, params)
        n = population.size
        self.n_samples = np.asarray(population.n_samples, np.float64)
        self.utility = np.zeros(n, np.float64)
        self.duration_s = np.full(n, np.nan, np.float64)
        self.last_round = np.zeros(n, np.int64)  # 1-based round of the last invitation, 0: never
        self.completed = np.zeros(n, np.int32)
        self.explored = np.zeros(n, bool)
        self.last_exploit = np.zeros(0, np.int64)
        self.percentile = float(self.p.preferred_percentile)
        self.history: list[float] = []  # exploited utility per round (last 2 pacer windows)

    def _variable_columns(self) -> tuple[str, ...]:
        return ("last_exploit",)

    # --- selection ------------------------------------------------------------------------------
    def exploration_fraction(self, rnd: int) -> float:
        p = self.p
        return max(p.exploration_factor * p.exploration_decay ** rnd, p.exploration_floor)

    def _durations(self, ctx: RoundContext, cands: np.ndarray) -> np.ndarray:
        unknown = cands[np.isnan(self.duration_s[cands])]
        if unknown.size:  # registered with the cost model's estimate, as Oort does from traces
            self.duration_s[unknown] = ctx.estimate_s(unknown)
        return self.duration_s[cands]

    def preferred_duration(self, dur: np.ndarray) -> float:
        """T: the ``percentile``-th order statistic of the durations (as Oort's code takes it)."""
        finite = dur[np.isfinite(dur)]
        if self.percentile >= 100 or finite.size == 0:
            return math.inf
        i = min(int(finite.size * self.percentile / 100.0), finite.size - 1)
        return float(np.partition(finite, i)[i])

    def penalty(self, dur: np.ndarray, pref: float) -> np.ndarray:
        with np.errstate(divide="ignore"):
            pen = np.minimum(pref / dur, 1.0)  # 1 unless slower than T; inf duration -> 0
        np.power(pen, self.p.alpha, out=pen)
        if self.p.alpha == 0:
            pen[np.isinf(dur)] = 0.0  # still never exploit a client that cannot run
        return pen

    def scores(self, ids: np.ndarray, pen: np.ndarray, rnd: int) -> np.ndarray:
        """Exploitation scores of explored clients ``ids`` (``pen``: their duration penalty)."""
        u = self.utility[ids]
        pos = u[u > 0]
        if pos.size:
            q = min(int(pos.size * self.p.clip_bound), pos.size - 1)
            clip = float(np.partition(pos, q)[q])
            lo = float(pos.min()) * 0.999
            rng_u = max(float(pos.max()) - lo, 1e-4)
            norm = np.maximum(np.minimum(u, clip) - lo, 0.0) / rng_u
        else:
            norm = np.zeros(len(ids))
        t = rnd + 1  # last_round <= t: a lookup table is cheaper than 1M square roots
        table = np.sqrt(self.p.staleness_weight * math.log(t) / np.maximum(np.arange(t + 1), 1))
        bonus = table[np.minimum(self.last_round[ids], t)]
        return (norm + bonus) * pen

    def _exploit(self, ids: np.ndarray, score: np.ndarray, k: int,
                 rng: np.random.Generator) -> np.ndarray:
        if k <= 0:
            return ids[:0]
        if k >= len(ids):
            return ids.copy()
        kth = float(np.partition(-score, k)[k]) * -1.0  # the (k+1)-th best score
        n_above = int(np.count_nonzero(score >= kth * self.p.cut_off))
        pool_n = max(n_above, min(len(ids), int(self.p.pool_factor * k) + 1))
        pool = top_k(ids, score, pool_n)
        return weighted_sample(ids[pool], score[pool], k, rng)

    def _explore(self, ids: np.ndarray, pen: np.ndarray, k: int,
                 rng: np.random.Generator) -> np.ndarray:
        if k <= 0:
            return ids[:0]
        if k >= len(ids):
            return ids.copy()
        init = self.n_samples[ids] * pen  # Oort seeds an arm's reward with its data size
        window = top_k(ids, init, max(k, int(self.p.sample_window * k)))
        return weighted_sample(ids[window], init[window], k, rng)

    def select(self, ctx: RoundContext, candidates: np.ndarray, n: int,
               rng: np.random.Generator) -> np.ndarray:
        cands = np.asarray(candidates, np.int64)
        self._pace(ctx.round)
        if n <= 0 or cands.size == 0:
            self.last_exploit = cands[:0]
            return cands[:0]
        dur = self._durations(ctx, cands)
        pen = self.penalty(dur, self.preferred_duration(dur))
        explored = self.explored[cands]
        usable = explored.copy()
        if self.p.blacklist_after is not None:
            usable &= self.completed[cands] < self.p.blacklist_after
        exp_ids, exp_pen = cands[usable], pen[usable]
        new_ids, new_pen = cands[~explored], pen[~explored]
        n_exploit = min(int(n * (1.0 - self.exploration_fraction(ctx.round))), exp_ids.size)
        n_explore = min(new_ids.size, n - n_exploit)
        n_exploit = min(n - n_explore, exp_ids.size)  # few unexplored left: exploit the rest
        exploit = self._exploit(exp_ids, self.scores(exp_ids, exp_pen, ctx.round), n_exploit, rng)
        explore = self._explore(new_ids, new_pen, n_explore, rng)
        chosen = np.concatenate([exploit, explore])
        if chosen.size < min(n, cands.size):  # blacklist left too few: top up at random
            left = np.setdiff1d(cands, chosen, assume_unique=True)
            chosen = np.concatenate([chosen, uniform_sample(left, min(n, cands.size) - chosen.size,
                                                            rng)])
        self.last_exploit = np.sort(exploit)
        return np.sort(chosen)

    # --- feedback -------------------------------------------------------------------------------
    def observe(self, feedback: RoundFeedback) -> None:
        ids = np.asarray(feedback.client_ids, np.int64)
        out = np.asarray(feedback.outcome)
        self.explored[ids] = True
        self.last_round[ids] = feedback.round + 1
        self.duration_s[ids] = np.where(out == R.OUT_OF_MEMORY, np.inf, feedback.duration_s)
        done = (out == R.COMPLETED) & np.isfinite(feedback.train_loss_sq)
        n = np.asarray(feedback.n_samples, np.float64)[done]
        self.utility[ids[done]] = n * np.sqrt(np.maximum(feedback.train_loss_sq[done], 0.0))
        self.completed[ids[done]] += 1
        self.history.append(float(self.utility[self.last_exploit].sum()))
        del self.history[: max(0, len(self.history) - 2 * self.p.pacer_step)]

    def _pace(self, rnd: int) -> None:
        step = self.p.pacer_step
        if rnd < 2 * step or rnd % step or len(self.history) < 2 * step:
            return
        last = sum(self.history[-2 * step: -step])
        cur = sum(self.history[-step:])
        if abs(cur - last) <= 0.1 * last:  # utility stalled: admit slower clients
            self.percentile = min(100.0, self.percentile + self.p.pacer_delta)
        elif abs(cur - last) >= 5 * last:  # changed sharply: tighten again
            self.percentile = max(self.p.pacer_delta, self.percentile - self.p.pacer_delta)
