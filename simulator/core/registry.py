"""Registries: every extensible part of a scenario is looked up here by name.

Each kind of part (model kinds, datasets, partitioners, workload kinds, selection policies,
server strategies, triggers) has one :class:`Registry`. Built-ins are added lazily as
``"module:attribute"`` strings so that looking a name up, listing the allowed names or reading what
a part declares never imports torch or ray; plugins register objects with the decorators
(``simulator.register_strategy`` ...) from a module listed under ``plugins:``.

An entry carries

- ``params``: a pydantic model of the part's parameters (validated like the built-in schema, errors
  name ``<field>.params.<key>``), or None when the part takes none;
- ``declares``: what the part supports (a trigger: ``checkpoint``, ``privacy``, ...), from which
  unsupported combinations are refused with a generated one-line reason;
- ``check``: the registry's kind test (a selector must have ``select`` ...), so that a plugin of
  the wrong kind is a one-line error at validate time rather than a traceback at run time.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from simulator.errors import InputError

T = TypeVar("T")


@dataclass
class Entry:
    name: str
    target: Any  # the object, or "package.module:attribute" loaded on first use
    params: Any = None  # pydantic model class of the parameters (None: no parameters)
    declares: frozenset[str] = frozenset()
    doc: str = ""
    plugin: bool = False
    _loaded: Any = field(default=None, repr=False)

    def load(self) -> Any:
        if self._loaded is None:
            if isinstance(self.target, str):
                mod, _, attr = self.target.partition(":")
                obj: Any = importlib.import_module(mod)
                for part in attr.split("."):
                    obj = getattr(obj, part)
                self._loaded = obj
            else:
                self._loaded = self.target
        return self._loaded


class Registry(Generic[T]):
    """Name -> :class:`Entry` for one kind of part; ``field`` is the scenario field naming it."""

    def __init__(self, kind: str, field: str, required: Iterable[str] = ()) -> None:
        self.kind = kind
        self.field = field
        self.required = tuple(required)  # attributes an object of this kind must have
        self._entries: dict[str, Entry] = {}

    # --- adding -------------------------------------------------------------------------------
    def add(self, name: str, target: Any, *, params: Any = None, declares: Iterable[str] = (),
            doc: str = "", plugin: bool = False, replace: bool = False) -> Entry:
        if not name or not isinstance(name, str):
            raise InputError(self.field, f"a {self.kind} needs a non-empty name")
        if name in self._entries and not replace:
            old = self._entries[name]
            if old.target is target or old.target == target:
                return old
            raise InputError(self.field, f"{self.kind} '{name}' is already registered "
                                         "(pick another name, or pass replace=True)")
        entry = Entry(name, target, params, frozenset(declares), doc, plugin)
        self._entries[name] = entry
        return entry

    def register(self, name: str | None = None, *, params: Any = None,
                 declares: Iterable[str] = (), replace: bool = False) -> Callable[[T], T]:
        """Decorator: ``@STRATEGIES.register("fedavgm", params=MomentumParams)``."""

        def deco(obj: T) -> T:
            n = name or getattr(obj, "name", None) or getattr(obj, "__name__", "")
            self.add(str(n), obj, params=params if params is not None else getattr(
                obj, "Params", None), declares=declares or getattr(obj, "declares", ()),
                doc=(getattr(obj, "__doc__", "") or "").strip().split("\n")[0],
                plugin=not getattr(obj, "__module__", "").startswith("simulator."),
                replace=replace)
            return obj

        return deco

    def remove(self, name: str) -> None:
        self._entries.pop(name, None)

    # --- looking up ---------------------------------------------------------------------------
    def names(self) -> list[str]:
        return sorted(self._entries)

    def __contains__(self, name: object) -> bool:
        return name in self._entries

    def entry(self, name: str) -> Entry:
        try:
            return self._entries[name]
        except KeyError:
            raise InputError(self.field, f"unknown {self.kind} '{name}' (allowed: "
                             f"{', '.join(self.names())}, or one a plugin listed under plugins: "
                             "registers)") from None

    def load(self, name: str) -> Any:
        """The registered object, after checking it is of this registry's kind."""
        e = self.entry(name)
        try:
            obj = e.load()
        except (ImportError, AttributeError) as exc:
            raise InputError(self.field, f"cannot load {self.kind} '{name}' ({exc})") from None
        missing = [a for a in self.required if not hasattr(obj, a)]
        if missing:
            raise InputError(self.field, f"'{name}' is not a {self.kind} (it has no "
                             f"{', '.join(missing)})")
        return obj

    def parse_params(self, name: str, raw: dict[str, Any] | None, where: str) -> Any:
        """Validate ``raw`` with the entry's params model; one line per problem, naming
        ``where.<key>``. Returns the model instance (or None when the part takes none)."""
        e = self.entry(name)
        model = e.params
        if isinstance(model, str):  # a built-in's params model as "module:attribute"
            model = e.params = Entry(name, model).load()
        if model is None and isinstance(e.target, str) and self.kind == "server strategy":
            model = getattr(self.load(name), "Params", None)  # a built-in's, loaded on first use
        raw = dict(raw or {})
        if model is None:
            if raw:
                raise InputError(where, f"{self.kind} '{name}' takes no parameters "
                                        f"(got {', '.join(sorted(raw))})")
            return None
        from pydantic import ValidationError

        try:
            return model.model_validate(raw)
        except ValidationError as exc:
            err = exc.errors()[0]
            loc = ".".join(str(p) for p in err["loc"])
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                allowed = ", ".join(getattr(model, "model_fields", {})) or "none"
                msg = f"unknown parameter (allowed: {allowed})"
            raise InputError(f"{where}.{loc}" if loc else where, msg) from None


