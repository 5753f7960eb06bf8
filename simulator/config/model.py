"""The ``model:`` section of a scenario: MLPs, transformers, and the planner's fallbacks."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from simulator.config.base import PART_NAME, PluginParams
from simulator.config.base import Strict as _Strict


class ClockProxy(_Strict):
    """Charge the simulated clock for a different model than the one really trained.

    FedScale-style decoupling: e.g. train a small MLP for speed while the clock charges the
    bytes and FLOPs of a ResNet-18 update. For mlp and the torch kinds (custom, cnn, resnet18,
    mobilenet_v2) give ``params`` and ``train_flops_per_sample``; for a transformer give the
    charged model as ``preset`` / ``config`` (e.g. train tiny-llama, charge llama-2-7b: the
    capability planner then costs every workload option of the 7B model). Recorded in the
    manifest; leave unset to charge the trained model itself.
    """

    name: str = "proxy"
    params: float | None = Field(None, gt=0, le=1e13, description=(
        "parameters sent down and up (mlp and torch model kinds)"))
    train_flops_per_sample: float | None = Field(None, gt=0, le=1e16, description=(
        "training FLOPs per sample (mlp and torch model kinds)"))
    bytes_per_param: float = Field(4.0, gt=0, le=8)
    preset: Literal["llama-2-7b", "mistral-7b", "llama-2-13b", "llama-2-70b", "tinyllama-1.1b",
                    "tiny-llama"] | None = Field(None, description=(
        "transformer: the preset the clock charges (its closed-form costs, same seq_len)"))
    config: dict[str, Any] | None = Field(None, description=(
        "transformer: config keys of the charged model, over the preset (or the trained "
        "model's family)"))

    @model_validator(mode="after")
    def _one_form(self) -> ClockProxy:
        dense = self.params is not None or self.train_flops_per_sample is not None
        llm = self.preset is not None or self.config is not None
        if dense and llm:
            raise ValueError("give either params and train_flops_per_sample (a dense model) or "
                             "preset/config (a transformer), not both")
        if not llm and (self.params is None or self.train_flops_per_sample is None):
            raise ValueError("params and train_flops_per_sample are both required (or give a "
                             "transformer preset/config)")
        return self


class Downlink(_Strict):
    """Encoding of the global model sent down (docs/large-models.md 'Downlink'): int8/int4
    block-quantize every element that goes down, with one scale per ``block_size`` elements; in
    real mode the client trains from the dequantized values."""

    method: Literal["none", "int8", "int4"] = Field("none", description=(
        "none: elements at their dtype; int8/int4: 1 or 0.5 byte per element + scales"))
    block_size: int = Field(64, ge=1, le=1 << 20, description="elements per scale")
    scale_bytes: float = Field(2.0, ge=0, le=8, description="bytes per block scale")


class Pruning(_Strict):
    """Pruning of the global model's block linear weights (docs/large-models.md 'Pruning'):
    what a device downloads, stores and (structured only) computes with."""

    method: Literal["none", "magnitude", "structured"] = Field("none", description=(
        "magnitude: unstructured, the smallest |w| of each weight matrix (sparse encoding, "
        "dense kernels: no FLOP saving); structured: whole output rows of least L1 norm "
        "(smaller dense matrices: FLOPs scale with density)"))
    densities: tuple[float, ...] = Field((1.0,), min_length=1, description=(
        "fractions of block-linear weights kept, densest first: the planner gives each device "
        "the densest that fits (a device class shares its memory, so per class); clients.parquet "
        "column density. Real mode: one density"))
    index_bytes: float = Field(4.0, gt=0, le=8, description=(
        "bytes per sparse index (values + indices encoding; a bitmap is 1 bit per weight)"))
    schedule: Literal["fixed", "prunefl"] = Field("fixed", description=(
        "fixed: densities as given every round; prunefl: PruneFL-like progressive pruning "
        "(Jiang et al. 2022): the global model starts at densities[0] and every every_rounds "
        "rounds is pruned by factor, down to final_density"))
    every_rounds: int = Field(10, ge=1, le=1 << 20, description="prunefl: rounds per step")
    factor: float = Field(0.8, gt=0, lt=1, description="prunefl: density kept at each step")
    final_density: float = Field(0.5, gt=0, le=1, description="prunefl: the lowest density")

    @model_validator(mode="after")
    def _densities(self) -> Pruning:
        if any(not 0 < d <= 1 for d in self.densities):
            raise ValueError("densities: fractions in (0, 1]")
        if self.method == "none" and self.densities != (1.0,):
            raise ValueError("densities: give a method (magnitude or structured) to prune")
        if self.schedule == "prunefl" and (self.method == "none" or len(self.densities) != 1):
            raise ValueError("schedule: prunefl prunes the whole model from one starting "
                             "density: give a method and one density")
        return self


class Compression(_Strict):
    """Upload encoding of client updates (docs/large-models.md): int8/int4 add one scale per
    ``block_size`` elements; top-k sends ``topk_fraction`` of elements as (value, index)."""

    method: Literal["none", "int8", "int4", "topk"] = "none"
    block_size: int = Field(64, ge=1, le=1 << 20)
    scale_bytes: float = Field(2.0, ge=0, le=8)
    topk_fraction: float = Field(0.01, gt=0, le=1)
    index_bytes: float = Field(4.0, gt=0, le=8)


# full, lora, partial, split, width, or one a plugin registers (core/registry.py WORKLOADS)
WorkloadKind = Annotated[str, Field(pattern=PART_NAME)]


class WorkloadChoice(_Strict):
    """What the clients of one device class train (a per-class workload rule). Unset fields are
    free: ``{kind: lora}`` lets the planner pick the rank, ``{lora_rank: 4}`` implies LoRA. The
    planner still checks memory and the deadline: a rule whose options do not fit the device's
    memory is not honoured (the client takes its normal choice, or none with ``strict``), and
    clients.parquet says so (``rule_honoured``, ``workload_note``)."""

    kind: WorkloadKind | None = Field(None, description=(
        "workload kind these clients train (one of model.workloads.order)"))
    lora_rank: int | None = Field(None, ge=1, le=4096, description=(
        "LoRA rank (one of model.workloads.lora_ranks); implies kind lora"))
    blocks: int | None = Field(None, ge=1, le=4096, description=(
        "trainable top blocks (one of model.workloads.partial_blocks); implies kind partial"))
    cut: int | None = Field(None, ge=1, le=4096, description=(
        "split cut (one of model.workloads.split_cuts); implies kind split"))
    width: float | None = Field(None, gt=0, le=1, description=(
        "HeteroFL width rate (one of model.workloads.width_rates); implies kind width"))
    strict: bool = Field(False, description=(
        "when the rule cannot be honoured (out of memory): no workload (out_of_memory) instead "
        "of the planner's normal choice"))

    def implied_kind(self) -> str | None:
        """The kind the rule fixes: ``kind``, else the one its rank/blocks/cut/width implies."""
        implied = [k for k, v in (("lora", self.lora_rank), ("partial", self.blocks),
                                  ("split", self.cut), ("width", self.width)) if v is not None]
        if self.kind is not None:
            return self.kind
        return implied[0] if len(implied) == 1 else None

    def label(self) -> str:
        """Short text for clients.parquet, e.g. ``lora r=4``."""
        parts = [self.implied_kind() or "any"]
        for name, v in (("r", self.lora_rank), ("blocks", self.blocks), ("cut", self.cut),
                        ("width", self.width)):
            if v is not None:
                parts.append(f"{name}={v:g}" if isinstance(v, float) else f"{name}={v}")
        return " ".join(parts)


class WorkloadRule(WorkloadChoice):
    """A per-class workload rule of ``model.workloads.rules``."""

    classes: tuple[str, ...] = Field(min_length=1, description=(
        "device classes (profile names of population.mix) the rule applies to"))


class WorkloadSettings(_Strict):
    """The capability planner's ordered fallbacks (simulator/planning/capability.py)."""

    order: tuple[WorkloadKind, ...] = Field(("lora", "partial", "split"), min_length=1,
                                            description=(
        "workload kinds, most preferred first: full, lora, partial, split, width, or one a "
        "plugin registers"))
    lora_ranks: tuple[int, ...] = Field((64, 32, 16, 8, 4), min_length=1)
    lora_targets: tuple[str, ...] | Literal["all-linear"] | None = None  # None: family default
    partial_blocks: tuple[int, ...] = Field((8, 4, 2, 1), min_length=1)
    split_cuts: tuple[int, ...] | Literal["auto"] = "auto"
    split_train: Literal["full", "lora"] = "lora"
    split_lora_rank: int = Field(8, ge=1, le=4096)
    split_server_flops_per_s: float = Field(2e12, gt=0, le=1e18, description="per split client")
    width_rates: tuple[float, ...] = Field((1.0, 0.5, 0.25, 0.125), min_length=1)
    activation_checkpointing: bool = False
    base_quantization: (Literal["none", "int8", "nf4", "fp4", "auto"]
                        | tuple[Literal["none", "int8", "nf4", "fp4"], ...]) = Field(
        "none", description=(
            "storage of the frozen base's block linear layers on a LoRA device (QLoRA-style, "
            "bitsandbytes): int8 1 byte/param, nf4/fp4 0.5 byte/param + one fp32 scale per 64 "
            "weights; embeddings, norms and lm_head stay at model.dtype_bytes; costs one "
            "dequantized layer of workspace and the dequantization FLOPs. A list (or auto: "
            "[none, int8, nf4]) lets the planner take, per device, the first that makes LoRA "
            "fit (clients.parquet column base_quantization); downloads stay at "
            "model.dtype_bytes unless model.workloads.downlink says otherwise; "
            "docs/large-models.md 'Precisions'"))
    activation_dtype_bytes: float | None = Field(None, gt=0, le=8, description=(
        "bytes per activation element (compute dtype): activation memory scales from the "
        "16-bit formulas by this/2 and split traffic is sent at it; unset: activations as "
        "16-bit and split traffic at model.dtype_bytes (earlier versions)"))
    update_dtype_bytes: float | None = Field(None, gt=0, le=8, description=(
        "bytes per trained parameter (adapters, their gradients, dense uploads and adapter "
        "downloads); unset: model.dtype_bytes"))
    pruning: Pruning = Field(Pruning(), description=(
        "pruning of the global model (block linear weights), for download, memory and compute"))
    downlink: Downlink = Field(Downlink(), description=(
        "encoding of what the server sends down (base, changed blocks, adapters)"))
    require_deadline: bool = True
    base_cached: bool = True
    compression: Compression = Compression()
    rules: tuple[WorkloadRule, ...] = Field((), description=(
        "per-class workload rules, first match wins (population.mix[i].workload overrides); "
        "docs/bring-your-own.md"))

    @model_validator(mode="after")
    def _lists(self) -> WorkloadSettings:
        if len(set(self.order)) != len(self.order):
            raise ValueError("order: each workload kind at most once")
        for name in ("lora_ranks", "partial_blocks", "split_cuts"):
            v = getattr(self, name)
            if v != "auto" and any(not 1 <= x <= 4096 for x in v):
                raise ValueError(f"{name}: integers in [1, 4096]")
        if any(not 0 < p <= 1 for p in self.width_rates):
            raise ValueError("width_rates: rates in (0, 1]")
        return self


