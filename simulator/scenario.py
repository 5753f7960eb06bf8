"""Scenario files: the only place YAML is parsed and validated (pydantic v2).

``load_scenario(path)`` returns a frozen :class:`Scenario` or raises :class:`ScenarioError`
carrying one line per problem, each naming the field path and what is allowed.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from simulator import FedFleetError, InputError

RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_CLIENTS = 100_000_000


class ScenarioError(FedFleetError):
    """One or more problems in a scenario; ``lines`` are ready to print."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__(lines[0] if len(lines) == 1 else f"{len(lines)} problems: " + "; ".join(lines))


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class MixEntry(_Strict):
    profile: str = Field(min_length=1)
    share: float = Field(gt=0, le=1)


class Population(_Strict):
    size: int = Field(ge=1, le=MAX_CLIENTS)
    mix: tuple[MixEntry, ...] = Field(min_length=1)
    profiles_dir: str | None = None

    @model_validator(mode="after")
    def _shares(self) -> "Population":
        total = sum(m.share for m in self.mix)
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"mix shares must sum to 1 (got {total:g})")
        return self


class SyntheticData(_Strict):
    """LEAF's synthetic(alpha, beta) (Li et al., FedProx 2020)."""

    alpha: float = Field(1.0, ge=0, le=100)
    beta: float = Field(1.0, ge=0, le=100)
    dim: int = Field(60, ge=2, le=4096)
    classes: int = Field(10, ge=2, le=1000)
    mean_samples: int = Field(50, ge=2, le=100_000, description="mean of power-law client sizes")
    test_samples: int = Field(2000, ge=10, le=1_000_000)


class Data(_Strict):
    dataset: Literal["digits", "synthetic", "text"] = "digits"
    partition: Literal["iid", "dirichlet", "shards", "natural"] = "iid"
    alpha: float = Field(0.5, gt=0, le=1e4, description="Dirichlet concentration")
    shards_per_client: int = Field(2, ge=1, le=100)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    samples_per_client: int = Field(
        50, ge=1, le=1_000_000, description="median samples per client (digits, text)"
    )
    size_sigma: float = Field(0.5, ge=0, le=3, description="log-normal spread of client sizes")
    synthetic: SyntheticData = SyntheticData()
    path: str | None = None


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


class Model(_Strict):
    kind: Literal["mlp"] = "mlp"
    hidden: tuple[int, ...] = Field((64, 32), max_length=8)
    clock_proxy: ClockProxy | None = None

    @field_validator("hidden")
    @classmethod
    def _hidden(cls, v: tuple[int, ...]) -> tuple[int, ...]:
        for h in v:
            if not 1 <= h <= 65536:
                raise ValueError("hidden sizes must be integers in [1, 65536]")
        return v


class Training(_Strict):
    epochs: int = Field(1, ge=1, le=1000)
    batch_size: int = Field(16, ge=1, le=1_000_000)
    lr: float = Field(0.05, gt=0, le=100)
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = Field(0.0, ge=0, lt=1)


class Selection(_Strict):
    policy: Literal["random"] = "random"


class Aggregation(_Strict):
    method: Literal["fedavg"] = "fedavg"
    server_lr: float = Field(1.0, gt=0, le=100)


class Executor(_Strict):
    kind: Literal["local", "ray"] = "local"
    num_actors: int | None = Field(None, ge=1, le=4096)
    address: str | None = None
    num_cpus_per_actor: float = Field(1.0, gt=0, le=1024)
    num_gpus_per_actor: float = Field(0.0, ge=0, le=64)
    resources: dict[str, float] = Field(default_factory=dict)
    batched: bool = True
    max_retries: int = Field(3, ge=0, le=100)


class Output(_Strict):
    runs_dir: str = "runs"
    checkpoint_every: int = Field(0, ge=0, le=1_000_000)