def load_plugins(paths: Iterable[str]) -> list[Any]:
    """Import every entry of ``plugins:`` (a module, or ``module.Class`` for a selection class
    named by its path); the modules register their parts with the ``register_*`` decorators."""
    out = []
    for i, path in enumerate(paths):
        try:
            out.append(importlib.import_module(path))
            continue
        except ModuleNotFoundError as exc:
            mod, _, attr = path.rpartition(".")
            if not mod or (exc.name and not path.startswith(exc.name)):
                raise InputError(f"plugins[{i}]", f"cannot import '{path}' ({exc})") from None
        except Exception as exc:  # the plugin's own import-time error
            raise InputError(f"plugins[{i}]", f"importing '{path}' failed "
                             f"({type(exc).__name__}: {exc})") from None
        try:
            out.append(getattr(importlib.import_module(mod), attr))
        except (ImportError, AttributeError) as exc:
            raise InputError(f"plugins[{i}]", f"cannot import '{path}' ({exc})") from None
        except Exception as exc:
            raise InputError(f"plugins[{i}]", f"importing '{path}' failed "
                             f"({type(exc).__name__}: {exc})") from None
    return out


# --- the catalogue: one registry per kind of part, with the built-ins (loaded on first use) ----
# Adding a built-in is one line here plus the module that holds it.
STRATEGIES: Registry[Any] = Registry("server strategy", "aggregation.strategy",
                                     required=("apply", "state_dict", "load_state_dict"))
STRATEGIES.add("fedavg", "simulator.aggregation.fedavg:FedAvg",
               doc="FedAvg (McMahan et al. 2017): weighted mean of the updates")
STRATEGIES.add("fedbuff", "simulator.aggregation.fedbuff:FedBuffStaleness",
               doc="FedBuff (Nguyen et al. 2022): staleness-weighted mean of buffered updates")
# Built-in strategies of simulator/aggregation/strategies/ (parameters: the class's ``Params``;
# declarations: trigger:<t> it runs on, needs:client_updates for rules that read each update).
_S, _ALL = "simulator.aggregation.strategies.", ("trigger:sync", "trigger:buffered",
                                                  "trigger:hierarchical")
_EACH = ("trigger:sync", "trigger:buffered", "needs:client_updates")
STRATEGIES.add("fedavgm", _S + "fedavgm:FedAvgM", declares=_ALL, doc="server momentum")
STRATEGIES.add("fedprox", _S + "fedprox:FedProx", declares=_ALL, doc="proximal term mu")
STRATEGIES.add("fedadam", _S + "fedopt:FedAdam", declares=_ALL, doc="server Adam")
STRATEGIES.add("fedyogi", _S + "fedopt:FedYogi", declares=_ALL, doc="server Yogi")
STRATEGIES.add("fedadagrad", _S + "fedopt:FedAdagrad", declares=_ALL, doc="server Adagrad")
STRATEGIES.add("fednova", _S + "fednova:FedNova", declares=_EACH, doc="normalised averaging")
STRATEGIES.add("qfedavg", _S + "qfedavg:QFedAvg", declares=_EACH, doc="q-FFL fairness")
STRATEGIES.add("median", _S + "median:Median", declares=_EACH, doc="coordinate-wise median")
STRATEGIES.add("trimmed_mean", _S + "trimmed_mean:TrimmedMean", declares=_EACH,
               doc="coordinate-wise trimmed mean")
