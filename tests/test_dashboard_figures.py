"""Dashboard aggregates and figures on tiny hand-made tables, plus a 5M-row scale check."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import pytest

from dashboards import aggregates as A
from dashboards import compare as C
from dashboards import figures as F
from dashboards import timeline as T


@pytest.fixture(autouse=True)
def validate_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Let plotly validate every property here (the dashboards skip it where it is slow)."""
    monkeypatch.setattr(T, "VALIDATE", True)


def _clients(rows: list[tuple]) -> pd.DataFrame:
    cols = ["round", "client_id", "device_class", "outcome", "workload", "start_s", "stop_s",
            "download_s", "compute_s", "upload_s", "bytes_down", "bytes_up", "n_samples"]
    df = pd.DataFrame(rows, columns=cols)
    df["link"] = "wifi"
    return df


@pytest.fixture
def tiny() -> tuple[pd.DataFrame, pd.DataFrame]:
    rounds = pd.DataFrame({
        "round": [0, 1], "sim_start_s": [0.0, 10.0], "sim_end_s": [10.0, 15.0],
        "duration_s": [10.0, 5.0], "wall_s": [0.1, 0.2], "selected": [4, 2],
        "completed": [2, 0], "dropped": [1, 1], "offline": [0, 0], "straggled": [0, 0],
        "overcommitted": [0, 0], "out_of_memory": [1, 1], "accuracy": [0.5, 0.7],
        "loss": [1.0, 0.8], "train_loss": [1.1, np.nan], "bytes_down": [4e6, 2e6],
        "bytes_up": [2e6, 0.0], "energy_j": [100.0, 50.0], "wasted_device_s": [3.0, 4.0]})
    clients = _clients([
        # round 0 starts at 0: A and B complete (B is the slowest: busy 7), C drops at 2.5 s
        (0, 1, "phone", "completed", "full", 0.0, 6.0, 1.0, 2.0, 3.0, 1e6, 1e6, 10),
        (0, 2, "laptop", "completed", "lora", 0.0, 7.0, 2.0, 4.0, 1.0, 2e6, 1e6, 40),
        (0, 3, "phone", "dropped", "full", 0.0, 2.5, 1.0, 2.0, 3.0, 1e6, 0.0, 10),
        (0, 4, "phone", "out_of_memory", "none", 0.0, 0.0, 1.0, 2.0, 3.0, 0.0, 0.0, 10),
        # round 1 starts at 10 s: nobody completes
        (1, 1, "phone", "dropped", "full", 10.0, 14.0, 1.0, 2.0, 3.0, 2e6, 0.0, 10),
        (1, 5, "laptop", "out_of_memory", "none", 10.0, 10.0, 1.0, 1.0, 1.0, 0.0, 0.0, 10),
    ])
    return rounds, clients


def test_phases_done_cuts_at_stop(tiny):
    _, clients = tiny
    ph = A.phases_done(clients)
    # dropped at 2.5 s: 1 s download, 1.5 s compute, no upload
    assert ph.loc[2].tolist() == [1.0, 1.5, 0.0]
    assert ph.loc[3].tolist() == [0.0, 0.0, 0.0]  # out of memory: never started
    assert ph.loc[4].tolist() == [1.0, 2.0, 1.0]  # round 1: started at 10, stopped at 14
    assert ph.loc[0].tolist() == [1.0, 2.0, 3.0]


def test_round_phase_split_critical_path_and_waiting(tiny):
    rounds, clients = tiny
    split = A.round_phase_split(rounds, clients).set_index("round")
    assert split.loc[0, ["download", "compute", "upload", "waiting"]].tolist() == [2, 4, 1, 3]
    assert split.loc[0, "critical_class"] == "laptop"
    assert split.loc[1, ["download", "compute", "upload", "waiting"]].tolist() == [0, 0, 0, 5]
    sums = split[["download", "compute", "upload", "waiting"]].sum(axis=1)
    assert np.allclose(sums, split["duration_s"])


def test_round_time_figure_stacks_to_duration(tiny):
    rounds, clients = tiny
    fig = F.round_time_figure(rounds, clients)
    by_name = {t.name: list(t.y) for t in fig.data}
    assert set(by_name) == {"download", "compute", "upload", "waiting", "total"}
    assert by_name["waiting"] == [3.0, 5.0]
    assert by_name["download"] == [2.0, 0.0]
    # one hover for the round's parts and its total; the total is the round duration
    assert by_name["total"] == [10.0, 5.0] and fig.layout.hovermode == "x unified"
    assert fig.layout.meta["role"] == "round-time"
    assert fig.layout.yaxis.title.text == "simulated time (s)"


