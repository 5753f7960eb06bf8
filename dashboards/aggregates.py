"""Pure pandas/numpy aggregations behind the figures (no plotting here, easy to test).

Every function reduces the (possibly multi-million-row) client table to a small frame whose size
depends on the number of rounds, device classes or histogram bins, never on the number of rows.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from dashboards.style import OUTCOMES, PHASES

MAX_ROUND_POINTS = 2000  # line charts over rounds keep at most this many points
MAX_ROUND_BARS = 600  # stacked bars over rounds: consecutive rounds are binned beyond this


def codes(s: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Integer codes (-1 = missing) and string labels of a column, without per-row strings."""
    if isinstance(s.dtype, pd.CategoricalDtype):
        return s.cat.codes.to_numpy().astype(np.int64), [str(c) for c in s.cat.categories]
    c, uniques = pd.factorize(s, use_na_sentinel=True)
    return c.astype(np.int64), [str(u) for u in uniques]


def count_table(rows: pd.Series, cols: pd.Series, mask: np.ndarray | None = None) -> pd.DataFrame:
    """Counts of (rows value, cols value) pairs as a frame, like a crosstab but O(n) bincount."""
    a, alab = codes(rows)
    b, blab = codes(cols)
    keep = (a >= 0) & (b >= 0)
    if mask is not None:
        keep &= mask
    flat = np.bincount(a[keep] * max(len(blab), 1) + b[keep],
                       minlength=len(alab) * len(blab)).reshape(len(alab), len(blab))
    t = pd.DataFrame(flat, index=alab, columns=blab)
    t = t.T.groupby(level=0, sort=False).sum().T.groupby(level=0, sort=False).sum()
    t = t.loc[t.sum(axis=1) > 0, t.sum(axis=0) > 0]
    return t.sort_index()


