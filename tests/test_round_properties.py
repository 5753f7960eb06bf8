"""Invariants of whole runs (hypothesis over seeds and settings; analytic mode, small fleets).

- a sync round lasts at least as long as each completed client's busy time;
- no client works on two tasks at once (FedBuff);
- no completed task overlaps a time its device was offline;
- counts in rounds.parquet equal the outcomes in clients.parquet;
- the per-phase event log is consistent with start/stop and the phase durations.
"""

import numpy as np
import pandas as pd
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from simulator.config.scenario import parse_scenario
from simulator.loop.runner import run_scenario
from simulator.loop.simulation import build_population
from tests.conftest import small_doc

COUNT_COLUMNS = {"completed": "completed", "dropped": "dropped", "offline": "offline",
                 "straggled": "straggler", "overcommitted": "overcommitted",
                 "out_of_memory": "out_of_memory", "low_battery": "low_battery"}
EPS = 1e-6


def _run(tmp_path, doc):
    sc = parse_scenario(doc)
    run = run_scenario(sc, name="p", runs_dir=str(tmp_path), overwrite=True)
    return sc, pd.read_parquet(run / "rounds.parquet"), pd.read_parquet(run / "clients.parquet")


def _doc(seed, deadline, hazard_mix, min_battery, fedbuff=None):
    doc = small_doc(seed=seed, mode="analytic", rounds=6, deadline_s=deadline,
                    **{"population.size": 120, "clients_per_round": 12})
    if hazard_mix:  # a fleet dominated by phones: diurnal windows and frequent dropouts
        doc["population"]["mix"] = [{"profile": "phone-lowend", "share": 0.7},
                                    {"profile": "rpi4", "share": 0.3}]
    doc["population"]["min_battery_fraction"] = min_battery
    if fedbuff is not None:
        doc["aggregation"] = {"method": "fedbuff", "fedbuff": fedbuff}
    return doc


def _check_common(sc, r, c):
    # counts per round equal outcomes per round
    per = c.groupby(["round", "outcome"]).size().unstack(fill_value=0)
    for col, outcome in COUNT_COLUMNS.items():
        got = per[outcome] if outcome in per else pd.Series(0, index=per.index)
        np.testing.assert_array_equal(r.set_index("round")[col].reindex(per.index).to_numpy(),
                                      got.to_numpy(), err_msg=col)
    invited = c.groupby("round").size().reindex(r["round"]).to_numpy()
    assert (r["selected"].to_numpy() == invited).all()
    # event log consistent with start/stop and durations
    started = c["download_start_s"].notna()
    assert (c.loc[started, "download_start_s"] == c.loc[started, "start_s"]).all()
    for ph in ("download", "compute", "upload"):
        s, e = c[f"{ph}_start_s"], c[f"{ph}_end_s"]
        ok = s.notna()
        assert (e[ok] >= s[ok] - EPS).all() and (e[ok] <= c.loc[ok, "stop_s"] + EPS).all()
        assert (e[ok] - s[ok] <= c.loc[ok, f"{ph}_s"] + EPS).all()
    done = c[c.outcome == "completed"]
    assert done[["download_start_s", "compute_start_s", "upload_start_s"]].notna().all().all()
    np.testing.assert_allclose(done["upload_end_s"], done["stop_s"], rtol=1e-12)
    assert (c["energy_j"] >= 0).all() and (c["stop_s"] >= c["start_s"]).all()
    # no completed task overlaps an offline interval of its device
    pop, _ = build_population(sc)
    for row in done.itertuples():
        ids = np.array([row.client_id])
        assert pop.available(row.start_s, ids)[0]
        assert pop.seconds_until_offline(row.start_s, ids)[0] >= row.stop_s - row.start_s - EPS


_settings = settings(max_examples=6, deadline=None,
                     suppress_health_check=[HealthCheck.function_scoped_fixture])


@_settings
@given(seed=st.integers(0, 10_000), deadline=st.sampled_from([None, 30.0, 300.0]),
       hazard_mix=st.booleans(), min_battery=st.sampled_from([0.0, 0.5]))
def test_sync_run_invariants(tmp_path, seed, deadline, hazard_mix, min_battery):
    sc, r, c = _run(tmp_path, _doc(seed, deadline, hazard_mix, min_battery))
    _check_common(sc, r, c)
    assert (c["staleness"] == 0).all() and (c["model_version"] == c["round"]).all()
    # a round lasts at least as long as each completed client's busy time
    done = c[c.outcome == "completed"].merge(r[["round", "duration_s", "sim_start_s"]], on="round")
    assert (done["stop_s"] - done["start_s"] <= done["duration_s"] + EPS).all()
    assert (done["start_s"] == done["sim_start_s"]).all()
    assert (r["completed"] <= sc.clients_per_round).all()


@_settings
@given(seed=st.integers(0, 10_000), deadline=st.sampled_from([None, 60.0]),
       hazard_mix=st.booleans(), min_battery=st.sampled_from([0.0, 0.5]),
       conc=st.integers(2, 15), k=st.integers(1, 6), s_max=st.integers(0, 4))
def test_fedbuff_run_invariants(tmp_path, seed, deadline, hazard_mix, min_battery, conc, k, s_max):
    fb = {"concurrency": conc, "buffer_size": k, "max_staleness": s_max}
    sc, r, c = _run(tmp_path, _doc(seed, deadline, hazard_mix, min_battery, fb))
    _check_common(sc, r, c)
    assert (r["completed"] == k).all()
    # no client works on two tasks at once
    worked = c[c["download_start_s"].notna()].sort_values(["client_id", "start_s", "stop_s"])
    prev_stop = worked.groupby("client_id")["stop_s"].shift()
    assert (worked["start_s"] >= prev_stop.fillna(-np.inf) - EPS).all()
    # never more than C tasks at once: sweep start/stop events
    ev = np.concatenate([np.c_[worked["start_s"], np.ones(len(worked))],
                         np.c_[worked["stop_s"], -np.ones(len(worked))]])
    ev = ev[np.lexsort((ev[:, 1], ev[:, 0]))]  # at one instant, ends before starts
    assert np.cumsum(ev[:, 1]).max() <= conc
    # staleness bound and bookkeeping
    done = c[c.outcome == "completed"]
    assert (done["staleness"] <= s_max).all()
    assert (done["model_version"] + done["staleness"] == done["round"]).all()
    assert (done["stop_s"] <= done.merge(r, on="round")["sim_end_s"].to_numpy() + EPS).all()
    assert (r["sim_end_s"].diff().dropna() >= 0).all()
