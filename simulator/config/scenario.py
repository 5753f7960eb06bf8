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
from pydantic import Field, ValidationError, field_validator, model_validator

from simulator import FedFleetError, InputError
from simulator.config.adversary import Adversary, adversary_problems
from simulator.config.base import PART_NAME, PluginParams
from simulator.config.base import Strict as _Strict
from simulator.config.dynamics import Capacity, Dynamics, Estimates, TraceFleet
from simulator.config.evaluation import Evaluation, evaluation_problems
from simulator.config.hierarchy import Hierarchy, hierarchy_problems
from simulator.config.model import (  # noqa: F401  (re-exported)
    ClockProxy,
    Compression,
    Model,
    WorkloadChoice,
    WorkloadSettings,
)
from simulator.config.privacy import Privacy, SecureAggregation, privacy_problems
from simulator.config.selection import SelectionBase, selection_problems
from simulator.io.files import SCENARIO_MAX_BYTES, read_regular_text

RUN_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")
MAX_CLIENTS = 100_000_000


class ScenarioError(FedFleetError):
    """One or more problems in a scenario; ``lines`` are ready to print."""

    def __init__(self, lines: list[str]) -> None:
        self.lines = lines
        super().__init__(lines[0] if len(lines) == 1
                         else f"{len(lines)} problems: " + "; ".join(lines))


class MixEntry(_Strict):
    profile: str = Field(min_length=1)
    share: float = Field(gt=0, le=1)
    workload: WorkloadChoice | None = Field(None, description=(
        "what this class trains (kind, lora_rank, blocks, cut, width); overrides "
        "model.workloads.rules; the planner still checks memory and the deadline"))


class Population(_Strict):
    size: int = Field(ge=1, le=MAX_CLIENTS)
    mix: tuple[MixEntry, ...] = Field(min_length=1)
    profiles_dir: str | None = None
    require_link: tuple[Literal["wifi", "4g", "5g", "3g", "ethernet", "datacenter"], ...] = Field(
        (), description="only clients on these links ever train (e.g. [wifi]); empty: any link")
    # Battery model (simulator/fleet/energy.py): below this charge a device declines (low_battery).
    min_battery_fraction: float = Field(0.0, ge=0, lt=1)
    battery_recharge_hours: float | None = Field(
        None, gt=0, le=1000, description="full recharge time while idle in the window; null: none")
    trace: TraceFleet | None = Field(None, description=(
        "per-client compute, bandwidth, availability from a trace table (docs/clock.md)"))

    @model_validator(mode="after")
    def _shares(self) -> Population:
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


class TextData(_Strict):
    """Text corpus (data.dataset: text); sequences are model.seq_len + 1 characters."""

    source: Literal["generated", "path"] | None = Field(
        None, description="generated corpus or data.path; unset: path if data.path is set")
    styles: int = Field(8, ge=1, le=1000, description="writing styles of the generated corpus")
    words: int = Field(64, ge=8, le=100_000, description="lexicon size of the generated corpus")
    max_sequences: int = Field(256, ge=1, le=1_000_000, description="cap per client")
    test_sequences: int = Field(256, ge=1, le=1_000_000, description="held-out sequences")


class Data(_Strict):
    """``dataset`` and ``partition`` name registered parts (simulator/core/registry.py
    ``DATASETS``, ``PARTITIONERS``); a plugin's parameters go in ``params`` /
    ``partition_params``."""

    dataset: str = Field("digits", pattern=PART_NAME, description=(
        "digits, synthetic, text, or one a plugin listed under plugins: registers"))
    partition: str = Field("iid", pattern=PART_NAME, description=(
        "iid, dirichlet, shards, natural (text), or one a plugin registers"))
    params: PluginParams = Field(default_factory=dict, description=(
        "parameters of a plugin dataset, validated by its own schema"))
    partition_params: PluginParams = Field(default_factory=dict, description=(
        "parameters of a plugin partitioner, validated by its own schema"))
    alpha: float = Field(0.5, gt=0, le=1e4, description="Dirichlet concentration")
    shards_per_client: int = Field(2, ge=1, le=100)
    test_fraction: float = Field(0.2, gt=0, lt=1)
    samples_per_client: int = Field(
        50, ge=1, le=1_000_000, description="median samples per client (digits, text)"
    )
    size_sigma: float = Field(0.5, ge=0, le=3, description="log-normal spread of client sizes")
    size_distribution: Literal["lognormal", "powerlaw"] = Field("lognormal", description=(
        "client sizes around samples_per_client: log-normal (size_sigma) or a power law "
        "(Pareto, size_exponent)"))
    size_exponent: float = Field(1.5, gt=0.1, le=10, description=(
        "power-law shape a: P(size > s) ~ s^-a (size_distribution powerlaw)"))
    synthetic: SyntheticData = SyntheticData()
    text: TextData = TextData()
    path: str | None = Field(None, description=(
        "the data file or folder of datasets that read one (text, tabular, images, hf); "
        "refused for the others"))
    test_path: str | None = Field(None, description=(
        "a held-out test file in the same format as path (tabular, images, hf); default: "
        "the data's own test split, else test_fraction of the rows"))