def phase_intervals(clients: pd.DataFrame, pos: np.ndarray | None = None
                    ) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Absolute (start, end) simulated seconds of each phase per client (rows ``pos`` if given).

    Uses the event-log columns ``{download,compute,upload}_{start,end}_s`` when the run has them
    (NaN: the phase never started; asynchronous clients may start before their round). Otherwise
    the phases follow each other from ``start_s`` with the planned ``download_s``/``compute_s``/
    ``upload_s``, cut at ``stop_s``: a client that stopped early only did the part before it.
    """
    def col(name: str) -> np.ndarray:
        v: np.ndarray = clients[name].to_numpy(dtype=float, na_value=np.nan)
        return v if pos is None else v[pos]

    if all(f"{p}_{e}_s" in clients for p in PHASES for e in ("start", "end")):
        return {p: (col(f"{p}_start_s"), col(f"{p}_end_s")) for p in PHASES}
    start, stop = col("start_s"), col("stop_s")
    out, t = {}, start
    for p in PHASES:
        end = np.minimum(t + np.nan_to_num(col(f"{p}_s")), np.maximum(stop, t))
        out[p] = (t, end)
        t = end
    return out


def phases_done(clients: pd.DataFrame) -> pd.DataFrame:
    """Seconds each client really spent per phase (0 for a phase it never started)."""
    iv = phase_intervals(clients)
    return pd.DataFrame({p: np.nan_to_num(e - s).clip(min=0.0) for p, (s, e) in iv.items()},
                        index=clients.index)


def thin_rounds(rounds: pd.DataFrame, max_points: int = MAX_ROUND_POINTS) -> pd.DataFrame:
    """Every k-th round (always keeping the last) so a line has at most ``max_points`` points."""
    n = len(rounds)
    if n <= max_points:
        return rounds
    idx = np.unique(np.append(np.linspace(0, n - 1, max_points).astype(int), n - 1))
    return rounds.iloc[idx]


def round_phase_split(rounds: pd.DataFrame, clients: pd.DataFrame) -> pd.DataFrame:
    """Split each round's duration along its critical path.

    The critical client is the completed client that stopped last (ties: the longest busy). The
    time its download, compute and upload spent inside the round's window [sim_start_s,
    sim_end_s] is stacked; ``waiting`` is the rest of the round (e.g. the wait for a deadline
    when fewer than the target count finished), so the four columns add up to ``duration_s``.
    In a synchronous round every client starts with the round, so the three phases are the
    critical client's whole busy time; an asynchronous client may have started earlier, and only
    its part inside the window counts. A round without completed clients is all waiting.
    Columns: round, sim_start_s, duration_s, download, compute, upload, waiting, critical_class.
    """
    out = rounds[["round", "sim_start_s", "duration_s"]].copy().reset_index(drop=True)
    pos = np.flatnonzero((clients["outcome"] == "completed").to_numpy())
    if len(pos):
        rnd = clients["round"].to_numpy()[pos]
        busy = sum(np.nan_to_num(clients[f"{p}_s"].to_numpy(float)[pos]) for p in PHASES)
        stop = clients["stop_s"].to_numpy(float)[pos]
        order = np.lexsort((busy, stop, rnd))  # by round, then stop time, then busy time
        last = order[np.r_[rnd[order][1:] != rnd[order][:-1], True]]  # last row of each round
        iv = phase_intervals(clients, pos[last])
        win = rounds.set_index("round")
        w0 = pd.Series(rnd[last]).map(win["sim_start_s"]).to_numpy(float)
        w1 = w0 + pd.Series(rnd[last]).map(win["duration_s"]).to_numpy(float)
        inside = {p: np.nan_to_num(np.minimum(e, w1) - np.maximum(s, w0)).clip(min=0.0)
                  for p, (s, e) in iv.items()}
        cls = (clients["device_class"].iloc[pos[last]].astype(str).to_numpy()
               if "device_class" in clients else np.full(len(last), ""))
        frame = pd.DataFrame({"round": rnd[last], **inside, "critical_class": cls})
        out = out.merge(frame, on="round", how="left")
    else:
        for p in PHASES:
            out[p] = np.nan
        out["critical_class"] = ""
    for p in PHASES:
        out[p] = out[p].fillna(0.0)
    out["critical_class"] = out["critical_class"].fillna("none completed")
    busy = out[list(PHASES)].sum(axis=1)
    out["waiting"] = (out["duration_s"] - busy).clip(lower=0.0)
    return out


def bin_rounds(split: pd.DataFrame, max_bars: int = MAX_ROUND_BARS) -> tuple[pd.DataFrame, int]:
    """Average consecutive rounds into at most ``max_bars`` bins.

    Returns (binned frame, rounds per bin).
    """
    n = len(split)
    if n <= max_bars:
        return split, 1
    k = int(np.ceil(n / max_bars))
    key = np.arange(n) // k
    num = split.select_dtypes("number").groupby(key).mean()
    num["round"] = split["round"].groupby(key).first().to_numpy()
    return num.reset_index(drop=True), k


def outcome_counts_by_class(clients: pd.DataFrame) -> pd.DataFrame:
    """Invitations per device class (rows) and outcome (columns, known outcomes first)."""
    if not len(clients):
        return pd.DataFrame(columns=list(OUTCOMES))
    t = count_table(clients["device_class"], clients["outcome"])
    known = [o for o in OUTCOMES if o in t.columns]
    cols = known + sorted(c for c in t.columns if c not in OUTCOMES)
    return t[cols].sort_index()


def outcome_rates_by_class(clients: pd.DataFrame) -> pd.DataFrame:
    """Share of each class's invitations per outcome, plus the named rates.

    participation = completed / invited; dropout = (dropped + offline + low_battery) / invited;
    straggler = (straggler + overcommitted) / invited; out_of_memory = out_of_memory / invited.
    """
    counts = outcome_counts_by_class(clients)
    invited = counts.sum(axis=1)
    rates = counts.div(invited.where(invited > 0), axis=0)

    def g(*names: str) -> pd.Series:
        return sum((counts[n] for n in names if n in counts), pd.Series(0, index=counts.index)) \
            / invited

    named = pd.DataFrame({
        "invited": invited,
        "participation": g("completed"),
        "dropout": g("dropped", "offline", "low_battery"),
        "straggler": g("straggler", "overcommitted"),
        "out_of_memory": g("out_of_memory"),
    })
    return pd.concat([named, rates.add_prefix("share_")], axis=1).fillna(0.0)


def assignment_mix_by_class(clients: pd.DataFrame, column: str = "workload",
                            max_values: int = 8) -> pd.DataFrame:
    """Invitation counts per device class (rows) and assigned value of ``column`` (columns).

    Numeric columns with more than ``max_values`` distinct values are binned into quantile ranges.
    """
    s = clients[column]
    if not isinstance(s.dtype, pd.CategoricalDtype) and pd.api.types.is_numeric_dtype(s):
        vals = s.dropna()
        if pd.unique(vals.to_numpy()).size > max_values:
            s = pd.qcut(s, q=min(max_values, 6), duplicates="drop")
        else:
            uniq = np.sort(pd.unique(vals.to_numpy()))
            code = np.searchsorted(uniq, s.to_numpy(float))
            code[s.isna().to_numpy()] = -1  # unassigned: not counted
            s = pd.Series(pd.Categorical.from_codes(code, categories=[f"{v:g}" for v in uniq]),
                          index=s.index)
    t = count_table(clients["device_class"], s)
    if isinstance(s.dtype, pd.CategoricalDtype):  # keep the natural order of values
        order = [str(c) for c in s.cat.categories]
        t = t[[c for c in order if c in t.columns]]
    return t


def traffic_energy(rounds: pd.DataFrame) -> pd.DataFrame:
    """Per round and cumulative bytes down/up and energy, against the round's end time."""
    out = rounds[["round", "sim_end_s"]].copy()
    for c in ("bytes_down", "bytes_up", "energy_j"):
        v = rounds[c].fillna(0.0) if c in rounds else pd.Series(0.0, index=rounds.index)
        out[c] = v
        out[f"cum_{c}"] = v.cumsum()
    return out


