"""FedBuff: hand-computed timelines on 4 clients, staleness weights, and scenario runs."""

import math

import numpy as np
import pandas as pd
import pytest

from simulator import FedFleetError
from simulator.aggregation import Partial, apply_fedavg
from simulator.config.scenario import ScenarioError, parse_scenario
from simulator.core import outcomes as R
from simulator.core.cost import Timing
from simulator.loop.buffered import FedBuffCore, Launch, combine_stale, staleness_weight
from simulator.loop.runner import run_scenario
from tests.conftest import small_doc

INF = math.inf


class Script:
    """A start function over hand-made clients: every client is online; the least recently
    started idle clients go first (ties by id). ``drop[c]`` = dropout after that many seconds
    into each of client c's tasks, ``blocked[c]`` = an outcome code it declines with."""

    def __init__(self, totals, drop=None, off=None, blocked=None):
        self.totals = np.array(totals, float)
        n = len(totals)
        self.drop = np.full(n, INF) if drop is None else np.array(drop, float)
        self.off = np.full(n, INF) if off is None else np.array(off, float)
        self.blocked = np.full(n, -1, np.int8) if blocked is None else np.array(blocked, np.int8)
        self.last = np.full(n, -1.0)
        self.starts = []  # (t, client, version)

    def __call__(self, t, n_free, busy, version):
        idle = np.flatnonzero(~busy)
        idle = idle[np.lexsort((idle, self.last[idle]))][:n_free]
        ids = np.sort(idle)
        self.last[ids] = t
        self.starts += [(t, int(c), version) for c in ids]
        z = np.zeros(len(ids))
        return Launch(ids, Timing(z, self.totals[ids], z), self.drop[ids], self.off[ids],
                      self.blocked[ids], candidates=len(idle))


def used(closed):
    return sorted((x.client, x.staleness) for x in closed.used)


def test_hand_timeline_four_clients():
    # Prepare: task lengths 10, 4, 6, 3 s; C=2 running, K=2 per aggregation, 3 aggregations.
    script = Script([10, 4, 6, 3])
    core = FedBuffCore(4, concurrency=2, buffer_size=2, max_staleness=1, rounds=3, start=script)
    # Execute / Assert
    # t=0 start 0 (->10) and 1 (->4); t=4: 1 arrives, 2 starts (->10); t=10: 0 arrives -> v1.
    a0 = core.next_aggregation()
    assert (a0.round, a0.start_s, a0.time_s) == (0, 0.0, 10.0)
    assert used(a0) == [(0, 0), (1, 0)]
    # t=10: 3 starts from v1 (->13); then 2 (started at v0) arrives with tau 1 and 0 restarts
    # from v1 (->20); t=13: 3 arrives -> v2.
    a1 = core.next_aggregation()
    assert (a1.start_s, a1.time_s) == (10.0, 13.0)
    assert used(a1) == [(2, 1), (3, 0)]
    # t=13: 1 starts from v2 (->17); t=17: 1 arrives, 2 starts (->23); t=20: 0 arrives (tau 1) ->
    # v3, the last round: 2 is cancelled at 20 s.
    a2 = core.next_aggregation()
    assert a2.time_s == 20.0 and a2.final
    assert used(a2) == [(0, 1), (1, 0)]
    cancelled = [x for x in a2.tasks if x.outcome == R.OVERCOMMITTED]
    assert [(x.client, x.start_s, x.stop_s) for x in cancelled] == [(2, 17.0, 20.0)]
    assert script.starts == [(0, 0, 0), (0, 1, 0), (4, 2, 0), (10, 3, 1), (10, 0, 1),
                             (13, 1, 2), (17, 2, 2)]
    with pytest.raises(FedFleetError):
        core.next_aggregation()


def test_stale_updates_are_discarded():
    # Same fleet with max_staleness 0: client 2's update (tau 1) is dropped on arrival at 10 s.
    core = FedBuffCore(4, 2, 2, max_staleness=0, rounds=2, start=Script([10, 4, 6, 3]))
    core.next_aggregation()
    a1 = core.next_aggregation()
    stale = [x for x in a1.tasks if x.outcome == R.STRAGGLER]
    assert [(x.client, x.staleness, x.stop_s) for x in stale] == [(2, 1, 10.0)]
    # 0 restarts at 10 from v1 (->20); 3 arrives at 13, 1 starts (->17) and arrives first.
    assert used(a1) == [(1, 0), (3, 0)] and a1.time_s == 17.0


def test_dropout_frees_the_slot_at_once_and_deadline_cuts():
    # Client 0 drops 2 s into its task (its slot is refilled at t=2 by client 2); client 1 would
    # take 50 s (cut at 20 s by the per-task deadline) but the run ends first.
    script = Script([10, 50, 5, 5], drop=[2, INF, INF, INF])
    core = FedBuffCore(4, 2, 2, max_staleness=5, rounds=1, start=script, deadline_s=20)
    a = core.next_aggregation()
    by = {(x.client, x.start_s): x for x in a.tasks}
    assert by[(0, 0.0)].outcome == R.DROPPED and by[(0, 0.0)].stop_s == 2.0
    # t=2: client 2 starts (->7); t=7: 2 arrives, 3 starts (->12); t=12: 3 arrives -> aggregate.
    assert a.time_s == 12.0 and used(a) == [(2, 0), (3, 0)]
    # final round: client 1 (running since 0) is cancelled at 12 s
    assert by[(1, 0.0)].outcome == R.OVERCOMMITTED and by[(1, 0.0)].stop_s == 12.0
    assert script.starts[:4] == [(0, 0, 0), (0, 1, 0), (2, 2, 0), (7, 3, 0)]