class Training(_Strict):
    epochs: int = Field(1, ge=1, le=1000)
    batch_size: int = Field(16, ge=1, le=1_000_000)
    lr: float = Field(0.05, gt=0, le=100)
    optimizer: Literal["sgd", "adam"] = "sgd"
    momentum: float = Field(0.0, ge=0, lt=1)


class Selection(SelectionBase):
    """``policy`` (a built-in name or a plugin class path listed under ``plugins:``) and one
    optional parameter block per built-in policy, e.g. ``selection.oort.alpha``
    (simulator/config/selection.py)."""


class FedBuffSettings(_Strict):
    """FedBuff (Nguyen et al. AISTATS 2022); semantics in docs/clock.md."""

    concurrency: int = Field(100, ge=1, le=MAX_CLIENTS, description="clients training at once")
    buffer_size: int = Field(10, ge=1, le=MAX_CLIENTS, description="updates per aggregation")
    staleness: Literal["sqrt", "polynomial"] = "sqrt"
    staleness_exponent: float = Field(0.5, ge=0, le=10, description="f in (1+tau)^-f")
    max_staleness: int = Field(20, ge=0, le=100_000, description="staler updates are discarded")


NAME_RE = r"^[A-Za-z_][A-Za-z0-9_.:-]{0,127}$"


class Aggregation(_Strict):
    """When the server aggregates (``trigger``) and what it does with the sums (``strategy``).

    ``method: fedbuff`` is shorthand for ``trigger: buffered`` with ``strategy: fedbuff``; a
    ``hierarchy:`` block implies ``trigger: hierarchical``."""

    method: Literal["fedavg", "fedbuff"] = "fedavg"
    server_lr: float = Field(1.0, gt=0, le=100)
    fedbuff: FedBuffSettings | None = None
    strategy: str | None = Field(None, pattern=NAME_RE, description=(
        "server strategy: fedavg, fedbuff, or one a plugin registers (default: fedbuff with "
        "method fedbuff, else fedavg)"))
    trigger: str | None = Field(None, pattern=NAME_RE, description=(
        "sync, buffered, hierarchical, or one a plugin registers (default: from method and "
        "hierarchy)"))
    params: dict[str, Any] = Field(default_factory=dict, description=(
        "parameters of the strategy, validated by the strategy's own schema"))


