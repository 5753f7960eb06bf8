"""Run a scenario end to end: recorder lifecycle, checkpoints, manifest (used by the CLI)."""

from __future__ import annotations

import json
import platform
import subprocess
import time
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from simulator import FedFleetError, __version__
from simulator.loop.simulation import RoundReport, Simulation
from simulator.io.recording import Recorder, atomic_write_bytes
from simulator.config.scenario import Scenario, ScenarioError, parse_scenario

_PACKAGES = ("numpy", "pandas", "pyarrow", "pydantic", "torch", "ray", "transformers", "peft",
             "plotly", "scikit-learn")


def package_versions() -> dict[str, str]:
    out = {"fedfleet": __version__, "python": platform.python_version()}
    for name in _PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
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


def run_scenario(
    sc: Scenario,
    name: str | None = None,
    runs_dir: str | None = None,
    overwrite: bool = False,
    on_round: Callable[[RoundReport], None] | None = None,
    resume: bool = False,
) -> Path:
    """Run (or resume) ``sc``; returns the completed run directory."""
    name = name or sc.name
    rec = Recorder(runs_dir or sc.output.runs_dir, name, overwrite=overwrite)
    rec.start(resume=resume)
    started = _now()
    wall0 = time.perf_counter()
    sim = None
    try:
        sim = Simulation(sc)  # the trigger (sync, buffered, hierarchical) comes from the scenario
        if resume:
            sim.restore(rec)
        else:
            atomic_write_bytes(rec.partial_dir / "scenario.json",
                               json.dumps(sc.model_dump(mode="json"), indent=2).encode())
        every = sc.output.checkpoint_every
        while sim.next_round < sc.rounds:
            report = sim.step(rec)
            if on_round is not None:
                on_round(report)
            if every and sim.next_round % every == 0 and sim.next_round < sc.rounds:
                sim.checkpoint(rec)
        manifest: dict[str, Any] = {
            "name": name,
            "scenario": sc.model_dump(mode="json"),
            "seed": sc.seed,
            "mode": sc.mode,
            "rounds": sc.rounds,
            "population": sc.population.size,
            "sim_end_s": sim.clock_s,
            "final_accuracy": sim.accuracy,
            "versions": package_versions(),
            "git_commit": git_commit(),
            "started_at": started,
            "ended_at": _now(),
            "wall_s": time.perf_counter() - wall0,
            "resumed": resume,
        }
        return rec.finalize(manifest)
    except BaseException as exc:
        # Resumable only once a checkpoint exists; otherwise leave no half-written run behind
        # (this includes bad input found while starting a checkpointed run).
        if not (resume or (rec.partial_dir / "checkpoint.json").exists()):
            rec.abort()
        else:
            try:
                rec.flush()
            except FedFleetError:
                pass
            if isinstance(exc, FedFleetError) and not isinstance(exc, ScenarioError):
                raise FedFleetError(f"{exc}; the completed rounds are kept: finish the run with "
                                    f"`fedfleet resume {rec.final_dir}`") from None
        raise
    finally:
        if sim is not None:
            sim.close()


def resume_run(run_path: str | Path, on_round: Callable[[RoundReport], None] | None = None) -> Path:
    p = Path(run_path)
    partial = p if p.name.endswith(".partial") else p.with_name(p.name + ".partial")
    if not partial.is_dir():
        if (p / "manifest.json").exists():
            raise FedFleetError(f"run '{p}' is already complete; nothing to resume")
        raise FedFleetError(f"no unfinished run at '{partial}'")
    try:
        doc = json.loads((partial / "scenario.json").read_text())
    except (OSError, ValueError) as exc:
        raise FedFleetError(f"cannot read '{partial / 'scenario.json'}' ({exc})") from None
    sc = parse_scenario(doc)
    name = partial.name[: -len(".partial")]
    return run_scenario(sc, name=name, runs_dir=str(partial.parent), on_round=on_round, resume=True)
