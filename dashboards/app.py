"""Live dashboard: a Dash app over a runs directory (``fedfleet serve [RUNS_DIR]``).

Lists complete runs (``NAME/`` with manifest.json) and unfinished ones (``NAME.partial/``), shows
the chosen run's panels (the same figures as the HTML report), re-reads a run in progress every
two seconds when its files change, and compares several chosen runs.

``make_app(runs_dir)`` builds the app; ``start_server(runs_dir, host, port)`` serves it from a
background thread (used by the tests), ``serve(...)`` in the foreground.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pandas as pd
from dash import ALL, Dash, Input, Output, State, dcc, html, no_update
from dash.exceptions import PreventUpdate

from dashboards import compare as C
from dashboards import serving
from dashboards import stats as S
from dashboards.data import list_runs as _list_runs
from dashboards.data import load_run, signature
from dashboards.figures import summary_numbers
from dashboards.linking import LINKING_JS
from dashboards.report import (
    CSS,
    PLOTLY_CONFIG,
    Panel,
    comparison_panels,
    load_series,
    run_header_items,
    run_panels,
)

REFRESH_MS = 2000

APP_CSS = CSS + """
.layout{display:flex;align-items:flex-start}
aside{width:290px;flex:none;padding:16px 18px;background:white;border-right:1px solid #e4e7eb;
  min-height:calc(100vh - 64px);font-size:13px}
aside h3{font-size:12px;text-transform:uppercase;letter-spacing:.05em;color:#616e7c;
  margin:14px 0 6px}
