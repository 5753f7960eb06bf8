"""Executor protocol and job batches (no ray/torch imports here)."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from simulator.aggregation import Partial
from simulator.core.jobs import JobBatch


class Executor(Protocol):
    @property
    def n_params(self) -> int: ...

    def initial_state(self) -> np.ndarray: ...

    def run(self, global_flat: np.ndarray, jobs: JobBatch) -> Partial: ...

    def evaluate(self, flat: np.ndarray) -> tuple[float, float]: ...

    def evaluate_clients(self, flat: np.ndarray, client_ids: np.ndarray, seeds: np.ndarray,
                         steps: int) -> np.ndarray: ...

    def close(self) -> None: ...
