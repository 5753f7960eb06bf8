"""Privacy accounting with dp-accounting's RDP accountant (Mironov 2017; Google's dp-accounting).

Central DP: every round composes ``PoissonSampledDpEvent(q, GaussianDpEvent(z))`` with
``q = clients_per_round / population`` (or ``privacy.sampling_rate``), as in McMahan et al. 2018
(user-level, add-or-remove-one neighbouring relation, sensitivity C of the unweighted sum). After
r rounds the RDP curve is r times one round's, so one accountant composed once gives every
round's epsilon without re-running the (slow, ~60 ms) subsampled-Gaussian computation.

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
    """Epsilon per round (rounds.parquet) and per invited client (clients.parquet)."""

    def __init__(self, mode: str, q: float, z: float, delta: float, population_size: int) -> None:
        self.mode, self.q, self.z, self.delta = mode, float(q), float(z), float(delta)
        if mode == "local":
            self.curve = RdpCurve(1.0, z / 2.0)
            self.counts = np.zeros(population_size, np.int32)
        else:
            self.curve = RdpCurve(self.q, z)
            self.counts = np.zeros(0, np.int32)

    def step(self, rnd: int, ids: np.ndarray, released: np.ndarray) -> tuple[float, np.ndarray]:
        """Account round ``rnd`` (0-based); returns (round epsilon, epsilon per id)."""
        if self.mode == "central":
            # Every recorded round composes one event (conservative: a failed or empty round is
            # charged too), so the ledger needs no state and survives checkpoint/resume.
            eps = self.curve.epsilon(rnd + 1, self.delta)
            return eps, np.full(len(ids), eps)
        self.counts[ids[released]] += 1
        per = np.array([self.curve.epsilon(int(c), self.delta) for c in self.counts[ids]])
        return self.curve.epsilon(int(self.counts.max(initial=0)), self.delta), per

    def state_dict(self) -> dict[str, Any]:
        return {"privacy__counts": self.counts.copy()} if self.mode == "local" else {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Take (and remove) this ledger's keys from a checkpoint state dict."""
        counts = state.pop("privacy__counts", None)
        if self.mode == "local" and counts is not None:
            self.counts = np.asarray(counts, np.int32).copy()
