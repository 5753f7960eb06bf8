"""Checkpoints: everything needed to continue a run, saved atomically (temp, fsync, rename).

Random streams derive from (seed, purpose, round[, client]), so no generator state needs saving:
the round index restores them. Arrays go in an .npz (loaded with allow_pickle=False), scalars
and selector state in JSON.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator import FedFleetError
from simulator.io.recording import atomic_write_bytes

_JSON = "checkpoint.json"


@dataclass
class Checkpoint:
    next_round: int
    clock_s: float
    accuracy: float | None
    global_flat: np.ndarray
    selector_state: dict[str, Any]


def _split_state(state: dict[str, Any]) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
    arrays = {k: v for k, v in state.items() if isinstance(v, np.ndarray)}
    rest = {k: v for k, v in state.items() if not isinstance(v, np.ndarray)}
    return arrays, rest


def save_checkpoint(run_dir: Path, next_round: int, clock_s: float, accuracy: float | None,
                    global_flat: np.ndarray, selector_state: dict[str, Any]) -> None:
    arrays, rest = _split_state(selector_state)
    buf = io.BytesIO()
    named: dict[str, Any] = {f"sel__{k}": v for k, v in arrays.items()}
    np.savez(buf, global_flat=global_flat, **named)
    npz = f"checkpoint-{next_round:08d}.npz"
    meta = {"next_round": next_round, "clock_s": clock_s, "accuracy": accuracy,
            "selector": rest, "arrays": npz}
    try:
        atomic_write_bytes(run_dir / npz, buf.getvalue())
        # The JSON is written last and names a complete npz, so a crash in between is harmless.
        atomic_write_bytes(run_dir / _JSON, json.dumps(meta).encode())
    except OSError as exc:
        raise FedFleetError(f"output.runs_dir: writing a checkpoint in '{run_dir}' failed "
                            f"({exc.strerror or exc})") from None
    for old in run_dir.glob("checkpoint-*.npz"):
        if old.name != npz:
            old.unlink(missing_ok=True)


def load_checkpoint(run_dir: Path) -> Checkpoint | None:
    meta_path = run_dir / _JSON
    if not meta_path.exists():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        with np.load(run_dir / meta["arrays"], allow_pickle=False) as z:
            flat = z["global_flat"]
            sel = {k[5:]: z[k] for k in z.files if k.startswith("sel__")}
        sel.update(meta.get("selector", {}))
        return Checkpoint(int(meta["next_round"]), float(meta["clock_s"]), meta.get("accuracy"),
                          flat, sel)
    except Exception as exc:  # damaged or edited files: OSError, ValueError, KeyError, zip errors
        why = (str(exc).splitlines() or [""])[0][:160]
        raise FedFleetError(f"checkpoint in '{run_dir}' cannot be read ({type(exc).__name__}: "
                            f"{why}); run the scenario again to start over") from None
