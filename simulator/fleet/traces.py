"""FedScale device traces -> FedFleet's per-client parquet table (numpy/pandas/pyarrow only).

FedScale (Lai et al., "FedScale: Benchmarking Model and System Performance of Federated Learning
at Scale", ICML 2022; github.com/SymbioticLab/FedScale, docs "Device Trace File Formats") ships:

* a *capacity* pickle ``{client_id: {"computation": ms_per_sample, "communication": kbit_per_s}}``
  (AI Benchmark inference latency per sample and MobiPerf bandwidth; 500,000 entries), and
* a *behaviour* pickle ``{client_id: {"active": [t0, ...], "inactive": [t0', ...],
  "finish_time": T, "duration": D, "model": str}}`` (107,749 traces). Interval i is online from
  ``active[i]`` to ``inactive[i]`` seconds; FedScale's ``ClientMetadata.is_active`` checks
  ``cur_time % finish_time`` against them, i.e. the trace repeats with period ``finish_time``.

Pickles are untrusted input: :class:`SafeUnpickler` refuses every global, so only built-in
containers and scalars load and no code can run (``pickle.load`` is never called on user data).

Our format (parquet, one row per capacity client, sorted by id): ``client_id`` int64 (FedScale key,
non-negative, unique); ``ms_per_sample`` float64 (FedScale "computation", finite, >= 0);
``kbit_per_s`` float64 ("communication", finite, > 0); with a behaviour trace also
``active_start_s`` / ``active_end_s`` list<float64> (online intervals, seconds) and ``period_s``
float64 (FedScale ``finish_time``, else the last interval end; intervals are clipped to it).

Availability semantics (:func:`trace_available`): client c is online at t when
``start <= t mod period < end`` for one of its intervals (half-open, unlike FedScale's closed
check: the two differ only at the instants where a client goes offline). A NaN or missing period
means "no repetition": the client is offline before its first and after its last interval.
"""

from __future__ import annotations

import math
import os
import secrets
from collections.abc import Mapping, Sequence
from numbers import Real
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from simulator import InputError
from simulator.io.files import TRACE_MAX_BYTES, read_regular_file
from simulator.io.safe_pickle import _ALLOWED, SafeUnpickler, _first_line, safe_load_pickle  # noqa: F401

TRACE_FORMAT_VERSION = "1"
BASE_COLUMNS = ("client_id", "ms_per_sample", "kbit_per_s")
BEHAVIOR_COLUMNS = ("active_start_s", "active_end_s", "period_s")
_INT64_MAX = int(np.iinfo(np.int64).max)


# --- validation helpers -------------------------------------------------------------------------
def _client_key(key: Any, origin: str) -> int:
    """FedScale keys are ints; numeric strings ("17") are accepted too."""
    if isinstance(key, int) and not isinstance(key, bool):
        cid = key
    elif isinstance(key, str) and key.strip().lstrip("+").isdigit():
        cid = int(key)
    else:
        raise InputError(origin, f"client id {key!r} must be a non-negative integer")
    if not 0 <= cid <= _INT64_MAX:
        raise InputError(origin, f"client id {key!r} must be a non-negative 64-bit integer")
    return cid


def _number(value: Any, origin: str, cid: Any, field: str, *, positive: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, Real):
        got = type(value).__name__
        raise InputError(origin, f"client {cid}: '{field}' must be a number, got {got}")
    try:
        x = float(value)
    except OverflowError:
        x = math.inf
    if not math.isfinite(x) or x < 0 or (positive and x == 0):
        need = "positive" if positive else "non-negative"
        raise InputError(origin, f"client {cid}: '{field}' must be a finite {need} number, "
                                 f"got {value!r}")
    return x


def _times(value: Any, origin: str, cid: Any, field: str) -> np.ndarray:
    where = f"client {cid}: '{field}'"
    if not isinstance(value, (list, tuple)):
        raise InputError(origin, f"{where} must be a list of numbers, got {type(value).__name__}")
    bad = [v for v in value if type(v) is not float and type(v) is not int]  # exact: no bools
    if bad:
        raise InputError(origin, f"{where} must hold only numbers, found {bad[0]!r}")
    try:
        return np.array(value, dtype=np.float64).reshape(-1)
    except OverflowError:
        raise InputError(origin, f"{where} holds a number too large for float64") from None


