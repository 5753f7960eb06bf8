"""Workloads: the only package (with ``execution.ray_pool``) that imports torch.

``build_workload(scenario, population_size)`` returns an object with
``initial_state() -> np.ndarray``, ``train(global_flat, jobs) -> Partial``,
``evaluate(flat) -> (accuracy, loss)`` and ``n_params``: the ``workload`` of the scenario's model
kind (simulator/core/registry.py ``MODEL_KINDS``; the built-ins in
simulator/workloads/registry.py).
"""

from __future__ import annotations

from typing import Any


def build_workload(scenario: Any, population_size: int) -> Any:
    """The model kind's workload; the kind must take what ``data.dataset`` gives (an
    ``InputError`` naming ``model.kind`` otherwise)."""
    from simulator.core.registry import model_kind

    return model_kind(scenario).workload(population_size)