def test_outcome_rates_by_class(tiny):
    _, clients = tiny
    rates = A.outcome_rates_by_class(clients)
    phone = rates.loc["phone"]
    assert phone["invited"] == 4
    assert phone["participation"] == pytest.approx(0.25)
    assert phone["dropout"] == pytest.approx(0.5)
    assert phone["out_of_memory"] == pytest.approx(0.25)
    assert phone["straggler"] == 0
    laptop = rates.loc["laptop"]
    assert (laptop["participation"], laptop["out_of_memory"]) == (0.5, 0.5)
    counts = A.outcome_counts_by_class(clients)
    assert list(counts.columns) == ["completed", "dropped", "out_of_memory"]  # canonical order
    assert counts.loc["phone"].tolist() == [1, 2, 1]


def test_rates_figure_values(tiny):
    _, clients = tiny
    fig = F.rates_by_class_figure(clients)
    phone = next(t for t in fig.data if t.name == "phone")
    assert list(phone.y) == pytest.approx([0.25, 0.5, 0.0, 0.25])


def test_assignment_mix_with_extra_columns(tiny):
    _, clients = tiny
    clients = clients.assign(rank=[0, 8, 0, np.nan, 0, np.nan])
    mix = A.assignment_mix_by_class(clients, "workload")
    assert mix.loc["phone"].to_dict() == {"full": 3, "lora": 0, "none": 1}
    ranks = A.assignment_mix_by_class(clients, "rank")
    assert list(ranks.columns) == ["0", "8"]
    assert ranks.loc["laptop", "8"] == 1
    assert ranks.loc["phone"].tolist() == [3, 0]  # the NaN (not assigned) is not counted
    fig = F.workload_figure(clients)
    groups = {t.legendgroup for t in fig.data}
    assert groups == {"workload", "assignment"}
    assert {t.name for t in fig.data if t.legendgroup == "assignment"} == {
        "full", "LoRA r8", "none"}


def test_workload_labels_read_right():
    """Issue 17 item 7: LoRA-only clients are "LoRA r8", not "cut 0"; split and partial say
    where they cut and how many blocks they train."""
    df = pd.DataFrame({"workload": ["lora", "split", "partial", "partial", "full", "width"],
                       "rank": [8, 4, 0, 0, 0, 0], "blocks": [0, 0, 2, 1, 0, 0],
                       "cut": [0, 3, 0, 0, 0, 0], "width": [1.0, 1.0, 1.0, 1.0, 1.0, 0.5]})
    assert A.workload_labels(df).tolist() == [
        "LoRA r8", "split at block 3 · LoRA r4", "partial top 2 blocks", "partial top 1 block",
        "full", "width 0.5"]
    assert A.workload_labels(df[["workload"]]) is None


def test_bytes_and_tokens_units():
    from dashboards.style import bytes_unit

    assert bytes_unit(5e12) == ("TB", 1e12)  # 5 TB, not 5000 GB
    assert bytes_unit(5e9) == ("GB", 1e9)
    man = {"scenario": {"model": {"kind": "transformer", "seq_len": 512}}}
    assert F.tokens_per_sample(man) == 512
    assert F.tokens_per_sample({"scenario": {"model": {"kind": "mlp"}}}) is None
    clients = _clients([(0, 1, "phone", "completed", "lora", 0.0, 6.0, 1.0, 2.0, 3.0, 1e6, 1e6,
                         10)])
    q = A.rate_quantiles(clients, 512)
    assert q["throughput"].loc["phone", "p50"] == pytest.approx(10 * 512 / 2.0)
    fig = F.population_figure(clients, 512)
    assert "tokens/s" in fig.layout.xaxis4.title.text


def test_assignment_mix_bins_many_numeric_values():
    n = 1000
    df = pd.DataFrame({"device_class": ["a"] * n, "cut": np.arange(n, dtype=float)})
    mix = A.assignment_mix_by_class(df, "cut", max_values=8)
    assert 2 <= mix.shape[1] <= 8 and mix.to_numpy().sum() == n


