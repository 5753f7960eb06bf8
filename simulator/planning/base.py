"""Planner protocol, the full-model planner used by small (MLP) models, and ``make_planner``."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from simulator.core.cost import TaskCost, dense_train_flops_per_sample, mlp_param_count
from simulator.core.registry import model_kind
from simulator.fleet.population import Population
from simulator.planning.ops import mlp_ops_per_step

BYTES_FP32 = 4


@dataclass(frozen=True)
class Plan:
    cost: TaskCost
    infeasible: np.ndarray  # bool: nothing fits this device
    kind: np.ndarray  # object/str column: "full", "lora", "partial", "split", "width", "none"
    columns: dict[str, np.ndarray] = field(default_factory=dict)  # rank, blocks, cut, ...


class Planner(Protocol):
    def plan(self, round: int, ids: np.ndarray, population: Population) -> Plan: ...


class FullModelPlanner:
    """Everyone trains the whole (small) model with the scenario's optimizer.

    Memory: weights + gradients + optimizer state (0, 1 or 2 extra copies for SGD, momentum,
    Adam) + activations of one batch (sum of layer widths x batch x 4 bytes, forward and grad).
    """

    def __init__(self, scenario: Any, population: Population, n_features: int, n_classes: int):
        t = scenario.training
        self.sizes = [n_features, *scenario.model.hidden, n_classes]
        self.n_params = mlp_param_count(self.sizes)
        self.model_bytes = float(self.n_params * BYTES_FP32)
        opt_copies = 2 if t.optimizer == "adam" else (1 if t.momentum > 0 else 0)
        acts = 2.0 * sum(self.sizes) * t.batch_size * BYTES_FP32
        self.memory = self.model_bytes * (2 + opt_copies) + acts
        self.flops_per_sample = dense_train_flops_per_sample(self.n_params)
        proxy = scenario.model.clock_proxy
        if proxy is not None:
            self.model_bytes = proxy.params * proxy.bytes_per_param
            self.memory = self.model_bytes * (2 + opt_copies) + acts
            self.flops_per_sample = proxy.train_flops_per_sample
        self.epochs = t.epochs
        self.batch = t.batch_size
        # operations per step of the trained MLP (planning/ops.py); a clock proxy is another
        # model whose structure is not known, so it is charged the per-step term only
        self.ops_per_step = None if proxy is not None else mlp_ops_per_step(
            len(self.sizes) - 1, t.optimizer, t.momentum)

    def plan(self, round: int, ids: np.ndarray, population: Population) -> Plan:
        n = len(ids)
        samples = population.n_samples[ids].astype(np.float64)
        steps = self.epochs * np.ceil(samples / self.batch)  # as workloads.mlp.batch_plan
        cost = TaskCost(
            download_bytes=np.full(n, self.model_bytes),
            upload_bytes=np.full(n, self.model_bytes),
            train_flops=self.flops_per_sample * samples * self.epochs,
            memory_bytes=np.full(n, self.memory),
            train_steps=steps,
            train_ops=None if self.ops_per_step is None else steps * self.ops_per_step,
        )
        infeasible = population.memory_bytes[ids] < self.memory
        kind = np.where(infeasible, "none", "full").astype(object)
        return Plan(cost, infeasible, kind, {"memory_bytes": cost.memory_bytes})


def make_planner(scenario: Any, population: Population, n_features: int, n_classes: int) -> Planner:
    """The planner of the scenario's model kind (simulator/core/registry.py ``MODEL_KINDS``: an
    MLP's :class:`FullModelPlanner`, a transformer's ``CapabilityPlanner``). The kind must take
    what ``data.dataset`` gives: ``InputError`` naming ``model.kind`` otherwise."""
    return model_kind(scenario).planner(population, n_features, n_classes)
