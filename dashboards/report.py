"""Self-contained HTML dashboards: one run (``write_run_dashboard``) or several
(``write_comparison_dashboard``). plotly.js is embedded once, so the file opens offline."""

from __future__ import annotations

import html
import os
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import plotly.graph_objects as go
import plotly.io as pio

from dashboards import compare as C
from dashboards import figures as F
from dashboards import secagg_hierarchy as SH
from dashboards import stats as S
from dashboards.data import COMPARE_CLIENT_READ, COMPARE_ROUND_READ, load_run, run_name
from dashboards.linking import LINKING_JS
from dashboards.style import FONT, INK, MUTED, energy_unit, fmt_duration, time_unit

PLOTLY_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True,
                                 "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


@dataclass
class Panel:
    id: str
    caption: str
    figure: go.Figure


def run_panels(rounds: pd.DataFrame, clients: pd.DataFrame,
               manifest: Mapping[str, Any] | None = None) -> list[Panel]:
    """All single-run panels, in page order (shared by the HTML report and the live app).

    The evaluation panel is left out of a run whose rounds recorded no accuracy or loss (an
    analytic run trains nothing); a language-model run shows its compute in tokens/s."""
    panels = []
    if not len(rounds) or F.has_evaluation(rounds):
        panels.append(Panel(
            "accuracy", "Test accuracy (top) and loss (bottom) of the global model after each "
            "round. Dotted: mean training loss of the clients that completed the round. The "
            "buttons switch the x axis between simulated time, round and wall time, and smooth "
            "the lines (TensorBoard's debiased moving average). Zooming any time or round axis "
            "on this page zooms the others with it; double-click to reset.",
            F.accuracy_figure(rounds)))
    panels += [
        Panel("round-time", "Each bar is one round's simulated duration, split along its critical "
              "path: the download, compute and upload time of the completed client that finished "
              "last, and the waiting time left over (round duration minus that client's busy "
              "time, e.g. waiting for a deadline). Hover shows a round's parts with its total and "
              "the critical client's class; click a round to open it (or the nearest sampled "
              "round) in the client timeline below.",
              F.round_time_figure(rounds, clients)),
        Panel("timeline", "One row per invited client, sorted by when it stopped; bars show the "
              "download, compute and upload it really did, in simulated time since the round "
              "started. Faded rows did not complete; the symbol marks when and why they stopped. "
              "Use the slider to move between rounds (up to 40 rounds and 200 clients per round "
              "are sampled evenly).", F.timeline_figure(clients, rounds)),
        Panel("classes", "Per device class: the share of rounds in which it held the critical "
              "client (the completed client that finished last, so the one the round waited "
              "for), its share of the total duration of those rounds, its participation "
              "(completed / invited) and its share of the energy all invited clients spent.",
              F.class_figure(rounds, clients)),
        Panel("rates", "For each device class, the share of its invitations that completed "
              "(participation), dropped out (dropped, offline, low battery), were cut as "
              "stragglers (deadline or over-commitment) or could not fit the workload in memory.",
              F.rates_by_class_figure(clients)),
        Panel("outcomes", "Left: outcomes of every invited client, per round. Right: the same "
              "outcomes as a share of each device class's invitations over the whole run.",
              F.outcomes_figure(rounds, clients)),
        Panel("workload", "What the planner assigned to each device class, as a share of its "
              "invitations: the workload kind, and what exactly (LoRA rank, the top blocks a "
              "partial client trains, the block a split client cuts at, the width) when the run "
              "records it.", F.workload_figure(clients)),
        Panel("traffic", "Cumulative bytes downloaded and uploaded by all invited clients "
              "(including partial transfers of clients that stopped early) and the energy they "
              "spent, against simulated time. Hover for the per-round amounts.",
              F.traffic_energy_figure(rounds)),
    ]
    tokens = F.tokens_per_sample(dict(manifest) if manifest else None)
    panels.append(Panel(
        "population", "Top left: distinct clients that were invited at least once, per device "
        "class (hover for their link types). Others: per device class, the spread over "
        "completed invitations of the effective downlink (8 x bytes down / download time) and "
        "uplink (8 x bytes up / upload time), latency included, and of training throughput ("
        + (f"tokens / compute time; a sample is one sequence of {tokens} tokens" if tokens
           else "samples / compute time") + "). Box: 25th-75th percentile with the median "
        "(solid) and mean (dashed); whiskers: 5th and 95th percentile. Log scale.",
        F.population_figure(clients, tokens)))
    extra = F.staleness_privacy_figure(rounds, clients)
    if extra is not None:  # only for asynchronous or differentially private runs
        panels.append(Panel("staleness-privacy", "Asynchronous runs: how many model versions "
                            "were published while each aggregated update was being trained "
                            "(its staleness), per device class. Differentially private runs: "
                            "the privacy budget epsilon spent so far, against simulated time.",
                            extra))
    secagg = SH.secagg_figure(rounds)
    if secagg is not None:
        panels.append(Panel("secure-aggregation", "Runs with secure aggregation (Bonawitz et al. "
                            "2017): the extra bytes of pairwise masking per round (keys, shares, "
                            "unmasking; red: the round failed because its survivors fell below "
                            "the threshold, and the model did not change) and the extra client "
                            "and server seconds.", secagg))
    hier = SH.hierarchy_figure(rounds, clients)
    if hier is not None:
        panels.append(Panel("hierarchy", "Hierarchical runs: for each cloud round, the edge "
                            "rounds (the slowest edge each time), the edge-to-cloud backhaul of "
                            "the slowest edge and how long the cloud waited between the first "
                            "and the last edge model; right, client invitations per edge "
                            "aggregator by device class.", hier))
    return panels