def test_traffic_energy_cumulative(tiny):
    rounds, _ = tiny
    te = A.traffic_energy(rounds)
    assert te["cum_bytes_down"].tolist() == [4e6, 6e6]
    assert te["cum_energy_j"].tolist() == [100.0, 150.0]
    fig = F.traffic_energy_figure(rounds)
    energy = next(t for t in fig.data if t.name == "energy")
    assert list(energy.y) == pytest.approx([0.1, 0.15])  # 150 J shown in kJ
    assert fig.layout.yaxis2.title.text == "kJ"


def test_population_and_rates(tiny):
    _, clients = tiny
    mix = A.population_mix(clients)
    assert mix.sum(axis=1).to_dict() == {"laptop": 2, "phone": 3}  # distinct client ids
    q = A.rate_quantiles(clients)
    # completed only: phone client 1 got 8 * 1e6 B / 1 s = 8 Mbit/s down
    assert q["downlink"].loc["phone", "p50"] == pytest.approx(8.0)
    assert q["throughput"].loc["laptop", "p50"] == pytest.approx(10.0)  # 40 samples / 4 s
    fig = F.population_figure(clients)
    assert any(isinstance(t, go.Box) for t in fig.data)


def test_accuracy_figure_skips_unevaluated_rounds(tiny):
    rounds, _ = tiny
    rounds = pd.concat([rounds, rounds.assign(round=[2, 3], sim_end_s=[20.0, 25.0],
                                              accuracy=[np.nan, 0.9])])
    fig = F.accuracy_figure(rounds)
    names = [t.name for t in fig.data]
    acc = names.index("test accuracy")
    assert list(fig.data[acc].x) == [10.0, 15.0, 25.0]  # simulated time (s), round 2 skipped
    assert list(fig.data[acc].y) == [0.5, 0.7, 0.9]
    # the x-axis switch: simulated time, round, wall time (cumulative wall_s of all rounds)
    xs = {b.label: b.args[0]["x"][acc] for b in fig.layout.updatemenus[0].buttons}
    assert xs["round"] == [0, 1, 3]
    assert xs["wall time"] == pytest.approx([0.1, 0.3, 0.6])
    # smoothing 0.6 (debiased EMA): 0.5, (0.24*0.5+0.4*0.7)/0.64, ...
    sm = {b.label: b.args[0]["y"][acc] for b in fig.layout.updatemenus[1].buttons}
    assert sm["smoothing 0.6"][:2] == pytest.approx([0.5, (0.6 * 0.4 * 0.5 + 0.4 * 0.7) / 0.64])
    # accuracy and loss share one x axis, linked to the page's other time axes
    assert fig.layout.xaxis.matches == "x2" or fig.layout.xaxis2.matches == "x"
    assert fig.layout.meta["xlinks"]["xaxis"][0] == "sim"


def test_timeline_sample_is_bounded_and_deterministic(tiny):
    rounds, clients = tiny
    s = A.sample_timeline(clients, rounds)
    assert len(s) == len(clients)
    r1 = s[s["round"] == 1]
    assert r1["t0"].tolist() == [0.0, 0.0]  # relative to the round start
    assert r1["row"].tolist() == [0, 1] and r1["client_id"].tolist() == [5, 1]  # stop order
    fig = F.timeline_figure(clients, rounds)
    assert len(fig.layout.sliders[0].steps) == 2
    first_visible = [t.name for t in fig.data if t.visible]
    assert {"download", "compute", "upload", "dropped", "out_of_memory"} <= set(first_visible)