class Executor(_Strict):
    kind: Literal["auto", "local", "ray"] = Field("auto", description=(
        "auto: in-process (local) when the run is too small for Ray to pay off, Ray when it is "
        "large or executor.address names a cluster (the choice and its reason are logged and "
        "recorded in the manifest); local: in-process; ray: a pool of Ray actors"))
    num_actors: int | None = Field(None, ge=1, le=4096)
    address: str | None = None
    num_cpus_per_actor: float = Field(1.0, gt=0, le=1024)
    num_gpus_per_actor: float = Field(0.0, ge=0, le=64)
    resources: dict[str, float] = Field(default_factory=dict)
    # Ray actor placement: "default" packs actors where resources fit; "spread" puts them on as
    # many nodes as possible (Ray's SPREAD scheduling strategy; see docs/cluster.md).
    scheduling: Literal["default", "spread"] = "default"
    batched: bool = True
    batched_lora: bool = Field(False, description=(
        "train the LoRA clients of one round that share the frozen base model together in one "
        "batched pass (per-client adapters, ranks padded and masked; equal to per-client "
        "training up to float rounding, <= 2e-5 in the adapters); opt-in because the rounding "
        "changes a run's digits"))
    batched_vision: bool = Field(False, description=(
        "train the clients of one call of an nn.Module model (cnn, custom) together through "
        "torch.func vmap (stacked per-client parameters, per-client SGD on their own batches; "
        "equal to per-client training up to float rounding); models with batch norm, dropout, "
        "a custom loss or Adam train one by one. Opt-in: slower than one by one for "
        "convolutions on CPU, and the rounding changes a run's digits"))
    max_retries: int = Field(3, ge=0, le=100)

    @field_validator("resources")
    @classmethod
    def _resources(cls, v: dict[str, float]) -> dict[str, float]:
        for k, x in v.items():
            if not k or k in ("CPU", "GPU"):
                raise ValueError(f"{k!r}: custom resource names only (CPU and GPU are set with "
                                 "num_cpus_per_actor and num_gpus_per_actor)")
            if not (math.isfinite(x) and 0 <= x <= 1e6):
                raise ValueError(f"{k}: amounts must be finite numbers in [0, 1e6]")
        return v


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
    plugins: tuple[str, ...] = Field((), description=(
        "modules imported before the parts are looked up (they register model kinds, datasets, "
        "policies ... with simulator.register_*), or selection policy class paths "
        "(docs/plugins.md)"))
    privacy: Privacy = Privacy()
    secure_aggregation: SecureAggregation = SecureAggregation()
    hierarchy: Hierarchy | None = None
    dynamics: Dynamics = Field(Dynamics(), description=(
        "devices that change: bandwidth, throttling, links, availability (docs/clock.md)"))
    capacity: Capacity = Field(Capacity(), description="shared server/edge/split capacity")
    estimates: Estimates = Field(Estimates(), description="what selectors and planners know")
    adversary: Adversary | None = Field(None, description="Byzantine clients and their attack")
    evaluation: Evaluation = Field(Evaluation(), description=(
        "client-side evaluation on each client's held-out split and fine-tune personalisation "
        "(docs/strategies.md)"))

    @model_validator(mode="after")
    def _cross(self) -> Scenario:
        if self.clients_per_round > self.population.size:
            raise ValueError(
                f"clients_per_round ({self.clients_per_round}) exceeds population.size "
                f"({self.population.size})"
            )
        fb = self.aggregation.fedbuff
        if fb is not None and self.trigger != "buffered":
            raise ValueError("aggregation.fedbuff: only used with the buffered trigger "
                             "(aggregation.method fedbuff or aggregation.trigger buffered)")
        if self.trigger == "buffered" and fb is not None and fb.concurrency > self.population.size:
            raise ValueError(f"aggregation.fedbuff.concurrency ({fb.concurrency}) exceeds "
                             f"population.size ({self.population.size})")
        if self.trigger == "hierarchical" and self.hierarchy is None:
            raise ValueError("aggregation.trigger: 'hierarchical' needs a hierarchy: block")
        if self.hierarchy is not None and self.trigger != "hierarchical":
            raise ValueError(f"hierarchy: used only by the hierarchical trigger (aggregation."
                             f"trigger is '{self.trigger}')")
        return self

    @property
    def trigger(self) -> str:
        """The aggregation trigger: explicit, else hierarchical with a ``hierarchy:`` block,
        buffered with ``method: fedbuff``, else sync."""
        agg = self.aggregation
        if agg.trigger:
            return agg.trigger
        if self.hierarchy is not None:
            return "hierarchical"
        return "buffered" if agg.method == "fedbuff" else "sync"

    @property
    def strategy(self) -> str:
        agg = self.aggregation
        if agg.strategy:
            return agg.strategy
        return "fedbuff" if agg.method == "fedbuff" else "fedavg"

    def features(self) -> dict[str, bool]:
        """Which optional features (simulator/core/registry.py FEATURES) this scenario uses."""
        return {
            "checkpoint": self.output.checkpoint_every > 0,
            "privacy": self.privacy.mode != "none",
            "secure_aggregation": self.secure_aggregation.enabled,
        }

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
            # A key as the user typed it, unless it would break the one-line message.
            key = str(p) if str(p).isprintable() and 0 < len(str(p)) <= 80 else _short_repr(p)
            out += ("." if out else "") + key
    return out


_MSG_FIXES = {
    "extra_forbidden": "unknown field (check the spelling; see docs/scenario.md)",
    "missing": "required field is missing",
}


def _short_repr(value: Any) -> str:
    """A bounded repr: an aliased YAML bomb must not be expanded into the error line."""
    import reprlib

    r = reprlib.Repr()
    r.maxlevel, r.maxstring, r.maxother = 2, 60, 60
    r.maxlist = r.maxtuple = r.maxdict = r.maxset = 4
    return r.repr(value)


def format_errors(err: ValidationError) -> list[str]:
    lines = []
    for e in err.errors():
        loc = _loc(tuple(p for p in e["loc"] if not str(p).startswith("function-after")))
        msg = _MSG_FIXES.get(e["type"], e["msg"])
        if msg.startswith("Value error, "):
            msg = msg[len("Value error, "):]
        if e["type"] == "literal_error":
            msg = (f"got {_short_repr(e.get('input'))}; "
                   + msg.replace("Input should be", "allowed:"))
        lines.append(f"{loc or '(top level)'}: {msg}")
    return lines


