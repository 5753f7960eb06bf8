"""Device profiles: measured facts about a device class, units in the field names.

One YAML file per class in ``device_profiles/``. Every section carries a ``source:`` naming the
public measurement (or stating the assumption) behind its numbers; see device_profiles/README.md.
Profiles are frozen pydantic models; the population turns them into numpy columns.
"""

from __future__ import annotations

import math
from functools import lru_cache
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simulator import InputError
from simulator.io.files import PROFILE_MAX_BYTES, read_regular_text

PACKAGE_PROFILES_DIR = Path(__file__).resolve().parents[2] / "device_profiles"

Precision = Literal["fp32", "fp16", "bf16", "int8"]
LinkType = Literal["wifi", "4g", "5g", "3g", "ethernet", "datacenter"]
DeviceKind = Literal["phone", "tablet", "board", "laptop", "server", "hub"]


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Compute(_Frozen):
    peak_flops_per_s: dict[Precision, float] = Field(
        description="vendor peak, dense, per precision")
    precision: Precision = Field(description="precision used for training on this class")
    train_efficiency: float = Field(
        gt=0, le=1, description="sustained training / peak (assumption)")
    spread_sigma: float = Field(0.2, ge=0, le=3, description="log-normal per-device spread")
    step_overhead_s: float = Field(
        0.0, ge=0, le=60, description="fixed seconds per optimizer step (framework overhead; "
        "measured by `fedfleet profiles calibrate`, docs/clock.md)")
    op_overhead_s: float = Field(
        0.0, ge=0, le=1, description="fixed seconds per tensor operation a training step "
        "dispatches (ops per step by model and workload: simulator/planning/ops.py; measured by "
        "`fedfleet profiles calibrate`, docs/clock.md)")
    source: str = Field(min_length=3)

    @field_validator("peak_flops_per_s")
    @classmethod
    def _positive(cls, v: dict[str, float]) -> dict[str, float]:
        if not v:
            raise ValueError("at least one precision is required")
        for k, x in v.items():
            if not (x > 0 and math.isfinite(x)):
                raise ValueError(f"{k} must be a positive finite number")
        return v

    @model_validator(mode="after")
    def _precision_listed(self) -> Compute:
        if self.precision not in self.peak_flops_per_s:
            raise ValueError(
                f"precision '{self.precision}' has no peak_flops_per_s entry "
                f"(listed: {', '.join(self.peak_flops_per_s)})"
            )
        return self

    @property
    def train_flops_per_s(self) -> float:
        return self.peak_flops_per_s[self.precision] * self.train_efficiency


class Memory(_Frozen):
    memory_bytes: float = Field(gt=0, le=1e13)
    usable_fraction: float = Field(gt=0, le=1, description="share a training job may use")
    source: str = Field(min_length=3)

    @property
    def usable_bytes(self) -> float:
        return self.memory_bytes * self.usable_fraction


class Link(_Frozen):
    link: LinkType
    share: float = Field(gt=0, le=1, description="fraction of this class's devices on this link")
    downlink_bits_per_s_median: float = Field(gt=0, le=1e12)
    uplink_bits_per_s_median: float = Field(gt=0, le=1e12)
    sigma: float = Field(0.5, ge=0, le=3, description="log-normal sigma around the medians")
    latency_s: float = Field(0.03, ge=0, le=10, description="round-trip time per transfer")
    source: str = Field(min_length=3)


class Network(_Frozen):
    links: tuple[Link, ...] = Field(min_length=1)

    @model_validator(mode="after")
    def _shares(self) -> Network:
        total = sum(link.share for link in self.links)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"link shares must sum to 1 (got {total:g})")
        return self


class Energy(_Frozen):
    train_watts: float = Field(ge=0, le=10_000)
    transmit_watts: float = Field(ge=0, le=10_000)
    idle_watts: float = Field(0.0, ge=0, le=10_000)
    battery_wh: float | None = Field(None, gt=0, le=10_000, description="null: mains powered")
    source: str = Field(min_length=3)


class Availability(_Frozen):
    pattern: Literal["always", "diurnal"] = "always"
    window_start_hour: float = Field(0.0, ge=0, lt=24, description="local hour the window opens")
    window_hours: float = Field(24.0, gt=0, le=24)
    start_jitter_hours: float = Field(0.0, ge=0, le=12, description="uniform +- per device")
    timezone_offsets_hours: tuple[float, ...] = Field((0.0,), min_length=1)
    source: str = Field(min_length=3)

    @field_validator("timezone_offsets_hours")
    @classmethod
    def _tz(cls, v: tuple[float, ...]) -> tuple[float, ...]:
        for x in v:
            if not -12 <= x <= 14:
                raise ValueError("time-zone offsets must lie in [-12, 14] hours")
        return v


class Dropout(_Frozen):
    hazard_per_hour: float = Field(ge=0, le=3600, description="rate of leaving mid-task")
    source: str = Field(min_length=3)


class DeviceProfile(_Frozen):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{1,63}$")
    label: str
    kind: DeviceKind
    compute: Compute
    memory: Memory
    network: Network
    energy: Energy
    availability: Availability
    dropout: Dropout
    notes: str = ""


def _format_validation(prefix: str, err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"])
        lines.append(f"{prefix}{'.' + loc if loc else ''}: {e['msg']}")
    return lines


def load_profile(path: Path) -> DeviceProfile:
    """Load one profile YAML; raises InputError naming the file and field."""
    try:
        doc = yaml.safe_load(read_regular_text(path, PROFILE_MAX_BYTES, what="profile file"))
    except yaml.YAMLError as exc:
        raise InputError(str(path), f"invalid YAML ({str(exc).splitlines()[0]})") from None
    except RecursionError:
        raise InputError(str(path), "invalid YAML: nesting too deep") from None
    except Exception as exc:  # PyYAML's scalar constructors leak ValueError, IndexError, ...
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(str(path), f"invalid YAML: a value cannot be read ({why})") from None
    if not isinstance(doc, dict):
        raise InputError(str(path), "a profile must be a YAML mapping")
    try:
        return DeviceProfile.model_validate(doc)
    except ValidationError as exc:
        raise InputError(str(path), _format_validation("", exc)[0].lstrip(".: ")) from None


@lru_cache(maxsize=16)
def _load_dir(directory: str) -> dict[str, DeviceProfile]:
    out: dict[str, DeviceProfile] = {}
    for path in sorted(Path(directory).glob("*.yaml")):
        prof = load_profile(path)
        if prof.name in out:
            raise InputError(str(path), f"duplicate profile name '{prof.name}'")
        out[prof.name] = prof
    return out


def catalog(extra_dir: str | Path | None = None) -> dict[str, DeviceProfile]:
    """All profiles shipped with the package, plus those in ``extra_dir`` (which win on a clash)."""
    out = dict(_load_dir(str(PACKAGE_PROFILES_DIR)))
    if extra_dir is not None:
        d = Path(extra_dir)
        if not d.is_dir():
            raise InputError("population.profiles_dir", f"not a directory: '{d}'")
        out.update(_load_dir(str(d.resolve())))
    return out