def test_event_log_columns_and_async_rounds():
    """With the event-log columns, phases come from them: an asynchronous client that started in
    an earlier round is drawn from a negative offset, and only its part inside the round counts
    on the critical path."""
    rounds = pd.DataFrame({"round": [3], "sim_start_s": [100.0], "sim_end_s": [110.0],
                           "duration_s": [10.0]})
    clients = _clients([
        (3, 7, "rpi4", "completed", "full", 90.0, 108.0, 5.0, 8.0, 5.0, 1e6, 1e6, 10),
        (3, 8, "rpi4", "completed", "full", 95.0, 105.0, 2.0, 4.0, 4.0, 1e6, 1e6, 10),
    ]).assign(download_start_s=[90.0, 95.0], download_end_s=[95.0, 97.0],
              compute_start_s=[95.0, 97.0], compute_end_s=[103.0, 101.0],
              upload_start_s=[103.0, 101.0], upload_end_s=[108.0, 105.0],
              staleness=[2, 1])
    split = A.round_phase_split(rounds, clients).iloc[0]
    # client 7 stopped last; inside [100, 110]: compute 100-103, upload 103-108, waiting 2
    assert split[["download", "compute", "upload", "waiting"]].tolist() == [0.0, 3.0, 5.0, 2.0]
    s = A.sample_timeline(clients, rounds).set_index("client_id")
    assert s.loc[7, ["download_t0", "compute_t0", "upload_t0", "t_stop"]].tolist() == [
        -10.0, -5.0, 3.0, 8.0]
    assert s.loc[7, ["download", "compute", "upload"]].tolist() == [5.0, 8.0, 5.0]
    fig = F.timeline_figure(clients, rounds)
    assert "earlier round" in fig.layout.xaxis.title.text
    extra = F.staleness_privacy_figure(rounds, clients)
    assert extra is not None and sum(sum(t.y) for t in extra.data) == 2


def test_staleness_privacy_only_when_present(tiny):
    rounds, clients = tiny
    assert F.staleness_privacy_figure(rounds, clients.assign(staleness=0)) is None
    fig = F.staleness_privacy_figure(rounds.assign(epsilon=[1.0, 1.5]), clients)
    assert fig is not None and list(fig.data[0].y) == [1.0, 1.5]


def test_jain_time_to_target_and_band():
    assert A.jain_index(np.array([1, 1, 1, 1])) == pytest.approx(1.0)
    assert A.jain_index(np.array([4]), population=4) == pytest.approx(0.25)
    assert A.jain_index(np.array([2, 0]), population=None) == pytest.approx(0.5)
    r = pd.DataFrame({"round": [0, 1, 2], "sim_end_s": [10.0, 20.0, 30.0],
                      "accuracy": [0.2, 0.6, 0.8]})
    assert A.time_to_target(r, 0.6) == 20.0
    assert np.isnan(A.time_to_target(r, 0.9))
    a = C.RunSeries("a", "g", r, pd.DataFrame())
    b = C.RunSeries("b", "g", r.assign(accuracy=[0.4, 0.4, 0.4]), pd.DataFrame())
    band = C.group_band([a, b], points=3)
    assert band["t"].tolist() == [10.0, 20.0, 30.0]
    assert band["mean"].tolist() == pytest.approx([0.3, 0.5, 0.6])
    assert band["min"].tolist() == pytest.approx([0.2, 0.4, 0.4])
    assert C.default_target([a, b]) == pytest.approx(0.72)


def test_comparison_figures(tiny):
    rounds, clients = tiny
    runs = [C.RunSeries("s1", "fedavg", rounds, clients, population=10),
            C.RunSeries("s2", "fedavg", rounds.assign(accuracy=[0.6, 0.8]), clients, 10),
            C.RunSeries("other", "other", rounds.assign(accuracy=[0.1, 0.2]), clients, 10)]
    target = 0.6
    summary = C.summary_table(runs, target)
    assert summary["time_to_target_s"].tolist()[:2] == [15.0, 10.0]
    assert np.isnan(summary["time_to_target_s"].iloc[2])
    # completed per client: ids 1 and 2 once each over a population of 10
    assert summary["jain"].iloc[0] == pytest.approx(4 / (10 * 2))
    assert summary["rounds_to_target"].tolist()[:2] == [2.0, 1.0]
    assert summary["energy_j"].tolist() == [150.0] * 3
    assert summary["mean_round_s"].tolist() == [7.5] * 3
    fig = C.accuracy_overlay_figure(runs, target)
    assert [t.name for t in fig.data if t.showlegend is not False] == [
        "fedavg (mean of 2, 95% CI)", "other"]
    # per-seed lines: hidden until the second button shows them
    seeds = [t for t in fig.data if t.name in ("s1", "s2")]
    assert len(seeds) == 4 and all(t.visible is False for t in seeds)
    show = fig.layout.updatemenus[1].buttons[1]
    assert show.args[0] == {"visible": True} and len(show.args[1]) == 4
    ttt = C.time_to_target_figure(summary, target)
    bars = [t for t in ttt.data if isinstance(t, go.Bar)]
    assert list(bars[0].y) == pytest.approx([1.5, 2.0])  # rounds; "other": its rounds run
    assert list(bars[1].y) == pytest.approx([12.5, 15.0])  # mean; "other": its run length
    # 95% t-interval of (15, 10): 12.5 +- 12.706205 * 3.5355339 / sqrt(2)
    assert bars[1].error_y.array[0] == pytest.approx(12.706204736 * 2.5, rel=1e-6)
    assert list(bars[2].y) == pytest.approx([7.5, 7.5])
    dur = C.round_duration_figure(runs)
    assert [t.name for t in dur.data if isinstance(t, go.Box)] == ["fedavg", "other"]
    waste = C.waste_energy_figure(summary)
    wbars = [t for t in waste.data if isinstance(t, go.Bar)]
    assert list(wbars[0].y) == pytest.approx([7.0, 7.0])  # 3 + 4 device seconds per run
    assert list(wbars[1].y) == pytest.approx([0.15, 0.15])  # 150 J in kJ
    inv = C.invitations_by_class_figure(runs)
    per_run = next(t for t in inv.data if t.name == "fedavg")
    assert dict(zip(per_run.x, per_run.y, strict=True)) == {"phone": 4.0, "laptop": 2.0}
    classes = C.class_drilldown_figure(runs)
    assert classes.layout.annotations[0].text == "Critical (last) client"
    assert C.fairness_speed_figure(summary, target).data
    part = C.participation_by_class_figure(runs)
    assert {t.name for t in part.data} == {"fedavg", "other"}


