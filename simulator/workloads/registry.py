"""Workload builders for ``model.kind`` values other than ``mlp``, keyed by kind.

``build_registered(scenario, population_size)`` is called by ``simulator.workloads`` on every
host (each Ray actor builds its own resident model from the same seed). The transformer builder
turns the scenario's model block (``planning.llm_config``) and workload settings into an
:class:`~simulator.workloads.llm.LLMWorkload`; see docs/large-models.md.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from simulator import InputError

LORA_SCALING = 2.0  # alpha / r_max (alpha = 16 at r = 8, the LoRA paper's common setting)
REAL_FAMILIES = ("llama",)

Builder = Callable[[Any, int], Any]
REGISTRY: dict[str, Builder] = {}


def register(kind: str) -> Callable[[Builder], Builder]:
    """Decorator: ``@register("transformer")`` makes a builder for ``model.kind: transformer``."""
    def deco(fn: Builder) -> Builder:
        REGISTRY[kind] = fn
        return fn
    return deco


def build_registered(scenario: Any, population_size: int) -> Any:
    kind = scenario.model.kind
    if kind not in REGISTRY:
        raise InputError("model.kind", f"no workload is registered for {kind!r} "
                         f"(registered: mlp, {', '.join(sorted(REGISTRY))})")
    return REGISTRY[kind](scenario, population_size)


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


@register("transformer")
def build_transformer(scenario: Any, population_size: int) -> Any:
    from simulator.data import build_dataset
    from simulator.config.llm import check_shapes, resolve_config
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
    if scenario.data.dataset != "text":
        raise InputError("data.dataset", "a transformer trains on next-token prediction: set "
                         "data.dataset: text")
    dataset = build_dataset(scenario, population_size)
    if dataset.n_classes > cfg["vocab_size"]:
        raise InputError("model.config.vocab_size", f"{cfg['vocab_size']} is smaller than the "
                         f"text's {dataset.n_classes} characters")
    t = scenario.training
    train = TrainConfig(t.epochs, t.batch_size, t.lr, t.optimizer, t.momentum)
    state = state_config(m.workloads, family, int(cfg["num_hidden_layers"]))
    comp = CompressionSpec.from_settings(m.workloads.compression, m.dtype_bytes)
    from simulator.privacy import make_update_hook

    return LLMWorkload(cfg, dataset, train, state, scenario.seed, comp, wire_bytes=m.dtype_bytes,
                       update_hook=make_update_hook(scenario))
