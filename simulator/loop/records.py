"""Turn a resolved round into its clients.parquet columns and rounds.parquet row (pure numpy)."""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator.core import outcomes as R
from simulator.core.clock import phase_timeline
from simulator.core.cost import Timing
from simulator.fleet.energy import task_energy_j
from simulator.fleet.population import LINK_TYPES, Population
from simulator.planning import Plan


def phase_fraction(done: np.ndarray, total: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, np.clip(done / total, 0.0, 1.0), 1.0)


def client_columns(
    rnd: int, t0: float, ids: np.ndarray, pop: Population, plan: Plan, timing: Timing,
    out: R.RoundOutcome, train_loss: np.ndarray, *, start_s: np.ndarray | None = None,
    model_version: np.ndarray | int | None = None, staleness: np.ndarray | int = 0,
    battery_fraction: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """One row per invited client. Sync rounds start everyone at ``t0`` from model version
    ``rnd`` with staleness 0; FedBuff passes each task's own start, version and staleness."""
    n = len(ids)
    start = np.full(n, t0) if start_s is None else np.asarray(start_s, np.float64)
    bytes_down = plan.cost.download_bytes * phase_fraction(out.download_done_s, timing.download_s)
    bytes_up = plan.cost.upload_bytes * phase_fraction(out.upload_done_s, timing.upload_s)
    train_w = pop.per_profile(lambda p: p.energy.train_watts, ids)
    radio_w = pop.per_profile(lambda p: p.energy.transmit_watts, ids)
    energy = task_energy_j(train_w, radio_w, out.download_done_s, out.compute_done_s,
                           out.upload_done_s)
    started = (out.outcome != R.OUT_OF_MEMORY) & (out.outcome != R.LOW_BATTERY)
    names = np.array(pop.profile_names, dtype=object)
    cols: dict[str, np.ndarray] = {
        "round": np.full(len(ids), rnd, np.int64),
        "client_id": ids.astype(np.int64),
        "device_class": names[pop.profile_idx[ids]],
        "link": np.array(LINK_TYPES, dtype=object)[pop.link_idx[ids]],
        "outcome": np.array(R.OUTCOME_NAMES, dtype=object)[out.outcome],
        "workload": plan.kind.astype(object),
        "n_samples": pop.n_samples[ids].astype(np.int64),
        "start_s": start,
        "stop_s": start + out.stop_s,
        "download_s": timing.download_s,
        "compute_s": timing.compute_s,
        "upload_s": timing.upload_s,
        "bytes_down": bytes_down,
        "bytes_up": bytes_up,
        "energy_j": energy,
        "memory_bytes": plan.cost.memory_bytes.astype(np.float64),
        "train_loss": train_loss,
        **phase_timeline(start, timing, out.stop_s, out.download_done_s, out.compute_done_s,
                         out.upload_done_s, started),
        "model_version": np.broadcast_to(np.asarray(
            rnd if model_version is None else model_version, np.int64), (n,)).copy(),
        "staleness": np.broadcast_to(np.asarray(staleness, np.int64), (n,)).copy(),
        "battery_fraction": (np.full(n, np.nan) if battery_fraction is None
                             else np.asarray(battery_fraction, np.float64)),
    }
    for k, v in plan.columns.items():
        if k not in cols:
            cols[k] = v
    return cols


def round_row(
    rnd: int, t0: float, n_candidates: int, out: R.RoundOutcome, cols: dict[str, Any],
    accuracy: float, loss: float, wall_s: float,
) -> dict[str, Any]:
    done = out.outcome == R.COMPLETED
    trained_loss = cols["train_loss"][done]
    wasted = out.stop_s[~done].sum()
    return {
        "round": rnd,
        "sim_start_s": t0,
        "sim_end_s": t0 + out.duration_s,
        "duration_s": out.duration_s,
        "wall_s": wall_s,
        "candidates": n_candidates,
        "selected": len(out.outcome),
        "completed": out.count(R.COMPLETED),
        "dropped": out.count(R.DROPPED),
        "offline": out.count(R.OFFLINE),
        "straggled": out.count(R.STRAGGLER),
        "overcommitted": out.count(R.OVERCOMMITTED),
        "out_of_memory": out.count(R.OUT_OF_MEMORY),
        "low_battery": out.count(R.LOW_BATTERY),
        "accuracy": accuracy,
        "loss": loss,
        "train_loss": (float(np.nanmean(trained_loss)) if np.isfinite(trained_loss).any()
                       else np.nan),
        "bytes_down": float(cols["bytes_down"].sum()),
        "bytes_up": float(cols["bytes_up"].sum()),
        "energy_j": float(cols["energy_j"].sum()),
        "wasted_device_s": float(wasted),
    }
