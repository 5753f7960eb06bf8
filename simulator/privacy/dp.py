"""DP-FedAvg maths (pure numpy): clipping, Gaussian noise, the fixed-denominator aggregate.

Central DP (McMahan et al. 2018, Algorithm 1 with uniform weights w_k = 1): the server sees
``sum_k clip(delta_k, C)``; it adds ``N(0, (z*C)^2 I)`` and divides by the *fixed* denominator
``k = clients_per_round`` (the paper divides by the expected weight ``qW``; with fixed-size sampling
that is k). Because every client's weight is 1 and its update has norm <= C, adding or removing one
client changes the sum by at most C: the sensitivity the noise is calibrated to. Data-size weights
(plain FedAvg) would make the sensitivity depend on n_k, so central DP drops them.

Local DP: each client adds ``N(0, (z*C)^2 I)`` to its own clipped update before upload; the server
averages what it receives with equal weights (post-processing) and adds nothing.

Noise draws are deterministic: server noise from ``(seed, PRIVACY, round)``, a client's local noise
from ``(seed, PRIVACY, round, client)``, so local and Ray executors give identical tables.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.aggregation.fedavg import SCALE, Partial, mean_step, step_model
from simulator.core import rng as R

# Shrink the clipping factor by one part in 10^12 so that the float64 norm of the clipped update
# never exceeds C by a rounding error (the guarantee the tests check).
_CLIP_SLACK = 1.0 - 1e-12


def clip_update(delta: np.ndarray, clip_norm: float) -> tuple[np.ndarray, float]:
    """Scale ``delta`` to L2 norm <= ``clip_norm``; returns (clipped, norm before clipping).

    An update already inside the ball is returned unchanged (same array, bit for bit)."""
    d = np.asarray(delta, np.float64)
    norm = float(np.linalg.norm(d))
    if norm <= clip_norm:
        return d, norm
    return d * (clip_norm / norm * _CLIP_SLACK), norm


def gaussian_noise(std: float, n: int, seed: int, *keys: int) -> np.ndarray:
    """``N(0, std^2 I_n)`` from the stream ``(seed, PRIVACY, *keys)`` (zeros when std is 0)."""
    if std <= 0:
        return np.zeros(n, np.float64)
    return R.stream(seed, R.PRIVACY, *keys).standard_normal(n) * std


class ClientUpdateHook:
    """Called by a workload for every client update before ``Partial.add_client``.

    Returns the update to aggregate and its weight: clipped (and, in local mode, noised) with
    weight 1, so the aggregate is the unweighted sum the sensitivity bound needs."""

    def __init__(self, mode: str, clip_norm: float, noise_multiplier: float, seed: int) -> None:
        self.mode = mode
        self.clip_norm = float(clip_norm)
        self.noise_std = float(noise_multiplier) * float(clip_norm)
        self.seed = int(seed)

    def __call__(self, rnd: int, cid: int, delta: np.ndarray, weight: float,
                 mask: np.ndarray | None = None) -> tuple[np.ndarray, float]:
        d = np.asarray(delta, np.float64)
        if mask is not None:
            d = d * mask  # only the coordinates the client trained count toward its norm
        d, _ = clip_update(d, self.clip_norm)
        if self.mode == "local" and self.noise_std > 0:
            noise = gaussian_noise(self.noise_std, d.size, self.seed, rnd, cid)
            d = d + (noise if mask is None else noise * mask)
        return d, 1.0


def make_update_hook(scenario: Any) -> ClientUpdateHook | None:
    """The scenario's client hook, or None when privacy is off (workloads then skip it)."""
    p = getattr(scenario, "privacy", None)
    if p is None or p.mode == "none":
        return None
    return ClientUpdateHook(p.mode, p.clip_norm, p.noise_multiplier, scenario.seed)


