"""Built-in server strategies (simulator/aggregation/strategies/, docs/strategies.md).

Each strategy against a hand-computed 3-client example; FedProx mu=0 and FedAvgM momentum 0 are
FedAvg bit for bit (whole run tables); SCAFFOLD beats FedAvg on a strongly non-IID task; every
strategy runs end to end on the triggers it declares and is refused on the others; SCAFFOLD's
control variates survive a checkpoint."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pandas as pd
import pytest

import simulator
from simulator import FedFleetError
from simulator.aggregation.fedavg import Partial
from simulator.aggregation.strategies.fedavgm import FedAvgM, FedAvgMParams
from simulator.aggregation.strategies.fednova import FedNova
from simulator.aggregation.strategies.fedopt import FedAdagrad, FedAdam, FedOptParams, FedYogi
from simulator.aggregation.strategies.fedprox import FedProx, FedProxParams
from simulator.aggregation.strategies.krum import Krum, KrumParams
from simulator.aggregation.strategies.median import Median
from simulator.aggregation.strategies.qfedavg import QFedAvg, QFedAvgParams
from simulator.aggregation.strategies.scaffold import ControlVariates, Scaffold
from simulator.aggregation.strategies.trimmed_mean import TrimmedMean, TrimmedMeanParams
from simulator.aggregation.strategy import AggregationContext, Contribution, ServerSums
from simulator.config.scenario import parse_scenario
from simulator.core.registry import STRATEGIES
from simulator.loop.runner import resume_run, run_scenario
from tests.conftest import small_doc

# --- the 3-client example -----------------------------------------------------------------------
# deltas d1, d2, d3; samples n = 2, 4, 2 (FedAvg weights); mean training losses F = 1, 2, 0.5.
D = np.array([[1.0, 0.0, 2.0], [3.0, -2.0, 0.0], [-1.0, 4.0, 1.0]])
N = np.array([2, 4, 2])
F = np.array([1.0, 2.0, 0.5])
G0 = np.zeros(3)
# FedAvg: (2 d1 + 4 d2 + 2 d3) / 8 = [12, 0, 6] / 8
MEAN = np.array([1.5, 0.0, 0.75])


def _sums(ids: tuple[int, ...] = (0, 1, 2), deltas: np.ndarray = D,
          state: np.ndarray | None = None) -> ServerSums:
    p = Partial.empty(3)
    for j, cid in enumerate(ids):
        p.add_client(cid, deltas[j], float(N[j]), int(N[j]), float(F[j]), float(F[j]) ** 2)
    p.updates = deltas[:len(ids)].copy()
    p.client_state = None if state is None else state[:len(ids)].copy()
    return ServerSums([Contribution(p, 0)])


def _ctx(rnd: int = 0, server_lr: float = 1.0) -> AggregationContext:
    return AggregationContext(rnd, 7, server_lr, "sync")


def _scenario(**training: Any) -> Any:
    t = {"epochs": 1, "batch_size": 2, "lr": 0.1, "optimizer": "sgd", "momentum": 0.0, **training}
    return SimpleNamespace(training=SimpleNamespace(**t), aggregation=SimpleNamespace(
        method="fedavg", fedbuff=None), population=SimpleNamespace(size=10),
        trigger="sync", clients_per_round=3, strategy="x")


def test_fedavgm_by_hand() -> None:
    s = FedAvgM(_scenario(), FedAvgMParams(momentum=0.5))
    g1 = s.apply(G0, _sums(), _ctx())
    np.testing.assert_array_equal(g1, [1.5, 0.0, 0.75])  # v = step
    g2 = s.apply(g1, _sums(), _ctx(1))
    np.testing.assert_array_equal(g2, [1.5 + 2.25, 0.0, 0.75 + 1.125])  # v = 0.5 v + step


def test_fedprox_by_hand() -> None:
    s = FedProx(_scenario(), FedProxParams(mu=0.1))
    np.testing.assert_array_equal(s.apply(G0, _sums(), _ctx()), MEAN)  # server: FedAvg
    hook = s.client_training()
    # gradient of mu/2 ||w - w_g||^2 at w = [2, -1], w_g = [1, 1]
    np.testing.assert_allclose(hook.correction(np.array([2.0, -1.0]), np.array([1.0, 1.0])),
                               [0.1, -0.2])


@pytest.mark.parametrize(("cls", "v"), [
    # v_0 = tau^2 = 1e-4; Delta^2 = [2.25, 0, 0.5625]
    (FedAdam, np.array([0.99e-4 + 0.01 * 2.25, 0.99e-4, 0.99e-4 + 0.01 * 0.5625])),
    (FedYogi, np.array([1e-4 + 0.01 * 2.25, 1e-4, 1e-4 + 0.01 * 0.5625])),
    (FedAdagrad, np.array([1e-4 + 2.25, 1e-4, 1e-4 + 0.5625])),
])
def test_fedopt_by_hand(cls: Any, v: np.ndarray) -> None:
    s = cls(_scenario(), FedOptParams(eta=0.1, beta1=0.9, beta2=0.99, tau=0.01))
    m = 0.1 * MEAN  # (1 - beta1) Delta
    want = 0.1 * m / (np.sqrt(v) + 0.01)
    np.testing.assert_allclose(s.apply(G0, _sums(), _ctx()), want, rtol=1e-12)
    np.testing.assert_allclose(s.m, m, rtol=1e-12)
    np.testing.assert_allclose(s.v, v, rtol=1e-12)


def test_fednova_by_hand() -> None:
    # batch 2: tau = ceil(n / 2) = [1, 2, 1]; p = [.25, .5, .25]; sum p tau = 1.5
    # sum p d / tau = .25 d1 + .25 d2 + .25 d3 = [0.75, 0.5, 0.75]
    s = FedNova(_scenario())
    np.testing.assert_allclose(s.apply(G0, _sums(), _ctx()), [1.125, 0.75, 1.125], rtol=1e-12)


def test_fednova_with_momentum_by_hand() -> None:
    # rho = 0.5: a(tau) = (tau - rho (1 - rho^tau) / (1 - rho)) / (1 - rho): a(1) = 1,
    # a(2) = (2 - 0.75) / 0.5 = 2.5; sum p a = .25 + 1.25 + .25 = 1.75;
    # sum p d / a = .25 d1 + .2 d2 + .25 d3 = [0.6, 0.6, 0.75]
    s = FedNova(_scenario(momentum=0.5))
    want = 1.75 * np.array([0.6, 0.6, 0.75])
    np.testing.assert_allclose(s.apply(G0, _sums(), _ctx()), want, rtol=1e-12)


def test_qfedavg_by_hand() -> None:
    # q = 1, L = 10: Delta w_k = -10 d_k; h_k = ||Delta w_k||^2 + 10 F_k = 510, 1320, 1805
    # sum F_k Delta w_k = -10 (d1 + 2 d2 + 0.5 d3) = [-65, 20, -25]
    s = QFedAvg(_scenario(), QFedAvgParams(q=1.0, lipschitz=10.0))
    np.testing.assert_allclose(s.apply(G0, _sums(), _ctx()),
                               np.array([65.0, -20.0, 25.0]) / 3635.0, rtol=1e-12)


def test_qfedavg_q0_is_the_uniform_mean() -> None:
    s = QFedAvg(_scenario(), QFedAvgParams(q=0.0, lipschitz=10.0))  # h_k = L: mean of d_k
    np.testing.assert_allclose(s.apply(G0, _sums(), _ctx()), D.mean(0), rtol=1e-12)


def test_median_by_hand() -> None:
    np.testing.assert_array_equal(Median(_scenario()).apply(G0, _sums(), _ctx()), [1.0, 0.0, 1.0])


def test_trimmed_mean_by_hand() -> None:
    # beta 0.34: k = floor(1.02) = 1 of 3 trimmed at each end: the median
    s = TrimmedMean(_scenario(), TrimmedMeanParams(beta=0.34))
    np.testing.assert_array_equal(s.apply(G0, _sums(), _ctx()), [1.0, 0.0, 1.0])
    # beta 0.1: k = 0: the unweighted mean
    s = TrimmedMean(_scenario(), TrimmedMeanParams(beta=0.1))
    np.testing.assert_allclose(s.apply(G0, _sums(), _ctx()), [1.0, 2.0 / 3.0, 1.0])


def test_krum_by_hand() -> None:
    # squared distances: |d1-d2|^2 = 12, |d1-d3|^2 = 21, |d2-d3|^2 = 53; n - f - 2 = 1 nearest:
    # scores 12, 12, 21 -> Krum picks d1 (tie: first in client order)
    s = Krum(_scenario(), KrumParams(f=0, m=1))
    np.testing.assert_array_equal(s.apply(G0, _sums(), _ctx()), D[0])
    s = Krum(_scenario(), KrumParams(f=0, m=2))  # Multi-Krum: mean of d1, d2
    np.testing.assert_array_equal(s.apply(G0, _sums(), _ctx()), [2.0, -1.0, 1.0])
    # an outlier far away never wins
    far = D.copy()
    far[0] = [100.0, 100.0, 100.0]
    np.testing.assert_array_equal(Krum(_scenario(), KrumParams(f=1)).apply(G0, _sums(deltas=far),
                                                                            _ctx()), D[1])


def test_scaffold_by_hand() -> None:
    # client side (option II): c_i+ = -(c - c_i) - delta / (K lr); K = 2, lr = 0.1
    cv = ControlVariates(0.1)
    np.testing.assert_allclose(cv.client_state(np.array([1.0, 0.0, 2.0]), np.full(3, 0.5), 2),
                               [-5.5, -0.5, -10.5])
    assert cv.correction(None, None, np.float32(3.0)) == 3.0  # gradient + (c - c_i)
    # server side: N = 10 clients; every c_i starts at 0
    s = Scaffold(_scenario())
    c_new = np.array([[1.0, 2.0, 3.0], [0.0, -1.0, 1.0], [2.0, 2.0, -1.0]])
    np.testing.assert_array_equal(s.apply(G0, _sums(state=c_new), _ctx()), MEAN)  # FedAvg step
    c1 = c_new.sum(0) / 10.0  # c <- c + (1/N) sum (c_i+ - c_i)
    np.testing.assert_allclose(s.server_variate(1, 3), c1)
    off = s.job_columns(np.array([0, 5]), 1, 3)["scaffold_offset"]  # c - c_i
    np.testing.assert_allclose(off, np.stack([c1 - c_new[0], c1]).astype(np.float32))
    # client 0 again: only its change enters c
    again = np.array([[3.0, 2.0, 3.0]])
    s.apply(G0, _sums(ids=(0,), state=again), _ctx(1))
    np.testing.assert_allclose(s.server_variate(2, 3), c1 + (again[0] - c_new[0]) / 10.0)
    # the variates round-trip through state_dict
    t = Scaffold(_scenario())
    t.load_state_dict(s.state_dict())
    np.testing.assert_array_equal(t.server_variate(2, 3), s.server_variate(2, 3))
    assert sorted(t.variates) == [0, 1, 2]
    np.testing.assert_array_equal(t.variates[0], again[0])


def test_robust_rules_need_individual_updates() -> None:
    sums = _sums()
    sums.contributions[0].partial.updates = None
    with pytest.raises(FedFleetError, match="needs individual client updates"):
        Median(_scenario()).apply(G0, sums, _ctx())


# --- whole runs ---------------------------------------------------------------------------------
TRIGGERS: dict[str, dict[str, Any]] = {
    "sync": {},
    "buffered": {"aggregation.method": "fedbuff",
                 "aggregation.fedbuff": {"concurrency": 12, "buffer_size": 4, "max_staleness": 3}},
    "hierarchical": {"population.mix": [{"profile": "edge-server-l4", "share": 0.3},
                                        {"profile": "rpi4", "share": 0.4},
                                        {"profile": "jetson-orin-nano", "share": 0.3}],
                     "hierarchy": {"edges": 3, "edge_profile": "edge-server-l4",
                                   "edge_rounds_per_cloud_round": 2}},
}
# the buffered trigger with FedAvg as its strategy (no staleness weights): only for the
# bit-for-bit comparison, whose reference is the scenario without a strategy
ZERO_TRIGGERS = {**TRIGGERS, "buffered_fedavg": {
    "aggregation.trigger": "buffered",
    "aggregation.fedbuff": {"concurrency": 12, "buffer_size": 4, "max_staleness": 3}}}
BUILTIN = ["fedavgm", "fedprox", "fedadam", "fedyogi", "fedadagrad", "scaffold", "fednova",
           "qfedavg", "median", "trimmed_mean", "krum"]


def _triggers(name: str) -> list[str]:
    declared = [d.split(":", 1)[1] for d in STRATEGIES.entry(name).declares
                if d.startswith("trigger:")]
    return declared or list(TRIGGERS)


def _tables(doc: dict[str, Any]) -> tuple[pd.DataFrame, pd.DataFrame]:
    r = simulator.run(doc, recorder="memory")
    return r.rounds.drop(columns=["wall_s"]), r.clients


def _doc(trigger: str, **over: Any) -> dict[str, Any]:
    return small_doc(**{"rounds": 4, **ZERO_TRIGGERS[trigger], **over})


@pytest.mark.parametrize("trigger", [*sorted(TRIGGERS), "buffered_fedavg"])
@pytest.mark.parametrize(("name", "params"), [("fedprox", {"mu": 0.0}),
                                              ("fedavgm", {"momentum": 0.0})])
def test_zero_settings_are_fedavg_bit_for_bit(trigger: str, name: str,
                                              params: dict[str, Any]) -> None:
    base_r, base_c = _tables(_doc(trigger))
    r, c = _tables(_doc(trigger, **{"aggregation.strategy": name, "aggregation.params": params}))
    pd.testing.assert_frame_equal(r, base_r, check_exact=True)
    pd.testing.assert_frame_equal(c, base_c, check_exact=True)
    # and a non-zero setting changes the numbers (the comparison can fail)
    other = {"mu": 1.0} if name == "fedprox" else {"momentum": 0.9}
    r2, _ = _tables(_doc(trigger, **{"aggregation.strategy": name, "aggregation.params": other}))
    assert not np.array_equal(r2["loss"].to_numpy(), base_r["loss"].to_numpy())


@pytest.mark.parametrize("name", BUILTIN)
def test_every_strategy_runs_end_to_end(name: str) -> None:
    for trigger in sorted(TRIGGERS):
        doc = _doc(trigger, rounds=3, **{"aggregation.strategy": name})
        if trigger not in _triggers(name):
            with pytest.raises(FedFleetError, match=rf"aggregation\.strategy: '{name}' does not "
                                                    rf"run on aggregation trigger '{trigger}'"):
                simulator.run(doc, recorder="memory")
            continue
        r = simulator.run(doc, recorder="memory").rounds
        assert len(r) == 3 and (r["completed"] > 0).any()
        assert np.isfinite(r["accuracy"]).all() and np.isfinite(r["loss"]).all()


def test_robust_and_scaffold_refuse_what_hides_their_inputs() -> None:
    from simulator.loop.simulation import build_parts

    cases = [
        ("median", {"secure_aggregation": {"enabled": True}}, r"secure_aggregation\.enabled: "
         r"not supported by aggregation\.strategy 'median'"),
        ("krum", {"privacy": {"mode": "central", "clip_norm": 1.0, "noise_multiplier": 0.5}},
         r"privacy\.mode: 'central' is not supported by aggregation\.strategy 'krum'"),
        ("scaffold", {"privacy": {"mode": "local", "clip_norm": 1.0, "noise_multiplier": 0.5}},
         r"privacy\.mode: not supported by aggregation\.strategy 'scaffold'"),
    ]
    for name, over, msg in cases:
        sc = parse_scenario(small_doc(**{"aggregation.strategy": name, **over}))
        with pytest.raises(FedFleetError, match=msg):
            build_parts(sc)  # what `fedfleet validate` runs


def test_memory_of_individual_updates_is_checked() -> None:
    from simulator.aggregation.strategies.base import NeedsClientUpdates

    sc = parse_scenario(small_doc(**{"aggregation.strategy": "median"}))
    s = NeedsClientUpdates(sc)
    s.check_model(1000)
    with pytest.raises(FedFleetError, match=r"aggregation\.strategy: 'median' reads every update"
                                            r": 20 updates x 30,000,000 parameters"):
        s.check_model(30_000_000)
    sc = parse_scenario(small_doc(**{"aggregation.strategy": "scaffold"}))
    with pytest.raises(FedFleetError, match=r"'scaffold' keeps a control variate per client: "
                                            r"200 clients"):
        Scaffold(sc).check_model(10_000_000)


# --- SCAFFOLD on a strongly non-IID task --------------------------------------------------------
def _one_class_doc(strategy: str) -> dict[str, Any]:
    """20 clients of one digit class each (shards_per_client 1), 10 a round, 5 local epochs."""
    d = small_doc(**{"population.size": 20, "clients_per_round": 10, "overcommit": 1.0,
                     "population.mix": [{"profile": "edge-server-l4", "share": 1.0}],
                     "deadline_s": None, "rounds": 20, "training.epochs": 5,
                     "training.lr": 0.05, "training.batch_size": 10,
                     "aggregation.strategy": strategy})
    d["data"] = {"dataset": "digits", "partition": "shards", "shards_per_client": 1,
                 "samples_per_client": 50}
    return d


def test_scaffold_beats_fedavg_on_one_class_clients() -> None:
    """Measured (seeds 1, 2, 3, 10 of 20 clients a round): mean accuracy of the last 5 rounds
    0.18 / 0.19 / 0.15 with FedAvg, 0.38 / 0.46 / 0.41 with SCAFFOLD. Without the gradient
    correction SCAFFOLD is FedAvg and this fails."""
    acc = {s: simulator.run(_one_class_doc(s), recorder="memory").rounds["accuracy"]
           for s in ("fedavg", "scaffold")}
    avg, scaf = (float(acc[s].tail(5).mean()) for s in ("fedavg", "scaffold"))
    assert scaf > avg + 0.1, (avg, scaf)


def test_scaffold_batched_and_sequential_agree() -> None:
    doc = _one_class_doc("scaffold")
    doc["rounds"] = 3
    b = simulator.run(doc, recorder="memory").rounds
    doc["executor"] = {"kind": "local", "batched": False}
    s = simulator.run(doc, recorder="memory").rounds
    np.testing.assert_allclose(b["loss"], s["loss"], rtol=1e-4)
    np.testing.assert_array_equal(b["accuracy"], s["accuracy"])


@pytest.mark.parametrize("trigger", ["sync", "buffered"])
def test_scaffold_resume_gives_the_same_tables(tmp_path: Path, trigger: str) -> None:
    """Control variates (client and server) are checkpointed: crash, resume, identical tables."""
    doc = _doc(trigger, rounds=6, **{"aggregation.strategy": "scaffold",
                                     "output.checkpoint_every": 2})

    def tables(run: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
        return (pd.read_parquet(run / "rounds.parquet").drop(columns=["wall_s"]),
                pd.read_parquet(run / "clients.parquet"))

    ref = tables(run_scenario(parse_scenario(dict(doc, output={"checkpoint_every": 0})),
                              name="ref", runs_dir=str(tmp_path / "ref")))

    class Crash(Exception):
        pass

    def crash(rep: Any) -> None:
        if rep.round == 3:
            raise Crash

    with pytest.raises(Crash):
        run_scenario(parse_scenario(doc), name="c", runs_dir=str(tmp_path / "c"), on_round=crash)
    got = tables(resume_run(tmp_path / "c" / "c"))
    pd.testing.assert_frame_equal(got[0], ref[0], check_exact=True)
    pd.testing.assert_frame_equal(got[1], ref[1], check_exact=True)


@pytest.mark.ray
def test_per_client_rows_are_identical_on_ray(tmp_path: Path, ray_session: Any) -> None:
    """SCAFFOLD's offsets and variates and Krum's individual updates travel through Ray actors
    (jobs sharded by client id, partials merged): the tables equal the local run's."""
    for name in ("scaffold", "krum"):
        doc = _doc("sync", rounds=3, **{"aggregation.strategy": name})
        local = _tables(doc)
        ray = _tables(dict(doc, executor={"kind": "ray", "num_actors": 2,
                                          "num_cpus_per_actor": 1}))
        pd.testing.assert_frame_equal(local[0], ray[0], check_exact=True)
        pd.testing.assert_frame_equal(local[1], ray[1], check_exact=True)
