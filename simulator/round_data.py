"""Turn a resolved round into its clients.parquet columns and rounds.parquet row (pure numpy)."""

from __future__ import annotations

from typing import Any

import numpy as np

from simulator import rounds as R
from simulator.cost import Timing
from simulator.planning import Plan
from simulator.population import LINK_TYPES, Population


def phase_fraction(done: np.ndarray, total: np.ndarray) -> np.ndarray:
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(total > 0, np.clip(done / total, 0.0, 1.0), 1.0)


def client_columns(
    rnd: int, t0: float, ids: np.ndarray, pop: Population, plan: Plan, timing: Timing,
    out: R.RoundOutcome, train_loss: np.ndarray,
) -> dict[str, np.ndarray]:
    bytes_down = plan.cost.download_bytes * phase_fraction(out.download_done_s, timing.download_s)
    bytes_up = plan.cost.upload_bytes * phase_fraction(out.upload_done_s, timing.upload_s)
    train_w = pop.per_profile(lambda p: p.energy.train_watts, ids)
    radio_w = pop.per_profile(lambda p: p.energy.transmit_watts, ids)
    energy = train_w * out.compute_done_s + radio_w * (out.download_done_s + out.upload_done_s)
    names = np.array(pop.profile_names, dtype=object)
    cols: dict[str, np.ndarray] = {
        "round": np.full(len(ids), rnd, np.int64),
        "client_id": ids.astype(np.int64),
        "device_class": names[pop.profile_idx[ids]],
        "link": np.array(LINK_TYPES, dtype=object)[pop.link_idx[ids]],
        "outcome": np.array(R.OUTCOME_NAMES, dtype=object)[out.outcome],
        "workload": plan.kind.astype(object),
        "n_samples": pop.n_samples[ids].astype(np.int64),
        "start_s": np.full(len(ids), t0),
        "stop_s": t0 + out.stop_s,
        "download_s": timing.download_s,
        "compute_s": timing.compute_s,
        "upload_s": timing.upload_s,
        "bytes_down": bytes_down,
        "bytes_up": bytes_up,
        "energy_j": energy,
        "memory_bytes": plan.cost.memory_bytes.astype(np.float64),
        "train_loss": train_loss,
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
        "accuracy": accuracy,
        "loss": loss,
        "train_loss": float(np.nanmean(trained_loss)) if np.isfinite(trained_loss).any() else np.nan,
        "bytes_down": float(cols["bytes_down"].sum()),
        "bytes_up": float(cols["bytes_up"].sum()),
        "energy_j": float(cols["energy_j"].sum()),
        "wasted_device_s": float(wasted),
    }