STRATEGIES.add("krum", _S + "krum:Krum", declares=_EACH, doc="Krum / Multi-Krum")
STRATEGIES.add("flexlora", _S + "flexlora:FlexLoRA", declares=("trigger:sync",
               "needs:client_updates"), doc="heterogeneous LoRA ranks: SVD of the summed update")
STRATEGIES.add("flora", _S + "flora:FLoRA", declares=("trigger:sync", "needs:client_updates"),
               doc="heterogeneous LoRA ranks: stacked factors merged into the base")
STRATEGIES.add("scaffold", _S + "scaffold:Scaffold",
               declares=("trigger:sync", "trigger:buffered", "needs:client_state"),
               doc="SCAFFOLD control variates")

# What a trigger can declare; a scenario using a feature its trigger does not declare is refused.
FEATURES = {
    "checkpoint": "output.checkpoint_every",
    "privacy": "privacy.mode",
    "secure_aggregation": "secure_aggregation.enabled",
    "sparse_selection": "population.size",
    "compression": "workload.compression",
    "energy": "population.min_battery_fraction",
}
TRIGGERS: Registry[Any] = Registry("aggregation trigger", "aggregation.trigger",
                                   required=("step", "state_dict", "load_state_dict"))
TRIGGERS.add("sync", "simulator.loop.sync:SyncTrigger", declares=FEATURES,
             doc="synchronous rounds: k of ceil(k*overcommit) invited, optional deadline")
TRIGGERS.add("buffered", "simulator.loop.buffered:BufferedTrigger",
             declares=set(FEATURES) - {"secure_aggregation"},
             doc="FedBuff: C clients train at once, the server aggregates every K updates")
TRIGGERS.add("hierarchical", "simulator.loop.hierarchical:HierarchicalTrigger",
             declares=FEATURES,
             doc="clients -> edges -> cloud (HierFAVG): edge rounds, a cloud round every kappa_2")


# --- what parts take and give ---------------------------------------------------------------------
# Declarations are ``prefix:value`` strings:
#   takes:<input>    a model kind's training input (features | tokens) ...
#   gives:<input>    ... which the dataset must give;
#   needs:<trait>    a partitioner's requirement (the natural split needs natural_clients) ...
#   has:<trait>      ... which the dataset must have;
#   uses:<field>     a model.* field that only the declaring model kinds read;
#   pick:fastest     a workload kind whose fastest admissible option wins (not its most capable);
#   analytic:sizes   a model kind that needs only client sizes (no corpus) in mode analytic;
#   reads:path       a dataset that reads data.path (others refuse it rather than ignore it);
#   sizes:own        a dataset that draws its own client sizes (data.size_distribution refused);
#   supports:<x>     an optional capability (supports:client_training: a strategy's client hook);
#   samples:uniform  a selection policy that invites uniformly among the online clients (central
#                    DP's sampling-rate accounting assumes it).
# Each refusal below is generated from them, so a plugin's declarations get the same checks.
def declared(entry: Entry, prefix: str) -> list[str]:
    """The values of an entry's ``prefix:value`` declarations, sorted."""
    p = prefix + ":"
    return sorted(d[len(p):] for d in entry.declares if d.startswith(p))


def mismatch(consumer: Registry[Any], name: str, provider: Registry[Any], other: str,
             verb: str, need: str = "takes", have: str = "gives") -> str | None:
    """One line when ``name`` (in ``consumer``) declares ``need:`` values none of which ``other``
    (in ``provider``) declares as ``have:``, e.g. ``model.kind: 'mlp' cannot train on
    data.dataset 'text' (it takes features; 'text' gives tokens)``; None when they fit, when
    ``name`` needs nothing, or when either name is unknown."""
    if name not in consumer or other not in provider:
        return None
    wanted = declared(consumer.entry(name), need)
    offered = declared(provider.entry(other), have)
    if not wanted or set(wanted) & set(offered):
        return None
    want = " or ".join(x.replace("_", " ") for x in wanted)
    got = ", ".join(x.replace("_", " ") for x in offered) or ("nothing" if have == "gives"
                                                               else "none")
    return (f"{consumer.field}: '{name}' cannot {verb} {provider.field} '{other}' (it {need} "
            f"{want}; '{other}' {have} {got})")