def _check_references(sc: Scenario) -> list[str]:
    """Cross-file checks pydantic cannot do alone: profiles exist, files exist."""
    from simulator.fleet.profiles import catalog  # local: profiles import yaml/pydantic only

    lines: list[str] = []
    try:
        known = catalog(sc.population.profiles_dir)
    except InputError as exc:
        return [str(exc)]
    except OSError as exc:  # e.g. ENAMETOOLONG from the directory check
        return [f"population.profiles_dir: cannot read '{sc.population.profiles_dir}' "
                f"({exc.strerror or exc})"]
    for i, m in enumerate(sc.population.mix):
        if m.profile not in known:
            lines.append(
                f"population.mix[{i}].profile: unknown profile '{m.profile}' "
                f"(known: {', '.join(sorted(known))})"
            )
    if sc.data.path is not None:
        try:
            found = Path(sc.data.path).exists()
        except OSError as exc:  # e.g. ENAMETOOLONG
            lines.append(f"data.path: cannot access '{sc.data.path}' ({exc.strerror or exc})")
            found = True
        if not found:
            lines.append(f"data.path: file not found: '{sc.data.path}'")
    if sc.data.test_path is not None and not Path(sc.data.test_path).exists():
        lines.append(f"data.test_path: file not found: '{sc.data.test_path}'")
    if sc.data.dataset == "text" and sc.data.text.source == "path" and sc.data.path is None:
        lines.append("data.path: required when data.text.source is 'path'")
    lines += selection_problems(sc)
    lines += part_problems(sc)
    lines += privacy_problems(sc, known) + hierarchy_problems(sc, known)
    lines += adversary_problems(sc)
    lines += evaluation_problems(sc)
    return lines


def part_problems(sc: Scenario) -> list[str]:
    """Plugins import; every named part exists, is of its kind and takes the parameters given;
    the trigger declares every feature the scenario uses (the reason is generated from
    simulator/core/registry.py's declarations, not written per combination)."""
    from simulator.core.registry import FEATURES, STRATEGIES, TRIGGERS, load_plugins

    try:
        load_plugins(sc.plugins)
    except InputError as exc:
        return [_plugin_error(sc, exc)]
    lines: list[str] = []
    for reg, name in ((TRIGGERS, sc.trigger), (STRATEGIES, sc.strategy)):
        try:
            reg.load(name)
        except InputError as exc:
            lines.append(str(exc))
    try:
        STRATEGIES.parse_params(sc.strategy, sc.aggregation.params, "aggregation.params")
    except InputError as exc:
        lines.append(str(exc))
    if sc.trigger in TRIGGERS:
        declared = TRIGGERS.entry(sc.trigger).declares
        for feature, used in sc.features().items():
            if used and feature not in declared:
                lines.append(f"{FEATURES[feature]}: not supported by aggregation trigger "
                             f"'{sc.trigger}' (it supports: {', '.join(sorted(declared))})")
    lines += registry_problems(sc)
    return lines


def _plugin_error(sc: Scenario, exc: InputError) -> str:
    """A plugin that fails to import, named as the selection policy when it is one."""
    for i, path in enumerate(sc.plugins):
        if exc.field == f"plugins[{i}]" and path == sc.selection.policy:
            return f"selection.policy: plugin '{path}' (plugins[{i}]) {exc.message}"
    return str(exc)