def dp_step(total: Partial, denominator: float, noise: np.ndarray) -> np.ndarray:
    """``(sum of clipped updates + noise) / denominator`` (the DP-FedAvg server update)."""
    return mean_step(total.sum_q.astype(np.float64) / SCALE + noise, float(denominator))


def apply_dp_fedavg(global_flat: np.ndarray, total: Partial, denominator: float,
                    noise: np.ndarray, server_lr: float = 1.0) -> np.ndarray:
    """New global = global + server_lr * (sum + noise) / denominator (every coordinate)."""
    return step_model(global_flat, dp_step(total, denominator, noise), server_lr)


class ServerPrivacy:
    """Driver side of DP, a step of the server chain (simulator/aggregation/chain.py): central
    noise and the fixed denominator (``transform``), the accountant and the epsilon columns."""

    name = "privacy"

    def __init__(self, scenario: Any, population_size: int) -> None:
        from simulator.privacy.accountant import PrivacyLedger

        p = scenario.privacy
        self.mode = p.mode
        self.seed = scenario.seed
        self.k = scenario.clients_per_round
        self.noise_std = p.noise_multiplier * p.clip_norm
        self.z = float(p.noise_multiplier)
        self.fixed_q = p.sampling_rate  # None: each round's actual rate (sampling_rate below)
        self.trigger = getattr(scenario, "trigger", "sync")
        q = p.sampling_rate or min(1.0, scenario.clients_per_round / population_size)
        self.ledger = PrivacyLedger(p.mode, q, p.noise_multiplier, p.delta, population_size)

    def sampling(self, ids: np.ndarray, released: np.ndarray,
                 row: dict[str, Any]) -> tuple[float, float]:
        """(q, z) of this round's mechanism (simulator/privacy/accountant.py explains each).

        sync: invited / online (``selected`` / ``candidates``); hierarchical: the trigger's
        ``privacy_q`` (its largest per-edge rate); buffered: q = 1 and z / m with m the most
        updates one client has in the buffer; ``privacy.sampling_rate``: that q."""
        if self.trigger == "buffered":
            used = np.asarray(ids)[np.asarray(released, bool)]
            m = int(np.unique(used, return_counts=True)[1].max()) if used.size else 1
            return 1.0, self.z / m
        if self.fixed_q is not None:
            return float(self.fixed_q), self.z
        if "privacy_q" in row:
            return float(row["privacy_q"]), self.z
        online = int(row["candidates"])
        return (min(1.0, int(row["selected"]) / online) if online > 0 else 1.0), self.z

    def transform(self, sums: Any, ctx: Any) -> Any:
        """Central DP: ``(sum of clipped updates + N(0, (zC)^2 I)) / k`` with k the clients the
        aggregation was designed for (clients_per_round; the buffer size K; an edge's share);
        noise from the stream ``(seed, PRIVACY, *ctx.noise_keys)``. Local DP: unchanged (updates
        arrive noised)."""
        if self.mode != "central":
            return sums
        from dataclasses import replace

        noise = gaussian_noise(self.noise_std, sums.n_params, self.seed, *ctx.noise_keys)
        return replace(sums, noise=noise, denominator=float(ctx.expected_clients))

    def record(self, rnd: int, ids: np.ndarray, released: np.ndarray,
               row: dict[str, Any], cols: dict[str, np.ndarray], state: Any = None) -> None:
        """Add ``epsilon`` to the round row and the client columns.

        ``released``: which of ``ids`` had an update used this round (local mode counts them)."""
        if self.mode == "central":
            q, z = self.sampling(ids, released, row)
            row["privacy_q"] = q
            eps_round, eps_clients = self.ledger.step(rnd, ids, released, q, z)
        else:
            eps_round, eps_clients = self.ledger.step(rnd, ids, released)
        row["epsilon"] = eps_round
        row["privacy_delta"] = self.ledger.delta
        cols["epsilon"] = eps_clients

    def state_dict(self) -> dict[str, Any]:
        return self.ledger.state_dict()

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.ledger.load_state_dict(state)
