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
    """Name -> :class:`Entry` for one kind of part; ``field`` is the scenario field that names it."""

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