def population_mix(clients: pd.DataFrame) -> pd.DataFrame:
    """Distinct clients seen per device class and link type (rows: class, columns: link)."""
    first = ~pd.Series(clients["client_id"].to_numpy()).duplicated().to_numpy()
    link = clients["link"] if "link" in clients else pd.Series("all", index=clients.index)
    return count_table(clients["device_class"], link, mask=first)


MAX_QUANTILE_SAMPLES = 1_000_000


def rate_quantiles(clients: pd.DataFrame, tokens_per_sample: float | None = None
                   ) -> dict[str, pd.DataFrame]:
    """Distribution per device class over completed invitations, as quantiles.

    Metrics: ``downlink`` = 8 * bytes_down / download_s and ``uplink`` = 8 * bytes_up / upload_s
    in Mbit/s (latency included, so what the client really got), ``throughput`` = n_samples /
    compute_s in samples/s (tokens/s with ``tokens_per_sample``: language-model runs, where a
    sample is one sequence). Each frame has one row per class and columns p5, p25, p50, p75, p95,
    mean, n. Beyond a million rows an evenly strided subset estimates the quantiles.
    """
    done = (clients["outcome"] == "completed").to_numpy()
    cls, labels = codes(clients["device_class"])
    pos = np.flatnonzero(done & (cls >= 0))
    if len(pos) > MAX_QUANTILE_SAMPLES:
        pos = pos[:: int(np.ceil(len(pos) / MAX_QUANTILE_SAMPLES))]
    defs = {"downlink": ("bytes_down", "download_s", 8e-6),
            "uplink": ("bytes_up", "upload_s", 8e-6),
            "throughput": ("n_samples", "compute_s", float(tokens_per_sample or 1.0))}
    out: dict[str, pd.DataFrame] = {}
    k = cls[pos]
    for name, (num, den, scale) in defs.items():
        if num not in clients or den not in clients:
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            v = scale * clients[num].to_numpy(float)[pos] / clients[den].to_numpy(float)[pos]
        ok = np.isfinite(v) & (v > 0)
        rows = {}
        for code in np.unique(k[ok]):
            x = v[ok & (k == code)]
            q = np.percentile(x, [5, 25, 50, 75, 95])
            rows[labels[code]] = {**dict(zip(("p5", "p25", "p50", "p75", "p95"), q, strict=True)),
                                  "mean": float(x.mean()), "n": int(len(x))}
        out[name] = pd.DataFrame.from_dict(rows, orient="index").sort_index()
    return out


def sample_timeline(clients: pd.DataFrame, rounds: pd.DataFrame, max_rounds: int = 40,
                    max_clients: int = 200) -> pd.DataFrame:
    """Deterministic sample for the per-round timeline.

    Rounds: ``max_rounds`` evenly spaced over the run (first and last included). Clients: in each
    round, rows sorted by stop time then client id, and ``max_clients`` evenly spaced ranks kept
    (so the fastest and the slowest client are always shown). Adds the phase seconds really done
    (``download``, ``compute``, ``upload``), ``t0`` (seconds after round start the client began)
    and ``row`` (0 = first to stop).
    """
    all_rounds = np.sort(rounds["round"].unique()) if len(rounds) else np.sort(
        clients["round"].unique())
    if not len(all_rounds):
        return clients.iloc[:0]
    pick = all_rounds[np.unique(np.linspace(0, len(all_rounds) - 1,
                                            min(max_rounds, len(all_rounds))).astype(int))]
    sub = clients[clients["round"].isin(pick)]
    sub = sub.sort_values(["round", "stop_s", "client_id"], kind="stable")
    sizes = sub.groupby("round").size()
    keep = []
    offset = 0
    for n in sizes.to_numpy():
        m = min(n, max_clients)
        keep.append(offset + np.unique(np.linspace(0, n - 1, m).astype(int)))
        offset += n
    sub = sub.iloc[np.concatenate(keep)] if keep else sub.iloc[:0]
    sub = sub.copy()
    starts = rounds.set_index("round")["sim_start_s"] if "sim_start_s" in rounds else None
    if starts is not None:
        r0 = sub["round"].map(starts).fillna(sub["start_s"])
    else:
        r0 = sub.groupby("round")["start_s"].transform("min")
    r0 = r0.to_numpy(float)
    for p, (s, e) in phase_intervals(sub).items():
        sub[p] = np.nan_to_num(e - s).clip(min=0.0)
        sub[f"{p}_t0"] = np.where(np.isfinite(s), s - r0, 0.0)
    sub["t0"] = sub["start_s"].to_numpy(float) - r0
    sub["t_stop"] = sub["stop_s"].to_numpy(float) - r0
    sub["row"] = sub.groupby("round").cumcount()
    return sub