def _check_intervals(
    starts: np.ndarray, ends: np.ndarray, lengths: np.ndarray, ids: np.ndarray, origin: str
) -> None:
    """Vectorised checks over all clients' intervals (flat arrays + per-client lengths)."""
    owner = np.repeat(np.arange(lengths.size), lengths)

    def fail(mask: np.ndarray, what: str) -> None:
        if mask.any():
            j = int(np.flatnonzero(mask)[0])
            raise InputError(origin, f"client {int(ids[owner[j]])}: {what} "
                                     f"(interval {j - int(np.searchsorted(owner, owner[j]))}: "
                                     f"{float(starts[j]):g} -> {float(ends[j]):g})")

    fail(~np.isfinite(starts) | ~np.isfinite(ends), "interval times must be finite")
    fail((starts < 0) | (ends < 0), "interval times must be non-negative seconds")
    fail(ends < starts, "an interval ends before it starts")
    if starts.size > 1:
        same = owner[1:] == owner[:-1]
        bad = np.zeros(starts.size, bool)
        bad[1:] = same & (starts[1:] < ends[:-1])
        fail(bad, "intervals must be sorted and must not overlap")


def _ragged(values: Any) -> tuple[np.ndarray, np.ndarray]:
    """(flat float64 values, int64 lengths) from a pyarrow list array or a sequence of sequences."""
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    if isinstance(values, (pa.ListArray, pa.LargeListArray)):
        if values.null_count:
            raise InputError("trace", "interval lists must not be null")
        flat = values.flatten().to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
        return flat, values.value_lengths().to_numpy(zero_copy_only=False).astype(np.int64)
    seq = list(values)
    lengths = np.fromiter((len(v) for v in seq), dtype=np.int64, count=len(seq))
    if lengths.sum() == 0:
        return np.zeros(0), lengths
    return np.concatenate([np.asarray(v, dtype=np.float64) for v in seq]), lengths