# --- HTML -----------------------------------------------------------------------------------------
CSS = f"""
*{{box-sizing:border-box}}
body{{margin:0;background:#f5f7fa;font-family:{FONT};color:{INK}}}
header{{background:#102a43;color:#f0f4f8;padding:22px 32px 18px}}
header h1{{margin:0 0 4px;font-size:22px;font-weight:600}}
header p.desc{{margin:0 0 14px;color:#bcccdc;font-size:13px;max-width:1100px}}
.cards{{display:flex;flex-wrap:wrap;gap:10px}}
.card{{background:rgba(255,255,255,0.08);border-radius:6px;padding:8px 12px;min-width:120px}}
.card .k{{font-size:11px;text-transform:uppercase;letter-spacing:.04em;color:#9fb3c8}}
.card .v{{font-size:17px;font-weight:600;margin-top:2px}}
nav{{padding:10px 32px;background:white;border-bottom:1px solid #e4e7eb;font-size:13px;
  position:sticky;top:0;z-index:10}}
nav a{{color:#334e68;margin-right:16px;text-decoration:none}}
nav a:hover{{text-decoration:underline}}
main{{padding:18px 32px 40px;max-width:1500px}}
.panel{{background:white;border:1px solid #e4e7eb;border-radius:8px;margin:0 0 18px;
  padding:14px 16px 6px}}
.panel p.caption{{margin:0 0 6px;color:{MUTED};font-size:13px;line-height:1.45;max-width:1150px}}
table.runs{{border-collapse:collapse;font-size:13px;margin-top:6px;color:#f0f4f8}}
table.runs th,table.runs td{{padding:4px 12px 4px 0;text-align:left}}
table.runs th{{color:#9fb3c8;font-weight:500}}
table.runs td{{font-variant-numeric:tabular-nums}}
table.sortable th[data-better]{{cursor:pointer;text-decoration:underline dotted}}
table.sortable th[data-dir=asc]::after{{content:" ▲"}}
table.sortable th[data-dir=desc]::after{{content:" ▼"}}
details.per-run{{margin-top:10px;font-size:13px}}
details.per-run summary{{cursor:pointer;color:#9fb3c8}}
footer{{color:{MUTED};font-size:12px;padding:0 32px 24px}}
"""


def _fmt(v: Any, kind: str = "") -> str:
    if v is None or (isinstance(v, float) and v != v):
        return "–"
    if kind == "pct":
        return f"{float(v):.1%}"
    if kind == "s":
        return fmt_duration(float(v))
    if kind == "wall":
        return f"{float(v):.1f} s"
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return f"{v:,.0f}" if float(v).is_integer() else f"{v:,.2f}"
    return str(v)


def _cards(items: list[tuple[str, str]]) -> str:
    return '<div class="cards">' + "".join(
        f'<div class="card"><div class="k">{html.escape(k)}</div>'
        f'<div class="v">{html.escape(v)}</div></div>' for k, v in items) + "</div>"