def _kind_check(reg: Registry[Any], name: str, obj: Any) -> Any:
    missing = [a for a in reg.required if not hasattr(obj, a)]
    if missing:
        raise InputError(reg.field, f"'{name}' is not a {reg.kind} (it has no "
                         f"{', '.join(missing)})")
    return obj


def lookup(reg: Registry[Any], name: str, plugins: Iterable[str] = ()) -> tuple[Any, Any]:
    """``(object, params model)`` for ``name``: a registered name, or (selection policies) a dotted
    class path listed under ``plugins:``, loaded without registering it; its ``Params`` attribute,
    if any, is its params model. The object is kind-checked like :meth:`Registry.load`."""
    if name in reg or "." not in name:
        return reg.load(name), reg.entry(name).params
    if name not in tuple(plugins):
        raise InputError(reg.field, f"plugin '{name}' is not listed under plugins: "
                                    "(add it there to allow it)")
    mod, _, attr = name.rpartition(".")
    try:
        obj = Entry(name, f"{mod}:{attr}", plugin=True).load()
    except (ImportError, AttributeError) as exc:
        raise InputError(reg.field, f"cannot import plugin '{name}' ({exc})") from None
    except Exception as exc:  # the plugin's own import-time error
        raise InputError(reg.field, f"importing plugin '{name}' failed "
                                    f"({type(exc).__name__}: {exc})") from None
    return _kind_check(reg, name, obj), getattr(obj, "Params", None)


def parse_params_with(reg: Registry[Any], name: str, model: Any, raw: dict[str, Any] | None,
                      where: str) -> Any:
    """:meth:`Registry.parse_params` for a part that is not registered (a class path)."""
    if name in reg:
        return reg.parse_params(name, raw, where)
    probe: Registry[Any] = Registry(reg.kind, reg.field)
    probe.add(name, None, params=model)
    return probe.parse_params(name, raw, where)


# --- the rest of the catalogue ------------------------------------------------------------------
# Model kinds: built as ``cls(scenario, params)``; the object gives the planner that costs its
# tasks (``planner(population, n_features, n_classes)``) and the workload that trains them
# (``workload(population_size)``, may import torch); optional ``problems() -> list[str]`` are
# checked when the scenario is validated.
MODEL_KINDS: Registry[Any] = Registry("model kind", "model.kind",
                                      required=("planner", "workload"))
MODEL_KINDS.add("mlp", "simulator.workloads.registry:MLPKind",
                declares=("takes:features", "uses:clock_proxy", "supports:client_training"),
                doc="fully connected classifier (torch.func, many clients at once)")
MODEL_KINDS.add("transformer", "simulator.workloads.registry:TransformerKind",
                declares=("takes:tokens", "uses:family", "uses:preset", "uses:config",
                          "uses:config_path", "uses:clock_proxy", "analytic:sizes"),
                doc="decoder transformer (Llama-style) with LoRA/partial/split/width workloads")
_TORCH = ("takes:features", "uses:clock_proxy", "supports:client_training")
MODEL_KINDS.add("custom", "simulator.workloads.registry:CustomKind",
                declares=(*_TORCH, "uses:factory"),
                doc="your nn.Module from model.factory ('package.module:function'), measured")
MODEL_KINDS.add("cnn", "simulator.workloads.registry:CNNKind", declares=_TORCH,
                params="simulator.config.model:CNNParams",
                doc="LEAF FEMNIST CNN: 2 conv 5x5 (32, 64) + pool, dense 2048")
MODEL_KINDS.add("resnet18", "simulator.workloads.registry:ResNet18Kind", declares=_TORCH,
                params="simulator.config.model:ResNetParams",
                doc="ResNet-18 (11.7M parameters at 1000 classes), random init")
MODEL_KINDS.add("mobilenet_v2", "simulator.workloads.registry:MobileNetV2Kind", declares=_TORCH,
                params="simulator.config.model:MobileNetParams",
                doc="MobileNetV2 (3.5M parameters at 1000 classes), random init")

# Datasets: a builder ``fn(scenario, population_size, params) -> FederatedDataset``
# (simulator/data/base.py: n_samples, n_features, n_classes, client_data, test_data).
DATASETS: Registry[Any] = Registry("dataset", "data.dataset", required=("__call__",))
DATASETS.add("digits", "simulator.data.base:build_digits", declares=("gives:features",),
             doc="scikit-learn's 8x8 digits, client shards sampled from one pool")