def _list_array(flat: np.ndarray, lengths: np.ndarray) -> pa.Array:
    offsets = np.zeros(lengths.size + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    if offsets[-1] > np.iinfo(np.int32).max:
        raise InputError("trace", "too many intervals for one parquet list column (> 2**31)")
    return pa.ListArray.from_arrays(pa.array(offsets.astype(np.int32)),
                                    pa.array(flat, pa.float64()))


# --- import -------------------------------------------------------------------------------------
def _check_record(rec: Any, origin: str, cid: int, fields: tuple[str, str]) -> None:
    """A client's trace record must be a dict holding both ``fields``."""
    if not isinstance(rec, Mapping):
        raise InputError(origin, f"client {cid}: expected a dict with '{fields[0]}' and "
                                 f"'{fields[1]}', got {type(rec).__name__}")
    for field in fields:
        if field not in rec:
            raise InputError(origin, f"client {cid}: missing field '{field}'")


def _read_capacity(doc: Any, origin: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if not isinstance(doc, Mapping) or not doc:
        raise InputError(origin, "capacity trace must be a non-empty dict {client_id: {...}}")
    n = len(doc)
    ids = np.empty(n, np.int64)
    ms = np.empty(n)
    kbps = np.empty(n)
    for i, (key, rec) in enumerate(doc.items()):
        cid = _client_key(key, origin)
        _check_record(rec, origin, cid, ("computation", "communication"))
        ids[i] = cid
        ms[i] = _number(rec["computation"], origin, cid, "computation")
        kbps[i] = _number(rec["communication"], origin, cid, "communication", positive=True)
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        dup = int(uniq[counts > 1][0])
        raise InputError(origin, f"client {dup} appears twice (e.g. as 1 and '1')")
    return ids, ms, kbps


def _read_behavior(
    doc: Any, ids: np.ndarray, origin: str
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray, str]:
    """Intervals for each capacity client: (starts, ends, lengths, period_s, join rule)."""
    if not isinstance(doc, Mapping) or not doc:
        raise InputError(origin, "behaviour trace must be a non-empty dict {client_id: {...}}")
    traces: dict[int, Any] = {}
    for key, rec in doc.items():
        cid = _client_key(key, origin)
        if cid in traces:
            raise InputError(origin, f"client {cid} appears twice (e.g. as 1 and '1')")
        traces[cid] = rec
    if all(int(c) in traces for c in ids):
        join, keys = "id", [int(c) for c in ids]
    else:  # FedScale's clientManager.register_client: user_trace_keys[client_id % len(traces)]
        order = list(traces)
        join, keys = "modulo", [order[int(c) % len(order)] for c in ids]

    parsed: dict[int, tuple[np.ndarray, np.ndarray, float]] = {}
    for cid in dict.fromkeys(keys):
        rec = traces[cid]
        _check_record(rec, origin, cid, ("active", "inactive"))
        start = _times(rec["active"], origin, cid, "active")
        end = _times(rec["inactive"], origin, cid, "inactive")
        fin = rec.get("finish_time")
        period = math.nan if fin is None else _number(fin, origin, cid, "finish_time",
                                                      positive=True)
        if end.size == start.size - 1 and not math.isnan(period):
            end = np.append(end, period)  # ends while online: last interval runs to finish_time
        if end.size != start.size:
            raise InputError(origin, f"client {cid}: 'active' has {start.size} entries but "
                                     f"'inactive' has {end.size}")
        if math.isnan(period):
            period = float(end.max()) if end.size and end.max() > 0 else math.nan
        parsed[cid] = (start, end, period)

    lengths = np.array([parsed[k][0].size for k in keys], dtype=np.int64)
    starts = np.concatenate([parsed[k][0] for k in keys]) if lengths.sum() else np.zeros(0)
    ends = np.concatenate([parsed[k][1] for k in keys]) if lengths.sum() else np.zeros(0)
    periods = np.array([parsed[k][2] for k in keys], dtype=np.float64)
    _check_intervals(starts, ends, lengths, np.asarray(keys, dtype=np.int64), origin)

    # FedScale never looks past finish_time (it uses t % finish_time): clip, drop empty intervals.
    owner = np.repeat(np.arange(lengths.size), lengths)
    per = periods[owner]
    clip = np.isfinite(per)
    ends = np.where(clip, np.minimum(ends, per), ends)
    keep = ~clip | (starts < per)
    starts, ends, owner = starts[keep], ends[keep], owner[keep]
    lengths = np.bincount(owner, minlength=lengths.size).astype(np.int64)
    return starts, ends, lengths, periods, join


def _write_atomic(table: pa.Table, out_path: Path) -> None:
    """Write parquet to a temp file beside ``out_path`` and rename it into place."""
    parent = out_path.parent
    if not parent.is_dir():
        raise InputError(str(out_path), f"output directory does not exist: '{parent}'")
    # A fresh random name (not mkstemp, whose 0600 mode would survive the rename and ignore umask).
    tmp = parent / f".{out_path.name}.{os.getpid()}.{secrets.token_hex(6)}.tmp"
    written = False
    try:
        pq.write_table(table, str(tmp))
        os.replace(tmp, out_path)
        written = True
    except (OSError, pa.ArrowException) as exc:
        why = getattr(exc, "strerror", None) or _first_line(exc)
        raise InputError(str(out_path), f"cannot write output ({why})") from None
    finally:
        if not written and os.path.exists(tmp):
            os.unlink(tmp)


def import_fedscale(
    capacity_path: str | os.PathLike[str],
    behavior_path: str | os.PathLike[str] | None,
    out_path: str | os.PathLike[str],
) -> dict[str, Any]:
    """Convert FedScale capacity (+ optional behaviour) pickles to our parquet trace table.

    Everything is validated before anything is written; the output appears atomically. Behaviour
    traces join by client id when every capacity id has one, otherwise by FedScale's own rule
    (trace ``keys[client_id % n_traces]``, dict order). Returns a summary dict.
    """
    cap_origin = str(capacity_path)
    ids, ms, kbps = _read_capacity(safe_load_pickle(capacity_path), cap_origin)
    order = np.argsort(ids, kind="stable")
    ids, ms, kbps = ids[order], ms[order], kbps[order]
    columns: dict[str, pa.Array] = {
        "client_id": pa.array(ids, pa.int64()),
        "ms_per_sample": pa.array(ms, pa.float64()),
        "kbit_per_s": pa.array(kbps, pa.float64()),
    }
    join = "none"
    if behavior_path is not None:
        starts, ends, lengths, period, join = _read_behavior(
            safe_load_pickle(behavior_path), ids, str(behavior_path))
        columns["active_start_s"] = _list_array(starts, lengths)
        columns["active_end_s"] = _list_array(ends, lengths)
        columns["period_s"] = pa.array(period, pa.float64())
    table = pa.table(columns).replace_schema_metadata({
        "fedfleet.trace_format": TRACE_FORMAT_VERSION, "fedfleet.source": "fedscale",
        "fedfleet.behavior_join": join})
    _write_atomic(table, Path(out_path))
    return {
        "clients": int(ids.size),
        "with_behavior": behavior_path is not None,
        "behavior_join": join,
        "median_ms_per_sample": float(np.median(ms)),
        "median_kbit_per_s": float(np.median(kbps)),
    }


# --- reading back -------------------------------------------------------------------------------
def load_trace_table(path: str | os.PathLike[str]) -> pd.DataFrame:
    """Read and validate a table written by :func:`import_fedscale`.

    Returns a DataFrame sorted as stored; list columns hold numpy float64 arrays. Raises
    ``InputError`` for an unreadable file, missing/mistyped columns, nulls or bad values.
    """
    origin = str(path)
    data = read_regular_file(path, TRACE_MAX_BYTES, what="trace table")  # no FIFO, no device
    try:
        table = pq.read_table(pa.BufferReader(data))
    except (OSError, pa.ArrowException) as exc:
        why = _first_line(exc)
        raise InputError(origin, f"not a readable parquet trace table ({why})") from None
    names = set(table.column_names)
    missing = [c for c in BASE_COLUMNS if c not in names]
    if missing:
        raise InputError(origin, f"missing column(s): {', '.join(missing)} "
                                 f"(expected {', '.join(BASE_COLUMNS)})")
    has_start, has_end = "active_start_s" in names, "active_end_s" in names
    if has_start != has_end:
        raise InputError(origin, "columns active_start_s and active_end_s must appear together")
    for name in table.column_names:
        if table.column(name).null_count:
            raise InputError(origin, f"column {name} contains nulls")
    ctype = table.schema.field("client_id").type
    if not pa.types.is_integer(ctype):
        raise InputError(origin, f"column client_id must be integer, got {ctype}")
    ids = table.column("client_id").to_numpy().astype(np.int64)
    if ids.size and ids.min() < 0:
        raise InputError(origin, "column client_id must be non-negative")
    if np.unique(ids).size != ids.size:
        raise InputError(origin, "column client_id has duplicate ids")
    out: dict[str, Any] = {"client_id": ids}
    for name, positive in (("ms_per_sample", False), ("kbit_per_s", True)):
        ftype = table.schema.field(name).type
        if not (pa.types.is_floating(ftype) or pa.types.is_integer(ftype)):
            raise InputError(origin, f"column {name} must be numeric, got {ftype}")
        col = table.column(name).to_numpy().astype(np.float64)
        bad = ~np.isfinite(col) | (col < 0) | ((col == 0) if positive else False)
        if bad.any():
            j = int(np.flatnonzero(bad)[0])
            need = "positive" if positive else "non-negative"
            raise InputError(origin, f"client {int(ids[j])}: {name} must be finite and {need}, "
                                     f"got {float(col[j]):g}")
        out[name] = col
    if has_start:
        flat_parts = []
        for name in ("active_start_s", "active_end_s"):
            ftype = table.schema.field(name).type
            listy = pa.types.is_list(ftype) or pa.types.is_large_list(ftype)
            if not listy or not (pa.types.is_floating(ftype.value_type)
                                 or pa.types.is_integer(ftype.value_type)):
                raise InputError(origin, f"column {name} must be list<float64>, got {ftype}")
            flat_parts.append(_ragged(table.column(name)))
        (starts, ls), (ends, le) = flat_parts
        if not np.array_equal(ls, le):
            j = int(np.flatnonzero(ls != le)[0])
            raise InputError(origin, f"client {int(ids[j])}: active_start_s and active_end_s "
                                     "differ in length")
        _check_intervals(starts, ends, ls, ids, origin)
        split = np.cumsum(ls)[:-1]
        out["active_start_s"] = np.split(starts, split) if ids.size else []
        out["active_end_s"] = np.split(ends, split) if ids.size else []
        if "period_s" in names:
            period = table.column("period_s").to_numpy().astype(np.float64)
            if (period <= 0).any() or np.isinf(period).any():
                raise InputError(origin, "column period_s must be positive (NaN: no repetition)")
        else:
            period = np.full(ids.size, np.nan)
        out["period_s"] = period
    return pd.DataFrame(out)


# --- availability -------------------------------------------------------------------------------
def trace_available(
    active_start_s: Sequence[Sequence[float]] | pa.Array | pa.ChunkedArray | pd.Series,
    active_end_s: Sequence[Sequence[float]] | pa.Array | pa.ChunkedArray | pd.Series,
    t_s: float,
    period_s: Sequence[float] | np.ndarray | float | None = None,
) -> np.ndarray:
    """Bool mask: which clients are online at time ``t_s`` seconds.

    Client c is online when ``start <= t' < end`` for one of its intervals, where ``t' = t_s mod
    period_s[c]`` if that period is finite and positive (FedScale repeats each trace with period
    ``finish_time``) and ``t' = t_s`` otherwise (NaN / None: no repetition). Cost is one pass over
    all intervals (numpy), not a Python loop over clients.
    """
    starts, ls = _ragged(active_start_s)
    ends, le = _ragged(active_end_s)
    if not np.array_equal(ls, le):
        raise ValueError("active_start_s and active_end_s differ in shape")
    n = ls.size
    t = np.full(n, float(t_s))
    if period_s is not None:
        per = np.broadcast_to(np.asarray(period_s, dtype=np.float64), (n,))
        wrap = np.isfinite(per) & (per > 0)
        t = np.where(wrap, np.mod(t, np.where(wrap, per, 1.0)), t)
    owner = np.repeat(np.arange(n), ls)
    tt = t[owner]
    hit = (starts <= tt) & (tt < ends)
    return np.bincount(owner[hit], minlength=n) > 0
