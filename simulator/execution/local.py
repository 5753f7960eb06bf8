"""Serial in-process executor: the debug backend, and the reference the Ray pool must match."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from simulator.aggregation import Partial
from simulator.core.jobs import JobBatch

status = logging.getLogger("simulator.status")  # shown by the CLI (simulator/cli/progress.py)


class LocalExecutor:
    def __init__(self, scenario: Any, population_size: int) -> None:
        status.info("importing torch, building the model...")
        import torch

        from simulator.workloads import build_workload

        # One thread, as in every Ray actor, so local and Ray runs give bit-identical updates.
        torch.set_num_threads(1)
        self.workload = build_workload(scenario, population_size)
        self.n_params = self.workload.n_params

    def initial_state(self) -> np.ndarray:
        return self.workload.initial_state()

    def run(self, global_flat: np.ndarray, jobs: JobBatch) -> Partial:
        return self.workload.train(global_flat, jobs)

    def evaluate(self, flat: np.ndarray) -> tuple[float, float]:
        return self.workload.evaluate(flat)

    def evaluate_clients(self, flat: np.ndarray, client_ids: np.ndarray, seeds: np.ndarray,
                         steps: int) -> np.ndarray:
        return self.workload.evaluate_clients(flat, client_ids, seeds, steps)

    def close(self) -> None:
        pass