DATASETS.add("synthetic", "simulator.data.synthetic:build_synthetic",
             declares=("gives:features", "sizes:own"), doc="LEAF synthetic(alpha, beta)")
DATASETS.add("text", "simulator.data.text:build_text_dataset",
             declares=("gives:tokens", "has:natural_clients", "reads:path"),
             doc="next-token text: generated styles, or the user's text split by speaker")
_FILES = ("gives:features", "has:natural_clients", "reads:path")
DATASETS.add("tabular", "simulator.data.files:build_tabular", declares=_FILES,
             params="simulator.data.files:FileParams",
             doc="your CSV or parquet file: feature columns, a label column (data.path)")
DATASETS.add("images", "simulator.data.files:build_images", declares=_FILES,
             params="simulator.data.files:FileParams",
             doc="your images: an .npz with x, y or a folder of class subfolders (data.path)")
DATASETS.add("hf", "simulator.data.files:build_hf", declares=_FILES,
             params="simulator.data.files:FileParams",
             doc="a Hugging Face dataset saved with save_to_disk (data.path)")

# Partitioners: ``fn(g, sizes, spec) -> probabilities`` of one client over the dataset's classes
# (or text styles); ``sizes`` are the classes' pool sizes, ``spec`` the data block's settings.
PARTITIONERS: Registry[Any] = Registry("partitioner", "data.partition", required=("__call__",))
PARTITIONERS.add("iid", "simulator.data.partition:iid", doc="the pool's own class mix")
PARTITIONERS.add("dirichlet", "simulator.data.partition:dirichlet",
                 doc="Dirichlet(data.alpha) label skew (Hsu et al. 2019)")
PARTITIONERS.add("shards", "simulator.data.partition:shards",
                 doc="data.shards_per_client classes per client (McMahan et al. 2017)")
PARTITIONERS.add("natural", "simulator.data.partition:natural",
                 declares=("needs:natural_clients",),
                 doc="the dataset's own clients (speakers, files, ids; generated authors)")

# Workload kinds (model.workloads.order): ``fn(ctx) -> list[Option]``, the options of one kind,
# most capable first (simulator/planning/options.py).
WORKLOADS: Registry[Any] = Registry("workload kind", "model.workloads.order",
                                    required=("__call__",))
WORKLOADS.add("full", "simulator.planning.options:full", doc="the whole model")
WORKLOADS.add("lora", "simulator.planning.options:lora", doc="LoRA adapters, ranks descending")
WORKLOADS.add("partial", "simulator.planning.options:partial", doc="the top k blocks")
WORKLOADS.add("split", "simulator.planning.options:split", declares=("pick:fastest",),
              doc="split learning: the client keeps blocks [0, cut), the server the rest")
WORKLOADS.add("width", "simulator.planning.options:width",
              doc="HeteroFL width sub-models, rates descending")

# Selection policies: built as ``cls(scenario, population)``, or ``cls(scenario, population,
# params)`` when the policy has a params model (simulator/selection/base.py: the protocol).
POLICIES: Registry[Any] = Registry("selection policy", "selection.policy",
                                   required=("select", "observe", "state_dict",
                                             "load_state_dict"))
POLICIES.add("random", "simulator.selection.random_policy:RandomSelector",
             declares=("samples:uniform",),  # central DP's accounting needs it (config/privacy)
             doc="uniform over the available clients (FedAvg)")
POLICIES.add("oort", "simulator.selection.oort:OortSelector",
             doc="Oort (Lai et al. OSDI'21): statistical x system utility, exploration")
POLICIES.add("deadline", "simulator.selection.policies:DeadlineSelector",
             doc="FedCS (Nishio & Yonetani 2019): clients whose estimate fits the deadline")
POLICIES.add("tifl", "simulator.selection.tifl:TiflSelector",
             doc="TiFL (Chai et al. HPDC'20): latency tiers, adaptive tier probabilities")
POLICIES.add("power_of_choice", "simulator.selection.policies:PowerOfChoiceSelector",
             doc="power-of-choice (Cho et al. 2022): d by data size, the highest-loss n")
POLICIES.add("fair", "simulator.selection.policies:FairSelector",
             doc="participation quota: least-participated clients first")


# --- decorators for plugins (``simulator.register_model`` ...) ----------------------------------
def _as_tuple(x: str | Iterable[str]) -> tuple[str, ...]:
    return (x,) if isinstance(x, str) else tuple(x)


