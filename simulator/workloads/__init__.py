"""Workloads: the only package (with ``execution.ray_pool``) that imports torch.

``build_workload(scenario, population_size)`` returns an object with
``initial_state() -> np.ndarray``, ``train(global_flat, jobs) -> Partial``,
``evaluate(flat) -> (accuracy, loss)`` and ``n_params``.
"""

from __future__ import annotations

from typing import Any


def build_workload(scenario: Any, population_size: int) -> Any:
    kind = scenario.model.kind
    if kind == "mlp":  # MLPWorkload plus HeteroFL "width" jobs (identical without them)
        from simulator.workloads.width import WidthMLPWorkload

        return WidthMLPWorkload(scenario, population_size)
    from simulator.workloads.registry import build_registered  # transformer workloads

    return build_registered(scenario, population_size)
