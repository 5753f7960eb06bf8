"""FedAvg (McMahan et al. 2017) over partial sums; per-coordinate weights for partial models.

A ``Partial`` carries sum_i w_i * delta_i (fixed point) and the weights. With a per-coordinate
weight vector a coordinate is averaged only over the clients that trained it (HeteroFL, partial
and LoRA-rank workloads); a scalar weight is plain FedAvg.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from simulator import FedFleetError

SCALE = float(2**32)
_LIMIT = float(2**62)


def quantize_weighted(delta: np.ndarray, weight: float) -> np.ndarray:
    """int64 fixed-point of weight * delta (delta in float64)."""
    x = np.asarray(delta, np.float64) * (float(weight) * SCALE)
    if x.size and not np.all(np.abs(x) < _LIMIT):
        raise FedFleetError(
            "aggregation: a client update is too large or not finite (diverged training? "
            "lower training.lr)"
        )
    return np.rint(x).astype(np.int64)


@dataclass
class Partial:
    """A partial aggregate; merge() is exact and commutative."""

    sum_q: np.ndarray  # int64 [P]
    weight: np.ndarray  # float64 [P] per-coordinate weight sums (integers in practice)
    client_ids: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    n_samples: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    loss_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    loss_sq_mean: np.ndarray = field(default_factory=lambda: np.zeros(0))
    wall_s: float = 0.0
    # Individual updates [n_clients, P] float64, rows aligned with client_ids; only when the
    # strategy declares needs:client_updates (robust rules), else None (sums only).
    updates: np.ndarray | None = None
    # Per-client state rows [n_clients, P] float64 that the strategy's client side returns
    # (SCAFFOLD's new control variates), rows aligned with client_ids; else None.
    client_state: np.ndarray | None = None

    @classmethod
    def empty(cls, n_params: int) -> Partial:
        return cls(np.zeros(n_params, np.int64), np.zeros(n_params, np.float64))

    def add_client(
        self, cid: int, delta: np.ndarray, weight: float, n: int, loss: float, loss_sq: float,
        mask: np.ndarray | None = None,
    ) -> None:
        q = quantize_weighted(delta if mask is None else delta * mask, weight)
        self.sum_q += q
        self.weight += weight if mask is None else weight * mask
        self.client_ids = np.append(self.client_ids, cid)
        self.n_samples = np.append(self.n_samples, n)
        self.loss_mean = np.append(self.loss_mean, loss)
        self.loss_sq_mean = np.append(self.loss_sq_mean, loss_sq)

    def merge(self, other: Partial) -> Partial:
        return Partial(
            self.sum_q + other.sum_q,
            self.weight + other.weight,
            np.concatenate([self.client_ids, other.client_ids]),
            np.concatenate([self.n_samples, other.n_samples]),
            np.concatenate([self.loss_mean, other.loss_mean]),
            np.concatenate([self.loss_sq_mean, other.loss_sq_mean]),
            self.wall_s + other.wall_s,
            _merge_rows(self, other, "updates"),
            _merge_rows(self, other, "client_state"),
        )

    def sorted(self) -> Partial:
        """Per-client stats in client-id order (layout-independent)."""
        o = np.argsort(self.client_ids, kind="stable")
        return Partial(self.sum_q, self.weight, self.client_ids[o], self.n_samples[o],
                       self.loss_mean[o], self.loss_sq_mean[o], self.wall_s,
                       None if self.updates is None else self.updates[o],
                       None if self.client_state is None else self.client_state[o])


def _merge_rows(a: Partial, b: Partial, name: str) -> np.ndarray | None:
    """Concatenated per-client rows (``updates`` or ``client_state``); a side without clients
    contributes nothing."""
    rows = [getattr(p, name) for p in (a, b) if len(p.client_ids)]
    if not rows or all(r is None for r in rows):
        return None
    if any(r is None for r in rows):
        raise FedFleetError(f"aggregation: some partial sums carry per-client {name} and some "
                            "do not")
    return np.concatenate(rows)


def mean_step(num: np.ndarray, den: np.ndarray | float) -> np.ndarray:
    """The FedAvg step from a float64 numerator: ``num / den`` per coordinate (0 where nobody
    trained, i.e. den = 0), or ``num / den`` everywhere for a fixed scalar denominator (DP)."""
    if np.ndim(den) == 0:
        return num / float(den)
    step = np.zeros_like(num)
    nz = den > 0
    step[nz] = num[nz] / den[nz]  # type: ignore[index]
    return step


def step_model(global_flat: np.ndarray, step: np.ndarray, lr: float) -> np.ndarray:
    """global + lr * step, in float64, cast back to the model's dtype."""
    return (global_flat.astype(np.float64) + float(lr) * step).astype(global_flat.dtype)


def apply_fedavg(global_flat: np.ndarray, total: Partial, server_lr: float = 1.0) -> np.ndarray:
    """New global = global + server_lr * (sum w*delta) / (sum w), per coordinate.

    Coordinates no client trained (weight 0) keep their global value."""
    return step_model(global_flat, mean_step(total.sum_q.astype(np.float64) / SCALE,
                                             total.weight), server_lr)


class FedAvg:
    """FedAvg (McMahan et al. 2017): new = global + server_lr * mean update."""

    def __init__(self, scenario: Any = None, params: Any = None) -> None:
        self.params = params

    def apply(self, global_flat: np.ndarray, sums: Any, ctx: Any) -> np.ndarray:
        return step_model(global_flat, sums.mean_update(), ctx.server_lr)

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        pass

    def client_training(self) -> None:
        return None
