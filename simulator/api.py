"""The public Python API: run a scenario, read its tables (docs/api.md).

    import simulator

    run = simulator.run("scenarios/quickstart.yaml", rounds=3, executor__kind="local")
    run.rounds.accuracy.iloc[-1] == run.final_accuracy

``run`` takes a :class:`~simulator.config.scenario.Scenario`, a scenario document (a dict, as
YAML would parse it) or the path of a YAML file, plus overrides of its fields, and returns a
:class:`Run`. With ``recorder="disk"`` (the default) the run is written to
``<runs_dir>/<name>/`` exactly as ``fedfleet run`` writes it; with ``recorder="memory"`` nothing
touches the disk and the tables stay in memory (notebooks, tests, parameter scans).

Overrides set dotted scenario keys, the same keys as ``fedfleet run --set KEY=VALUE``:

- as keywords, with ``__`` for the dot: ``run(doc, rounds=3, selection__policy="oort")``;
- or as a dict: ``run(doc, overrides={"selection.policy": "oort"})``;
- both at once is fine; a key given both ways is an error.

The keywords ``name``, ``runs_dir``, ``overwrite``, ``recorder``, ``callbacks`` and
``overrides`` are the run's own options, not scenario fields: the scenario's ``name`` is set with
``overrides={"name": ...}`` (the run's ``name`` defaults to it).
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from simulator.config.scenario import (
    Scenario,
    apply_overrides,
    load_scenario,
    parse_scenario,
    validate_run_name,
)
from simulator.errors import FedFleetError, InputError
from simulator.io.recording import CHECKPOINT_NEEDS_DISK, MemoryRecorder
from simulator.loop.runner import (
    Callback,
    _now,
    add_callbacks,
    build_manifest,
    drive,
    resume_run,
    run_scenario,
)
from simulator.loop.simulation import Simulation

__all__ = ["Run", "run", "resume", "scenario_from", "merge_overrides"]

log = logging.getLogger(__name__)

RECORDERS = ("disk", "memory")


class Run:
    """A finished run: its scenario, manifest and tables.

    ``rounds`` and ``clients`` are pandas DataFrames (the columns of ``rounds.parquet`` and
    ``clients.parquet``, docs/scenario.md); for a run on disk they are read on first access.
    ``path`` is the run directory, or None for an in-memory run."""

    def __init__(self, *, manifest: dict[str, Any], path: Path | None = None,
                 scenario: Scenario | None = None, rounds: Any = None, clients: Any = None) -> None:
        self.manifest = manifest
        self.path = path
        self._scenario = scenario
        self._rounds = rounds
        self._clients = clients

    @classmethod
    def open(cls, path: str | os.PathLike[str]) -> Run:
        """A complete run directory written earlier (``runs/<name>/``)."""
        import json

        p = Path(path)
        try:
            manifest = json.loads((p / "manifest.json").read_text())
        except FileNotFoundError:
            raise FedFleetError(f"'{p}' is not a complete run (no manifest.json; an unfinished "
                                "run is finished with simulator.resume)") from None
        except (OSError, ValueError) as exc:
            raise FedFleetError(f"cannot read '{p / 'manifest.json'}' ({exc})") from None
        return cls(manifest=manifest, path=p)

    @property
    def name(self) -> str:
        return str(self.manifest.get("name", ""))

    @property
    def scenario(self) -> Scenario:
        """The validated scenario the run used (with overrides applied)."""
        if self._scenario is None:
            self._scenario = parse_scenario(self.manifest["scenario"])
        return self._scenario

    @property
    def final_accuracy(self) -> float | None:
        """Test accuracy of the final global model (None in analytic mode)."""
        acc = self.manifest.get("final_accuracy")
        return None if acc is None else float(acc)

    @property
    def rounds(self) -> Any:
        """One row per round (per aggregation with FedBuff, per cloud round hierarchically)."""
        if self._rounds is None:
            self._rounds = self._read("rounds")
        return self._rounds

    @property
    def clients(self) -> Any:
        """One row per invited client per round: outcome, timings, bytes, energy."""
        if self._clients is None:
            self._clients = self._read("clients")
        return self._clients

    def _read(self, table: str) -> Any:
        import pandas as pd

        assert self.path is not None  # in-memory runs are built with their tables
        f = self.path / f"{table}.parquet"
        try:
            return pd.read_parquet(f)
        except (OSError, ValueError) as exc:
            raise FedFleetError(f"cannot read '{f}' ({exc})") from None

    def __repr__(self) -> str:
        acc = self.final_accuracy
        where = str(self.path) if self.path is not None else "in memory"
        return (f"Run({self.name!r}, {self.manifest.get('rounds_run', self.manifest.get('rounds'))}"
                f" rounds, final accuracy {'n/a' if acc is None else f'{acc:.3f}'}, {where})")


def merge_overrides(overrides: Mapping[str, Any] | None,
                    keywords: Mapping[str, Any]) -> dict[str, Any]:
    """One dict of dotted keys: ``overrides`` as given, keywords with ``__`` read as ``.``."""
    if overrides is not None and not isinstance(overrides, Mapping):
        raise InputError("overrides", "expected a dict of dotted keys, e.g. {'selection.policy': "
                                      f"'oort'}} (got {type(overrides).__name__})")
    out: dict[str, Any] = {}
    for k, v in (overrides or {}).items():
        if not isinstance(k, str) or not k or any(not p for p in k.split(".")):
            raise InputError("overrides", f"invalid key {k!r} (expected a dotted scenario key, "
                                          "e.g. 'selection.policy')")
        out[k] = v
    for k, v in keywords.items():
        key = k.replace("__", ".")
        if key in out:
            raise InputError(key, f"given twice (as the keyword {k}= and in overrides=)")
        out[key] = v
    return out


def scenario_from(scenario: Any, overrides: Mapping[str, Any] | None = None) -> Scenario:
    """A validated :class:`Scenario` from a Scenario, a document (dict) or a YAML path, with
    dotted-key ``overrides`` applied. Bad input raises a one-line :class:`FedFleetError`."""
    overrides = dict(overrides or {})
    if isinstance(scenario, Scenario):
        if not overrides:
            return scenario
        return parse_scenario(apply_overrides(scenario.model_dump(mode="json"), overrides))
    if isinstance(scenario, Mapping):
        return parse_scenario(apply_overrides(dict(scenario), overrides))
    if isinstance(scenario, (str, os.PathLike)):
        return load_scenario(Path(scenario), overrides)
    raise InputError("scenario", "expected a Scenario, a scenario document (dict) or the path of a "
                                 f"YAML file (got {type(scenario).__name__})")


def _run_name(name: str | None, sc: Scenario) -> str:
    try:
        return validate_run_name(sc.name if name is None else name)
    except InputError as exc:
        raise InputError("name", exc.message) from None


def run(scenario: Scenario | Mapping[str, Any] | str | os.PathLike[str], *,
        name: str | None = None, runs_dir: str | os.PathLike[str] | None = None,
        overwrite: bool = False, recorder: str = "disk", callbacks: Iterable[Callback] = (),
        overrides: Mapping[str, Any] | None = None, **keyword_overrides: Any) -> Run:
    """Run a scenario to the end and return the :class:`Run`.

    ``scenario``: a :class:`Scenario`, a scenario document (dict) or the path of a YAML file.
    ``name``: the run's name (default: the scenario's); ``runs_dir``: where disk runs go
    (default: ``output.runs_dir``); ``overwrite``: replace a finished run of the same name.
    ``recorder``: ``"disk"`` writes ``<runs_dir>/<name>/`` like ``fedfleet run``; ``"memory"``
    writes nothing (then ``output.checkpoint_every`` must be 0). ``callbacks``: objects with
    ``on_round_end(sim, report)`` or functions ``f(sim, report)``, called after every round; one
    may raise :class:`simulator.StopRun` to end the run early. Overrides: see the module doc."""
    if recorder not in RECORDERS:
        allowed = ", ".join(map(repr, RECORDERS))
        raise InputError("recorder", f"got {recorder!r}; allowed: {allowed}")
    sc = scenario_from(scenario, merge_overrides(overrides, keyword_overrides))
    run_name = _run_name(name, sc)
    callbacks = list(callbacks)
    for i, cb in enumerate(callbacks):
        if not (callable(cb) or callable(getattr(cb, "on_round_end", None))):
            raise InputError(f"callbacks[{i}]", "expected a function f(sim, report) or an object "
                             f"with on_round_end(sim, report), got {type(cb).__name__}")
    if recorder == "memory":
        return _run_in_memory(sc, run_name, callbacks)
    path = run_scenario(sc, name=run_name, runs_dir=None if runs_dir is None else str(runs_dir),
                        overwrite=overwrite, callbacks=callbacks)
    out = Run.open(path)
    out._scenario = sc
    return out


def _run_in_memory(sc: Scenario, name: str, callbacks: list[Callback]) -> Run:
    if sc.output.checkpoint_every:
        raise FedFleetError(CHECKPOINT_NEEDS_DISK)
    rec = MemoryRecorder()
    started, wall0 = _now(), time.perf_counter()
    sim = Simulation(sc)
    try:
        add_callbacks(sim, callbacks)
        stop_reason = drive(sim, rec, sc.rounds)
        manifest = build_manifest(sc, sim, name, started=started, wall0=wall0,
                                  stop_reason=stop_reason)
    finally:
        sim.close()
    rounds, clients = rec.tables()
    manifest.update(tables={"rounds": len(rounds), "clients": len(clients)}, status="complete",
                    recorder="memory")
    log.info("run %s: %d rounds, final accuracy %s, in memory", name, sim.next_round,
             "n/a" if sim.accuracy is None else f"{sim.accuracy:.4f}")
    return Run(manifest=manifest, path=None, scenario=sc, rounds=rounds, clients=clients)


def resume(path: str | os.PathLike[str], *, callbacks: Iterable[Callback] = ()) -> Run:
    """Finish an unfinished run on disk from its last checkpoint (``fedfleet resume``)."""
    return Run.open(resume_run(Path(path), callbacks=list(callbacks)))