class Model(_Strict):
    """``kind`` names a model kind (simulator/core/registry.py ``MODEL_KINDS``); fields only some
    kinds read (``clock_proxy``: mlp, transformer and the torch kinds; ``factory``: custom;
    ``family``, ``preset``, ``config``, ``config_path``:
    transformer) are refused for the others, as the kinds declare."""

    kind: str = Field("mlp", pattern=PART_NAME, description=(
        "mlp, transformer, or one a plugin listed under plugins: registers"))
    params: PluginParams = Field(default_factory=dict, description=(
        "parameters of a plugin model kind, validated by its own schema"))
    hidden: tuple[int, ...] = Field((64, 32), max_length=8)
    clock_proxy: ClockProxy | None = None
    # kind: custom (docs/bring-your-own.md)
    factory: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_.]*:[A-Za-z_][A-Za-z0-9_.]*$",
                                description=(
        "kind custom: 'package.module:function' returning an nn.Module or (nn.Module, loss); "
        "called with input_shape and n_classes when it takes them"))
    factory_args: dict[str, Any] = Field(default_factory=dict, description=(
        "kind custom: keyword arguments passed to the factory"))
    # kind: transformer (docs/large-models.md); checked in full by planning.llm_config
    family: Literal["llama", "gpt2", "bert"] | None = None
    preset: Literal["llama-2-7b", "mistral-7b", "llama-2-13b", "llama-2-70b", "tinyllama-1.1b",
                    "tiny-llama"] | None = None
    config: dict[str, Any] | None = None
    config_path: str | None = None
    seq_len: int = Field(512, ge=1, le=1 << 20, description="tokens per training sequence")
    dtype_bytes: float = Field(2.0, gt=0, le=8, description="bytes per weight (2: bf16)")
    workloads: WorkloadSettings = WorkloadSettings()

    @field_validator("hidden")
    @classmethod
    def _hidden(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        for h in v:
            if not 1 <= h <= 65536:
                raise ValueError("hidden sizes must be integers in [1, 65536]")
        return v


# --- parameters of the built-in vision model kinds (model.params) -------------------------------
class CNNParams(_Strict):
    """``model.kind: cnn``."""

    hidden: int = Field(2048, ge=1, le=65536, description="units of the dense layer")


class ResNetParams(_Strict):
    """``model.kind: resnet18``."""

    stem: Literal["imagenet", "cifar"] = Field("imagenet", description=(
        "imagenet: 7x7/2 convolution and max pool; cifar: one 3x3/1 convolution (small images)"))


class MobileNetParams(_Strict):
    """``model.kind: mobilenet_v2``."""

    width_mult: float = Field(1.0, gt=0, le=4, description="channel width multiplier")
    dropout: float = Field(0.2, ge=0, lt=1, description="dropout before the classifier")