def register_model(name: str | None = None, *, takes: str | Iterable[str] = "features",
                   params: Any = None, declares: Iterable[str] = (),
                   replace: bool = False) -> Callable[[T], T]:
    """``@register_model("cnn", takes="features", params=CNNParams)`` on a class built as
    ``cls(scenario, params)`` with ``planner(population, n_features, n_classes)`` and
    ``workload(population_size)``; ``takes`` is the input it trains on (``features`` or
    ``tokens``: a dataset must give it)."""
    return MODEL_KINDS.register(name, params=params, replace=replace, declares=(
        *(f"takes:{t}" for t in _as_tuple(takes)), *declares))


def register_dataset(name: str | None = None, *, gives: str | Iterable[str] = "features",
                     has: str | Iterable[str] = (), params: Any = None,
                     declares: Iterable[str] = (), replace: bool = False) -> Callable[[T], T]:
    """``@register_dataset("cifar", gives="features", params=P)`` on a builder
    ``fn(scenario, population_size, params) -> dataset``; ``gives``: what a model trains on
    (``features``, ``tokens``); ``has``: traits partitioners may need (``natural_clients``)."""
    return DATASETS.register(name, params=params, replace=replace, declares=(
        *(f"gives:{g}" for g in _as_tuple(gives)), *(f"has:{h}" for h in _as_tuple(has)),
        *declares))


def register_partitioner(name: str | None = None, *, needs: str | Iterable[str] = (),
                         params: Any = None, declares: Iterable[str] = (),
                         replace: bool = False) -> Callable[[T], T]:
    """``@register_partitioner("zipf", params=P)`` on ``fn(g, sizes, spec) -> probabilities``;
    ``needs``: a trait the dataset must have (e.g. ``natural_clients``), none by default."""
    return PARTITIONERS.register(name, params=params, replace=replace, declares=(
        *(f"needs:{t}" for t in _as_tuple(needs)), *declares))


def register_workload(name: str | None = None, *, fastest: bool = False,
                      declares: Iterable[str] = (), replace: bool = False) -> Callable[[T], T]:
    """``@register_workload("adapter")`` on ``fn(ctx) -> list[Option]`` (options most capable
    first; ``fastest=True``: a client takes the option with the least time instead)."""
    return WORKLOADS.register(name, replace=replace, declares=(
        *(("pick:fastest",) if fastest else ()), *declares))


def register_policy(name: str | None = None, *, params: Any = None,
                    replace: bool = False) -> Callable[[T], T]:
    """``@register_policy("mine", params=P)`` on a selector class (``select``, ``observe``,
    ``state_dict``, ``load_state_dict``) built as ``cls(scenario, population[, params])``."""
    return POLICIES.register(name, params=params, replace=replace)


def register_trigger(name: str | None = None, *, params: Any = None,
                     declares: Iterable[str] = (), replace: bool = False) -> Callable[[T], T]:
    """``@register_trigger("mine", declares=[...])``: :data:`TRIGGERS`'s decorator."""
    return TRIGGERS.register(name, params=params, declares=declares, replace=replace)


# --- building a scenario's model kind -----------------------------------------------------------
def ensure_plugins(scenario: Any) -> None:
    """Import the scenario's ``plugins:`` (already imported modules cost nothing), so that a
    process that did not parse the scenario (a Ray actor) finds the parts they register."""
    load_plugins(getattr(scenario, "plugins", ()) or ())


def model_kind(scenario: Any, check_data: bool = True) -> Any:
    """The scenario's model kind, built with its validated ``model.params``; with ``check_data``
    it must take what ``data.dataset`` gives (one line, generated from the declarations)."""
    ensure_plugins(scenario)
    m = scenario.model
    cls = MODEL_KINDS.load(m.kind)
    params = MODEL_KINDS.parse_params(m.kind, getattr(m, "params", None), "model.params")
    if check_data:
        check_model_data(scenario)
    return cls(scenario, params)


def check_model_data(scenario: Any) -> None:
    """``InputError`` naming ``model.kind`` when the model kind takes nothing ``data.dataset``
    gives (e.g. an mlp on text tokens)."""
    bad = mismatch(MODEL_KINDS, scenario.model.kind, DATASETS, scenario.data.dataset, "train on")
    if bad:
        field, _, msg = bad.partition(": ")
        raise InputError(field, msg)
