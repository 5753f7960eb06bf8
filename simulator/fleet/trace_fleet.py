"""Trace-driven fleets: ``population.trace`` (pure numpy/pyarrow; docs/clock.md, format in
device_profiles/README.md).

The mix still gives every client its device class (memory, energy, kind, dropout: what a trace
does not measure); the trace replaces its compute speed, bandwidth and, when it has intervals,
its availability. Client i takes trace row ``i % rows`` (FedScale's rule) or a seeded random row.

Columns (parquet, one row per traced device; ``fedfleet profiles import`` writes the FedScale
variant):

* compute: ``train_flops_per_s`` (your telemetry) or ``ms_per_sample`` (FedScale: training costs
  3 x ms per sample, ``cost.fedscale_completion_s``; converted with the model's FLOPs per sample,
  ``calibration.fedscale_device_columns``);
* bandwidth: ``downlink_bits_per_s`` and ``uplink_bits_per_s``, or ``kbit_per_s`` (FedScale,
  both directions); optional ``latency_s`` (else the profile's);
* availability (optional): ``active_start_s`` / ``active_end_s`` list<float64> and
  ``period_s`` (simulator/fleet/traces.py: online when ``start <= t mod period < end``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from simulator import InputError
from simulator.core import rng as R
from simulator.fleet.population import Population
from simulator.fleet.traces import _check_intervals, _ragged

FIELD = "population.trace.path"
NEVER_S = 1e9  # "not again": a finite wait, so the engine's clock stays finite


@dataclass
class TracePopulation(Population):
    """A population whose availability comes from trace intervals (row ``trace_row[i]``)."""

    trace_row: np.ndarray = None  # type: ignore[assignment]
    iv_start: np.ndarray = None  # type: ignore[assignment]
    iv_end: np.ndarray = None  # type: ignore[assignment]
    iv_off: np.ndarray = None  # type: ignore[assignment]
    iv_period: np.ndarray = None  # type: ignore[assignment]

    def _intervals(self, t_s: float, ids: np.ndarray | None
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, int]:
        sel = np.arange(self.size) if ids is None else np.asarray(ids, np.int64)
        rows = self.trace_row[sel]
        lo, hi = self.iv_off[rows], self.iv_off[rows + 1]
        lengths = hi - lo
        owner = np.repeat(np.arange(sel.size), lengths)
        first = np.concatenate([[0], np.cumsum(lengths)[:-1]]) if sel.size else lengths
        flat = lo[owner] + (np.arange(owner.size) - first[owner])
        per = self.iv_period[rows]
        wrap = np.isfinite(per) & (per > 0)
        tt = np.where(wrap, np.mod(t_s, np.where(wrap, per, 1.0)), t_s)
        return owner, flat, tt, per, sel.size

    def _trace_on(self, t_s: float, ids: np.ndarray | None) -> np.ndarray:
        owner, flat, tt, _, n = self._intervals(t_s, ids)
        t = tt[owner]
        hit = (self.iv_start[flat] <= t) & (t < self.iv_end[flat])
        return np.bincount(owner[hit], minlength=n) > 0

    def available(self, t_s: float, ids: np.ndarray | None = None) -> np.ndarray:
        on = self._trace_on(t_s, ids)
        if self.gate_prob is not None:
            on &= self.gate_open(int(t_s // self.gate_slot_s), ids)
        return on

    def seconds_until_offline(self, t_s: float, ids: np.ndarray) -> np.ndarray:
        owner, flat, tt, _, n = self._intervals(t_s, ids)
        t = tt[owner]
        hit = (self.iv_start[flat] <= t) & (t < self.iv_end[flat])
        left = np.zeros(n)
        np.maximum.at(left, owner[hit], (self.iv_end[flat] - t)[hit])
        if self.gate_prob is not None:
            left = np.minimum(left, self._gate_bounds(t_s, ids)[0])
        return left

    def seconds_until_online(self, t_s: float, ids: np.ndarray) -> np.ndarray:
        owner, flat, tt, per, n = self._intervals(t_s, ids)
        t = tt[owner]
        start, end = self.iv_start[flat], self.iv_end[flat]
        wait = np.full(n, NEVER_S)
        on = (start <= t) & (t < end)
        np.minimum.at(wait, owner[on], 0.0)
        later = start > t
        np.minimum.at(wait, owner[later], (start - t)[later])
        p = per[owner]
        wraps = np.isfinite(p) & (p > 0)
        np.minimum.at(wait, owner[wraps], (p - t + start)[wraps])
        if self.gate_prob is not None:
            wait = np.maximum(wait, self._gate_bounds(t_s, ids)[1])
        return wait


def _numeric(table: pa.Table, name: str, origin: str, positive: bool) -> np.ndarray:
    ftype = table.schema.field(name).type
    if not (pa.types.is_floating(ftype) or pa.types.is_integer(ftype)):
        raise InputError(FIELD, f"{origin}: column {name} must be numeric, got {ftype}")
    if table.column(name).null_count:
        raise InputError(FIELD, f"{origin}: column {name} contains nulls")
    col = table.column(name).to_numpy().astype(np.float64)
    bad = ~np.isfinite(col) | (col < 0) | ((col == 0) if positive else False)
    if bad.any():
        j = int(np.flatnonzero(bad)[0])
        need = "positive" if positive else "non-negative"
        raise InputError(FIELD, f"{origin}: row {j}: {name} must be finite and {need}, got "
                         f"{float(col[j]):g}")
    return col


def read_trace(path: str) -> dict[str, Any]:
    """Validated columns of a trace table (InputError naming population.trace.path)."""
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise InputError(FIELD, f"file not found: '{path}'") from None
    except (OSError, pa.ArrowException) as exc:
        why = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        raise InputError(FIELD, f"'{path}' is not a readable parquet table ({why})") from None
    names = set(table.column_names)
    if table.num_rows == 0:
        raise InputError(FIELD, f"'{path}' has no rows")
    out: dict[str, Any] = {"rows": table.num_rows}
    if "train_flops_per_s" in names:
        out["train_flops_per_s"] = _numeric(table, "train_flops_per_s", path, True)
    elif "ms_per_sample" in names:
        out["ms_per_sample"] = _numeric(table, "ms_per_sample", path, False)
    else:
        raise InputError(FIELD, f"'{path}': needs a compute column (train_flops_per_s or "
                         "ms_per_sample)")
    if {"downlink_bits_per_s", "uplink_bits_per_s"} <= names:
        out["down"] = _numeric(table, "downlink_bits_per_s", path, True)
        out["up"] = _numeric(table, "uplink_bits_per_s", path, True)
    elif "kbit_per_s" in names:
        out["down"] = out["up"] = _numeric(table, "kbit_per_s", path, True) * 1000.0
    else:
        raise InputError(FIELD, f"'{path}': needs bandwidth columns (downlink_bits_per_s and "
                         "uplink_bits_per_s, or kbit_per_s)")
    if "latency_s" in names:
        out["latency_s"] = _numeric(table, "latency_s", path, False)
    if ("active_start_s" in names) != ("active_end_s" in names):
        raise InputError(FIELD, f"'{path}': active_start_s and active_end_s must appear together")
    if "active_start_s" in names:
        starts, ls = _ragged(table.column("active_start_s"))
        ends, le = _ragged(table.column("active_end_s"))
        if not np.array_equal(ls, le):
            raise InputError(FIELD, f"'{path}': active_start_s and active_end_s differ in length")
        ids = np.arange(table.num_rows)
        try:
            _check_intervals(starts, ends, ls, ids, path)
        except InputError as exc:
            raise InputError(FIELD, exc.message) from None
        per = np.full(table.num_rows, np.nan)
        if "period_s" in names:
            per = table.column("period_s").to_numpy(zero_copy_only=False).astype(np.float64)
            if (per <= 0).any() or np.isinf(per).any():
                raise InputError(FIELD, f"'{path}': period_s must be positive (NaN: no "
                                 "repetition)")
        out["intervals"] = (starts, ends, np.concatenate([[0], np.cumsum(ls)]), per)
    return out


def apply_trace(sc: Any, pop: Population,
                flops_per_sample: Callable[[], float]) -> Population:
    """The population with the trace's compute, bandwidth (and availability) columns.

    ``flops_per_sample``: the model's training FLOPs per sample (called only for an
    ``ms_per_sample`` trace; the planner that knows it sits above this layer)."""
    tf = sc.population.trace
    tr = read_trace(tf.path)
    n, rows = pop.size, int(tr["rows"])
    if tf.assignment == "modulo":
        row = np.arange(n, dtype=np.int64) % rows
    else:
        row = R.stream(sc.seed, R.POPULATION, 3).integers(0, rows, n).astype(np.int64)
    if "train_flops_per_s" in tr:
        pop.train_flops_per_s = tr["train_flops_per_s"][row].copy()
    else:
        ms = np.maximum(tr["ms_per_sample"][row], 1e-6)
        pop.train_flops_per_s = flops_per_sample() / (3.0 * ms / 1000.0)
    pop.downlink_bits_per_s = tr["down"][row].copy()
    pop.uplink_bits_per_s = tr["up"][row].copy()
    if "latency_s" in tr:
        pop.latency_s = tr["latency_s"][row].astype(np.float32)
    if "intervals" not in tr or tf.availability != "trace":
        return pop
    starts, ends, off, per = tr["intervals"]
    base = {f.name: getattr(pop, f.name) for f in fields(Population)}
    return TracePopulation(**base, trace_row=row, iv_start=starts, iv_end=ends,
                           iv_off=off.astype(np.int64), iv_period=per)