class Scenario(_Strict):
    name: str = Field(pattern=RUN_NAME_RE.pattern)
    description: str = ""
    seed: int = Field(0, ge=0, le=2**63 - 1)
    mode: Literal["real", "analytic"] = "real"
    population: Population
    data: Data = Data()
    model: Model = Model()
    training: Training = Training()
    rounds: int = Field(ge=1, le=10_000_000)
    clients_per_round: int = Field(ge=1, le=MAX_CLIENTS)
    overcommit: float = Field(1.0, ge=1.0, le=10.0)
    deadline_s: float | None = Field(None, gt=0, le=1e9)
    selection: Selection = Selection()
    aggregation: Aggregation = Aggregation()
    executor: Executor = Executor()
    output: Output = Output()
    plugins: tuple[str, ...] = ()

    @model_validator(mode="after")
    def _cross(self) -> "Scenario":
        if self.clients_per_round > self.population.size:
            raise ValueError(
                f"clients_per_round ({self.clients_per_round}) exceeds population.size "
                f"({self.population.size})"
            )
        return self

    @property
    def selected_per_round(self) -> int:
        """Clients invited per round: ceil(k * overcommit), capped at the population."""
        return min(self.population.size, math.ceil(self.clients_per_round * self.overcommit - 1e-9))


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for p in loc:
        if isinstance(p, int):
            out += f"[{p}]"
        else:
            out += ("." if out else "") + str(p)
    return out


_MSG_FIXES = {
    "extra_forbidden": "unknown field (check the spelling; see docs/scenario.md)",
    "missing": "required field is missing",
}


def format_errors(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        loc = _loc(tuple(p for p in e["loc"] if not str(p).startswith("function-after")))
        msg = _MSG_FIXES.get(e["type"], e["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if e["type"] == "literal_error":
            msg = f"got {e.get('input')!r}; " + msg.replace("Input should be", "allowed:")
        lines.append(f"{loc or '(top level)'}: {msg}")
    return lines


def _check_references(sc: Scenario) -> list[str]:
    """Cross-file checks pydantic cannot do alone: profiles exist, files exist."""
    from simulator.profiles import catalog  # local: profiles import yaml/pydantic only

    lines: list[str] = []
    try:
        known = catalog(sc.population.profiles_dir)
    except InputError as exc:
        return [str(exc)]
    for i, m in enumerate(sc.population.mix):
        if m.profile not in known:
            lines.append(
                f"population.mix[{i}].profile: unknown profile '{m.profile}' "
                f"(known: {', '.join(sorted(known))})"
            )
    if sc.data.path is not None and not Path(sc.data.path).exists():
        lines.append(f"data.path: file not found: '{sc.data.path}'")
    if sc.data.dataset != "text" and sc.data.partition == "natural":
        lines.append("data.partition: 'natural' needs dataset 'text' (allowed: iid, dirichlet, shards)")
    return lines


def parse_scenario(doc: Any) -> Scenario:
    """Validate an already-parsed YAML document."""
    if not isinstance(doc, dict):
        raise ScenarioError(["(top level): a scenario must be a YAML mapping of fields"])
    try:
        sc = Scenario.model_validate(doc)
    except ValidationError as exc:
        raise ScenarioError(format_errors(exc)) from None
    problems = _check_references(sc)
    if problems:
        raise ScenarioError(problems)
    return sc


def read_yaml(path: str | Path) -> Any:
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ScenarioError([f"{p}: file not found"]) from None
    except IsADirectoryError:
        raise ScenarioError([f"{p}: is a directory, not a scenario file"]) from None
    except PermissionError:
        raise ScenarioError([f"{p}: permission denied"]) from None
    except UnicodeDecodeError:
        raise ScenarioError([f"{p}: not UTF-8 text"]) from None
    except OSError as exc:
        raise ScenarioError([f"{p}: cannot read ({exc.strerror})"]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError([f"{p}: invalid YAML{where}: {problem}"]) from None
    except RecursionError:
        raise ScenarioError([f"{p}: invalid YAML: nesting too deep"]) from None


def load_scenario(path: str | Path, overrides: dict[str, Any] | None = None) -> Scenario:
    doc = read_yaml(path)
    if overrides:
        doc = apply_overrides(doc, overrides)
    return parse_scenario(doc)


def apply_overrides(doc: Any, overrides: dict[str, Any]) -> Any:
    """Set dotted keys (``selection.policy``) in a copy of a raw document."""
    import copy

    if not isinstance(doc, dict):
        return doc
    out = copy.deepcopy(doc)
    for key, value in overrides.items():
        node = out
        parts = key.split(".")
        for p in parts[:-1]:
            if not isinstance(node.get(p), dict):
                node[p] = {}
            node = node[p]
        node[parts[-1]] = value
    return out


def validate_run_name(name: str) -> str:
    if not RUN_NAME_RE.match(name) or name in {".", ".."}:
        raise InputError("--name", f"invalid run name {name!r} (allowed: letters, digits, . _ -; "
                         "must start with a letter or digit; at most 128 characters)")
    return name
