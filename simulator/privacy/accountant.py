"""Privacy accounting with dp-accounting's RDP accountant (Mironov 2017; Google's dp-accounting).

Central DP (McMahan et al. 2018: user-level, add-or-remove-one neighbouring relation,
sensitivity C of the unweighted sum): round r composes one
``PoissonSampledDpEvent(q_r, GaussianDpEvent(z_r))``, with q_r the rate at which the round
really sampled users (docs/privacy-hierarchy.md, "Which sampling rate"):

- sync trigger: q_r = invited / online at the round's start (ceil(k x overcommit) drawn
  uniformly from the clients online; the first k finishers are a subset of them, so the rate of
  contributing is at most q_r). Uniform fixed-size sampling is accounted as Poisson sampling
  with the same rate, as McMahan et al. and TF Privacy do.
- hierarchical trigger: the largest invited / online among the edges (each edge adds its own
  noise to its own clients' sum: a client's round is its edge's mechanism).
- buffered trigger (FedBuff): waves started whenever a slot frees up are not a subsample of a
  fixed population, so no amplification is claimed: q_r = 1 and z_r = z / m_r, m_r the most
  updates one client has in the aggregated buffer (its sensitivity is m_r C).
- ``privacy.sampling_rate`` set: that q every round (the deployment asserts it).

Only selectors that sample uniformly (``samples:uniform``, e.g. ``random``) are accepted with
central DP (config/privacy.py). The ledger keeps the running sum of the per-round RDP curves
(checkpointed), and one curve per distinct (q, z) (~60 ms each to compute).

Local DP: a client's own release is a Gaussian mechanism on a vector of norm <= C, so any two of its
possible updates differ by up to 2C: the effective noise multiplier is z/2. The server knows who
sent, so there is no amplification by sampling: a client that sent m updates has spent
``m x GaussianDpEvent(z/2)``. The round's epsilon is that of the most frequent participant.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np


def _dp():  # type: ignore[no-untyped-def]
    import dp_accounting  # heavy import (scipy): only when privacy is on

    return dp_accounting


@contextmanager
def _quiet_absl() -> Iterator[None]:
    """dp-accounting logs a warning for every fractional RDP order whose series does not converge
    (it then drops that order, which only loosens the bound); keep runs' output clean."""
    log = logging.getLogger("absl")
    old = log.level
    log.setLevel(logging.ERROR)
    try:
        yield
    finally:
        log.setLevel(old)


def reference_epsilon(q: float, z: float, rounds: int, delta: float) -> float:
    """Epsilon straight from dp-accounting's public API (the value the ledger must match)."""
    dp = _dp()
    acc = dp.rdp.RdpAccountant()
    gauss = dp.GaussianDpEvent(z)
    event = gauss if q >= 1.0 else dp.PoissonSampledDpEvent(q, gauss)
    with _quiet_absl():
        acc.compose(event, rounds)
        return float(acc.get_epsilon(delta))


class RdpCurve:
    """The RDP curve of one event; epsilon after ``count`` compositions of it."""

    def __init__(self, q: float, z: float) -> None:
        dp = _dp()
        self.infinite = z <= 0
        acc = dp.rdp.RdpAccountant()
        if not self.infinite:
            gauss = dp.GaussianDpEvent(z)
            with _quiet_absl():
                acc.compose(gauss if q >= 1.0 else dp.PoissonSampledDpEvent(q, gauss), 1)
        self.orders = acc.orders
        self.rdp = acc.rdp
        self._compute_epsilon = dp.rdp.compute_epsilon
        self._cache: dict[int, float] = {}

    def epsilon_of(self, rdp: np.ndarray, delta: float) -> float:
        """Epsilon of an RDP curve on this curve's orders (e.g. a sum of several curves)."""
        if not np.isfinite(rdp).any():
            return math.inf
        return float(self._compute_epsilon(self.orders, rdp, delta)[0])

    def epsilon(self, count: int, delta: float) -> float:
        if count <= 0:
            return 0.0
        if self.infinite:
            return math.inf
        hit = self._cache.get(count)
        if hit is None:
            # compose(event, count) adds count * rdp to zeros: the same float operations.
            hit = float(self._compute_epsilon(self.orders, count * self.rdp, delta)[0])
            if len(self._cache) < 100_000:
                self._cache[count] = hit
        return hit


class PrivacyLedger:
    """Epsilon per round (rounds.parquet) and per invited client (clients.parquet).

    Central mode: ``step`` takes the round's sampling rate ``q`` and noise multiplier ``z``
    (defaults: the ones given here); the RDP curves of the rounds add up (``self.total``)."""

    def __init__(self, mode: str, q: float, z: float, delta: float, population_size: int) -> None:
        self.mode, self.q, self.z, self.delta = mode, float(q), float(z), float(delta)
        self._curves: dict[tuple[float, float], RdpCurve] = {}
        if mode == "local":
            self.curve = RdpCurve(1.0, z / 2.0)
            self.counts = np.zeros(population_size, np.int32)
        else:
            self.curve = self._curve(self.q, self.z)
            self.counts = np.zeros(0, np.int32)
        self.total = np.zeros_like(self.curve.rdp, dtype=np.float64)

    def _curve(self, q: float, z: float) -> RdpCurve:
        key = (min(float(q), 1.0), float(z))
        hit = self._curves.get(key)
        if hit is None:
            hit = RdpCurve(*key)
            if len(self._curves) < 10_000:
                self._curves[key] = hit
        return hit

    def step(self, rnd: int, ids: np.ndarray, released: np.ndarray, q: float | None = None,
             z: float | None = None) -> tuple[float, np.ndarray]:
        """Account round ``rnd`` (0-based); returns (round epsilon, epsilon per id)."""
        if self.mode == "central":
            # Every recorded round composes one event (conservative: a failed or empty round is
            # charged too). dp-accounting's compose adds count * rdp: the same float additions.
            curve = self._curve(self.q if q is None else q, self.z if z is None else z)
            if curve.infinite:
                self.total = self.total + np.inf
            else:
                self.total = self.total + 1 * curve.rdp
            eps = curve.epsilon_of(self.total, self.delta)
            return eps, np.full(len(ids), eps)
        self.counts[ids[released]] += 1
        per = np.array([self.curve.epsilon(int(c), self.delta) for c in self.counts[ids]])
        return self.curve.epsilon(int(self.counts.max(initial=0)), self.delta), per

    def state_dict(self) -> dict[str, Any]:
        if self.mode == "local":
            return {"privacy__counts": self.counts.copy()}
        return {"privacy__rdp": self.total.copy()}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take (and remove) this ledger's keys from a checkpoint state dict."""
        counts = state.pop("privacy__counts", None)
        total = state.pop("privacy__rdp", None)
        if self.mode == "local" and counts is not None:
            self.counts = np.asarray(counts, np.int32).copy()
        if self.mode == "central":
            if total is None:  # written before the per-round accounting: its epsilons differ
                from simulator.errors import FedFleetError

                raise FedFleetError(
                    "privacy: this checkpoint predates per-round DP accounting (no privacy__rdp); "
                    "its epsilon cannot be continued: run the scenario again")
            self.total = np.asarray(total, np.float64).copy()