def run_header_items(manifest: dict[str, Any], numbers: dict[str, float],
                     status: str = "complete") -> list[tuple[str, str]]:
    raw = manifest.get("scenario")
    sc: dict[str, Any] = raw if isinstance(raw, dict) else {}
    pop = manifest.get("population") or (sc.get("population") or {}).get("size")
    planned = manifest.get("rounds") or sc.get("rounds")
    done = int(numbers.get("rounds_done", 0))
    rounds = f"{done:,}" if not planned or done == planned else f"{done:,} of {planned:,}"
    per_round = sc.get("clients_per_round")
    if per_round and sc.get("overcommit") and sc["overcommit"] != 1:
        per_round = f"{per_round} (x{sc['overcommit']:g} invited)"
    final = manifest.get("final_accuracy", numbers.get("final_accuracy"))
    sim_end = manifest.get("sim_end_s", numbers.get("sim_end_s"))
    wall = manifest.get("wall_s", numbers.get("wall_s"))
    items = [("status", status), ("population", _fmt(pop)), ("rounds", rounds),
             ("clients per round", _fmt(per_round)), ("seed", _fmt(manifest.get("seed"))),
             ("final accuracy" if status == "complete" else "latest accuracy",
              _fmt(final, "pct")),
             ("best accuracy", _fmt(numbers.get("best_accuracy"), "pct")),
             ("simulated time", _fmt(sim_end, "s")), ("wall time", _fmt(wall, "wall"))]
    sel = (sc.get("selection") or {}).get("policy")
    agg = (sc.get("aggregation") or {}).get("method")
    if sel or agg:
        items.append(("selection / aggregation", f"{sel or '–'} / {agg or '–'}"))
    if sc.get("deadline_s"):
        items.append(("deadline", fmt_duration(float(sc["deadline_s"]))))
    return items


def figure_div(fig: go.Figure, div_id: str, include_plotlyjs: bool | str = False) -> str:
    div: str = pio.to_html(fig, full_html=False, include_plotlyjs=include_plotlyjs,
                           config=PLOTLY_CONFIG, div_id=div_id, default_width="100%",
                           default_height=f"{int(fig.layout.height or 420)}px", validate=False)
    return div


def render_page(title: str, header_html: str, panels: list[Panel], footer: str = "") -> str:
    nav = "".join(f'<a href="#panel-{p.id}">{html.escape(p.id.replace("-", " "))}</a>'
                  for p in panels)
    body = []
    for i, p in enumerate(panels):
        fig = figure_div(p.figure, f"fig-{p.id}", include_plotlyjs=(i == 0))
        if i == 0:  # plotly.js comes with the first figure: mark when it has been evaluated
            at = fig.find(f'<div id="fig-{p.id}"')
            fig = fig[:at] + '<script>performance.mark("fedfleet:plotly.js")</script>' + fig[at:]
        # performance marks let a benchmark see where the page-load time goes
        body.append(f'<div class="panel" id="panel-{p.id}"><p class="caption">'
                    f'{html.escape(p.caption)}</p>{fig}</div>'
                    f'<script>performance.mark("fedfleet:{p.id}")</script>')
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8">'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f"<title>{html.escape(title)}</title><style>{CSS}</style></head><body>"
            f"<header>{header_html}</header><nav>{nav}</nav><main>{''.join(body)}</main>"
            f"<footer>{html.escape(footer)}</footer>"
            f"<script>{LINKING_JS}</script><script>{SORT_JS}</script></body></html>")