def participation_counts(clients: pd.DataFrame) -> pd.Series:
    """Completed participations per client id."""
    done = clients[clients["outcome"] == "completed"]
    return done.groupby("client_id").size()


def jain_index(counts: np.ndarray | pd.Series, population: int | None = None) -> float:
    """Jain's fairness index (sum x)^2 / (n * sum x^2) of per-client counts.

    Clients of the population that never took part count as zeros (n = population when given
    and larger than the number of counts). 1 = perfectly even, 1/n = one client did everything.
    """
    x = np.asarray(counts, dtype=float)
    n = max(len(x), int(population or 0))
    sq = float(np.sum(x * x))
    if n == 0 or sq == 0:
        return float("nan")
    return float(np.sum(x) ** 2 / (n * sq))


def time_to_target(rounds: pd.DataFrame, target: float) -> float:
    """Simulated seconds (end of the first round) at which accuracy first reached ``target``."""
    ok = rounds[rounds["accuracy"] >= target]
    return float(ok["sim_end_s"].iloc[0]) if len(ok) else float("nan")


def step_on_grid(times: np.ndarray, values: np.ndarray, grid: np.ndarray) -> np.ndarray:
    """Value of a step series (known from each time on) at each grid point; NaN before the first."""
    idx = np.searchsorted(times, grid, side="right") - 1
    out = np.where(idx >= 0, values[np.clip(idx, 0, None)], np.nan)
    return out.astype(float)


def critical_clients(clients: pd.DataFrame) -> pd.DataFrame:
    """Per round, the critical client: the completed client that stopped last (ties: the
    longest busy, as in ``round_phase_split``). Columns: round, client_id, device_class."""
    need = {"round", "outcome", "stop_s", "device_class"}
    if not len(clients) or not need <= set(clients.columns):
        return pd.DataFrame(columns=["round", "client_id", "device_class"])
    pos = np.flatnonzero((clients["outcome"] == "completed").to_numpy())
    if not len(pos):
        return pd.DataFrame(columns=["round", "client_id", "device_class"])
    rnd = clients["round"].to_numpy()[pos]
    busy = sum(np.nan_to_num(clients[f"{p}_s"].to_numpy(float)[pos]) for p in PHASES
               if f"{p}_s" in clients)
    stop = clients["stop_s"].to_numpy(float)[pos]
    order = np.lexsort((busy, stop, rnd))
    last = order[np.r_[rnd[order][1:] != rnd[order][:-1], True]]
    ids = (clients["client_id"].to_numpy()[pos[last]] if "client_id" in clients
           else np.full(len(last), -1))
    return pd.DataFrame({"round": rnd[last], "client_id": ids,
                         "device_class": clients["device_class"].astype(str).to_numpy()[
                             pos[last]]})