def test_deadline_straggler_on_a_long_task():
    # Client 0 needs 50 s but the per-task deadline is 20 s; clients 1 and 2 take 5 s each and
    # keep arriving (K=1): aggregations at 5, 10, 15, 20. At 20 s client 2's finish goes before
    # client 0's cut (finish before deadline at one instant), so the cut lands in round 4.
    core = FedBuffCore(3, 2, 1, max_staleness=5, rounds=10, start=Script([50, 5, 5]),
                       deadline_s=20)
    outs = [core.next_aggregation() for _ in range(5)]
    assert [a.time_s for a in outs[:4]] == [5.0, 10.0, 15.0, 20.0]
    cut = [(i, x.client, x.start_s, x.stop_s) for i, a in enumerate(outs) for x in a.tasks
           if x.outcome == R.STRAGGLER]
    assert cut == [(4, 0, 0.0, 20.0)]


def test_declining_clients_hold_no_slot_and_idle_fleet_is_an_error():
    script = Script([5, 5, 5], blocked=[R.LOW_BATTERY, -1, R.OUT_OF_MEMORY])
    core = FedBuffCore(3, 3, 1, max_staleness=5, rounds=1, start=script)
    a = core.next_aggregation()
    codes = sorted((x.client, x.outcome) for x in a.tasks)
    assert codes == [(0, R.LOW_BATTERY), (1, R.COMPLETED), (2, R.OUT_OF_MEMORY)]
    stuck = FedBuffCore(2, 2, 1, 5, 1, Script([5, 5], blocked=[R.LOW_BATTERY] * 2))
    with pytest.raises(FedFleetError, match="fedbuff"):
        stuck.next_aggregation()


def test_staleness_weights():
    assert staleness_weight(0) == 1.0
    assert staleness_weight(3) == pytest.approx(0.5)
    assert staleness_weight(1, "polynomial", 1.0) == pytest.approx(0.5)
    assert staleness_weight(7, "polynomial", 2.0) == pytest.approx(1 / 64)


def _partial(delta, n):
    p = Partial.empty(len(delta))
    p.add_client(0, np.asarray(delta, float), float(n), n, 0.0, 0.0)
    return p


def test_combine_equals_fedavg_without_staleness_and_weights_by_hand():
    g = np.array([1.0, 2.0, 3.0], np.float32)
    p = _partial([0.5, -1.0, 0.25], 4)
    np.testing.assert_array_equal(combine_stale(g, [(1.0, p)]), apply_fedavg(g, p))
    # Two groups: n=1 fresh (delta 1) and n=3 with tau=3 (s=0.5, delta 2):
    # step = (1*1*1 + 0.5*3*2) / (1 + 3) = 1.0
    out = combine_stale(np.zeros(1, np.float32), [(1.0, _partial([1.0], 1)),
                                                   (0.5, _partial([2.0], 3))])
    assert out.tolist() == [1.0]


# --- scenario runs ----------------------------------------------------------------------------
def fedbuff_doc(**over):
    doc = small_doc(rounds=5, **{"aggregation.method": "fedbuff",
                                 "aggregation.fedbuff": {"concurrency": 12, "buffer_size": 4,
                                                         "max_staleness": 3}})
    doc.update(over)
    return parse_scenario(doc)


def _run(tmp_path, name, sc):
    run = run_scenario(sc, name=name, runs_dir=str(tmp_path))
    return (pd.read_parquet(run / "rounds.parquet").drop(columns=["wall_s"]),
            pd.read_parquet(run / "clients.parquet"))


def test_fedbuff_real_run_is_deterministic_and_trains(tmp_path):
    sc = fedbuff_doc()
    r1, c1 = _run(tmp_path, "a", sc)
    r2, c2 = _run(tmp_path, "b", sc)
    pd.testing.assert_frame_equal(r1, r2, check_exact=True)
    pd.testing.assert_frame_equal(c1, c2, check_exact=True)
    assert len(r1) == 5 and (r1["completed"] == 4).all()
    assert r1["accuracy"].notna().all()
    done = c1[c1.outcome == "completed"]
    assert done["train_loss"].notna().all() and (done["staleness"] <= 3).all()
    assert (c1["model_version"] <= c1["round"]).all()
    assert (r1["sim_start_s"].iloc[1:].to_numpy() == r1["sim_end_s"].iloc[:-1].to_numpy()).all()


@pytest.mark.ray
def test_fedbuff_local_and_ray_identical(tmp_path, ray_session):
    r0, c0 = _run(tmp_path, "local", fedbuff_doc())
    r1, c1 = _run(tmp_path, "ray", fedbuff_doc(executor={"kind": "ray", "num_actors": 2,
                                                           "num_cpus_per_actor": 1}))
    pd.testing.assert_frame_equal(r0, r1, check_exact=True)
    pd.testing.assert_frame_equal(c0, c1, check_exact=True)


def test_fedbuff_scenario_errors():
    fedbuff_doc(output={"checkpoint_every": 2})  # every trigger checkpoints
    # Refusals come from what the trigger declares (simulator/core/registry.py TRIGGERS).
    with pytest.raises(ScenarioError, match=r"secure_aggregation.enabled: not supported by "
                                            r"aggregation trigger 'buffered' \(it supports: "):
        fedbuff_doc(secure_aggregation={"enabled": True})
    with pytest.raises(ScenarioError, match="concurrency"):
        parse_scenario(small_doc(**{"aggregation.method": "fedbuff",
                                    "aggregation.fedbuff": {"concurrency": 5000}}))
    with pytest.raises(ScenarioError, match="only used with"):
        parse_scenario(small_doc(**{"aggregation.fedbuff": {"concurrency": 5}}))