def atomic_write_text(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_run_dashboard(run_dir: Path, out: Path | None = None) -> Path:
    """Write ``run_dir``'s dashboard as one self-contained HTML file and return its path.

    ``run_dir`` is a complete run (``rounds.parquet``, ``clients.parquet``, ``manifest.json``) or
    an unfinished ``NAME.partial`` directory. ``out`` defaults to ``run_dir/dashboard.html``.
    """
    run_dir = Path(run_dir)
    out = Path(out) if out is not None else run_dir / "dashboard.html"
    run = load_run(run_dir)
    numbers = F.summary_numbers(run.rounds, run.clients)
    sc = run.scenario
    desc = sc.get("description") or ""
    header = (f"<h1>FedFleet run · {html.escape(run.name)}</h1>"
              f'<p class="desc">{html.escape(str(desc))}</p>'
              + _cards(run_header_items(run.manifest, numbers, run.status)))
    footer = (f"{run_dir.resolve()} · started {run.manifest.get('started_at', '–')} · "
              f"fedfleet {(run.manifest.get('versions') or {}).get('fedfleet', '')} · "
              "times are simulated unless marked wall")
    page = render_page(f"FedFleet · {run.name}", header,
                       run_panels(run.rounds, run.clients, run.manifest), footer)
    atomic_write_text(out, page)
    return out


# --- comparison -----------------------------------------------------------------------------------
def _group_for(i: int, path: Path, labels: Sequence[str] | Mapping[str, str] | None,
               manifest_group: str | None, name: str) -> str:
    if isinstance(labels, Mapping):
        for key in (str(path), path.name, name):
            if key in labels:
                return str(labels[key])
    elif labels is not None:
        if len(labels) <= i:
            raise ValueError("labels must have one entry per run directory")
        return str(labels[i])
    return manifest_group or name


def load_series(run_dirs: Sequence[Path], labels: Sequence[str] | Mapping[str, str] | None = None
                ) -> list[C.RunSeries]:
    """Load the columns the comparison needs; runs with the same label form one group."""
    names = [run_name(Path(p)) for p in run_dirs]
    series = []
    for i, p in enumerate(run_dirs):
        p = Path(p)
        run = load_run(p, COMPARE_ROUND_READ, COMPARE_CLIENT_READ)
        label = names[i] if names.count(names[i]) == 1 else f"{p.parent.name}/{names[i]}"
        series.append(C.RunSeries(label=label, group=_group_for(i, p, labels, run.group, label),
                                  rounds=run.rounds, clients=run.clients,
                                  population=run.population))
    return series


def comparison_panels(series: list[C.RunSeries], target: float) -> list[Panel]:
    summary = C.summary_table(series, target)
    return [
        Panel("compare-accuracy", "Test accuracy against round (left) and simulated time "
              "(right). Runs that share a label (e.g. one policy, several seeds) are drawn as "
              "their mean with a 95% confidence band over seeds (Student's t-interval, mean ± "
              "t(0.975, n-1) s/√n), up to the shortest run's end. Buttons: per-seed lines, "
              "smoothing. Dashed: the target accuracy. Zooming one x axis zooms the same axis "
              "elsewhere on the page.", C.accuracy_overlay_figure(series, target)),
        Panel("compare-time-to-target", "Why one label is faster: the rounds it needed to reach "
              "the target, the simulated time that took, and its mean round duration (time = "
              "rounds x round length). Bars: mean over the label's runs that reached the target, "
              "whiskers the 95% t-interval, dots the runs; hatched: no run reached it (the bar "
              "shows the run length).", C.time_to_target_figure(summary, target)),
        Panel("compare-round-duration", "Distribution of round durations per label (all rounds "
              "of its runs pooled): box with median, mean (dashed) and 25th-75th percentile, and "
              "a histogram as the share of the label's rounds.",
              C.round_duration_figure(series)),
        Panel("compare-waste-energy", "Per run: device time spent on updates that were thrown "
              "away (clients that dropped, went offline, ran out of memory or battery, or were "
              "cut as stragglers) and the energy all invited clients spent. Mean with 95% "
              "t-interval over the label's runs; dots: runs.", C.waste_energy_figure(summary)),
        Panel("compare-invitations", "Which device classes each label invited: invitations per "
              "run (mean over its runs) and as a share of the label's invitations.",
              C.invitations_by_class_figure(series)),
        Panel("compare-classes", "Per device class and label: the share of rounds in which the "
              "class held the critical client (the last completed one, whom the round waited "
              "for), its share of those rounds' time, its participation and its share of client "
              "energy (runs of a label pooled).", C.class_drilldown_figure(series)),
        Panel("compare-fairness", "Each point is a run: Jain's fairness index of how many rounds "
              "each client of the population completed (clients never selected count as zero; 1 "
              "= perfectly even) against its time to target. Up and left is fair and fast.",
              C.fairness_speed_figure(summary, target)),
        Panel("compare-participation", "Share of each device class's invitations that completed, "
              "per label (runs of a label pooled).", C.participation_by_class_figure(series)),
    ]


SORT_JS = """
(function(){document.querySelectorAll('table.sortable').forEach(function(t){
  var heads=t.querySelectorAll('th[data-better]');
  heads.forEach(function(th){th.addEventListener('click',function(){
    var col=th.cellIndex, better=th.getAttribute('data-better');
    var asc=th.getAttribute('data-dir')?th.getAttribute('data-dir')!=='asc':better!=='high';
    heads.forEach(function(h){h.removeAttribute('data-dir');});
    th.setAttribute('data-dir',asc?'asc':'desc');
    var rows=Array.from(t.tBodies[0].rows);
    rows.sort(function(a,b){
      var x=parseFloat(a.cells[col].getAttribute('data-v')),y=parseFloat(b.cells[col]
        .getAttribute('data-v'));
      if(isNaN(x)&&isNaN(y))return 0; if(isNaN(x))return 1; if(isNaN(y))return -1;
      return asc?x-y:y-x;});
    rows.forEach(function(r,i){r.cells[0].textContent=String(i+1);t.tBodies[0].appendChild(r);});
  });});});})();
"""


def runs_table_html(summary: pd.DataFrame) -> str:
    """One row per run, one unit per column (chosen from the column's largest value)."""
    if not len(summary):
        return ""
    cols: list[tuple[str, list[str]]] = [("run", list(summary["label"])),
                                         ("label", list(summary["group"]))]
    acc = summary["final_accuracy"].astype(float)
    cols.append(("final accuracy (%)", ["–" if v != v else f"{100 * v:.1f}" for v in acc]))
    for key, title in (("sim_end_s", "simulated time"), ("time_to_target_s", "time to target"),
                       ("wasted_device_s", "wasted device time"),
                       ("mean_round_s", "mean round")):
        v = summary[key].astype(float)
        unit, div = time_unit(v.max())
        cols.append((f"{title} ({unit})", ["–" if x != x else f"{x / div:.2f}" for x in v]))
    rt = summary["rounds_to_target"].astype(float)
    cols.append(("rounds to target", ["–" if x != x else f"{x:.0f}" for x in rt]))
    e = summary["energy_j"].astype(float)
    eunit, ediv = energy_unit(e.max())
    cols.append((f"client energy ({eunit})", ["–" if x != x else f"{x / ediv:,.1f}" for x in e]))
    cols.append(("Jain's index", ["–" if x != x else f"{x:.3f}"
                                  for x in summary["jain"].astype(float)]))
    head = "".join(f"<th>{html.escape(t)}</th>" for t, _ in cols)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c[i]))}</td>" for _, c in cols)
                   + "</tr>" for i in range(len(summary)))
    return f'<table class="runs"><tr>{head}</tr>{body}</table>'