def registry_problems(sc: Scenario) -> list[str]:
    """Model kind, dataset, partitioner, workload kinds and selection policy (after plugins are
    imported): each is registered (simulator/core/registry.py), of its kind and takes the
    parameters given; the partitioner fits the dataset and the model block the kind, as their
    declarations say. (The model kind against the dataset is checked when the parts are built:
    ``fedfleet validate`` and the start of a run.)"""
    from simulator.core.registry import (
        DATASETS,
        MODEL_KINDS,
        PARTITIONERS,
        POLICIES,
        WORKLOADS,
        declared,
        lookup,
        mismatch,
        parse_params_with,
    )

    lines: list[str] = []

    def check(fn: Any, *args: Any) -> bool:
        try:
            fn(*args)
        except InputError as exc:
            lines.append(str(exc))
            return False
        return True

    m, d, sel = sc.model, sc.data, sc.selection
    known = {}
    for reg, name, raw, where in ((MODEL_KINDS, m.kind, m.params, "model.params"),
                                  (DATASETS, d.dataset, d.params, "data.params"),
                                  (PARTITIONERS, d.partition, d.partition_params,
                                   "data.partition_params")):
        known[reg.field] = check(reg.load, name) and check(reg.parse_params, name, raw, where)
    for i, kind in enumerate(m.workloads.order):
        try:
            WORKLOADS.load(kind)
        except InputError as exc:
            lines.append(f"{exc.field}[{i}]: {exc.message}")
    try:
        _, model = lookup(POLICIES, sel.policy, sc.plugins)
    except InputError as exc:
        lines.append(str(exc))
    else:
        if model is not None:
            check(parse_params_with, POLICIES, sel.policy, model, sel.params, "selection.params")
        elif sel.params:
            block = (f"; '{sel.policy}' takes its parameters in selection.{sel.policy}"
                     if sel.policy in type(sel).model_fields else "")
            lines.append(f"selection.params: selection policy '{sel.policy}' takes no "
                         f"parameters (got {', '.join(sorted(map(str, sel.params)))}){block}")
    if known["data.dataset"]:
        lines += path_problems(sc)
    if known["data.partition"] and known["data.dataset"]:
        bad = mismatch(PARTITIONERS, d.partition, DATASETS, d.dataset, "split", "needs", "has")
        if bad:
            lines.append(bad)
    if not known["model.kind"]:
        return lines
    # Fields of model: that only some kinds read (their uses: declarations) are refused for the
    # others, e.g. model.preset for an mlp.
    before = len(lines)
    users: dict[str, list[str]] = {}
    for n in MODEL_KINDS.names():
        for f in declared(MODEL_KINDS.entry(n), "uses"):
            users.setdefault(f, []).append(n)
    for f, kinds in sorted(users.items()):
        if m.kind not in kinds and f in type(m).model_fields and getattr(m, f) is not None:
            lines.append(f"model.{f}: only for kind {' or '.join(repr(k) for k in kinds)} "
                         f"(model.kind is '{m.kind}')")
    if len(lines) == before:  # the kind's own checks of its model: block (a transformer's ...)
        from simulator.core.registry import model_kind

        try:
            kind = model_kind(sc, check_data=False)
            lines += [str(x) for x in getattr(kind, "problems", list)()]
        except InputError as exc:
            lines.append(str(exc))
        except Exception as exc:  # a plugin kind's own error: one line, not a traceback
            why = (str(exc).splitlines() or [""])[0][:200]
            lines.append(f"model.kind: building '{m.kind}' failed ({type(exc).__name__}: {why})")
    return lines


def path_problems(sc: Scenario) -> list[str]:
    """``data.path`` / ``data.test_path`` for a dataset that reads no file, and a power-law size
    distribution for one that draws its own sizes, are refused rather than ignored (as the
    datasets declare: ``reads:path``, ``sizes:own``)."""
    from simulator.core.registry import DATASETS, declared

    d = sc.data
    entry = DATASETS.entry(d.dataset)
    readers = [n for n in DATASETS.names() if "path" in declared(DATASETS.entry(n), "reads")]
    lines = []
    if "path" not in declared(entry, "reads"):
        for f in ("path", "test_path"):
            if getattr(d, f) is not None:
                lines.append(f"data.{f}: dataset '{d.dataset}' reads no file, so it would be "
                             f"ignored (datasets that read one: {', '.join(readers)})")
    elif d.test_path is not None and d.dataset == "text":
        lines.append("data.test_path: text holds out the last test_fraction of each client's "
                     "text (a test file is for tabular, images, hf)")
    if d.size_distribution != "lognormal" and "own" in declared(entry, "sizes"):
        lines.append(f"data.size_distribution: dataset '{d.dataset}' draws its own client sizes "
                     f"(see data.{d.dataset})")
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
    try:  # a regular file under the limit: a FIFO or /dev/zero is an error, never a hang
        text = read_regular_text(p, SCENARIO_MAX_BYTES, what="scenario file")
    except InputError as exc:
        raise ScenarioError([str(exc)]) from None
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ScenarioError([f"{p}: invalid YAML{where}: {problem}"]) from None
    except RecursionError:
        raise ScenarioError([f"{p}: invalid YAML: nesting too deep"]) from None
    except Exception as exc:  # PyYAML's scalar constructors leak ValueError, IndexError, ...
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise ScenarioError([f"{p}: invalid YAML: a value cannot be read ({why})"]) from None


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
    if not RUN_NAME_RE.fullmatch(name) or name in {".", ".."}:
        raise InputError("--name", f"invalid run name {name!r} (allowed: letters, digits, . _ -; "
                         "must start with a letter or digit; at most 128 characters)")
    return name
