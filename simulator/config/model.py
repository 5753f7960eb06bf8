"""The ``model:`` section of a scenario: MLPs, transformers, and the planner's fallbacks."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from simulator.config.base import PART_NAME, PluginParams
from simulator.config.base import Strict as _Strict


class ClockProxy(_Strict):
    """Charge the simulated clock for a different model than the one really trained.

    FedScale-style decoupling: e.g. train a small MLP for speed while the clock charges the
    bytes and FLOPs of a ResNet-18 update. Recorded in the manifest; leave unset to charge the
    trained model itself.
    """

    name: str = "proxy"
    params: float = Field(gt=0, le=1e13, description="parameters sent down and up")
    train_flops_per_sample: float = Field(gt=0, le=1e16)
    bytes_per_param: float = Field(4.0, gt=0, le=8)


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
    require_deadline: bool = True
    base_cached: bool = True
    compression: Compression = Compression()

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
    kinds read (``clock_proxy``: mlp; ``family``, ``preset``, ``config``, ``config_path``:
    transformer) are refused for the others, as the kinds declare."""

    kind: str = Field("mlp", pattern=PART_NAME, description=(
        "mlp, transformer, or one a plugin listed under plugins: registers"))
    params: PluginParams = Field(default_factory=dict, description=(
        "parameters of a plugin model kind, validated by its own schema"))
    hidden: tuple[int, ...] = Field((64, 32), max_length=8)
    clock_proxy: ClockProxy | None = None
    # kind: transformer (docs/large-models.md); checked in full by planning.llm_config
    family: Literal["llama", "gpt2", "bert"] | None = None
    preset: Literal["llama-2-7b", "llama-2-13b", "llama-2-70b", "tinyllama-1.1b",
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