def leaderboard_table_html(lb: pd.DataFrame, sort_by: str = "time_to_target_s") -> str:
    """The policy leaderboard as an HTML table; click a metric's header to sort by it."""
    cols = S.leaderboard_columns(lb)
    if not cols:
        return ""
    heads = []
    for c in cols:
        if not c.better:
            heads.append(f"<th>{html.escape(c.title)}</th>")
            continue
        mark = (f' data-dir="{"asc" if c.better == "low" else "desc"}"' if c.key == sort_by
                else "")
        heads.append(f'<th data-better="{c.better}" title="click to sort"{mark}>'
                     f"{html.escape(c.title)}</th>")
    head = "".join(heads)
    body = "".join(
        "<tr>" + "".join(
            f'<td data-v="{"" if v != v else repr(v)}">{html.escape(c.cells[i])}</td>'
            for c in cols for v in [c.values[i]]) + "</tr>"
        for i in range(len(lb)))
    return (f'<table class="runs sortable leaderboard"><thead><tr>{head}</tr></thead>'
            f"<tbody>{body}</tbody></table>")


def write_comparison_dashboard(run_dirs: list[Path], out: Path,
                               labels: list[str] | Mapping[str, str] | None = None,
                               target_accuracy: float | None = None) -> Path:
    """Write a self-contained HTML file comparing ``run_dirs``; returns ``out``.

    ``labels``: one label per run (runs sharing a label are grouped: mean and 95% t-interval
    band), or a mapping from run directory / run name to label. ``target_accuracy`` defaults
    to 90% of the best final accuracy across the runs.
    """
    if not run_dirs:
        raise ValueError("write_comparison_dashboard needs at least one run directory")
    out = Path(out)
    series = load_series([Path(p) for p in run_dirs], labels)
    target = float(target_accuracy) if target_accuracy is not None else C.default_target(series)
    summary = C.summary_table(series, target)
    lb = S.leaderboard(summary)
    header = (f"<h1>FedFleet comparison · {len(series)} runs</h1>"
              f'<p class="desc">Target accuracy {_fmt(target, "pct")}'
              f'{" (90% of the best final accuracy)" if target_accuracy is None else ""}. '
              "Leaderboard: one row per label, mean ± 95% confidence interval over its runs "
              "(Student's t-interval; time and rounds to target over the runs that reached it). "
              "Click a column to sort by it.</p>"
              + leaderboard_table_html(lb)
              + '<details class="per-run"><summary>every run</summary>'
              + runs_table_html(summary) + "</details>")
    page = render_page("FedFleet · comparison", header, comparison_panels(series, target),
                       "times are simulated")
    atomic_write_text(out, page)
    return out
