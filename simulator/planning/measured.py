"""The planner of a model whose costs were measured on the model itself (numpy only).

``model.kind: custom`` and the built-in vision models (cnn, resnet18, mobilenet_v2) measure their
parameter count, state bytes, training FLOPs and saved activation bytes per sample on a sample
batch (simulator/workloads/torch_model.py ``measure``); this planner charges every client the
whole model with those numbers, as :class:`~simulator.planning.base.FullModelPlanner` does with an
MLP's closed forms:

    download = upload = state bytes (fp32 parameters and float buffers)
    FLOPs    = measured training FLOPs per sample x samples x epochs
    memory   = state bytes x (2 + optimizer copies) + activation bytes per sample x batch size

``model.clock_proxy`` (params, train_flops_per_sample, bytes_per_param) replaces the model's own
bytes and FLOPs, as for an MLP.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.core.cost import TaskCost
from simulator.fleet.population import Population
from simulator.planning.base import Plan


class MeasuredPlanner:
    """Every client trains the whole measured model (see the module docstring)."""

    def __init__(self, scenario: Any, state_bytes: float, train_flops_per_sample: float,
                 activation_bytes_per_sample: float, n_params: int) -> None:
        t = scenario.training
        opt_copies = 2 if t.optimizer == "adam" else (1 if t.momentum > 0 else 0)
        self.n_params = int(n_params)
        self.model_bytes = float(state_bytes)
        self.flops_per_sample = float(train_flops_per_sample)
        proxy = scenario.model.clock_proxy
        if proxy is not None and proxy.params is not None:
            self.model_bytes = proxy.params * proxy.bytes_per_param
            self.flops_per_sample = float(proxy.train_flops_per_sample or 0.0)
        acts = float(activation_bytes_per_sample) * t.batch_size
        self.memory = self.model_bytes * (2 + opt_copies) + acts
        self.epochs, self.batch = t.epochs, t.batch_size

    def plan(self, round: int, ids: np.ndarray, population: Population) -> Plan:
        n = len(ids)
        samples = population.n_samples[ids].astype(np.float64)
        cost = TaskCost(
            download_bytes=np.full(n, self.model_bytes),
            upload_bytes=np.full(n, self.model_bytes),
            train_flops=self.flops_per_sample * samples * self.epochs,
            memory_bytes=np.full(n, self.memory),
            train_steps=self.epochs * np.ceil(samples / self.batch),  # workloads.mlp.batch_plan
        )
        infeasible = population.memory_bytes[ids] < self.memory
        kind = np.where(infeasible, "none", "full").astype(object)
        return Plan(cost, infeasible, kind, {"memory_bytes": cost.memory_bytes})