def class_drilldown(rounds: pd.DataFrame, clients: pd.DataFrame) -> pd.DataFrame:
    """One row per device class: ``invited``, ``completed``, ``participation`` (completed /
    invited), ``critical_rounds`` (rounds in which the class held the critical client: see
    ``critical_clients``), ``critical_share`` (of the rounds that had one), ``critical_time_s``
    (summed duration of those rounds), ``time_share`` (of the summed duration of all rounds that
    had a critical client), ``energy_j`` (spent by its invited clients) and ``energy_share``."""
    if not len(clients) or not {"device_class", "outcome"} <= set(clients.columns):
        return pd.DataFrame()
    cls = clients["device_class"].astype(str)
    out = pd.DataFrame({"invited": cls.value_counts()})
    out["completed"] = cls[(clients["outcome"] == "completed").to_numpy()].value_counts()
    crit = critical_clients(clients)
    dur = (rounds.set_index("round")["duration_s"] if {"round", "duration_s"} <= set(rounds)
           and len(rounds) else pd.Series(dtype=float))
    crit = crit.assign(duration_s=crit["round"].map(dur).astype(float)) if len(crit) else \
        crit.assign(duration_s=pd.Series(dtype=float))
    out["critical_rounds"] = crit["device_class"].value_counts()
    out["critical_time_s"] = crit.groupby("device_class")["duration_s"].sum()
    out["energy_j"] = (clients["energy_j"].groupby(cls.to_numpy()).sum()
                       if "energy_j" in clients else 0.0)
    out = out.fillna(0.0)
    out["participation"] = out["completed"] / out["invited"].where(out["invited"] > 0)
    out["critical_share"] = out["critical_rounds"] / max(float(out["critical_rounds"].sum()), 1.0)
    tt = float(out["critical_time_s"].sum())
    out["time_share"] = out["critical_time_s"] / tt if tt > 0 else 0.0
    te = float(out["energy_j"].sum())
    out["energy_share"] = out["energy_j"] / te if te > 0 else 0.0
    out.index.name = "device_class"
    return out.sort_index().reset_index()


SMOOTHING = (0.0, 0.6, 0.9)  # the smoothing weights the dashboards offer


def ema(values: np.ndarray, weight: float) -> np.ndarray:
    """TensorBoard-style smoothing: debiased exponential moving average (``weight`` 0 = off)."""
    v = np.asarray(values, dtype=float)
    if weight <= 0 or len(v) < 2:
        return v
    out = np.empty_like(v)
    acc, norm = 0.0, 0.0
    for i, x in enumerate(v):
        acc = weight * acc + (1 - weight) * x
        norm = weight * norm + (1 - weight)
        out[i] = acc / norm
    return out


def _whole(v: object) -> str:
    f = float(v)  # type: ignore[arg-type]
    return f"{f:.0f}" if f.is_integer() else f"{f:g}"


def workload_labels(clients: pd.DataFrame) -> pd.Series | None:
    """A readable label per invitation from the workload and its recorded parameters:
    "LoRA r8", "partial top 2 blocks", "split at block 3" (with "· LoRA r4" when the client part
    trains LoRA), "width 0.5", "full", "none". ``None`` when no parameter column is recorded."""
    if "workload" not in clients or not any(
            c in clients for c in ("rank", "blocks", "cut", "width")):
        return None
    w = clients["workload"].astype(str).to_numpy()

    def col(name: str) -> np.ndarray:
        return (clients[name].to_numpy(dtype=float, na_value=np.nan) if name in clients
                else np.full(len(clients), np.nan))

    rank, blocks, cut, width = col("rank"), col("blocks"), col("cut"), col("width")
    # label each distinct (workload, rank, blocks, cut, width) once: O(rows) factorize
    keys = pd.MultiIndex.from_arrays([w, rank, blocks, cut, width])
    code, uniq = keys.factorize()
    labels = []
    for kind, r, b, c, wd in uniq:
        if kind == "lora":
            lab = f"LoRA r{_whole(r)}" if r == r and r > 0 else "LoRA"
        elif kind == "partial":
            lab = (f"partial top {_whole(b)} block{'' if b == 1 else 's'}"
                   if b == b and b > 0 else "partial")
        elif kind == "split":
            lab = f"split at block {_whole(c)}" if c == c else "split"
            if r == r and r > 0:
                lab += f" · LoRA r{_whole(r)}"
        elif kind == "width":
            lab = f"width {wd:g}" if wd == wd else "width"
        else:
            lab = str(kind)
        labels.append(lab)
    cats = sorted(set(labels))
    pos = {lab: i for i, lab in enumerate(cats)}
    lab_code = np.array([pos[lab] for lab in labels], dtype=np.int64)
    return pd.Series(pd.Categorical.from_codes(lab_code[code], categories=cats),
                     index=clients.index)


def workload_label_order(label: str) -> tuple:
    """Sort key for workload labels: by kind (in the dashboards' order), then by the number."""
    kinds = ("full", "lora", "partial", "split", "width", "none")
    kind = label.split(" ")[0].lower()
    nums = [float(x) for x in label.replace("r", " ").split() if x.replace(".", "").isdigit()]
    return (kinds.index(kind) if kind in kinds else len(kinds), nums, label)
