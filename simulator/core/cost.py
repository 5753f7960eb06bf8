"""Cost model (pure): bytes, FLOPs and per-phase seconds for client tasks.

Client time (shared/reference.md section 3):
    t = latency + bytes_down*8/downlink + local_flops/effective_flops + latency + bytes_up*8/uplink
All inputs are numpy columns over the selected clients, so a 10,000-client round costs a few
vector operations.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

BITS_PER_BYTE = 8.0


@dataclass(frozen=True)
class Timing:
    """Per-client phase durations in simulated seconds (arrays of equal length)."""

    download_s: np.ndarray
    compute_s: np.ndarray
    upload_s: np.ndarray

    @property
    def total_s(self) -> np.ndarray:
        return self.download_s + self.compute_s + self.upload_s


@dataclass(frozen=True)
class TaskCost:
    """What each client's task moves and computes (arrays, or scalars broadcast)."""

    download_bytes: np.ndarray
    upload_bytes: np.ndarray
    train_flops: np.ndarray  # total FLOPs of the local work
    memory_bytes: np.ndarray  # peak memory the task needs on the device
    train_steps: np.ndarray | None = None  # optimizer steps (for a per-step overhead), if known


def mlp_param_count(sizes: list[int]) -> int:
    """Parameters of a fully connected net with layer widths ``sizes`` (weights + biases)."""
    return int(sum(a * b + b for a, b in zip(sizes[:-1], sizes[1:], strict=True)))


def dense_train_flops_per_sample(n_params: int) -> float:
    """Forward 2N + backward 4N FLOPs per sample for a dense model (Kaplan et al. 2020)."""
    return 6.0 * n_params


def estimate(
    downlink_bits_per_s: np.ndarray,
    uplink_bits_per_s: np.ndarray,
    latency_s: np.ndarray,
    train_flops_per_s: np.ndarray,
    cost: TaskCost,
    step_overhead_s: np.ndarray | float | None = None,
) -> Timing:
    """Per-phase seconds for each client: transfers include one round trip each.

    Compute = FLOPs / FLOP/s, plus ``train_steps * step_overhead_s`` when both are given (a
    fixed per-step cost that dominates small models; profile field compute.step_overhead_s).
    """
    lat = np.asarray(latency_s, dtype=np.float64)
    down = lat + np.asarray(cost.download_bytes, np.float64) * BITS_PER_BYTE / downlink_bits_per_s
    comp = np.asarray(cost.train_flops, np.float64) / train_flops_per_s
    if step_overhead_s is not None and cost.train_steps is not None:
        comp = comp + np.asarray(cost.train_steps, np.float64) * step_overhead_s
    up = lat + np.asarray(cost.upload_bytes, np.float64) * BITS_PER_BYTE / uplink_bits_per_s
    n = len(train_flops_per_s)
    return Timing(
        download_s=np.broadcast_to(down, (n,)).astype(np.float64),
        compute_s=np.broadcast_to(comp, (n,)).astype(np.float64),
        upload_s=np.broadcast_to(up, (n,)).astype(np.float64),
    )


def estimate_clients(pop: Any, ids: np.ndarray, cost: TaskCost) -> Timing:
    """:func:`estimate` for clients ``ids`` of a population (its columns and profile overheads)."""
    return estimate(pop.downlink_bits_per_s[ids], pop.uplink_bits_per_s[ids], pop.latency_s[ids],
                    pop.train_flops_per_s[ids], cost,
                    pop.per_profile(lambda q: q.compute.step_overhead_s, ids))


def fedscale_completion_s(
    batch_size: int,
    local_steps: int,
    ms_per_sample: np.ndarray,
    upload_kbit: float,
    download_kbit: float,
    kbit_per_s: np.ndarray,
) -> np.ndarray:
    """FedScale's client completion time, for comparison and trace-driven scenarios.

    ``3 * batch * steps * ms_per_sample / 1000 + (upload_kbit + download_kbit) / kbps``
    (FedScale ``fedscale/cloud/internal/client_metadata.py``, ``get_completion_time``: one
    bandwidth for the pull and the push; its compute term ignores the model size).
    """
    comp = 3.0 * batch_size * local_steps * np.asarray(ms_per_sample, np.float64) / 1000.0
    comm = (upload_kbit + download_kbit) / np.asarray(kbit_per_s, np.float64)
    return comp + comm
