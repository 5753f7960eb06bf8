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
from simulator.aggregation.lora_layout import LORA_SCALING
from simulator.core.registry import DATASETS, declared

REAL_FAMILIES = ("llama",)


class MLPKind:
    """``model.kind: mlp``: a fully connected classifier on feature vectors. Every client trains
    the whole model (:class:`~simulator.planning.base.FullModelPlanner`); the workload is the MLP
    trained with torch.func, plus HeteroFL ``width`` jobs (identical without them)."""

    def __init__(self, scenario: Any, params: Any = None) -> None:
        self.scenario, self.params = scenario, params

    def problems(self) -> list[str]:
        from simulator.planning.rules import rule_problems

        p = self.scenario.model.clock_proxy
        out = []
        if p is not None and p.params is None:
            out.append("model.clock_proxy: kind 'mlp' is charged as a dense model: give params "
                       "and train_flops_per_sample (preset/config are for transformers)")
        from simulator.planning.precision import precision_problems

        return (out + rule_problems(self.scenario, planner=False)
                + precision_problems(self.scenario, transformer=False))

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
        from simulator.planning.rules import rule_problems

        m = self.scenario.model
        out = check_model(m)
        p = m.clock_proxy
        if p is not None:
            if p.params is not None:
                out.append("model.clock_proxy: a transformer is charged as another transformer: "
                           "give preset and/or config (params/train_flops_per_sample are for "
                           "dense models)")
            elif not out:
                from simulator.config.llm import check_model as check

                out += [f"model.clock_proxy.{x}" for x in check(proxy_model(m))]
        from simulator.planning.precision import precision_problems

        return (out + rule_problems(self.scenario, planner=True)
                + precision_problems(self.scenario, transformer=True))

    def planner(self, population: Any, n_features: int, n_classes: int) -> Any:
        from simulator.config.llm import closed_form_spec
        from simulator.planning.capability import CapabilityPlanner

        m = self.scenario.model
        spec = closed_form_spec(proxy_model(m)) if m.clock_proxy is not None else None
        return CapabilityPlanner(self.scenario, population, spec=spec)

    def workload(self, population_size: int) -> Any:
        return build_transformer(self.scenario, population_size)


def proxy_model(m: Any) -> Any:
    """The model block the clock charges under a transformer ``clock_proxy``: the proxy's
    preset and config over the trained model's family, seq_len and workload settings."""
    p = m.clock_proxy
    family = m.family
    if p.preset is not None:
        from simulator.config.llm import PRESETS

        family = PRESETS[p.preset][0]
    elif family is None and m.preset is not None:
        from simulator.config.llm import PRESETS

        family = PRESETS[m.preset][0]
    return m.model_copy(update={"preset": p.preset, "config": p.config, "config_path": None,
                                "family": family, "clock_proxy": None})


def build_registered(scenario: Any, population_size: int) -> Any:
    """The workload of the scenario's model kind (no check against the dataset: the kind's own
    builder checks its data; :func:`simulator.workloads.build_workload` checks first)."""
    from simulator.core.registry import model_kind

    return model_kind(scenario, check_data=False).workload(population_size)


def state_config(workloads: Any, family: str, n_layers: int, merges_adapters: bool = False
                 ) -> Any:
    """What the global state holds, from ``model.workloads`` (see ``llm.py``); with
    ``merges_adapters`` (FLoRA) also the base weights of the adapted layers."""
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
    if merges_adapters and lora is not None and order == {"lora"}:
        return StateConfig(lora, "adapted", 0, w.split_train)
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
    from simulator.aggregation.strategy import strategy_name

    state = state_config(m.workloads, family, int(cfg["num_hidden_layers"]),
                         merges_adapters=strategy_name(scenario) == "flora")
    from simulator.planning.precision import precisions
    from simulator.privacy import make_update_hook

    prec, dl = precisions(scenario), m.workloads.downlink
    wl: LLMWorkload
    comp = CompressionSpec.from_settings(m.workloads.compression, prec.update)
    pr = m.workloads.pruning
    if dl.method != "none" or pr.schedule == "prunefl":  # downlink.py: clients train from the
        from simulator.workloads.downlink import DownlinkLLMWorkload  # dequantized global

        wl = DownlinkLLMWorkload(cfg, dataset, train, state, scenario.seed, comp,
                                 wire_bytes=prec.wire, update_hook=make_update_hook(scenario))
        wl.downlink = dl
        wl.prune_schedule = pr if pr.schedule == "prunefl" else None
        wl.density = float(pr.densities[0])
    else:
        wl = LLMWorkload(cfg, dataset, train, state, scenario.seed, comp, wire_bytes=prec.wire,
                         update_hook=make_update_hook(scenario))
    if dl.method != "none" and not m.workloads.base_cached:
        from simulator.workloads.downlink import quantize_frozen_

        quantize_frozen_(wl, dl)
    if pr.method != "none":  # one density in real mode (validate refuses a list)
        from simulator.workloads.pruning import prune_base_

        prune_base_(wl.model, pr.method, pr.densities[0])
    if prec.base_choices[0] != "none":  # one method in real mode (validate refuses a list)
        from simulator.workloads.precision import quantize_base_

        quantize_base_(wl.model, prec.base_choices[0])
    # batched LoRA clients (lora_batched.py): opt-in, executor.batched_lora
    wl.batched = bool(scenario.executor.batched_lora)
    from simulator.aggregation.strategy import needs_client_updates

    wl.keep_updates = needs_client_updates(scenario)
    return wl