def test_class_drilldown(tiny):
    """Round 0's critical client is the laptop (stopped last at 7 s); round 1 has none."""
    rounds, clients = tiny
    d = A.class_drilldown(rounds, clients.assign(energy_j=[1.0, 3.0, 0.0, 0.0, 1.0, 5.0]))
    d = d.set_index("device_class")
    assert d.loc["laptop", ["invited", "completed", "critical_rounds"]].tolist() == [2, 1, 1]
    assert d.loc["laptop", "critical_share"] == 1.0 and d.loc["phone", "critical_share"] == 0.0
    assert d.loc["laptop", "critical_time_s"] == 10.0 and d.loc["laptop", "time_share"] == 1.0
    assert d.loc["phone", "participation"] == pytest.approx(0.25)
    assert d.loc["laptop", "energy_share"] == pytest.approx(8 / 10)
    fig = F.class_figure(rounds, clients)
    assert len(fig.data) == 4


def test_clock_only_run_has_no_accuracy(tiny):
    rounds, _ = tiny
    fig = F.accuracy_figure(rounds.assign(accuracy=np.nan, loss=np.nan, train_loss=np.nan))
    assert "analytic" in fig.layout.annotations[0].text


def test_empty_inputs_give_placeholder_figures():
    empty = pd.DataFrame()
    for fig in (F.accuracy_figure(empty), F.round_time_figure(empty, empty),
                F.timeline_figure(empty, empty), F.rates_by_class_figure(empty),
                F.workload_figure(empty), F.traffic_energy_figure(empty),
                F.population_figure(empty)):
        assert isinstance(fig, go.Figure) and fig.layout.annotations


# --- scale -------------------------------------------------------------------------------------
def _points(fig: go.Figure) -> int:
    n = 0
    for t in fig.data:
        for attr in ("x", "y", "q1"):
            v = getattr(t, attr, None)
            if v is not None:
                n = max(n, 0) + len(v)
                break
    return n


