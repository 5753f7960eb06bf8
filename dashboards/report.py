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
from dashboards.data import COMPARE_CLIENT_READ, COMPARE_ROUND_READ, load_run, run_name
from dashboards.style import FONT, INK, MUTED, fmt_duration

PLOTLY_CONFIG: dict[str, Any] = {"displaylogo": False, "responsive": True,
                                 "modeBarButtonsToRemove": ["lasso2d", "select2d"]}


@dataclass
class Panel:
    id: str
    caption: str
    figure: go.Figure


def run_panels(rounds: pd.DataFrame, clients: pd.DataFrame) -> list[Panel]:
    """All single-run panels, in page order (shared by the HTML report and the live app)."""
    panels = [
        Panel("accuracy", "Test accuracy and loss of the global model after each round, against "
              "simulated time (left) and round number (right). Dotted: mean training loss of the "
              "clients that completed the round.", F.accuracy_figure(rounds)),
        Panel("round-time", "Each bar is one round's simulated duration, split along its critical "
              "path: the download, compute and upload time of the completed client that finished "
              "last, and the waiting time left over (round duration minus that client's busy "
              "time, e.g. waiting for a deadline). Hover to see the critical client's class.",
              F.round_time_figure(rounds, clients)),
        Panel("timeline", "One row per invited client, sorted by when it stopped; bars show the "
              "download, compute and upload it really did, in simulated time since the round "
              "started. Faded rows did not complete; the symbol marks when and why they stopped. "
              "Use the slider to move between rounds (up to 40 rounds and 200 clients per round "
              "are sampled evenly).", F.timeline_figure(clients, rounds)),
        Panel("rates", "For each device class, the share of its invitations that completed "
              "(participation), dropped out (dropped, offline, low battery), were cut as "
              "stragglers (deadline or over-commitment) or could not fit the workload in memory.",
              F.rates_by_class_figure(clients)),
        Panel("outcomes", "Left: outcomes of every invited client, per round. Right: the same "
              "outcomes as a share of each device class's invitations over the whole run.",
              F.outcomes_figure(rounds, clients)),
        Panel("workload", "What the planner assigned to each device class, as a share of its "
              "invitations: the workload kind, and the rank / blocks / cut / width / tier when "
              "the run records them.", F.workload_figure(clients)),
        Panel("traffic", "Cumulative bytes downloaded and uploaded by all invited clients "
              "(including partial transfers of clients that stopped early) and the energy they "
              "spent, against simulated time. Hover for the per-round amounts.",
              F.traffic_energy_figure(rounds)),
        Panel("population", "Top left: distinct clients that were invited at least once, per "
              "device class (hover for their link types). Others: per device class, the spread "
              "over completed invitations of the effective downlink (8 x bytes down / download "
              "time) and uplink (8 x bytes up / upload time), latency included, and of training "
              "throughput (samples / compute time). Box: 25th-75th percentile with the median "
              "(solid) and mean (dashed); whiskers: 5th and 95th percentile. Log scale.",
              F.population_figure(clients)),
    ]
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
            f"<footer>{html.escape(footer)}</footer></body></html>")


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
    page = render_page(f"FedFleet · {run.name}", header, run_panels(run.rounds, run.clients),
                       footer)
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
        Panel("compare-accuracy", "Test accuracy against simulated time. Runs that share a label "
              "(e.g. one policy, several seeds) are drawn as their mean with a min-max band, up "
              "to the shortest run's end. Dashed: the target accuracy.",
              C.accuracy_overlay_figure(series, target)),
        Panel("compare-time-to-target", "Simulated time until test accuracy first reached the "
              "target (mean per label; whiskers show min and max over its runs).",
              C.time_to_target_figure(summary, target)),
        Panel("compare-fairness", "Each point is a run: Jain's fairness index of how many rounds "
              "each client of the population completed (clients never selected count as zero; 1 "
              "= perfectly even) against its time to target. Up and left is fair and fast.",
              C.fairness_speed_figure(summary, target)),
        Panel("compare-participation", "Share of each device class's invitations that completed, "
              "per label (runs of a label pooled).", C.participation_by_class_figure(series)),
    ]


def write_comparison_dashboard(run_dirs: list[Path], out: Path,
                               labels: list[str] | Mapping[str, str] | None = None,
                               target_accuracy: float | None = None) -> Path:
    """Write a self-contained HTML file comparing ``run_dirs``; returns ``out``.

    ``labels``: one label per run (runs sharing a label are grouped: mean and min-max band), or a
    mapping from run directory / run name to label. ``target_accuracy`` defaults to 90% of the
    best final accuracy across the runs.
    """
    if not run_dirs:
        raise ValueError("write_comparison_dashboard needs at least one run directory")
    out = Path(out)
    series = load_series([Path(p) for p in run_dirs], labels)
    target = float(target_accuracy) if target_accuracy is not None else C.default_target(series)
    summary = C.summary_table(series, target)
    rows = "".join(
        f"<tr><td>{html.escape(r.label)}</td><td>{html.escape(r.group)}</td>"
        f"<td>{_fmt(r.final_accuracy, 'pct')}</td><td>{_fmt(r.sim_end_s, 's')}</td>"
        f"<td>{_fmt(r.time_to_target_s, 's')}</td>"
        f"<td>{'–' if r.jain != r.jain else f'{r.jain:.3f}'}</td></tr>"
        for r in summary.itertuples())
    header = (f"<h1>FedFleet comparison · {len(series)} runs</h1>"
              f'<p class="desc">Target accuracy {_fmt(target, "pct")}'
              f'{" (90% of the best final accuracy)" if target_accuracy is None else ""}.</p>'
              '<table class="runs"><tr><th>run</th><th>label</th><th>final accuracy</th>'
              "<th>simulated time</th><th>time to target</th><th>Jain's index</th></tr>"
              f"{rows}</table>")
    page = render_page("FedFleet · comparison", header, comparison_panels(series, target),
                       "times are simulated")
    atomic_write_text(out, page)
    return out