# --- torch model kinds: the user's nn.Module and the built-in vision models ---------------------
class TorchKind:
    """A model kind trained by :class:`~simulator.workloads.torch_model.TorchModelWorkload`
    and charged by :class:`~simulator.planning.measured.MeasuredPlanner` with costs measured on
    the model itself (parameters, state bytes, FLOPs per sample, activation bytes). Subclasses
    give ``build(input_shape, n_classes) -> (nn.Module, loss or None)``."""

    def __init__(self, scenario: Any, params: Any = None) -> None:
        self.scenario, self.params = scenario, params

    def build(self, input_shape: tuple[int, ...], n_classes: int) -> Any:
        raise NotImplementedError

    def problems(self) -> list[str]:
        from simulator.planning.rules import rule_problems

        m = self.scenario.model
        out = []
        if m.factory_args and m.kind != "custom":
            out.append(f"model.factory_args: only for kind 'custom' (model.kind is '{m.kind}')")
        p = m.clock_proxy
        if p is not None and p.params is None:
            out.append(f"model.clock_proxy: kind '{m.kind}' is charged as a dense model: give "
                       "params and train_flops_per_sample (preset/config are for transformers)")
        from simulator.planning.precision import precision_problems

        return (out + rule_problems(self.scenario, planner=False)
                + precision_problems(self.scenario, transformer=False))

    def measure(self, n_features: int, n_classes: int) -> Any:
        """The model's measured costs (torch; the dataset gives the input shape)."""
        from simulator.data import build_dataset
        from simulator.workloads.torch_model import input_shape_of, measure

        ds = build_dataset(self.scenario, self.scenario.population.size)
        shape = input_shape_of(ds)
        import torch

        torch.manual_seed(0)
        model, loss = self.build(shape, n_classes)
        return measure(model, shape, n_classes, loss)

    def planner(self, population: Any, n_features: int, n_classes: int) -> Any:
        from simulator.planning.measured import MeasuredPlanner

        m = self.measure(n_features, n_classes)
        return MeasuredPlanner(self.scenario, m.state_bytes, m.train_flops_per_sample,
                               m.activation_bytes_per_sample, m.n_params)

    def workload(self, population_size: int) -> Any:
        from simulator.workloads.torch_model import TorchModelWorkload

        return TorchModelWorkload(self.scenario, population_size, self.build)


class CustomKind(TorchKind):
    """``model.kind: custom``: ``model.factory: "package.module:function"`` returns an
    ``nn.Module`` (or ``(nn.Module, loss)``); it is called with ``input_shape`` and
    ``n_classes`` when it takes them, and ``model.factory_args``."""

    def problems(self) -> list[str]:
        if not self.scenario.model.factory:
            return ["model.factory: required for kind 'custom' ('package.module:function' "
                    "returning an nn.Module)"]
        return super().problems()

    def build(self, input_shape: tuple[int, ...], n_classes: int) -> Any:
        from simulator.workloads.torch_model import call_factory, load_factory

        m = self.scenario.model
        fn = load_factory(str(m.factory))
        return call_factory(fn, input_shape, n_classes, dict(m.factory_args))


def _vision(name: str, **kw: Any) -> tuple[Any, None]:
    from simulator.workloads import vision

    fn = getattr(vision, name)
    return fn(**kw), None


class CNNKind(TorchKind):
    """``model.kind: cnn``: LEAF's FEMNIST CNN (2 conv 5x5 32/64 + pool, dense 2048)."""

    def build(self, input_shape: tuple[int, ...], n_classes: int) -> Any:
        from simulator.workloads.torch_model import call_factory

        h = self.params.hidden if self.params is not None else 2048
        return call_factory(lambda **a: _vision("small_cnn", hidden=h, **a)[0], input_shape,
                            n_classes, {}, "model.kind")


class ResNet18Kind(TorchKind):
    """``model.kind: resnet18``: ResNet-18 (11.7M parameters at 1000 classes), random init."""

    def build(self, input_shape: tuple[int, ...], n_classes: int) -> Any:
        from simulator.workloads.torch_model import call_factory

        stem = self.params.stem if self.params is not None else "imagenet"
        return call_factory(lambda **a: _vision("resnet18", stem=stem, **a)[0], input_shape,
                            n_classes, {}, "model.kind")


class MobileNetV2Kind(TorchKind):
    """``model.kind: mobilenet_v2``: MobileNetV2 (3.5M parameters at 1000 classes)."""

    def build(self, input_shape: tuple[int, ...], n_classes: int) -> Any:
        from simulator.workloads.torch_model import call_factory

        p = self.params
        kw = {"width_mult": p.width_mult, "dropout": p.dropout} if p is not None else {}
        return call_factory(lambda **a: _vision("mobilenet_v2", **kw, **a)[0], input_shape,
                            n_classes, {}, "model.kind")