def big_frames(n_rounds: int = 500, per_round: int = 10_000, population: int = 10_000):
    g = np.random.default_rng(1)
    n = n_rounds * per_round
    rnd = np.repeat(np.arange(n_rounds), per_round)
    classes = np.array(["phone-lowend", "phone-flagship", "rpi4", "laptop-cpu", "edge"])
    outcomes = np.array(["completed", "dropped", "offline", "straggler", "overcommitted",
                         "out_of_memory"])
    d, c, u = g.exponential(5, n), g.exponential(20, n), g.exponential(8, n)
    t0 = rnd * 100.0
    oc = g.choice(6, n, p=[0.7, 0.05, 0.05, 0.05, 0.1, 0.05])
    busy = d + c + u
    clients = pd.DataFrame({
        "round": rnd, "client_id": np.tile(np.arange(per_round), n_rounds) % population,
        "device_class": pd.Categorical.from_codes(g.integers(0, 5, n), classes),
        "link": pd.Categorical.from_codes(g.integers(0, 2, n), ["wifi", "4g"]),
        "outcome": pd.Categorical.from_codes(oc, outcomes),
        "workload": pd.Categorical.from_codes(g.integers(0, 2, n), ["full", "lora"]),
        "n_samples": g.integers(10, 100, n), "start_s": t0,
        "stop_s": t0 + np.where(oc == 0, busy, busy * 0.5),
        "download_s": d, "compute_s": c, "upload_s": u,
        "bytes_down": np.full(n, 4.7e7), "bytes_up": np.full(n, 4.7e7),
        "rank": g.choice([4, 8, 16], n),
    })
    rounds = pd.DataFrame({
        "round": np.arange(n_rounds), "sim_start_s": np.arange(n_rounds) * 100.0,
        "sim_end_s": np.arange(1, n_rounds + 1) * 100.0, "duration_s": np.full(n_rounds, 100.0),
        "wall_s": 0.1, "completed": 7000, "dropped": 500, "offline": 500, "straggled": 500,
        "overcommitted": 1000, "out_of_memory": 500,
        "accuracy": np.linspace(0.1, 0.9, n_rounds), "loss": np.linspace(2, 0.3, n_rounds),
        "train_loss": np.linspace(2, 0.3, n_rounds), "bytes_down": 4.7e11, "bytes_up": 4.7e11,
        "energy_j": 1e6})
    return rounds, clients


@pytest.mark.slow
def test_five_million_rows_are_aggregated():
    rounds, clients = big_frames()
    assert len(clients) == 5_000_000
    t = time.perf_counter()
    figs = {
        "accuracy": F.accuracy_figure(rounds),
        "round_time": F.round_time_figure(rounds, clients),
        "timeline": F.timeline_figure(clients, rounds),
        "rates": F.rates_by_class_figure(clients),
        "outcomes": F.outcomes_figure(rounds, clients),
        "workload": F.workload_figure(clients),
        "traffic": F.traffic_energy_figure(rounds),
        "population": F.population_figure(clients),
    }
    elapsed = time.perf_counter() - t
    for name, fig in figs.items():
        limit = 40 * 200 * 3 + 40 * 200 if name == "timeline" else 5_000
        assert _points(fig) <= limit, (name, _points(fig))
    tl = figs["timeline"]
    assert len(tl.layout.sliders[0].steps) == 40
    per_round_bars = [len(t.y) for t in tl.data if t.type == "bar"]
    assert max(per_round_bars) == 200
    assert elapsed < 60  # a few seconds on a laptop; generous for slow CI


def test_secagg_and_hierarchy_panels_only_when_columns_present():
    import pandas as pd

    from dashboards import secagg_hierarchy as SH

    plain = pd.DataFrame({"round": [0, 1], "duration_s": [1.0, 2.0]})
    assert SH.secagg_figure(plain) is None
    assert SH.hierarchy_figure(plain, pd.DataFrame()) is None
    sa = pd.DataFrame({"round": [0, 1, 2], "secagg_bytes_up": [100.0, 100.0, 50.0],
                       "secagg_bytes_down": [10.0, 10.0, 5.0],
                       "secagg_failed": [False, True, False],
                       "secagg_client_s": [1.0, 1.0, 1.0]})
    fig = SH.secagg_figure(sa)
    y = list(fig.data[0].y)
    assert y[0] == y[1] == 2 * y[2] > 0  # 110, 110, 55 bytes in the chosen unit
    assert fig.data[0].marker.color[1] != fig.data[0].marker.color[0]  # failed round marked
    assert "1 of 3 rounds failed" in fig.layout.title.text
    hr = pd.DataFrame({"round": [0, 1, 2, 3], "tier": ["edge", "cloud", "edge", "cloud"],
                       "cloud_round": [0, 0, 1, 1], "edge_round_s": [5.0, 6.0, 7.0, 8.0],
                       "backhaul_s": [0.0, 2.0, 0.0, 3.0], "cloud_wait_s": [0.0, 1.0, 0.0, 4.0]})
    hc = pd.DataFrame({"edge_id": [0, 0, 1], "device_class": ["rpi4", "rpi5", "rpi4"]})
    fig = SH.hierarchy_figure(hr, hc)
    edge, backhaul, wait = fig.data[:3]
    assert list(edge.y) == [11.0, 15.0] and list(backhaul.y) == [2.0, 3.0]
    assert list(wait.y) == [1.0, 4.0]
