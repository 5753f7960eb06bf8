"""Job batches: the clients of one round the executor trains, with their seeds and workload
assignment columns (pure numpy)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


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

    def subset(self, mask: np.ndarray) -> JobBatch:
        return JobBatch(
            self.round,
            self.client_ids[mask],
            self.seeds[mask],
            {k: v[mask] for k, v in self.assignment.items()},
        )
