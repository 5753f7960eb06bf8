"""Run a scenario end to end: recorder lifecycle, checkpoints, manifest (the CLI and
``simulator.run`` use it)."""

from __future__ import annotations

import contextlib
import json
import logging
import platform
import subprocess
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

from simulator import FedFleetError, __version__
from simulator.config.scenario import Scenario, ScenarioError, parse_scenario
from simulator.io.recording import Recorder, atomic_write_bytes
from simulator.io.runlock import RunLock
from simulator.loop.simulation import RoundReport, Simulation

log = logging.getLogger(__name__)

Callback = Any  # an object with on_round_end(sim, report), or a function f(sim, report)

_PACKAGES = ("numpy", "pandas", "pyarrow", "pydantic", "torch", "ray", "transformers", "peft",
             "plotly", "scikit-learn")


def package_versions() -> dict[str, str]:
    out = {"fedfleet": __version__, "python": platform.python_version()}
    for name in _PACKAGES:
        with contextlib.suppress(metadata.PackageNotFoundError):
            out[name] = metadata.version(name)
    return out


def git_commit() -> str | None:
    try:
        res = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent,
                             capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.SubprocessError):
        return None
    return res.stdout.strip() or None if res.returncode == 0 else None


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


class StopRun(Exception):
    """Raise from a round callback to end the run after the current round.

    The run is finished normally with the rounds done so far (tables, manifest with
    ``stopped_early: true`` and ``rounds_run``); callbacks later in the list do not see that
    round. The reason, if given, is logged and stored in the manifest as ``stop_reason``."""


def drive(sim: Simulation, recorder: Any, rounds: int, *, checkpoint_every: int = 0) -> str | None:
    """Step ``sim`` until ``rounds`` rounds are done, checkpointing every ``checkpoint_every``.

    Returns None when all rounds ran, or the reason a callback gave when it raised
    :class:`StopRun`. Shared by :func:`run_scenario` and ``simulator.run`` (in memory)."""
    while sim.next_round < rounds:
        try:
            sim.step(recorder)
        except StopRun as stop:
            reason = str(stop) or "stopped by a callback"
            log.info("run stopped after round %d: %s", sim.next_round - 1, reason)
            return reason
        if checkpoint_every and sim.next_round % checkpoint_every == 0 and sim.next_round < rounds:
            sim.checkpoint(recorder)
    return None


def build_manifest(sc: Scenario, sim: Simulation, name: str, *, started: str, wall0: float,
                   resumed: bool = False, stop_reason: str | None = None) -> dict[str, Any]:
    """The run's manifest.json (also ``Run.manifest`` of an in-memory run)."""
    manifest: dict[str, Any] = {
        "name": name,
        "scenario": sc.model_dump(mode="json"),
        "seed": sc.seed,
        "mode": sc.mode,
        "rounds": sc.rounds,
        "rounds_run": sim.next_round,
        "population": sc.population.size,
        "sim_end_s": sim.clock_s,
        "final_accuracy": sim.accuracy,
        "versions": package_versions(),
        "git_commit": git_commit(),
        "started_at": started,
        "ended_at": _now(),
        "wall_s": time.perf_counter() - wall0,
        "resumed": resumed,
        "stopped_early": stop_reason is not None,
    }
    if stop_reason is not None:
        manifest["stop_reason"] = stop_reason
    choice = getattr(sim.executor, "choice", None)  # which executor ran, and why (auto)
    if choice is not None:
        manifest["executor"] = choice
    return manifest


def add_callbacks(sim: Simulation, callbacks: Iterable[Callback],
                  on_round: Callable[[RoundReport], None] | None = None) -> None:
    """``on_round(report)`` first (progress bars see every round), then ``callbacks``."""
    if on_round is not None:
        sim.callbacks.append(lambda _sim, report: on_round(report))
    sim.callbacks.extend(callbacks)


def run_scenario(
    sc: Scenario,
    name: str | None = None,
    runs_dir: str | None = None,
    overwrite: bool = False,
    on_round: Callable[[RoundReport], None] | None = None,
    resume: bool = False,
    callbacks: Iterable[Callback] = (),
) -> Path:
    """Run (or resume) ``sc`` into ``runs_dir/name``; returns the completed run directory.

    ``callbacks``: objects with ``on_round_end(sim, report)`` or functions ``f(sim, report)``,
    called after every round (a callback may raise :class:`StopRun`)."""
    name = name or sc.name
    rec = Recorder(runs_dir or sc.output.runs_dir, name, overwrite=overwrite)
    rec.start(resume=resume)
    started = _now()
    wall0 = time.perf_counter()
    sim = None
    try:
        sim = Simulation(sc)  # the trigger (sync, buffered, hierarchical) comes from the scenario
        add_callbacks(sim, callbacks, on_round)
        if resume:
            sim.restore(rec)
        else:
            atomic_write_bytes(rec.partial_dir / "scenario.json",
                               json.dumps(sc.model_dump(mode="json"), indent=2).encode())
        stop_reason = drive(sim, rec, sc.rounds, checkpoint_every=sc.output.checkpoint_every)
        out = rec.finalize(build_manifest(sc, sim, name, started=started, wall0=wall0,
                                          resumed=resume, stop_reason=stop_reason))
        log.info("run %s: %d rounds, final accuracy %s, written to %s", name, sim.next_round,
                 "n/a" if sim.accuracy is None else f"{sim.accuracy:.4f}", out)
        return out
    except BaseException as exc:
        # Resumable only once a checkpoint exists; otherwise leave no half-written run behind
        # (this includes bad input found while starting a checkpointed run).
        if not (resume or (rec.partial_dir / "checkpoint.json").exists()):
            rec.abort()
        else:
            with contextlib.suppress(FedFleetError):
                rec.flush()
            if isinstance(exc, FedFleetError) and not isinstance(exc, ScenarioError):
                raise FedFleetError(f"{exc}; the completed rounds are kept: finish the run with "
                                    f"`fedfleet resume {rec.final_dir}`") from None
        raise
    finally:
        if sim is not None:
            sim.close()
        rec.close()


def resume_run(run_path: str | Path, on_round: Callable[[RoundReport], None] | None = None,
               callbacks: Iterable[Callback] = ()) -> Path:
    """Finish an unfinished run (``runs/<name>.partial``, or the final path) from its last
    checkpoint; returns the completed run directory."""
    p = Path(run_path)
    partial = p if p.name.endswith(".partial") else p.with_name(p.name + ".partial")
    if not partial.is_dir():
        if (p / "manifest.json").exists():
            raise FedFleetError(f"run '{p}' is already complete; nothing to resume")
        raise FedFleetError(f"no unfinished run at '{partial}'")
    probe = RunLock(partial)  # a run or resume of it in progress: fail now, before reading
    try:
        probe.acquire("run directory")
    except OSError as exc:
        raise FedFleetError(f"cannot open '{probe.path}' ({exc.strerror or exc})") from None
    probe.release()
    try:
        doc = json.loads((partial / "scenario.json").read_text())
    except (OSError, ValueError) as exc:
        raise FedFleetError(f"cannot read '{partial / 'scenario.json'}' ({exc})") from None
    sc = parse_scenario(doc)
    name = partial.name[: -len(".partial")]
    return run_scenario(sc, name=name, runs_dir=str(partial.parent), on_round=on_round, resume=True,
                        callbacks=callbacks)
