"""Checkpoints: everything needed to continue a run, saved atomically (temp, fsync, rename).

Random streams derive from (seed, purpose, round[, client]), so no generator state needs saving:
the round index restores them. Arrays go in an .npz (loaded with allow_pickle=False), scalars
and selector state in JSON.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from simulator import FedFleetError
from simulator.io.files import CHECKPOINT_MAX_BYTES, is_inside, read_regular_text
from simulator.io.recording import atomic_write_bytes

_JSON = "checkpoint.json"
SCENARIO_JSON = "scenario.json"
FORMAT = 2  # 2: with digest, scenario, npz and part hashes
_PART = re.compile(r"(rounds|clients)-(\d{8})-(\d{8})\.parquet")


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


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_HASHES: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> sha256 of a part


def _part_hash(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _HASHES:
        _HASHES[key] = _sha256(path)
    return _HASHES[key]


def _digest(meta: dict[str, Any]) -> str:
    body = {k: v for k, v in meta.items() if k != "digest"}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode()).hexdigest()


def save_checkpoint(run_dir: Path, next_round: int, clock_s: float, accuracy: float | None,
                    global_flat: np.ndarray, selector_state: dict[str, Any]) -> None:
    """Write the npz, then checkpoint.json naming it, with what the checkpoint covers: its round,
    the sha256 of scenario.json, of the npz and of every round part (all flushed before)."""
    arrays, rest = _split_state(selector_state)
    buf = io.BytesIO()
    named: dict[str, Any] = {f"sel__{k}": v for k, v in arrays.items()}
    np.savez(buf, global_flat=global_flat, **named)
    npz = f"checkpoint-{next_round:08d}.npz"
    data = buf.getvalue()
    try:
        scenario = run_dir / SCENARIO_JSON
        parts = {p.name: _part_hash(p) for p in sorted((run_dir / "parts").glob("*.parquet"))}
        meta: dict[str, Any] = {
            "format": FORMAT, "next_round": next_round, "clock_s": clock_s,
            "accuracy": accuracy, "selector": rest, "arrays": npz,
            "arrays_sha256": hashlib.sha256(data).hexdigest(),
            "scenario_sha256": _sha256(scenario) if scenario.exists() else None,
            "parts": parts,
        }
        meta["digest"] = _digest(meta)
        atomic_write_bytes(run_dir / npz, data)
        # The JSON is written last and names a complete npz, so a crash in between is harmless.
        atomic_write_bytes(run_dir / _JSON, json.dumps(meta).encode())
    except OSError as exc:
        raise FedFleetError(f"output.runs_dir: writing a checkpoint in '{run_dir}' failed "
                            f"({exc.strerror or exc})") from None
    for old in run_dir.glob("checkpoint-*.npz"):
        if old.name != npz:
            old.unlink(missing_ok=True)


class CheckpointError(FedFleetError):
    """A checkpoint that does not prove itself: one line naming the file; nothing changed."""

    def __init__(self, run_dir: Path, file: Path | str, why: str) -> None:
        super().__init__(
            f"checkpoint of '{run_dir}' rejected: '{file}' {why}; nothing was changed (to "
            f"start over instead, run the scenario again with --overwrite, which deletes "
            f"'{run_dir}')")


def verify_checkpoint(run_dir: Path, rounds: int) -> dict[str, Any] | None:
    """Check everything checkpoint.json claims before anything is changed; returns its fields
    (None when there is no checkpoint). ``rounds``: the scenario's rounds.

    Checked: the JSON's own digest, 0 < next_round <= rounds, the npz name and sha256, the
    sha256 of scenario.json, and that the listed round parts exist unchanged and cover rounds
    0 .. next_round - 1 exactly. Every path named stays inside ``run_dir``."""
    meta_path = run_dir / _JSON
    if not meta_path.exists() and not meta_path.is_symlink():
        return None

    def bad(file: Path | str, why: str) -> CheckpointError:
        return CheckpointError(run_dir, file, why)

    try:
        text = read_regular_text(meta_path, CHECKPOINT_MAX_BYTES, what="checkpoint")
        meta = json.loads(text)
    except FedFleetError as exc:
        raise bad(meta_path, f"cannot be read ({exc})") from None
    except ValueError as exc:
        raise bad(meta_path, f"is not JSON ({(str(exc).splitlines() or [''])[0][:120]})") from None
    if not isinstance(meta, dict):
        raise bad(meta_path, "is not a JSON object")
    if meta.get("format") != FORMAT or "digest" not in meta:
        raise bad(meta_path, "has no integrity record (written by an older fedfleet, or edited)")
    if meta["digest"] != _digest(meta):
        raise bad(meta_path, "was edited after it was written (its digest does not match)")
    nr = meta.get("next_round")
    if not isinstance(nr, int) or isinstance(nr, bool) or not 0 < nr <= rounds:
        raise bad(meta_path, f"next_round {nr!r} is outside 1..{rounds} (the scenario's rounds)")
    for key in ("clock_s", "arrays", "arrays_sha256", "scenario_sha256", "parts", "selector"):
        if key not in meta:
            raise bad(meta_path, f"lacks '{key}'")
    npz_name = meta["arrays"]
    if npz_name != f"checkpoint-{nr:08d}.npz":
        raise bad(meta_path, f"arrays {str(npz_name)[:80]!r} is not checkpoint-{nr:08d}.npz")
    npz = run_dir / npz_name
    if not npz.is_file() or not is_inside(npz, run_dir):
        raise bad(npz, "is missing (or not a file inside the run directory)")
    if _sha256(npz) != meta["arrays_sha256"]:
        raise bad(npz, "was changed after the checkpoint (sha256 differs)")
    scenario = run_dir / SCENARIO_JSON
    if not scenario.is_file() or not is_inside(scenario, run_dir):
        raise bad(scenario, "is missing")
    if _sha256(scenario) != meta["scenario_sha256"]:
        raise bad(scenario, "was changed after the checkpoint (sha256 differs from the one the "
                            "checkpoint recorded)")
    parts_dir = run_dir / "parts"
    parts = meta["parts"]
    if not isinstance(parts, dict):
        raise bad(meta_path, "parts is not a mapping")
    spans: dict[str, list[tuple[int, int]]] = {"rounds": [], "clients": []}
    for name, digest in parts.items():
        m = _PART.fullmatch(str(name))
        part = parts_dir / str(name)
        if m is None or not is_inside(part, parts_dir):
            raise bad(meta_path, f"names a part {str(name)[:80]!r} outside the run's parts/")
        if not part.is_file():
            raise bad(part, "is missing (a round part the checkpoint covers)")
        if _part_hash(part) != digest:
            raise bad(part, "was changed after the checkpoint (sha256 differs)")
        spans[m.group(1)].append((int(m.group(2)), int(m.group(3))))
    for kind, got in spans.items():
        expect = 0
        for first, last in sorted(got):
            if first != expect or last < first:
                break
            expect = last + 1
        if expect != nr:
            raise bad(parts_dir, f"{kind} parts listed by the checkpoint do not cover rounds "
                                 f"0..{nr - 1} exactly")
    if parts_dir.is_dir():
        for p in parts_dir.glob("*.parquet"):
            m = _PART.fullmatch(p.name)
            if p.name not in parts and (m is None or int(m.group(2)) < nr):
                raise bad(p, f"holds rounds before {nr} but is not one the checkpoint covers")
    return meta


def load_checkpoint(run_dir: Path, rounds: int) -> Checkpoint | None:
    meta = verify_checkpoint(run_dir, rounds)
    if meta is None:
        return None
    npz = run_dir / meta["arrays"]
    try:
        with np.load(npz, allow_pickle=False) as z:
            flat = z["global_flat"]
            sel = {k[5:]: z[k] for k in z.files if k.startswith("sel__")}
        selector = meta["selector"]
        if not isinstance(selector, dict):
            raise ValueError("selector is not a mapping")
        sel.update(selector)
        return Checkpoint(int(meta["next_round"]), float(meta["clock_s"]), meta.get("accuracy"),
                          flat, sel)
    except Exception as exc:  # damaged files: OSError, ValueError, KeyError, zip errors
        why = (str(exc).splitlines() or [""])[0][:160]
        raise CheckpointError(run_dir, npz, f"cannot be read ({type(exc).__name__}: {why})"
                              ) from None
