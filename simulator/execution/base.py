"""Executor protocol and job batches (no ray/torch imports here)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from simulator.aggregation import Partial


@dataclass(frozen=True)
class JobBatch:
    """Client jobs of one round. Arrays are aligned and sorted by client id."""

    round: int
    client_ids: np.ndarray  # int64
    seeds: np.ndarray  # uint64 training seed per client, from (seed, TRAINING, round, client)
    # Workload assignment columns from the planner (kind code, rank, blocks, cut, ...).
    assignment: dict[str, np.ndarray] = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.client_ids.shape[0])

    def subset(self, mask: np.ndarray) -> "JobBatch":
        return JobBatch(
            self.round,
            self.client_ids[mask],
            self.seeds[mask],
            {k: v[mask] for k, v in self.assignment.items()},
        )


class Executor(Protocol):
    n_params: int

    def initial_state(self) -> np.ndarray: ...

    def run(self, global_flat: np.ndarray, jobs: JobBatch) -> Partial: ...

    def evaluate(self, flat: np.ndarray) -> tuple[float, float]: ...

    def close(self) -> None: ...


def make_executor(scenario: Any, population_size: int) -> Executor:
    if scenario.executor.kind == "ray":
        from simulator.execution.ray_pool import RayExecutor

        return RayExecutor(scenario, population_size)
    from simulator.execution.local import LocalExecutor

    return LocalExecutor(scenario, population_size)