aside label{display:block;padding:3px 0;cursor:pointer}
aside .hint{color:#7b8794;font-size:12px;margin-top:6px}
.content{flex:1;min-width:0}
.topbar{background:#102a43;color:#f0f4f8;padding:14px 24px}
.topbar h1{margin:0;font-size:18px;font-weight:600}
.topbar span{color:#9fb3c8;font-size:13px;margin-left:12px}
.runhead{background:#243b53;color:#f0f4f8;padding:14px 24px;border-radius:0}
.runhead h2{margin:0 0 10px;font-size:17px;font-weight:600}
.content main{padding:16px 24px 32px}
#tabs .tab{padding:9px 0;font-size:14px}
.badge{font-size:11px;padding:1px 6px;border-radius:8px;margin-left:6px;background:#e4e7eb;
  color:#334e68}
.badge.running{background:#fce8c3;color:#8d5a00}
.lbsort{font-size:13px;color:#bcccdc;margin:4px 0}
.lbsort label{margin-right:12px;cursor:pointer}
"""


def _index_string() -> str:
    return ("<!DOCTYPE html><html><head>{%metas%}<title>{%title%}</title>{%favicon%}{%css%}"
            f"<style>{APP_CSS}</style></head><body>{{%app_entry%}}<footer>{{%config%}}"
            "{%scripts%}{%renderer%}</footer>"
            f"<script>{LINKING_JS}</script></body></html>")


def _run_options(runs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    opts = []
    for r in runs:
        name = r["name"][: -len(".partial")] if r["name"].endswith(".partial") else r["name"]
        if r["status"] == "running":
            total = f"/{r['rounds']}" if r.get("rounds") else ""
            badge = html.Span(f"running · {r.get('rounds_done', 0)}{total} rounds",
                              className="badge running")
        else:
            acc = r.get("final_accuracy")
            badge = html.Span(f"{acc:.1%}" if isinstance(acc, (int, float)) else "complete",
                              className="badge")
        opts.append({"label": name + " " + badge.children, "value": r["path"]})
    return opts


def _panel_div(p: Panel, graph_id: Any = None) -> html.Div:
    return html.Div(className="panel", id=f"panel-{p.id}", children=[
        html.P(p.caption, className="caption"),
        dcc.Graph(id=graph_id or f"graph-{p.id}", figure=p.figure,
                  config=PLOTLY_CONFIG,  # type: ignore[arg-type]  # plain dict for dash's TypedDict
                  style={"height": f"{int(p.figure.layout.height or 420)}px"}),
    ])


def _cards(items: list[tuple[str, str]]) -> html.Div:
    return html.Div(className="cards", children=[
        html.Div(className="card",
                 children=[html.Div(k, className="k"), html.Div(v, className="v")])
        for k, v in items])


GRAPH = "panel-graph"  # pattern-matching id type of the run view's graphs


def _run_parts(path: Path) -> tuple[list[Any], list[Panel]]:
    """The run header's children and the run's panels, each figure keeping the user's zoom,
    pan and legend choices across live updates (``uirevision``: the run's path)."""
    run = load_run(path)
    numbers = summary_numbers(run.rounds, run.clients)
    head = [html.H2(f"{run.name}" + (" (in progress)" if run.status == "running" else "")),
            _cards(run_header_items(run.manifest, numbers, run.status))]
    panels = run_panels(run.rounds, run.clients, run.manifest)
    for p in panels:
        p.figure.layout.uirevision = str(path)
    return head, panels


def run_view(path: Path, incremental: bool = True) -> tuple[list[Any], list[Any]]:
    """(the run header's children, the run view's children). The header lives outside the
    view (``run-head`` is always in the page), so a live update of the header never targets a
    component that a rebuild of the view is replacing."""
    head, panels = _run_parts(path)
    return head, [html.Main([_panel_div(p, {"type": GRAPH, "panel": p.id} if incremental
                                        else None) for p in panels])]


SORT_LABELS = {"time_to_target_s": "time to target", "final_accuracy": "final accuracy",
               "jain": "fairness", "energy_j": "energy"}


def leaderboard_table(lb: pd.DataFrame) -> html.Table:
    """The leaderboard (dashboards.stats) as a Dash table, one unit per column."""
    cols = S.leaderboard_columns(lb)
    return html.Table(className="runs leaderboard", children=[
        html.Thead(html.Tr([html.Th(c.title) for c in cols])),
        html.Tbody([html.Tr([html.Td(c.cells[i]) for c in cols]) for i in range(len(lb))]),
    ])


def compare_view(paths: list[Path], target: float | None) -> list[Any]:
    series = load_series(paths)
    tgt = float(target) if target is not None else C.default_target(series)
    summary = C.summary_table(series, tgt)
    head = html.Div(className="runhead", children=[
        html.H2(f"Comparing {len(series)} runs · target accuracy {tgt:.1%}"),
        html.Div(className="lbsort", children=[
            html.Span("Leaderboard (mean ± 95% t-interval over a label's runs), sorted by "),
            dcc.RadioItems(id="lb-sort", value="time_to_target_s", inline=True,
                           options=[{"label": v, "value": k} for k, v in SORT_LABELS.items()]),
        ]),
        html.Div(id="leaderboard", children=leaderboard_table(S.leaderboard(summary))),
        dcc.Store(id="lb-data", data=summary.to_dict("records")),
    ])
    return [head, html.Main([_panel_div(p) for p in comparison_panels(series, tgt)])]


def _layout(runs_dir: Path) -> html.Div:
    """Built per page load, so a new browser tab sees the runs as they are now."""
    runs = _list_runs(runs_dir)
    first = next((r["path"] for r in runs if r["status"] == "running"),
                 runs[-1]["path"] if runs else None)
    return html.Div([
        html.Div(className="topbar", children=[html.H1(["FedFleet", html.Span(str(runs_dir))])]),
        html.Div(className="layout", children=[
            html.Aside([
                html.H3("Runs"),
                dcc.RadioItems(id="run-list", options=_run_options(runs), value=first),
                html.Div("Unfinished runs refresh every 2 s.", className="hint"),
                html.H3("Compare"),
                dcc.Checklist(id="compare-select", value=[],
                              options=[{"label": o["label"], "value": o["value"]}
                                       for o in _run_options(runs)]),
                html.Div("Tick runs, then open the Compare tab.", className="hint"),
                html.H3("Target accuracy"),
                dcc.Input(id="target", type="number", min=0, max=1, step=0.01,
                          placeholder="default: 90% of best", debounce=True,
                          style={"width": "100%"}),
            ]),
            html.Div(className="content", children=[
                # The tabs only switch which pane shows: both panes stay in the page, so a
                # callback in flight when the tab changes still finds its outputs (dcc.Tabs
                # unmounts a hidden tab's children, and dash-renderer then logged "a nonexistent
                # object was used in an Output" for run-head), and the run view keeps its zoom.
                # The run header sits outside the view that rebuilds replace, for the same reason.
                dcc.Tabs(id="tabs", value="run", children=[
                    dcc.Tab(label="Run", value="run"),
                    dcc.Tab(label="Compare", value="compare"),
                ]),
                html.Div(id="run-pane", children=[
                    html.Div(className="runhead", id="run-head"),
                    dcc.Loading(html.Div(id="run-view"), type="dot", delay_show=600)]),
                html.Div(id="compare-pane", style={"display": "none"}, children=dcc.Loading(
                    html.Div(id="compare-view"), type="dot", delay_show=600)),
            ]),
        ]),
        dcc.Interval(id="tick", interval=REFRESH_MS),
        dcc.Store(id="run-sig"),
        dcc.Store(id="run-data"),
        dcc.Store(id="compare-sig"),
        dcc.Store(id="list-key"),
    ])


def make_app(runs_dir: str | Path, token: str | None = None, incremental: bool = True) -> Dash:
    """The live dashboard for ``runs_dir`` (not started).

    Every run path a callback receives from the browser goes through
    :func:`dashboards.serving.confine` (HTTP 403 and a log line when it is not a run inside
    ``runs_dir``); with ``token`` every request must carry it (dashboards/serving.py).
    ``incremental=False`` rebuilds the whole run view on every change (the old behaviour, kept
    for benchmarks/bench_live.py)."""
    runs_dir = Path(runs_dir)

    def run_path(value: Any) -> Path:
        return serving.confine(runs_dir, value)

    # update_title=None turns off the "Updating..." tab title (documented; dash types it as str)
    app = Dash(__name__, title="FedFleet", update_title=None,  # type: ignore[arg-type]
               serve_locally=True, suppress_callback_exceptions=True,
               assets_folder=str(Path(__file__).parent / "_no_assets"))
    app.index_string = _index_string()
    app.layout = lambda: _layout(runs_dir)
    serving.install(app.server, token)

    @app.callback(Output("run-list", "options"), Output("run-list", "value"),
                  Output("compare-select", "options"), Output("list-key", "data"),
                  Input("tick", "n_intervals"), State("run-list", "value"),
                  State("list-key", "data"))
    def refresh_list(_n: int | None, value: str | None, last: Any):  # type: ignore[no-untyped-def]
        found = _list_runs(runs_dir)
        key = [[r["path"], r["status"], r.get("rounds_done"), r.get("final_accuracy")]
               for r in found]
        if key == last:
            raise PreventUpdate  # nothing changed: do not re-trigger the views
        opts = _run_options(found)
        paths = {o["value"] for o in opts}
        new_value = value
        if value and value not in paths and value.endswith(".partial"):
            done = value[: -len(".partial")]  # the run finished and was renamed
            new_value = done if done in paths else None
        if new_value not in paths:
            new_value = opts[-1]["value"] if opts else None
        cmp_opts = [{"label": o["label"], "value": o["value"]} for o in opts]
        return opts, (no_update if new_value == value else new_value), cmp_opts, key

    app.clientside_callback(  # which pane shows: in the browser, at once
        "function (tab) { var off = {display: 'none'};"
        " return [tab === 'compare' ? off : {}, tab === 'compare' ? {} : off]; }",
        Output("run-pane", "style"), Output("compare-pane", "style"), Input("tabs", "value"))

    # Cheap checks on every tick update a signature store only when files changed; the views
    # (wrapped in a loading indicator) redraw only when their signature store changes.
    @app.callback(Output("run-sig", "data"), Input("run-list", "value"),
                  Input("tick", "n_intervals"), Input("tabs", "value"), State("run-sig", "data"))
    def check_run(path: str | None, _n: int | None, tab: str, last: Any):  # type: ignore[no-untyped-def]
        if incremental:  # new files of the shown run are check_data's business
            if last is not None and last[0] == path:
                raise PreventUpdate
            return [path, signature(run_path(path)) if path else ""]
        sig = [path, signature(run_path(path)) if path else ""]
        if sig == last or (tab != "run" and last is not None and last[0] == path):
            raise PreventUpdate
        return sig

    @app.callback(Output("run-head", "children"), Output("run-view", "children"),
                  Input("run-sig", "data"))
    def show_run(sig: Any):  # type: ignore[no-untyped-def]
        if not sig or not sig[0]:
            return [], [html.Main(html.P(f"No runs in {runs_dir} yet."))]
        return run_view(run_path(sig[0]), incremental)

    if incremental:
        # New files of the run on screen: only the figures and the header change (Plotly.react
        # on each graph, zoom kept); a change in the set of panels rebuilds the view.
        @app.callback(Output("run-data", "data"), Input("tick", "n_intervals"),
                      State("run-sig", "data"), State("run-data", "data"),
                      State("tabs", "value"))
        def check_data(_n: int | None, sig: Any, last: Any, tab: str) -> Any:
            if not sig or not sig[0] or tab != "run":
                raise PreventUpdate
            data = [sig[0], signature(run_path(sig[0]))]
            if last is None or last[0] != sig[0]:
                return data  # the first look at this run: remember, nothing to redraw
            if data == last:
                raise PreventUpdate
            return data

        @app.callback(Output({"type": GRAPH, "panel": ALL}, "figure"),
                      Output("run-head", "children"),
                      Output("run-sig", "data", allow_duplicate=True),
                      Input("run-data", "data"), State({"type": GRAPH, "panel": ALL}, "id"),
                      State("run-sig", "data"), prevent_initial_call=True)
        def update_run(data: Any, ids: list[dict[str, str]], sig: Any) -> Any:
            if not data or not ids or not sig or sig[0] != data[0]:
                raise PreventUpdate
            if len(sig) > 1 and data[1] == sig[1]:  # the view was built from these files: a
                raise PreventUpdate  # redraw would only reset the linked panels' zoom
            head, panels = _run_parts(run_path(data[0]))
            if [p.id for p in panels] != [i["panel"] for i in ids]:
                return no_update, no_update, [data[0], data[1]]  # rebuild: panels came or went
            return [p.figure for p in panels], head, no_update

    @app.callback(Output("compare-sig", "data"), Input("compare-select", "value"),
                  Input("target", "value"), Input("tabs", "value"), Input("tick", "n_intervals"),
                  State("compare-sig", "data"))
    def check_compare(paths: list[str] | None, target: float | None, tab: str, _n: int | None,
                      last: Any) -> list[Any]:
        if tab != "compare":
            raise PreventUpdate
        sig = [target, [[p, signature(run_path(p))] for p in paths or []]]
        if sig == last:
            raise PreventUpdate
        return sig

    @app.callback(Output("leaderboard", "children"), Input("lb-sort", "value"),
                  State("lb-data", "data"), prevent_initial_call=True)
    def sort_leaderboard(by: str | None, records: list[dict[str, Any]] | None) -> Any:
        if not records or by not in SORT_LABELS:
            raise PreventUpdate
        return leaderboard_table(S.leaderboard(pd.DataFrame(records), sort_by=str(by)))

    @app.callback(Output("compare-view", "children"), Input("compare-sig", "data"))
    def show_compare(sig: Any) -> list[Any]:
        if not sig or not sig[1]:
            return [html.Main(html.P("Choose runs to compare in the list on the left."))]
        chosen = [p for p in (run_path(v) for v, _ in sig[1]) if p.exists()]
        if not chosen:
            return [html.Main(html.P("Choose runs to compare in the list on the left."))]
        return compare_view(chosen, sig[0])

    return app


class ServerThread(threading.Thread):
    """Serve a Dash app with werkzeug from a daemon thread; ``stop()`` shuts it down."""

    def __init__(self, app: Dash, host: str = "127.0.0.1", port: int = 0) -> None:
        from werkzeug.serving import WSGIRequestHandler, make_server

        class Quiet(WSGIRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                pass

        super().__init__(daemon=True)
        self.server = make_server(host, port, app.server, threaded=True, request_handler=Quiet)
        self.host, self.port = host, self.server.server_port
        self.url = f"http://{host}:{self.port}/"

    def run(self) -> None:
        self.server.serve_forever()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.join(timeout=5)


def start_server(runs_dir: str | Path, host: str = "127.0.0.1", port: int = 0,
                 token: str | None = None, incremental: bool = True) -> ServerThread:
    """Start the app for ``runs_dir`` in a background thread (port 0 = any free port)."""
    t = ServerThread(make_app(runs_dir, token=token, incremental=incremental), host, port)
    t.start()
    return t


def serve(runs_dir: str | Path, host: str = "127.0.0.1", port: int = 8050,
          token: str | None = None) -> None:
    """Serve in the foreground until interrupted (request logging off: it polls every 2 s).

    A non-loopback ``host`` needs a ``token`` (the CLI's ``--allow-remote`` makes one)."""
    import logging

    if token is None and not serving.is_loopback(host):
        raise ValueError(f"serving on {host} (not this machine only) needs a token")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    make_app(runs_dir, token=token).run(host=host, port=port, debug=False)


__all__ = ["make_app", "start_server", "serve", "ServerThread"]
