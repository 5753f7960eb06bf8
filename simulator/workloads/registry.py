"""Model kinds (``model.kind``): what each one plans and trains, registered in
simulator/core/registry.py ``MODEL_KINDS`` as ``"simulator.workloads.registry:MLPKind"`` ...

A model kind is built as ``cls(scenario, params)`` and gives

- ``planner(population, n_features, n_classes)``: what each client trains and what it costs
  (simulator/planning/), used by every run and by ``fedfleet validate``;
- ``workload(population_size)``: the torch side that really trains (imported only here, inside
  the method), built on every host (each Ray actor builds its own resident model from the seed);
- ``problems()``: one line per problem of its ``model:`` block, checked at validation.

This module imports no torch at module level, so looking a kind up or planning with it stays
light. The transformer builder turns the scenario's model block (``config.llm``) and workload
settings into an :class:`~simulator.workloads.llm.LLMWorkload`; see docs/large-models.md.
"""

from __future__ import annotations

from typing import Any

from simulator import InputError
from simulator.core.registry import DATASETS, declared

LORA_SCALING = 2.0  # alpha / r_max (alpha = 16 at r = 8, the LoRA paper's common setting)
REAL_FAMILIES = ("llama",)


class MLPKind:
    """``model.kind: mlp``: a fully connected classifier on feature vectors. Every client trains
    the whole model (:class:`~simulator.planning.base.FullModelPlanner`); the workload is the MLP
    trained with torch.func, plus HeteroFL ``width`` jobs (identical without them)."""

    def __init__(self, scenario: Any, params: Any = None) -> None:
        self.scenario, self.params = scenario, params

    def problems(self) -> list[str]:
        return []

    def planner(self, population: Any, n_features: int, n_classes: int) -> Any:
        from simulator.planning.base import FullModelPlanner

        return FullModelPlanner(self.scenario, population, n_features, n_classes)

    def workload(self, population_size: int) -> Any:
        from simulator.workloads.width import WidthMLPWorkload

        return WidthMLPWorkload(self.scenario, population_size)


class TransformerKind:
    """``model.kind: transformer``: a decoder transformer (docs/large-models.md). The capability
    planner gives each device the most capable workload of ``model.workloads.order`` it can run;
    real training is Llama-family LoRA/partial/split/full on next-token text."""

    def __init__(self, scenario: Any, params: Any = None) -> None:
        self.scenario, self.params = scenario, params

    def problems(self) -> list[str]:
        from simulator.config.llm import check_model  # pure: no torch

        return check_model(self.scenario.model)

    def planner(self, population: Any, n_features: int, n_classes: int) -> Any:
        from simulator.planning.capability import CapabilityPlanner

        return CapabilityPlanner(self.scenario, population)

    def workload(self, population_size: int) -> Any:
        return build_transformer(self.scenario, population_size)


def build_registered(scenario: Any, population_size: int) -> Any:
    """The workload of the scenario's model kind (no check against the dataset: the kind's own
    builder checks its data; :func:`simulator.workloads.build_workload` checks first)."""
    from simulator.core.registry import model_kind

    return model_kind(scenario, check_data=False).workload(population_size)


def state_config(workloads: Any, family: str, n_layers: int) -> Any:
    """What the global state holds, from ``model.workloads`` (see ``llm.py``)."""
    from simulator.planning.capability import DEFAULT_TARGETS
    from simulator.workloads.llm import StateConfig
    from simulator.workloads.lora import LoraSpec

    w = workloads
    order = set(w.order)
    if "width" in order:
        raise InputError("model.workloads.order", "'width' sub-models are trained for mlp "
                         "models only; for a transformer use mode: analytic or drop 'width'")
    split = "split" in order
    ranks = list(w.lora_ranks) if "lora" in order else []
    if split and w.split_train == "lora":
        ranks.append(w.split_lora_rank)
    lora = None
    if ranks:
        r_max = int(max(ranks))
        targets = w.lora_targets or DEFAULT_TARGETS[family]
        lora = LoraSpec(r_max=r_max, alpha=LORA_SCALING * r_max,
                        target_modules=targets if isinstance(targets, str) else tuple(targets))
    if "full" in order or (split and w.split_train == "full"):
        return StateConfig(lora, "all", n_layers, w.split_train)
    if "partial" in order:
        top = min(max(w.partial_blocks), n_layers)
        return StateConfig(lora, "top", top, w.split_train)
    return StateConfig(lora, "none", 0, w.split_train)


def build_transformer(scenario: Any, population_size: int) -> Any:
    from simulator.config.llm import check_shapes, resolve_config
    from simulator.data import build_dataset
    from simulator.workloads.compression import CompressionSpec
    from simulator.workloads.llm import LLMWorkload, TrainConfig

    m = scenario.model
    family, cfg, problems = resolve_config(m)
    problems = problems or check_shapes(family, cfg, m.seq_len)
    if problems:
        field, _, msg = problems[0].partition(": ")
        raise InputError(field, msg)
    if family not in REAL_FAMILIES:
        raise InputError("model.family", f"real training supports {', '.join(REAL_FAMILIES)} "
                         f"(got {family!r}); use mode: analytic for other families")
    ds_name = scenario.data.dataset
    gives = declared(DATASETS.entry(ds_name), "gives") if ds_name in DATASETS else []
    if "tokens" not in gives:
        with_tokens = [n for n in DATASETS.names()
                       if "tokens" in declared(DATASETS.entry(n), "gives")]
        raise InputError("data.dataset", f"a transformer trains on next-token prediction: "
                         f"'{ds_name}' gives {', '.join(gives) or 'nothing'}; use one that gives "
                         f"tokens ({', '.join(with_tokens)})")
    dataset = build_dataset(scenario, population_size)
    if dataset.n_classes > cfg["vocab_size"]:
        raise InputError("model.config.vocab_size", f"{cfg['vocab_size']} is smaller than the "
                         f"text's {dataset.n_classes} characters")
    t = scenario.training
    train = TrainConfig(t.epochs, t.batch_size, t.lr, t.optimizer, t.momentum)
    state = state_config(m.workloads, family, int(cfg["num_hidden_layers"]))
    comp = CompressionSpec.from_settings(m.workloads.compression, m.dtype_bytes)
    from simulator.privacy import make_update_hook

    wl = LLMWorkload(cfg, dataset, train, state, scenario.seed, comp, wire_bytes=m.dtype_bytes,
                     update_hook=make_update_hook(scenario))
    # batched LoRA clients (lora_batched.py): opt-in, executor.batched_lora
    wl.batched = bool(scenario.executor.batched_lora)
    return wl
